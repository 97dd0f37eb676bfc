/**
 * Approvers prove a second factor (finding 82). An approval asked nothing of the approver but a session: whoever
 * phished an approver's password (a session without MFA) approved a colleague's request for a critical role, and
 * the activation it started was theirs to use. Teleport and Entra PIM ask the approver of privileged access for a
 * fresh MFA. Now a policy's `approval.mfa` (absent: required within 15m for critical roles) asks the approver for
 * their own recent MFA, checked in the decision's transaction before anything is recorded or a decision link is
 * spent: MFA_STEP_UP_REQUIRED, audited; after `stint step-up` the same approval (and the same link) works, and its
 * event records when and how the approver proved it, never the code. A denial needs none.
 * Through the HTTP API of a whole server, sessions signed in with and without a one-time code.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { createDecisionLinks, type DecisionLinks } from "../../src/modules/requests/decision-links.js";
import { apiCaller } from "../../src/testing/api-call.js";
import { ADMIN_PASSWORD, passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { approverMfaWorld } from "./support.js";

const MINUTE = 60_000;
const clock = manualClock(new Date());
let server: TestServer;
let links: DecisionLinks;
let world: Awaited<ReturnType<typeof approverMfaWorld>>;
const call = apiCaller(() => server);

/** Dan, an approver with no second factor, signed in with his password: all a phished password needs. */
const phished = () => server.login("dan", passwordFor("dan"));
const code = () => world.code();
/** Carol signed in with her password and a one-time code: MFA-fresh. */
const carolFresh = () => server.login("carol", passwordFor("carol"), code());
const submit = (role: string) => world.submit(role);

async function state(id: string): Promise<{ state: string; decisions: unknown[] }> {
  const res = await call(await server.login("alice"), "GET", `/v1/activation-requests/${id}`);
  return res.body as { state: string; decisions: unknown[] };
}

async function approvalEvents(id: string) {
  const admin = await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD); // the clock moves on
  const res = await call(admin, "GET", "/v1/audit/events?action=request.approved&limit=50");
  return (res.body.items as { subject: string; outcome: string; details: Record<string, unknown> | null }[]).filter(
    (e) => e.subject === `request:${id}`,
  );
}

beforeAll(async () => {
  server = await testServer("pglite", { clock });
  links = createDecisionLinks({ keyring: server.keyring, clock });
  world = await approverMfaWorld(server, clock);
}, 60_000);
afterAll(async () => server?.cleanup());

describe("an approval needs the approver's own fresh MFA where the policy asks for it (finding 82)", () => {
  it("a phished password (a session without MFA) approves nothing: refused, audited, the request still pending", async () => {
    const id = await submit("payments-admin");
    const refused = await call(await phished(), "POST", `/v1/activation-requests/${id}/approvals`, { reason: "ok" });
    expect([refused.status, refused.body.error?.code], refused.text).toEqual([401, "MFA_STEP_UP_REQUIRED"]);
    expect(refused.text).toContain("Approving requests for this role needs a one-time code entered within the last 5m");
    expect(await state(id)).toMatchObject({ state: "pending", decisions: [] });
    expect((await approvalEvents(id)).map((e) => e.outcome)).toEqual(["denied"]);

    // An approver who signed in with a one-time code approves; the event says when and how MFA was proved.
    const approved = await call(await carolFresh(), "POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([approved.status, approved.body.state], approved.text).toEqual([200, "active"]);
    const success = (await approvalEvents(id)).find((e) => e.outcome === "success");
    expect(success?.details?.approverMfa).toEqual({ at: clock.now().toISOString(), method: "otp-or-sso" });
  });

  it("an MFA older than the policy's maxAge is refused like none; a step-up in the same session approves", async () => {
    const id = await submit("payments-admin");
    const session = await carolFresh();
    clock.advance(6 * MINUTE); // the policy asks for 5m
    const stale = await call(session, "POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([stale.status, stale.body.error?.code], stale.text).toEqual([401, "MFA_STEP_UP_REQUIRED"]);
    expect((await state(id)).state).toBe("pending");

    const otp = code();
    expect((await call(session, "POST", "/v1/auth/step-up", { otp })).status).toBe(200);
    const approved = await call(session, "POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([approved.status, approved.body.state], approved.text).toEqual([200, "active"]);
    // The event records the check's time and kind, never the code.
    expect(JSON.stringify(await approvalEvents(id))).not.toContain(otp);
  });

  it("without approval.mfa a critical role's approver needs MFA, a medium role's does not", async () => {
    const critical = await submit("ledger-admin");
    const refused = await call(await phished(), "POST", `/v1/activation-requests/${critical}/approvals`, {});
    expect(refused.body.error?.code, refused.text).toBe("MFA_STEP_UP_REQUIRED");
    expect(refused.text).toContain("within the last 15m");
    expect((await state(critical)).state).toBe("pending");

    const medium = await submit("wiki-admin");
    const approved = await call(await phished(), "POST", `/v1/activation-requests/${medium}/approvals`, {});
    expect([approved.status, approved.body.state], approved.text).toEqual([200, "active"]);
    const event = (await approvalEvents(medium)).find((e) => e.outcome === "success");
    expect(event?.details).not.toHaveProperty("approverMfa");
  });

  it("a decision link without fresh MFA is refused and not spent: after a step-up the same link approves", async () => {
    const id = await submit("payments-admin");
    const linkToken = await links.sign(id, "approve");
    const session = await carolFresh();
    clock.advance(6 * MINUTE);
    const refused = await call(session, "POST", `/v1/activation-requests/${id}/approvals`, { linkToken });
    expect(refused.body.error?.code, refused.text).toBe("MFA_STEP_UP_REQUIRED");
    expect((await state(id)).state).toBe("pending");

    expect((await call(session, "POST", "/v1/auth/step-up", { otp: code() })).status).toBe(200);
    const approved = await call(session, "POST", `/v1/activation-requests/${id}/approvals`, { linkToken });
    expect([approved.status, approved.body.state], approved.text).toEqual([200, "active"]);
  });

  it("a denial needs no MFA: it grants nothing", async () => {
    const id = await submit("payments-admin");
    const denied = await call(await phished(), "POST", `/v1/activation-requests/${id}/denials`, {
      reason: "no ticket for this",
    });
    expect([denied.status, denied.body.state], denied.text).toEqual([200, "denied"]);
  });
});
