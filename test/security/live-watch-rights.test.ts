/**
 * A live session's watchers were judged once, when they joined: the socket then streamed the session (an SSH
 * screen, a database session's statements and errors) for as long as the session lasted, hours if need be.
 * A stolen access token, used once within its 10 minutes, watched on after it expired; a leaver disabled mid-
 * session, or signed out everywhere, watched on too. Every HTTP read asks for a valid token; the stream now
 * does as well: the right to watch is checked again every few seconds (the token, the account, the rules), a
 * watcher renews its token on the open socket (the web UI does, as it refreshes its token), and a watcher
 * whose right lapsed is closed (4401 signed out, 4403 no longer allowed).
 */
import { createRequire } from "node:module";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";

interface NodeSocket {
  on(event: "message", listener: (data: Buffer) => void): void;
  on(event: "close", listener: (code: number) => void): void;
  on(event: "open" | "error", listener: () => void): void;
  send(data: string): void;
  close(): void;
}
const { WebSocket } = createRequire(import.meta.url)("ws") as {
  WebSocket: new (url: string, options: { headers?: Record<string, string> }) => NodeSocket;
};

let pgh: PgProxyHarness;
let client: pg.Client;
let url: string;
let sessionId: string;

/** Waits for `probe` to hold, polling (a loaded machine: generous bound). */
async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const tokenOf = async (name: string) => (await pgh.h.server.login(name)).slice("Bearer ".length);

/** A watcher, as the web UI opens one: its Origin, then `auth` first; resolves once the server said hello. */
async function watch(token: string) {
  const socket = new WebSocket(`${url.replace(/^http/, "ws")}/v1/sessions/${sessionId}/live`, {
    headers: { origin: url },
  });
  const messages: string[] = [];
  let closed: number | undefined;
  socket.on("message", (data) => messages.push(data.toString("utf8")));
  socket.on("close", (code) => (closed = code));
  socket.on("open", () => socket.send(JSON.stringify({ type: "auth", token, mode: "watch" })));
  await waitFor("hello", () => messages.some((m) => m.startsWith('{"type":"hello"')) || closed !== undefined);
  expect(closed).toBeUndefined();
  return { socket, messages, closed: () => closed };
}

beforeAll(async () => {
  pgh = await pgProxyHarness();
  await pgh.h.server.app.listen({ host: "127.0.0.1", port: 0 });
  url = `http://127.0.0.1:${(pgh.h.server.app.server.address() as { port: number }).port}`;
  for (const auditor of ["aud", "aud2", "aud3"]) await pgh.h.server.userWithRoles(auditor, ["auditor"]);
  client = new pg.Client(pgh.clientConfig(await pgh.token()));
  await client.connect();
  await client.query("SELECT 1");
  const list = await pgh.h.as("aud", "GET", "/v1/sessions/live");
  sessionId = (list.body.items as { id: string }[])[0]!.id;
}, 180_000);

afterAll(async () => {
  await client?.end().catch(() => undefined);
  await pgh?.close();
});

describe("watching a live session needs the right to, all along", () => {
  it("a watcher whose token expired is cut off; one who renews it watches on", { timeout: 90_000 }, async () => {
    const ttl = pgh.h.server.config.accessTokenTtl;
    const stolen = await watch(await tokenOf("aud"));
    const renewing = await watch(await tokenOf("aud3"));
    pgh.h.clock.advance(ttl / 2);
    renewing.socket.send(JSON.stringify({ type: "auth", token: await tokenOf("aud3"), mode: "watch" }));
    pgh.h.clock.advance(ttl / 2 + 60_000);
    // The stolen token's holder no longer receives the session.
    expect(await waitFor("the expired watcher's close", stolen.closed)).toBe(4401);
    // The renewed one still does: the next statement reaches it.
    await client.query("SELECT 'still watched' AS probe");
    await waitFor("the next statement", () => renewing.messages.some((m) => m.includes("still watched")));
    expect(renewing.closed()).toBeUndefined();
    renewing.socket.close();
  });

  it("a watcher disabled mid-session (a leaver) is cut off", { timeout: 60_000 }, async () => {
    const leaver = await watch(await tokenOf("aud2"));
    const disabled = await pgh.h.admin("POST", "/v1/users/aud2/disable", { reason: "left the company today" });
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    expect(await waitFor("the leaver's close", leaver.closed)).toBe(4401);
    await client.query("SELECT 'after the leaver left' AS probe");
    expect(leaver.messages.some((m) => m.includes("after the leaver left"))).toBe(false);
  });
});
