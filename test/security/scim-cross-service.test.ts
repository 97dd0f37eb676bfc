/**
 * Two SCIM services (the employees' identity provider and a contractor IdP): each sees and changes only the users
 * and groups it provisioned. The contractor IdP's token must not add its own user to the employees' group (whose
 * members may be eligible for a high-risk role), disable or edit the employees' administrators, nor even see them;
 * and a group of its own cannot take the employees' users as members.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scimClient, type ScimCall } from "../../src/testing/scim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
let work: string;
let employees: ScimCall;
let contractors: ScimCall;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-scim-cross-"));
  await writeFile(path.join(work, "stint.yaml"), "scimServices: [okta-employees, contractor-idp]\n");
  server = await testServer("pglite", { env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml") } });
  employees = await scimClient(server, "okta-employees");
  contractors = await scimClient(server, "contractor-idp");
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await rm(work, { recursive: true, force: true });
});

const user = (userName: string) => ({
  schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
  userName,
  active: true,
});
const patchOp = (op: string, path: string, value: unknown) => ({
  schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
  Operations: [{ op, path, value }],
});
const filter = (expression: string) => `?filter=${encodeURIComponent(expression)}`;

describe("two SCIM services", () => {
  it("keep to their own users and groups", async () => {
    const admin = await employees("POST", "/Users", user("root.admin@corp.example"));
    expect(admin.status, JSON.stringify(admin.body)).toBe(201);
    const adminId = String(admin.body.id);
    const group = await employees("POST", "/Groups", { displayName: "Payroll Admins", members: [{ value: adminId }] });
    expect(group.status, JSON.stringify(group.body)).toBe(201);
    const groupId = String(group.body.id);
    const own = await contractors("POST", "/Users", user("mallory@contractor.example"));
    expect(own.status, JSON.stringify(own.body)).toBe(201);
    const mallory = String(own.body.id);

    // The contractor IdP joins the employees' privileged group, disables, edits and deletes their administrator.
    expect(
      (await contractors("PATCH", `/Groups/${groupId}`, patchOp("add", "members", [{ value: mallory }]))).status,
    ).toBe(404);
    expect((await contractors("PATCH", `/Groups/${groupId}`, patchOp("replace", "members", []))).status).toBe(404);
    expect((await contractors("DELETE", `/Groups/${groupId}`)).status).toBe(404);
    expect((await contractors("PATCH", `/Users/${adminId}`, patchOp("replace", "active", false))).status).toBe(404);
    expect(
      (await contractors("PUT", `/Users/${adminId}`, { ...user("root.admin@corp.example"), active: false })).status,
    ).toBe(404);
    expect((await contractors("DELETE", `/Users/${adminId}`)).status).toBe(404);
    // A group of its own cannot take the employees' administrator either.
    const mixed = await contractors("POST", "/Groups", { displayName: "Contractors", members: [{ value: adminId }] });
    expect(mixed.status, JSON.stringify(mixed.body)).toBe(400);

    // Nor does it see them: by id, listed, or filtered.
    expect((await contractors("GET", `/Users/${adminId}`)).status).toBe(404);
    expect((await contractors("GET", `/Groups/${groupId}`)).status).toBe(404);
    const users = await contractors("GET", "/Users");
    expect((users.body.Resources ?? []).map((r) => r.id)).toEqual([mallory]);
    expect(
      (await contractors("GET", `/Users${filter('userName eq "root.admin@corp.example"')}`)).body.totalResults,
    ).toBe(0);
    expect((await contractors("GET", `/Groups${filter('displayName eq "Payroll Admins"')}`)).body.totalResults).toBe(0);
    expect((await employees("GET", `/Users/${mallory}`)).status).toBe(404);

    // The employees' side is as it was, and its own service still manages it.
    const after = await employees("GET", `/Groups/${groupId}`);
    expect((after.body.members as { value: string }[]).map((m) => m.value)).toEqual([adminId]);
    const row = await server.store.db
      .selectFrom("principals")
      .select(["status", "source"])
      .where("id", "=", adminId)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ status: "active", source: "scim" });
    expect(
      (await employees("PATCH", `/Groups/${groupId}`, patchOp("add", "members", [{ value: mallory }]))).status,
    ).toBe(400);
    expect((await employees("PATCH", `/Users/${adminId}`, patchOp("replace", "displayName", "Root"))).status).toBe(200);
  });

  it("leave a group from before groups recorded their service to neither (read-only to SCIM, migration 0043)", async () => {
    const group = await employees("POST", "/Groups", { displayName: "Old Group" });
    expect(group.status).toBe(201);
    const id = String(group.body.id);
    await server.store.db.updateTable("groups").set({ provisioned_by: null }).where("id", "=", id).execute();
    for (const client of [employees, contractors]) {
      expect((await client("GET", `/Groups/${id}`)).status).toBe(404);
      expect((await client("PATCH", `/Groups/${id}`, patchOp("add", "members", []))).status).toBe(404);
    }
  });
});
