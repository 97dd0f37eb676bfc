/**
 * Multi-stage approval satisfied by one person (issue 12 finding 13): someone in the approver groups of two
 * stages approved both, so a "two people must agree" policy let one person activate a role for someone else.
 * Through the HTTP API of a whole server: distinct approvers across stages by default, and only a policy that
 * says `approval.sameApproverAcrossStages: true` (explicit, audited in the catalog) allows one person again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
const REASON = "rotate the payment keys after incident 4711";

const twoStages = (same?: boolean) => ({
  mfa: { required: false },
  approval: {
    stages: [
      { name: "team lead", approvers: { groups: ["leads"] } },
      { name: "security", approvers: { groups: ["sec"] } },
    ],
    ...(same === undefined ? {} : { sameApproverAcrossStages: same }),
  },
});

beforeAll(async () => {
  server = await testServer("pglite");
  await seedUser(server, "alice", { groups: ["requesters"] });
  await seedUser(server, "dana", { groups: ["leads", "sec"] }); // in both stages' groups
  await seedUser(server, "eve", { groups: ["sec"] });
  await seedRole(server, { name: "payments-admin", risk: "high", policy: twoStages(), eligibleGroups: ["requesters"] });
  await seedRole(server, {
    name: "payments-admin-one-person",
    risk: "high",
    policy: twoStages(true),
    eligibleGroups: ["requesters"],
  });
});
afterAll(async () => server?.cleanup());

async function submit(role: string): Promise<string> {
  const res = await actAs(server, "alice")("POST", "/v1/activation-requests", { role, reason: REASON });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return String(res.body.id);
}

const approve = (who: string, id: string) =>
  actAs(server, who)("POST", `/v1/activation-requests/${id}/approvals`, { reason: "checked the incident ticket" });

describe("approvals (finding 13): two stages need two people", () => {
  it("one person in both stages' approver groups cannot approve both stages", async () => {
    const id = await submit("payments-admin");
    const first = await approve("dana", id);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body.stageIndex).toBe(1);

    const second = await approve("dana", id);
    expect(second.status).toBe(403);
    expect(second.body.error?.code).toBe("DISTINCT_APPROVERS_REQUIRED");
    const after = await actAs(server, "alice")("GET", `/v1/activation-requests/${id}`);
    expect(after.body.state).toBe("pending");
    expect(after.body.activatedAt).toBeNull();

    // Someone else completes the second stage.
    const third = await approve("eve", id);
    expect(third.status, JSON.stringify(third.body)).toBe(200);
    expect(third.body.state).toBe("active");

    const events = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?action=request.approved&limit=20",
      headers: { authorization: server.adminAuth },
    });
    const denied = events
      .json<{ items: { outcome: string; subject: string }[] }>()
      .items.filter((e) => e.subject === `request:${id}` && e.outcome === "denied");
    expect(denied).toHaveLength(1);
  });

  it("a policy that explicitly allows the same approver across stages lets one person approve both", async () => {
    const id = await submit("payments-admin-one-person");
    expect((await approve("dana", id)).status).toBe(200);
    const second = await approve("dana", id);
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(second.body.state).toBe("active");
  });

  it("the option is part of the policy as configuration: it round-trips and defaults to off", async () => {
    const exported = await server.app.inject({
      method: "GET",
      url: "/v1/config/export",
      headers: { authorization: server.adminAuth },
    });
    const yaml = exported.json<{ yaml: string }>().yaml;
    expect(yaml).toMatch(/sameApproverAcrossStages: true/);
    expect(yaml.match(/sameApproverAcrossStages/g)).toHaveLength(1);
    const diff = await server.app.inject({
      method: "POST",
      url: "/v1/config/diff",
      headers: { authorization: server.adminAuth },
      payload: { yaml },
    });
    expect(diff.statusCode, diff.body).toBe(200);
    expect(diff.json<{ changes: unknown[] }>().changes).toEqual([]);
  });
});
