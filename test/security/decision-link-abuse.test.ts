/**
 * Decision links attacked by the people who see them (security review). A link's token names one request and
 * one action and works once; it is no credential: the one who uses it must be signed in and named by the policy.
 *
 * - Someone the policy does not name (a forwarded e-mail) cannot decide with a genuine link, nor use it up.
 * - A link cannot decide another request (a new one after a cancel, say), nor take the other action.
 * - The requester cannot approve their own request with a link.
 * - A used link is refused, whoever presents it.
 * - After the fact: an expired link, a link of an approver since removed from the approver group, and a link to a
 *   request already decided decide nothing (the links are bearer-free: the API takes no cookie, so a page elsewhere
 *   cannot decide in the approver's name, and opening a link only shows the request until the approver clicks).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/lib/clock.js";
import {
  createDecisionLinks,
  DECISION_LINK_TTL_MS,
  type DecisionLinks,
} from "../../src/modules/requests/decision-links.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
let links: DecisionLinks;

async function submit(requester: string): Promise<string> {
  const res = await actAs(server, requester)("POST", "/v1/activation-requests", {
    role: "orders-db",
    reason: "ship the orders fix",
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}

const approve = (who: string, id: string, linkToken: string) =>
  actAs(server, who)("POST", `/v1/activation-requests/${id}/approvals`, { linkToken });
const deny = (who: string, id: string, linkToken: string) =>
  actAs(server, who)("POST", `/v1/activation-requests/${id}/denials`, { linkToken, reason: "not now" });
const stateOf = async (id: string) =>
  (await actAs(server, "carol")("GET", `/v1/activation-requests/${id}`)).body.state as string;

beforeAll(async () => {
  server = await testServer("pglite");
  links = createDecisionLinks({ keyring: server.keyring, clock: systemClock });
  await seedUser(server, "carol", { groups: ["approvers"] });
  await seedUser(server, "dan", { groups: ["approvers"] });
  await seedUser(server, "eve");
  await seedUser(server, "alice", { groups: ["approvers"] });
  await seedUser(server, "fay", { groups: ["approvers"] });
  await seedRole(server, {
    name: "orders-db",
    policy: {
      mfa: { required: false },
      approval: { stages: [{ approvers: { groups: ["approvers"] }, count: 1 }] },
    },
    eligibleUsers: ["alice", "eve"],
  });
}, 60_000);
afterAll(async () => server?.cleanup());

describe("decision links are no credential", () => {
  it("someone the policy does not name cannot decide with a genuine link, nor use it up", async () => {
    const id = await submit("alice");
    const link = await links.sign(id, "approve");
    const forwarded = await approve("eve", id, link);
    expect(forwarded.status).toBeGreaterThanOrEqual(400);
    expect(await stateOf(id)).toBe("pending");
    const approver = await approve("carol", id, link);
    expect(approver.status, JSON.stringify(approver.body)).toBe(200);
    expect(await stateOf(id)).not.toBe("pending");
    await actAs(server, "alice")("POST", "/v1/me/roles/orders-db/deactivate");
  });

  it("the requester, named as an approver too, cannot approve their own request with its link", async () => {
    const id = await submit("alice");
    const own = await approve("alice", id, await links.sign(id, "approve"));
    expect(own.status).toBeGreaterThanOrEqual(400);
    expect(await stateOf(id)).toBe("pending");
    await actAs(server, "alice")("POST", `/v1/activation-requests/${id}/cancel`);
  });

  it("a link decides only its request and its action, once", async () => {
    const first = await submit("eve");
    const approveFirst = await links.sign(first, "approve");
    await actAs(server, "eve")("POST", `/v1/activation-requests/${first}/cancel`);
    const second = await submit("eve");
    // The old request's link on the new request; the approve link to deny.
    expect((await approve("carol", second, approveFirst)).body.error?.code).toBe("VALIDATION_FAILED");
    expect((await deny("carol", second, await links.sign(second, "approve"))).body.error?.code).toBe(
      "VALIDATION_FAILED",
    );
    expect(await stateOf(second)).toBe("pending");
    const link = await links.sign(second, "deny");
    expect((await deny("carol", second, link)).status).toBe(200);
    // Used: refused to anyone, even for a decision that would otherwise be allowed.
    const third = await submit("eve");
    expect((await deny("dan", third, link)).body.error?.code).toBe("VALIDATION_FAILED");
    expect(await stateOf(third)).toBe("pending");
  });
});

describe("decision links after the fact", () => {
  it("an expired link decides nothing, even for an approver the policy names", async () => {
    const id = await submit("alice");
    const yesterday = { now: () => new Date(Date.now() - DECISION_LINK_TTL_MS - 60_000) };
    const expired = await createDecisionLinks({ keyring: server.keyring, clock: yesterday }).sign(id, "approve");
    expect((await approve("carol", id, expired)).body.error?.code).toBe("VALIDATION_FAILED");
    expect(await stateOf(id)).toBe("pending");
    await actAs(server, "alice")("POST", `/v1/activation-requests/${id}/cancel`);
  });

  it("an approver removed from the approver group decides nothing with a link sent to them before", async () => {
    const id = await submit("alice");
    const link = await links.sign(id, "approve");
    const removed = await server.app.inject({
      method: "DELETE",
      url: "/v1/groups/approvers/members/fay",
      headers: { authorization: server.adminAuth },
    });
    expect(removed.statusCode, removed.body).toBeLessThan(300);
    expect((await approve("fay", id, link)).status).toBeGreaterThanOrEqual(400);
    expect(await stateOf(id)).toBe("pending");
    // Not used up by the refusal: a current approver still decides with it.
    expect((await approve("carol", id, link)).status).toBe(200);
    await actAs(server, "alice")("POST", "/v1/me/roles/orders-db/deactivate");
  });

  it("a link to a request already decided decides nothing", async () => {
    const id = await submit("alice");
    const approveLink = await links.sign(id, "approve");
    expect((await deny("carol", id, await links.sign(id, "deny"))).status).toBe(200);
    expect((await approve("dan", id, approveLink)).status).toBeGreaterThanOrEqual(400);
    expect(await stateOf(id)).toBe("denied");
  });
});
