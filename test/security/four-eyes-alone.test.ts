/**
 * Class: one admin waiving four-eyes by making themselves alone for a moment.
 *
 * `fourEyes.alone: apply` (the default) applies a widening file at once while no other active admin or security
 * user exists, so a first admin can build the catalog. "Alone" was judged at the moment of the apply: an admin
 * disabled the only other admin, applied a file making a colleague eligible for a high-risk role (waived), and
 * enabled the other admin again. An approver disabled in the last 24 hours now still counts: the file is held.
 * Likewise taking the admin role from the other admin (finding 76): one demoted in the last 24 hours still counts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { wideningFile } from "./support.js";

const FILE = wideningFile();

/** Another widening file (another role), so each case is judged on its own. */
const SECOND_FILE = wideningFile("ledger-admin");

let server: TestServer;

async function call(method: "POST" | "GET" | "PATCH", url: string, payload?: unknown) {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: server.adminAuth },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
}

beforeAll(async () => {
  server = await testServer("pglite", { env: { STINT_FOUR_EYES_TIERS: "high,critical" } });
  await server.userWithRoles("mallory", ["user"]);
  await server.userWithRoles("admin2", ["admin"]);
});
afterAll(async () => server?.cleanup());

describe("fourEyes.alone: apply cannot be had by disabling the other admin", () => {
  it("the only other admin disabled a moment ago still counts: the widening file is held, not waived", async () => {
    const disabled = await call("POST", "/v1/users/admin2/disable", { reason: "on leave, back tomorrow" });
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    const res = await call("POST", "/v1/config/apply", { yaml: FILE });
    expect(res.body, JSON.stringify(res.body)).toMatchObject({ applied: false, changeRequest: { tier: "high" } });
    const eligible = (await call("GET", "/v1/eligibilities")).body.items as { role: string }[];
    expect(eligible.map((e) => e.role)).not.toContain("payroll-admin");
    expect((await call("POST", "/v1/users/admin2/enable")).status).toBe(200);
  });
});

describe("fourEyes.alone: apply cannot be had by demoting the other admin", () => {
  it("the only other admin demoted a moment ago still counts: the widening file is held, not waived", async () => {
    const demoted = await call("PATCH", "/v1/users/admin2", { platformRoles: ["user"] });
    expect(demoted.body, JSON.stringify(demoted.body)).toMatchObject({ platformRoles: ["user"] });
    const res = await call("POST", "/v1/config/apply", { yaml: SECOND_FILE });
    expect(res.body, JSON.stringify(res.body)).toMatchObject({ applied: false, changeRequest: { tier: "high" } });
    const eligible = (await call("GET", "/v1/eligibilities")).body.items as { role: string }[];
    expect(eligible.map((e) => e.role)).not.toContain("ledger-admin");
    // Giving the role back is itself held now (finding 81): admin2, demoted a moment ago, still counts.
    const restored = await call("PATCH", "/v1/users/admin2", { platformRoles: ["admin"] });
    expect(restored.status, JSON.stringify(restored.body)).toBe(202);
  });
});
