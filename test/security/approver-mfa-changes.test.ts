/**
 * Four-eyes approvers prove a second factor where `fourEyes.approverMfa` says so (finding 82). A change request that
 * widens access was applied on the approval of any session of a second admin: a phished password was enough to be
 * the second pair of eyes. With `fourEyes.approverMfa.tiers` covering the request's tier the approving admin needs
 * their own MFA within `maxAge`: MFA_STEP_UP_REQUIRED (audited, nothing applied) otherwise; the approval's event
 * records when and how it was proved. Off by default (docs/configuration.md#four-eyes). The list of change requests
 * says ahead, to whoever may approve one, what approving it asks of their MFA (`approverMfa`), by the same check.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { apiCaller } from "../../src/testing/api-call.js";
import { ADMIN_PASSWORD, passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";
import { wideningFile } from "./support.js";

const clock = manualClock(new Date());
const work = mkdtempSync(path.join(tmpdir(), "stint-approver-mfa-"));
let server: TestServer;
let secret: string;
const call = apiCaller(() => server);

const file = wideningFile();

function code(): string {
  clock.advance(60_000); // each code of a time step of its own: a code is accepted once
  return totpNow(secret, clock.now().getTime());
}

/** The bootstrap admin, signed in now (the test's clock outruns an access token). */
const admin = () => server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);

async function eligibleRoles(): Promise<string[]> {
  const items = (await call(await admin(), "GET", "/v1/eligibilities")).body.items as { role: string }[];
  return items.map((e) => e.role);
}

beforeAll(async () => {
  const config = path.join(work, "stint.yaml");
  // High only: the harness's own approvals (userWithRoles granting admin is held at critical) ask for no MFA.
  writeFileSync(config, "fourEyes:\n  approverMfa: { tiers: [high], maxAge: 5m }\n");
  server = await testServer("pglite", {
    clock,
    env: { STINT_CONFIG_FILE: config, STINT_FOUR_EYES_TIERS: "high,critical" },
  });
  await server.userWithRoles("mallory", ["user"]);
  await server.userWithRoles("author", ["admin"]);
  await server.userWithRoles("phished", ["admin"]); // no second factor: the password is everything
  const sec = await server.userWithRoles("sec", ["admin"]);
  secret = String((await call(sec, "POST", "/v1/me/mfa/totp")).body.secret);
  expect((await call(sec, "POST", "/v1/me/mfa/totp/confirm", { code: code() })).status).toBe(200);
}, 60_000);
afterAll(async () => {
  await server?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe("fourEyes.approverMfa: the second admin proves a fresh second factor (finding 82)", () => {
  it("a session without MFA approves no change request; an MFA-fresh admin's approval applies it", async () => {
    const held = await call(await server.login("author"), "POST", "/v1/config/apply", { yaml: file });
    expect(held.body, held.text).toMatchObject({ applied: false, changeRequest: { tier: "high" } });
    const id = (held.body.changeRequest as { id: string }).id;

    const refused = await call(await server.login("phished"), "POST", `/v1/change-requests/${id}/approve`, {});
    expect([refused.status, refused.body.error?.code], refused.text).toEqual([401, "MFA_STEP_UP_REQUIRED"]);
    expect(refused.text).toContain("Approving a change request at risk high needs a one-time code");
    expect(await eligibleRoles()).not.toContain("payroll-admin");
    const pending = await call(await admin(), "GET", `/v1/change-requests/${id}`);
    expect(pending.body.status).toBe("pending");

    // Signed in with a code, but longer ago than maxAge: refused the same way.
    const sec = await server.login("sec", passwordFor("sec"), code());
    clock.advance(6 * 60_000);
    expect((await call(sec, "POST", `/v1/change-requests/${id}/approve`, {})).body.error?.code).toBe(
      "MFA_STEP_UP_REQUIRED",
    );

    expect((await call(sec, "POST", "/v1/auth/step-up", { otp: code() })).status).toBe(200);
    const approved = await call(sec, "POST", `/v1/change-requests/${id}/approve`, { reason: "reviewed" });
    expect([approved.status, approved.body.status], approved.text).toEqual([200, "applied"]);
    expect(await eligibleRoles()).toContain("payroll-admin");

    const events = await call(await admin(), "GET", "/v1/audit/events?action=change_request.approved&limit=20");
    const ours = (events.body.items as { subject: string; outcome: string; reason: string | null; details: unknown }[])
      .filter((e) => e.subject === `change-request:${id}`)
      .map((e) => [
        e.outcome,
        e.outcome === "denied" ? e.reason : (e.details as { approverMfa?: unknown }).approverMfa,
      ]);
    expect(ours).toEqual(
      expect.arrayContaining([
        ["denied", "MFA_STEP_UP_REQUIRED"],
        ["success", { at: clock.now().toISOString(), method: "otp-or-sso" }],
      ]),
    );
    expect(ours).toHaveLength(3);
  });
});

describe("the change requests' list says ahead what approving asks of the approver's MFA", () => {
  /** The pending change requests as this session lists them: each one's approverMfa, by id. */
  async function hints(session: string): Promise<Record<string, unknown>> {
    const res = await call(session, "GET", "/v1/change-requests");
    expect(res.status, res.text).toBe(200);
    const items = res.body.items as { id: string; approverMfa?: unknown }[];
    return Object.fromEntries(items.map((item) => [item.id, item.approverMfa]));
  }

  it("by the decision's own check: satisfied just inside maxAge, refused and said so just outside it", async () => {
    const author = await server.login("author");
    const held = await call(author, "POST", "/v1/config/apply", { yaml: wideningFile("ledger-admin") });
    expect(held.body, held.text).toMatchObject({ applied: false, changeRequest: { tier: "high" } });
    const id = (held.body.changeRequest as { id: string }).id;
    // Its author may not approve it: no hint for them.
    expect(await hints(author)).toEqual({ [id]: undefined });
    expect((await hints(await server.login("phished")))[id]).toEqual({
      required: true,
      withinSeconds: 300,
      passkeyOnly: false,
      satisfied: false,
    });

    const sec = await server.login("sec", passwordFor("sec"), code());
    clock.advance(4 * 60_000 + 59_000); // within the 5m window still
    expect((await hints(sec))[id]).toEqual({ required: true, withinSeconds: 300, passkeyOnly: false, satisfied: true });

    clock.advance(2_000); // past it (and past the clock-skew allowance): the decision checks again at its own time
    const stale = await call(sec, "POST", `/v1/change-requests/${id}/approve`, {});
    expect([stale.status, stale.body.error?.code], stale.text).toEqual([401, "MFA_STEP_UP_REQUIRED"]);
    expect((await call(await admin(), "GET", `/v1/change-requests/${id}`)).body.status).toBe("pending");
    expect((await hints(sec))[id]).toMatchObject({ satisfied: false });

    // A step-up in the same session makes it true again, and the approval applies the file.
    expect((await call(sec, "POST", "/v1/auth/step-up", { otp: code() })).status).toBe(200);
    expect((await hints(sec))[id]).toMatchObject({ satisfied: true });
    const approved = await call(sec, "POST", `/v1/change-requests/${id}/approve`, {});
    expect([approved.status, approved.body.status], approved.text).toEqual([200, "applied"]);
    expect(approved.body).not.toHaveProperty("approverMfa"); // decided: nobody approves it any more
    expect(await eligibleRoles()).toContain("ledger-admin");
  });

  it("the OpenAPI document lists the hint on the list's items", async () => {
    const doc = await server.app.inject({ method: "GET", url: "/openapi.json" });
    const list = JSON.stringify(doc.json().paths["/v1/change-requests"].get.responses["200"]);
    for (const field of ["approverMfa", "withinSeconds", "passkeyOnly", "satisfied"]) expect(list).toContain(field);
  });
});

describe("fourEyes.approverMfa covers held directory changes too (an admin role granted)", () => {
  let other: TestServer;
  afterAll(async () => other?.cleanup());

  it("the approval of a held admin grant needs the approver's fresh MFA and records it", async () => {
    const config = path.join(work, "critical.yaml");
    writeFileSync(config, "fourEyes:\n  approverMfa: { tiers: [critical], maxAge: 5m }\n");
    other = await testServer("pglite", {
      clock,
      env: { STINT_CONFIG_FILE: config, STINT_FOUR_EYES_TIERS: "high,critical" },
    });
    const root = () => other.login(other.config.bootstrapAdminName, ADMIN_PASSWORD);
    const on = (auth: string, method: "GET" | "POST", url: string, payload?: object) =>
      other.app.inject({ method, url, headers: { authorization: auth }, payload }).then((r) => ({
        status: r.statusCode,
        text: r.body,
        body: r.json<Record<string, unknown> & { error?: { code: string } }>(),
      }));
    // The first other admin is made at once (nobody else could approve); the next one is held for them.
    const made = await on(await root(), "POST", "/v1/users", {
      name: "sec",
      password: passwordFor("sec"),
      platformRoles: ["admin"],
    });
    expect(made.status, made.text).toBe(201);
    const sec = await other.login("sec");
    const secSecret = String((await on(sec, "POST", "/v1/me/mfa/totp")).body.secret);
    clock.advance(60_000);
    expect(
      (await on(sec, "POST", "/v1/me/mfa/totp/confirm", { code: totpNow(secSecret, clock.now().getTime()) })).status,
    ).toBe(200);
    const held = await on(await root(), "POST", "/v1/users", {
      name: "ops",
      password: passwordFor("ops"),
      platformRoles: ["admin"],
    });
    expect(held.status, held.text).toBe(202);
    const id = (held.body.changeRequest as { id: string }).id;

    // Sec's session was opened with the password alone, before the authenticator: no MFA in it.
    const refused = await on(sec, "POST", `/v1/change-requests/${id}/approve`, {});
    expect(refused.body.error?.code, refused.text).toBe("MFA_STEP_UP_REQUIRED");
    clock.advance(60_000);
    expect((await on(sec, "POST", "/v1/auth/step-up", { otp: totpNow(secSecret, clock.now().getTime()) })).status).toBe(
      200,
    );
    const approved = await on(sec, "POST", `/v1/change-requests/${id}/approve`, {});
    expect([approved.status, approved.body.status], approved.text).toEqual([200, "applied"]);
    const events = await on(await root(), "GET", "/v1/audit/events?action=change_request.approved&limit=20");
    const success = (
      events.body.items as { subject: string; outcome: string; details: Record<string, unknown> }[]
    ).find((e) => e.subject === `change-request:${id}` && e.outcome === "success");
    expect(success?.details).toMatchObject({
      kind: "directory",
      approverMfa: { at: clock.now().toISOString(), method: "otp-or-sso" },
    });
  });
});
