/**
 * Class: a leaver's held change outliving them (security review of the identity lifecycle).
 *
 * A widening file at a four-eyes tier is kept as a change request and applied, as its author, when a second admin
 * approves it. An author who left (disabled, by an administrator or SCIM) or lost the roles that write the catalog
 * must not have their file applied by a colleague's approval: it turns stale and nothing changes. This pins the
 * defence (`change-requests.service.ts` reads the author's account in the approval's transaction).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiCaller } from "../../src/testing/api-call.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { wideningFile } from "./support.js";

let server: TestServer;
const call = apiCaller(() => server);

async function eligibleRoles(): Promise<string[]> {
  const items = (await call(server.adminAuth, "GET", "/v1/eligibilities")).body.items as { role: string }[];
  return items.map((e) => e.role);
}

/** The author holds a widening file; the leaver step happens; another admin's approval applies nothing. */
async function heldThenLeft(author: string, role: string, leave: () => Promise<{ status: number }>) {
  const auth = await server.login(author);
  const held = await call(auth, "POST", "/v1/config/apply", { yaml: wideningFile(role) });
  expect(held.body, held.text).toMatchObject({ applied: false, changeRequest: { tier: "high" } });
  const id = (held.body.changeRequest as { id: string }).id;
  expect((await leave()).status).toBe(200);
  const approved = await call(server.adminAuth, "POST", `/v1/change-requests/${id}/approve`, {});
  expect(approved.body.error?.code, approved.text).toBe("CHANGE_REQUEST_STALE");
  expect(await eligibleRoles()).not.toContain(role);
}

beforeAll(async () => {
  server = await testServer("pglite", { env: { STINT_FOUR_EYES_TIERS: "high,critical" } });
  await server.userWithRoles("mallory", ["user"]);
  // Both authors are admins before either leaves: the second's role waits for another approver (finding 81), and
  // the first approves it, which a leaver could no longer do.
  for (const author of ["leaver", "mover"]) await server.userWithRoles(author, ["admin"]);
}, 60_000);
afterAll(async () => server?.cleanup());

describe("a leaver's held change is not applied by a colleague's approval", () => {
  it("the author disabled after filing it: the approval finds it stale", async () => {
    await heldThenLeft("leaver", "payroll-admin", () =>
      call(server.adminAuth, "POST", "/v1/users/leaver/disable", { reason: "left the company" }),
    );
  });

  it("the author demoted to user after filing it: the approval finds it stale", async () => {
    await heldThenLeft("mover", "ledger-admin", () =>
      call(server.adminAuth, "PATCH", "/v1/users/mover", { platformRoles: ["user"] }),
    );
  });
});
