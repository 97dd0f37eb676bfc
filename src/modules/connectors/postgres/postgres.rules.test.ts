import { describe, expect, it } from "vitest";
import { createHmac } from "node:crypto";
import fc from "fast-check";
import pg from "pg";
import { ConnectorError } from "../connector.types.js";
import {
  checkAddress,
  classifyFailure,
  entitlementProblems,
  loginProblems,
  createLoginSql,
  optionProblems,
  parseAddress,
  parseDynamicRole,
  parseEntitlement,
  parseOptions,
  securityWarnings,
  upstreamSecurity,
  passwordProblems,
  provisionSql,
  quoteIdent,
  quoteLiteral,
  revokeSql,
  scramSecret,
  sortedUnique,
} from "./postgres.rules.js";

describe("quoteIdent", () => {
  it("agrees with node-postgres' escapeIdentifier on any string without NUL", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }).filter((s) => !s.includes("\0")),
        (name) => quoteIdent(name) === pg.escapeIdentifier(name),
      ),
    );
  });

  it("doubles embedded quotes, so the result is one identifier", () => {
    expect(quoteIdent('a"; DROP ROLE postgres; --')).toBe('"a""; DROP ROLE postgres; --"');
  });

  it("refuses empty names and NUL", () => {
    expect(() => quoteIdent("")).toThrow();
    expect(() => quoteIdent("a\0b")).toThrow();
  });
});

describe("logins", () => {
  it.each(["alice", "_svc", "a.b@example.com", "x-1", "A".repeat(63)])("accepts %s", (login) => {
    expect(loginProblems(login)).toEqual([]);
  });
  it.each(['a"b', "1abc", "", "a b", "a;b", "A".repeat(64), "public", "CURRENT_USER", "pg_monitor", "é"])(
    "refuses %j",
    (login) => {
      expect(loginProblems(login)).toHaveLength(1);
    },
  );
});

describe("entitlements", () => {
  it.each([
    { role: "pg_read_all_data" },
    { role: "app_readers" },
    { attribute: "SUPERUSER" },
    { attribute: "BYPASSRLS" },
  ])("accepts %j", (entitlement) => {
    expect(entitlementProblems(entitlement)).toEqual([]);
  });
  it.each([
    [{}, /exactly one/],
    [{ role: "a", attribute: "SUPERUSER" }, /exactly one/],
    [{ role: 1 }, /must be a string/],
    [{ role: 'x"; drop' }, /must start with/],
    [{ role: "public" }, /reserved/],
    [{ attribute: "superuser" }, /must be one of SUPERUSER/],
    [{ attribute: "LOGIN" }, /must be one of/],
    [{ privilege: "SELECT" }, /unknown field\(s\) privilege/],
    [{ attribute: "SUPERUSER", dynamic: true }, /dynamic needs a role/],
    [{ role: "a", dynamic: "true" }, /dynamic must be true or false/],
    [{ dynamic: true }, /exactly one/],
  ])("refuses %j", (entitlement, problem) => {
    const problems = entitlementProblems(entitlement);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(problem);
  });
});

describe("dynamic entitlements", () => {
  it("accepts dynamic with a role, and keeps it in the parsed form", () => {
    expect(entitlementProblems({ role: "readers", dynamic: true })).toEqual([]);
    expect(entitlementProblems({ attribute: "CREATEDB", dynamic: false })).toEqual([]);
    expect(parseEntitlement({ role: "readers", dynamic: true })).toEqual({
      kind: "role",
      role: "readers",
      dynamic: true,
    });
    expect(parseEntitlement({ role: "readers", dynamic: false })).toEqual({ kind: "role", role: "readers" });
    expect(parseDynamicRole({ role: "readers", dynamic: true })).toBe("readers");
  });
  it("a dynamic login needs dynamic: true", () => {
    expect(() => parseDynamicRole({ role: "readers" })).toThrow(ConnectorError);
    expect(() => parseDynamicRole({ attribute: "SUPERUSER" })).toThrow(ConnectorError);
  });
});

describe("quoteLiteral", () => {
  it("agrees with node-postgres' escapeLiteral on any string without NUL", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary" }).filter((s) => !s.includes("\0")),
        (value) => quoteLiteral(value) === pg.escapeLiteral(value),
      ),
    );
  });
  it("doubles quotes and backslashes", () => {
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral("a\\'b")).toBe(" E'a\\\\''b'");
    expect(() => quoteLiteral("a\0b")).toThrow();
  });
});

describe("passwords", () => {
  it("refuses empty ones and NUL, without repeating them", () => {
    expect(passwordProblems("s3cret")).toEqual([]);
    expect(passwordProblems("")).toHaveLength(1);
    expect(passwordProblems("s3cret\0")).toEqual([expect.not.stringContaining("s3cret")]);
  });
  it("SCRAM secret: the RFC 7677 example's keys, printable ASCII only", () => {
    // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations;
    // its ServerSignature checks out against the ServerKey computed here (the test against PostgreSQL is in
    // postgres.credentials.test.ts).
    const secret = scramSecret("pencil", Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"))!;
    expect(secret).toMatch(/^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    const serverKey = Buffer.from(secret.split(":").at(-1)!, "base64");
    const authMessage =
      "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    expect(createHmac("sha256", serverKey).update(authMessage).digest("base64")).toBe(
      "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
    expect(scramSecret("pä", Buffer.alloc(16))).toBeNull();
    expect(scramSecret("tab\tx", Buffer.alloc(16))).toBeNull();
  });
  it("CREATE/ALTER ROLE quote the login and the validity", () => {
    expect(createLoginSql('a"b', "'SCRAM'", new Date("2030-01-02T03:04:05Z"), false)).toBe(
      `CREATE ROLE "a""b" WITH LOGIN PASSWORD 'SCRAM' VALID UNTIL '2030-01-02T03:04:05.000Z'`,
    );
    expect(createLoginSql("a", " E'x\\\\'", new Date(0), true)).toBe(
      `ALTER ROLE "a" WITH LOGIN PASSWORD E'x\\\\' VALID UNTIL '1970-01-01T00:00:00.000Z'`,
    );
  });
});

describe("options", () => {
  it("fills in defaults", () => {
    expect(parseOptions({})).toEqual({ terminateSessions: true, privilegedRoles: [], ignore: [] });
    expect(parseOptions({ terminateSessions: false, privilegedRoles: ["admins"], ignore: ["postgres"] })).toEqual({
      terminateSessions: false,
      privilegedRoles: ["admins"],
      ignore: ["postgres"],
    });
  });
  it("names each bad field", () => {
    expect(
      optionProblems({ terminateSessions: "yes", privilegedRoles: "admins", ignore: ["ok", 'bad"'], port: 1 }),
    ).toEqual([
      expect.stringContaining("options.port"),
      expect.stringContaining("options.terminateSessions"),
      expect.stringContaining("options.privilegedRoles must be a list"),
      expect.stringContaining("options.ignore entry"),
    ]);
    expect(() => parseOptions({ ignore: 3 })).toThrow(ConnectorError);
  });
});

describe("upstream security (finding 2)", () => {
  const address = (query = "") => parseAddress(`postgres://stint@db.example.com/app${query}`);
  it("verify-full and SCRAM-SHA-256-PLUS only, unless the target opts into less", () => {
    expect(upstreamSecurity(address(), {})).toEqual({ tls: { mode: "verify-full", ca: null }, allow: [] });
    expect(upstreamSecurity(address("?sslmode=verify-ca"), { tls: { ca: "PEM" } })).toEqual({
      tls: { mode: "verify-ca", ca: "PEM" },
      allow: [],
    });
    // Without TLS there is nothing to bind to: plain SCRAM is the best there is, and no more.
    expect(upstreamSecurity(address("?sslmode=disable"), {})).toEqual({ tls: null, allow: ["scram-sha-256"] });
    expect(upstreamSecurity(address(), { auth: { allow: ["md5", "md5"] } }).allow).toEqual(["md5"]);
  });
  it("checks tls, auth and databases options", () => {
    expect(
      optionProblems({ tls: { ca: "not pem", mode: "x" }, auth: { allow: ["kerberos"] }, databases: [1] }),
    ).toEqual([
      expect.stringContaining("options.tls.mode is not a TLS setting"),
      expect.stringContaining("options.tls.ca must be PEM"),
      expect.stringContaining("options.auth.allow must be a list"),
      expect.stringContaining("options.databases must be a list"),
    ]);
    expect(optionProblems({ tls: { ca: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----" } })).toEqual([
      "options.tls.ca: certificate 1 cannot be read",
    ]);
  });
  it("warns about every opt-in that weakens the sign-in, and nothing else", () => {
    expect(securityWarnings("postgres://stint@db/app", {})).toEqual([]);
    expect(
      securityWarnings("postgres://stint@db/app?sslmode=disable", { auth: { allow: ["password", "md5"] } }),
    ).toEqual([
      expect.stringContaining("sslmode=disable"),
      expect.stringContaining("password sends the target's password"),
      expect.stringContaining("md5"),
    ]);
    expect(securityWarnings("postgres://stint@db/app?sslmode=require", { auth: { allow: ["scram-sha-256"] } })).toEqual(
      [expect.stringContaining("not checked"), expect.stringContaining("without channel binding")],
    );
    expect(securityWarnings("postgres://stint@db/app?sslmode=verify-ca", {})).toEqual([
      expect.stringContaining("host name is not checked"),
    ]);
  });
});

describe("addresses", () => {
  it("parses a plain URL", () => {
    expect(parseAddress("postgres://postgres@127.0.0.1:5432/app")).toEqual({
      host: "127.0.0.1",
      port: 5432,
      user: "postgres",
      database: "app",
      // TLS with chain and host name checks unless the address opts out.
      ssl: "verify-full",
      applicationName: "stint",
    });
    expect(parseAddress("postgresql://admin%40corp@[::1]/?sslmode=verify-full&application_name=x")).toEqual({
      host: "::1",
      port: 5432,
      user: "admin@corp",
      database: "admin@corp",
      ssl: "verify-full",
      applicationName: "x",
    });
  });
  it.each([
    ["postgres://postgres:hunter2@db/app", /must not contain a password/],
    ["postgres://postgres@db/app?password=hunter2", /not password/],
    ["mysql://root@db/app", /postgres:\/\//],
    ["postgres://db/app", /admin user/],
    ["db:5432", /postgres:\/\//],
    ["not a url", /must be a URL/],
    ["postgres://postgres@db/app?sslmode=allow", /sslmode/],
    ["postgres://postgres@db/app/extra", /just the database/],
  ])("refuses %s without repeating it", (address, problem) => {
    const problems = checkAddress(address);
    expect(problems.join("\n")).toMatch(problem);
    for (const line of problems) expect(line).not.toContain("hunter2");
  });
});

describe("SQL", () => {
  it("quotes both names", () => {
    expect(provisionSql("a.b@c", { kind: "role", role: "readers" })).toBe('GRANT "readers" TO "a.b@c"');
    expect(revokeSql("a.b@c", { kind: "role", role: "readers" })).toBe('REVOKE "readers" FROM "a.b@c"');
    expect(revokeSql("a", { kind: "role", role: "r" }, "boss")).toBe('REVOKE "r" FROM "a" GRANTED BY "boss"');
    expect(provisionSql("Alice", { kind: "attribute", attribute: "CREATEDB" })).toBe(
      'ALTER ROLE "Alice" WITH CREATEDB',
    );
    expect(revokeSql("Alice", { kind: "attribute", attribute: "CREATEDB" })).toBe('ALTER ROLE "Alice" WITH NOCREATEDB');
  });
  it("sorts by code point and drops duplicates", () => {
    expect(sortedUnique(["b", "B", "a", "b", "_"])).toEqual(["B", "_", "a", "b"]);
  });
});

describe("classifyFailure", () => {
  const context = { where: "db:5432", credential: "s3cret-pw" };
  const serverError = (code: string, message: string) => Object.assign(new Error(message), { code, severity: "ERROR" });
  it.each([
    [serverError("42704", 'role "x" does not exist'), "refused", 'role "x" does not exist'],
    [serverError("42501", "permission denied to grant role"), "refused", "permission denied"],
    [serverError("28P01", 'password authentication failed for user "postgres"'), "refused", "password"],
    [serverError("3D000", 'database "nope" does not exist'), "refused", "nope"],
    [serverError("53300", "sorry, too many clients already"), "unavailable", "too many clients"],
    [serverError("57P03", "the database system is starting up"), "unavailable", "starting up"],
    [serverError("57014", "canceling statement due to statement timeout"), "unavailable", "timeout"],
    [serverError("55P03", "canceling statement due to lock timeout"), "unavailable", "lock timeout"],
    [
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }),
      "unavailable",
      "cannot reach",
    ],
    [new Error("timeout expired"), "unavailable", "did not answer in time"],
    [new Error("Connection terminated unexpectedly"), "unavailable", "was lost"],
    [new Error("SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string"), "refused", "credential"],
    [new Error("The server does not support SSL connections"), "refused", "TLS"],
    [new Error("something odd"), "unavailable", "something odd"],
    ["a thrown string", "unavailable", "a thrown string"],
  ])("%s → %s", (error, reason, words) => {
    const failure = classifyFailure(error, context);
    expect(failure).toBeInstanceOf(ConnectorError);
    expect(failure.reason).toBe(reason);
    expect(failure.message).toContain(words);
  });
  it("removes the other secrets too", () => {
    const failure = classifyFailure(serverError("42601", "syntax error at or near 'pw-1' and pw-2"), {
      ...context,
      secrets: ["pw-1", "pw-2"],
    });
    expect(failure.message).toBe("syntax error at or near '***' and ***");
  });
  it("removes the credential from every message", () => {
    for (const error of [
      serverError("XX000", "internal: s3cret-pw leaked"),
      serverError("08006", "s3cret-pw"),
      new Error("weird s3cret-pw"),
      new ConnectorError("refused", "s3cret-pw again"),
    ])
      expect(classifyFailure(error, context).message).not.toContain("s3cret-pw");
  });
});
