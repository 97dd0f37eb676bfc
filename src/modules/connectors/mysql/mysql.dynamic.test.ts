/**
 * MariaDB dynamic logins against the machine's MariaDB (security review): createLogin never takes over an
 * account it did not make (the password it sets goes to the requester), and a dynamic login ends at the server
 * by itself at its validUntil (an expiry event), even if Stint is down then. A login made before the mark (no
 * expiry event) is still dropped at the end of the grant Stint made it for, and no other account of its name.
 * With the server's event_scheduler off, the expiry event does not run: test() says so, and Stint's drop ends it.
 */
import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import type { Connection, RowDataPacket } from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectorError, type ConnectorTarget } from "../connector.types.js";
import { holdMariadb } from "../../../testing/mariadb.js";
import { eventually } from "../../../testing/ssh-connections.js";
import { mysqlConnector as connector, mysqlPools } from "./mysql.connector.js";

const HOST = "127.0.0.1";
const PORT = 3306;
const hex = randomBytes(4).toString("hex");
const admin = `stint_da_${hex}`;
const role = `stint_dr_${hex}`;
const victim = `stint_dv_${hex}`;
const minted = `stint_dm_${hex}`;
const expiring = `stint_de_${hex}`;
const preUpgrade = `stint_dp_${hex}`;
const unattended = `stint_do_${hex}`;
const adminPassword = `pw-${randomBytes(12).toString("hex")}`;
const victimPassword = `pw-${randomBytes(12).toString("hex")}`;
const password = `pw-${randomBytes(12).toString("hex")}`;
const entitlement = { role, dynamic: true };
const target: ConnectorTarget = {
  name: "dyn-db",
  address: `mysql://${admin}@${HOST}:${PORT}?sslmode=disable`,
  options: {},
  credential: adminPassword,
};

let root: Connection;
let release: (() => Promise<void>) | undefined;
let schedulerWas = "OFF";
const opened: Connection[] = [];

async function rows(sql: string, values?: unknown[]): Promise<RowDataPacket[]> {
  const [result] = await root.query(sql, values);
  return result as RowDataPacket[];
}

async function signIn(user: string, pass: string): Promise<Connection> {
  const connection = await mysql.createConnection({ host: HOST, port: PORT, user, password: pass });
  connection.on("error", () => undefined);
  opened.push(connection);
  return connection;
}

const signsIn = (user: string, pass: string) =>
  signIn(user, pass).then(
    async (connection) => {
      await connection.end();
      return true;
    },
    () => false,
  );

const accountExists = async (user: string) =>
  (await rows("SELECT 1 FROM mysql.user WHERE User = ?", [user])).length > 0;
const stintEvents = async () =>
  rows("SELECT EVENT_NAME AS name FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'mysql' AND DEFINER LIKE ?", [
    `${admin}@%`,
  ]);

async function refusal(pending: Promise<unknown>): Promise<ConnectorError> {
  const error = await pending.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  expect((error as ConnectorError).reason).toBe("refused");
  return error as ConnectorError;
}

beforeAll(async () => {
  release = await holdMariadb();
  root = await mysql.createConnection({ host: HOST, port: PORT, user: "root", password: "" });
  root.on("error", () => undefined);
  await root.query(`CREATE USER '${admin}'@'%' IDENTIFIED BY '${adminPassword}'`);
  await root.query(`GRANT ALL PRIVILEGES ON *.* TO '${admin}'@'%' WITH GRANT OPTION`);
  await root.query(`CREATE ROLE ${role} WITH ADMIN '${admin}'@'%'`);
  // An account someone else made, with privileges of its own.
  await root.query(`CREATE USER '${victim}'@'%' IDENTIFIED BY '${victimPassword}'`);
  await root.query(`GRANT PROCESS ON *.* TO '${victim}'@'%'`);
  schedulerWas = String((await rows("SELECT @@GLOBAL.event_scheduler AS value"))[0]?.value);
});

afterAll(async () => {
  for (const connection of opened) connection.destroy();
  await mysqlPools.closeAll();
  if (root) {
    for (const event of await stintEvents()) await root.query(`DROP EVENT IF EXISTS mysql.\`${String(event.name)}\``);
    for (const user of [admin, victim, minted, expiring, preUpgrade, unattended])
      await root.query(`DROP USER IF EXISTS '${user}'@'%'`);
    await root.query(`DROP ROLE IF EXISTS ${role}`);
    if (schedulerWas !== "ON") await root.query("SET GLOBAL event_scheduler = OFF").catch(() => undefined);
    await root.end();
  }
  await release?.();
});

describe("MariaDB dynamic logins", () => {
  it("createLogin refuses an account it did not make, and leaves it as it was", async () => {
    const validUntil = new Date(Date.now() + 3_600_000);
    const error = await refusal(connector.createLogin!(target, { login: victim, password, entitlement, validUntil }));
    expect(error.message).toContain("not created by Stint");
    // The requester's password does not open the account; its owner's still does, and it holds no role.
    expect(await signsIn(victim, password)).toBe(false);
    expect(await signsIn(victim, victimPassword)).toBe(true);
    expect(await connector.observe(target, entitlement)).toEqual([]);
    // Nor does the grant's end drop it.
    await refusal(connector.dropLogin!(target, { login: victim }));
    expect(await accountExists(victim)).toBe(true);
  });

  it("a login it made is re-keyed by a retry and dropped with its expiry event", async () => {
    const validUntil = new Date(Date.now() + 3_600_000);
    await connector.createLogin!(target, { login: minted, password: "first-0123456789", entitlement, validUntil });
    expect(await stintEvents()).toHaveLength(1);
    await connector.createLogin!(target, { login: minted, password, entitlement, validUntil });
    expect(await signsIn(minted, password)).toBe(true);
    expect(await stintEvents()).toHaveLength(1);
    await connector.dropLogin!(target, { login: minted });
    expect(await accountExists(minted)).toBe(false);
    expect(await stintEvents()).toHaveLength(0);
  });

  it("the server drops the login and ends its session at validUntil by itself (event_scheduler on)", async () => {
    await root.query("SET GLOBAL event_scheduler = OFF");
    expect((await connector.test(target)).detail).toContain("event_scheduler is OFF");
    await root.query("SET GLOBAL event_scheduler = ON");
    expect((await connector.test(target)).detail).not.toContain("event_scheduler");
    const validUntil = new Date(Date.now() + 4_000);
    await connector.createLogin!(target, { login: expiring, password, entitlement, validUntil });
    const session = await signIn(expiring, password);
    const alive = () =>
      session.query("SELECT 1").then(
        () => true,
        () => false,
      );
    expect(await alive()).toBe(true);
    // Stint does nothing more: no dropLogin. The server's clock ends it.
    expect(await eventually(async () => !(await accountExists(expiring)), 90_000)).toBe(true);
    expect(await eventually(async () => !(await alive()), 30_000)).toBe(true);
    expect(await signsIn(expiring, password)).toBe(false);
    // dropLogin afterwards (Stint back) finds nothing to drop and clears the event.
    await connector.dropLogin!(target, { login: expiring });
    expect(await stintEvents()).toHaveLength(0);
  });

  it("a login made before the mark (no expiry event) is dropped at the end of the grant Stint made it for", async () => {
    const namedAt = new Date(Date.now() - 1_000);
    // What createLogin did before the mark, as Stint's admin: CREATE USER, the role as its default; no event.
    const oldStint = await signIn(admin, adminPassword);
    await oldStint.query(`CREATE USER '${preUpgrade}'@'%' IDENTIFIED BY '${password}'`);
    await oldStint.query(`GRANT ${role} TO '${preUpgrade}'@'%'`);
    await oldStint.query(`SET DEFAULT ROLE ${role} FOR '${preUpgrade}'@'%'`);
    await oldStint.end();
    const session = await signIn(preUpgrade, password);
    // Without the grant's word, it is an account like any other: refused, kept.
    await refusal(connector.dropLogin!(target, { login: preUpgrade }));
    expect(await accountExists(preUpgrade)).toBe(true);
    await connector.dropLogin!(target, { login: preUpgrade, madeFor: { namedAt } });
    expect(await accountExists(preUpgrade)).toBe(false);
    expect(await signsIn(preUpgrade, password)).toBe(false);
    await expect(session.query("SELECT 1")).rejects.toThrow();
  });

  it("an account that only has the name is untouched: no grant, or one whose name was drawn after it was made", async () => {
    await refusal(connector.dropLogin!(target, { login: victim }));
    const later = new Date(Date.now() + 3_600_000);
    const error = await refusal(connector.dropLogin!(target, { login: victim, madeFor: { namedAt: later } }));
    expect(error.message).toContain("before the grant drew its name");
    expect(await signsIn(victim, victimPassword)).toBe(true);
  });

  it("with event_scheduler off the expiry event silently does not run; test() says so and dropLogin ends the login", async () => {
    await root.query("SET GLOBAL event_scheduler = OFF");
    expect((await connector.test(target)).detail).toMatch(/event_scheduler is OFF.*only Stint/);
    await connector.createLogin!(target, {
      login: unattended,
      password,
      entitlement,
      validUntil: new Date(Date.now() + 1_000),
    });
    // Until the server's clock is well past the event's time: it did not run, and nothing said so.
    const due = async () =>
      (
        await rows(
          "SELECT 1 FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'mysql' AND DEFINER LIKE ? " +
            "AND EXECUTE_AT < NOW() - INTERVAL 3 SECOND",
          [`${admin}@%`],
        )
      ).length > 0;
    expect(await eventually(due, 30_000)).toBe(true);
    const [event] = await rows(
      "SELECT LAST_EXECUTED AS last, STATUS AS status FROM information_schema.EVENTS WHERE DEFINER LIKE ?",
      [`${admin}@%`],
    );
    expect(event).toMatchObject({ last: null, status: "ENABLED" });
    expect(await signsIn(unattended, password)).toBe(true);
    // Stint's own end of the grant drops it (its mark is there).
    await connector.dropLogin!(target, { login: unattended });
    expect(await accountExists(unattended)).toBe(false);
    expect(await stintEvents()).toHaveLength(0);
  });
});
