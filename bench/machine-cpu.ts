/**
 * Where the whole machine's CPU went over a stretch of a benchmark (Linux, from /proc): every process's time on
 * CPU (`/proc/<pid>/stat`, user and system, all its threads, in clock ticks of 10 ms) put in the groups the
 * caller names, and the machine's
 * busy time (`/proc/stat`: all CPUs, kernel work outside any process included), so that what no group claims is
 * "the rest of the machine" (other processes, interrupts). Null where /proc cannot be read.
 *
 *   const before = await machineCpu();
 *   …
 *   const split = cpuSplit(before, await machineCpu(), (p) => (p.comm === "postgres" ? "PostgreSQL" : undefined));
 */
import { readdir, readFile } from "node:fs/promises";

interface ProcessCpu {
  comm: string;
  /** The command line, words joined by spaces (PostgreSQL puts its role, database and client here). */
  cmd: string;
  /** Time on CPU so far (all threads), ns. */
  ns: number;
  /** Time on CPU of its children that exited and were waited for, ns (a load generator run as a child). */
  childrenNs: number;
}

export interface MachineCpu {
  /** Busy time of all CPUs so far, ns (user, nice, system, irq, softirq, steal). */
  busyNs: number;
  processes: Map<number, ProcessCpu>;
}

/** `/proc/stat`'s clock ticks (USER_HZ, 100 on Linux) in ns. */
const TICK_NS = 10_000_000;

async function processCpu(pid: number): Promise<ProcessCpu | undefined> {
  try {
    const [stat, cmdline] = await Promise.all([
      readFile(`/proc/${pid}/stat`, "utf8"),
      readFile(`/proc/${pid}/cmdline`, "utf8"),
    ]);
    const close = stat.lastIndexOf(")");
    const fields = stat.slice(close + 2).split(" ");
    return {
      comm: stat.slice(stat.indexOf("(") + 1, close),
      cmd: cmdline.replaceAll("\0", " ").trim(),
      ns: (Number(fields[11]) + Number(fields[12])) * TICK_NS,
      childrenNs: (Number(fields[13]) + Number(fields[14])) * TICK_NS,
    };
  } catch {
    return undefined; // exited meanwhile
  }
}

export async function machineCpu(): Promise<MachineCpu | null> {
  try {
    const stat = await readFile("/proc/stat", "utf8");
    const [user, nice, system, , , irq, softirq, steal] = stat.split("\n")[0]!.split(/\s+/).slice(1).map(Number);
    const busyNs = (user! + nice! + system! + irq! + softirq! + steal!) * TICK_NS;
    const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name)).map(Number);
    const processes = new Map<number, ProcessCpu>();
    const read = await Promise.all(pids.map(processCpu));
    pids.forEach((pid, i) => {
      if (read[i]) processes.set(pid, read[i]);
    });
    return { busyNs, processes };
  } catch {
    return null;
  }
}

/**
 * CPU (ns) spent between two snapshots by each group `groupOf` names (undefined: the process counts in "rest"),
 * and the machine's busy time; a process born meanwhile counts from 0. The children a grouped process waited for
 * meanwhile count in "<group>'s children" (a child that exited before the second snapshot is seen only there).
 */
export function cpuSplit(
  before: MachineCpu | null,
  after: MachineCpu | null,
  groupOf: (process: ProcessCpu & { pid: number }) => string | undefined,
): { groups: Map<string, number>; busyNs: number; restNs: number } | null {
  if (!before || !after) return null;
  const groups = new Map<string, number>();
  let claimed = 0;
  const add = (group: string, used: number) => {
    if (used <= 0) return;
    groups.set(group, (groups.get(group) ?? 0) + used);
    claimed += used;
  };
  for (const [pid, now] of after.processes) {
    const was = before.processes.get(pid);
    const same = was !== undefined && was.comm === now.comm;
    const group = groupOf({ pid, ...now });
    if (group === undefined) continue;
    add(group, now.ns - (same ? was.ns : 0));
    add(`${group}'s children`, now.childrenNs - (same ? was.childrenNs : 0));
  }
  const busyNs = after.busyNs - before.busyNs;
  return { groups, busyNs, restNs: Math.max(0, busyNs - claimed) };
}
