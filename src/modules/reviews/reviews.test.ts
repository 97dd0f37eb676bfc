/**
 * Access reviews: the pure rules (who reviews, what is recommended, what a missed item becomes, who may decide),
 * and the API's refusals of bad input and of reviewers who may not decide, on PGlite through buildApp.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { passwordFor, testServer, type TestServer } from "../../testing/server.js";
import { itemsCsv } from "../../cli/commands/reviews.js";
import { checkDecision, DAY_MS, onMissedFor, recommend, reminderDue, reviewersFor } from "./reviews.rules.js";

const codeOf = (fn: () => void) => {
  try {
    fn();
  } catch (error) {
    return (error as StintError).code;
  }
  return null;
};

describe("reviews rules", () => {
  it("onMissed: the campaign's choice, else remove for high and critical and keep otherwise", () => {
    expect(onMissedFor("by-risk", "critical")).toBe("remove");
    expect(onMissedFor("by-risk", "high")).toBe("remove");
    expect(onMissedFor("by-risk", "medium")).toBe("keep");
    expect(onMissedFor("by-risk", "low")).toBe("keep");
    expect(onMissedFor("keep", "critical")).toBe("keep");
    expect(onMissedFor("remove", "low")).toBe("remove");
  });

  it("recommends removal of eligibility not activated for 90 days, keeping what is used", () => {
    const now = new Date("2027-04-01T00:00:00Z");
    const at = (days: number) => new Date(now.getTime() - days * DAY_MS);
    const base = { activationsInPeriod: 0, lastSignInAt: null, periodDays: 90 };
    expect(recommend({ ...base, lastActivationAt: null }, now)).toMatchObject({
      recommendation: "remove",
      recommendationText: "never activated → remove",
    });
    expect(recommend({ ...base, lastActivationAt: at(91) }, now)).toMatchObject({
      recommendation: "remove",
      recommendationText: "not used in 90 days → remove",
    });
    expect(recommend({ ...base, activationsInPeriod: 3, lastActivationAt: at(10) }, now)).toMatchObject({
      recommendation: "keep",
      lastActivationAt: at(10).toISOString(),
    });
  });

  it("reviewers are the union of the sources minus the subject; the fallback only when that leaves nobody", () => {
    expect(
      reviewersFor({ subjectIds: ["kim"], owners: ["olive", "kim"], manager: "max", groups: [], fallback: ["sam"] }),
    ).toEqual(["max", "olive"]);
    // The only owner is the subject: the fallback reviews, never the subject.
    expect(
      reviewersFor({ subjectIds: ["olive"], owners: ["olive"], manager: null, groups: [], fallback: ["sam", "olive"] }),
    ).toEqual(["sam"]);
    expect(reviewersFor({ subjectIds: ["a"], owners: [], manager: null, groups: [], fallback: [] })).toEqual([]);
  });

  it("a decision: closed items first, then self-review (even for a listed reviewer), reviewership, the due date", () => {
    const item = { status: "open" as const, reviewerIds: ["olive", "kim"], subjectIds: ["kim"] };
    expect(codeOf(() => checkDecision(item, "kim"))).toBe("SELF_REVIEW");
    expect(codeOf(() => checkDecision(item, "rex"))).toBe("NOT_A_REVIEWER");
    expect(codeOf(() => checkDecision(item, "olive"))).toBeNull();
    expect(codeOf(() => checkDecision({ ...item, status: "closed" }, "olive"))).toBe("REVIEW_ITEM_CLOSED");
    // Up to the due date, not at or after it (then the item takes its onMissed outcome); self-review named first.
    const due = { ...item, dueAt: new Date("2026-07-01T00:00:00Z") };
    expect(codeOf(() => checkDecision(due, "olive", new Date("2026-06-30T23:59:59Z")))).toBeNull();
    expect(codeOf(() => checkDecision(due, "olive", new Date("2026-07-01T00:00:00Z")))).toBe("CAMPAIGN_CLOSED");
    expect(codeOf(() => checkDecision(due, "kim", new Date("2026-07-02T00:00:00Z")))).toBe("SELF_REVIEW");
  });

  it("reminders: every period after opening, never past the due date, never without a period", () => {
    const openedAt = new Date("2027-01-01T00:00:00Z");
    const dueAt = new Date("2027-01-15T00:00:00Z");
    const campaign = { remindEveryMs: 3 * DAY_MS, openedAt, dueAt, lastRemindedAt: null };
    expect(reminderDue(campaign, new Date("2027-01-03T00:00:00Z"))).toBe(false);
    expect(reminderDue(campaign, new Date("2027-01-04T00:00:00Z"))).toBe(true);
    expect(
      reminderDue({ ...campaign, lastRemindedAt: new Date("2027-01-04T00:00:00Z") }, new Date("2027-01-05T00:00:00Z")),
    ).toBe(false);
    expect(reminderDue(campaign, new Date("2027-01-16T00:00:00Z"))).toBe(false);
    expect(reminderDue({ ...campaign, remindEveryMs: null }, new Date("2027-01-10T00:00:00Z"))).toBe(false);
  });

  it("the CSV export quotes every cell and defuses spreadsheet formulas", () => {
    const csv = itemsCsv([
      {
        id: "1",
        kind: "eligibility",
        campaignId: null,
        subject: "s",
        role: "r",
        member: "m",
        status: "closed",
        outcome: "removed",
        reason: "x",
        decisionReason: '=HYPERLINK("http://evil")',
        reviewers: ["a", "b"],
        onMissed: "remove",
        evidence: null,
        dueAt: "2027-01-01T00:00:00.000Z",
        closedAt: null,
        closedBy: "a",
      },
    ]);
    expect(csv.split("\n")[1]).toContain(`"'=HYPERLINK(""http://evil"")"`);
    expect(csv.split("\n")[1]).toContain(`"a b"`);
  });
});

describe("reviews API refusals", () => {
  let server: TestServer;
  const clock = manualClock(new Date());
  const call = async (auth: string, method: "GET" | "POST", url: string, payload?: unknown) => {
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: res.json<Record<string, unknown> & { error?: { code: string } }>() };
  };
  const as = async (user: string, method: "GET" | "POST", url: string, payload?: unknown) =>
    call(await server.login(user, passwordFor(user)), method, url, payload);
  let campaignId = "";

  beforeAll(async () => {
    server = await testServer("pglite", { clock });
    for (const user of ["gina", "owen", "pat"]) {
      const res = await call(server.adminAuth, "POST", "/v1/users", { name: user, password: passwordFor(user) });
      expect(res.status).toBe(201);
    }
    const apply = await call(server.adminAuth, "POST", "/v1/config/apply", {
      yaml: `
apiVersion: stint/v1
groups:
  - name: oncall
    members: [gina, owen]
  - name: approvers
    members: [owen, pat]
policies:
  - name: self
    mfa: { required: false }
    maxDuration: 1h
targets:
  - name: app
    kind: internal
roles:
  - name: app-admin
    target: app
    policy: self
    risk: medium
eligibility:
  - role: app-admin
    groups: [oncall]
`,
    });
    expect(apply.status, JSON.stringify(apply.body)).toBe(200);
    const created = await call(server.adminAuth, "POST", "/v1/reviews/campaigns", {
      name: "app-review",
      scope: { roles: ["app-admin"] },
      reviewers: { groups: ["approvers"] },
      duration: "7d",
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    campaignId = String(created.body.id);
  }, 60_000);
  afterAll(async () => server?.cleanup());

  it("refuses bad campaign input with VALIDATION_FAILED and creates nothing", async () => {
    const good = { name: "x-review", reviewers: { fallback: "approvers" }, duration: "1d" };
    const bad: unknown[] = [
      { ...good, dueAt: new Date(clock.now().getTime() + 3600_000).toISOString() }, // both duration and dueAt
      { name: "x-review", reviewers: { fallback: "approvers" } }, // neither
      { ...good, reviewers: {} }, // no reviewers at all
      { ...good, duration: "soon" },
      { ...good, scope: { risk: ["extreme"] } },
      { ...good, scope: { roles: ["Not A Name"] } },
      { ...good, onMissed: "maybe" },
      { ...good, extra: true },
      {
        name: "x-review",
        reviewers: { fallback: "approvers" },
        dueAt: new Date(clock.now().getTime() - 1000).toISOString(),
      },
    ];
    for (const payload of bad) {
      const res = await call(server.adminAuth, "POST", "/v1/reviews/campaigns", payload);
      expect(res.status, JSON.stringify(payload)).toBe(400);
      expect(res.body.error?.code).toBe("VALIDATION_FAILED");
    }
    const list = await call(server.adminAuth, "GET", "/v1/reviews/campaigns");
    expect((list.body.items as unknown[]).length).toBe(1);
  });

  it("refuses bad decisions; a member of the group holding the eligibility cannot review it", async () => {
    const detail = await call(server.adminAuth, "GET", `/v1/reviews/campaigns/${campaignId}`);
    const item = (detail.body.items as { id: string; member: string; reviewers: string[] }[])[0]!;
    expect(item.member).toBe("group:oncall");
    // owen is in approvers, but also in oncall: never a reviewer of oncall's access.
    expect(item.reviewers).toEqual(["pat"]);
    const url = `/v1/reviews/items/${item.id}/decision`;
    for (const payload of [
      { decision: "keep" },
      { decision: "drop", reason: "r" },
      { decision: "keep", reason: "a\u0000b" },
      {},
    ]) {
      const res = await as("pat", "POST", url, payload);
      expect(res.status, JSON.stringify(payload)).toBe(400);
    }
    expect((await as("owen", "POST", url, { decision: "keep", reason: "mine" })).body.error?.code).toBe("SELF_REVIEW");
    expect((await as("gina", "POST", url, { decision: "remove", reason: "mine" })).body.error?.code).toBe(
      "SELF_REVIEW",
    );
    // An admin is not a reviewer by platform role.
    expect((await call(server.adminAuth, "POST", url, { decision: "keep", reason: "admin" })).body.error?.code).toBe(
      "NOT_A_REVIEWER",
    );
    // An id that names nothing answers the same as someone else's item.
    expect(
      (
        await as("pat", "POST", "/v1/reviews/items/00000000-0000-4000-8000-000000000000/decision", {
          decision: "keep",
          reason: "r",
        })
      ).body.error?.code,
    ).toBe("NOT_A_REVIEWER");
    expect(
      (await call(server.adminAuth, "GET", "/v1/reviews/campaigns/00000000-0000-4000-8000-000000000000")).status,
    ).toBe(404);
    const decided = await as("pat", "POST", url, { decision: "remove", reason: "oncall rotation ended" });
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    const eligibility = await call(server.adminAuth, "GET", "/v1/eligibilities?role=app-admin");
    expect(JSON.stringify(eligibility.body)).not.toContain("oncall");
  });

  it("closing twice is CAMPAIGN_CLOSED", async () => {
    expect((await call(server.adminAuth, "POST", `/v1/reviews/campaigns/${campaignId}/close`)).status).toBe(200);
    const again = await call(server.adminAuth, "POST", `/v1/reviews/campaigns/${campaignId}/close`);
    expect(again.status).toBe(409);
    expect(again.body.error?.code).toBe("CAMPAIGN_CLOSED");
  });
});
