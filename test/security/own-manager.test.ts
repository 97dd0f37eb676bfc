/**
 * Self-approval by proxy through the manager: a policy stage `approvers: { manager: true }` is decided by the
 * requester's manager. An administrator (who manages users) must not choose their own manager: naming an account
 * they just made (a person whose password they set, or a service whose API token they minted) would let them
 * approve their own requests. Nor may a service identity be anyone's manager (creating a user refuses it; changing
 * one must too): a token is no person to answer for an approval.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

const CATALOG = `apiVersion: stint/v1
groups:
  - { name: ledger-leads, members: [carol] }
policies:
  - name: leads-approve
    mfa: { required: false }
    approval:
      stages:
        - approvers: { groups: [ledger-leads] }
  - name: boss-approves
    mfa: { required: false }
    approval:
      stages:
        - approvers: { manager: true }
targets:
  - { name: ledger, kind: internal }
roles:
  - { name: ledger-admin, target: ledger, policy: boss-approves, risk: medium }
  - { name: ledger-viewer, target: ledger, policy: leads-approve, risk: medium }
eligibility:
  - { role: ledger-viewer, users: [admin2] }
`;
const REASON = "close the books for the quarter, ticket FIN-2231";

describe("choosing one's own approver (manager: true)", () => {
  let server: TestServer;
  let admin2: string;

  async function call(auth: string, method: "GET" | "POST" | "PATCH", url: string, payload?: unknown) {
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: res.json() as Record<string, unknown> & { error?: { code: string } } };
  }

  beforeAll(async () => {
    server = await testServer("pglite");
    await server.userWithRoles("carol", ["user"]);
    await server.userWithRoles("alice", ["user"]);
    admin2 = await server.userWithRoles("admin2", ["admin", "user"]);
    await server.userWithRoles("crony", ["user"]);
    const applied = await call(server.adminAuth, "POST", "/v1/config/apply", { yaml: CATALOG });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    for (const who of ["admin2", "alice"]) {
      const boss = await call(server.adminAuth, "PATCH", `/v1/users/${who}`, { manager: "carol" });
      expect(boss.status, JSON.stringify(boss.body)).toBe(200);
      const grant = await call(server.adminAuth, "POST", "/v1/eligibilities", { role: "ledger-admin", principal: who });
      expect(grant.status, JSON.stringify(grant.body)).toBe(201);
    }
  });

  afterAll(async () => server?.cleanup());

  it("an admin cannot make an account they created their own manager and approve their own request with it", async () => {
    const puppet = await call(admin2, "POST", "/v1/users", { name: "puppet", password: passwordFor("puppet") });
    expect(puppet.status, JSON.stringify(puppet.body)).toBe(201);
    const mine = await call(admin2, "PATCH", "/v1/users/admin2", { manager: "puppet" });
    const request = await call(admin2, "POST", "/v1/activation-requests", { role: "ledger-admin", reason: REASON });
    expect(request.status, JSON.stringify(request.body)).toBe(201);
    const approval = await call(
      await server.login("puppet"),
      "POST",
      `/v1/activation-requests/${String(request.body.id)}/approvals`,
      {},
    );
    const state = (await call(admin2, "GET", `/v1/activation-requests/${String(request.body.id)}`)).body.state;
    expect(state).toBe("pending");
    // puppet is nobody's approver here: the request is none of its business.
    expect(approval.status).toBe(404);
    expect(mine.status, JSON.stringify(mine.body)).toBe(403);
    expect(mine.body.error?.code).toBe("SELF_GRANT");
    expect((await call(server.adminAuth, "GET", "/v1/users/admin2")).body.manager).toBe("carol");
    // Someone else may change it.
    const byOther = await call(server.adminAuth, "PATCH", "/v1/users/admin2", { manager: "alice" });
    expect(byOther.status, JSON.stringify(byOther.body)).toBe(200);
  });

  it("nor add an account to the group that approves a role they are eligible for, and approve with it", async () => {
    const join = await call(admin2, "POST", "/v1/groups/ledger-leads/members", { principal: "crony" });
    const request = await call(admin2, "POST", "/v1/activation-requests", { role: "ledger-viewer", reason: REASON });
    expect(request.status, JSON.stringify(request.body)).toBe(201);
    const url = `/v1/activation-requests/${String(request.body.id)}`;
    await call(await server.login("crony"), "POST", `${url}/approvals`, {});
    expect((await call(admin2, "GET", url)).body.state).toBe("pending");
    expect(join.status, JSON.stringify(join.body)).toBe(403);
    expect(join.body.error?.code).toBe("SELF_GRANT");
    // Nor by file; someone who is not eligible for ledger-viewer may.
    const yaml = "apiVersion: stint/v1\ngroups:\n  - { name: ledger-leads, members: [carol, crony] }\n";
    const byFile = await call(admin2, "POST", "/v1/config/apply", { yaml });
    expect(byFile.body.error?.code, JSON.stringify(byFile.body)).toBe("SELF_GRANT");
    const byOther = await call(server.adminAuth, "POST", "/v1/groups/ledger-leads/members", { principal: "crony" });
    expect(byOther.status, JSON.stringify(byOther.body)).toBe(200);
  });

  it("a service identity is nobody's manager, on a change as on creation", async () => {
    const bot = await call(admin2, "POST", "/v1/users", { name: "ledger-bot", kind: "service" });
    expect(bot.status, JSON.stringify(bot.body)).toBe(201);
    const created = await call(admin2, "POST", "/v1/users", { name: "bob", manager: "ledger-bot" });
    expect(created.status).toBe(400);
    const changed = await call(admin2, "PATCH", "/v1/users/alice", { manager: "ledger-bot" });
    expect(changed.status, JSON.stringify(changed.body)).toBe(400);
    expect(changed.body.error?.code).toBe("VALIDATION_FAILED");
    expect((await call(server.adminAuth, "GET", "/v1/users/alice")).body.manager).toBe("carol");
  });
});
