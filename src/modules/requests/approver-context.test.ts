/**
 * Issue 17 item 1: an approver whose platform role is `user` reads, for a request they may decide, the role's
 * risk and policy, the requester's latest requests for that role and the approvals so far — authorized by
 * being an approver of that request's current stage. Everyone else (another user, the requester, an approver
 * of a different request, an administrator who is not an approver, an approver of a stage already passed)
 * gets the same NOT_FOUND as for a request that does not exist.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApproverContextDto } from "../../contract/requests.js";
import { passwordFor, testServer, type TestServer } from "../../testing/server.js";
import { HISTORY_SHOWN } from "./approver-context.js";

let t: TestServer;
const auth: Record<string, string> = {};

const CONFIG = `apiVersion: stint/v1
policies:
  - name: two-stage
    defaultDuration: 1h
    maxDuration: 4h
    mfa: { required: false }
    justification: { minLength: 10, ticketRequired: true, ticketPattern: "CHG-\\\\d+" }
    maxExtensions: 2
    approval:
      # A critical role's approvers need MFA by default (test/security/approver-mfa.test.ts); not the subject here.
      mfa: { required: false }
      stages:
        - name: lead
          approvers: { manager: true }
          count: 1
        - name: owner
          approvers: { users: [dave] }
          count: 1
  - name: by-bob
    mfa: { required: false }
    approval:
      stages:
        - approvers: { users: [bob] }
targets:
  - name: internal
    kind: internal
roles:
  - name: payments-admin
    target: internal
    risk: critical
    policy: two-stage
  - name: wiki-editor
    target: internal
    risk: low
    policy: by-bob
eligibility:
  - role: payments-admin
    users: [alice, frank]
  - role: wiki-editor
    users: [alice, frank]
`;

async function call(who: string, method: "GET" | "POST", url: string, payload?: unknown) {
  const res = await t.app.inject({
    method,
    url,
    headers: { authorization: auth[who]! },
    ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
  });
  return { status: res.statusCode, body: res.json<Record<string, unknown>>() };
}

async function submit(who: string, role: string, reason: string, ticket?: string): Promise<string> {
  const res = await call(who, "POST", "/v1/activation-requests", { role, reason, ...(ticket ? { ticket } : {}) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}

const context = (who: string, id: string) => call(who, "GET", `/v1/activation-requests/${id}/context`);

let earlierIds: string[];
let pending: string;
let franks: string;
let wiki: string;

beforeAll(async () => {
  t = await testServer("pglite");
  auth.admin = t.adminAuth;
  for (const name of ["carol", "dave", "bob", "eve"]) auth[name] = await t.userWithRoles(name, ["user"]);
  for (const [name, manager] of [
    ["alice", "carol"],
    ["frank", "eve"],
  ] as const) {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/users",
      headers: { authorization: t.adminAuth },
      payload: { name, password: passwordFor(name), manager },
    });
    expect(res.statusCode, res.body).toBe(201);
    auth[name] = await t.login(name);
  }
  const applied = await call("admin", "POST", "/v1/config/apply", { yaml: CONFIG });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);

  // alice's history for payments-admin: more requests than are shown, each ended one way or another.
  earlierIds = [];
  for (let i = 0; i < HISTORY_SHOWN + 1; i++) {
    const id = await submit("alice", "payments-admin", `rotate the payment keys, batch ${i}`, `CHG-${i}`);
    if (i === HISTORY_SHOWN) {
      expect((await call("carol", "POST", `/v1/activation-requests/${id}/denials`, { reason: "not now" })).status).toBe(
        200,
      );
    } else expect((await call("alice", "POST", `/v1/activation-requests/${id}/cancel`)).status).toBe(200);
    earlierIds.unshift(id);
  }
  // Requests that must not appear in alice's history for payments-admin: hers for another role, frank's for it.
  wiki = await submit("alice", "wiki-editor", "fix the onboarding page links");
  franks = await submit("frank", "payments-admin", "rotate the card processor keys", "CHG-77");
  pending = await submit("alice", "payments-admin", "rotate the payment keys for the audit", "CHG-100");
});
afterAll(async () => t?.cleanup());

describe("approver context", () => {
  it("the manager (platform role user) sees risk, policy, alice's latest requests for the role and no approvals yet", async () => {
    const res = await context("carol", pending);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const body = res.body as unknown as ApproverContextDto;
    expect(body.requestId).toBe(pending);
    expect(body.role).toEqual({ name: "payments-admin", risk: "critical", target: "internal", targetKind: "internal" });
    expect(body.policy).toMatchObject({
      name: "two-stage",
      defaultDuration: "1h",
      maxDuration: "4h",
      mfaRequired: false,
      ticketRequired: true,
      ticketPattern: "CHG-\\d+",
      reasonMinLength: 10,
      approvalStages: 2,
      maxExtensions: 2,
      breakGlass: false,
      windows: false,
    });
    expect(body.history.map((h) => h.id)).toEqual(earlierIds.slice(0, HISTORY_SHOWN));
    expect(body.moreHistory).toBe(true);
    expect(body.history.map((h) => h.state)).toEqual([
      "denied",
      ...Array.from({ length: HISTORY_SHOWN - 1 }, () => "cancelled"),
    ]);
    expect(body.history.map((h) => h.id)).not.toContain(wiki);
    expect(body.history.map((h) => h.id)).not.toContain(franks);
    expect(body.history.map((h) => h.id)).not.toContain(pending);
    expect(body.decisions).toEqual([]);
    expect(body.stages.map((s) => [s.name, s.approvals])).toEqual([
      ["lead", []],
      ["owner", []],
    ]);
    expect(body.decidedByYou).toBe(false);
  });

  it("the denied request in the history says who denied it", async () => {
    const body = (await context("carol", pending)).body as unknown as ApproverContextDto;
    expect(body.history[0]).toMatchObject({
      id: earlierIds[0],
      state: "denied",
      ticket: `CHG-${HISTORY_SHOWN}`,
      decidedBy: [{ approver: "carol", decision: "deny" }],
    });
    expect(body.history[1]!.decidedBy).toEqual([]);
    expect(body.history[1]!.endedBy).toBe("alice");
  });

  it("nobody else reads it: another user, the requester, an approver of another request, an admin, no such id", async () => {
    const missing = await context("carol", randomUUID());
    expect(missing.status).toBe(404);
    for (const who of ["eve", "alice", "bob", "dave", "admin", "frank"]) {
      const res = await context(who, pending);
      expect(res.status, who).toBe(404);
      // The same answer as for a request that does not exist: nothing tells the request exists.
      expect(res.body, who).toEqual(missing.body);
    }
    // eve decides frank's request (she is his manager) but not alice's; carol is not an approver of frank's.
    expect((await context("eve", franks)).status).toBe(200);
    expect((await context("carol", franks)).status).toBe(404);
    // bob decides alice's wiki request: and sees only that one.
    expect((await context("bob", wiki)).status).toBe(200);
    expect((await context("bob", pending)).status).toBe(404);
  });

  it("after the first stage: the next stage's approver sees the approval so far, the first approver no longer reads it", async () => {
    const approved = await call("carol", "POST", `/v1/activation-requests/${pending}/approvals`, {
      reason: "agreed in the change board",
    });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    const res = await context("dave", pending);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const body = res.body as unknown as ApproverContextDto;
    expect(body.stageIndex).toBe(1);
    expect(body.decisions).toMatchObject([
      { stage: 0, approver: "carol", decision: "approve", reason: "agreed in the change board" },
    ]);
    expect(body.stages[0]!.approvals).toEqual(["carol"]);
    expect((await context("carol", pending)).status).toBe(404);

    // Once decided it is no longer pending: nobody reads its context.
    expect((await call("dave", "POST", `/v1/activation-requests/${pending}/approvals`, {})).status).toBe(200);
    expect((await context("dave", pending)).status).toBe(404);
  });
});
