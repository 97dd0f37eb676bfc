/**
 * Issue 13 acceptance 3: one target hanging every call must not hold up another target's revocations on
 * the same node. A webhook target's endpoint (a raw HTTP server here) answers while its activations are
 * provisioned, then accepts every call and never answers, for as long as the connector waits (its timeout
 * set to 30 s); its activations end and their revocations hang. Meanwhile activations on a real PostgreSQL
 * target end one after another: each membership must be gone at the server within 1 s of its activation's
 * end, while the webhook revocations are still hanging. The server runs its scheduler and outbox runner
 * live, on real time.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";
import { isMemberOf, pgTarget, type PgTarget } from "../../src/testing/pg-target.js";
import { until } from "../../src/testing/until.js";

const hex = randomBytes(4).toString("hex");
const adminUrl = "postgres://postgres@127.0.0.1:5432";
const SECRET = `whsec-${randomBytes(16).toString("hex")}`;
/** More than the runner's per-lane limit (4), so the webhook lane is full and has more waiting. */
const hookUsers = ["ada", "bo", "cy", "di", "ed", "flo"].map((u) => `${u}${hex}`);
/** The PostgreSQL activations end 3 s, 5 s and 7 s after the webhook ones (whose revocations hang by then). */
const DB_DURATIONS = ["8s", "10s", "11s"];

/** The PostgreSQL target: its database, reader role and the logins of its users (gil, hui, ike). */
let db: PgTarget;
/** Memberships are polled for several logins at once: a pool, one connection per poll. */
let watcher: pg.Pool;
let h: TargetsHarness;

/** The webhook endpoint: answers while `hang` is off; with it on, accepts each call and never answers. */
const hook = {
  hang: false,
  hanging: new Set<ServerResponse>(),
  calls: [] as { action: string; at: number }[],
  holders: new Set<string>(),
};
let hookServer: Server;

async function handleHook(req: IncomingMessage, res: ServerResponse) {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const call = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { action: string; login: string | null };
  hook.calls.push({ action: call.action, at: Date.now() });
  if (hook.hang) {
    hook.hanging.add(res);
    res.on("close", () => hook.hanging.delete(res));
    return;
  }
  const reply = (value: unknown) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(value));
  };
  if (call.action === "provision") hook.holders.add(call.login!);
  if (call.action === "revoke") hook.holders.delete(call.login!);
  if (call.action === "observe") return reply({ holders: [...hook.holders] });
  if (call.action === "discover")
    return reply({ accounts: [...hook.holders].map((login) => ({ login, privilege: "holds admin" })) });
  return reply({ ok: true });
}

const isMember = (login: string) => isMemberOf(watcher, db.reader, login);

/** Submits an activation and waits (the runner is live) until it is active; returns its id and end. */
async function activate(user: string, role: string, duration: string): Promise<{ id: string; endsAt: number }> {
  const res = await h.as(user, "POST", "/v1/activation-requests", {
    role,
    duration,
    reason: "investigating incident 4242 in production",
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const id = String(res.body.id);
  await until(
    `${user}'s activation of ${role}`,
    async () => (await h.admin("GET", `/v1/activation-requests/${id}`)).body.state === "active",
    5_000,
  );
  const row = await h.server.store.db
    .selectFrom("activation_requests")
    .select("expires_at")
    .where("id", "=", id)
    .executeTakeFirstOrThrow();
  return { id, endsAt: new Date(row.expires_at!).getTime() };
}

beforeAll(async () => {
  db = await pgTarget("slow", ["gil", "hui", "ike"]);
  watcher = new pg.Pool({ connectionString: `${adminUrl}/postgres`, max: db.users.length });
  hookServer = createServer((req, res) => {
    handleHook(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => hookServer.listen(0, "127.0.0.1", resolve));
  const hookPort = (hookServer.address() as AddressInfo).port;

  h = await targetsHarness({ realTime: true });
  for (const user of [...hookUsers, ...db.users]) await h.createUser(user);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("slow-self")}
targets:
  - name: slow-hook
    kind: webhook
    address: http://127.0.0.1:${hookPort}/stint
    credential: { secret: targets/slow-hook/signing }
    identity: { template: "{{name}}@example.com" }
    options: { timeout: 30s }
  - name: slow-db
    kind: postgres
    address: ${adminUrl}/${db.database}?sslmode=disable
    identity: { template: "stint_slow_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: hook-admin
    target: slow-hook
    entitlement: { role: admin }
    policy: slow-self
    risk: medium
  - name: db-reader
    target: slow-db
    entitlement: { role: ${db.reader} }
    policy: slow-self
    risk: medium
eligibility:
  - role: hook-admin
    users: [${hookUsers.join(", ")}]
  - role: db-reader
    users: [${db.users.join(", ")}]
`);
  const stored = await h.admin("PUT", "/v1/targets/slow-hook/credential", { secret: SECRET });
  expect(stored.status, JSON.stringify(stored.body)).toBe(200);
});

afterAll(async () => {
  // Whatever still hangs ends now (the calls fail), so stopping the runner does not wait out the timeout.
  hook.hang = false;
  for (const res of hook.hanging) res.destroy();
  await h?.server.scheduler.stop();
  await h?.server.outbox.stop();
  await h?.server.cleanup();
  if (hookServer) {
    hookServer.closeAllConnections();
    await new Promise<void>((resolve) => hookServer.close(() => resolve()));
  }
  await watcher?.end();
  await db?.drop();
});

describe("a target hanging every call (issue 13 acceptance 3)", () => {
  it("revocations on another target finish within 1 s of their activation's end", async () => {
    h.server.outbox.start();
    h.server.scheduler.start();

    const hookActivations: { id: string; endsAt: number }[] = [];
    for (const user of hookUsers) hookActivations.push(await activate(user, "hook-admin", "5s"));
    expect(hook.holders.size).toBe(hookUsers.length);
    // From now on the webhook endpoint takes every call and never answers.
    hook.hang = true;

    const dbActivations: { user: string; endsAt: number }[] = [];
    for (const [i, user] of db.users.entries()) {
      const { endsAt } = await activate(user, "db-reader", DB_DURATIONS[i]!);
      expect(await isMember(db.loginOf(user))).toBe(true);
      dbActivations.push({ user, endsAt });
    }
    const lastHookEnd = Math.max(...hookActivations.map((a) => a.endsAt));
    expect(Math.min(...dbActivations.map((a) => a.endsAt))).toBeGreaterThan(lastHookEnd + 1_000);

    // Each membership is watched at the server; when it is gone, the webhook lane must still be stuck.
    const results = await Promise.all(
      dbActivations.map(async ({ user, endsAt }) => {
        await until(`${user}'s membership to be revoked`, async () => !(await isMember(db.loginOf(user))), 20_000);
        const goneAt = Date.now();
        return { user, lagMs: goneAt - endsAt, hangingThen: hook.hanging.size };
      }),
    );
    for (const result of results) {
      // Gone after the end (never early), and within a second of it.
      expect(result.lagMs, JSON.stringify(result)).toBeGreaterThanOrEqual(0);
      expect(result.lagMs, JSON.stringify(result)).toBeLessThan(1_000);
      // The webhook revocations were hanging all along: the lane full (4 at once), none answered.
      expect(result.hangingThen, JSON.stringify(result)).toBe(4);
    }
    const hookGrants = await h.server.store.db
      .selectFrom("grants")
      .select("state")
      .where(
        "request_id",
        "in",
        hookActivations.map((a) => a.id),
      )
      .execute();
    expect(hookGrants.every((g) => g.state !== "revoked")).toBe(true);
    expect(hook.holders.size).toBe(hookUsers.length);
    expect(hook.calls.filter((c) => c.action === "revoke").length).toBeGreaterThanOrEqual(4);
  }, 45_000);
});
