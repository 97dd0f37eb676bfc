/**
 * A SCIM client for tests: one service identity (created, with an API token, through the admin API) calling
 * `/scim/v2` of a test server the way an identity provider does.
 */
import { expect } from "vitest";
import type { TestServer } from "./server.js";

export interface ScimReply {
  status: number;
  body: Record<string, unknown> & { Resources?: Record<string, unknown>[]; totalResults?: number; scimType?: string };
}

export type ScimCall = (
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
  url: string,
  payload?: unknown,
) => Promise<ScimReply>;

/** Creates the service identity `name` and an API token of it; the client calls SCIM with that token. */
export async function scimClient(server: TestServer, name: string): Promise<ScimCall> {
  const admin = (url: string, payload: object) =>
    server.app.inject({ method: "POST", url, headers: { authorization: server.adminAuth }, payload });
  const created = await admin("/v1/users", { name, kind: "service" });
  expect(created.statusCode, created.body).toBe(201);
  const issued = await admin("/v1/tokens", { name: `${name}-scim`, principal: name, expiresIn: "1d" });
  expect(issued.statusCode, issued.body).toBe(201);
  const token = issued.json<{ token: string }>().token;
  return async (method, url, payload) => {
    const res = await server.app.inject({
      method,
      url: `/scim/v2${url}`,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/scim+json" },
      ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
    });
    return { status: res.statusCode, body: (res.body ? res.json() : {}) as ScimReply["body"] };
  };
}
