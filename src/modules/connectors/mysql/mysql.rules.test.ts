import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { escapeId } from "mysql2";
import { ConnectorError } from "../connector.types.js";
import {
  accountSql,
  adminPrivileges,
  checkAddress,
  checkEntitlement,
  checkLogin,
  checkOptions,
  classifyError,
  grantPrivilegesSql,
  granteeOfCurrentUser,
  isIgnored,
  parseAddress,
  parseEntitlement,
  parseGrantee,
  passwordProblem,
  quoteIdentifier,
  quotePassword,
  quoteString,
  readOptions,
  revokePrivilegesSql,
  securityWarnings,
  upstreamTls,
} from "./mysql.rules.js";

describe("addresses", () => {
  it("parses mysql:// and mariadb:// with the default port; no sslmode is verify-full", () => {
    expect(parseAddress("mysql://root@127.0.0.1:3306")).toEqual({
      host: "127.0.0.1",
      port: 3306,
      user: "root",
      ssl: "verify-full",
    });
    expect(parseAddress("mariadb://admin@db.example.com")).toEqual({
      host: "db.example.com",
      port: 3306,
      user: "admin",
      ssl: "verify-full",
    });
    expect(parseAddress("mysql://root@[::1]:3307/?sslmode=disable")).toEqual({
      host: "::1",
      port: 3307,
      user: "root",
      ssl: "disable",
    });
  });

  it("sslmode: TLS towards the database as for PostgreSQL targets; other parameters refused", () => {
    const address = parseAddress("mysql://root@db.example.com?sslmode=verify-full");
    expect(address).toMatchObject({ ssl: "verify-full" });
    if ("problems" in address) throw new Error("refused");
    expect(upstreamTls(address, { tls: { ca: "PEM" } })).toEqual({ mode: "verify-full", ca: "PEM" });
    expect(upstreamTls({ ...address, ssl: "disable" }, {})).toBeNull();
    expect(checkAddress("mysql://root@db.example.com?sslmode=prefer")).toEqual([
      "sslmode must be one of disable, require, verify-ca, verify-full",
    ]);
    expect(checkAddress("mysql://root@db.example.com?ssl=true")).toEqual([
      "address may carry only sslmode as a parameter, not ssl",
    ]);
    expect(checkOptions({ tls: { ca: 3 } })).toEqual(["options.tls must be { ca: <PEM CA bundle> }"]);
    expect(checkOptions({ tls: { ca: "PEM" } })).toEqual([]);
  });

  it("an address without sslmode means TLS with the certificate and its host name checked", () => {
    const address = parseAddress("mysql://root@db.example.com:3306");
    if ("problems" in address) throw new Error("refused");
    expect(upstreamTls(address, {})).toEqual({ mode: "verify-full", ca: null });
    expect(securityWarnings("mysql://root@db.example.com:3306", {})).toEqual([]);
  });

  it("warns about sslmode=disable towards another machine, and about unchecked certificates", () => {
    const clear =
      "sslmode=disable: Stint talks to this database in clear (its passwords, queries and results cross the network)";
    expect(securityWarnings("mysql://root@db.example.com?sslmode=disable", {})).toEqual([clear]);
    expect(securityWarnings("mysql://root@10.0.0.5:3306?sslmode=disable", {})).toEqual([clear]);
    expect(securityWarnings("mysql://root@[::ffff:10.0.0.5]?sslmode=disable", {})).toEqual([clear]);
    // Loopback traffic does not leave the machine.
    for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "[::1]", "[::ffff:127.0.0.1]"])
      expect(securityWarnings(`mysql://root@${host}:3306?sslmode=disable`, {}), host).toEqual([]);
    expect(securityWarnings("mysql://root@db?sslmode=require", {})).toEqual([
      "sslmode=require: the server certificate is not checked, so anyone in the path can pose as it",
    ]);
    expect(securityWarnings("mysql://root@127.0.0.1?sslmode=require", {})).toHaveLength(1);
    expect(securityWarnings("mysql://root@db?sslmode=verify-ca", {})).toHaveLength(1);
    expect(securityWarnings("mysql://root@db?sslmode=verify-full", {})).toEqual([]);
  });

  it("refuses an embedded password without repeating it", () => {
    const problems = checkAddress("mysql://root:hunter2@127.0.0.1:3306");
    expect(problems).toHaveLength(1);
    expect(problems.join(" ")).not.toContain("hunter2");
  });

  it.each([
    "postgres://root@127.0.0.1:5432",
    "http://root@127.0.0.1",
    "127.0.0.1:3306",
    "mysql://127.0.0.1:3306",
    "mysql://root@127.0.0.1:3306/app",
    "mysql://root@127.0.0.1:3306?ssl=false",
    "mysql://ro'ot@127.0.0.1",
  ])("refuses %s", (address) => {
    expect(checkAddress(address).length).toBeGreaterThan(0);
  });
});

describe("options", () => {
  it("fills in defaults", () => {
    expect(checkOptions({})).toEqual([]);
    expect(readOptions({})).toEqual({
      accountHost: "%",
      privilegedRoles: [],
      ignore: [],
      terminateSessions: true,
      expirySchema: "mysql",
    });
  });

  it("accepts every documented key", () => {
    const options = {
      accountHost: "10.0.%",
      privilegedRoles: ["dba"],
      ignore: ["root"],
      terminateSessions: false,
      expirySchema: "stint",
    };
    expect(checkOptions(options)).toEqual([]);
    expect(readOptions(options)).toEqual(options);
  });

  it.each([
    [{ accountHost: "'%'" }, "accountHost"],
    [{ accountHost: "" }, "accountHost"],
    [{ privilegedRoles: "dba" }, "privilegedRoles"],
    [{ privilegedRoles: ["a`b"] }, "privilegedRoles"],
    [{ ignore: [1] }, "ignore"],
    [{ terminateSessions: "yes" }, "terminateSessions"],
    [{ expirySchema: "a`b" }, "expirySchema"],
    [{ accounthost: "%" }, "accounthost"],
  ])("refuses %j naming the field", (options, field) => {
    const problems = checkOptions(options);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(field);
  });
});

describe("logins", () => {
  it.each(["alice", "_svc", "a.b", "x-1", "stint_t_0a1b", "A".repeat(80)])("accepts %s", (login) => {
    expect(checkLogin(login)).toEqual([]);
  });
  it.each(["", "a'b", "a`b", "a b", "a@b", "a\\b", "-x", ".x", "A".repeat(81), "é"])("refuses %j", (login) => {
    expect(checkLogin(login)).toHaveLength(1);
  });
});

describe("entitlements", () => {
  it.each([
    { role: "app_reader" },
    { role: "dba$1" },
    { privileges: ["SELECT"], on: "app.*" },
    { privileges: ["select", "Insert", " show  view "], on: "app.orders" },
    { privileges: ["ALL"], on: "*.*" },
    { privileges: ["SUPER", "CREATE USER", "GRANT OPTION"], on: "*.*" },
    { role: "app_reader", dynamic: true },
    { privileges: ["SELECT"], on: "app.*", dynamic: true },
    { role: "app_reader", dynamic: false },
  ])("accepts %j", (entitlement) => {
    expect(checkEntitlement(entitlement)).toEqual([]);
  });

  it("normalizes privilege names, sorted and without duplicates", () => {
    expect(parseEntitlement({ privileges: ["select", "all", "SELECT"], on: "app_db.*" })).toEqual({
      kind: "privileges",
      privileges: ["ALL PRIVILEGES", "SELECT"],
      on: { db: "app_db", table: null },
      dynamic: false,
    });
  });

  it.each([
    [{}],
    [{ role: "" }],
    [{ role: "NONE" }],
    [{ role: "public" }],
    [{ role: "a`b" }],
    [{ role: "r", privileges: ["SELECT"] }],
    [{ privileges: [], on: "app.*" }],
    [{ privileges: "SELECT", on: "app.*" }],
    [{ privileges: ["SELECT; DROP DATABASE app"], on: "app.*" }],
    [{ privileges: ["PROXY"], on: "*.*" }],
    [{ privileges: ["SUPER"], on: "app.*" }],
    [{ privileges: ["EXECUTE"], on: "app.t" }],
    [{ privileges: ["GRANT OPTION"], on: "app.*" }],
    [{ privileges: ["SELECT"], on: "app" }],
    [{ privileges: ["SELECT"], on: "*.t" }],
    [{ privileges: ["SELECT"], on: "a`b.*" }],
    [{ privileges: ["SELECT"], on: "a.b.c" }],
    [{ privileges: ["SELECT"], on: "app%.*" }],
    [{ privileges: ["SELECT"] }],
    [{ role: "r", dynamic: "true" }],
    [{ role: "r", dynamic: 1 }],
    [{ dynamic: true }],
  ])("refuses %j", (entitlement) => {
    expect(checkEntitlement(entitlement).length).toBeGreaterThan(0);
  });
});

describe("quoting", () => {
  it("quoteIdentifier agrees with mysql2's escapeId for unqualified names", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }).filter((s) => !s.includes("\0")),
        // escapeId(name, true): the second argument forbids treating dots as qualifiers.
        (name) => quoteIdentifier(name) === (escapeId as (v: string, forbidQualified: boolean) => string)(name, true),
      ),
    );
  });

  it("quoteString doubles quotes and refuses backslashes, whose meaning depends on sql_mode", () => {
    expect(quoteString("it's")).toBe("'it''s'");
    expect(() => quoteString("a\\'")).toThrow();
    fc.assert(
      fc.property(
        fc.string().filter((s) => !s.includes("\\") && !s.includes("\0")),
        (s) => {
          const quoted = quoteString(s);
          // Inside the outer quotes every quote is doubled, so the literal cannot end early.
          return quoted.slice(1, -1).replace(/''/g, "").includes("'") === false;
        },
      ),
    );
  });

  it("reads dynamic: true into the entitlement", () => {
    expect(parseEntitlement({ role: "app_reader", dynamic: true })).toEqual({
      kind: "role",
      role: "app_reader",
      dynamic: true,
    });
  });

  it("quotePassword doubles quotes, and backslashes only where they escape", () => {
    expect(quotePassword("it's", true)).toBe("'it''s'");
    expect(quotePassword("a\\'b", true)).toBe("'a\\\\''b'");
    expect(quotePassword("a\\'b", false)).toBe("'a\\''b'");
    for (const bad of ["", "x\0y", "a\uD800b"]) {
      expect(passwordProblem(bad)).not.toBeNull();
      expect(() => quotePassword(bad, true)).toThrow();
    }
    expect(passwordProblem("ok 😀")).toBeNull();
  });

  it("writes GRANT and REVOKE with an escaped database name for database-level grants", () => {
    const on = { db: "app_db", table: null };
    expect(grantPrivilegesSql(["SELECT", "INSERT"], on, "alice", "%")).toBe(
      "GRANT SELECT, INSERT ON `app\\_db`.* TO 'alice'@'%'",
    );
    expect(revokePrivilegesSql(["SELECT"], { db: "app_db", table: "t_1" }, "alice", "%")).toEqual([
      "REVOKE SELECT ON `app_db`.`t_1` FROM 'alice'@'%'",
    ]);
    expect(grantPrivilegesSql(["ALL PRIVILEGES", "GRANT OPTION"], { db: null, table: null }, "a", "%")).toBe(
      "GRANT ALL PRIVILEGES ON *.* TO 'a'@'%' WITH GRANT OPTION",
    );
    expect(revokePrivilegesSql(["ALL PRIVILEGES", "GRANT OPTION"], { db: null, table: null }, "a", "%")).toEqual([
      "REVOKE ALL PRIVILEGES ON *.* FROM 'a'@'%'",
      "REVOKE GRANT OPTION ON *.* FROM 'a'@'%'",
    ]);
    expect(grantPrivilegesSql(["ALL PRIVILEGES"], { db: null, table: null }, "a", "localhost")).toBe(
      "GRANT ALL PRIVILEGES ON *.* TO 'a'@'localhost'",
    );
    expect(() => grantPrivilegesSql(["SELECT; DROP"], on, "a", "%")).toThrow();
    expect(accountSql("alice", "10.0.%")).toBe("'alice'@'10.0.%'");
  });

  it("reads grantees as information_schema writes them", () => {
    expect(parseGrantee("'alice'@'%'")).toEqual({ user: "alice", host: "%" });
    expect(parseGrantee("'o''brien'@'localhost'")).toEqual({ user: "o'brien", host: "localhost" });
    expect(parseGrantee("alice@%")).toBeNull();
    expect(granteeOfCurrentUser("root@127.0.0.1")).toBe("'root'@'127.0.0.1'");
    expect(granteeOfCurrentUser("a@b@localhost")).toBe("'a@b'@'localhost'");
  });
});

describe("discovery rules", () => {
  const none = { Select_priv: "N", Grant_priv: "N", Super_priv: "N", Create_user_priv: "N", Drop_priv: "N" };

  it("finds nothing in an account without admin privileges", () => {
    expect(adminPrivileges({ ...none, Select_priv: "Y", Drop_priv: "Y" })).toBeNull();
  });

  it("names ALL PRIVILEGES when every column but Grant_priv is set", () => {
    const all = { Select_priv: "Y", Grant_priv: "Y", Super_priv: "Y", Create_user_priv: "Y", Drop_priv: "Y" };
    expect(adminPrivileges(all)).toEqual({
      privilege: "ALL PRIVILEGES ON *.* WITH GRANT OPTION",
      privileges: ["ALL PRIVILEGES", "GRANT OPTION"],
    });
    expect(adminPrivileges({ ...all, Grant_priv: "N" })).toEqual({
      privilege: "ALL PRIVILEGES ON *.*",
      privileges: ["ALL PRIVILEGES"],
    });
  });

  it("lists SUPER, CREATE USER and GRANT OPTION otherwise", () => {
    expect(adminPrivileges({ ...none, Super_priv: "Y" })).toEqual({ privilege: "SUPER ON *.*", privileges: ["SUPER"] });
    expect(adminPrivileges({ ...none, Create_user_priv: "Y", Grant_priv: "Y" })?.privileges).toEqual([
      "CREATE USER",
      "GRANT OPTION",
    ]);
  });

  it("ignores by user or by user@host", () => {
    expect(isIgnored(["root"], "root", "localhost")).toBe(true);
    expect(isIgnored(["mysql@localhost"], "mysql", "localhost")).toBe(true);
    expect(isIgnored(["mysql@localhost"], "mysql", "%")).toBe(false);
  });
});

describe("classifyError", () => {
  const context = { targetName: "db", host: "127.0.0.1", port: 3306, credential: "s3cret-pw" };

  it("calls network failures unavailable", () => {
    const error = classifyError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), context);
    expect(error).toBeInstanceOf(ConnectorError);
    expect(error.reason).toBe("unavailable");
  });

  it("keeps the server's words for a refusal, without the credential", () => {
    const error = classifyError(
      { errno: 1959, code: "ER_INVALID_ROLE", sqlMessage: "Invalid role specification `s3cret-pw`" },
      context,
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toBe("db: Invalid role specification `[credential]`");
  });

  it("calls lock waits and too many connections unavailable", () => {
    expect(classifyError({ errno: 1205, sqlMessage: "Lock wait timeout exceeded" }, context).reason).toBe(
      "unavailable",
    );
    expect(classifyError({ errno: 1040, sqlMessage: "Too many connections" }, context).reason).toBe("unavailable");
  });

  it("scrubs passwords a statement carries, and drops parse errors that may quote them", () => {
    const withPassword = { ...context, secrets: ["n3w-pw"] };
    const echoed = classifyError({ errno: 1819, sqlMessage: "policy says no to n3w-pw" }, withPassword);
    expect(echoed.reason).toBe("refused");
    expect(echoed.message).toBe("db: policy says no to [credential]");
    const parse = classifyError(
      { errno: 1064, sqlMessage: "You have an error in your SQL syntax near 'w-pw'' at line 1" },
      withPassword,
    );
    expect(parse.reason).toBe("refused");
    expect(parse.message).not.toContain("w-pw");
  });

  it("wraps unknown errors without their message", () => {
    const error = classifyError(new Error("something with s3cret-pw inside"), context);
    expect(error.reason).toBe("unavailable");
    expect(error.message).not.toContain("s3cret-pw");
  });
});
