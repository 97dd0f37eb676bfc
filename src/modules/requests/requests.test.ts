import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { manualClock } from "../../lib/clock.js";
import { ENGINES } from "../../testing/engines.js";
import { testServer, totpNow, type TestServer } from "../../testing/server.js";
import { actAs, seedGroupMember, seedRole, seedUser } from "../../testing/pim.js";

const MANAGER_APPROVAL = {
  defaultDuration: "1h",
  maxDuration: "2h",
  mfa: { required: false, maxAge: "10m" },
  justification: { minLength: 10, ticketPattern: "^(INC|CHG)-[0-9]+$" },
  approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
};

async function auditActions(server: TestServer, subject: string) {
  const events = await server.audit.read({ limit: 10_000 });
  return events.filter((e) => e.subject === subject).map((e) => `${e.action}:${e.outcome}:${e.actor}`);
}

describe.each(ENGINES)("activation requests on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  /**
   * One server per engine for the cases that read only their own users, roles and requests (no scheduler pass,
   * no count over a whole table or audit action another of them adds to). Each seeds the requester it uses.
   */
  let shared: Promise<{ server: TestServer; clock: ReturnType<typeof manualClock> }> | undefined;
  afterAll(async () => {
    await (await shared)?.server.cleanup();
  });
  function sharedSetup() {
    shared ??= (async () => {
      const clock = manualClock("2026-03-02T10:00:00Z");
      const server = await testServer(engine, { clock });
      await seedUser(server, "carol");
      return { server, clock };
    })();
    return shared;
  }

  async function setup(start = "2026-03-02T10:00:00Z") {
    const clock = manualClock(start);
    server = await testServer(engine, { clock });
    await seedUser(server, "carol");
    await seedUser(server, "alice", { manager: "carol", groups: ["sre"] });
    await seedUser(server, "bob", { groups: ["sre"] });
    return { server, clock };
  }

  it("runs the manager-approval flow: submit, refuse self-approval, approve, active, check, expire", async () => {
    const { server, clock } = await setup();
    await seedRole(server, { name: "prod-db-reader", risk: "high", policy: MANAGER_APPROVAL, eligibleGroups: ["sre"] });
    const alice = actAs(server, "alice");
    const carol = actAs(server, "carol");
    const bob = actAs(server, "bob");

    const submitted = await alice("POST", "/v1/activation-requests", {
      role: "prod-db-reader",
      duration: "30m",
      reason: "investigate slow queries on orders",
      ticket: "INC-42",
    });
    expect(submitted.status).toBe(201);
    expect(submitted.body).toMatchObject({
      state: "pending",
      role: "prod-db-reader",
      requester: "alice",
      duration: "30m",
      expiresAt: null,
    });
    const id = submitted.body.id as string;

    const again = await alice("POST", "/v1/activation-requests", {
      role: "prod-db-reader",
      reason: "investigate slow queries on orders",
      ticket: "INC-42",
    });
    expect(again.status).toBe(409);
    expect(again.body.error?.code).toBe("REQUEST_ALREADY_OPEN");

    const self = await alice("POST", `/v1/activation-requests/${id}/approvals`, { reason: "I trust myself" });
    expect(self.status).toBe(403);
    expect(self.body.error?.code).toBe("SELF_APPROVAL");
    // bob is neither requester nor approver: the request does not exist for him.
    expect((await bob("POST", `/v1/activation-requests/${id}/approvals`, {})).status).toBe(404);
    expect((await bob("GET", `/v1/activation-requests/${id}`)).status).toBe(404);

    const inbox = await carol("GET", "/v1/activation-requests?scope=inbox");
    expect((inbox.body.items as { id: string }[]).map((r) => r.id)).toEqual([id]);

    clock.advance(5 * 60_000); // the clock starts at activation, not at the request
    const approved = await carol("POST", `/v1/activation-requests/${id}/approvals`, { reason: "go ahead" });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ state: "active", activatedAt: clock.now().toISOString() });
    expect(approved.body.expiresAt).toBe(new Date(clock.now().getTime() + 30 * 60_000).toISOString());

    const late = await carol("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect(late.body.error?.code).toBe("REQUEST_NOT_PENDING");
    // An outsider learns nothing, not even that the request is no longer pending.
    expect((await bob("POST", `/v1/activation-requests/${id}/approvals`, {})).status).toBe(404);

    expect((await alice("GET", "/v1/check?principal=alice&role=prod-db-reader")).body).toMatchObject({
      allowed: true,
      expiresAt: approved.body.expiresAt,
    });
    // Checking someone else needs a reader role.
    expect((await bob("GET", "/v1/check?principal=alice&role=prod-db-reader")).status).toBe(403);

    const token = await alice("POST", "/v1/tokens/activation");
    expect(token.status).toBe(200);
    const claims = decodeJwt(token.body.token as string);
    expect(claims.roles).toEqual(["prod-db-reader"]);
    expect(claims.exp! * 1000).toBeLessThanOrEqual(new Date(approved.body.expiresAt as string).getTime());

    clock.advance(30 * 60_000 - 1);
    await server.scheduler.runOnce();
    expect((await alice("GET", "/v1/check?principal=alice&role=prod-db-reader")).body.allowed).toBe(true);
    clock.advance(1);
    expect(await server.scheduler.runOnce()).toMatchObject({ expired: 1, timedOut: 0 });
    expect(await server.scheduler.runOnce()).toMatchObject({ expired: 0, timedOut: 0 });
    expect((await alice("GET", "/v1/check?principal=alice&role=prod-db-reader")).body).toMatchObject({
      allowed: false,
    });
    expect((await alice("GET", `/v1/activation-requests/${id}`)).body).toMatchObject({
      state: "expired",
      endReason: "the activation reached its end time",
      endedBy: "system",
    });

    expect(await auditActions(server, `request:${id}`)).toEqual([
      "request.submitted:success:alice",
      "request.approved:denied:alice",
      "request.approved:denied:bob",
      "request.approved:success:carol",
      "request.activated:success:carol",
      "request.approved:denied:carol",
      "request.approved:denied:bob",
      "request.expired:success:system:system",
    ]);
    expect(await server.audit.verify()).toMatchObject({ ok: true });
  });

  it("refuses what the policy refuses, each with its code, and audits it", async () => {
    const { server } = await setup();
    await seedRole(server, { name: "db", policy: MANAGER_APPROVAL, eligibleUsers: ["alice"] });
    await seedRole(server, {
      name: "mfa-role",
      policy: { ...MANAGER_APPROVAL, mfa: { required: true, maxAge: "10m" } },
      eligibleUsers: ["alice"],
    });
    const alice = actAs(server, "alice");
    const cases: [Record<string, unknown>, number, string][] = [
      [{ role: "db", duration: "3h", reason: "investigate slow queries", ticket: "INC-1" }, 400, "DURATION_TOO_LONG"],
      [{ role: "db", reason: "fix", ticket: "INC-1" }, 400, "JUSTIFICATION_INVALID"],
      [{ role: "db", reason: "investigate slow queries", ticket: "JIRA-1" }, 400, "JUSTIFICATION_INVALID"],
      [{ role: "nope", reason: "investigate slow queries" }, 403, "NOT_ELIGIBLE"],
      [{ role: "mfa-role", reason: "investigate slow queries", ticket: "INC-1" }, 401, "MFA_STEP_UP_REQUIRED"],
    ];
    for (const [payload, status, code] of cases) {
      const res = await alice("POST", "/v1/activation-requests", payload);
      expect([res.status, res.body.error?.code]).toEqual([status, code]);
    }
    expect(
      (
        await actAs(server, "bob")("POST", "/v1/activation-requests", {
          role: "db",
          reason: "investigate slow queries",
          ticket: "INC-1",
        })
      ).body.error?.code,
    ).toBe("NOT_ELIGIBLE");
    const denied = (await server.audit.read({ limit: 1000 })).filter(
      (e) => e.action === "request.submitted" && e.outcome === "denied",
    );
    expect(denied).toHaveLength(6);
    expect(await server.store.db.selectFrom("activation_requests").select("id").execute()).toEqual([]);
  });

  it("asks for a step-up when the session's MFA is stale, and accepts the activation after one", async () => {
    const { server, clock } = await sharedSetup();
    await seedUser(server, "uma", { manager: "carol" });
    await seedRole(server, {
      name: "mfa-role",
      policy: { ...MANAGER_APPROVAL, approval: { stages: [] }, mfa: { required: true, maxAge: "10m" } },
      eligibleUsers: ["uma"],
    });
    const auth = await server.login("uma");
    const call = (url: string, payload: object) =>
      server.app.inject({ method: "POST", url, headers: { authorization: auth }, payload });
    const { secret } = (await call("/v1/me/mfa/totp", {})).json<{ secret: string }>();
    expect((await call("/v1/me/mfa/totp/confirm", { code: totpNow(secret, clock.now().getTime()) })).statusCode).toBe(
      200,
    );
    const submit = { role: "mfa-role", reason: "investigate slow queries", ticket: "INC-5" };
    expect((await call("/v1/activation-requests", submit)).json()).toMatchObject({
      error: { code: "MFA_STEP_UP_REQUIRED" },
    });
    clock.advance(30_000);
    expect((await call("/v1/auth/step-up", { otp: "000000" })).json()).toMatchObject({
      error: { code: "MFA_INVALID" },
    });
    expect((await call("/v1/auth/step-up", { otp: totpNow(secret, clock.now().getTime()) })).statusCode).toBe(200);
    expect((await call("/v1/activation-requests", submit)).json()).toMatchObject({ state: "active" });
  });

  it("counts wrong step-up codes against the account's lockout", async () => {
    const { server, clock } = await setup();
    const auth = await server.login("alice");
    const call = (url: string, payload: object) =>
      server!.app.inject({ method: "POST", url, headers: { authorization: auth }, payload });
    const { secret } = (await call("/v1/me/mfa/totp", {})).json<{ secret: string }>();
    await call("/v1/me/mfa/totp/confirm", { code: totpNow(secret, clock.now().getTime()) });
    const codes: string[] = [];
    for (let i = 0; i < 6; i++)
      codes.push((await call("/v1/auth/step-up", { otp: "000000" })).json<{ error: { code: string } }>().error.code);
    expect(codes).toEqual([
      "MFA_INVALID",
      "MFA_INVALID",
      "MFA_INVALID",
      "MFA_INVALID",
      "MFA_INVALID",
      "ACCOUNT_LOCKED",
    ]);
    clock.advance(30_000);
    // Even the right code waits out the lockout.
    expect((await call("/v1/auth/step-up", { otp: totpNow(secret, clock.now().getTime()) })).statusCode).toBe(429);
    const lockouts = (await server.audit.read({ limit: 1000 })).filter((e) => e.action === "auth.lockout");
    expect(lockouts.map((e) => e.subject)).toEqual(["user:alice"]);
  });

  it("a break-glass activation is immediate, audited as such, and opens a review item", async () => {
    const { server } = await sharedSetup();
    await seedUser(server, "wes", { manager: "carol" });
    await seedRole(server, {
      name: "emergency-admin",
      risk: "critical",
      policy: { mfa: { required: false }, breakGlass: true, approval: { stages: [{ approvers: { manager: true } }] } },
      eligibleUsers: ["wes"],
    });
    const res = await actAs(server, "wes")("POST", "/v1/activation-requests", {
      role: "emergency-admin",
      reason: "primary database is down and SSO with it",
    });
    expect(res.body.state).toBe("active");
    const reviews = await server.store.db.selectFrom("review_items").selectAll().execute();
    expect(reviews).toEqual([
      expect.objectContaining({
        kind: "break-glass-activation",
        subject: `request:${String(res.body.id)}`,
        status: "open",
        reason: "primary database is down and SSO with it",
      }),
    ]);
  });

  it("stops honouring an eligibility at its end date and reports it once", async () => {
    const { server, clock } = await setup();
    await seedRole(server, {
      name: "temp",
      policy: { ...MANAGER_APPROVAL, approval: { stages: [] } },
      eligibleUsers: ["alice"],
      eligibleUntil: new Date("2026-03-02T12:00:00Z"),
    });
    const alice = actAs(server, "alice");
    expect((await alice("GET", "/v1/me/roles")).body.items).toMatchObject([
      { role: "temp", eligibleUntil: "2026-03-02T12:00:00.000Z" },
    ]);
    clock.set(new Date("2026-03-02T12:00:00Z"));
    const refused = await alice("POST", "/v1/activation-requests", {
      role: "temp",
      reason: "look at the replica lag",
      ticket: "INC-8",
    });
    expect(refused.body.error?.code).toBe("NOT_ELIGIBLE");
    expect((await alice("GET", "/v1/me/roles")).body.items).toEqual([]);
    expect(await server.scheduler.runOnce()).toMatchObject({ eligibilitiesEnded: 1 });
    expect(await server.scheduler.runOnce()).toMatchObject({ eligibilitiesEnded: 0 });
    const reported = (await server.audit.read({ limit: 1000 })).filter((e) => e.action === "eligibility.expired");
    expect(reported).toMatchObject([{ subject: "role:temp", actor: "system:system", details: { principal: "alice" } }]);
  });

  it("counts wrong codes at TOTP enrolment against the lockout too", async () => {
    const { server } = await sharedSetup();
    await seedUser(server, "vic", { manager: "carol" });
    const auth = await server.login("vic");
    const call = (url: string, payload: object) =>
      server.app.inject({ method: "POST", url, headers: { authorization: auth }, payload });
    await call("/v1/me/mfa/totp", {});
    const codes: string[] = [];
    for (let i = 0; i < 6; i++) {
      codes.push(
        (await call("/v1/me/mfa/totp/confirm", { code: "000000" })).json<{ error: { code: string } }>().error.code,
      );
    }
    expect(codes).toEqual([
      "MFA_INVALID",
      "MFA_INVALID",
      "MFA_INVALID",
      "MFA_INVALID",
      "MFA_INVALID",
      "ACCOUNT_LOCKED",
    ]);
  });

  it("escalates a timed-out stage to the fallback group, whose approval activates", async () => {
    const { server, clock } = await setup();
    await seedUser(server, "dave", { groups: ["sre-leads"] });
    await seedRole(server, {
      name: "prod-admin",
      policy: {
        ...MANAGER_APPROVAL,
        approval: {
          stages: [
            {
              approvers: { manager: true },
              count: 1,
              timeout: "30m",
              onTimeout: "escalate",
              escalateTo: { groups: ["sre-leads"] },
            },
          ],
        },
      },
      eligibleGroups: ["sre"],
    });
    const submitted = await actAs(server, "alice")("POST", "/v1/activation-requests", {
      role: "prod-admin",
      reason: "rotate the primary database",
      ticket: "CHG-7",
    });
    const id = submitted.body.id as string;
    expect((await actAs(server, "dave")("POST", `/v1/activation-requests/${id}/approvals`, {})).status).toBe(404);
    clock.advance(30 * 60_000);
    expect(await server.scheduler.runOnce()).toMatchObject({ expired: 0, timedOut: 1 });
    const escalated = await actAs(server, "alice")("GET", `/v1/activation-requests/${id}`);
    expect(escalated.body).toMatchObject({ state: "pending", stages: [{ escalated: true }] });
    // After escalation the fallback set decides; the manager no longer does.
    expect((await actAs(server, "carol")("POST", `/v1/activation-requests/${id}/approvals`, {})).status).toBe(404);
    const approved = await actAs(server, "dave")("POST", `/v1/activation-requests/${id}/approvals`, {
      reason: "covering for carol",
    });
    expect(approved.body).toMatchObject({ state: "active" });
    expect((await auditActions(server, `request:${id}`)).filter((a) => a.startsWith("request.escalated"))).toHaveLength(
      1,
    );
  });

  it("denies at the timeout when the stage says deny, with a reason", async () => {
    const { server, clock } = await setup();
    await seedRole(server, {
      name: "prod-admin",
      policy: {
        ...MANAGER_APPROVAL,
        approval: { stages: [{ approvers: { manager: true }, count: 1, timeout: "15m", onTimeout: "deny" }] },
      },
      eligibleGroups: ["sre"],
    });
    const id = (
      await actAs(server, "alice")("POST", "/v1/activation-requests", {
        role: "prod-admin",
        reason: "rotate the primary database",
        ticket: "CHG-7",
      })
    ).body.id as string;
    clock.advance(15 * 60_000 - 1);
    expect((await server.scheduler.runOnce()).timedOut).toBe(0);
    clock.advance(1);
    expect((await server.scheduler.runOnce()).timedOut).toBe(1);
    const denied = await actAs(server, "alice")("GET", `/v1/activation-requests/${id}`);
    expect(denied.body).toMatchObject({ state: "denied", endReason: "stage 1 timed out without enough approvals" });
    expect((await actAs(server, "carol")("POST", `/v1/activation-requests/${id}/approvals`, {})).body.error?.code).toBe(
      "REQUEST_NOT_PENDING",
    );
  });

  it("needs the stage's count of distinct approvers, and an approver only counts while named", async () => {
    const { server } = await sharedSetup();
    await seedUser(server, "alice", { manager: "carol", groups: ["sre"] });
    await seedUser(server, "bob", { groups: ["sre"] });
    await seedUser(server, "dave", { groups: ["sre-leads"] });
    await seedUser(server, "erin", { groups: ["sre-leads"] });
    await seedRole(server, {
      name: "owner",
      policy: { ...MANAGER_APPROVAL, approval: { stages: [{ approvers: { groups: ["sre-leads"] }, count: 2 }] } },
      eligibleGroups: ["sre"],
    });
    const id = (
      await actAs(server, "alice")("POST", "/v1/activation-requests", {
        role: "owner",
        reason: "transfer the billing account",
        ticket: "CHG-9",
      })
    ).body.id as string;
    const first = await actAs(server, "dave")("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect(first.body).toMatchObject({ state: "pending", stages: [{ approvals: ["dave"] }] });
    expect((await actAs(server, "dave")("POST", `/v1/activation-requests/${id}/approvals`, {})).body.error?.code).toBe(
      "ALREADY_DECIDED",
    );
    await seedGroupMember(server, "sre-leads", "bob");
    const second = await actAs(server, "bob")("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect(second.body).toMatchObject({ state: "active", stages: [{ approvals: ["dave", "bob"] }] });
  });

  it("lets the holder deactivate early and an admin revoke, each ending the grant once", async () => {
    const { server } = await setup();
    await seedRole(server, {
      name: "quick",
      policy: { ...MANAGER_APPROVAL, approval: { stages: [] }, justification: { minLength: 5 } },
      eligibleUsers: ["alice", "bob"],
    });
    const alice = actAs(server, "alice");
    const a = await alice("POST", "/v1/activation-requests", { role: "quick", reason: "check the replica lag" });
    expect(a.body.state).toBe("active");
    const off = await alice("POST", "/v1/me/roles/quick/deactivate");
    expect(off.body).toMatchObject({ state: "deactivated", endedBy: "alice" });
    expect((await alice("POST", "/v1/me/roles/quick/deactivate")).body.error?.code).toBe("NOT_ACTIVE");

    const b = await actAs(server, "bob")("POST", "/v1/activation-requests", {
      role: "quick",
      reason: "check the replica lag",
    });
    const admin = await server.app.inject({
      method: "POST",
      url: `/v1/activation-requests/${b.body.id as string}/revoke`,
      headers: { authorization: server.adminAuth },
      payload: { reason: "suspicious use" },
    });
    expect(admin.json()).toMatchObject({ state: "revoked", endReason: "suspicious use", endedBy: "admin" });
    const grants = await server.store.db.selectFrom("grants").select("state").execute();
    expect(grants.map((g) => g.state)).toEqual(["revoked", "revoked"]);
  });

  it("extends through the policy again, up to maxExtensions", async () => {
    const { server } = await sharedSetup();
    await seedUser(server, "xena", { manager: "carol" });
    await seedRole(server, {
      name: "ext",
      policy: { ...MANAGER_APPROVAL, approval: { stages: [] }, maxExtensions: 1 },
      eligibleUsers: ["xena"],
    });
    const xena = actAs(server, "xena");
    const active = await xena("POST", "/v1/activation-requests", {
      role: "ext",
      duration: "1h",
      reason: "long running migration",
      ticket: "CHG-1",
    });
    const extended = await xena("POST", "/v1/me/roles/ext/extensions", {
      by: "30m",
      reason: "migration is still running",
    });
    expect(extended.status).toBe(201);
    const parent = await xena("GET", `/v1/activation-requests/${active.body.id as string}`);
    expect(parent.body.extensions).toBe(1);
    expect(
      new Date(parent.body.expiresAt as string).getTime() - new Date(active.body.expiresAt as string).getTime(),
    ).toBe(30 * 60_000);
    expect(
      (await xena("POST", "/v1/me/roles/ext/extensions", { by: "30m", reason: "migration is still running" })).body
        .error?.code,
    ).toBe("EXTENSION_LIMIT_REACHED");
  });
});

describe("activation windows", () => {
  // One server for every case: each case has a role of its own (its own policy and window) and only reads the
  // answer to its own request, so the cases cannot see one another. The clock is set per case, in date order.
  const clock = manualClock("2026-03-01T00:00:00Z");
  let server: TestServer;
  let roles = 0;
  beforeAll(async () => {
    server = await testServer("pglite", { clock });
    await seedUser(server, "carol");
    await seedUser(server, "alice", { manager: "carol" });
  });
  afterAll(async () => {
    await server?.cleanup();
  });

  it.each([
    // Monday 2 March 2026 (GMT): 09:30 London is inside 08:00-18:00; 19:00 is outside.
    ["2026-03-02T09:30:00Z", "deny", 201, "active"],
    ["2026-03-02T19:00:00Z", "deny", 403, "OUTSIDE_WINDOW"],
    ["2026-03-02T19:00:00Z", "require-approval", 201, "pending"],
    // Saturday is never inside a Mon-Fri window.
    ["2026-03-07T12:00:00Z", "require-approval", 201, "pending"],
    // Monday 30 March 2026 (BST, after the change): 07:30Z is 08:30 local, inside; 17:30Z is 18:30 local, outside.
    ["2026-03-30T07:30:00Z", "deny", 201, "active"],
    ["2026-03-30T17:30:00Z", "deny", 403, "OUTSIDE_WINDOW"],
  ] as const)("at %s with outsideWindow %s answers %i %s", async (at, outside, status, expected) => {
    clock.set(new Date(at));
    const role = `windowed-${++roles}`;
    await seedRole(server, {
      name: role,
      policy: {
        ...MANAGER_APPROVAL,
        approval: { stages: [] },
        windows: [{ days: ["mon", "tue", "wed", "thu", "fri"], from: "08:00", to: "18:00", timeZone: "Europe/London" }],
        outsideWindow: outside,
        outsideWindowApprovers: { manager: true },
      },
      eligibleUsers: ["alice"],
    });
    const res = await actAs(server, "alice")("POST", "/v1/activation-requests", {
      role,
      reason: "routine maintenance work",
      ticket: "CHG-3",
    });
    expect(res.status).toBe(status);
    expect(res.status === 201 ? res.body.state : res.body.error?.code).toBe(expected);
    if (expected === "pending") {
      expect(res.body.stages).toEqual([
        { name: "outside activation window", count: 1, approvals: [], escalated: false },
      ]);
      const approved = await actAs(server, "carol")(
        "POST",
        `/v1/activation-requests/${res.body.id as string}/approvals`,
        {},
      );
      expect(approved.body.state).toBe("active");
    }
  });
});
