/**
 * The PostgreSQL connector against the real server at 127.0.0.1:5432 (user postgres, trust auth).
 * Every role and the database carry a random suffix and are dropped in afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import net from "node:net";
import pg from "pg";
import { ConnectorError, type ConnectorTarget } from "../connector.types.js";
import { DEFAULT_POOL_SETTINGS } from "../connection-pool.js";
import { checkAddress, postgresConnector as connector, postgresPools } from "./postgres.connector.js";
import { eventually } from "../../../testing/until.js";

const SERVER = process.env.STINT_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const hex = randomBytes(4).toString("hex");
const database = `stint_t_${hex}`;
const login = `stint_t_${hex}`;
const readers = `stint_t_${hex}_readers`;
const oddLogin = `stint_t_${hex}.x@y-z`;
const superuser = `stint_t_${hex}_su`;
const privileged = `stint_t_${hex}_priv`;
const privilegedMember = `stint_t_${hex}_member`;
const ignoredSuperuser = `stint_t_${hex}_ignored`;
const roles = [login, readers, oddLogin, superuser, privileged, privilegedMember, ignoredSuperuser];
/** Lets the test find every backend the connector opened. */
const appName = `stint_t_${hex}_admin`;
const credential = `cred-${randomBytes(8).toString("hex")}`;

/** The machine's server speaks no TLS: its addresses opt out explicitly (sslmode=disable). */
function url(user: string, db = database, extra = "", sslmode = "disable"): string {
  const u = new URL(SERVER);
  u.username = encodeURIComponent(user);
  u.pathname = `/${db}`;
  u.search = "";
  return `${u.toString()}?sslmode=${sslmode}${extra}`;
}

const target: ConnectorTarget = {
  name: "test-pg",
  address: url(new URL(SERVER).username, database, `&application_name=${appName}`),
  options: {},
  // Trust auth ignores it; it is here to prove it never reaches a message.
  credential,
};

const admin = new pg.Client({ connectionString: SERVER });
const openClients: pg.Client[] = [];

const q = (name: string) => pg.escapeIdentifier(name);

/** A client connected as `user` to the test database, closed in afterAll. */
async function connectAs(user: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url(user) });
  client.on("error", () => {});
  openClients.push(client);
  await client.connect();
  return client;
}

/** SELECT from the table as `user` on a fresh connection: "ok" or the server's message. */
async function selectAs(user: string): Promise<string> {
  const client = await connectAs(user);
  try {
    await client.query("SELECT * FROM secrets");
    return "ok";
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.end();
  }
}

async function rejection(promise: Promise<unknown>): Promise<ConnectorError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  expect((error as Error).message).not.toContain(credential);
  return error as ConnectorError;
}

async function backends(): Promise<number> {
  return (await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1", [appName]))
    .rows[0].n;
}

async function isSuperuser(role: string): Promise<boolean> {
  return (await admin.query("SELECT rolsuper FROM pg_roles WHERE rolname = $1", [role])).rows[0].rolsuper;
}

beforeAll(async () => {
  await admin.connect();
  await admin.query(`CREATE DATABASE ${q(database)}`);
  await admin.query(`CREATE ROLE ${q(login)} LOGIN`);
  await admin.query(`CREATE ROLE ${q(oddLogin)} LOGIN`);
  await admin.query(`CREATE ROLE ${q(readers)} NOLOGIN`);
  await admin.query(`CREATE ROLE ${q(superuser)} LOGIN SUPERUSER`);
  await admin.query(`CREATE ROLE ${q(ignoredSuperuser)} LOGIN SUPERUSER`);
  await admin.query(`CREATE ROLE ${q(privileged)} NOLOGIN`);
  await admin.query(`CREATE ROLE ${q(privilegedMember)} LOGIN IN ROLE ${q(privileged)}`);
  const db = new pg.Client({ connectionString: url(new URL(SERVER).username) });
  await db.connect();
  try {
    await db.query("CREATE TABLE secrets (id int)");
    await db.query("INSERT INTO secrets VALUES (1)");
    await db.query(`GRANT SELECT ON secrets TO ${q(readers)}`);
  } finally {
    await db.end();
  }
});

afterAll(async () => {
  await Promise.all(openClients.map((client) => client.end().catch(() => {})));
  await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1)", [roles]);
  await admin.query(`DROP DATABASE IF EXISTS ${q(database)} WITH (FORCE)`);
  // The roles own nothing and held privileges only in the dropped database.
  for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${q(role)}`);
  await admin.end();
});

describe("postgres connector: checks", () => {
  it("refuses logins, entitlements and options that could smuggle SQL or mean nothing", () => {
    expect(connector.checkLogin(login)).toEqual([]);
    expect(connector.checkLogin('x"; DROP ROLE postgres; --')).toHaveLength(1);
    expect(connector.checkEntitlement({ role: readers })).toEqual([]);
    expect(connector.checkEntitlement({ attribute: "LOGIN" })).toHaveLength(1);
    expect(connector.checkOptions({ terminateSessions: false, privilegedRoles: ["a"], ignore: [] })).toEqual([]);
    expect(connector.checkOptions({ terminate: true })).toHaveLength(1);
    expect(checkAddress("postgres://postgres:pw@127.0.0.1/app")).toHaveLength(1);
    expect(checkAddress(target.address)).toEqual([]);
  });

  it("will not send a bad login to the server", async () => {
    const error = await rejection(
      connector.provision(target, { login: 'x" SUPERUSER; --', entitlement: { attribute: "SUPERUSER" } }),
    );
    expect(error.reason).toBe("refused");
  });
});

describe("postgres connector: test()", () => {
  it("reports the version and the admin account", async () => {
    const { detail } = await connector.test(target);
    expect(detail).toMatch(/^PostgreSQL \d+/);
    expect(detail).toContain(`acting as ${new URL(SERVER).username}`);
  });

  it("refuses an account that cannot administer roles", async () => {
    const error = await rejection(connector.test({ ...target, address: url(login) }));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain(`${login} can neither create nor alter roles`);
  });
});

describe("postgres connector: role membership", () => {
  const grant = { login, entitlement: { role: readers } };

  it("provisions: the login can read, observe lists it; twice is fine", async () => {
    expect(await selectAs(login)).toMatch(/permission denied/);
    expect(await connector.observe(target, { role: readers })).toEqual([]);

    await connector.provision(target, grant);
    await connector.provision(target, grant);

    expect(await selectAs(login)).toBe("ok");
    expect(await connector.observe(target, { role: readers })).toEqual([login]);
  });

  it("the same membership granted at the same moment on several connections: every call succeeds", async () => {
    // Two roles with one entitlement, or two nodes: PostgreSQL answers the later GRANT with a unique violation.
    for (let round = 0; round < 5; round++) {
      await connector.revoke(target, grant);
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => connector.provision(target, grant)));
      expect(results.filter((r) => r.status === "rejected")).toEqual([]);
      expect(await connector.observe(target, { role: readers })).toEqual([login]);
    }
  });

  it("revokes: an open session is ended, a new one is refused; twice is fine", async () => {
    const open = await connectAs(login);
    // A session acting as the role keeps acting as it after REVOKE; only ending it takes that away.
    await open.query(`SET ROLE ${q(readers)}`);
    expect((await open.query("SELECT count(*)::int AS n FROM secrets")).rows[0].n).toBe(1);

    await connector.revoke(target, grant);

    await expect(open.query("SELECT 1")).rejects.toThrow();
    expect(await selectAs(login)).toMatch(/permission denied/);
    expect(await connector.observe(target, { role: readers })).toEqual([]);
    await connector.revoke(target, grant);
  });

  it("leaves open sessions alone when terminateSessions is false", async () => {
    await connector.provision(target, grant);
    const open = await connectAs(login);
    await connector.revoke({ ...target, options: { terminateSessions: false } }, grant);
    // The session survives, but privileges are checked per statement, so it cannot read any more.
    await expect(open.query("SELECT * FROM secrets")).rejects.toThrow(/permission denied/);
    expect((await open.query("SELECT 1 AS one")).rows[0].one).toBe(1);
  });

  it("quotes logins with dots, @ and -", async () => {
    const odd = { login: oddLogin, entitlement: { role: readers } };
    await connector.provision(target, odd);
    expect(await connector.observe(target, { role: readers })).toEqual([oddLogin]);
    expect(await selectAs(oddLogin)).toBe("ok");
    await connector.revoke(target, odd);
    expect(await connector.observe(target, { role: readers })).toEqual([]);
  });

  it("revoking from a login that does not exist succeeds", async () => {
    await connector.revoke(target, { login: `stint_t_${hex}_gone`, entitlement: { role: readers } });
  });
});

describe("postgres connector: attributes", () => {
  it("provisions, observes and revokes SUPERUSER, idempotently", async () => {
    const grant = { login, entitlement: { attribute: "SUPERUSER" } };
    expect(await connector.observe(target, { attribute: "SUPERUSER" })).not.toContain(login);

    await connector.provision(target, grant);
    await connector.provision(target, grant);
    expect(await isSuperuser(login)).toBe(true);
    const holders = await connector.observe(target, { attribute: "SUPERUSER" });
    expect(holders).toContain(login);
    expect(holders).toEqual([...new Set(holders)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));

    await connector.revoke(target, grant);
    await connector.revoke(target, grant);
    expect(await isSuperuser(login)).toBe(false);
    expect(await connector.observe(target, { attribute: "SUPERUSER" })).not.toContain(login);
  });
});

describe("postgres connector: discover", () => {
  it("lists superusers and members of privileged roles, with removable entitlements", async () => {
    const connected = await connectAs(superuser);
    const options = { privilegedRoles: [privileged], ignore: [ignoredSuperuser] };
    const found = await connector.discover({ ...target, options });

    const su = found.find((access) => access.login === superuser);
    expect(su).toMatchObject({ privilege: "superuser", entitlement: { attribute: "SUPERUSER" } });
    expect(new Date(su!.lastActivity!).toISOString()).toBe(su!.lastActivity);
    expect(found.find((access) => access.login === privilegedMember)).toEqual({
      login: privilegedMember,
      privilege: `member of ${privileged}`,
      entitlement: { role: privileged },
      lastActivity: null,
    });
    expect(found.some((access) => access.login === ignoredSuperuser)).toBe(false);
    expect(found.map((access) => access.login)).toContain(new URL(SERVER).username);

    await connector.revoke(target, { login: superuser, entitlement: su!.entitlement! });
    expect(await isSuperuser(superuser)).toBe(false);
    await expect(connected.query("SELECT 1")).rejects.toThrow();
    const after = await connector.discover({ ...target, options });
    expect(after.some((access) => access.login === superuser)).toBe(false);
  });

  it("refuses a privilegedRoles entry that does not exist", async () => {
    const error = await rejection(
      connector.discover({ ...target, options: { privilegedRoles: [`stint_t_${hex}_nope`] } }),
    );
    expect(error.reason).toBe("refused");
  });
});

describe("postgres connector: failures", () => {
  it("a closed port is unavailable", async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = net.createServer();
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const error = await rejection(connector.test({ ...target, address: `postgres://postgres@127.0.0.1:${closed}/x` }));
    expect(error.reason).toBe("unavailable");
    expect(error.message).toContain(`127.0.0.1:${closed}`);
  });

  it("a role that does not exist is refused in PostgreSQL's words", async () => {
    const missing = `stint_t_${hex}_missing`;
    const error = await rejection(connector.provision(target, { login, entitlement: { role: missing } }));
    expect(error.reason).toBe("refused");
    expect(error.message).toBe(`role "${missing}" does not exist`);
    const observed = await rejection(connector.observe(target, { role: missing }));
    expect(observed.reason).toBe("refused");
    const noLogin = await rejection(
      connector.provision(target, { login: `stint_t_${hex}_gone`, entitlement: { role: readers } }),
    );
    expect(noLogin.message).toBe(`role "stint_t_${hex}_gone" does not exist`);
  });

  it("a database that does not exist is refused", async () => {
    const error = await rejection(connector.test({ ...target, address: url("postgres", `stint_t_${hex}_nodb`) }));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("does not exist");
  });

  it("sslmode=require against a server without TLS is refused", async () => {
    const ssl = await (await connectAs("postgres")).query("SHOW ssl");
    if (ssl.rows[0].ssl === "on") return; // this check needs a server without TLS
    const error = await rejection(connector.test({ ...target, address: url("postgres", database, "", "require") }));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("TLS");
  });

  it("an address with a password is refused before connecting", async () => {
    const error = await rejection(
      connector.test({ ...target, address: `postgres://postgres:${credential}@127.0.0.1:5432/postgres` }),
    );
    expect(error.reason).toBe("refused");
  });

  it("sends the credential in clear only to a target that opted in, and keeps it out of the server's error", async () => {
    // A server that asks for a cleartext password and echoes it back in its refusal.
    let received = "";
    const server = net.createServer((socket) => {
      socket.once("data", () => {
        socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])); // AuthenticationCleartextPassword
        socket.once("data", (message) => {
          received = message.subarray(5, message.length - 1).toString();
          const fields = Buffer.from(`SERROR\0C28P01\0Mpassword "${received}" is wrong\0\0`);
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
        connector.test({
          ...target,
          address: `postgres://postgres@127.0.0.1:${port}/x?sslmode=disable`,
          options: { auth: { allow: ["password"] } },
        }),
      );
      expect(received).toBe(credential);
      expect(error.reason).toBe("refused");
      expect(error.message).toBe('password "***" is wrong');
    } finally {
      server.close();
    }
  });

  it("an aborted call is unavailable", async () => {
    const error = await rejection(connector.test(target, { signal: AbortSignal.abort() }));
    expect(error.reason).toBe("unavailable");
    const controller = new AbortController();
    const pending = connector.discover(target, { signal: controller.signal });
    controller.abort();
    expect((await rejection(pending)).reason).toBe("unavailable");
  });

  it("an abort while a grant waits for a lock leaves the grant undone", async () => {
    // Another session holds the login's pg_authid row, so ALTER ROLE waits.
    const blocker = await connectAs("postgres");
    await blocker.query("BEGIN");
    await blocker.query(`ALTER ROLE ${q(login)} WITH CREATEDB`);
    const controller = new AbortController();
    const pending = connector.provision(
      target,
      { login, entitlement: { attribute: "SUPERUSER" } },
      { signal: controller.signal },
    );
    const waiting = async () =>
      (
        await admin.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
          [appName],
        )
      ).rows.map((row) => row.pid);
    expect(await eventually(async () => (await waiting()).length === 1)).toBe(true);
    const [pid] = await waiting();
    controller.abort();
    expect((await rejection(pending)).reason).toBe("unavailable");
    // The aborted call's connection is closed, not pooled: the server notices the closed socket, cancels the
    // waiting statement (well before lock_timeout, 10 s) and its backend ends.
    const gone = async () => (await admin.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid])).rowCount === 0;
    const cancelled = await eventually(gone, 5_000);
    await blocker.query("ROLLBACK");
    expect(cancelled).toBe(true);
    expect(await isSuperuser(login)).toBe(false);
  });

  it("keeps at most its pool's connections open, idle, and none once the pools are closed", async () => {
    const open = await admin.query<{ state: string }>(
      "SELECT state FROM pg_stat_activity WHERE application_name = $1",
      [appName],
    );
    expect(open.rows.length).toBeLessThanOrEqual(DEFAULT_POOL_SETTINGS.max);
    expect(open.rows.every((row) => row.state === "idle")).toBe(true);
    await postgresPools.closeAll();
    // Backends end asynchronously after the client closes its socket.
    expect(await eventually(async () => (await backends()) === 0)).toBe(true);
  });
});
