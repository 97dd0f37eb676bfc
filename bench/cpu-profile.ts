/**
 * A V8 CPU profile of this process over a window (node:inspector, as `--cpu-prof` for part of a run), and where
 * its time went: each sample charged to a group of code (a package, a module of `src/`, Node's internals, the
 * garbage collector), and the `src/` functions by time spent in them and under them. A built-in (JSON, crypto,
 * a regular expression: no script of its own) is charged to the code that called it.
 */
import { Session } from "node:inspector/promises";
import { writeFile } from "node:fs/promises";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Starts sampling this process every `intervalUs`; `stop` returns the profile (and writes it to `file`). */
export async function startCpuProfile(intervalUs = 200) {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: intervalUs });
  await session.post("Profiler.start");
  return {
    async stop(file?: string): Promise<CpuProfile> {
      const { profile } = (await session.post("Profiler.stop")) as unknown as { profile: CpuProfile };
      session.disconnect();
      if (file) await writeFile(file, JSON.stringify(profile));
      return profile;
    },
  };
}

/** Packages counted together under one name. */
const PACKAGE_GROUPS: Record<string, string> = {
  fastify: "fastify",
  "find-my-way": "fastify",
  avvio: "fastify",
  "fast-json-stringify": "fastify",
  "fast-querystring": "fastify",
  "@fastify": "fastify",
  "light-my-request": "inject client (light-my-request)",
  zod: "zod",
  "fastify-type-provider-zod": "zod",
  kysely: "kysely",
  pg: "node-postgres",
  "pg-protocol": "node-postgres",
  "pg-types": "node-postgres",
  "pg-pool": "node-postgres",
  "postgres-date": "node-postgres",
  "postgres-array": "node-postgres",
  pino: "pino",
  "prom-client": "prom-client",
};

/** The group a frame's script belongs to, or undefined for a built-in (charged to its caller). */
export function groupOf(frame: CallFrame): string | undefined {
  const { url, functionName } = frame;
  if (url === "") {
    if (functionName === "(garbage collector)") return "GC";
    if (functionName === "(idle)") return "idle";
    if (functionName === "(program)") return "(program: V8 and native, no JS frame)";
    if (functionName === "(root)") return "(root)";
    return undefined;
  }
  if (url.startsWith("node:internal/deps/undici")) return "fetch client (undici)";
  if (url.startsWith("node:")) {
    const module = url.slice(url.startsWith("node:internal/") ? 14 : 5);
    return `node: ${module.replace(/\/.*$/, "").replace(/^(_http_\w+|http)$/, "http")}`;
  }
  const nm = url.lastIndexOf("/node_modules/");
  if (nm !== -1) {
    const name = url.slice(nm + 14).split("/")[0]!;
    return PACKAGE_GROUPS[name] ?? `package: ${name}`;
  }
  const src = url.indexOf("/src/");
  if (src !== -1) {
    const parts = url.slice(src + 5).split("/");
    if (parts[0] === "modules" || parts[0] === "proxies") return `src: ${parts[1]}`;
    return `src: ${parts[0]!.replace(/\.[jt]s$/, "")}${parts[0] === "lib" ? `/${parts[1]!.replace(/\.[jt]s$/, "")}` : ""}`;
  }
  if (url.includes("/bench/")) return "bench";
  return `other: ${url.slice(url.lastIndexOf("/") + 1)}`;
}

export interface ProfileSummary {
  /** Sampled ms in all (idle included). */
  totalMs: number;
  idleMs: number;
  /** Ms by group, largest first (idle excluded). */
  groups: [string, number][];
  /** `src/` functions: ms with the function on the stack (inclusive) and at its top (self, built-ins included). */
  functions: { name: string; inclusiveMs: number; selfMs: number }[];
}

export function summarize(profile: CpuProfile): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const srcName = (frame: CallFrame) => {
    const src = frame.url.indexOf("/src/");
    if (src === -1) return undefined;
    return `${frame.functionName || "(anonymous)"} ${frame.url.slice(src + 5)}:${frame.lineNumber + 1}`;
  };
  // Per node: its group (the first frame with a script, from the top of the stack down) and the src/ functions on its stack.
  const groupCache = new Map<number, string>();
  const stackCache = new Map<number, { names: string[]; self?: string }>();
  const groupFor = (id: number): string => {
    const cached = groupCache.get(id);
    if (cached !== undefined) return cached;
    let at: number | undefined = id;
    let group: string | undefined;
    while (at !== undefined && group === undefined) {
      group = groupOf(byId.get(at)!.callFrame);
      at = parent.get(at);
    }
    groupCache.set(id, group ?? "(built-in, no caller)");
    return groupCache.get(id)!;
  };
  const stackFor = (id: number) => {
    let cached = stackCache.get(id);
    if (cached) return cached;
    const names = new Set<string>();
    let self: string | undefined;
    let scripted = false;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      const name = srcName(frame);
      if (name) names.add(name);
      // Self: the topmost frame with a script, when it is src/ code (built-ins it called are its own time).
      if (!scripted && frame.url !== "") {
        scripted = true;
        self = name;
      }
    }
    cached = { names: [...names], ...(self ? { self } : {}) };
    stackCache.set(id, cached);
    return cached;
  };
  const groups = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const selfMs = new Map<string, number>();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    totalMs += ms;
    const group = groupFor(id);
    groups.set(group, (groups.get(group) ?? 0) + ms);
    const stack = stackFor(id);
    for (const name of stack.names) inclusive.set(name, (inclusive.get(name) ?? 0) + ms);
    if (stack.self) selfMs.set(stack.self, (selfMs.get(stack.self) ?? 0) + ms);
  });
  const idleMs = groups.get("idle") ?? 0;
  groups.delete("idle");
  return {
    totalMs,
    idleMs,
    groups: [...groups].sort((a, b) => b[1] - a[1]),
    functions: [...inclusive]
      .map(([name, ms]) => ({ name, inclusiveMs: ms, selfMs: selfMs.get(name) ?? 0 }))
      .sort((a, b) => b.inclusiveMs - a.inclusiveMs),
  };
}

/** The summary as text: groups and the top `top` src/ functions, in µs per operation. */
export function summaryLines(summary: ProfileSummary, ops: number, top = 30): string[] {
  const busy = summary.totalMs - summary.idleMs;
  const us = (ms: number) => ((ms * 1000) / ops).toFixed(0);
  const lines = [
    `sampled ${summary.totalMs.toFixed(0)} ms, busy ${busy.toFixed(0)} ms (${us(busy)} µs per operation over ${ops})`,
    "| group | µs/op | % of busy |",
    "|---|--:|--:|",
    ...summary.groups
      .filter(([, ms]) => ms / busy >= 0.002)
      .map(([group, ms]) => `| ${group} | ${us(ms)} | ${((100 * ms) / busy).toFixed(1)} |`),
    `\nsrc/ functions, top ${top} by time under them (inclusive), and at the top of the stack (self, with the built-ins they call):`,
    "| function | incl. µs/op | self µs/op |",
    "|---|--:|--:|",
    ...summary.functions.slice(0, top).map((f) => `| ${f.name} | ${us(f.inclusiveMs)} | ${us(f.selfMs)} |`),
    `\nsrc/ functions, top ${top} by self time:`,
    "| function | self µs/op | incl. µs/op |",
    "|---|--:|--:|",
    ...[...summary.functions]
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top)
      .map((f) => `| ${f.name} | ${us(f.selfMs)} | ${us(f.inclusiveMs)} |`),
  ];
  return lines;
}
