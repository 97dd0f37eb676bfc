import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mentionsPassword, REDACTED, redactErrorText, redactSqlSecrets, withoutPasswords } from "./sql-redact.js";

const SECRET = "Hunter2-s3cret";

describe("redactSqlSecrets (statements bound for the audit log)", () => {
  it.each([
    [`ALTER ROLE app PASSWORD '${SECRET}'`, `ALTER ROLE app PASSWORD ${REDACTED}`],
    [`create user app with login encrypted password '${SECRET}' valid until '2027-01-01'`, null],
    [`ALTER ROLE app PASSWORD E'${SECRET}\\'x'`, `ALTER ROLE app PASSWORD ${REDACTED}`],
    [`ALTER ROLE app PASSWORD $$${SECRET}$$`, `ALTER ROLE app PASSWORD ${REDACTED}`],
    [`ALTER ROLE app PASSWORD $pw$${SECRET}$pw$;`, `ALTER ROLE app PASSWORD ${REDACTED};`],
    [`CREATE USER 'app'@'%' IDENTIFIED BY '${SECRET}'`, null],
    [`ALTER USER app IDENTIFIED BY "${SECRET}" REPLACE 'old-one'`, null],
    [`SET PASSWORD FOR 'app'@'%' = '${SECRET}'`, null],
    [`CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password '${SECRET}')`, null],
    [`SELECT dblink_connect('host=db user=app password=${SECRET} dbname=x')`, null],
  ])("%s", (statement, expected) => {
    const redacted = redactSqlSecrets(statement);
    expect(redacted).not.toContain(SECRET);
    expect(redacted).not.toContain("old-one");
    if (expected) expect(redacted).toBe(expected);
    expect(mentionsPassword(statement)).toBe(true);
  });

  it("a quote inside the password does not end the redaction early, in either dialect's escaping", () => {
    // PostgreSQL (standard strings: a backslash is a character) and MySQL (a backslash escapes the quote).
    for (const statement of [
      `ALTER ROLE app PASSWORD 'ab\\'; SELECT 1; -- ${SECRET}'`,
      `ALTER USER app IDENTIFIED BY 'ab\\'${SECRET}'`,
      `ALTER ROLE app PASSWORD 'ab''${SECRET}'`,
      `ALTER ROLE app PASSWORD 'ab\\''${SECRET}'`, // PostgreSQL: the password is ab\'Hunter…
      `ALTER ROLE app PASSWORD '${SECRET}`, // never closed: runs to the end
    ])
      expect(redactSqlSecrets(statement)).not.toContain(SECRET);
  });

  it("the word anywhere is enough: in a comment, in a literal, after the secret", () => {
    expect(redactSqlSecrets(`SELECT '${SECRET}' -- the password`)).not.toContain(SECRET);
    expect(redactSqlSecrets(`INSERT INTO notes VALUES ('my Password is ${SECRET}')`)).not.toContain(SECRET);
  });

  it("a statement that mentions no password comes back as it was", () => {
    for (const statement of [
      "SELECT * FROM accounts WHERE name = 'alice' AND note = $$x$$",
      'SELECT "Name" FROM t',
      "UPDATE t SET v = $1 WHERE id = $2",
    ]) {
      expect(mentionsPassword(statement)).toBe(false);
      expect(redactSqlSecrets(statement)).toBe(statement);
    }
  });

  it("a cut statement is redacted by what its whole text said", () => {
    const whole = `SELECT '${SECRET}', '${"x".repeat(100)}' /* set the password */`;
    expect(redactSqlSecrets(whole.slice(0, 40), mentionsPassword(whole))).not.toContain(SECRET.slice(0, 6));
  });

  it("property: no piece of a secret quoted any way after PASSWORD or IDENTIFIED BY survives", () => {
    // Dense in what quoting is made of, so escapes and doubled quotes meet often.
    const secret = fc
      .array(fc.constantFrom("a", "B", "7", "'", "\\", '"', "$", "-", " ", "q", "xyz", "Pw"), {
        minLength: 8,
        maxLength: 24,
      })
      .map((parts) => parts.join(""));
    const quote = (value: string, style: string) =>
      style === "pg"
        ? `'${value.replaceAll("'", "''")}'`
        : style === "pg-e" || style === "mysql"
          ? `${style === "pg-e" ? "E" : ""}'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`
          : style === "dollar"
            ? `$q$${value}$q$`
            : `"${value.replaceAll("\\", "\\\\").replaceAll('"', '""')}"`;
    fc.assert(
      fc.property(
        secret.filter((s) => !s.includes("$q")),
        fc.constantFrom("PASSWORD", "password", "IDENTIFIED BY", "identified with caching_sha2_password by"),
        fc.constantFrom("pg", "pg-e", "mysql", "dollar", "double"),
        fc.constantFrom("", " VALID UNTIL 'infinity'", "; SELECT 1", " -- done"),
        (value, keyword, style, tail) => {
          const statement = `ALTER USER app ${keyword} ${quote(value, style)}${tail}`;
          const redacted = redactSqlSecrets(statement);
          expect(redacted.startsWith(`ALTER USER app ${keyword} ${REDACTED}`)).toBe(true);
          // No four characters of the secret in a row, unless the statement's own words hold them.
          const known = `ALTER USER app ${keyword} ${REDACTED}${redactSqlSecrets(tail, true)}`;
          for (let i = 0; i + 4 <= value.length; i += 1) {
            const piece = value.slice(i, i + 4);
            if (!known.includes(piece)) expect(redacted).not.toContain(piece);
          }
        },
      ),
      { numRuns: 3_000 },
    );
  });
});

describe("withoutPasswords (query log lines: the recording, finding 91)", () => {
  it("redacts the statement, every bound value and the server's error from its first quote on", () => {
    const line = {
      id: 3,
      statement: "INSERT INTO accounts (name, password) VALUES ($1, $2)",
      parameters: ["alice", SECRET, null],
      error: `23505: duplicate key "${SECRET}"`,
    };
    expect(withoutPasswords(line)).toEqual({
      id: 3,
      statement: line.statement,
      parameters: ["<redacted>", "<redacted>", null],
      error: `23505: duplicate key ${REDACTED}`,
    });
    // The given line is not changed (the proxy's tracker may hold it).
    expect(line.parameters[1]).toBe(SECRET);
  });

  it("an error echoing a literal with quotes of both kinds inside loses all of it", () => {
    // PostgreSQL and MariaDB quote the token they echo without escaping it.
    for (const error of [
      `42601: syntax error at or near "'ab"c${SECRET}'"`,
      `42000: You have an error in your SQL syntax; check the manual near ''ab'${SECRET}' at line 1'`,
    ])
      expect(redactErrorText(error)).not.toContain(SECRET.slice(2));
    expect(redactErrorText("28000: password must not be empty")).toBe("28000: password must not be empty");
  });

  it("a line that mentions no password is the same object (nothing copied on the hot path)", () => {
    const line = { statement: "SELECT $1::text", parameters: ["visible"], error: 'x "y"' };
    expect(withoutPasswords(line)).toBe(line);
  });
});
