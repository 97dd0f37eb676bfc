/**
 * `meta.location` is the resource's URI (RFC 7643 §3.1): absolute, from the configured public URL, as Entra ID and
 * Okta expect; a request's Host header (which anyone can forge) does not change it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../testing/server.js";

const PUBLIC_URL = "https://stint.example.com/";
const BASE = "https://stint.example.com/scim/v2";
const SERVICE = "entra-provisioning";

interface Resource {
  id: string;
  meta: { location: string };
}

let server: TestServer;
let token: string;

async function scim(method: "GET" | "POST", url: string, payload?: unknown, host = "evil.example.net") {
  const res = await server.app.inject({
    method,
    url: `/scim/v2${url}`,
    headers: { host, authorization: `Bearer ${token}`, "content-type": "application/scim+json" },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });
  return {
    status: res.statusCode,
    location: res.headers.location,
    body: res.json<Resource & { Resources: Resource[] }>(),
  };
}

beforeAll(async () => {
  server = await testServer("pglite", { env: { STINT_PUBLIC_URL: PUBLIC_URL, STINT_SCIM_SERVICES: SERVICE } });
  const admin = (url: string, payload: object) =>
    server.app.inject({ method: "POST", url, headers: { authorization: server.adminAuth }, payload });
  expect((await admin("/v1/users", { name: SERVICE, kind: "service" })).statusCode).toBe(201);
  token = (await admin("/v1/tokens", { name: "scim", principal: SERVICE, expiresIn: "1d" })).json<{ token: string }>()
    .token;
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
});

describe("SCIM meta.location", () => {
  it("is the absolute URI under the public URL for users, groups, lists and a 201's Location", async () => {
    const user = await scim("POST", "/Users", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      userName: "ada@corp.example",
      active: true,
    });
    expect(user.status).toBe(201);
    const userUri = `${BASE}/Users/${user.body.id}`;
    expect(user.body.meta.location).toBe(userUri);
    expect(user.location).toBe(userUri);
    expect((await scim("GET", `/Users/${user.body.id}`)).body.meta.location).toBe(userUri);
    const users = await scim("GET", "/Users");
    expect(users.body.Resources.map((r) => r.meta.location)).toEqual([userUri]);

    const group = await scim("POST", "/Groups", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"],
      displayName: "Engineers",
      members: [{ value: user.body.id }],
    });
    expect(group.status).toBe(201);
    const groupUri = `${BASE}/Groups/${group.body.id}`;
    expect(group.body.meta.location).toBe(groupUri);
    expect(group.location).toBe(groupUri);
    expect((await scim("GET", `/Groups/${group.body.id}`, undefined, "stint.example.com")).body.meta.location).toBe(
      groupUri,
    );
    const groups = await scim("GET", "/Groups");
    expect(groups.body.Resources.map((r) => r.meta.location)).toEqual([groupUri]);
  });
});
