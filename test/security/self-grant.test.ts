/**
 * Owners granting themselves roles (Teleport GHSA-76cc-p55w-63g3: an owner of an access list could add
 * themselves and so grant themselves the roles it carries). In Stint the people who author the catalog
 * (`security`) and the directory (`admin`) must not be able to make themselves eligible, widen their own
 * eligibility, join a group that carries eligibility, or approve their own request, by any path: the API,
 * configuration as code, or group membership. Another person has to make that change.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actAs, seedGroupMember, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
let secAuth: string;
let adminTwoAuth: string;

const REASON = "rotate the payment keys after incident 4711";

async function call(auth: string, method: "GET" | "POST" | "PUT" | "DELETE", url: string, payload?: unknown) {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: auth },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> & { error?: { code: string } } };
}

async function eligibleRoles(name: string): Promise<string[]> {
  const res = await actAs(server, name)("GET", "/v1/me/roles");
  return (res.body.items as { role: string }[]).map((r) => r.role).sort();
}

beforeAll(async () => {
  server = await testServer("pglite");
  secAuth = await server.userWithRoles("sec1", ["security", "user"]);
  adminTwoAuth = await server.userWithRoles("admin2", ["admin", "user"]);
  await seedUser(server, "alice");
  await seedGroupMember(server, "oncall", "sec1");
  await seedGroupMember(server, "approvers", "sec1");
  await seedGroupMember(server, "dba", "alice");
  const policy = { mfa: { required: false }, approval: { stages: [{ approvers: { groups: ["approvers"] } }] } };
  await seedRole(server, { name: "prod-admin", risk: "high", policy });
  await seedRole(server, { name: "prod-reader", risk: "medium", policy, eligibleGroups: ["dba"] });
  await seedRole(server, { name: "prod-ops", risk: "medium", policy });
  // sec1 holds an eligibility someone else granted, ending soon.
  const grant = await call(server.adminAuth, "POST", "/v1/eligibilities", {
    role: "prod-ops",
    principal: "sec1",
    endsAt: new Date(Date.now() + 3600_000).toISOString(),
  });
  expect(grant.status, JSON.stringify(grant.body)).toBe(201);
});
afterAll(async () => server?.cleanup());

describe("owners granting themselves roles (Teleport GHSA-76cc-p55w-63g3)", () => {
  it("a security user cannot make themselves eligible through the API", async () => {
    const res = await call(secAuth, "POST", "/v1/eligibilities", { role: "prod-admin", principal: "sec1" });
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe("SELF_GRANT");
    expect(await eligibleRoles("sec1")).toEqual(["prod-ops"]);
  });

  it("nor through a group they belong to", async () => {
    const res = await call(secAuth, "POST", "/v1/eligibilities", { role: "prod-admin", group: "oncall" });
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe("SELF_GRANT");
    expect(await eligibleRoles("sec1")).toEqual(["prod-ops"]);
  });

  it("nor widen an eligibility someone else gave them", async () => {
    const list = await call(secAuth, "GET", "/v1/eligibilities?principal=sec1");
    const mine = (list.body.items as { id: string; role: string }[]).find((e) => e.role === "prod-ops")!;
    const res = await call(secAuth, "PUT", `/v1/eligibilities/${mine.id}`, { endsAt: null });
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe("SELF_GRANT");
    const after = await call(secAuth, "GET", `/v1/eligibilities/${mine.id}`);
    expect(after.body.endsAt).not.toBeNull();
    // Narrowing one's own access is fine.
    const narrower = await call(secAuth, "PUT", `/v1/eligibilities/${mine.id}`, {
      endsAt: new Date(Date.now() + 1800_000).toISOString(),
    });
    expect(narrower.status, JSON.stringify(narrower.body)).toBe(200);
  });

  it("nor through configuration as code, directly or through a group", async () => {
    for (const entry of ["users: [sec1]", "groups: [oncall]"]) {
      const yaml = `apiVersion: stint/v1\neligibility:\n  - role: prod-admin\n    ${entry}\n`;
      const res = await call(secAuth, "POST", "/v1/config/apply", { yaml });
      expect(res.status, `${entry}: ${JSON.stringify(res.body)}`).toBe(403);
      expect(res.body.error?.code).toBe("SELF_GRANT");
    }
    expect(await eligibleRoles("sec1")).toEqual(["prod-ops"]);
  });

  it("nor change the rules of a role they are eligible for: its policy or its entitlement, by API or by file", async () => {
    const policy = await call(secAuth, "GET", "/v1/policies/prod-ops-policy");
    expect(policy.status).toBe(200);
    const weaker = await call(secAuth, "PUT", "/v1/policies/prod-ops-policy", {
      name: "prod-ops-policy",
      spec: { mfa: { required: false } },
    });
    expect(weaker.status, JSON.stringify(weaker.body)).toBe(403);
    expect(weaker.body.error?.code).toBe("SELF_GRANT");
    const role = await call(secAuth, "GET", "/v1/roles/prod-ops");
    const { name, target, policy: rolePolicy, risk, owners } = role.body as Record<string, unknown>;
    const stronger = await call(secAuth, "PUT", "/v1/roles/prod-ops", {
      name,
      target,
      policy: rolePolicy,
      risk,
      owners,
      entitlement: { scope: "everything" },
    });
    expect(stronger.status, JSON.stringify(stronger.body)).toBe(403);
    expect(stronger.body.error?.code).toBe("SELF_GRANT");
    const file = `apiVersion: stint/v1\npolicies:\n  - name: prod-ops-policy\n    mfa: { required: false }\n`;
    const applied = await call(secAuth, "POST", "/v1/config/apply", { yaml: file });
    expect(applied.status, JSON.stringify(applied.body)).toBe(403);
    expect(applied.body.error?.code).toBe("SELF_GRANT");
    // The approval the policy asks for still stands.
    const submitted = await actAs(server, "sec1")("POST", "/v1/activation-requests", {
      role: "prod-ops",
      reason: REASON,
    });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    expect(submitted.body.state).toBe("pending");
    // Someone who is not eligible may change it.
    const byOther = await call(adminTwoAuth, "POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1\npolicies:\n  - name: prod-ops-policy\n    mfa: { required: false }\n    approval: { stages: [{ approvers: { groups: [approvers] }, count: 1 }] }\n    maxExtensions: 1\n`,
    });
    expect(byOther.status, JSON.stringify(byOther.body)).toBe(200);
  });

  it("an administrator cannot join a group that carries eligibility, by API or by file", async () => {
    const join = await call(adminTwoAuth, "POST", "/v1/groups/dba/members", { principal: "admin2" });
    expect(join.status).toBe(403);
    expect(join.body.error?.code).toBe("SELF_GRANT");
    const exported = await call(adminTwoAuth, "GET", "/v1/config/export");
    const yaml = String(exported.body.yaml).replace(/(- name: dba\n(?:.*\n)*?\s+members:\s*\[)/, "$1admin2, ");
    expect(yaml).toMatch(/admin2, alice/);
    const apply = await call(adminTwoAuth, "POST", "/v1/config/apply", { yaml });
    expect(apply.status, JSON.stringify(apply.body)).toBe(403);
    expect(apply.body.error?.code).toBe("SELF_GRANT");
    expect(await eligibleRoles("admin2")).toEqual([]);
  });

  it("someone else may grant it, and the owner still cannot approve their own request", async () => {
    const grant = await call(adminTwoAuth, "POST", "/v1/eligibilities", { role: "prod-admin", principal: "sec1" });
    expect(grant.status, JSON.stringify(grant.body)).toBe(201);
    const submitted = await actAs(server, "sec1")("POST", "/v1/activation-requests", {
      role: "prod-admin",
      reason: REASON,
    });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    const approve = await call(secAuth, "POST", `/v1/activation-requests/${String(submitted.body.id)}/approvals`, {
      reason: "self",
    });
    expect(approve.status).toBe(403);
    expect(approve.body.error?.code).toBe("SELF_APPROVAL");
    expect(
      (await actAs(server, "sec1")("GET", `/v1/activation-requests/${String(submitted.body.id)}`)).body.state,
    ).toBe("pending");
  });
});
