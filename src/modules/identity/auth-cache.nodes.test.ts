/**
 * Bearer authentication from memory against changes made on another node (issue 14, item 2): two Stint
 * nodes on one PostgreSQL database. Node B has verified a token and holds its session (or API token) in
 * memory, so it authenticates it with no database query; node A then ends it — a sign-out, a password change
 * (which ends the user's other sessions), a disable, an API token's revocation. A refuses at once (the node
 * that committed applies its message before answering); B within the documented bound: it answers from
 * memory only while it heard a heartbeat sent at most `maxSilenceMs` (1 s) ago, and hearing one proves every
 * change committed before it was sent has been applied (access-index README). B is polled until then and
 * asked once after; how soon it honoured the change is printed, not asserted.
 *
 * The hot route is the check API asked about oneself (`GET /v1/check`): authentication and the answer both
 * from memory, as a service asking before each privileged action does.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAppStore, type AppStore } from "../../db/index.js";
import { createLogger } from "../../lib/logger.js";
import { createServer, type Server } from "../../server.js";
import { onEachQuery, tableOf, withPlugin } from "../../testing/plugged-store.js";
import { passwordFor, testServer, TEST_SCRYPT, type TestServer } from "../../testing/server.js";

/** The index's `maxSilenceMs`, and a margin for the request to start after it. */
const BOUND_MS = 1000 + 100;
/** How long B is polled before the test only waits out the bound. */
const POLL_MS = 3000;

/** Counts node B's reads of the tables behind authentication. */
function counted() {
  const state = { authReads: 0 };
  const plugin = onEachQuery(({ node }) => {
    const table = node.kind === "SelectQueryNode" ? tableOf(node) : undefined;
    if (table === "refresh_sessions" || table === "api_tokens" || table === "principals") state.authReads++;
  });
  return { state, wrap: (store: AppStore) => withPlugin(store, plugin) };
}

describe("bearer authentication from memory across two nodes (PostgreSQL)", () => {
  const masterKey = randomBytes(32);
  const b = counted();
  let nodeA: TestServer;
  let nodeB: Server;

  const inject = async (
    node: Server,
    auth: string,
    method: "GET" | "POST" | "PATCH" | "DELETE",
    url: string,
    payload?: object,
  ) => {
    const res = await node.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(payload ? { payload } : {}),
    });
    return { status: res.statusCode, body: res.body };
  };
  /** The check API asked about oneself: 200 while the credential holds, 401 once it does not. */
  const checkSelf = (node: Server, auth: string, name: string) =>
    inject(node, auth, "GET", `/v1/check?principal=${name}&role=any-role`);

  /** `auth` is authenticated on B from memory: no read of sessions, tokens or principals. */
  async function inBMemory(auth: string, name: string) {
    expect((await checkSelf(nodeB, auth, name)).status).toBe(200); // verifies it and reads its session once
    const before = b.state.authReads;
    for (let i = 0; i < 5; i++) expect((await checkSelf(nodeB, auth, name)).status).toBe(200);
    expect(b.state.authReads).toBe(before);
  }

  /** B refuses `auth` within the bound from `changedAt`, and never accepts it again once it refused. */
  async function refusedByB(what: string, auth: string, name: string, changedAt: number) {
    let refusedAfter: number | null = null;
    while (performance.now() - changedAt < POLL_MS) {
      const reply = await checkSelf(nodeB, auth, name);
      if (reply.status === 401) refusedAfter ??= performance.now() - changedAt;
      else expect(refusedAfter, `${what}: B accepted the credential again after refusing it`).toBeNull();
      if (refusedAfter !== null && performance.now() - changedAt > BOUND_MS) break;
      await sleep(5);
    }
    const wait = changedAt + BOUND_MS - performance.now();
    if (wait > 0) await sleep(wait);
    const last = await checkSelf(nodeB, auth, name);
    expect(last.status, `${what}: B's answer ${BOUND_MS} ms after the change: ${last.body}`).toBe(401);
    console.log(`${what}: node B refused it ${refusedAfter?.toFixed(0) ?? "(not while polling)"} ms after`);
  }

  beforeAll(async () => {
    nodeA = await testServer("postgres", { masterKey });
    nodeB = await createServer({
      config: nodeA.config,
      logger: createLogger({ level: "silent" }),
      masterKey,
      vaultKey: randomBytes(32),
      scrypt: TEST_SCRYPT,
      store: b.wrap(await openAppStore({ databaseUrl: nodeA.databaseUrl })),
    });
    await nodeB.app.ready();
  });

  afterAll(async () => {
    await nodeB?.close();
    await nodeA?.cleanup();
  });

  it("a sign-out on node A: refused at once on A, within the bound on B; the user's other session lives", async () => {
    const other = await nodeA.userWithRoles("sam", ["user"]);
    const auth = await nodeA.login("sam");
    await inBMemory(auth, "sam");
    await inBMemory(other, "sam");
    expect((await inject(nodeA, auth, "POST", "/v1/auth/logout")).status).toBe(200);
    const changedAt = performance.now();
    expect((await checkSelf(nodeA, auth, "sam")).status).toBe(401);
    await refusedByB("sign-out", auth, "sam", changedAt);
    expect((await checkSelf(nodeB, other, "sam")).status).toBe(200);
  });

  it("a password change on node A ends the user's other sessions on both nodes", async () => {
    const kept = await nodeA.userWithRoles("pat", ["user"]);
    const ended = await nodeA.login("pat");
    await inBMemory(ended, "pat");
    const changed = await inject(nodeA, kept, "POST", "/v1/me/password", {
      currentPassword: passwordFor("pat"),
      newPassword: "a-new-password-for-the-nodes-test-42",
    });
    expect(changed.status, changed.body).toBe(200);
    const changedAt = performance.now();
    expect((await checkSelf(nodeA, ended, "pat")).status).toBe(401);
    await refusedByB("password change", ended, "pat", changedAt);
  });

  it("a disable on node A: every session of the user refused at once on A, within the bound on B", async () => {
    const first = await nodeA.userWithRoles("dana", ["user"]);
    const second = await nodeA.login("dana");
    await inBMemory(first, "dana");
    await inBMemory(second, "dana");
    const disabled = await inject(nodeA, nodeA.adminAuth, "POST", "/v1/users/dana/disable", { reason: "left" });
    expect(disabled.status, disabled.body).toBe(200);
    const changedAt = performance.now();
    for (const auth of [first, second]) expect((await checkSelf(nodeA, auth, "dana")).status).toBe(401);
    await refusedByB("disable (first session)", first, "dana", changedAt);
    await refusedByB("disable (second session)", second, "dana", changedAt);
  });

  it("an API token revoked on node A: refused at once on A, within the bound on B", async () => {
    const created = await inject(nodeA, nodeA.adminAuth, "POST", "/v1/users", { name: "ci-bot", kind: "service" });
    expect(created.status, created.body).toBe(201);
    const issued = await inject(nodeA, nodeA.adminAuth, "POST", "/v1/tokens", {
      name: "ci",
      principal: "ci-bot",
      expiresIn: "30d",
    });
    expect(issued.status, issued.body).toBe(201);
    const token = JSON.parse(issued.body) as { id: string; token: string };
    const auth = `Bearer ${token.token}`;
    await inBMemory(auth, "ci-bot");
    expect((await inject(nodeA, nodeA.adminAuth, "DELETE", `/v1/tokens/${token.id}`)).status).toBe(200);
    const changedAt = performance.now();
    expect((await checkSelf(nodeA, auth, "ci-bot")).status).toBe(401);
    await refusedByB("API token revocation", auth, "ci-bot", changedAt);
  });

  it("a platform role taken away on node A: judged without it at once on A, within the bound on B", async () => {
    // Asking about someone else takes access.check (auditor): the actor each node made from memory for this
    // session must not outlive the principal's change (it is made again from the index's new entry).
    const auth = await nodeA.userWithRoles("kim", ["user", "auditor"]);
    const checkOther = (node: Server) => inject(node, auth, "GET", "/v1/check?principal=sam&role=any-role");
    await inBMemory(auth, "kim");
    for (const node of [nodeA, nodeB]) expect((await checkOther(node)).status).toBe(200);
    const changed = await inject(nodeA, nodeA.adminAuth, "PATCH", "/v1/users/kim", { platformRoles: ["user"] });
    expect(changed.status, changed.body).toBe(200);
    const changedAt = performance.now();
    expect((await checkOther(nodeA)).status).toBe(403);
    while (performance.now() - changedAt < BOUND_MS && (await checkOther(nodeB)).status !== 403) await sleep(5);
    const wait = changedAt + BOUND_MS - performance.now();
    if (wait > 0) await sleep(wait);
    expect((await checkOther(nodeB)).status).toBe(403);
    // Still signed in: asking about oneself needs no role.
    expect((await checkSelf(nodeB, auth, "kim")).status).toBe(200);
  });

  it("a header that differs from a remembered token in any way is checked as a new one", async () => {
    const auth = await nodeA.userWithRoles("lee", ["user"]);
    await inBMemory(auth, "lee");
    for (const variant of [`${auth} `, `${auth}\t`, `${auth}x`, auth.replace("Bearer ", "bearer "), `${auth}\u00e9`]) {
      const reply = await checkSelf(nodeB, variant, "lee");
      expect(reply.status, JSON.stringify(variant)).toBe(401);
    }
    expect((await checkSelf(nodeB, auth, "lee")).status).toBe(200);
  });
});
