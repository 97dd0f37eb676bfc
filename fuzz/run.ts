/**
 * `npm run fuzz -- [target…] [--execs=N] [--seconds=S] [--seed=N] [--save-new] [--stacks]`: runs each target in
 * turn until it has N executions or S seconds have passed (default 30 s per target when neither is
 * given; with both, whichever comes first), and prints executions, executions per second, new
 * corpus entries (inputs that showed a feature no earlier one did: kept in memory and mutated
 * further; written to fuzz/corpus/<target>/new-<hash>.bin with --save-new) and findings per target.
 * A finding (fast-check's shrunk counterexample) is written to fuzz/corpus/<target>/finding-<hash>.bin,
 * so it replays in CI once fixed. FUZZ_SECONDS is the old spelling of --seconds. Not run in CI.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
// Loaded first, statically: imported later (under tsx, from inside the http-api target's server start) its
// ESM build failed to link against @peculiar/asn1-x509's CommonJS build ("does not provide an export named
// 'BasicConstraints'") on every run here; loaded at start it links (10 of 10 runs). The cause inside the
// loader was not found: the same import order in a small script links either way.
import "@simplewebauthn/server";
import {
  CORPUS_DIR,
  FuzzFinding,
  describe,
  execute,
  inputs,
  kindOf,
  loadCorpus,
  pendingKinds,
  withFeatures,
  withFeaturesAsync,
  type AsyncFuzzTarget,
  type FuzzInput,
  type FuzzTarget,
} from "./harness.js";
import { TARGETS } from "./targets/index.js";

/** A single input slower than this is a finding: the parsers are synchronous, so it would stall a server. */
const SLOW_MS = 1000;
/** The HTTP API and the SSH proxy answer in milliseconds, not microseconds: a slow input there is one over 10 s. */
const SLOW_ASYNC_MS = 10_000;
/** Inputs kept for new features, per target (memory stays bounded on long runs). */
const MAX_POOL = 20_000;
/** A progress line every this many executions (stderr), so a long background run shows where it is. */
const PROGRESS_EVERY = 100_000;

/** Targets that start a server: loaded only when asked for (they pull in the whole application). */
const ASYNC_TARGETS: Record<string, () => Promise<AsyncFuzzTarget<unknown>>> = {
  "http-api": async () => (await import("./targets/http-api.js")).httpApi as AsyncFuzzTarget<unknown>,
  "ssh-handshake": async () => (await import("./targets/ssh-handshake.js")).sshHandshake as AsyncFuzzTarget<unknown>,
};
const ALL = [...TARGETS.map((t) => t.name), ...Object.keys(ASYNC_TARGETS)];

const args = process.argv.slice(2);
const option = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? undefined;
const flag = (name: string) => args.includes(`--${name}`);
const number = (name: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined;
  const n = Number(value.replace(/_/g, ""));
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number, not ${value}`);
    process.exit(2);
  }
  return n;
};
const unknown = args.filter(
  (a) => a.startsWith("-") && !/^--(execs|seconds|seed)=/.test(a) && a !== "--save-new" && a !== "--stacks",
);
if (unknown.length > 0 || flag("help")) {
  console.error(
    `usage: npm run fuzz -- [target…] [--execs=N] [--seconds=S] [--seed=N] [--save-new] [--stacks]\ntargets: ${ALL.join(", ")}`,
  );
  process.exit(2);
}
const maxExecs = number("execs", option("execs"));
const seconds = number("seconds", option("seconds") ?? process.env.FUZZ_SECONDS) ?? (maxExecs ? undefined : 30);
const baseSeed = number("seed", option("seed"));
const saveNew = flag("save-new");
// Parsers refuse most inputs by throwing, and capturing a stack is much of what a refusal costs;
// findings are reported by message and replay from their file (--stacks keeps them).
if (!flag("stacks")) Error.stackTraceLimit = 0;
const wanted = args.filter((a) => !a.startsWith("-"));
const names = wanted.length > 0 ? ALL.filter((name) => wanted.includes(name)) : ALL;
if (names.length === 0 || wanted.some((w) => !ALL.includes(w))) {
  console.error(`no such target: ${wanted.filter((w) => !ALL.includes(w)).join(", ")}; targets: ${ALL.join(", ")}`);
  process.exit(2);
}

type Result = fc.RunDetails<[FuzzInput]>;

interface Campaign {
  name: string;
  started: number;
  deadline: number;
  executions: number;
  /** Features seen so far, and the inputs kept for showing new ones (also the mutation pool). */
  seen: Set<string>;
  pool: Buffer[];
  fresh: Buffer[];
  /** Findings by kind (kindOf their message), with the first message. */
  findings: Map<string, string>;
  /** Kinds of the open findings in fuzz/pending/<target>, and those this run met again. */
  pending: Set<string>;
  known: Set<string>;
}

function newCampaign(name: string, pool: Buffer[], pending = new Set<string>()): Campaign {
  const started = Date.now();
  return {
    name,
    started,
    deadline: seconds === undefined ? Number.POSITIVE_INFINITY : started + seconds * 1000,
    executions: 0,
    seen: new Set(),
    pool,
    fresh: [],
    findings: new Map(),
    pending,
    known: new Set(),
  };
}

/** The committed corpus's features count as seen: "new" is what this run found beyond it. */
function learn(c: Campaign, features: Set<string>): void {
  for (const f of features) c.seen.add(f);
}

/** After a passing execution: keep the input when it showed a feature not seen before. */
function observe(c: Campaign, bytes: Buffer, features: Set<string>): void {
  let novel = false;
  for (const f of features) {
    if (!c.seen.has(f)) {
      c.seen.add(f);
      novel = true;
    }
  }
  if (novel && c.pool.length < MAX_POOL) {
    c.pool.push(bytes);
    c.fresh.push(bytes);
  }
  if (++c.executions % PROGRESS_EVERY === 0) progress(c);
}

function progress(c: Campaign): void {
  const elapsed = (Date.now() - c.started) / 1000;
  console.error(
    `[${c.name}] ${c.executions} executions, ${Math.round(c.executions / elapsed)}/s, ` +
      `${c.fresh.length} new, ${c.findings.size} findings, ${Math.round(elapsed)} s`,
  );
}

/**
 * An input that took too long by the clock runs again, timed by this process's CPU time: on a
 * shared machine a busy neighbour (or a garbage collection) stretches the clock, not the CPU time.
 */
function slowAgain(run: () => void, limitMs: number): void {
  const before = process.cpuUsage();
  run();
  const cpu = process.cpuUsage(before);
  const ms = (cpu.user + cpu.system) / 1000;
  if (ms > limitMs) throw new FuzzFinding(`one input took ${Math.round(ms)} ms of CPU time`);
}

const remaining = (c: Campaign) => (maxExecs === undefined ? Number.MAX_SAFE_INTEGER : maxExecs - c.executions);
const going = (c: Campaign) => remaining(c) > 0 && Date.now() < c.deadline;

/** Runs fast-check until the budget is spent, again after each failure; records each distinct finding. */
async function campaign(
  c: Campaign,
  run: (numRuns: number, timeLimit: number | undefined, seed: number) => Result | Promise<Result>,
) {
  let round = 0;
  while (going(c)) {
    const timeLimit = Number.isFinite(c.deadline) ? Math.max(1, c.deadline - Date.now()) : undefined;
    const seed = baseSeed === undefined ? Date.now() | 0 : (baseSeed + round++) | 0;
    const result = await run(remaining(c), timeLimit, seed);
    if (!result.failed || result.counterexample === null) continue;
    const [input] = result.counterexample;
    const hash = createHash("sha256").update(input.bytes).digest("hex").slice(0, 16);
    const message = result.errorInstance === null ? "failed" : describe(result.errorInstance);
    // One file per kind of finding: the same bug found again with other bytes is not news.
    const kind = kindOf(result.errorInstance ?? message);
    if (c.findings.has(kind) || c.known.has(kind)) continue;
    if (c.pending.has(kind)) {
      c.known.add(kind);
      console.log(`[${c.name}] known open finding (fuzz/pending/${c.name}): ${message}`);
      continue;
    }
    c.findings.set(kind, message);
    const dir = join(CORPUS_DIR, c.name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `finding-${hash}.bin`), input.bytes);
    console.log(`[${c.name}] FINDING finding-${hash}.bin (seed ${seed}): ${message}`);
  }
}

const options = (numRuns: number, timeLimit: number | undefined, seed: number) => ({
  numRuns,
  ...(timeLimit === undefined ? {} : { interruptAfterTimeLimit: timeLimit }),
  seed,
});

async function fuzzSync(target: FuzzTarget): Promise<Campaign> {
  const c = newCampaign(
    target.name,
    loadCorpus(target.name).map(([, bytes]) => bytes),
    pendingKinds(target.check, target.name),
  );
  for (const bytes of c.pool) {
    try {
      learn(c, withFeatures(() => target.check(bytes)).features);
    } catch {
      // A corpus entry that fails is found again (and reported) by the campaign.
    }
  }
  const arbitrary = inputs(target, c.pool);
  await campaign(c, (numRuns, timeLimit, seed) =>
    fc.check(
      fc.property(arbitrary, (input: FuzzInput) => {
        const started = performance.now();
        const { features } = withFeatures(() => execute(target, input));
        if (performance.now() - started > SLOW_MS) slowAgain(() => execute(target, input), SLOW_MS);
        observe(c, input.bytes, features);
      }),
      options(numRuns, timeLimit, seed),
    ),
  );
  return c;
}

async function fuzzAsync(target: AsyncFuzzTarget<unknown>): Promise<Campaign> {
  const context = await target.setup();
  try {
    const c = newCampaign(
      target.name,
      loadCorpus(target.name).map(([, bytes]) => bytes),
    );
    for (const bytes of c.pool) {
      try {
        learn(c, (await withFeaturesAsync(() => target.check(context, bytes))).features);
      } catch {
        // Found again (and reported) by the campaign.
      }
    }
    const arbitrary = inputs({ name: target.name, check: () => undefined, valid: target.valid(context) }, c.pool);
    await campaign(c, (numRuns, timeLimit, seed) =>
      fc.check(
        fc.asyncProperty(arbitrary, async (input: FuzzInput) => {
          const started = performance.now();
          const { features } = await withFeaturesAsync(() => target.check(context, input.bytes));
          const took = performance.now() - started;
          if (took > SLOW_ASYNC_MS) throw new FuzzFinding(`one input took ${Math.round(took)} ms`);
          observe(c, input.bytes, features);
        }),
        options(numRuns, timeLimit, seed),
      ),
    );
    return c;
  } finally {
    await target.teardown(context);
  }
}

const rows: {
  target: string;
  executions: number;
  "exec/s": number;
  seconds: number;
  new: number;
  findings: number;
  known: number;
}[] = [];
for (const name of names) {
  const target = TARGETS.find((t) => t.name === name);
  const c = target ? await fuzzSync(target) : await fuzzAsync(await ASYNC_TARGETS[name]!());
  const elapsed = (Date.now() - c.started) / 1000;
  if (saveNew && c.fresh.length > 0) {
    const dir = join(CORPUS_DIR, name);
    mkdirSync(dir, { recursive: true });
    for (const bytes of c.fresh) {
      writeFileSync(join(dir, `new-${createHash("sha256").update(bytes).digest("hex").slice(0, 16)}.bin`), bytes);
    }
  }
  rows.push({
    target: name,
    executions: c.executions,
    "exec/s": Math.round(c.executions / elapsed),
    seconds: Math.round(elapsed),
    new: c.fresh.length,
    findings: c.findings.size,
    known: c.known.size,
  });
  console.log(
    `[${name}] ${c.executions} executions in ${Math.round(elapsed)} s (${Math.round(c.executions / elapsed)}/s), ` +
      `${c.fresh.length} new corpus entries, ${c.findings.size} findings, ${c.known.size} known open findings met again`,
  );
}
console.table(rows);
process.exitCode = rows.some((r) => r.findings > 0) ? 1 : 0;
