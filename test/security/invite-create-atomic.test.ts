/**
 * Non-negotiable 4, never a half-applied change: `POST /v1/users` with `invite: true` makes the user and their
 * invite in one transaction, with both audit events (`user.create`, `user.invited`). Before, the invite was issued
 * in a second transaction: when it failed, the caller got an error while the user existed without an invite (and
 * the retry answered ALREADY_EXISTS). Here the invite's INSERT fails once (a Kysely plugin on the server's store):
 * nobody is made, nothing is audited of it, and the same request made again succeeds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppStore } from "../../src/db/index.js";
import { ENGINES } from "../../src/testing/engines.js";
import { onEachQuery, tableOf, withPlugin } from "../../src/testing/plugged-store.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

/** Fails the next INSERT INTO user_invites while armed, as a full disk or a lost connection would. */
function failingInviteWrites() {
  const state = { armed: false, failed: 0 };
  const plugin = onEachQuery(({ node }) => {
    if (state.armed && node.kind === "InsertQueryNode" && tableOf(node) === "user_invites") {
      state.armed = false;
      state.failed += 1;
      throw new Error("injected: the invite could not be written");
    }
  });
  return { state, wrap: (store: AppStore) => withPlugin(store, plugin) };
}

describe.each(ENGINES)("a user made with an invite, store on %s", (engine) => {
  const failing = failingInviteWrites();
  let server: TestServer;
  beforeAll(async () => {
    server = await testServer(engine, { wrapStore: failing.wrap });
  }, 120_000);
  afterAll(async () => server?.cleanup());

  const call = async (method: "GET" | "POST", url: string, payload?: object) => {
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: server.adminAuth },
      ...(payload ? { payload } : {}),
    });
    return { status: res.statusCode, body: res.json() as Record<string, unknown>, text: res.body };
  };
  const eventsAbout = async (subject: string) => {
    const res = await call("GET", `/v1/audit/events?target=${encodeURIComponent(subject)}&limit=100`);
    expect(res.status, res.text).toBe(200);
    return (res.body.items as { action: string }[]).map((e) => e.action).sort();
  };
  /** The events about `subject` once there are `count` (they may be listed only once chained). */
  const eventsOnce = async (subject: string, count: number) => {
    const deadline = Date.now() + 60_000;
    let actions = await eventsAbout(subject);
    while (actions.length < count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      actions = await eventsAbout(subject);
    }
    return actions;
  };

  it("is made with its invite or not at all; the same request then succeeds", async () => {
    const request = { name: "gwen", email: "gwen@example.com", invite: true };
    failing.state.armed = true;
    const failed = await call("POST", "/v1/users", request);
    expect(failing.state.failed).toBe(1);
    expect(failed.status, failed.text).toBeGreaterThanOrEqual(500);
    expect(failed.body.invite).toBeUndefined();
    // Nothing of it happened: no user, no audit event of her creation.
    expect((await call("GET", "/v1/users/gwen")).status).toBe(404);
    expect((await call("GET", "/v1/users")).text).not.toContain('"gwen"');
    expect(await eventsAbout("user:gwen")).toEqual([]);

    const retried = await call("POST", "/v1/users", request);
    expect(retried.status, retried.text).toBe(201);
    const invite = retried.body.invite as { code: string; expiresAt: string };
    expect(invite.code.length).toBeGreaterThanOrEqual(26);
    // Her creation and invite audited once each: the failed attempt left no event behind.
    expect(await eventsOnce("user:gwen", 2)).toEqual(["user.create", "user.invited"]);
    // The code works: she chooses her password and signs in with it.
    const redeemed = await server.app.inject({
      method: "POST",
      url: "/v1/invites/redeem",
      payload: { username: "gwen", code: invite.code, password: passwordFor("gwen") },
    });
    expect(redeemed.statusCode, redeemed.body).toBe(200);
    const signIn = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "gwen", password: passwordFor("gwen") },
    });
    expect(signIn.statusCode, signIn.body).toBe(200);
  });
});
