/**
 * The MariaDB connector's pool of admin connections (../connection-pool.ts), against the machine's MariaDB:
 * operations reuse one connection, concurrency stays within the pool's size, a connection the server kills is
 * replaced without the caller noticing, idle connections close, and a rotated admin password is used from the
 * next operation on while the old one serves nothing any more. The admin is an account of this file's own, so
 * its connections can be told apart in the process list.
 */
import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import type { Connection, RowDataPacket } from "mysql2/promise";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConnectorError, type ConnectorTarget } from "../connector.types.js";
import { DEFAULT_POOL_SETTINGS } from "../connection-pool.js";
import { holdMariadb } from "../../../testing/mariadb.js";
import { mysqlConnector as connector, mysqlPools } from "./mysql.connector.js";
import { eventually } from "../../../testing/until.js";

const HOST = "127.0.0.1";
const PORT = 3306;
const hex = randomBytes(4).toString("hex");
const role = `stint_pr_${hex}`;
const member = `stint_pm_${hex}`;
const admin = `stint_pa_${hex}`;
let adminPassword = `pw-${randomBytes(12).toString("hex")}`;

let root: Connection;
let releaseMariadb: (() => Promise<void>) | undefined;
let targets = 0;

const targetFor = (credential = adminPassword): ConnectorTarget => ({
  name: `pool-${hex}-${++targets}`,
  address: `mysql://${admin}@${HOST}:${PORT}?sslmode=disable`,
  options: {},
  credential,
});

/** The ids of the admin account's connections. */
async function connections(): Promise<number[]> {
  const [rows] = await root.query("SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ? ORDER BY ID", [
    admin,
  ]);
  return (rows as RowDataPacket[]).map((row) => Number(row.id));
}

const observe = (target: ConnectorTarget) => connector.observe(target, { role });

/**
 * Closes every pooled connection and waits until the server has let go of them: a closed connection stays in
 * the process list for a moment, and a test that counts or kills connections must not see the last test's.
 */
async function freshPools(): Promise<void> {
  await mysqlPools.closeAll();
  expect(await eventually(async () => (await connections()).length === 0)).toBe(true);
}

beforeAll(async () => {
  releaseMariadb = await holdMariadb();
  root = await mysql.createConnection({ host: HOST, port: PORT, user: "root", password: "" });
  root.on("error", () => undefined);
  await root.query(`CREATE USER '${admin}'@'%' IDENTIFIED BY '${adminPassword}'`);
  await root.query(`GRANT ALL PRIVILEGES ON *.* TO '${admin}'@'%' WITH GRANT OPTION`);
  await root.query(`CREATE USER '${member}'@'%' IDENTIFIED BY 'pw-${hex}-member'`);
  await root.query(`CREATE ROLE ${role} WITH ADMIN '${admin}'@'%'`);
});

afterEach(() => mysqlPools.configure(DEFAULT_POOL_SETTINGS));

afterAll(async () => {
  await mysqlPools.closeAll();
  if (root) {
    for (const account of [admin, member]) await root.query(`DROP USER IF EXISTS '${account}'@'%'`);
    await root.query(`DROP ROLE IF EXISTS ${role}`);
    await root.end();
  }
  await releaseMariadb?.();
});

describe("mysql connector: pooled admin connections", () => {
  it("sequential operations reuse one connection", async () => {
    const target = targetFor();
    await connector.test(target);
    const first = await connections();
    expect(first).toHaveLength(1);
    for (let i = 0; i < 5; i++) {
      await connector.provision(target, { login: member, entitlement: { role } });
      expect(await observe(target)).toEqual([member]);
      await connector.revoke(target, { login: member, entitlement: { role } });
    }
    expect(await observe(target)).toEqual([]);
    expect(await connections()).toEqual(first);
  });

  it("concurrent operations use at most the pool's size of connections", async () => {
    await freshPools();
    const target = targetFor();
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await connections()).length);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const results = await Promise.all(Array.from({ length: 16 }, () => observe(target)));
    sampling = false;
    await sampler;
    expect(results.every((r) => r.length === 0)).toBe(true);
    peak = Math.max(peak, (await connections()).length);
    expect(peak).toBeGreaterThanOrEqual(1);
    expect(peak).toBeLessThanOrEqual(DEFAULT_POOL_SETTINGS.max);
  });

  it("a connection killed by the server is replaced: the next operation succeeds on a new one", async () => {
    await freshPools();
    const target = targetFor();
    await observe(target);
    const [before] = await connections();
    await root.query(`KILL CONNECTION ${Number(before)}`);
    expect(await observe(target)).toEqual([]);
    const after = await connections();
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before);
  });

  it("an idle connection is closed after the idle time", async () => {
    await freshPools();
    mysqlPools.configure({ idleMs: 300 });
    const target = targetFor();
    await Promise.all([observe(target), observe(target)]);
    expect((await connections()).length).toBeGreaterThanOrEqual(1);
    expect(await eventually(async () => (await connections()).length === 0)).toBe(true);
  });

  it("a rotated admin password is used from the next operation on; the old one serves nothing", async () => {
    await freshPools();
    const target = targetFor();
    await observe(target);
    const [before] = await connections();
    const rotated = `pw-${randomBytes(12).toString("hex")}`;
    await connector.setPassword!(target, { login: admin, password: rotated });
    const oldPassword = adminPassword;
    adminPassword = rotated;

    const next = { ...target, credential: rotated };
    expect(await observe(next)).toEqual([]);
    expect(await eventually(async () => !(await connections()).includes(before!))).toBe(true);
    expect(await connections()).toHaveLength(1);

    const stale = await observe(target).then(
      () => null,
      (e: unknown) => e,
    );
    expect(stale).toBeInstanceOf(ConnectorError);
    expect((stale as ConnectorError).reason).toBe("refused");
    expect((stale as Error).message).not.toContain(oldPassword);
  });

  it("closeAll closes every pooled connection", async () => {
    const target = targetFor();
    await Promise.all([observe(target), observe(target)]);
    await mysqlPools.closeAll();
    expect(mysqlPools.stats()).toEqual([]);
    expect(await eventually(async () => (await connections()).length === 0)).toBe(true);
  });
});
