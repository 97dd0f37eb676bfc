/**
 * The ssh-host connector alone against a real OpenSSH sshd on 127.0.0.1 (src/testing/sshd.ts; needs root):
 * `observe` (two commands in one round trip), one call at a time, on a pooled admin connection and on a new one
 * (the pool emptied before the call, untimed), interleaved call by call. With `--before=DIR` (a worktree of an
 * older commit, its node_modules linked) that version's connector is interleaved too, imported side by side.
 *
 *   node --import tsx bench/connectors.ssh.bench.ts [--calls=60] [--before=/tmp/stint-before]
 *
 * Printed per variant: wall time p50 / mean, this process's CPU per call, and sshd's CPU per call (the listener
 * and its per-connection processes: live ones from /proc, ended ones from the listener's reaped-children times).
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { loadavg } from "node:os";
import type { Connector } from "../src/modules/connectors/connector.types.js";
import { sshHostConnector, sshHostPools } from "../src/modules/connectors/ssh-host/ssh-host.connector.js";
import { sshdChildren } from "../src/testing/ssh-connections.js";
import { sshHostTarget, startSshd } from "../src/testing/sshd.js";

const TICK_MS = 10; // USER_HZ 100 on Linux

function arg(name: string, fallback: string): string {
  const found = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`));
  return found ? found.slice(name.length + 3) : fallback;
}

/** CPU of a process in ms: its own, plus (with children) what its reaped children used. */
function cpuOf(pid: number, withChildren: boolean): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime, stime, cutime, cstime are fields 14-17 of stat, 12-15 after the name.
    const own = Number(fields[11]) + Number(fields[12]);
    const reaped = withChildren ? Number(fields[13]) + Number(fields[14]) : 0;
    return (own + reaped) * TICK_MS;
  } catch {
    return 0;
  }
}

/** sshd's CPU so far: the listener, its reaped children, and its live children (and theirs, one level). */
function sshdCpu(pid: number): number {
  let total = cpuOf(pid, true);
  for (const child of sshdChildren(pid)) {
    total += cpuOf(child, true);
    for (const grandchild of sshdChildren(child)) total += cpuOf(grandchild, false);
  }
  return total;
}

interface Variant {
  name: string;
  call(): Promise<void>;
  before?(): Promise<void>;
  wall: number[];
  cpu: number;
  sshd: number;
}

const calls = Number(arg("calls", "60"));
const beforeDir = arg("before", "");
const sshd = await startSshd();
const target = sshHostTarget(sshd, "bench-host");
const observe = (connector: Connector) => async () => {
  await connector.observe(target, { group: "root" });
};
const variants: Variant[] = [
  { name: "pooled", call: observe(sshHostConnector), wall: [], cpu: 0, sshd: 0 },
  {
    name: "new connection (pool emptied)",
    call: observe(sshHostConnector),
    before: () => sshHostPools.closeAll(),
    wall: [],
    cpu: 0,
    sshd: 0,
  },
];
if (beforeDir) {
  const path = join(resolve(beforeDir), "src/modules/connectors/ssh-host/ssh-host.connector.ts");
  const old = (await import(path)) as { sshHostConnector: Connector };
  variants.push({ name: `before (${beforeDir})`, call: observe(old.sshHostConnector), wall: [], cpu: 0, sshd: 0 });
}

try {
  for (const variant of variants) await variant.call(); // warm-up
  const load = loadavg()[0]!.toFixed(1);
  for (let i = 0; i < calls; i++) {
    for (const variant of variants) {
      await variant.before?.();
      // Let the emptied pool's connections end at the server before counting its CPU.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const sshdStart = sshdCpu(sshd.pid);
      const cpuStart = process.cpuUsage();
      const started = performance.now();
      await variant.call();
      variant.wall.push(performance.now() - started);
      const cpu = process.cpuUsage(cpuStart);
      variant.cpu += (cpu.user + cpu.system) / 1000;
      // A connection closed by the call ends at the server a moment later.
      await new Promise((resolve) => setTimeout(resolve, 20));
      variant.sshd += sshdCpu(sshd.pid) - sshdStart;
    }
  }
  console.log(`ssh-host observe, ${calls} calls per variant, load ${load} → ${loadavg()[0]!.toFixed(1)}`);
  for (const variant of variants) {
    const sorted = [...variant.wall].sort((a, b) => a - b);
    const p50 = sorted[Math.floor(sorted.length / 2)]!;
    const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
    console.log(
      `  ${variant.name.padEnd(34)} p50 ${p50.toFixed(1)} ms, mean ${mean.toFixed(1)} ms, ` +
        `Stint CPU ${(variant.cpu / calls).toFixed(2)} ms/call, sshd CPU ${(variant.sshd / calls).toFixed(1)} ms/call`,
    );
  }
} finally {
  await sshHostPools.closeAll();
  await sshd.stop();
}
