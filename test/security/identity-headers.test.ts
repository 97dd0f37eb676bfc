/**
 * Identity headers from the client (issue 12 regression class; cf. the header-trust bypasses of
 * Grafana auth proxy CVE-2022-35957 and the X-Forwarded-For spoofing class). Over a real socket, a client
 * that sends X-Forwarded-For, X-Real-IP, Forwarded or X-Stint-User-like headers neither signs in as
 * anyone nor changes the source address Stint audits and throttles by, unless the peer is a configured
 * trusted proxy (STINT_TRUSTED_PROXIES); then, and only then, the forwarded address is used.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD, testServer, type TestServer } from "../../src/testing/server.js";

const SPOOFED = {
  "x-forwarded-for": "203.0.113.7",
  "x-real-ip": "203.0.113.8",
  forwarded: "for=203.0.113.9",
  "true-client-ip": "203.0.113.10",
  "cf-connecting-ip": "203.0.113.11",
};
const IDENTITY_HEADERS = [
  "x-stint-user",
  "x-remote-user",
  "remote-user",
  "x-forwarded-user",
  "x-auth-request-user",
  "x-webauth-user",
];

let server: TestServer | undefined;
afterEach(async () => {
  await server?.cleanup();
  server = undefined;
});

async function listening(env: NodeJS.ProcessEnv = {}) {
  server = await testServer("pglite", { env });
  const address = await server.app.listen({ host: "127.0.0.1", port: 0 });
  return address;
}

describe("identity headers from the client", () => {
  it("a user header names nobody: without a bearer token every identity header gets 401", async () => {
    const url = await listening();
    for (const header of IDENTITY_HEADERS) {
      const res = await fetch(`${url}/v1/me`, { headers: { [header]: "admin", ...SPOOFED } });
      expect(res.status, header).toBe(401);
      const users = await fetch(`${url}/v1/users`, { headers: { [header]: "admin" } });
      expect(users.status, header).toBe(401);
    }
  });

  it("audit events and sign-in sessions record the real peer, not forwarded-address headers", async () => {
    const url = await listening();
    const res = await fetch(`${url}/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json", ...SPOOFED },
      body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }),
    });
    expect(res.status).toBe(200);
    const event = await server!.store.db
      .selectFrom("audit_events")
      .select(["action", "source_ip"])
      .where("action", "=", "auth.login")
      .orderBy("seq", "desc")
      .executeTakeFirstOrThrow();
    expect(event.source_ip).toBe("127.0.0.1");
    const sessions = await server!.store.db.selectFrom("refresh_sessions").select("source_ip").execute();
    expect(sessions.map((s) => s.source_ip)).not.toContain("203.0.113.7");
    expect(new Set(sessions.map((s) => s.source_ip))).toEqual(new Set(["127.0.0.1"]));
  });

  it("rotating X-Forwarded-For does not escape the per-address sign-in throttle", async () => {
    // 2 failures per account; a peer address gets 4× that (8) before it is locked out.
    const url = await listening({ STINT_LOGIN_MAX_FAILURES: "2" });
    const attempt = (username: string, i: number) =>
      fetch(`${url}/v1/auth/login`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-forwarded-for": `198.51.100.${i}`,
          "x-real-ip": `198.51.100.${i}`,
        },
        body: JSON.stringify({ username, password: "wrong password, guessed" }),
      });
    const statuses: number[] = [];
    for (let i = 1; i <= 10; i++) statuses.push((await attempt(`nobody-${i}`, i)).status);
    expect(statuses.slice(0, 8)).toEqual(Array(8).fill(401));
    expect(statuses.slice(8)).toEqual([429, 429]);
    // Even the right password, from the same peer with yet another forwarded address, waits.
    const locked = await fetch(`${url}/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": "192.0.2.200" },
      body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }),
    });
    expect(locked.status).toBe(429);
  });

  it("honours X-Forwarded-For only from a configured trusted proxy", async () => {
    const url = await listening({ STINT_TRUSTED_PROXIES: "127.0.0.1" });
    const res = await fetch(`${url}/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": "203.0.113.7" },
      body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }),
    });
    expect(res.status).toBe(200);
    const event = await server!.store.db
      .selectFrom("audit_events")
      .select("source_ip")
      .where("action", "=", "auth.login")
      .orderBy("seq", "desc")
      .executeTakeFirstOrThrow();
    expect(event.source_ip).toBe("203.0.113.7");
  });
});
