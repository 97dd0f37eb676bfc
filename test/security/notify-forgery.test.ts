/**
 * Attack: a database role that may only CONNECT to Stint's database (no table privileges) sends
 * `pg_notify` on Stint's channels. Without a check on the sender, every node applied what it heard: a
 * forged `act` turned a denied check into an allowed one, a forged `prn` re-enabled a disabled user's
 * bearer token or widened platform roles, a forged `end` denied a live activation, a forged kill ended a
 * brokered session. Now only notifications from backends running as Stint's own role are delivered.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAppStore, type AppStore } from "../../src/db/index.js";
import { ACCESS_CHANNEL } from "../../src/modules/access-index/access-index.service.js";
import { SESSIONS_CHANNEL } from "../../src/modules/sessions/sessions.service.js";
import { SELF_SERVICE_POLICY, seedRole, seedUser } from "../../src/testing/pim.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { until } from "../../src/testing/until.js";

let server: TestServer;
let admin: pg.Client;
let attacker: pg.Client;
let attackerRole: string;
let auditor: string;
let rejected = 0;
const logLines: string[] = [];

async function call(auth: string, method: "GET" | "POST", url: string, payload?: object) {
  const res = await server.app.inject({ method, url, headers: { authorization: auth }, ...(payload && { payload }) });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
}

const check = async (principal: string) =>
  (await call(auditor, "GET", `/v1/check?principal=${principal}&role=db-reader`)).body;

async function ids(principal: string) {
  const row = await admin.query<{ pid: string; rid: string }>(
    "select (select id from principals where name = $1) as pid, (select id from roles where name = 'db-reader') as rid",
    [principal],
  );
  return row.rows[0]!;
}

/** Sends as the attacker and waits until the server dropped it (or, before the fix, for a while). */
async function forge(channel: string, message: object) {
  const before = rejected;
  await attacker.query("select pg_notify($1, $2)", [channel, JSON.stringify(message)]);
  await until("the forged notification was dropped", () => rejected > before, 3_000).catch(() => undefined);
  await until("the index is current", () => server.accessIndex.current());
}

beforeAll(async () => {
  server = await testServer("postgres", {
    logLevel: "warn",
    logDestination: { write: (line: string) => void logLines.push(line) },
  });
  server.store.onNotifyRejected?.(() => (rejected += 1));
  await seedUser(server, "alice", { groups: ["sre"] });
  await seedUser(server, "carol", { groups: ["sre"] });
  await seedUser(server, "bob");
  await seedRole(server, { name: "db-reader", policy: SELF_SERVICE_POLICY, eligibleGroups: ["sre"] });
  auditor = await server.userWithRoles("auditor-1", ["auditor"]);
  admin = new pg.Client({ connectionString: server.databaseUrl });
  await admin.connect();
  attackerRole = `nopriv_${randomBytes(4).toString("hex")}`;
  const database = new URL(server.databaseUrl!).pathname.slice(1);
  await admin.query(`create role ${attackerRole} login`);
  await admin.query(`grant connect on database "${database}" to ${attackerRole}`);
  const url = new URL(server.databaseUrl!);
  url.username = attackerRole;
  url.password = "";
  attacker = new pg.Client({ connectionString: url.toString() });
  await attacker.connect();
  // The attacker really holds no table privileges: everything below rides on NOTIFY alone.
  await expect(attacker.query("select count(*) from principals")).rejects.toThrow(/permission denied/);
  await until("the index is current", () => server.accessIndex.current());
}, 60_000);

afterAll(async () => {
  await attacker?.end().catch(() => undefined);
  await admin?.query(`drop owned by ${attackerRole}; drop role ${attackerRole}`).catch(() => undefined);
  await admin?.end().catch(() => undefined);
  await server?.cleanup();
});

describe("forged notifications from a role that may only connect", () => {
  it("a forged act does not allow a principal without an activation", async () => {
    expect(await check("alice")).toMatchObject({ allowed: false });
    const { pid, rid } = await ids("alice");
    const now = Date.now();
    await forge(ACCESS_CHANNEL, {
      t: "act",
      at: now,
      id: randomUUID(),
      pid,
      pn: "alice",
      rid,
      rn: "db-reader",
      exp: now + 3_600_000,
      since: now,
    });
    expect(await check("alice")).toMatchObject({ allowed: false });
    expect(rejected).toBeGreaterThan(0);
    // Counted for the operator, and logged without the attacker's text.
    const scrape = await server.app.inject({
      method: "GET",
      url: "/metrics",
      headers: { authorization: server.adminAuth },
    });
    expect(scrape.body).toMatch(/stint_notify_rejected_total\{channel="stint_access"\} [1-9]/);
    const warned = logLines.filter((line) => line.includes("stint_notify") || line.includes("other than Stint's"));
    expect(warned.length).toBeGreaterThan(0);
    expect(logLines.join("\n")).not.toContain(pid);
  });

  it("a forged prn neither re-enables a disabled user's token nor widens platform roles", async () => {
    const bob = await server.login("bob", passwordFor("bob"));
    const carol = await server.login("carol", passwordFor("carol"));
    expect((await call(carol, "GET", "/v1/users")).status).toBe(403);
    expect((await call(server.adminAuth, "POST", "/v1/users/bob/disable", { reason: "left the company" })).status).toBe(
      200,
    );
    expect((await call(bob, "GET", "/v1/me")).status).toBe(401);
    for (const [name, status] of [
      ["bob", "active"],
      ["carol", "active"],
    ] as const) {
      const { pid } = await ids(name);
      await forge(ACCESS_CHANNEL, {
        t: "prn",
        at: Date.now(),
        p: { id: pid, name, kind: "user", status, platformRoles: ["admin"] },
      });
    }
    expect((await call(bob, "GET", "/v1/me")).status).toBe(401);
    // The first call after a principal message reads the session again; the next ones answer from memory.
    for (let i = 0; i < 3; i++) expect((await call(carol, "GET", "/v1/users")).status).toBe(403);
  });

  it("a forged end does not deny a real activation", async () => {
    const alice = await server.login("alice", passwordFor("alice"));
    const submitted = await call(alice, "POST", "/v1/activation-requests", {
      role: "db-reader",
      reason: "read the replica's lag",
    });
    expect(submitted.body.state).toBe("active");
    await until("the index has the activation", async () => (await check("alice")).allowed === true);
    await forge(ACCESS_CHANNEL, { t: "end", at: Date.now(), id: submitted.body.id });
    expect(await check("alice")).toMatchObject({ allowed: true, requestId: submitted.body.id });
  });

  it("a forged kill on the sessions channel never reaches the sessions bus", async () => {
    const heard: string[] = [];
    const stop = await server.store.listen(SESSIONS_CHANNEL, (payload) => heard.push(payload));
    try {
      const kill = { type: "kill", sessionId: randomUUID(), by: "root", reason: "forged", at: Date.now() };
      await forge(SESSIONS_CHANNEL, kill);
      await forge(SESSIONS_CHANNEL, { ...kill, sessionId: randomUUID() });
      // Stint's own message after them arrives (in order, so the forged ones were not merely late).
      const own = { ...kill, reason: "from a Stint node" };
      await admin.query("select pg_notify($1, $2)", [SESSIONS_CHANNEL, JSON.stringify(own)]);
      await until("Stint's own message is heard", () => heard.length > 0);
      expect(heard.map((p) => (JSON.parse(p) as { reason: string }).reason)).toEqual(["from a Stint node"]);
    } finally {
      await stop();
    }
  });
});

describe("messages from another Stint node (Stint's own role)", () => {
  let second: AppStore;
  beforeAll(async () => {
    second = await openAppStore({ databaseUrl: server.databaseUrl });
  });
  afterAll(async () => {
    await second?.close();
  });

  it("still apply", async () => {
    expect(await check("carol")).toMatchObject({ allowed: false });
    const { pid, rid } = await ids("carol");
    const now = Date.now();
    const id = randomUUID();
    const act = { t: "act", at: now, id, pid, pn: "carol", rid, rn: "db-reader", exp: now + 3_600_000, since: now };
    const before = rejected;
    await sql`select pg_notify(${ACCESS_CHANNEL}, ${JSON.stringify(act)})`.execute(second.db);
    await until("the second node's act applies", async () => (await check("carol")).allowed === true);
    expect(rejected).toBe(before);
    // Tidy up the same way: an end from the second node.
    await sql`select pg_notify(${ACCESS_CHANNEL}, ${JSON.stringify({ t: "end", at: Date.now(), id })})`.execute(
      second.db,
    );
    await until("the second node's end applies", async () => (await check("carol")).allowed === false);
  });
});
