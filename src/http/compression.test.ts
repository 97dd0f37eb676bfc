/**
 * Issue 17, finding 3 (API half): JSON answers of 1 KiB or more go out compressed when the client accepts
 * brotli or gzip, and as they are when it does not; small answers are never compressed; the check API (the
 * hottest route) carries no compression hook at all; answers that carry secrets (tokens, secret values) are
 * never compressed (BREACH); a compressed request body is not inflated.
 */
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HTTPMethods } from "fastify";
import { ADMIN_PASSWORD, testServer, type TestServer } from "../testing/server.js";
import { COMPRESS_THRESHOLD_BYTES } from "./app.js";
import { NEVER_COMPRESSED } from "./no-compress.js";

let server: TestServer;

beforeAll(async () => {
  server = await testServer("pglite");
  // Enough users that the list is well over the threshold.
  for (let i = 0; i < 30; i++) await server.userWithRoles(`compress-user-${String(i).padStart(2, "0")}`, ["user"]);
});
afterAll(async () => server?.cleanup());

/** The hook kinds Fastify lists for one route (from `printRoutes`, whose tree drops the leading slash). */
function hooksOf(method: string, path: string): string[] {
  const lines = server.app.printRoutes({ includeHooks: true, commonPrefix: false }).split("\n");
  const strip = (line: string) => line.replace(/^[\s│├└─]+/u, "");
  const at = lines.findIndex((line) => {
    const text = strip(line);
    const prefix = `${path.slice(1)} (`;
    return text.startsWith(prefix) && text.slice(prefix.length, -1).split(", ").includes(method);
  });
  expect(at, `route ${method} ${path}`).toBeGreaterThanOrEqual(0);
  const hooks: string[] = [];
  for (const line of lines.slice(at + 1)) {
    const match = /^• \((\w+)\)/u.exec(strip(line));
    if (!match) break;
    hooks.push(match[1]!);
  }
  return hooks;
}

/**
 * Every route's hook kinds, by "METHOD /full/path", read from the whole `printRoutes` tree (a route below
 * another, such as /v1/tokens/activation below /v1/tokens, is a child line there).
 */
function allRouteHooks(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const stack: { column: number; path: string }[] = [];
  let current: string[] | null = null;
  for (const line of server.app.printRoutes({ includeHooks: true, commonPrefix: false }).split("\n")) {
    const hook = /^[\s│]*• \((\w+)\)/u.exec(line);
    if (hook) {
      current?.push(hook[1]!);
      continue;
    }
    const route = /^([\s│├└─]*)(\S+) \(([A-Z, ]+)\)$/u.exec(line);
    if (!route) {
      current = null;
      continue;
    }
    const column = [...route[1]!].length;
    while (stack.length > 0 && stack.at(-1)!.column >= column) stack.pop();
    const path = `${stack.at(-1)?.path ?? ""}${route[2]}`;
    stack.push({ column, path });
    current = [];
    const full = `/${path}`.replace(/^\/+/, "/");
    for (const method of route[3]!.split(", ")) out.set(`${method} ${full}`, current);
  }
  return out;
}

const get = (url: string, headers: Record<string, string> = {}) =>
  server.app.inject({ method: "GET", url, headers: { authorization: server.adminAuth, ...headers } });

describe("compressed API answers", () => {
  it("a large JSON answer is brotli- or gzip-compressed when accepted, plain otherwise, the same JSON each way", async () => {
    const plain = await get("/v1/users?limit=100");
    expect(plain.statusCode).toBe(200);
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect(plain.rawPayload.length).toBeGreaterThan(4 * COMPRESS_THRESHOLD_BYTES);
    const users = plain.json();

    const br = await get("/v1/users?limit=100", { "accept-encoding": "br" });
    expect(br.headers["content-encoding"]).toBe("br");
    expect(br.headers.vary).toMatch(/accept-encoding/i);
    expect(br.rawPayload.length).toBeLessThan(plain.rawPayload.length / 3);
    expect(JSON.parse(brotliDecompressSync(br.rawPayload).toString("utf8"))).toEqual(users);

    const gzip = await get("/v1/users?limit=100", { "accept-encoding": "gzip" });
    expect(gzip.headers["content-encoding"]).toBe("gzip");
    expect(gzip.rawPayload.length).toBeLessThan(plain.rawPayload.length / 3);
    expect(JSON.parse(gunzipSync(gzip.rawPayload).toString("utf8"))).toEqual(users);

    // A browser's usual header: brotli preferred.
    const browser = await get("/v1/users?limit=100", { "accept-encoding": "gzip, deflate, br, zstd" });
    expect(browser.headers["content-encoding"]).toBe("br");
    // Only what it names: nothing else is forced on a client.
    const identity = await get("/v1/users?limit=100", { "accept-encoding": "identity" });
    expect(identity.headers["content-encoding"]).toBeUndefined();
    expect(identity.json()).toEqual(users);
  });

  it("the OpenAPI document is compressed too", async () => {
    const doc = await server.app.inject({ method: "GET", url: "/openapi.json", headers: { "accept-encoding": "br" } });
    expect(doc.headers["content-encoding"]).toBe("br");
    expect(JSON.parse(brotliDecompressSync(doc.rawPayload).toString("utf8"))).toHaveProperty("paths");
  });

  it("a small answer is sent as it is", async () => {
    const health = await get("/healthz", { "accept-encoding": "br, gzip" });
    expect(health.rawPayload.length).toBeLessThan(COMPRESS_THRESHOLD_BYTES);
    expect(health.headers["content-encoding"]).toBeUndefined();
    expect(health.json()).toEqual({ status: "ok" });
  });

  it("the check API is never compressed and carries no compression hook", async () => {
    const check = await get(`/v1/check?principal=${server.config.bootstrapAdminName}&role=none`, {
      "accept-encoding": "br, gzip",
    });
    expect(check.statusCode).toBe(200);
    expect(check.headers["content-encoding"]).toBeUndefined();
    expect(check.json()).toMatchObject({ allowed: false });
    const hooks = hooksOf("GET", "/v1/check");
    expect(hooks).toContain("onRequest");
    expect(hooks).not.toContain("onSend");
    // Where compression does apply, its hook is there (the assertion above would otherwise prove nothing).
    expect(hooksOf("GET", "/v1/users")).toContain("onSend");
  });

  it("answers that carry secrets are never compressed (BREACH): each listed route exists and has no compression hook", async () => {
    const hooks = allRouteHooks();
    // The reading of the tree finds the compression hook where it is (or the assertions below prove nothing).
    expect(hooks.get("GET /v1/users"), "GET /v1/users").toContain("onSend");
    expect(hooks.get("GET /v1/tokens"), "GET /v1/tokens").toContain("onSend");
    expect(hooks.get("GET /v1/secrets/:path/versions"), "GET /v1/secrets/:path/versions").toContain("onSend");
    for (const entry of NEVER_COMPRESSED) {
      const [method, url] = entry.split(" ") as [HTTPMethods, string];
      expect(server.app.hasRoute({ method, url }), entry).toBe(true);
      expect(hooks.get(entry), entry).toBeDefined();
      expect(hooks.get(entry), entry).not.toContain("onSend");
    }
    // A token pair goes out as it is even when the client accepts brotli.
    const login = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      headers: { "accept-encoding": "br, gzip" },
      payload: { username: server.config.bootstrapAdminName, password: ADMIN_PASSWORD },
    });
    expect(login.statusCode).toBe(200);
    expect(login.headers["content-encoding"]).toBeUndefined();
    expect(login.json()).toHaveProperty("accessToken");
  });

  it("a gzip-encoded request body is not inflated", async () => {
    const res = await server.app.inject({
      method: "POST",
      url: "/v1/users",
      headers: { authorization: server.adminAuth, "content-type": "application/json", "content-encoding": "gzip" },
      payload: gzipSync(JSON.stringify({ name: "zipped-user", password: "a-long-enough-password-1" })),
    });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
    expect((await get("/v1/users/zipped-user")).statusCode).toBe(404);
  });
});
