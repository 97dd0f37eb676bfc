/**
 * Acceptance against the machine's real MariaDB: activation grants a role that a
 * real client uses, expiry revokes it and kills the open connection; and with
 * MariaDB stopped during a revocation, the grant stays `revoking` (visible in the
 * API and at /metrics) and is revoked once MariaDB is back.
 */
import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdMariadb, mariadbAnswers, MARIADB_URL, startMariadb, stopMariadb } from "../../src/testing/mariadb.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const hex = randomBytes(4).toString("hex");
const database = `stint_e2e_${hex}`;
const role = `stint_e2e_r_${hex}`;
const alice = `alice${hex}`;
const dave = `dave${hex}`;
const loginOf = (user: string) => `stint_e2e_${user}`;
const password = `pw-${randomBytes(12).toString("hex")}`;
const BACKOFF = { baseMs: 1_000, capMs: 5_000 };

let release: (() => Promise<void>) | undefined;
let root: mysql.Connection;
let h: TargetsHarness;
const connections: mysql.Connection[] = [];

async function connectAs(login: string): Promise<mysql.Connection> {
  const connection = await mysql.createConnection({ host: "127.0.0.1", port: 3306, user: login, password });
  connection.on("error", () => undefined); // a killed connection reports here
  connections.push(connection);
  return connection;
}

async function freshSelect(login: string): Promise<string[]> {
  const connection = await connectAs(login);
  try {
    const [rows] = await connection.query(`select name from \`${database}\`.vault order by name`);
    return (rows as { name: string }[]).map((r) => r.name);
  } finally {
    await connection.end().catch(() => undefined);
  }
}

beforeAll(async () => {
  release = await holdMariadb();
  root = await mysql.createConnection({ host: "127.0.0.1", port: 3306, user: "root", password: "" });
  await root.query(`create database \`${database}\``);
  await root.query(`create table \`${database}\`.vault (name varchar(20))`);
  await root.query(`insert into \`${database}\`.vault values ('gold'), ('silver')`);
  await root.query(`create role ${role}`);
  await root.query(`grant select on \`${database}\`.* to ${role}`);
  for (const user of [alice, dave]) await root.query(`create user '${loginOf(user)}'@'%' identified by '${password}'`);

  h = await targetsHarness({ backoff: BACKOFF });
  for (const user of [alice, dave]) await h.createUser(user);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("maria-self")}
targets:
  - name: app-mariadb
    kind: mysql
    address: ${MARIADB_URL}
    identity: { template: "stint_e2e_{{name}}" }
roles:
  - name: vault-reader
    target: app-mariadb
    entitlement: { role: ${role} }
    policy: maria-self
    risk: medium
eligibility:
  - role: vault-reader
    users: [${alice}, ${dave}]
`);
});

afterAll(async () => {
  // Whatever happened, leave the machine's MariaDB running as it was found.
  if (!(await mariadbAnswers())) await startMariadb();
  for (const connection of connections) connection.destroy();
  await h?.server.cleanup();
  if (root) {
    const admin = await mysql.createConnection({ host: "127.0.0.1", port: 3306, user: "root", password: "" });
    for (const user of [alice, dave]) await admin.query(`drop user if exists '${loginOf(user)}'@'%'`);
    await admin.query(`drop role if exists ${role}`);
    await admin.query(`drop database if exists \`${database}\``);
    await admin.end();
    root.destroy();
  }
  await release?.();
});

describe("MariaDB target", () => {
  it("activation grants the role; expiry revokes it and kills the connection that held it", async () => {
    await expect(freshSelect(loginOf(alice))).rejects.toThrow(/denied/);
    const request = await h.activate(alice, "vault-reader");
    expect(request.state).toBe("active");
    expect(await freshSelect(loginOf(alice))).toEqual(["gold", "silver"]);
    const open = await connectAs(loginOf(alice));
    await open.query(`select count(*) from \`${database}\`.vault`);

    await h.expireAll();
    expect((await h.admin("GET", `/v1/activation-requests/${String(request.id)}`)).body.state).toBe("expired");
    await expect(open.query(`select count(*) from \`${database}\`.vault`)).rejects.toThrow();
    await expect(freshSelect(loginOf(alice))).rejects.toThrow(/denied/);
  });

  it("a revocation while MariaDB is down stays revoking, shows in the API and metrics, and completes when it returns", async () => {
    const request = await h.activate(dave, "vault-reader");
    expect(request.state).toBe("active");
    expect(await freshSelect(loginOf(dave))).toEqual(["gold", "silver"]);
    root.destroy();

    await stopMariadb();
    try {
      await h.expireAll();
      const stuck = await h.admin("GET", "/v1/grants?stuck=true");
      expect(stuck.status).toBe(200);
      expect(stuck.body.items).toEqual([
        expect.objectContaining({
          requestId: request.id,
          role: "vault-reader",
          target: "app-mariadb",
          login: loginOf(dave),
          state: "revoking",
          attempts: 1,
          lastError: expect.any(String),
        }),
      ]);
      expect(await h.metric("stint_grants_stuck", { target: "app-mariadb", state: "revoking" })).toBe(1);
      expect(await h.metric("stint_grants_unsettled", { target: "app-mariadb", state: "revoking" })).toBe(1);
      // Still down at the next attempt: still revoking, one more attempt counted, never dropped.
      h.clock.advance(BACKOFF.capMs);
      await h.drainOutbox();
      const again = await h.admin("GET", "/v1/grants?stuck=true");
      expect(again.body.items).toEqual([expect.objectContaining({ state: "revoking", attempts: 2 })]);
      const events = await h.admin("GET", "/v1/audit/events?limit=300");
      const failures = (events.body.items as { action: string }[]).filter((e) => e.action === "grant.revoke_failed");
      expect(failures).toHaveLength(1);
    } finally {
      await startMariadb();
    }

    // Within one retry window of MariaDB's return, the privilege is gone.
    h.clock.advance(BACKOFF.capMs);
    await h.drainOutbox();
    expect((await h.admin("GET", "/v1/grants?stuck=true")).body.items).toEqual([]);
    expect(await h.metric("stint_grants_stuck", { target: "app-mariadb", state: "revoking" })).toBe(null);
    await expect(freshSelect(loginOf(dave))).rejects.toThrow(/denied/);
    const events = await h.admin("GET", "/v1/audit/events?limit=300");
    const revoked = (events.body.items as { action: string; details: Record<string, unknown> }[]).filter(
      (e) => e.action === "grant.revoked" && e.details.login === loginOf(dave),
    );
    expect(revoked).toEqual([expect.objectContaining({ details: expect.objectContaining({ attempts: 3 }) })]);
  });
});
