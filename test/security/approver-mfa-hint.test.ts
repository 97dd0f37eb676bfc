/**
 * The approvals inbox says ahead of a decision what approving asks of the approver's own MFA (finding 82): each
 * request of `GET /v1/activation-requests?scope=inbox` carries `approverMfa` (`required`, `withinSeconds`,
 * `passkeyOnly`, `satisfied`), computed by the decision's own check at the time of the list. The hint never loosens
 * the check: a session the list called satisfied a moment before is refused once its MFA is past the window, and
 * steps up as before. Through the HTTP API of a whole server on both engines.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { apiCaller } from "../../src/testing/api-call.js";
import { ENGINES } from "../../src/testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { approverMfaWorld, APPROVERS_STAGE } from "./support.js";

const MINUTE = 60_000;

describe.each(ENGINES)("the approvals inbox says what approving asks of the approver's MFA, on %s", (engine) => {
  const clock = manualClock(new Date());
  let server: TestServer;
  let world: Awaited<ReturnType<typeof approverMfaWorld>>;
  const call = apiCaller(() => server);
  const code = () => world.code();
  const submit = (role: string) => world.submit(role);

  /** The caller's inbox, by request id: each request's approverMfa. */
  async function hints(session: Awaited<ReturnType<TestServer["login"]>>): Promise<Record<string, unknown>> {
    const res = await call(session, "GET", "/v1/activation-requests?scope=inbox");
    expect(res.status, res.text).toBe(200);
    const items = res.body.items as { id: string; approverMfa?: unknown }[];
    return Object.fromEntries(items.map((item) => [item.id, item.approverMfa]));
  }

  beforeAll(async () => {
    server = await testServer(engine, { clock });
    // Besides the world's roles: one whose approver's MFA counts only as a passkey check within 10m.
    world = await approverMfaWorld(server, clock, [
      {
        name: "vault-admin",
        risk: "high",
        approval: { ...APPROVERS_STAGE, mfa: { maxAge: "10m", methods: ["webauthn"] } },
      },
    ]);
  }, 120_000);
  afterAll(async () => server?.cleanup());

  it("each pending request says what approving it asks of this approver now, by the policy and the session", async () => {
    const payments = await submit("payments-admin");
    const vault = await submit("vault-admin");
    const ledger = await submit("ledger-admin");
    const wiki = await submit("wiki-admin");

    // Dan signed in with his password only: every approval that asks for MFA says it is not satisfied.
    const dan = await server.login("dan", passwordFor("dan"));
    expect(await hints(dan)).toEqual({
      [payments]: { required: true, withinSeconds: 300, passkeyOnly: false, satisfied: false },
      [vault]: { required: true, withinSeconds: 600, passkeyOnly: true, satisfied: false },
      [ledger]: { required: true, withinSeconds: 900, passkeyOnly: false, satisfied: false },
      [wiki]: { required: false, withinSeconds: null, passkeyOnly: false, satisfied: true },
    });
    // Carol signed in with a one-time code: satisfied, except where only a passkey counts.
    const carol = await server.login("carol", passwordFor("carol"), code());
    expect(await hints(carol)).toMatchObject({
      [payments]: { satisfied: true },
      [vault]: { satisfied: false },
      [ledger]: { satisfied: true },
      [wiki]: { satisfied: true },
    });
    // The hint agrees with the decision, either way.
    const refused = await call(dan, "POST", `/v1/activation-requests/${ledger}/approvals`, {});
    expect(refused.body.error?.code, refused.text).toBe("MFA_STEP_UP_REQUIRED");
    const passkeyOnly = await call(carol, "POST", `/v1/activation-requests/${vault}/approvals`, {});
    expect(passkeyOnly.body.error?.code, passkeyOnly.text).toBe("WEBAUTHN_REQUIRED");
    for (const id of [payments, ledger, wiki]) {
      const approved = await call(id === wiki ? dan : carol, "POST", `/v1/activation-requests/${id}/approvals`, {});
      expect([approved.status, approved.body.state], approved.text).toEqual([200, "active"]);
    }
    const denied = await call(dan, "POST", `/v1/activation-requests/${vault}/denials`, { reason: "not today" });
    expect(denied.status, denied.text).toBe(200);
    // Only the inbox carries it: the requester's own list does not.
    const mine = await call(await server.login("alice"), "GET", "/v1/activation-requests?scope=mine");
    expect((mine.body.items as object[]).every((item) => !("approverMfa" in item))).toBe(true);
  });

  it("a hint that said satisfied a moment before does not let the session approve once its MFA is past the window", async () => {
    const alice = await server.login("alice");
    const id = await submit("payments-admin"); // the earlier test's activation ended first
    const carol = await server.login("carol", passwordFor("carol"), code());
    clock.advance(4 * MINUTE + 59_000); // within the 5m window still
    expect((await hints(carol))[id]).toEqual({
      required: true,
      withinSeconds: 300,
      passkeyOnly: false,
      satisfied: true,
    });

    clock.advance(2_000); // past it (and past the clock-skew allowance): the decision checks again at its own time
    const stale = await call(carol, "POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([stale.status, stale.body.error?.code], stale.text).toEqual([401, "MFA_STEP_UP_REQUIRED"]);
    const pending = await call(alice, "GET", `/v1/activation-requests/${id}`);
    expect(pending.body).toMatchObject({ state: "pending", decisions: [] });
    expect((await hints(carol))[id]).toMatchObject({ satisfied: false });

    // A step-up in the same session makes it true again, and the approval goes through.
    expect((await call(carol, "POST", "/v1/auth/step-up", { otp: code() })).status).toBe(200);
    expect((await hints(carol))[id]).toMatchObject({ satisfied: true });
    const approved = await call(carol, "POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([approved.status, approved.body.state], approved.text).toEqual([200, "active"]);
  });

  it("the OpenAPI document lists the hint on the list's items", async () => {
    const doc = await server.app.inject({ method: "GET", url: "/openapi.json" });
    const list = JSON.stringify(doc.json().paths["/v1/activation-requests"].get.responses["200"]);
    for (const field of ["approverMfa", "withinSeconds", "passkeyOnly", "satisfied"]) expect(list).toContain(field);
  });
});
