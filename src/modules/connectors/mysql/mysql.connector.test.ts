import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import mysql from "mysql2/promise";
import type { Connection, RowDataPacket } from "mysql2/promise";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectorError, type ConnectorTarget } from "../connector.types.js";
import { checkAddress, mysqlConnector } from "./mysql.connector.js";
import { holdMariadb } from "../../../testing/mariadb.js";
import { passwordProblem, quotePassword } from "./mysql.rules.js";

// A MariaDB (or MySQL) server the tests may create accounts on, as root with an empty password.
const HOST = "127.0.0.1";
const PORT = 3306;

const hex = randomBytes(4).toString("hex");
const db = `stint_t_${hex}`;
/** Matches `db` only if `_` were left a wildcard in a database-level grant. */
const lookalikeDb = db.replace(/_/g, "0");
const role = `stint_r_${hex}`;
const adminRole = `stint_ra_${hex}`;
const missingRole = `stint_missing_${hex}`;
const admin = `stint_adm_${hex}`;
const user = `stint_t_${hex}`;
const otherUser = `stint_o_${hex}`;
const superUser = `stint_s_${hex}`;
const allUser = `stint_a_${hex}`;
const roleAdminUser = `stint_m_${hex}`;
const dynUser = `stint_d_${hex}`;
const dynTableUser = `stint_dt_${hex}`;
const dynGhost = `stint_dg_${hex}`;
const adminPassword = `pw-${randomBytes(12).toString("hex")}`;
const userPassword = `pw-${randomBytes(12).toString("hex")}`;

const target: ConnectorTarget = {
  name: "test-db",
  address: `mysql://${admin}@${HOST}:${PORT}?sslmode=disable`,
  options: { ignore: ["root", "mysql", "mariadb.sys"] },
  credential: adminPassword,
};

let root: Connection;
const opened: Connection[] = [];

async function connectAs(login: string, password = userPassword): Promise<Connection> {
  const connection = await mysql.createConnection({ host: HOST, port: PORT, user: login, password });
  // A connection killed while idle reports it as an 'error' event; the next query fails anyway.
  connection.on("error", () => undefined);
  opened.push(connection);
  return connection;
}

/** SELECT through a fresh connection, as a user would after activation. */
async function freshSelect(login: string, from = `${db}.items`): Promise<unknown> {
  const connection = await connectAs(login);
  try {
    const [rows] = await connection.query(`SELECT name FROM ${from}`);
    return rows;
  } finally {
    await connection.end();
  }
}

async function freshSelectAs(login: string, password: string): Promise<unknown> {
  const connection = await connectAs(login, password);
  try {
    const [rows] = await connection.query(`SELECT name FROM ${db}.items`);
    return rows;
  } finally {
    await connection.end();
  }
}

async function rootRows(sql: string, values?: unknown[]): Promise<RowDataPacket[]> {
  const [rows] = await root.query(sql, values);
  return rows as RowDataPacket[];
}

async function expectConnectorError(promise: Promise<unknown>, reason: "refused" | "unavailable"): Promise<string> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  expect((error as ConnectorError).reason).toBe(reason);
  const message = (error as ConnectorError).message;
  expect(message).not.toContain(adminPassword);
  return message;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

let releaseMariadb: (() => Promise<void>) | undefined;

beforeAll(async () => {
  // Another test file stops and restarts this server (the revocation outage): never at the same time.
  releaseMariadb = await holdMariadb();
  root = await mysql.createConnection({ host: HOST, port: PORT, user: "root", password: "" });
  for (const name of [db, lookalikeDb]) {
    await root.query(`CREATE DATABASE \`${name}\``);
    await root.query(`CREATE TABLE \`${name}\`.items (name VARCHAR(20))`);
    await root.query(`INSERT INTO \`${name}\`.items VALUES ('apple')`);
  }
  await root.query(`CREATE USER '${admin}'@'%' IDENTIFIED BY '${adminPassword}'`);
  await root.query(`GRANT ALL PRIVILEGES ON *.* TO '${admin}'@'%' WITH GRANT OPTION`);
  for (const login of [user, otherUser, superUser, allUser, roleAdminUser])
    await root.query(`CREATE USER '${login}'@'%' IDENTIFIED BY '${userPassword}'`);
  await root.query(`CREATE USER '${allUser}'@'localhost' IDENTIFIED BY '${userPassword}'`);
  await root.query(`CREATE ROLE ${role} WITH ADMIN '${admin}'@'%'`);
  await root.query(`GRANT SELECT ON \`${db}\`.* TO ${role}`);
  await root.query(`CREATE ROLE ${adminRole}`);
  await root.query(`GRANT ${adminRole} TO '${admin}'@'%' WITH ADMIN OPTION`);
  await root.query(`GRANT CREATE USER ON *.* TO ${adminRole}`);
  await root.query(`GRANT ${adminRole} TO '${roleAdminUser}'@'%'`);
  await root.query(`GRANT SUPER ON *.* TO '${superUser}'@'%'`);
  await root.query(`GRANT ALL PRIVILEGES ON *.* TO '${allUser}'@'%' WITH GRANT OPTION`);
  await root.query(`GRANT SUPER ON *.* TO '${allUser}'@'localhost'`);
});

afterAll(async () => {
  for (const connection of opened) connection.destroy();
  if (!root) return releaseMariadb?.();
  for (const login of [admin, user, otherUser, superUser, allUser, roleAdminUser, dynUser, dynTableUser, dynGhost])
    await root.query(`DROP USER IF EXISTS '${login}'@'%'`);
  await root.query(`DROP USER IF EXISTS '${allUser}'@'localhost'`);
  for (const name of [role, adminRole]) await root.query(`DROP ROLE IF EXISTS ${name}`);
  for (const name of [db, lookalikeDb]) await root.query(`DROP DATABASE IF EXISTS \`${name}\``);
  await root.end();
  await releaseMariadb?.();
});

describe("checkAddress", () => {
  it("accepts mysql:// and mariadb:// and refuses a password in the URL", () => {
    expect(checkAddress(target.address)).toEqual([]);
    expect(checkAddress(`mariadb://${admin}@${HOST}:${PORT}`)).toEqual([]);
    expect(checkAddress(`mysql://${admin}:${adminPassword}@${HOST}:${PORT}`).join(" ")).not.toContain(adminPassword);
    expect(checkAddress(`mysql://${admin}:${adminPassword}@${HOST}:${PORT}`)).toHaveLength(1);
  });
});

describe("test()", () => {
  it("names the server version and the admin account", async () => {
    const { detail } = await mysqlConnector.test(target);
    expect(detail).toMatch(/MariaDB|MySQL/);
    expect(detail).toContain(admin);
  });

  it("refuses an account that may not grant", async () => {
    const weak = {
      ...target,
      address: `mysql://${otherUser}@${HOST}:${PORT}?sslmode=disable`,
      credential: userPassword,
    };
    const message = await expectConnectorError(mysqlConnector.test(weak), "refused");
    expect(message).toContain("may not grant");
  });
});

describe("role entitlement", () => {
  const grant = { login: user, entitlement: { role } };

  it("is refused to the account before provisioning", async () => {
    await expect(freshSelect(user)).rejects.toThrow(/denied/i);
    expect(await mysqlConnector.observe(target, { role })).toEqual([]);
  });

  it("provision lets a fresh connection read, and is idempotent", async () => {
    await mysqlConnector.provision(target, grant);
    await mysqlConnector.provision(target, grant);
    expect(await freshSelect(user)).toEqual([{ name: "apple" }]);
    expect(await mysqlConnector.observe(target, { role })).toEqual([user]);
  });

  it("revoke kills an open connection, refuses fresh ones, and is idempotent", async () => {
    const held = await connectAs(user);
    await held.query(`SELECT name FROM ${db}.items`);
    await mysqlConnector.revoke(target, grant);
    await expect(held.query("SELECT 1")).rejects.toThrow();
    await expect(freshSelect(user)).rejects.toThrow(/denied/i);
    expect(await mysqlConnector.observe(target, { role })).toEqual([]);
    const [account] = await rootRows("SELECT default_role FROM mysql.user WHERE User = ? AND Host = '%'", [user]);
    expect(account?.default_role).toBe("");
    await mysqlConnector.revoke(target, grant);
  });

  it("does not create an account that does not exist", async () => {
    const ghost = `stint_g_${hex}`;
    const message = await expectConnectorError(
      mysqlConnector.provision(target, { login: ghost, entitlement: { role } }),
      "refused",
    );
    expect(message).toContain("does not exist");
    expect(await rootRows("SELECT 1 FROM mysql.user WHERE User = ?", [ghost])).toEqual([]);
    await mysqlConnector.revoke(target, { login: ghost, entitlement: { role } });
  });
});

describe("privilege-set entitlement", () => {
  const onDb = { privileges: ["select"], on: `${db}.*` };
  const onTable = { privileges: ["SELECT", "INSERT"], on: `${db}.items` };

  it("provision on db.* grants exactly that database, and is idempotent", async () => {
    await mysqlConnector.provision(target, { login: otherUser, entitlement: onDb });
    await mysqlConnector.provision(target, { login: otherUser, entitlement: onDb });
    expect(await freshSelect(otherUser)).toEqual([{ name: "apple" }]);
    // `_` in the database name must not act as a wildcard.
    await expect(freshSelect(otherUser, `${lookalikeDb}.items`)).rejects.toThrow(/denied/i);
    expect(await mysqlConnector.observe(target, onDb)).toEqual([otherUser]);
    expect(await mysqlConnector.observe(target, { privileges: ["SELECT", "INSERT"], on: `${db}.*` })).toEqual([]);
  });

  it("revoke on db.* kills an open connection and refuses fresh ones", async () => {
    const held = await connectAs(otherUser);
    await held.query(`SELECT name FROM ${db}.items`);
    await mysqlConnector.revoke(target, { login: otherUser, entitlement: onDb });
    await expect(held.query("SELECT 1")).rejects.toThrow();
    await expect(freshSelect(otherUser)).rejects.toThrow(/denied/i);
    expect(await mysqlConnector.observe(target, onDb)).toEqual([]);
    await mysqlConnector.revoke(target, { login: otherUser, entitlement: onDb });
  });

  it("grants and revokes on one table", async () => {
    await mysqlConnector.provision(target, { login: otherUser, entitlement: onTable });
    const connection = await connectAs(otherUser);
    await connection.query(`INSERT INTO ${db}.items VALUES ('pear')`);
    expect(await mysqlConnector.observe(target, onTable)).toEqual([otherUser]);
    await mysqlConnector.revoke(target, { login: otherUser, entitlement: onTable });
    await expect(connection.query("SELECT 1")).rejects.toThrow();
    await expect(freshSelect(otherUser)).rejects.toThrow(/denied/i);
    expect(await mysqlConnector.observe(target, onTable)).toEqual([]);
    await mysqlConnector.revoke(target, { login: otherUser, entitlement: onTable });
  });

  it("observes ALL PRIVILEGES from the grant tables", async () => {
    const all = { privileges: ["ALL"], on: `${db}.*` };
    await mysqlConnector.provision(target, {
      login: otherUser,
      entitlement: { privileges: ["SELECT"], on: `${db}.*` },
    });
    expect(await mysqlConnector.observe(target, all)).toEqual([]);
    await mysqlConnector.provision(target, { login: otherUser, entitlement: all });
    expect(await mysqlConnector.observe(target, all)).toEqual([otherUser]);
    await mysqlConnector.revoke(target, { login: otherUser, entitlement: all });
    expect(await mysqlConnector.observe(target, all)).toEqual([]);
    expect(await mysqlConnector.observe(target, { privileges: ["SELECT"], on: `${db}.*` })).toEqual([]);
  });

  it("grants and revokes WITH GRANT OPTION", async () => {
    const withGrant = { privileges: ["SELECT", "GRANT OPTION"], on: `${db}.*` };
    await mysqlConnector.provision(target, {
      login: otherUser,
      entitlement: { privileges: ["SELECT"], on: `${db}.*` },
    });
    expect(await mysqlConnector.observe(target, withGrant)).toEqual([]);
    await mysqlConnector.provision(target, { login: otherUser, entitlement: withGrant });
    expect(await mysqlConnector.observe(target, withGrant)).toEqual([otherUser]);
    await mysqlConnector.revoke(target, { login: otherUser, entitlement: withGrant });
    await mysqlConnector.revoke(target, { login: otherUser, entitlement: withGrant });
    expect(await mysqlConnector.observe(target, { privileges: ["SELECT"], on: `${db}.*` })).toEqual([]);
    const grants = await rootRows(`SHOW GRANTS FOR '${otherUser}'@'%'`);
    expect(grants.map((row) => String(Object.values(row)[0])).join("\n")).not.toContain(db);
  });

  it("leaves sessions alone when terminateSessions is false", async () => {
    const gentle = { ...target, options: { ...target.options, terminateSessions: false } };
    await mysqlConnector.provision(gentle, { login: otherUser, entitlement: onDb });
    const held = await connectAs(otherUser);
    await mysqlConnector.revoke(gentle, { login: otherUser, entitlement: onDb });
    await expect(held.query("SELECT 1")).resolves.toBeDefined();
    await held.end();
  });
});

describe("discover()", () => {
  it("lists global admin accounts and holders of privileged roles, removable where mapped", async () => {
    const held = await connectAs(superUser);
    const found = (
      await mysqlConnector.discover({ ...target, options: { ...target.options, privilegedRoles: [role] } })
    ).filter((access) => access.login.includes(hex));
    expect(found.map((access) => access.login)).toEqual(
      [allUser, `${allUser}@localhost`, roleAdminUser, superUser].sort((a, b) => a.localeCompare(b)),
    );
    const byLogin = Object.fromEntries(found.map((access) => [access.login, access]));
    expect(byLogin[allUser]).toMatchObject({
      privilege: "ALL PRIVILEGES ON *.* WITH GRANT OPTION",
      entitlement: { privileges: ["ALL PRIVILEGES", "GRANT OPTION"], on: "*.*" },
      lastActivity: null,
    });
    expect(byLogin[`${allUser}@localhost`]).toMatchObject({ privilege: "SUPER ON *.*", entitlement: null });
    expect(byLogin[roleAdminUser]).toMatchObject({ entitlement: { role: adminRole } });
    expect(byLogin[superUser]).toMatchObject({ entitlement: { privileges: ["SUPER"], on: "*.*" } });
    expect(byLogin[superUser]!.lastActivity).not.toBeNull();
    expect(found.some((access) => access.login === admin)).toBe(false);
    await held.end();
  });

  it("lists holders of privilegedRoles", async () => {
    await mysqlConnector.provision(target, { login: user, entitlement: { role } });
    const withRole = await mysqlConnector.discover({
      ...target,
      options: { ...target.options, privilegedRoles: [role] },
    });
    expect(withRole.find((access) => access.login === user)?.entitlement).toEqual({ role });
    const without = await mysqlConnector.discover(target);
    expect(without.some((access) => access.login === user)).toBe(false);
    await mysqlConnector.revoke(target, { login: user, entitlement: { role } });
  });

  it("revoking a discovered entitlement removes it", async () => {
    for (const login of [allUser, superUser, roleAdminUser]) {
      const access = (await mysqlConnector.discover(target)).find((a) => a.login === login)!;
      await mysqlConnector.revoke(target, { login, entitlement: access.entitlement! });
    }
    const left = (await mysqlConnector.discover(target)).filter((access) => access.login.includes(hex));
    expect(left.map((access) => access.login)).toEqual([`${allUser}@localhost`]);
    const grants = await rootRows(`SHOW GRANTS FOR '${allUser}'@'%'`);
    expect(grants.map((row) => Object.values(row)[0])).toEqual([expect.stringMatching(/^GRANT USAGE ON \*\.\*/)]);
  });
});

describe("dynamic logins", () => {
  const dynRole = { role, dynamic: true };
  const dynTable = { privileges: ["SELECT"], on: `${db}.items`, dynamic: true };
  const validUntil = new Date(Date.now() + 3_600_000);
  // Quotes, a backslash and non-ASCII: each would break or change a naively quoted literal.
  const password = `p'w"\\x é😀-${randomBytes(6).toString("hex")}`;
  const newPassword = `n\\'${randomBytes(6).toString("hex")}`;

  async function signIn(login: string, pass: string): Promise<Connection> {
    return connectAs(login, pass);
  }

  async function expectNoPassword(promise: Promise<unknown>, reason: "refused" | "unavailable", ...secrets: string[]) {
    const message = await expectConnectorError(promise, reason);
    for (const secret of secrets) expect(message).not.toContain(secret);
    return message;
  }

  it("accepts dynamic: true next to a role or a privilege set", () => {
    expect(mysqlConnector.checkEntitlement(dynRole)).toEqual([]);
    expect(mysqlConnector.checkEntitlement(dynTable)).toEqual([]);
    expect(mysqlConnector.checkEntitlement({ role, dynamic: "yes" })).toHaveLength(1);
  });

  it("createLogin mints an account that signs in with the password and holds the role", async () => {
    await mysqlConnector.createLogin!(target, { login: dynUser, password, entitlement: dynRole, validUntil });
    const connection = await signIn(dynUser, password);
    const [rows] = await connection.query(`SELECT name FROM ${db}.items`);
    expect(rows).toContainEqual({ name: "apple" });
    await connection.end();
    await expect(signIn(dynUser, `${password}x`)).rejects.toThrow(/denied/i);
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password })).toBe(true);
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: `${password}x` })).toBe(false);
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: "" })).toBe(false);
    expect(await mysqlConnector.observe(target, dynRole)).toEqual([dynUser]);
  });

  it("createLogin is idempotent: a retry re-keys the account and grants again", async () => {
    await mysqlConnector.createLogin!(target, { login: dynUser, password, entitlement: dynRole, validUntil });
    // A retry whose first attempt died after CREATE USER, before the grant.
    await mysqlConnector.revoke(target, { login: dynUser, entitlement: { role } });
    expect(await mysqlConnector.observe(target, dynRole)).toEqual([]);
    await mysqlConnector.createLogin!(target, { login: dynUser, password, entitlement: dynRole, validUntil });
    expect(await rootRows("SELECT Host FROM mysql.user WHERE User = ?", [dynUser])).toEqual([{ Host: "%" }]);
    expect(await freshSelectAs(dynUser, password)).toContainEqual({ name: "apple" });
  });

  it("createLogin grants a privilege set and nothing more", async () => {
    await mysqlConnector.createLogin!(target, {
      login: dynTableUser,
      password,
      entitlement: dynTable,
      validUntil,
    });
    const connection = await signIn(dynTableUser, password);
    const [rows] = await connection.query(`SELECT name FROM ${db}.items`);
    expect(rows).toContainEqual({ name: "apple" });
    await expect(connection.query(`INSERT INTO ${db}.items VALUES ('x')`)).rejects.toThrow(/denied/i);
    await connection.end();
    expect(await mysqlConnector.observe(target, dynTable)).toEqual([dynTableUser]);
  });

  it("createLogin with a role that does not exist is refused and leaves no account", async () => {
    const message = await expectNoPassword(
      mysqlConnector.createLogin!(target, {
        login: dynGhost,
        password,
        entitlement: { role: missingRole, dynamic: true },
        validUntil,
      }),
      "refused",
      password,
    );
    expect(message).toContain("Invalid role specification");
    expect(await rootRows("SELECT 1 FROM mysql.user WHERE User = ?", [dynGhost])).toEqual([]);
  });

  it("setPassword: the old password stops working, the new one works", async () => {
    await mysqlConnector.setPassword!(target, { login: dynUser, password: newPassword });
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password })).toBe(false);
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: newPassword })).toBe(true);
    await expect(signIn(dynUser, password)).rejects.toThrow(/denied/i);
    expect(await freshSelectAs(dynUser, newPassword)).toContainEqual({ name: "apple" });
  });

  it("setPassword with endSessions ends the connections opened with the old password (finding 49)", async () => {
    const held = await signIn(dynUser, newPassword);
    const rotated = `r\\${randomBytes(6).toString("hex")}`;
    await mysqlConnector.setPassword!(target, { login: dynUser, password: rotated, endSessions: true });
    await expect(held.query("SELECT 1")).rejects.toThrow();
    await mysqlConnector.setPassword!(target, { login: dynUser, password: newPassword });
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: newPassword })).toBe(true);
  });

  it("verifyPassword says false for a locked account and an expired password", async () => {
    try {
      await root.query(`ALTER USER '${dynUser}'@'%' ACCOUNT LOCK`);
      expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: newPassword })).toBe(false);
      await root.query(`ALTER USER '${dynUser}'@'%' ACCOUNT UNLOCK PASSWORD EXPIRE`);
      expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: newPassword })).toBe(false);
    } finally {
      await root.query(`ALTER USER '${dynUser}'@'%' ACCOUNT UNLOCK`);
      await mysqlConnector.setPassword!(target, { login: dynUser, password: newPassword });
    }
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: newPassword })).toBe(true);
  });

  it("setPassword refuses an account that does not exist, without creating it", async () => {
    const message = await expectNoPassword(
      mysqlConnector.setPassword!(target, { login: dynGhost, password: newPassword }),
      "refused",
      newPassword,
    );
    expect(message).toContain("does not exist");
    expect(await rootRows("SELECT 1 FROM mysql.user WHERE User = ?", [dynGhost])).toEqual([]);
  });

  it("refuses an empty password or one with NUL without repeating it", async () => {
    const spec = { login: dynGhost, entitlement: dynRole, validUntil };
    await expectNoPassword(mysqlConnector.createLogin!(target, { ...spec, password: "" }), "refused");
    const withNul = `secret-${hex}\0x`;
    await expectNoPassword(
      mysqlConnector.setPassword!(target, { login: dynUser, password: withNul }),
      "refused",
      withNul,
      `secret-${hex}`,
    );
  });

  it("dropLogin kills the open connection and drops the account; again is fine", async () => {
    const held = await signIn(dynUser, newPassword);
    await held.query(`SELECT name FROM ${db}.items`);
    await mysqlConnector.dropLogin!(target, { login: dynUser });
    await expect(held.query("SELECT 1")).rejects.toThrow();
    expect(await rootRows("SELECT 1 FROM mysql.user WHERE User = ?", [dynUser])).toEqual([]);
    await expect(signIn(dynUser, newPassword)).rejects.toThrow(/denied/i);
    expect(await mysqlConnector.verifyPassword!(target, { login: dynUser, password: newPassword })).toBe(false);
    expect(await mysqlConnector.observe(target, dynRole)).toEqual([]);
    await mysqlConnector.dropLogin!(target, { login: dynUser });
    await mysqlConnector.dropLogin!(target, { login: dynTableUser });
    expect(await rootRows("SELECT 1 FROM mysql.user WHERE User = ?", [dynTableUser])).toEqual([]);
  });

  it("dropLogin refuses to drop the admin account itself", async () => {
    await expectConnectorError(mysqlConnector.dropLogin!(target, { login: admin }), "refused");
    expect(await rootRows("SELECT 1 FROM mysql.user WHERE User = ?", [admin])).toHaveLength(1);
  });

  it("a closed port is unavailable for every credential operation, without the password", async () => {
    const closed = { ...target, address: `mysql://${admin}@${HOST}:${await freePort()}?sslmode=disable` };
    await expectNoPassword(
      mysqlConnector.verifyPassword!(closed, { login: dynUser, password }),
      "unavailable",
      password,
    );
    await expectNoPassword(
      mysqlConnector.createLogin!(closed, { login: dynUser, password, entitlement: dynRole, validUntil }),
      "unavailable",
      password,
    );
    await expectNoPassword(mysqlConnector.setPassword!(closed, { login: dynUser, password }), "unavailable", password);
    await expectNoPassword(mysqlConnector.dropLogin!(closed, { login: dynUser }), "unavailable");
  });

  it("quotes any password so the server reads it back unchanged, with and without NO_BACKSLASH_ESCAPES", async () => {
    const [[mode]] = (await root.query("SELECT @@SESSION.sql_mode AS mode")) as [RowDataPacket[], unknown];
    const samples = fc.sample(
      fc.string({ unit: "binary", minLength: 1 }).filter((s) => passwordProblem(s) === null),
      200,
    );
    samples.push("\\", "'", "\\'", "''\\\\", "a\\nb", "%_", "\u001a", password, newPassword);
    try {
      for (const backslashEscapes of [true, false]) {
        await root.query(
          backslashEscapes ? "SET SESSION sql_mode = ''" : "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'",
        );
        for (const sample of samples) {
          const [[row]] = (await root.query(`SELECT ${quotePassword(sample, backslashEscapes)} AS v`)) as [
            RowDataPacket[],
            unknown,
          ];
          expect(row?.v).toBe(sample);
        }
      }
    } finally {
      await root.query("SET SESSION sql_mode = ?", [String(mode?.mode)]);
    }
  });
});

describe("failures", () => {
  it("a closed port is unavailable", async () => {
    const closed = { ...target, address: `mysql://${admin}@${HOST}:${await freePort()}?sslmode=disable` };
    await expectConnectorError(mysqlConnector.test(closed), "unavailable");
    await expectConnectorError(mysqlConnector.provision(closed, { login: user, entitlement: { role } }), "unavailable");
  });

  it("a nonexistent role is refused in the server's words", async () => {
    const message = await expectConnectorError(
      mysqlConnector.provision(target, { login: user, entitlement: { role: missingRole } }),
      "refused",
    );
    expect(message).toContain(`Invalid role specification`);
    expect(message).toContain(missingRole);
  });

  it("a wrong admin password is refused without echoing the credential", async () => {
    const wrong = { ...target, credential: `${adminPassword}-wrong` };
    const message = await expectConnectorError(mysqlConnector.test(wrong), "refused");
    expect(message).toMatch(/Access denied/);
    expect(message).not.toContain(wrong.credential);
  });

  it("an aborted call is unavailable", async () => {
    const controller = new AbortController();
    controller.abort();
    await expectConnectorError(mysqlConnector.observe(target, { role }, { signal: controller.signal }), "unavailable");
  });

  it("an abort while a query is blocked ends the call and its connection", async () => {
    const locker = await connectAs("root", "");
    await locker.query("LOCK TABLES mysql.global_priv WRITE");
    try {
      const controller = new AbortController();
      const call = mysqlConnector.provision(
        target,
        { login: user, entitlement: { role } },
        { signal: controller.signal },
      );
      let blocked = false;
      while (!blocked) {
        const rows = await rootRows(
          "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO LIKE 'SELECT 1 FROM mysql.user%'",
          [admin],
        );
        blocked = rows.length > 0;
      }
      controller.abort();
      await expectConnectorError(call, "unavailable");
    } finally {
      await locker.query("UNLOCK TABLES");
      await locker.end();
    }
  });

  it("refuses an invalid login or entitlement before connecting", async () => {
    await expectConnectorError(
      mysqlConnector.provision(target, { login: "x' OR 1", entitlement: { role } }),
      "refused",
    );
    await expectConnectorError(
      mysqlConnector.provision(target, { login: user, entitlement: { privileges: ["SELECT"], on: "`x`.*" } }),
      "refused",
    );
  });

  it("leaves no admin connection open", async () => {
    let open = Infinity;
    for (let attempt = 0; attempt < 50 && open > 0; attempt += 1) {
      open = (await rootRows("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", [admin])).length;
      if (open > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(open).toBe(0);
  });
});
