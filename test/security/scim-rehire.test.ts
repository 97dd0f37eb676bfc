/**
 * A leaver deleted through SCIM and "re-hired" under the same userName: the identity provider's POST must not hand
 * the new person the old account (its eligibility, its history, its audit identity), nor bring the old account
 * back to life. DELETE keeps the account disabled and hidden from SCIM; a POST of the same userName is refused
 * (409 uniqueness) rather than adopting it, and the old account stays disabled with nothing active.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedRole } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const SERVICE = "hr-provisioning";
let server: TestServer;
let work: string;
let token = "";

const admin = (method: "POST" | "GET", url: string, payload?: object) =>
  server.app.inject({ method, url, headers: { authorization: server.adminAuth }, ...(payload ? { payload } : {}) });

async function scim(method: "GET" | "POST" | "DELETE", url: string, payload?: unknown) {
  const res = await server.app.inject({
    method,
    url: `/scim/v2${url}`,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/scim+json" },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });
  return { status: res.statusCode, body: (res.body ? res.json() : {}) as Record<string, unknown> };
}

const person = (externalId: string) => ({
  schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
  userName: "lee@corp.example",
  externalId,
  active: true,
});

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-scim-rehire-"));
  await writeFile(path.join(work, "stint.yaml"), `scimServices: [${SERVICE}]\n`);
  server = await testServer("pglite", { env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml") } });
  expect((await admin("POST", "/v1/users", { name: SERVICE, kind: "service" })).statusCode).toBe(201);
  token = (await admin("POST", "/v1/tokens", { name: "scim", principal: SERVICE, expiresIn: "1d" })).json<{
    token: string;
  }>().token;
  await seedRole(server, { name: "payroll-admin", risk: "high", policy: { mfa: { required: false } } });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await rm(work, { recursive: true, force: true });
});

describe("a SCIM DELETE and a POST of the same userName", () => {
  it("does not give the new person the deleted account or its eligibility", async () => {
    const first = await scim("POST", "/Users", person("emp-1001"));
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const old = await server.store.db
      .selectFrom("principals")
      .select(["id", "name"])
      .where("id", "=", String(first.body.id))
      .executeTakeFirstOrThrow();
    const eligible = await admin("POST", "/v1/eligibilities", { role: "payroll-admin", principal: old.name });
    expect(eligible.statusCode, eligible.body).toBe(201);

    expect((await scim("DELETE", `/Users/${old.id}`)).status).toBe(204);
    expect((await scim("GET", `/Users/${old.id}`)).status).toBe(404);

    // Someone else, hired later, gets the same userName from the identity provider.
    const again = await scim("POST", "/Users", person("emp-2002"));
    expect(again.status, JSON.stringify(again.body)).toBe(409);
    expect(again.body.scimType).toBe("uniqueness");
    const row = await server.store.db
      .selectFrom("principals")
      .select(["status", "source", "external_id"])
      .where("id", "=", old.id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ status: "disabled", source: "scim-deleted", external_id: "emp-1001" });
    const listed = await scim("GET", `/Users?filter=${encodeURIComponent('userName eq "lee@corp.example"')}`);
    expect(listed.body.totalResults).toBe(0);
  });
});
