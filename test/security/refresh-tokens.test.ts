/**
 * Refresh-token reuse detection (issue 12, finding 12). Reuse detection ends a session when a rotated
 * refresh token comes back, because then two parties hold the chain. It must not end the session for
 * anyone who merely knows its id: the id is not a secret (it is in audit events and in the token itself).
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;

beforeAll(async () => {
  server = await testServer("pglite");
  await server.userWithRoles("alice", ["user"]);
});
afterAll(async () => server?.cleanup());

interface Pair {
  accessToken: string;
  refreshToken: string;
}

async function signIn(): Promise<Pair> {
  const res = await server.app.inject({
    method: "POST",
    url: "/v1/auth/login",
    payload: { username: "alice", password: passwordFor("alice") },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<Pair>();
}

async function refresh(refreshToken: string) {
  return server.app.inject({ method: "POST", url: "/v1/auth/refresh", payload: { refreshToken } });
}

async function me(accessToken: string) {
  return (
    await server.app.inject({ method: "GET", url: "/v1/me", headers: { authorization: `Bearer ${accessToken}` } })
  ).statusCode;
}

/** 43 base64url characters: the shape of a real secret, so the token passes the format check. */
const randomSecret = () => randomBytes(32).toString("base64url");

describe("refresh tokens (finding 12): reuse detection only on a previous secret of the session", () => {
  it("a session id with a random secret is UNAUTHENTICATED and leaves the owner signed in", async () => {
    const owner = await signIn();
    const sessionId = owner.refreshToken.split(".")[0]!;
    for (let i = 0; i < 3; i++) {
      const forged = await refresh(`${sessionId}.${randomSecret()}`);
      expect(forged.statusCode).toBe(401);
      expect(forged.json<{ error: { code: string } }>().error.code).toBe("UNAUTHENTICATED");
    }
    // The owner's access token and refresh token still work: nobody signed them out.
    expect(await me(owner.accessToken)).toBe(200);
    const rotated = await refresh(owner.refreshToken);
    expect(rotated.statusCode, rotated.body).toBe(200);
    expect(await me(rotated.json<Pair>().accessToken)).toBe(200);
  });

  it("a truly reused (rotated) refresh token ends the session for both holders", async () => {
    const owner = await signIn();
    const first = await refresh(owner.refreshToken);
    expect(first.statusCode).toBe(200);
    const next = first.json<Pair>();
    const second = await refresh(next.refreshToken);
    expect(second.statusCode).toBe(200);
    const latest = second.json<Pair>();

    // The token from two rotations ago comes back: someone copied it.
    const reused = await refresh(owner.refreshToken);
    expect(reused.statusCode).toBe(401);
    expect(await me(latest.accessToken)).toBe(401);
    expect((await refresh(latest.refreshToken)).statusCode).toBe(401);

    const events = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?action=auth.session_revoked&limit=10",
      headers: { authorization: server.adminAuth },
    });
    const items = events.json<{ items: { details: { sessionId?: string } }[] }>().items;
    expect(items.some((e) => e.details.sessionId === owner.refreshToken.split(".")[0])).toBe(true);
  });

  it("a forged secret for a session that was rotated many times still does not end it", async () => {
    let pair = await signIn();
    for (let i = 0; i < 5; i++) pair = (await refresh(pair.refreshToken)).json<Pair>();
    const sessionId = pair.refreshToken.split(".")[0]!;
    expect((await refresh(`${sessionId}.${randomSecret()}`)).statusCode).toBe(401);
    expect(await me(pair.accessToken)).toBe(200);
    expect((await refresh(pair.refreshToken)).statusCode).toBe(200);
  });
});
