/**
 * Slow clients stalling the SSH proxy (issue 12, finding 9, SSH part): a real Stint server and the real
 * SSH proxy in front of a real sshd. A client that never sends its version line, or stops in the middle
 * of the handshake, is cut off at one deadline counted from accept; connections are capped overall and
 * per source address; a real ssh client still gets in meanwhile; the figures are in /metrics.
 */
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../../src/testing/ssh-connections.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

/**
 * Long enough for a real ssh client's handshake on a loaded host (the deadline applies to it too), and for the
 * cap test's steps to finish before its held connections reach it.
 */
const HANDSHAKE_MS = 4000;
/** A refused connection is closed at accept; a kept one only at the deadline: halfway tells them apart. */
const REFUSED_WITHIN_MS = HANDSHAKE_MS / 2;
const PER_ADDRESS = 3;
const OVERALL = 5;
let h: SshSessionsHarness;
const sockets: Socket[] = [];

beforeAll(async () => {
  h = await sshSessionsHarness({
    env: {
      STINT_SSH_PROXY_HANDSHAKE_TIMEOUT: `${HANDSHAKE_MS}ms`,
      STINT_SSH_PROXY_MAX_CONNECTIONS: String(OVERALL),
      STINT_SSH_PROXY_MAX_CONNECTIONS_PER_ADDRESS: String(PER_ADDRESS),
    },
  });
}, 120_000);

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await h?.cleanup();
}, 60_000);

/** A raw TCP connection to the proxy from `from`; resolves when connected, tracks when it closes. */
async function open(from = "127.0.0.1", send?: string) {
  const socket = connect({ port: h.proxyPort, host: "127.0.0.1", localAddress: from });
  sockets.push(socket);
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  socket.on("error", () => undefined);
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  if (send) socket.write(send);
  return { socket, closed, received: () => received, openedAt: Date.now() };
}

async function metric(name: string, labels = ""): Promise<number> {
  const text = await h.server.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ""} `));
  return line ? Number(line.split(" ").at(-1)) : Number.NaN;
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("slow clients stalling the accept loop (SSH proxy)", () => {
  it("a client that never sends its version line is disconnected at the handshake deadline", async () => {
    const silent = await open();
    const closedAt = await Promise.race([silent.closed, settle(HANDSHAKE_MS * 3).then(() => -1)]);
    expect(closedAt, "the silent connection was never closed").toBeGreaterThan(0);
    expect(closedAt - silent.openedAt).toBeGreaterThanOrEqual(HANDSHAKE_MS - 100);
    expect(closedAt - silent.openedAt).toBeLessThan(HANDSHAKE_MS + 1000);
    expect(await metric("stint_ssh_proxy_handshake_timeouts_total")).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it("a client that sends its version line and then stalls gets the same single deadline", async () => {
    const stalled = await open("127.0.0.1", "SSH-2.0-OpenSSH_9.6\r\n");
    const closedAt = await Promise.race([stalled.closed, settle(HANDSHAKE_MS * 3).then(() => -1)]);
    expect(closedAt).toBeGreaterThan(0);
    expect(closedAt - stalled.openedAt).toBeLessThan(HANDSHAKE_MS + 1000);
    expect(stalled.received()).toMatch(/^SSH-2\.0-/);
  }, 30_000);

  it("connections are capped per source address and overall; a real client still gets in from elsewhere", async () => {
    // Ready before the slow connections open: they live only HANDSHAKE_MS.
    const user = h.users[0]!;
    await h.activate(user, "web-shell");
    const cert = await h.certify(user, "web-shell");
    const refused = async (reason: string) => {
      const value = await metric("stint_ssh_proxy_connections_refused_total", `reason="${reason}"`);
      return Number.isNaN(value) ? 0 : value;
    };
    const perAddressBefore = await refused("per_address");
    const overallBefore = await refused("overall");

    const held = [];
    for (let i = 0; i < PER_ADDRESS; i++) held.push(await open("127.0.0.1"));
    const over = await open("127.0.0.1");
    const overClosed = await Promise.race([over.closed, settle(REFUSED_WITHIN_MS).then(() => -1)]);
    expect(overClosed, "a connection beyond the per-address cap was kept").toBeGreaterThan(0);
    expect(held.every((c) => !c.socket.destroyed)).toBe(true);
    expect(await refused("per_address")).toBe(perAddressBefore + 1);
    expect(await metric("stint_ssh_proxy_connections")).toBe(PER_ADDRESS);

    // Overall: 3 held from 127.0.0.1, 2 more from 127.0.0.3 fill it; the next from anywhere is refused.
    held.push(await open("127.0.0.3"), await open("127.0.0.3"));
    const full = await open("127.0.0.4");
    expect(await Promise.race([full.closed, settle(REFUSED_WITHIN_MS).then(() => -1)])).toBeGreaterThan(0);
    expect(await refused("overall")).toBe(overallBefore + 1);

    // One slot freed: a real ssh client gets in and works while the slow ones are still held.
    held.pop()!.socket.destroy();
    expect(await eventually(async () => (await metric("stint_ssh_proxy_connections")) === OVERALL - 1)).toBe(true);
    const viaOther = await h.ssh(cert.key, `${user}%web`, ["echo still-serving"], { extra: ["-b", "127.0.0.2"] });
    expect(viaOther).toMatchObject({ code: 0, stdout: "still-serving\n" });
    for (const c of held) c.socket.destroy();
  }, 60_000);
});
