/**
 * Four-eyes bypassed through the directory: a configuration file that adds someone to a group eligible for a
 * high-risk role (or to the group that approves it) widens access and is held for a second admin. The same
 * change through `stint groups add` (`POST /v1/groups/{name}/members`) must be held too, or one admin alone gives
 * anyone (a colleague, an account they just made) the high-risk role or the right to approve it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";

const BASE = `apiVersion: stint/v1
groups:
  - { name: dba, members: [] }
  - { name: gatekeepers, members: [carol] }
policies:
  - name: strict
    approval:
      stages:
        - approvers: { groups: [gatekeepers] }
targets:
  - { name: vault-db, kind: internal }
roles:
  - { name: crown-jewels, target: vault-db, policy: strict, risk: high }
eligibility:
  - { role: crown-jewels, groups: [dba] }
`;

describe("four-eyes on group membership through the directory", () => {
  let server: TestServer;
  let admin2: string;

  async function call(auth: string, method: "GET" | "POST", url: string, payload?: unknown) {
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: res.json() as Record<string, unknown> & { error?: { code: string } } };
  }

  const membersOf = async (group: string) =>
    ((await call(server.adminAuth, "GET", "/v1/groups")).body.items as { name: string; members: string[] }[]).find(
      (g) => g.name === group,
    )!.members;

  beforeAll(async () => {
    server = await testServer("pglite", { env: { STINT_FOUR_EYES_TIERS: "high,critical" } });
    for (const name of ["mallory", "carol", "eve"]) await server.userWithRoles(name, ["user"]);
    // The first admin alone builds the catalog (four-eyes waived); then a second admin exists.
    const base = await call(server.adminAuth, "POST", "/v1/config/apply", { yaml: BASE });
    expect(base.body, JSON.stringify(base.body)).toMatchObject({ applied: true });
    admin2 = await server.userWithRoles("admin2", ["admin"]);
  });

  afterAll(async () => server?.cleanup());

  it("a file adding a member to a group eligible for a high-risk role is held (the rule the API must follow)", async () => {
    const yaml = BASE.replace("{ name: dba, members: [] }", "{ name: dba, members: [mallory] }");
    const res = await call(server.adminAuth, "POST", "/v1/config/apply", { yaml: yaml.split("policies:")[0] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ applied: false, changeRequest: { status: "pending", tier: "high" } });
    expect(await membersOf("dba")).toEqual([]);
    const id = (res.body.changeRequest as { id: string }).id;
    expect(
      (await call(server.adminAuth, "POST", `/v1/change-requests/${id}/deny`, { reason: "not this way" })).status,
    ).toBe(200);
  });

  it("so is `stint groups add` of the same member: held, then applied by a second admin", async () => {
    const res = await call(server.adminAuth, "POST", "/v1/groups/dba/members", { principal: "mallory" });
    expect(await membersOf("dba")).toEqual([]);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body).toMatchObject({ changeRequest: { status: "pending", tier: "high" } });
    const mine = await call(await server.login("mallory"), "GET", "/v1/me/roles");
    expect((mine.body.items as { role: string }[]).map((r) => r.role)).toEqual([]);

    const id = (res.body.changeRequest as { id: string }).id;
    const own = await call(server.adminAuth, "POST", `/v1/change-requests/${id}/approve`, {});
    expect(own.body.error?.code).toBe("CHANGE_REQUEST_SELF_APPROVAL");
    const approved = await call(admin2, "POST", `/v1/change-requests/${id}/approve`, {});
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(await membersOf("dba")).toEqual(["mallory"]);
  });

  it("and adding an approver of a high-risk role's policy", async () => {
    const res = await call(server.adminAuth, "POST", "/v1/groups/gatekeepers/members", { principal: "eve" });
    expect(await membersOf("gatekeepers")).toEqual(["carol"]);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  });

  it("a group that reaches no covered role changes at once, and removing a member is never held", async () => {
    const made = await call(server.adminAuth, "POST", "/v1/groups", { name: "book-club" });
    expect(made.status).toBe(201);
    const add = await call(server.adminAuth, "POST", "/v1/groups/book-club/members", { principal: "eve" });
    expect(add.status, JSON.stringify(add.body)).toBe(200);
    expect(await membersOf("book-club")).toEqual(["eve"]);
    const res = await server.app.inject({
      method: "DELETE",
      url: "/v1/groups/dba/members/mallory",
      headers: { authorization: server.adminAuth },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(await membersOf("dba")).toEqual([]);
  });
});
