/**
 * Class: an administrator declaring a role's risk tier below what it grants, to escape the checks the tier drives.
 *
 * Four-eyes covers changes to access at `fourEyes.tiers` (high and critical by default), a policy that approves on
 * timeout is only for low-risk roles, and reviews remove undecided high-risk access by default: all keyed on the
 * tier the role's author writes. One admin alone declared `risk: low` on a role granting SUPERUSER on the
 * production database (or using a break-glass policy) and made anyone eligible for it at once, no second admin
 * asked. The tier now has a floor computed from the entitlement, the target's labels and the policy
 * (risk-floor.rules.ts): a declared tier below an entitlement's floor is refused, by file and by the API, and
 * four-eyes weighs every role at the higher of the two (a break-glass role is critical).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";

const BASE = `apiVersion: stint/v1
policies:
  - name: quick
    approval:
      stages:
        - { approvers: { groups: [] , users: [carol] }, timeout: 1h, onTimeout: approve }
  - { name: glass, breakGlass: true }
targets:
  - name: orders-db
    kind: postgres
    address: postgres://stint@192.0.2.10:5432/orders
    labels: { env: production }
`;

const lowRole = (entitlement: string, policy = "quick") => `${BASE}roles:
  - { name: quick-fix, target: orders-db, policy: ${policy}, risk: low, entitlement: ${entitlement} }
eligibility:
  - { role: quick-fix, users: [mallory] }
`;

let server: TestServer;

async function call(method: "GET" | "POST", url: string, payload?: unknown) {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: server.adminAuth },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> & { error?: { code: string } } };
}

const eligibleRoles = async () =>
  ((await call("GET", "/v1/eligibilities")).body.items as { role: string }[]).map((e) => e.role);

beforeAll(async () => {
  server = await testServer("pglite", {
    env: { STINT_FOUR_EYES_TIERS: "high,critical", STINT_ALLOW_NETWORKS: "192.0.2.0/24" },
  });
  for (const name of ["mallory", "carol"]) await server.userWithRoles(name, ["user"]);
  await server.userWithRoles("admin2", ["admin"]); // four-eyes is not waived: a second admin exists
});
afterAll(async () => server?.cleanup());

describe("a role's risk tier has a floor from what it grants", () => {
  it("a 'low' role granting SUPERUSER on production is refused, not applied past four-eyes", async () => {
    const res = await call("POST", "/v1/config/apply", { yaml: lowRole("{ attribute: SUPERUSER }") });
    expect(res.body).not.toMatchObject({ applied: true });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(JSON.stringify(res.body)).toContain("below critical");
    expect(await eligibleRoles()).not.toContain("quick-fix");
  });

  it("a 'low' role under a break-glass policy counts as critical: making someone eligible is held", async () => {
    const res = await call("POST", "/v1/config/apply", { yaml: lowRole("{ role: app_reader }", "glass") });
    expect(res.body, JSON.stringify(res.body)).toMatchObject({ applied: false, changeRequest: { tier: "critical" } });
    expect(await eligibleRoles()).not.toContain("quick-fix");
    const id = (res.body.changeRequest as { id: string }).id;
    expect((await call("POST", `/v1/change-requests/${id}/deny`, { reason: "not this way" })).status).toBe(200);
  });

  it("and the same role through the API (POST /v1/roles)", async () => {
    expect((await call("POST", "/v1/config/apply", { yaml: BASE })).body).toMatchObject({ applied: true });
    const res = await call("POST", "/v1/roles", {
      name: "quick-fix",
      target: "orders-db",
      policy: "quick",
      risk: "medium",
      entitlement: { attribute: "SUPERUSER" },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(JSON.stringify(res.body)).toContain("below critical");
  });

  it("declared at its floor, the same grant is held for a second admin; a plain reader may stay low", async () => {
    const critical = lowRole("{ attribute: SUPERUSER }", "glass").replace("risk: low", "risk: critical");
    const held = await call("POST", "/v1/config/apply", { yaml: critical });
    expect(held.body, JSON.stringify(held.body)).toMatchObject({ applied: false, changeRequest: { tier: "critical" } });
    const id = (held.body.changeRequest as { id: string }).id;
    expect((await call("POST", `/v1/change-requests/${id}/deny`, { reason: "not this way" })).status).toBe(200);
    const reader = await call("POST", "/v1/config/apply", { yaml: lowRole("{ role: app_reader }") });
    expect(reader.body, JSON.stringify(reader.body)).toMatchObject({ applied: true });
    expect(await eligibleRoles()).toContain("quick-fix");
  });
});
