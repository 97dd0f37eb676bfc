/**
 * A gauge of the machine, printed before a throughput run so that runs on different machines can be compared:
 * the benchmarks' targets are absolute (per second, milliseconds), and a virtual machine's speed differs from one
 * host to the next — notably the cost of a system call and of loopback TCP, which dominate a proxy's and an
 * HTTP server's CPU. Three figures, each the best of three tries (the least disturbed by the rest of the host):
 * - userland: SHA-256 of 1 KiB, µs each (pure CPU: hashing, no system call);
 * - system call: `fstat` of an open file, µs each (the kernel's entry and exit cost);
 * - loopback TCP: a 64-byte ping-pong between two sockets of this process, µs of this process's CPU per round trip
 *   (two writes, two reads, the kernel's loopback path).
 *
 *   node --import tsx bench/machine-gauge.ts
 */
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync } from "node:fs";
import net, { type AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";

export interface MachineGauge {
  sha256KibUs: number;
  syscallUs: number;
  loopbackRoundTripCpuUs: number;
  load: number[];
}

function bestOf<T extends number>(tries: number, measure: () => T): T {
  let best = Infinity as T;
  for (let i = 0; i < tries; i++) best = Math.min(best, measure()) as T;
  return best;
}

function sha256Us(): number {
  const block = Buffer.alloc(1024, 7);
  const n = 50_000;
  const start = performance.now();
  for (let i = 0; i < n; i++) createHash("sha256").update(block).digest();
  return ((performance.now() - start) * 1000) / n;
}

function syscallUs(): number {
  const fd = openSync(process.execPath, "r");
  try {
    const n = 100_000;
    const start = performance.now();
    for (let i = 0; i < n; i++) fstatSync(fd);
    return ((performance.now() - start) * 1000) / n;
  } finally {
    closeSync(fd);
  }
}

/** CPU of this process per 64-byte round trip between a client and a server socket on 127.0.0.1. */
async function loopbackCpuUs(roundTrips: number): Promise<number> {
  const server = net.createServer((socket) => socket.on("data", (chunk) => socket.write(chunk)));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const client = net.connect(port, "127.0.0.1");
  client.setNoDelay(true);
  await new Promise<void>((resolve) => client.once("connect", resolve));
  const message = Buffer.alloc(64, 1);
  const cpu = process.cpuUsage();
  await new Promise<void>((resolve) => {
    let left = roundTrips;
    let received = 0;
    client.on("data", (chunk: Buffer) => {
      received += chunk.length;
      while (received >= message.length) {
        received -= message.length;
        left -= 1;
        if (left === 0) return resolve();
        client.write(message);
      }
    });
    client.write(message);
  });
  const used = process.cpuUsage(cpu);
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return (used.user + used.system) / roundTrips;
}

export async function machineGauge(): Promise<MachineGauge> {
  const sha = bestOf(3, sha256Us);
  const sys = bestOf(3, syscallUs);
  let loop = Infinity;
  for (let i = 0; i < 3; i++) loop = Math.min(loop, await loopbackCpuUs(10_000));
  return { sha256KibUs: sha, syscallUs: sys, loopbackRoundTripCpuUs: loop, load: (await import("node:os")).loadavg() };
}

export function describeGauge(g: MachineGauge): string {
  return (
    `machine gauge (best of 3): SHA-256 of 1 KiB ${g.sha256KibUs.toFixed(2)} µs, fstat ${g.syscallUs.toFixed(2)} µs, ` +
    `loopback TCP round trip ${g.loopbackRoundTripCpuUs.toFixed(1)} µs of CPU; load ${g.load.map((l) => l.toFixed(2)).join(" ")}`
  );
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(describeGauge(await machineGauge()));
