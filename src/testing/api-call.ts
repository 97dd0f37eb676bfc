/**
 * One JSON call of a test server's API as a given user (an authorization header), answering the status, the raw
 * text (for failure messages and substring checks) and the parsed body.
 */
import type { TestServer } from "./server.js";

export type ApiReply = { status: number; text: string; body: Record<string, unknown> & { error?: { code: string } } };

export function apiCaller(server: () => TestServer) {
  return async (auth: string, method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", url: string, payload?: object) => {
    const res = await server().app.inject({ method, url, headers: { authorization: auth }, payload });
    return { status: res.statusCode, text: res.body, body: (res.body ? res.json() : {}) as ApiReply["body"] };
  };
}
