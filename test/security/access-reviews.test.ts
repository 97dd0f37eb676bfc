/**
 * Access reviews attacked by their reviewers (security review): a decision after the campaign's due date, and a
 * security user working the anomaly-alert review item about the fast approval of their own request.
 *
 * - Past the due date an undecided item takes its `onMissed` outcome (the reviews worker applies it at its next
 *   pass). A reviewer who answered late could still "keep" an item due to be removed in the gap between the due
 *   date and that pass (a poll, or as long as no node ran the worker), and the access stayed.
 * - An anomaly alert about an approval (`fastApproval`) names the approver as the one whose conduct it is about;
 *   the requester, who got the access, could acknowledge it ("looked fine") and close the only review of it.
 *   Whoever's request a finding item is about never works it (`SELF_REVIEW`, audited), whoever it names.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { newId } from "../../src/lib/ids.js";
import { emptyState, fastApproval } from "../../src/modules/alerts/alerts.rules.js";
import type { RulesConfig } from "../../src/modules/alerts/alerts.types.js";
import { openReviewItem } from "../../src/modules/reviews/index.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const DAY = 86_400_000;
const clock = manualClock(new Date());
let server: TestServer;

beforeAll(async () => {
  server = await testServer("pglite", { clock });
  await seedUser(server, "alice");
  await seedUser(server, "pat", { groups: ["approvers"] });
  await seedUser(server, "dana", { groups: ["leads"] });
  await server.userWithRoles("sam", ["security"]);
  await server.userWithRoles("sue", ["security"]);
  await server.userWithRoles("ada", ["admin"]);
  await seedRole(server, {
    name: "app-admin",
    risk: "high",
    policy: { mfa: { required: false } },
    eligibleUsers: ["alice"],
  });
  await seedRole(server, {
    name: "payments-admin",
    risk: "medium",
    policy: { mfa: { required: false }, approval: { stages: [{ name: "lead", approvers: { groups: ["leads"] } }] } },
    eligibleUsers: ["sam"],
  });
}, 60_000);
afterAll(async () => server?.cleanup());

/** An admin signed in afresh (the clock moves past an access token's life). */
const admin = (method: "GET" | "POST", url: string, payload?: unknown) => actAs(server, "ada")(method, url, payload);

async function auditOf(action: string, subject: string) {
  const res = await admin("GET", `/v1/audit/events?action=${action}&limit=50`);
  return (res.body.items as { outcome: string; subject: string; reason: string | null }[]).filter(
    (e) => e.subject === subject,
  );
}

describe("access reviews: decisions after the due date", () => {
  it("an item past its campaign's due date is not decided any more: it takes its onMissed outcome", async () => {
    const created = await admin("POST", "/v1/reviews/campaigns", {
      name: "app-admin-q3",
      scope: { roles: ["app-admin"] },
      reviewers: { groups: ["approvers"] },
      duration: "1d",
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const item = (created.body.items as { id: string; member: string; onMissed: string }[])[0]!;
    expect(item).toMatchObject({ member: "alice", onMissed: "remove" });
    // alice uses the role; the review is due in a day and nobody decides it in time.
    const activated = await actAs(server, "alice")("POST", "/v1/activation-requests", {
      role: "app-admin",
      reason: "deploy hotfix 4711",
    });
    expect(activated.body.state, JSON.stringify(activated.body)).toBe("active");
    clock.advance(DAY + 60_000);

    // The reviewer answers late, before the worker's pass: refused, the item stays open for its onMissed.
    const late = await actAs(server, "pat")("POST", `/v1/reviews/items/${item.id}/decision`, {
      decision: "keep",
      reason: "still needed",
    });
    expect(late.status, JSON.stringify(late.body)).toBe(409);
    expect(late.body.error?.code).toBe("CAMPAIGN_CLOSED");
    expect(late.body.error?.message).toContain("due");

    expect((await server.reviewsWorker.runOnce()).applied).toBe(1);
    const detail = await admin("GET", `/v1/reviews/campaigns/${String(created.body.id)}`);
    expect((detail.body.items as { outcome: string }[])[0]!.outcome).toBe("missed-removed");
    const eligibility = await admin("GET", "/v1/eligibilities?role=app-admin");
    expect(JSON.stringify(eligibility.body)).not.toContain("alice");
    const request = await actAs(server, "alice")("GET", `/v1/activation-requests/${String(activated.body.id)}`);
    expect(request.body.state).toBe("revoked");
  });
});

describe("access reviews: finding items about one's own request", () => {
  it("the requester cannot acknowledge the alert about the fast approval of their request; another reviewer can", async () => {
    const submitted = await actAs(server, "sam")("POST", "/v1/activation-requests", {
      role: "payments-admin",
      reason: "rotate the payment keys",
    });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    const requestId = String(submitted.body.id);
    const approved = await actAs(server, "dana")("POST", `/v1/activation-requests/${requestId}/approvals`, {
      reason: "ok",
    });
    expect(approved.body.state, JSON.stringify(approved.body)).toBe("active");

    // What the alerts consumer opens for a fastApproval alert configured with `action: review`.
    const at = clock.now();
    const draft = fastApproval(
      {
        kind: "decided",
        approver: "dana",
        requester: "sam",
        at,
        role: "payments-admin",
        requestId,
        approved: true,
      },
      emptyState(),
      { enabled: true, severity: "warning", action: "review", within: 10_000 } as RulesConfig["fastApproval"],
      { submittedAt: () => new Date(at.getTime() - 2000) },
    )!;
    expect(draft).toMatchObject({ principal: "dana", subject: `request:${requestId}` });
    const itemId = newId();
    await openReviewItem(server.store.db, {
      id: itemId,
      kind: "anomaly-alert",
      subject: draft.subject!,
      principal: draft.principal,
      reason: draft.title,
      createdAt: at,
      dueAt: new Date(at.getTime() + 7 * DAY),
    });

    const url = `/v1/reviews/items/${itemId}/decision`;
    const own = await actAs(server, "sam")("POST", url, { decision: "acknowledge", reason: "looked fine to me" });
    expect(own.status, JSON.stringify(own.body)).toBe(403);
    expect(own.body.error?.code).toBe("SELF_REVIEW");
    const refusals = await auditOf("review.decide", `review-item:${itemId}`);
    expect(refusals).toEqual([expect.objectContaining({ outcome: "denied", reason: "SELF_REVIEW" })]);

    const other = await actAs(server, "sue")("POST", url, { decision: "acknowledge", reason: "asked dana: on a call" });
    expect(other.status, JSON.stringify(other.body)).toBe(200);
    expect(other.body).toMatchObject({ status: "closed", outcome: "acknowledged", closedBy: "sue" });
  });
});
