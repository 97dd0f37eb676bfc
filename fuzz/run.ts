/**
 * `npm run fuzz [target…]`: runs each target for FUZZ_SECONDS (default 30) and prints executions
 * and findings. A finding (fast-check's shrunk counterexample) is written to
 * fuzz/corpus/<target>/finding-<hash>.bin, so it replays in CI once fixed. Not run in CI.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { CORPUS_DIR, FuzzFinding, describe, execute, inputs, loadCorpus, type FuzzInput } from "./harness.js";
import { TARGETS } from "./targets/index.js";

/** A single input slower than this is a finding: the parsers are synchronous, so it would stall a server. */
const SLOW_MS = 1000;

const seconds = Number(process.env.FUZZ_SECONDS ?? 30);
const wanted = process.argv.slice(2);
const targets = wanted.length > 0 ? TARGETS.filter((t) => wanted.includes(t.name)) : TARGETS;
if (targets.length === 0) {
  console.error(`no such target; targets: ${TARGETS.map((t) => t.name).join(", ")}`);
  process.exit(2);
}

const rows: { target: string; executions: number; findings: number; perSecond: number }[] = [];
for (const target of targets) {
  const seeds = loadCorpus(target.name).map(([, bytes]) => bytes);
  const arbitrary = inputs(target, seeds);
  const deadline = Date.now() + seconds * 1000;
  let executions = 0;
  const findings = new Map<string, string>();
  while (Date.now() < deadline) {
    const result = fc.check(
      fc.property(arbitrary, (input: FuzzInput) => {
        executions++;
        const started = performance.now();
        execute(target, input);
        const took = performance.now() - started;
        if (took > SLOW_MS) throw new FuzzFinding(`one input took ${Math.round(took)} ms`);
      }),
      { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: deadline - Date.now(), seed: Date.now() | 0 },
    );
    if (!result.failed || result.counterexample === null) continue;
    const [input] = result.counterexample as [FuzzInput];
    const hash = createHash("sha256").update(input.bytes).digest("hex").slice(0, 16);
    if (findings.has(hash)) continue;
    const message = result.errorInstance === null ? "failed" : describe(result.errorInstance);
    findings.set(hash, message);
    const dir = join(CORPUS_DIR, target.name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `finding-${hash}.bin`), input.bytes);
    console.log(`[${target.name}] FINDING finding-${hash}.bin: ${message}`);
  }
  rows.push({ target: target.name, executions, findings: findings.size, perSecond: Math.round(executions / seconds) });
  console.log(`[${target.name}] ${executions} executions in ${seconds} s, ${findings.size} findings`);
}
console.table(rows);
process.exitCode = rows.some((r) => r.findings > 0) ? 1 : 0;
