/**
 * Class: slow clients stalling the accept loop (issue 12, finding 9 — PostgreSQL proxy part; the
 * SSH proxy's cases are in slow-clients-ssh.test.ts).
 *
 * A client that connects and then dawdles — repeating SSLRequest (each used to reset the startup
 * timer), trickling its startup packet a byte at a time — must be cut off at one deadline counted
 * from accept; one source address cannot hold more than its share of connections while others still
 * get in; and a hundred idle sockets do not keep a real client from working. Real server (its gate),
 * real proxy, real cluster with TLS and SCRAM, real node-postgres.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/logger.js";
import { encodeSslRequest, encodeStartupMessage } from "../../src/lib/pg-wire.js";
import { createPgProxy, type PgProxy, type PgProxyDeps } from "../../src/proxies/pg/pg-proxy.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";

async function open(port: number, localAddress = "127.0.0.1"): Promise<Socket & { bytes: () => Buffer }> {
  const socket = connect({ host: "127.0.0.1", port, localAddress });
  let received = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
  socket.on("error", () => {});
  await once(socket, "connect");
  return Object.assign(socket, { bytes: () => received });
}

/** Resolves with the milliseconds until the socket closed, or null if it is still open after `ms`. */
function closedWithin(socket: Socket, ms: number, since = Date.now()): Promise<number | null> {
  if (socket.destroyed) return Promise.resolve(Date.now() - since);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - since);
    });
  });
}

async function counter(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

describe("slow clients stalling the accept loop (PostgreSQL proxy, finding 9)", () => {
  let pgh: PgProxyHarness;
  let token: string;
  const proxies: PgProxy[] = [];
  const sockets: Socket[] = [];

  async function startProxy(options: Partial<PgProxyDeps>): Promise<number> {
    const proxy = createPgProxy({
      gate: pgh.h.server.sessions.gate,
      logger: createLogger({ level: "silent" }),
      port: 0,
      ...options,
    });
    proxies.push(proxy);
    return (await proxy.listen()).port;
  }

  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "optional" });
    token = await pgh.token();
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    for (const proxy of proxies) await proxy.close();
    await pgh?.close();
  });

  it("a client repeating SSLRequest is cut off at the deadline counted from accept", async () => {
    const registry = new Registry();
    const port = await startProxy({ handshakeTimeoutMs: 1_500, registry });
    const socket = await open(port);
    sockets.push(socket);
    const accepted = Date.now();
    const repeat = setInterval(() => socket.writable && socket.write(encodeSslRequest()), 200);
    try {
      const after = await closedWithin(socket, 8_000, accepted);
      expect(after, "closed by the deadline, not reset by each SSLRequest").not.toBeNull();
      expect(after!).toBeGreaterThanOrEqual(1_400);
      expect(after!).toBeLessThan(5_000); // the deadline plus slack for a loaded machine; unfixed, it never comes
    } finally {
      clearInterval(repeat);
    }
    // Every SSLRequest got its 'N', and nothing else came (no error message to a client that said nothing).
    expect(new Set(socket.bytes().toString("latin1"))).toEqual(new Set(["N"]));
    expect(await counter(registry, "stint_pg_proxy_handshake_timeouts_total")).toBe(1);
  });

  it("a client trickling its startup packet a byte at a time is cut off at the deadline", async () => {
    const port = await startProxy({ handshakeTimeoutMs: 1_500 });
    const socket = await open(port);
    sockets.push(socket);
    const accepted = Date.now();
    const startup = encodeStartupMessage({ user: `${pgh.user}%${pgh.role}`, database: pgh.database });
    let sent = 0;
    const trickle = setInterval(() => {
      if (socket.writable && sent < startup.length) socket.write(startup.subarray(sent, ++sent));
    }, 100);
    try {
      const after = await closedWithin(socket, 8_000, accepted);
      expect(after).not.toBeNull();
      expect(after!).toBeLessThan(5_000); // the deadline plus slack for a loaded machine; unfixed, it never comes
    } finally {
      clearInterval(trickle);
    }
    expect(socket.bytes().length).toBe(0);
  });

  it("one address gets at most its cap of connections; another address still gets in", async () => {
    const registry = new Registry();
    const port = await startProxy({ maxConnectionsPerAddress: 3, registry });
    const held = await Promise.all([1, 2, 3].map(() => open(port)));
    sockets.push(...held);
    await delay(100);
    const extra = await open(port);
    sockets.push(extra);
    expect(await closedWithin(extra, 3_000)).not.toBeNull();
    expect(extra.bytes().toString("latin1")).toContain("sorry, too many clients already");
    expect(await counter(registry, "stint_pg_proxy_connections_refused_total", { reason: "per_address" })).toBe(1);
    expect(await counter(registry, "stint_pg_proxy_connections")).toBe(3);
    // The held ones are still open, and another source address is served: it is asked for its password.
    for (const socket of held) expect(socket.destroyed).toBe(false);
    const other = await open(port, "127.0.0.2");
    sockets.push(other);
    other.write(encodeStartupMessage({ user: `${pgh.user}%${pgh.role}`, database: pgh.database }));
    await expect.poll(() => other.bytes().subarray(0, 1).toString("latin1"), { timeout: 3_000 }).toBe("R");
    // When one of the first address's connections goes, a new one from it is accepted again.
    held[0]!.destroy();
    await expect.poll(() => counter(registry, "stint_pg_proxy_connections"), { timeout: 3_000 }).toBe(3);
    const again = await open(port);
    sockets.push(again);
    expect(await closedWithin(again, 500)).toBeNull();
  });

  it("a real client connects and queries while 100 idle sockets sit on the proxy", async () => {
    const port = await startProxy({ maxConnectionsPerAddress: 200 });
    const idle = await Promise.all(Array.from({ length: 100 }, () => open(port)));
    sockets.push(...idle);
    const started = Date.now();
    const client = new pg.Client({ ...pgh.clientConfig(token), port });
    await client.connect();
    try {
      expect((await client.query("SELECT current_user AS who")).rows).toEqual([{ who: pgh.login }]);
    } finally {
      await client.end();
    }
    expect(Date.now() - started).toBeLessThan(5_000);
    for (const socket of idle) expect(socket.destroyed).toBe(false);
  });
});
