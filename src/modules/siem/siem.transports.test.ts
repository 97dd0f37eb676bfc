/** The syslog sender against a real TCP socket: when a batch counts as delivered, and what a broken connection does. */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createSyslogSender } from "./siem.transports.js";
import { siemDestinationSchema, type SyslogDestination } from "./siem.types.js";

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
