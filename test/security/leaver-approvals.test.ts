/**
 * Leavers among approvers (finding 37): an approval recorded by someone who is no longer an approver when the stage is
 * decided. A stage that needs two people (`count: 2`) counted every approval recorded on it, so an approver who
 * approved and then left the approver group (or was disabled) still made one of the two: the second approver
 * alone activated the role, though only one current approver had agreed. Through the HTTP API of a whole server;
 * the request's approvals read at the decision are those of people the stage still names.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/modules/authz/authz.types.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
const REASON = "rotate the payment keys after incident 4711";

beforeAll(async () => {
  server = await testServer("pglite");
  await seedUser(server, "alice", { groups: ["requesters"] });
  for (const name of ["mallory", "trent", "victor", "wendy", "xavier"])
    await seedUser(server, name, { groups: ["treasury"] });
  for (const name of ["vault-admin", "ledger-admin", "cash-admin"])
    await seedRole(server, {
      name,
      risk: "high",
      policy: {
        mfa: { required: false },
        approval: { stages: [{ name: "two of treasury", approvers: { groups: ["treasury"] }, count: 2 }] },
      },
      eligibleGroups: ["requesters"],
    });
});
afterAll(async () => server?.cleanup());

const admin = (method: "POST" | "DELETE" | "GET", url: string, payload?: unknown) =>
  server.app.inject({ method, url, headers: { authorization: server.adminAuth }, ...(payload ? { payload } : {}) });

async function submit(role: string): Promise<string> {
  const res = await actAs(server, "alice")("POST", "/v1/activation-requests", { role, reason: REASON });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return String(res.body.id);
}

const approve = (who: string, id: string) =>
  actAs(server, who)("POST", `/v1/activation-requests/${id}/approvals`, { reason: "checked the incident ticket" });

async function stateOf(id: string) {
  return (await actAs(server, "alice")("GET", `/v1/activation-requests/${id}`)).body as {
    state: string;
    activatedAt: string | null;
  };
}

describe("an approval does not outlive its approver's basis", () => {
  it("an approver removed from the approver group no longer counts towards a two-person stage", async () => {
    const id = await submit("vault-admin");
    const first = await approve("mallory", id);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect((await stateOf(id)).state).toBe("pending");

    expect((await admin("DELETE", "/v1/groups/treasury/members/mallory")).statusCode).toBe(200);
    // Nor may she decide again: she is no approver of the stage any more.
    const again = await approve("mallory", id);
    expect(again.status).toBe(403);
    expect(again.body.error?.code).toBe("NOT_AN_APPROVER");

    const second = await approve("trent", id);
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    const after = await stateOf(id);
    expect(after.state).toBe("pending"); // one current approver has agreed: not yet two
    expect(after.activatedAt).toBeNull();
    const recorded = await admin("GET", "/v1/audit/events?action=request.approval_recorded&limit=50");
    const trents = recorded
      .json<{ items: { subject: string; actor: string; details: { discounted?: string[] } }[] }>()
      .items.filter((e) => e.subject === `request:${id}` && e.details.discounted);
    expect(trents.map((e) => e.details.discounted)).toEqual([["mallory"]]);

    const third = await approve("victor", id);
    expect(third.status, JSON.stringify(third.body)).toBe(200);
    expect((await stateOf(id)).state).toBe("active");
  });

  it("a disabled approver's approval no longer counts either", async () => {
    const id = await submit("ledger-admin");
    expect((await approve("wendy", id)).status).toBe(200);
    const disabled = await admin("POST", "/v1/users/wendy/disable", { reason: "left the company" });
    expect(disabled.statusCode, disabled.body).toBe(200);

    expect((await approve("trent", id)).status).toBe(200);
    expect((await stateOf(id)).state).toBe("pending");
    expect((await approve("victor", id)).status).toBe(200);
    expect((await stateOf(id)).state).toBe("active");
  });

  it("an approver disabled after their credential was checked decides nothing", async () => {
    const id = await submit("cash-admin");
    expect((await approve("trent", id)).status).toBe(200);
    const row = await server.store.db
      .selectFrom("principals")
      .select("id")
      .where("name", "=", "xavier")
      .executeTakeFirstOrThrow();
    // Her bearer was verified (a cached session, a decision link opened before): the actor stands for her.
    const xavier: Actor = { kind: "principal", id: row.id, name: "xavier", principalKind: "user", roles: ["user"] };
    const disabled = await admin("POST", "/v1/users/xavier/disable", { reason: "left the company" });
    expect(disabled.statusCode, disabled.body).toBe(200);

    const context = { correlationId: "leaver-window", sourceIp: null, userAgent: null };
    await expect(
      server.requests.decide(xavier, id, "approve", "checked the incident ticket", context),
    ).rejects.toMatchObject({ code: "NOT_AN_APPROVER" });
    expect((await stateOf(id)).state).toBe("pending");
    const refused = await admin("GET", "/v1/audit/events?action=request.approved&limit=50");
    const hers = refused
      .json<{ items: { subject: string; actor: string; outcome: string }[] }>()
      .items.filter((e) => e.subject === `request:${id}`);
    expect(hers.map((e) => [e.actor, e.outcome])).toEqual([["xavier", "denied"]]);
  });
});
