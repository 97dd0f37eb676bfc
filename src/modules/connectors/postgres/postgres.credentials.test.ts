/**
 * Dynamic logins and password rotation, against a throwaway PostgreSQL 15 cluster that checks
 * passwords (src/testing/postgres-instance.ts); the machine's server trusts local connections.
 * The database has CONNECT revoked from PUBLIC, so createLogin must grant it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import net from "node:net";
import fc from "fast-check";
import pg from "pg";
import { ConnectorError, type ConnectorTarget, type DynamicLoginSpec } from "../connector.types.js";
import { startPostgres, type PostgresInstance } from "../../../testing/postgres-instance.js";
import { postgresConnector as connector, postgresPools } from "./postgres.connector.js";
import { dollarQuoted, quoteLiteral, scramSecret } from "./postgres.rules.js";

const hex = randomBytes(4).toString("hex");
const database = `stint_c_${hex}`;
const readers = `stint_c_${hex}_readers`;
const human = `stint_c_${hex}_human`;
const appName = `stint_c_${hex}_admin`;
const HOUR = 3_600_000;

let instance: PostgresInstance;
let target: ConnectorTarget;
let admin: pg.Client;
const openClients: pg.Client[] = [];
/** Every password used, to check that none reaches a message. */
const passwords: string[] = [];

const q = (name: string) => pg.escapeIdentifier(name);
const newPassword = (extra = "") => {
  const password = `pw-${randomBytes(12).toString("hex")}${extra}`;
  passwords.push(password);
  return password;
};
let logins = 0;
const newLogin = () => `stint_c_${hex}_dyn${++logins}`;

function spec(login: string, password: string, validUntil = new Date(Date.now() + HOUR)): DynamicLoginSpec {
  return { login, password, entitlement: { role: readers, dynamic: true }, validUntil };
}

/** A client signed in as `user` with `password` to the test database, closed in afterAll. */
async function signIn(user: string, password: string): Promise<pg.Client> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port: instance.port,
    user,
    password,
    database,
    ssl: { ca: instance.tls!.ca },
  });
  client.on("error", () => {});
  openClients.push(client);
  await client.connect();
  return client;
}

/** Signs in and reads the table: "ok", or the server's SQLSTATE when sign-in or the read fails. */
async function readAs(user: string, password: string): Promise<string> {
  try {
    const client = await signIn(user, password);
    const rows = (await client.query("SELECT id FROM secrets")).rows;
    await client.end();
    return rows.length === 1 ? "ok" : `rows: ${rows.length}`;
  } catch (error) {
    return (error as { code?: string }).code ?? (error as Error).message;
  }
}

async function rejection(promise: Promise<unknown>): Promise<ConnectorError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  for (const secret of [...passwords, instance.adminPassword]) expect((error as Error).message).not.toContain(secret);
  return error as ConnectorError;
}

async function roleRow(login: string) {
  const result = await admin.query<{ rolcanlogin: boolean; rolvaliduntil: Date | null; rolpassword: string | null }>(
    "SELECT rolcanlogin, rolvaliduntil, rolpassword FROM pg_authid WHERE rolname = $1",
    [login],
  );
  return result.rows[0];
}

/** The statements (their first 40 characters) node-postgres sends to the test database while `run` runs. */
async function statementsSent(run: () => Promise<void>): Promise<string[]> {
  const sent: string[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    if ((this as unknown as { database?: string }).database === database) sent.push(String(args[0]).slice(0, 40));
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    await run();
  } finally {
    pg.Client.prototype.query = query;
  }
  return sent;
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  // TLS and SCRAM, as a production cluster: the connector verifies it against the cluster's own CA.
  instance = await startPostgres({ tls: true });
  target = {
    name: "test-pg-creds",
    address: `postgres://postgres@127.0.0.1:${instance.port}/${database}?application_name=${appName}`,
    options: { tls: { ca: instance.tls!.ca } },
    credential: instance.adminPassword,
  };
  admin = new pg.Client({
    host: "127.0.0.1",
    port: instance.port,
    user: "postgres",
    password: instance.adminPassword,
    ssl: { ca: instance.tls!.ca },
  });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${q(database)}`);
  await admin.query(`REVOKE CONNECT ON DATABASE ${q(database)} FROM PUBLIC`);
  await admin.query(`CREATE ROLE ${q(readers)} NOLOGIN`);
  await admin.query(`CREATE ROLE ${q(human)} LOGIN PASSWORD 'human-pw'`);
  await admin.query(`GRANT CONNECT ON DATABASE ${q(database)} TO ${q(human)}`);
  const setup = new pg.Client({
    host: "127.0.0.1",
    port: instance.port,
    user: "postgres",
    password: instance.adminPassword,
    database,
    ssl: { ca: instance.tls!.ca },
  });
  await setup.connect();
  try {
    await setup.query("CREATE TABLE secrets (id int)");
    await setup.query("INSERT INTO secrets VALUES (1)");
    await setup.query(`GRANT SELECT ON secrets TO ${q(readers)}`);
  } finally {
    await setup.end();
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(openClients.map((client) => client.end().catch(() => {})));
  await admin?.end().catch(() => {});
  // The whole cluster goes, with every role and database in it.
  await instance?.stop();
});

describe("postgres credentials: checks", () => {
  it("accepts dynamic: true with a role, refuses it with an attribute", () => {
    expect(connector.checkEntitlement({ role: readers, dynamic: true })).toEqual([]);
    expect(connector.checkEntitlement({ role: readers, dynamic: false })).toEqual([]);
    expect(connector.checkEntitlement({ attribute: "SUPERUSER", dynamic: true })).toHaveLength(1);
    expect(connector.checkEntitlement({ role: readers, dynamic: "yes" })).toHaveLength(1);
  });

  it("quoteLiteral round-trips any string through the server, whatever standard_conforming_strings says", async () => {
    const strings = fc.sample(
      fc.string({ unit: "binary" }).filter((s) => !s.includes("\0")),
      200,
    );
    strings.push("a'b", "a\\b", "\\'", "'; DROP ROLE postgres; --", "E'\\x41'", "$$", "pä'ss\\wörd");
    for (const conforming of ["on", "off"]) {
      await admin.query(`SET standard_conforming_strings = ${conforming}`);
      const values = strings.map((s, i) => `(${i}, ${quoteLiteral(s)})`).join(", ");
      const rows = (await admin.query<{ i: number; v: string }>(`SELECT * FROM (VALUES ${values}) AS t(i, v)`)).rows;
      expect(rows.map((row) => row.v)).toEqual(strings);
    }
    await admin.query("RESET standard_conforming_strings");
  });

  it("dollarQuoted round-trips any string through the server, its own tags included", async () => {
    const strings = fc.sample(
      fc.string({ unit: "binary" }).filter((s) => !s.includes("\0")),
      200,
    );
    strings.push("$stint$", "x$stint", "$stint$$stint0$", "a$stint0", "$$", "$", "END $stint$; DROP ROLE postgres; --");
    const values = strings.map((s, i) => `(${i}, ${dollarQuoted(s)})`).join(", ");
    const rows = (await admin.query<{ i: number; v: string }>(`SELECT * FROM (VALUES ${values}) AS t(i, v)`)).rows;
    expect(rows.map((row) => row.v)).toEqual(strings);
  });

  it("computes the same SCRAM secret as PostgreSQL", async () => {
    const role = `stint_c_${hex}_scram`;
    await admin.query(`CREATE ROLE ${q(role)} PASSWORD 'pencil'`);
    try {
      const stored = (await roleRow(role))!.rolpassword!;
      const [, iterations, salt] = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(stored)!;
      expect(scramSecret("pencil", Buffer.from(salt!, "base64"), Number(iterations))).toBe(stored);
    } finally {
      await admin.query(`DROP ROLE ${q(role)}`);
    }
  });
});

describe("postgres credentials: createLogin", () => {
  it("mints a login that signs in with the password and reads what the role grants, until validUntil", async () => {
    const login = newLogin();
    const password = newPassword();
    const validUntil = new Date(Math.floor(Date.now() / 1000) * 1000 + HOUR);
    expect(await connector.verifyPassword(target, { login, password })).toBe(false);

    await connector.createLogin(target, spec(login, password, validUntil));

    expect(await readAs(login, password)).toBe("ok");
    expect(await readAs(login, newPassword())).toBe("28P01");
    expect(await connector.verifyPassword(target, { login, password })).toBe(true);
    expect(await connector.verifyPassword(target, { login, password: `${password}x` })).toBe(false);
    const row = (await roleRow(login))!;
    expect(row.rolvaliduntil?.toISOString()).toBe(validUntil.toISOString());
    // The server got a SCRAM secret, never the password to hash.
    expect(row.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:/);
  });

  it("is idempotent: a retry sets the new password and validity and keeps one membership", async () => {
    const login = newLogin();
    const first = newPassword();
    const second = newPassword();
    await connector.createLogin(target, spec(login, first));
    const later = new Date(Math.floor(Date.now() / 1000) * 1000 + 2 * HOUR);
    await connector.createLogin(target, spec(login, second, later));
    await connector.createLogin(target, spec(login, second, later));

    expect(await readAs(login, second)).toBe("ok");
    expect(await connector.verifyPassword(target, { login, password: first })).toBe(false);
    expect((await roleRow(login))!.rolvaliduntil?.toISOString()).toBe(later.toISOString());
    const memberships = await admin.query(
      `SELECT 1 FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
        WHERE r.rolname = $1 AND m.rolname = $2`,
      [readers, login],
    );
    expect(memberships.rowCount).toBe(1);
  });

  it("a login past validUntil cannot sign in", async () => {
    const login = newLogin();
    const password = newPassword();
    await connector.createLogin(target, spec(login, password, new Date(Date.now() - 60_000)));
    expect(await connector.verifyPassword(target, { login, password })).toBe(false);
    expect(await readAs(login, password)).toBe("28P01");
  });

  it("passwords with quotes, backslashes and non-ASCII characters work as given", async () => {
    for (const extra of [`a'b\\c"d $$ e`, `pä'ss\\wörd €`]) {
      const login = newLogin();
      const password = newPassword(extra);
      await connector.createLogin(target, spec(login, password));
      expect(await readAs(login, password)).toBe("ok");
      expect(await connector.verifyPassword(target, { login, password })).toBe(true);
    }
  });

  it("refuses a role that does not exist in PostgreSQL's words, and leaves no login behind", async () => {
    const login = newLogin();
    const missing = `stint_c_${hex}_missing`;
    const error = await rejection(
      connector.createLogin(target, { ...spec(login, newPassword()), entitlement: { role: missing, dynamic: true } }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toBe(`role "${missing}" does not exist`);
    expect(await roleRow(login)).toBeUndefined();
  });

  it("never takes over a login it did not create", async () => {
    const error = await rejection(connector.createLogin(target, spec(human, newPassword())));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("not created by Stint");
    expect(await connector.verifyPassword(target, { login: human, password: "human-pw" })).toBe(true);
    expect(await readAs(human, "human-pw")).toBe("42501"); // signed in; not a reader
  });

  it("takes one round trip on a pooled connection, a retry too", async () => {
    await connector.test(target); // a signed-in connection in the pool
    const login = newLogin();
    const password = newPassword();
    const sent = await statementsSent(async () => {
      await connector.createLogin(target, spec(login, password));
      await connector.createLogin(target, spec(login, password));
    });
    expect(sent, JSON.stringify(sent)).toHaveLength(2);
    expect(await readAs(login, password)).toBe("ok");
  });

  it("a minted password's SCRAM secret, computed ahead, is the one set; minted passwords are never handed out twice", async () => {
    const generate = () => newPassword();
    const minted = Array.from({ length: 10 }, () => connector.mintPassword!(generate));
    expect(new Set(minted.map((m) => m.password)).size).toBe(10);
    const first = minted[0]!;
    const ahead = (await (first.prepared as Promise<{ literal: string }>)).literal;
    const login = newLogin();
    await connector.createLogin(target, { ...spec(login, first.password), minted: first });
    expect(quoteLiteral((await roleRow(login))!.rolpassword!)).toBe(ahead);
    expect(await readAs(login, first.password)).toBe("ok");
    // The stock refills later with passwords of its own.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const later = connector.mintPassword!(generate);
    expect(minted.map((m) => m.password)).not.toContain(later.password);
  });

  it("a minted password's prepared secret is never set for another password", async () => {
    const minted = connector.mintPassword!(() => newPassword());
    const login = newLogin();
    const password = newPassword();
    await connector.createLogin(target, { ...spec(login, password), minted });
    expect(await readAs(login, password)).toBe("ok");
    expect(await readAs(login, minted.password)).toBe("28P01");
    // Nor a look-alike of one handed out, whatever its password says.
    const forged = { password: minted.password, prepared: Promise.resolve({ literal: "'forged'", secrets: [] }) };
    await connector.createLogin(target, { ...spec(login, minted.password), minted: forged });
    expect(await readAs(login, minted.password)).toBe("ok");
  });

  it("a target without PL/pgSQL gets the same in two round trips: created, idempotent, never taking over", async () => {
    const plain = `stint_c_${hex}_noplpgsql`;
    await admin.query(`CREATE DATABASE ${q(plain)}`);
    await admin.query(`REVOKE CONNECT ON DATABASE ${q(plain)} FROM PUBLIC`);
    const setup = new pg.Client({
      host: "127.0.0.1",
      port: instance.port,
      user: "postgres",
      password: instance.adminPassword,
      database: plain,
      ssl: { ca: instance.tls!.ca },
    });
    await setup.connect();
    try {
      await setup.query("DROP EXTENSION plpgsql");
      await setup.query("CREATE TABLE secrets (id int)");
      await setup.query("INSERT INTO secrets VALUES (1)");
      await setup.query(`GRANT SELECT ON secrets TO ${q(readers)}`);
    } finally {
      await setup.end();
    }
    const there = {
      ...target,
      name: "test-pg-creds-plain",
      address: target.address.replace(`/${database}?`, `/${plain}?`),
    };
    const login = newLogin();
    const first = newPassword();
    const second = newPassword();
    await connector.createLogin(there, spec(login, first));
    await connector.createLogin(there, spec(login, second));
    const client = new pg.Client({
      host: "127.0.0.1",
      port: instance.port,
      user: login,
      password: second,
      database: plain,
      ssl: { ca: instance.tls!.ca },
    });
    await client.connect();
    try {
      expect((await client.query("SELECT id FROM secrets")).rows).toEqual([{ id: 1 }]);
    } finally {
      await client.end();
    }
    expect(await connector.verifyPassword(there, { login, password: first })).toBe(false);
    const error = await rejection(connector.createLogin(there, spec(human, newPassword())));
    expect(error.message).toContain("not created by Stint");
    await connector.dropLogin(there, { login });
    expect(await roleRow(login)).toBeUndefined();
  });

  it("refuses entitlements that are not dynamic roles, bad logins and empty passwords before connecting", async () => {
    const login = newLogin();
    for (const bad of [
      { ...spec(login, newPassword()), entitlement: { role: readers } },
      { ...spec(login, newPassword()), entitlement: { attribute: "SUPERUSER", dynamic: true } },
      { ...spec('x"; DROP ROLE postgres; --', newPassword()) },
      { ...spec(login, "") },
      { ...spec(login, newPassword()), validUntil: new Date(Number.NaN) },
    ])
      expect((await rejection(connector.createLogin(target, bad))).reason).toBe("refused");
    expect(await roleRow(login)).toBeUndefined();
  });
});

describe("postgres credentials: dropLogin", () => {
  it("ends the login's open session and drops it; twice is fine", async () => {
    const login = newLogin();
    const password = newPassword();
    await connector.createLogin(target, spec(login, password));
    const open = await signIn(login, password);
    expect((await open.query("SELECT count(*)::int AS n FROM secrets")).rows[0].n).toBe(1);

    await connector.dropLogin(target, { login });

    await expect(open.query("SELECT 1")).rejects.toThrow();
    expect(await roleRow(login)).toBeUndefined();
    expect(await connector.verifyPassword(target, { login, password })).toBe(false);
    await connector.dropLogin(target, { login });
    await connector.dropLogin(target, { login: `stint_c_${hex}_never` });
  });

  it("takes one round trip on a pooled connection, the login there or not", async () => {
    const login = newLogin();
    const password = newPassword();
    await connector.createLogin(target, spec(login, password));
    const open = await signIn(login, password);
    const sent = await statementsSent(async () => {
      await connector.dropLogin(target, { login });
      await connector.dropLogin(target, { login });
    });
    expect(sent, JSON.stringify(sent)).toHaveLength(2);
    await expect(open.query("SELECT 1")).rejects.toThrow();
    expect(await roleRow(login)).toBeUndefined();
  });

  it("refuses to drop a login it did not create", async () => {
    const error = await rejection(connector.dropLogin(target, { login: human }));
    expect(error.reason).toBe("refused");
    expect(await roleRow(human)).toBeDefined();
  });

  it("refuses, in PostgreSQL's words, to drop a login that owns objects", async () => {
    const login = newLogin();
    const password = newPassword();
    await connector.createLogin(target, spec(login, password));
    const owner = new pg.Client({
      host: "127.0.0.1",
      port: instance.port,
      user: "postgres",
      password: instance.adminPassword,
      database,
      ssl: { ca: instance.tls!.ca },
    });
    await owner.connect();
    try {
      await owner.query(`CREATE TABLE ${q(`t_${hex}`)} (id int)`);
      await owner.query(`ALTER TABLE ${q(`t_${hex}`)} OWNER TO ${q(login)}`);
      const error = await rejection(connector.dropLogin(target, { login }));
      expect(error.reason).toBe("refused");
      expect(error.message).toContain("cannot be dropped because some objects depend on it");
      await owner.query(`DROP TABLE ${q(`t_${hex}`)}`);
    } finally {
      await owner.end();
    }
    await connector.dropLogin(target, { login });
    expect(await roleRow(login)).toBeUndefined();
  });
});

describe("postgres credentials: setPassword and verifyPassword", () => {
  it("rotates: the old password fails and the new one works", async () => {
    const login = newLogin();
    const old = newPassword();
    const rotated = newPassword();
    await connector.createLogin(target, spec(login, old));

    await connector.setPassword(target, { login, password: rotated });

    expect(await connector.verifyPassword(target, { login, password: old })).toBe(false);
    expect(await connector.verifyPassword(target, { login, password: rotated })).toBe(true);
    expect(await readAs(login, old)).toBe("28P01");
    expect(await readAs(login, rotated)).toBe("ok");
  });

  it("refuses a login that does not exist, without the password in the message", async () => {
    const missing = `stint_c_${hex}_nobody`;
    const error = await rejection(connector.setPassword(target, { login: missing, password: newPassword() }));
    expect(error.reason).toBe("refused");
    expect(error.message).toBe(`role "${missing}" does not exist`);
  });

  it("a login that signs in but may not connect is refused; one that may not log in is false", async () => {
    const noConnect = `stint_c_${hex}_noconnect`;
    const noLogin = `stint_c_${hex}_nologin`;
    const password = newPassword();
    await admin.query(`CREATE ROLE ${q(noConnect)} LOGIN PASSWORD ${quoteLiteral(password)}`);
    await admin.query(`CREATE ROLE ${q(noLogin)} NOLOGIN PASSWORD ${quoteLiteral(password)}`);
    await admin.query(`GRANT CONNECT ON DATABASE ${q(database)} TO ${q(noLogin)}`);
    const error = await rejection(connector.verifyPassword(target, { login: noConnect, password }));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("permission denied for database");
    expect(await connector.verifyPassword(target, { login: noLogin, password })).toBe(false);
  });

  it("an empty password never verifies", async () => {
    expect(await connector.verifyPassword(target, { login: human, password: "" })).toBe(false);
  });

  it("a closed port is unavailable", async () => {
    const port = await closedPort();
    const error = await rejection(
      connector.verifyPassword(
        { ...target, address: `postgres://postgres@127.0.0.1:${port}/x` },
        { login: human, password: newPassword() },
      ),
    );
    expect(error.reason).toBe("unavailable");
  });

  it("keeps the password out of a server error that repeats it", async () => {
    // A server that asks for a cleartext password and echoes it back in an internal error.
    const password = newPassword();
    const server = net.createServer((socket) => {
      socket.once("data", () => {
        socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])); // AuthenticationCleartextPassword
        socket.once("data", (message) => {
          const received = message.subarray(5, message.length - 1).toString();
          const fields = Buffer.from(`SERROR\0CXX000\0Mgot "${received}"\0\0`);
          const header = Buffer.alloc(5);
          header.write("E");
          header.writeInt32BE(fields.length + 4, 1);
          socket.end(Buffer.concat([header, fields]));
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const error = await rejection(
        connector.verifyPassword(
          {
            ...target,
            address: `postgres://postgres@127.0.0.1:${port}/x?sslmode=disable`,
            options: { auth: { allow: ["password"] } },
          },
          { login: human, password },
        ),
      );
      expect(error.message).toBe('got "***"');
    } finally {
      server.close();
    }
  });

  it("leaves no admin connection open once the pools are closed", async () => {
    await postgresPools.closeAll();
    const count = async () =>
      (await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1", [appName]))
        .rows[0].n;
    for (let waited = 0; waited < 10_000 && (await count()) > 0; waited += 100)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await count()).toBe(0);
  });
});
