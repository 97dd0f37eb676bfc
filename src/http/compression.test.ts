/**
 * Issue 17, finding 3 (API half): JSON answers of 1 KiB or more go out compressed when the client accepts
 * brotli or gzip, and as they are when it does not; small answers are never compressed; the check API (the
 * hottest route) carries no compression hook at all; a compressed request body is not inflated.
 */
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../testing/server.js";
import { COMPRESS_THRESHOLD_BYTES } from "./app.js";

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
