/**
 * The senders against real sockets: when a syslog batch counts as delivered and what a broken connection does;
 * what a HEC receiver that never acknowledges leaves behind once a send gave up.
 */
import http from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createHecSender, createSyslogSender } from "./siem.transports.js";
import { siemDestinationSchema, type HecDestination, type SyslogDestination } from "./siem.types.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

async function receiver() {
  const sockets: net.Socket[] = [];
  const received: Buffer[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    sockets.forEach((s) => s.destroy());
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, sockets, received };
}

function destination(port: number, settleMs: number): SyslogDestination {
  return siemDestinationSchema.parse({
    name: "t",
    kind: "syslog",
    transport: "tcp",
    host: "127.0.0.1",
    port,
    format: "json",
    settleMs,
  }) as SyslogDestination;
}

describe("syslog sender", () => {
  it("counts a batch delivered only once the connection stayed up settleMs after it was written", async () => {
    const r = await receiver();
    let now = 1_000;
    const sender = createSyslogSender(destination(r.port, 500), () => now);
    cleanups.push(() => sender.reset());
    await sender.send([Buffer.from("5 hello")], { seq: 1, checkpointSeq: 0 });
    await sleep(50); // the write callback
    expect(sender.confirmed(now + 499)).toBeUndefined();
    expect(sender.confirmed(now + 500)).toEqual({ seq: 1, checkpointSeq: 0 });
    now += 1000;
    expect(Buffer.concat(r.received).toString()).toBe("5 hello");
  });

  it("after the receiver closed the connection, nothing unconfirmed is confirmed and the next send fails instead of skipping it", async () => {
    const r = await receiver();
    const sender = createSyslogSender(destination(r.port, 60_000));
    cleanups.push(() => sender.reset());
    await sender.send([Buffer.from("3 one")], { seq: 1, checkpointSeq: 0 });
    await sleep(50);
    r.sockets[0]!.destroy();
    for (let i = 0; i < 100 && !sender.broken(); i++) await sleep(20);
    expect(sender.broken()).toBeInstanceOf(Error);
    expect(sender.confirmed(Date.now() + 120_000)).toBeUndefined();
    // Writing batch 2 on a fresh connection would let it confirm past batch 1: refused.
    await expect(sender.send([Buffer.from("3 two")], { seq: 2, checkpointSeq: 0 })).rejects.toThrow();
    expect(r.sockets).toHaveLength(1);
    // After a reset (the deliverer rewinds to its cursor) it connects again.
    sender.reset();
    await sender.send([Buffer.from("3 one")], { seq: 1, checkpointSeq: 0 });
    expect(r.sockets.length).toBe(2);
  });
});

describe("HEC sender", () => {
  it("a receiver that takes batches and never acknowledges them: a send that timed out stops asking", async () => {
    // Found by review: the ack poll went on after its send timed out (the timeout only destroyed the request in
    // flight, and the poll spends most of its time sleeping between queries), so every retry left one more loop
    // querying the receiver every 250 ms, forever: requests, timers and memory growing without bound.
    let ackQueries = 0;
    let nextAck = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        if (req.url === "/services/collector/ack") {
          ackQueries++;
          res.end(JSON.stringify({ acks: { "0": false } }));
        } else res.end(JSON.stringify({ text: "Success", code: 0, ackId: nextAck++ }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const { port } = server.address() as net.AddressInfo;
    const destination = siemDestinationSchema.parse({
      name: "h",
      kind: "hec",
      url: `http://127.0.0.1:${port}/services/collector/event`,
      tokenEnv: "UNUSED",
      format: "json",
      ack: true,
      timeoutMs: 400,
    }) as HecDestination;
    const sender = createHecSender(destination, "token");
    cleanups.push(() => void sender.close());
    for (let attempt = 1; attempt <= 3; attempt++) {
      await expect(sender.send([Buffer.from("{}")], { seq: attempt, checkpointSeq: 0 })).rejects.toThrow(/timed out/);
      sender.reset();
    }
    expect(ackQueries).toBeGreaterThan(0);
    await sleep(100); // a query already answered when the send gave up
    const after = ackQueries;
    await sleep(1000); // four poll periods
    expect(ackQueries - after).toBe(0);
  });
});

describe("the address policy at connect time", () => {
  // The name resolves (through the test's resolver) to loopback, which the policy of this test forbids: the
  // destination was a name at configuration time, so only a check when connecting can refuse it.
  const toLoopback = async () => [{ address: "127.0.0.1", family: 4 }];
  const denyLoopback = { policy: { allow: [], deny: ["127.0.0.0/8"] }, resolve: toLoopback };

  it("syslog: a name (localhost) resolving to a forbidden address is refused and nothing reaches a listener there", async () => {
    const r = await receiver();
    const named = { ...destination(r.port, 0), host: "localhost" };
    const refused = createSyslogSender(named, Date.now, denyLoopback);
    cleanups.push(() => refused.reset());
    await expect(refused.send([Buffer.from("5 hello")], { seq: 1, checkpointSeq: 0 })).rejects.toThrow(
      /refused by the address policy: localhost resolves to/,
    );
    await sleep(50);
    expect(r.sockets).toHaveLength(0);
    expect(r.received).toHaveLength(0);
    // Allowed, the same name is connected to at the address it resolved to.
    const allowed = createSyslogSender(named, Date.now, { resolve: toLoopback });
    cleanups.push(() => allowed.reset());
    await allowed.send([Buffer.from("5 hello")], { seq: 1, checkpointSeq: 0 });
    await sleep(50);
    expect(Buffer.concat(r.received).toString()).toBe("5 hello");
  });

  /** A HEC endpoint on 127.0.0.1 that answers success; `requests` counts what reached it. */
  async function hecReceiver(host: string) {
    const seen = { requests: 0 };
    const server = http.createServer((req, res) => {
      seen.requests++;
      req.resume();
      req.on("end", () => res.end(JSON.stringify({ text: "Success", code: 0 })));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const { port } = server.address() as net.AddressInfo;
    const hec = siemDestinationSchema.parse({
      name: "h",
      kind: "hec",
      url: `http://${host}:${port}/services/collector/event`,
      tokenEnv: "UNUSED",
      format: "json",
    }) as HecDestination;
    return { hec, seen };
  }

  it("HEC: a name (localhost) resolving to a forbidden address is refused before any request is made", async () => {
    const { hec, seen } = await hecReceiver("localhost");
    const refused = createHecSender(hec, "token", denyLoopback);
    cleanups.push(() => void refused.close());
    await expect(refused.send([Buffer.from("{}")], { seq: 1, checkpointSeq: 0 })).rejects.toThrow(
      /refused by the address policy: localhost resolves to/,
    );
    expect(seen.requests).toBe(0);
    const allowed = createHecSender(hec, "token", { resolve: toLoopback });
    cleanups.push(() => void allowed.close());
    await allowed.send([Buffer.from("{}")], { seq: 1, checkpointSeq: 0 });
    expect(seen.requests).toBe(1);
  });

  // Node looks no literal address up (no lookup hook runs): each sender judges a literal itself, once.
  it("a literal forbidden address is refused on both senders and nothing reaches it", async () => {
    const r = await receiver();
    const syslog = createSyslogSender(destination(r.port, 0), Date.now, denyLoopback);
    cleanups.push(() => syslog.reset());
    await expect(syslog.send([Buffer.from("5 hello")], { seq: 1, checkpointSeq: 0 })).rejects.toThrow(
      /refused by the address policy: 127\.0\.0\.1 is refused/,
    );
    const { hec, seen } = await hecReceiver("127.0.0.1");
    const refused = createHecSender(hec, "token", denyLoopback);
    cleanups.push(() => void refused.close());
    await expect(refused.send([Buffer.from("{}")], { seq: 1, checkpointSeq: 0 })).rejects.toThrow(
      /refused by the address policy: 127\.0\.0\.1 is refused/,
    );
    await sleep(50);
    expect(r.sockets).toHaveLength(0);
    expect(seen.requests).toBe(0);
  });
});
