/**
 * Dynamic database credentials against the machine's real PostgreSQL and
 * MariaDB: an activation of a role with `dynamic: true` mints a login with a
 * random password (sealed by the vault) that can read the granted table; when
 * the activation ends the login is dropped and its open connection ended — on MariaDB also a login made before
 * Stint marked its logins with an expiry event (an upgrade from before finding 68's fix).
 */
import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdMariadb, MARIADB_URL } from "../../src/testing/mariadb.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";
import { pgTarget, type PgTarget } from "./pg-target.js";

const hex = randomBytes(4).toString("hex");
const pgDatabase = `stint_dyn_${hex}`;
const pgReader = `stint_dyn_reader_${hex}`;
const myDatabase = `stint_dyn_${hex}`;
const myReader = `stint_dyn_r_${hex}`;
const user = `kim${hex}`;

let h: TargetsHarness;
let target: PgTarget | undefined;
let pgRoot: pg.Client;
let myRoot: mysql.Connection;
let release: (() => Promise<void>) | undefined;

interface Creds {
  host: string;
  port: number;
  database: string | null;
  user: string;
  password: string;
  expiresAt: string;
}

beforeAll(async () => {
  release = await holdMariadb();
  target = await pgTarget({
    database: pgDatabase,
    reader: pgReader,
    table: { name: "ledger", column: "entry", value: "opening balance" },
    mintedFor: user,
  });
  pgRoot = target.root;

  myRoot = await mysql.createConnection({ host: "127.0.0.1", port: 3306, user: "root", password: "" });
  await myRoot.query(`create database \`${myDatabase}\``);
  await myRoot.query(`create table \`${myDatabase}\`.ledger (entry varchar(40))`);
  await myRoot.query(`insert into \`${myDatabase}\`.ledger values ('opening balance')`);
  await myRoot.query(`create role ${myReader}`);
  await myRoot.query(`grant select on \`${myDatabase}\`.* to ${myReader}`);

  h = await targetsHarness();
  await h.createUser(user);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("dyn-self")}
targets:
  - name: ledger-pg
    kind: postgres
    address: ${target.address}
  - name: ledger-maria
    kind: mysql
    address: ${MARIADB_URL}
roles:
  - name: ledger-pg-reader
    target: ledger-pg
    entitlement: { role: ${pgReader}, dynamic: true }
    policy: dyn-self
    risk: medium
  - name: ledger-maria-reader
    target: ledger-maria
    entitlement: { role: ${myReader}, dynamic: true }
    policy: dyn-self
    risk: medium
eligibility:
  - role: ledger-pg-reader
    users: [${user}]
  - role: ledger-maria-reader
    users: [${user}]
`);
});

afterAll(async () => {
  await h?.server.cleanup();
  await target?.cleanup();
  if (myRoot) {
    const [rows] = await myRoot.query("select User from mysql.user where User like ?", [`stint\\_${user}\\_%`]);
    for (const r of rows as { User: string }[]) await myRoot.query(`drop user if exists '${r.User}'@'%'`);
    await myRoot.query(`drop role if exists ${myReader}`).catch(() => undefined);
    await myRoot.query(`drop database if exists \`${myDatabase}\``).catch(() => undefined);
    await myRoot.end();
  }
  await release?.();
});

async function credentialsOf(role: string): Promise<Creds> {
  const res = await h.as(user, "GET", `/v1/me/roles/${role}/credentials`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as unknown as Creds;
}

describe("dynamic database credentials", () => {
  it("PostgreSQL: a minted login reads the table while active; at the end it is dropped and its connection ended", async () => {
    expect((await h.as(user, "GET", "/v1/me/roles/ledger-pg-reader/credentials")).body.error?.code).toBe("NOT_ACTIVE");
    const request = await h.activate(user, "ledger-pg-reader");
    expect(request.state).toBe("active");
    const creds = await credentialsOf("ledger-pg-reader");
    expect(creds).toMatchObject({ host: "127.0.0.1", port: 5432, database: pgDatabase });
    expect(creds.user).toMatch(new RegExp(`^stint_${user}_[0-9a-f]{8}$`));
    expect(creds.password).toHaveLength(32);

    const client = new pg.Client({
      host: creds.host,
      port: creds.port,
      database: creds.database!,
      user: creds.user,
      password: creds.password,
    });
    client.on("error", () => undefined);
    await client.connect();
    expect((await client.query("select entry from ledger")).rows).toEqual([{ entry: "opening balance" }]);

    await h.expireAll();
    await expect(client.query("select 1")).rejects.toThrow();
    const exists = await pgRoot.query("select 1 from pg_roles where rolname = $1", [creds.user]);
    expect(exists.rowCount).toBe(0);
    const audit = await h.admin("GET", "/v1/audit/events?limit=500");
    expect(JSON.stringify(audit.body)).not.toContain(creds.password);
    expect((audit.body.items as { action: string }[]).map((e) => e.action)).toContain("grant.credentials_read");
  });

  it("MariaDB: a minted account reads the table while active; at the end it is dropped and its connection killed", async () => {
    const request = await h.activate(user, "ledger-maria-reader");
    expect(request.state).toBe("active");
    const creds = await credentialsOf("ledger-maria-reader");
    expect(creds).toMatchObject({ host: "127.0.0.1", port: 3306 });
    const connection = await mysql.createConnection({
      host: creds.host,
      port: creds.port,
      user: creds.user,
      password: creds.password,
    });
    connection.on("error", () => undefined);
    const [rows] = await connection.query(`select entry from \`${myDatabase}\`.ledger`);
    expect(rows).toEqual([{ entry: "opening balance" }]);
    await expect(
      mysql.createConnection({ host: creds.host, port: creds.port, user: creds.user, password: "wrong-password" }),
    ).rejects.toThrow(/denied/i);

    await h.expireAll();
    await expect(connection.query("select 1")).rejects.toThrow();
    connection.destroy();
    const [left] = await myRoot.query("select User from mysql.user where User = ?", [creds.user]);
    expect(left).toEqual([]);
  });

  it("MariaDB: a login made before the mark (no expiry event) is still dropped at its grant's end", async () => {
    // The clock is a day ahead after the tests above: back to the server's time, as in production.
    h.clock.set(new Date());
    expect((await h.activate(user, "ledger-maria-reader")).state).toBe("active");
    const creds = await credentialsOf("ledger-maria-reader");
    // What a login minted by a Stint version before the mark looks like: no event names it.
    const [events] = await myRoot.query(
      "select event_schema as s, event_name as n from information_schema.events where event_definition like ?",
      [`%${creds.user}%`],
    );
    expect(events).toHaveLength(1);
    for (const e of events as { s: string; n: string }[]) await myRoot.query(`drop event \`${e.s}\`.\`${e.n}\``);
    const connection = await mysql.createConnection({
      host: creds.host,
      port: creds.port,
      user: creds.user,
      password: creds.password,
    });
    connection.on("error", () => undefined);

    await h.expireAll();
    const [left] = await myRoot.query("select User from mysql.user where User = ?", [creds.user]);
    expect(left).toEqual([]);
    await expect(connection.query("select 1")).rejects.toThrow();
    connection.destroy();
  });
});
