/**
 * `npm run fuzz [target…]`: runs each target for FUZZ_SECONDS (default 30) and prints executions
 * and findings. A finding (fast-check's shrunk counterexample) is written to
 * fuzz/corpus/<target>/finding-<hash>.bin, so it replays in CI once fixed. Not run in CI.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import {
  CORPUS_DIR,
  FuzzFinding,
  describe,
  execute,
  inputs,
  loadCorpus,
  type FuzzInput,
  type FuzzTarget,
} from "./harness.js";
import { httpApi } from "./targets/http-api.js";
import { TARGETS } from "./targets/index.js";

/** A single input slower than this is a finding: the parsers are synchronous, so it would stall a server. */
const SLOW_MS = 1000;

const seconds = Number(process.env.FUZZ_SECONDS ?? 30);
/** The HTTP API answers in milliseconds, not microseconds: a slow input there is one over 10 s. */
const SLOW_HTTP_MS = 10_000;
const ALL = [...TARGETS.map((t) => t.name), httpApi.name];
const wanted = process.argv.slice(2);
const names = wanted.length > 0 ? ALL.filter((name) => wanted.includes(name)) : ALL;
if (names.length === 0) {
  console.error(`no such target; targets: ${ALL.join(", ")}`);
  process.exit(2);
}

type Result = fc.RunDetails<[FuzzInput]>;

/** Runs fast-check until the deadline, again after each failure; records each distinct finding. */
async function campaign(name: string, run: (timeLimit: number) => Result | Promise<Result>) {
  const deadline = Date.now() + seconds * 1000;
  const findings = new Map<string, string>();
  while (Date.now() < deadline) {
    const result = await run(deadline - Date.now());
    if (!result.failed || result.counterexample === null) continue;
    const [input] = result.counterexample;
    const hash = createHash("sha256").update(input.bytes).digest("hex").slice(0, 16);
    if (findings.has(hash)) continue;
    const message = result.errorInstance === null ? "failed" : describe(result.errorInstance);
    findings.set(hash, message);
    const dir = join(CORPUS_DIR, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `finding-${hash}.bin`), input.bytes);
    console.log(`[${name}] FINDING finding-${hash}.bin: ${message}`);
  }
  return findings.size;
}

const options = (timeLimit: number) => ({
  numRuns: Number.MAX_SAFE_INTEGER,
  interruptAfterTimeLimit: timeLimit,
  seed: Date.now() | 0,
});

async function fuzzSync(target: FuzzTarget): Promise<{ executions: number; findings: number }> {
  const arbitrary = inputs(
    target,
    loadCorpus(target.name).map(([, bytes]) => bytes),
  );
  let executions = 0;
  const findings = await campaign(target.name, (timeLimit) =>
    fc.check(
      fc.property(arbitrary, (input: FuzzInput) => {
        executions++;
        const started = performance.now();
        execute(target, input);
        const took = performance.now() - started;
        if (took > SLOW_MS) throw new FuzzFinding(`one input took ${Math.round(took)} ms`);
      }),
      options(timeLimit),
    ),
  );
  return { executions, findings };
}

async function fuzzHttp(): Promise<{ executions: number; findings: number }> {
  const context = await httpApi.setup();
  try {
    const arbitrary = inputs({ name: httpApi.name, check: () => undefined, valid: httpApi.valid(context) }, [
      ...loadCorpus(httpApi.name).map(([, bytes]) => bytes),
    ]);
    let executions = 0;
    const findings = await campaign(httpApi.name, (timeLimit) =>
      fc.check(
        fc.asyncProperty(arbitrary, async (input: FuzzInput) => {
          executions++;
          const started = performance.now();
          await httpApi.check(context, input.bytes);
          const took = performance.now() - started;
          if (took > SLOW_HTTP_MS) throw new FuzzFinding(`one request took ${Math.round(took)} ms`);
        }),
        options(timeLimit),
      ),
    );
    return { executions, findings };
  } finally {
    await httpApi.teardown(context);
  }
}

const rows: { target: string; executions: number; findings: number; perSecond: number }[] = [];
for (const name of names) {
  const target = TARGETS.find((t) => t.name === name);
  const { executions, findings } = target ? await fuzzSync(target) : await fuzzHttp();
  rows.push({ target: name, executions, findings, perSecond: Math.round(executions / seconds) });
  console.log(`[${name}] ${executions} executions in ${seconds} s, ${findings} findings`);
}
console.table(rows);
process.exitCode = rows.some((r) => r.findings > 0) ? 1 : 0;
