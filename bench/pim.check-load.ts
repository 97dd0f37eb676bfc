/**
 * pim.bench.ts's check-load scenario (issue 14 acceptance 3): its targets, its table and its verdicts. See
 * bench/README.md.
 */
import type { LoadResult } from "./http-load.js";

/** Acceptance 3 of issue 14: connections of the load generator, and the targets. */
export const LOAD_CONNECTIONS = 50;
export const LOAD_MIN_RATIO = 0.7;
export const LOAD_MAX_P99_MS = 5;
/** Bare and Stint alternate this many times, so that a busy moment of the host does not favour one. */
export const LOAD_ROUNDS = 3;
export interface LoadRow {
  engine: string;
  round: number;
  bare: LoadResult & { cpuPerRequest: number };
  stint: LoadResult & { cpuPerRequest: number };
}

function loadTable(rows: LoadRow[]): string {
  const lines = [
    "| engine | round | bare req/s | bare p99 ms | bare CPU µs/req | check req/s | check p50 ms | check p99 ms | check CPU µs/req | ratio (req/s) | ratio (CPU) |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.engine} | ${r.round} | ${Math.round(r.bare.perSecond)} | ${r.bare.p99.toFixed(2)} | ` +
        `${r.bare.cpuPerRequest.toFixed(0)} | ${Math.round(r.stint.perSecond)} | ${r.stint.p50.toFixed(2)} | ` +
        `${r.stint.p99.toFixed(2)} | ${r.stint.cpuPerRequest.toFixed(0)} | ` +
        `${(r.stint.perSecond / r.bare.perSecond).toFixed(2)} | ${(r.bare.cpuPerRequest / r.stint.cpuPerRequest).toFixed(2)} |`,
    );
  }
  return lines.join("\n");
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

/** One verdict per engine: the median round's ratio, and the worst round's p99. */
function loadVerdicts(rows: LoadRow[]): string[] {
  return [...new Set(rows.map((r) => r.engine))].map((engine) => {
    const mine = rows.filter((r) => r.engine === engine);
    const ratio = median(mine.map((r) => r.stint.perSecond / r.bare.perSecond));
    const p99 = Math.max(...mine.map((r) => r.stint.p99));
    const pass = ratio >= LOAD_MIN_RATIO && p99 <= LOAD_MAX_P99_MS;
    return (
      `acceptance 3, check API vs bare Fastify on ${engine}: median ratio ${ratio.toFixed(2)} ` +
      `(target ≥ ${LOAD_MIN_RATIO}), worst p99 ${p99.toFixed(2)} ms (target ≤ ${LOAD_MAX_P99_MS} ms): ${pass ? "PASS" : "FAIL"}`
    );
  });
}

/** The scenario's table and verdicts. */
export function loadLines(load: LoadRow[], loadSeconds: number): string[] {
  if (load.length === 0) return [];
  const lines: string[] = [];
  {
    lines.push(
      `\ncheck API under load (issue 14 acceptance 3): ${LOAD_CONNECTIONS} keep-alive connections from a separate ` +
        `process, ${loadSeconds} s per measure after 1 s of warm-up, bare Fastify (\`{}\`, no hooks, no ` +
        `logger) and Stint's GET /v1/check with a bearer token alternating ${LOAD_ROUNDS} times; PASS needs ` +
        `ratio ≥ ${LOAD_MIN_RATIO} and check p99 ≤ ${LOAD_MAX_P99_MS} ms. Half the answers are allowed; every ` +
        `answer is checked.`,
    );
    lines.push(loadTable(load));
    lines.push(
      "ratio (req/s) divides the two servers' requests/s; ratio (CPU) divides their CPU time per response in " +
        "this process (bare ÷ check), which a busy host disturbs less.",
    );
    for (const line of loadVerdicts(load)) lines.push(line);
  }
  return lines;
}
