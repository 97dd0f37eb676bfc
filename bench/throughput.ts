/**
 * `npm run bench:throughput` — issue 14's acceptance in one run: every benchmark that judges one of its
 * targets, one after another (never two at once: they would measure each other), each in its own
 * process so one's leftovers cannot slow the next. Each benchmark prints its own table and PASS/FAIL
 * lines; this collects them, prints a summary with the machine and its load before and after each,
 * and writes everything to bench/results/latest.json.
 *
 *   node --import tsx bench/throughput.ts [--only=audit,pim,...] [--quick]
 *
 * `--quick` passes each benchmark its smaller sizes (a smoke run; the figures do not judge anything).
 * A benchmark of the built server (rss: `bin/stint.js`, dist/) gets it built first, before any benchmark
 * starts, when dist/ is missing or older than src/ (a fresh checkout has none; an old one would be measured
 * as if it were this code); a failed build stops the run there.
 */
import { spawn } from "node:child_process";
import { mkdir, readdir, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describeGauge, machineGauge } from "./machine-gauge.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Bench {
  name: string;
  /** What of issue 14's acceptance it shows. */
  judges: string;
  file: string;
  args: string[];
  quickArgs: string[];
  /** Runs the built server (dist/), not the sources. */
  usesBuild?: true;
}

const BENCHES: Bench[] = [
  {
    name: "audit",
    judges: "1: audited tx/s at 32 writers, verify events/s, chaining lag",
    file: "bench/audit.bench.ts",
    args: ["--engines=pglite-memory,postgres"],
    quickArgs: ["--engines=postgres", "--events=500", "--batched-events=1000"],
  },
  {
    name: "pim",
    judges: "2, 3: time-to-elevate at 1/10/50 requesters; check API against bare Fastify",
    file: "bench/pim.bench.ts",
    // 1,000 elevations a level: at 50 requesters ~20 each, so the p99 is read off ~950 steady-state submits
    // (the first submit of each requester is printed apart) rather than the 150 that 200 leave.
    args: ["--elevations=1000"],
    quickArgs: ["--users=10", "--elevations=50", "--checks=500", "--level-seconds=2"],
  },
  {
    name: "vault",
    judges: "4: secret reads at 16 readers",
    file: "bench/vault.bench.ts",
    args: [],
    quickArgs: [],
  },
  {
    name: "connectors",
    judges: "5: dynamic PostgreSQL login, submit → the login works",
    file: "bench/connectors.bench.ts",
    args: [],
    quickArgs: [],
  },
  {
    name: "pgproxy",
    judges: "6: pgbench -S through Stint's PostgreSQL proxy against PgBouncer",
    file: "bench/pg-proxy.bench.ts",
    args: [],
    quickArgs: [],
  },
  {
    name: "expiry",
    judges: "8a: 100,000 activations expiring in waves, lateness p99",
    file: "bench/expiry.bench.ts",
    args: [],
    quickArgs: ["--activations=10000", "--waves=2", "--gap-seconds=3"],
  },
  {
    name: "revoke",
    judges: "8b: revoke → every live session on every node closed, over 50 trials",
    file: "bench/revoke-sessions.bench.ts",
    args: [],
    quickArgs: ["--trials=5"],
  },
  {
    name: "rss",
    judges: "9: server RSS idle and after each of three repetitions (growth ≤ 10%)",
    file: "bench/rss.bench.ts",
    usesBuild: true,
    args: [],
    quickArgs: ["--repetitions=2", "--seconds=3"],
  },
  {
    name: "sshproxy",
    judges: "7: scp/sftp/rsync through Stint's SSH proxy against an OpenSSH jump host",
    file: "bench/ssh-proxy.bench.ts",
    args: [],
    quickArgs: [],
  },
];

interface Outcome {
  name: string;
  judges: string;
  exitCode: number | null;
  seconds: number;
  loadBefore: number[];
  loadAfter: number[];
  verdicts: string[];
  stdout: string;
}

function run(bench: Bench, quick: boolean): Promise<Outcome> {
  const started = Date.now();
  const loadBefore = os.loadavg();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", bench.file, ...(quick ? bench.quickArgs : bench.args)], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      process.stdout.write(chunk);
      stdout += chunk.toString("utf8");
    });
    child.on("close", (exitCode) => {
      const verdicts = stdout
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => /\b(PASS|FAIL)\b/.test(line));
      resolve({
        name: bench.name,
        judges: bench.judges,
        exitCode,
        seconds: Math.round((Date.now() - started) / 1000),
        loadBefore,
        loadAfter: os.loadavg(),
        verdicts,
        stdout,
      });
    });
  });
}

/** Why dist/ must be built before a benchmark runs the server from it, or null when it is up to date. */
async function buildNeeded(): Promise<string | null> {
  const built = await stat(path.join(ROOT, "dist/cli/main.js")).catch(() => null);
  if (!built) return "dist/ is missing";
  // What tsconfig.build.json compiles: src/ without tests and test support.
  const sources = (await readdir(path.join(ROOT, "src"), { recursive: true })).filter(
    (file) => file.endsWith(".ts") && !file.endsWith(".test.ts") && !file.startsWith(`testing${path.sep}`),
  );
  for (const file of sources)
    if ((await stat(path.join(ROOT, "src", file))).mtimeMs > built.mtimeMs) return `src/${file} is newer than dist/`;
  return null;
}

/** The server's part of `npm run build` (tsc -p tsconfig.build.json; the web app is not needed to measure it). */
function buildServer(): Promise<void> {
  const tsc = path.join(ROOT, "node_modules/typescript/bin/tsc");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: ROOT, stdio: "inherit" });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0
        ? resolve()
        : reject(
            new Error(`the server build (tsc -p tsconfig.build.json) failed with exit ${code}: no benchmark was run`),
          ),
    );
  });
}

async function main() {
  const args = process.argv.slice(2);
  const only = args
    .find((a) => a.startsWith("--only="))
    ?.slice("--only=".length)
    .split(",");
  const quick = args.includes("--quick");
  for (const arg of args)
    if (!arg.startsWith("--only=") && arg !== "--quick")
      throw new Error(`unknown argument ${arg} (use --only=a,b and --quick)`);
  const chosen = only ? BENCHES.filter((b) => only.includes(b.name)) : BENCHES;
  const usingBuild = chosen.filter((b) => b.usesBuild).map((b) => b.name);
  if (usingBuild.length > 0) {
    const why = await buildNeeded();
    if (why) {
      console.log(
        `${usingBuild.join(", ")} run${usingBuild.length === 1 ? "s" : ""} the built server and ${why}: building it`,
      );
      await buildServer();
    }
  }
  const cpus = os.cpus();
  const machine = `${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`;
  console.log(`Stint throughput run — ${new Date().toISOString()} — ${machine}${quick ? " — QUICK (not judged)" : ""}`);
  // Targets are absolute; the gauge says how fast this host is, to compare runs made on different ones.
  const gauge = await machineGauge();
  console.log(describeGauge(gauge));
  const outcomes: Outcome[] = [];
  for (const bench of chosen) {
    console.log(`\n=== ${bench.name} (${bench.judges}) ===`);
    outcomes.push(await run(bench, quick));
  }
  const load = (l: number[]) => l.map((n) => n.toFixed(2)).join(" ");
  console.log("\n=== summary ===");
  for (const o of outcomes) {
    console.log(
      `${o.name}: exit ${o.exitCode}, ${o.seconds} s, load before ${load(o.loadBefore)} after ${load(o.loadAfter)}`,
    );
    for (const v of o.verdicts) console.log(`  ${v}`);
    if (o.verdicts.length === 0) console.log("  (no PASS/FAIL line printed)");
  }
  const dir = path.join(ROOT, "bench", "results");
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, "latest.json"),
    `${JSON.stringify({ date: new Date().toISOString(), machine, gauge, quick, outcomes }, null, 2)}\n`,
  );
  console.log(`\nwrote bench/results/latest.json`);
  if (outcomes.some((o) => o.exitCode !== 0)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
