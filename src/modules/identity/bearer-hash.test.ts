/**
 * The bearer token hashes remembered per header (bearer-auth.ts): a header that ends like a remembered one
 * (its signature's tail) but differs before it is hashed on its own, never taken for the remembered header's
 * token (a lookup by the header's tail alone fails this).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../testing/server.js";

let server: TestServer;
let alice: string;

beforeAll(async () => {
  server = await testServer("pglite");
  alice = await server.userWithRoles("hash-alice", ["user"]);
}, 60_000);

afterAll(async () => {
  await server?.cleanup();
});

const me = async (authorization: string) =>
  server.app.inject({ method: "GET", url: "/v1/me", headers: { authorization } });

describe("bearer token hashes remembered by the header's tail", () => {
  it("a header ending like a signed-in one but differing before is refused, before and after that one", async () => {
    const token = alice.slice("Bearer ".length);
    const forged = [
      `Bearer x${token}`,
      `Bearer ${token.slice(1)}`,
      `Bearer ${"A".repeat(token.length)}${token.slice(-32)}`,
    ];
    for (const header of forged) expect((await me(header)).statusCode).toBe(401);
    expect((await me(alice)).statusCode).toBe(200);
    for (const header of forged) {
      expect((await me(header)).statusCode).toBe(401);
      // The genuine header is still found after a forged one took its place.
      const genuine = await me(alice);
      expect(genuine.statusCode).toBe(200);
      expect(genuine.json()).toMatchObject({ name: "hash-alice" });
    }
  });
});
