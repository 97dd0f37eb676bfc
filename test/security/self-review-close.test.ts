/**
 * Class: a reviews manager (`security` or `admin`) ending the access review that covers their own access.
 *
 * Deciding one's own item is refused (SELF_REVIEW), but closing the campaign early applies every undecided item's
 * `onMissed` — `keep` for low and medium roles — so a security user eligible for a role in scope closed the campaign
 * the day it opened and kept their access, reviewed by nobody. Closing a campaign with an open item about the
 * closer (directly or through a group) is now refused with SELF_REVIEW (audited); once another reviewer has
 * decided those items, or another manager closes it, it closes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { apiCaller } from "../../src/testing/api-call.js";

const BASE = `apiVersion: stint/v1
groups:
  - { name: auditors, members: [carol] }
  - { name: finance, members: [sam] }
policies:
  - { name: plain, mfa: { required: false } }
targets:
  - { name: payroll, kind: internal }
  - { name: wiki, kind: internal }
roles:
  - { name: payroll-clerk, target: payroll, policy: plain, risk: medium }
  - { name: wiki-editor, target: wiki, policy: plain, risk: low }
eligibility:
  - { role: payroll-clerk, groups: [finance] }
  - { role: wiki-editor, users: [sam, ann] }
`;

type Item = { id: string; subject: string; status: string; outcome: string | null };
type Campaign = { id: string; status: string; items: Item[] };

let server: TestServer;
let sam: string;
let carol: string;
const call = apiCaller(() => server);

async function openCampaign(name: string): Promise<Campaign> {
  const res = await call(server.adminAuth, "POST", "/v1/reviews/campaigns", {
    name,
    scope: { roles: ["payroll-clerk", "wiki-editor"] },
    reviewers: { groups: ["auditors"] },
    duration: "14d",
  });
  expect(res.status, res.text).toBe(201);
  return res.body as unknown as Campaign;
}
const campaign = async (id: string) =>
  (await call(server.adminAuth, "GET", `/v1/reviews/campaigns/${id}`)).body as unknown as Campaign;

beforeAll(async () => {
  server = await testServer("pglite");
  carol = await server.userWithRoles("carol", ["user"]);
  await server.userWithRoles("ann", ["user"]);
  sam = await server.userWithRoles("sam", ["security"]);
  expect((await call(server.adminAuth, "POST", "/v1/config/apply", { yaml: BASE })).text).toContain('"applied":true');
});
afterAll(async () => server?.cleanup());

describe("nobody closes the review of their own access", () => {
  it("a security user closing the campaign that covers them is SELF_REVIEW: their items stay open", async () => {
    const opened = await openCampaign("q1");
    expect(opened.items.map((i) => i.subject).sort()).toEqual([
      "eligibility:payroll-clerk/group:finance",
      "eligibility:wiki-editor/ann",
      "eligibility:wiki-editor/sam",
    ]);
    const res = await call(sam, "POST", `/v1/reviews/campaigns/${opened.id}/close`);
    expect(res.status, res.text).toBe(403);
    expect(res.body.error?.code).toBe("SELF_REVIEW");
    expect(res.text).toContain("eligibility:wiki-editor/sam");
    expect(res.text).toContain("eligibility:payroll-clerk/group:finance");
    const after = await campaign(opened.id);
    expect(after.status).toBe("open");
    expect(after.items.every((i) => i.status === "open")).toBe(true);
    const denied = await server.store.db
      .selectFrom("audit_events")
      .select("outcome")
      .where("action", "=", "review.campaign.close")
      .where("outcome", "=", "denied")
      .execute();
    expect(denied.length).toBe(1);
  });

  it("once another reviewer has decided their items, they may close it (the rest take onMissed)", async () => {
    const opened = await openCampaign("q2");
    for (const item of opened.items.filter((i) => !i.subject.endsWith("/ann"))) {
      const decided = await call(carol, "POST", `/v1/reviews/items/${item.id}/decision`, {
        decision: "keep",
        reason: "still in finance",
      });
      expect(decided.status, decided.text).toBe(200);
    }
    const res = await call(sam, "POST", `/v1/reviews/campaigns/${opened.id}/close`);
    expect(res.status, res.text).toBe(200);
    const outcomes = (await campaign(opened.id)).items.map((i) => `${i.subject} ${i.outcome}`).sort();
    expect(outcomes).toEqual([
      "eligibility:payroll-clerk/group:finance kept",
      "eligibility:wiki-editor/ann missed-kept",
      "eligibility:wiki-editor/sam kept",
    ]);
  });

  it("another manager closes a campaign covering someone else", async () => {
    const opened = await openCampaign("q3");
    expect((await call(server.adminAuth, "POST", `/v1/reviews/campaigns/${opened.id}/close`)).status).toBe(200);
  });
});
