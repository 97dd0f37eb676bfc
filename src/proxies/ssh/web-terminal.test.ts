/**
 * The browser terminal's socket refuses what it must before any SSH session exists: a foreign or missing
 * Origin, a socket without a valid `auth` first message (absent, wrong, expired token; a token in the URL
 * counts for nothing), a role the caller holds no active activation of (nor anyone else's), oversized
 * messages and bad terminal sizes, and a node without an SSH proxy. In-process (app.injectWS), one server.
 * The open terminal itself (command, recording, playback, revoke) is test/e2e/web-terminal.test.ts.
 */
import { createRequire } from "node:module";
import type { WebSocket } from "@fastify/websocket";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../lib/clock.js";
import { ADMIN_PASSWORD, testServer, type TestServer } from "../../testing/server.js";
import { TERMINAL_CLOSE } from "../../contract/terminal.js";

// `ws` (the server's own WebSocket library) as the client; Node 20 has none built in. (@fastify/websocket's
// injectWS answers 400 before any route with Fastify 5.12, so the server listens on a loopback port.)
const { WebSocket: WsClient } = createRequire(import.meta.url)("ws") as {
  WebSocket: new (url: string, options: { headers: Record<string, string> }) => WebSocket;
};
const clock = manualClock(new Date());
let server: TestServer;
let base: string;
let aliceToken: string;

interface Outcome {
  code: number;
  messages: Record<string, unknown>[];
}

/** Opens the socket with these headers, sends `messages`, and waits for the server to close it. */
async function exchange(
  messages: (string | Buffer)[],
  headers: Record<string, string> = { origin: base },
  url = "/v1/ssh/terminals",
): Promise<Outcome> {
  const received: Record<string, unknown>[] = [];
  let closed: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (closed = resolve));
  const socket = new WsClient(`${base.replace(/^http/, "ws")}${url}`, { headers });
  socket.on("message", (data: Buffer, binary: boolean) => {
    if (!binary) received.push(JSON.parse(data.toString()) as Record<string, unknown>);
  });
  socket.on("close", (code: number) => closed(code));
  socket.on("error", () => undefined);
  await new Promise<void>((resolve) => socket.on("open", () => resolve()));
  for (const message of messages) socket.send(message);
  const code = await done;
  return { code, messages: received };
}

const auth = (token: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ type: "auth", token, role: "web-shell", cols: 80, rows: 24, ...extra });
const errorCode = (outcome: Outcome) =>
  (outcome.messages.find((m) => m.type === "error")?.error as { code?: string } | undefined)?.code;

beforeAll(async () => {
  server = await testServer("pglite", { clock });
  base = await server.app.listen({ host: "127.0.0.1", port: 0 });
  aliceToken = (await server.userWithRoles("alice", ["user"])).slice("Bearer ".length);
}, 60_000);

afterAll(async () => {
  await server?.cleanup();
});

describe("the browser terminal's socket", () => {
  it("says so when this node runs no SSH proxy (none is attached yet in this file)", async () => {
    const outcome = await exchange([auth(aliceToken)]);
    expect(outcome.code).toBe(TERMINAL_CLOSE.unavailable);
    expect(errorCode(outcome)).toBe("UNAVAILABLE");
    // From here on a proxy is attached; the refusals below come before anything connects to it.
    server.terminals.attach(() => {
      throw new Error("nothing in this file may reach the proxy");
    });
  });

  it("refuses a missing or foreign Origin before anything is read (cross-site WebSocket hijacking)", async () => {
    const missing = await exchange([auth(aliceToken)], {});
    expect(missing).toEqual({ code: TERMINAL_CLOSE.badOrigin, messages: [] });
    const foreign = await exchange([auth(aliceToken)], { origin: "https://evil.example" });
    expect(foreign).toEqual({ code: TERMINAL_CLOSE.badOrigin, messages: [] });
    // Same host, another scheme or port is another origin too.
    const port = await exchange([auth(aliceToken)], { origin: "http://127.0.0.1:1" });
    expect(port.code).toBe(TERMINAL_CLOSE.badOrigin);
    const opaque = await exchange([auth(aliceToken)], { origin: "null" });
    expect(opaque.code).toBe(TERMINAL_CLOSE.badOrigin);
  });

  it("takes no credential from the URL: a token there still needs the auth message", async () => {
    const outcome = await exchange(
      [JSON.stringify({ type: "input", data: "id\n" })],
      undefined,
      `/v1/ssh/terminals?token=${aliceToken}&access_token=${aliceToken}`,
    );
    expect(outcome.code).toBe(TERMINAL_CLOSE.unauthenticated);
    expect(errorCode(outcome)).toBe("UNAUTHENTICATED");
  });

  it.each([
    ["no token", JSON.stringify({ type: "auth", role: "web-shell", cols: 80, rows: 24 })],
    ["an empty token", auth("")],
    ["a wrong token", auth("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln")],
    ["input before auth", JSON.stringify({ type: "input", data: "id\n" })],
    ["not JSON", "hello"],
    ["a binary first message", Buffer.from(auth("x"))],
  ])("refuses %s as the first message", async (_name, first) => {
    const outcome = await exchange([first]);
    expect([TERMINAL_CLOSE.unauthenticated, TERMINAL_CLOSE.badMessage]).toContain(outcome.code);
    expect(["UNAUTHENTICATED", "VALIDATION_FAILED"]).toContain(errorCode(outcome));
    expect(outcome.messages.some((m) => m.type === "ready")).toBe(false);
  });

  it("refuses an expired access token", async () => {
    const token = (await server.login("alice")).slice("Bearer ".length);
    clock.advance(server.config.accessTokenTtl + 60_000);
    try {
      const outcome = await exchange([auth(token)]);
      expect(outcome.code).toBe(TERMINAL_CLOSE.unauthenticated);
      expect(errorCode(outcome)).toMatch(/^(TOKEN_EXPIRED|UNAUTHENTICATED)$/);
    } finally {
      aliceToken = (await server.login("alice")).slice("Bearer ".length);
    }
  });

  it("opens nothing on a role the caller has no active activation of, and names no one else's session", async () => {
    const outcome = await exchange([auth(aliceToken)]);
    expect(outcome.code).toBe(TERMINAL_CLOSE.forbidden);
    expect(errorCode(outcome)).toBe("NOT_ACTIVE");
    // There is no way to name a session: the auth message takes a role, never a session to attach to.
    const attach = await exchange([auth(aliceToken, { session: "0190aaaa-0000-7000-8000-000000000000" })]);
    expect(attach.code).toBe(TERMINAL_CLOSE.unauthenticated);
    // No certificate was issued for either.
    const issued = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?action=ssh.certificate_issued",
      // Signed in afresh: the clock moved past the first admin token's life above.
      headers: { authorization: await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD) },
    });
    expect(issued.statusCode).toBe(200);
    expect(issued.json<{ items: unknown[] }>().items).toEqual([]);
  });

  it("refuses terminal sizes out of bounds and oversized messages", async () => {
    for (const size of [
      { cols: 0, rows: 24 },
      { cols: 80, rows: 0 },
      { cols: 100_000, rows: 24 },
      { cols: 80.5, rows: 24 },
      { cols: "80", rows: 24 },
    ]) {
      const outcome = await exchange([auth(aliceToken, size)]);
      expect(outcome.code, JSON.stringify(size)).toBe(TERMINAL_CLOSE.unauthenticated);
    }
    const huge = await exchange([auth(aliceToken, { pad: "x".repeat(70 * 1024) })]);
    expect(huge.code).toBe(TERMINAL_CLOSE.tooLarge);
    expect(errorCode(huge)).toBe("PAYLOAD_TOO_LARGE");
  });

  it("answers a plain HTTP request (no upgrade) with an error, not a socket", async () => {
    const res = await server.app.inject({ method: "GET", url: "/v1/ssh/terminals" });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.json<{ error: { code: string } }>().error.code).toBeTruthy();
  });
});
