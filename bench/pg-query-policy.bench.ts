/**
 * Query policy overhead (issue 18, acceptance 2): `pgbench -S` through Stint's PostgreSQL proxy with
 * the policy off and on, in the same run: two roles on one target, one whose policy has
 * `session.queries: { allow: [select] }` (every statement parsed by PostgreSQL's parser and checked),
 * one without. Runs alternate (off, on, off, on, …) `--rounds` times; prints tps and the proxy
 * process's CPU per transaction for each, the medians, the ratio on/off, and PASS when the median
 * tps ratio is at least 0.90.
 *
 *   node --import tsx bench/pg-query-policy.bench.ts [--seconds=10] [--rounds=3] [--mode=simple|extended|prepared]
 *
 * pgbench's default (simple) protocol writes each transaction's account id into the query text, so
 * every statement is a new text: the parse cache cannot help, every query is parsed. With
 * --mode=extended the text repeats ($1) and each Parse is a cache hit; prepared parses once per client.
 * Stint and the proxy run in this process (its store on PGlite in memory); pgbench is a child process
 * against the machine's PostgreSQL. CPU per transaction (process.cpuUsage) hardly depends on what else
 * runs on the machine; tps does, which is why the runs alternate.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import os from "node:os";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { destination as logDestination } from "pino";
import { createLogger } from "../src/lib/logger.js";
import { startProxies } from "../src/proxies/index.js";
import { queryParserStats } from "../src/proxies/pg/query-policy.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../src/testing/server.js";

const CLIENTS = 8;
const THREADS = 2;
const SCALE = 10;
const WARMUP_SECONDS = 3;
const THRESHOLD = 0.9;
const PGBENCH_CANDIDATES = ["/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench"];

type Mode = "simple" | "extended" | "prepared";
type Policy = "off" | "on";

interface Options {
  seconds: number;
  rounds: number;
  mode: Mode;
}

interface Run {
  tps: number;
  transactions: number;
  cpuUsPerTx: number;
}

interface Endpoint {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

function exec(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function pgbenchEnv(endpoint: Endpoint): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGCONNECT_TIMEOUT: "10" };
  for (const key of ["PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGSSLMODE"]) delete env[key];
  if (endpoint.password !== undefined) env.PGPASSWORD = endpoint.password;
  return env;
}

async function pgbench(binary: string, what: string, endpoint: Endpoint, seconds: number, mode: Mode): Promise<Run> {
  const before = process.cpuUsage();
  const ran = await exec(
    binary,
    [
      ...["-S", "-n", "-M", mode, "-c", String(CLIENTS), "-j", String(THREADS), "-T", String(seconds)],
      ...["-h", endpoint.host, "-p", String(endpoint.port), "-U", endpoint.user, endpoint.database],
    ],
    pgbenchEnv(endpoint),
    (seconds + 60) * 1000,
  );
  const used = process.cpuUsage(before);
  const tps = /^tps = ([\d.]+)/m.exec(ran.stdout);
  const transactions = /^number of transactions actually processed: (\d+)/m.exec(ran.stdout);
  const failed = /^number of failed transactions: (\d+)/m.exec(ran.stdout);
  if (ran.code !== 0 || !tps || !transactions)
    throw new Error(`pgbench ${what} failed (exit ${ran.code}): ${(ran.stderr || ran.stdout).trim().slice(-800)}`);
  if (failed && failed[1] !== "0") throw new Error(`pgbench ${what}: ${failed[1]} failed transactions`);
  const count = Number(transactions[1]);
  return { tps: Number(tps[1]), transactions: count, cpuUsPerTx: (used.user + used.system) / count };
}

async function call(server: TestServer, auth: string, method: "GET" | "POST", url: string, payload?: object) {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: auth },
    ...(payload ? { payload } : {}),
  });
  const body = res.body ? (res.json() as Record<string, unknown>) : {};
  return { status: res.statusCode, body };
}

async function must(what: string, reply: Promise<{ status: number; body: Record<string, unknown> }>, status: number) {
  const got = await reply;
  if (got.status !== status)
    throw new Error(`${what}: expected ${status}, got ${got.status} ${JSON.stringify(got.body)}`);
  return got.body;
}

export interface QueryPolicyBenchResult {
  options: Options;
  runs: Record<Policy, Run[]>;
  median: { tps: Record<Policy, number>; cpuUsPerTx: Record<Policy, number> };
  ratio: number;
  pass: boolean;
  cache: { hits: number; misses: number };
  load: string;
}

export async function runQueryPolicyBench(options: Options): Promise<QueryPolicyBenchResult> {
  const progress = (line: string) => console.error(`· ${line}`);
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const binary = PGBENCH_CANDIDATES.find((file) => existsSync(file));
    if (binary === undefined) throw new Error("pgbench not found: install postgresql-client-15");
    const hex = randomBytes(4).toString("hex");
    const database = `stint_bench_qp_${hex}`;
    const reader = `stint_bench_qp_reader_${hex}`;
    const user = `qb${hex}`;
    const adminUrl = new URL(PG_ADMIN_URL);
    const direct: Endpoint = {
      host: adminUrl.hostname,
      port: Number(adminUrl.port || 5432),
      user: decodeURIComponent(adminUrl.username || "postgres"),
      database,
    };
    const root = new pg.Client({ connectionString: PG_ADMIN_URL });
    await root.connect();
    cleanups.push(async () => {
      await root.query(`drop database if exists ${database} with (force)`);
      const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
        `stint\\_${user}\\_%`,
      ]);
      for (const row of minted.rows) await root.query(`drop role if exists ${row.rolname}`);
      await root.query(`drop role if exists ${reader}`);
      await root.end();
    });
    await root.query(`create database ${database}`);
    await root.query(`create role ${reader} nologin`);
    progress(`pgbench -i -s ${SCALE} into ${database}`);
    const init = await exec(
      binary,
      ["-i", "-q", "-s", String(SCALE), "-h", direct.host, "-p", String(direct.port), "-U", direct.user, database],
      pgbenchEnv(direct),
      300_000,
    );
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr.slice(-800)}`);
    const targetUrl = new URL(PG_ADMIN_URL);
    targetUrl.pathname = `/${database}`;
    const db = new pg.Client({ connectionString: targetUrl.toString() });
    await db.connect();
    await db.query(`grant select on pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history to ${reader}`);
    await db.end();

    const server = await testServer("pglite", {
      env: { STINT_PG_PROXY_LISTEN: "127.0.0.1:0", STINT_SSH_PROXY_LISTEN: "off", STINT_RECONCILE_INTERVAL: "0" },
    });
    cleanups.push(() => server.cleanup());
    const proxies = await startProxies({
      config: server.config,
      sessions: server.sessions,
      logger: createLogger({ level: "warn", destination: logDestination(2) }),
    });
    cleanups.push(() => proxies.close());
    await must(
      "create user",
      call(server, server.adminAuth, "POST", "/v1/users", { name: user, password: passwordFor(user) }),
      201,
    );
    const roles: Record<Policy, string> = { off: "bench-qp-off", on: "bench-qp-on" };
    await must(
      "config apply",
      call(server, server.adminAuth, "POST", "/v1/config/apply", {
        yaml: `
apiVersion: stint/v1
policies:
  - name: bench-qp-off
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
  - name: bench-qp-on
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required, queries: { allow: [select] } }
targets:
  - name: bench-db
    kind: postgres
    address: ${targetUrl.toString()}?sslmode=disable
roles:
  - { name: ${roles.off}, target: bench-db, entitlement: { role: ${reader}, dynamic: true }, policy: bench-qp-off, risk: medium }
  - { name: ${roles.on}, target: bench-db, entitlement: { role: ${reader}, dynamic: true }, policy: bench-qp-on, risk: medium }
eligibility:
  - { role: ${roles.off}, users: [${user}] }
  - { role: ${roles.on}, users: [${user}] }
`,
      }),
      200,
    );
    const auth = await server.login(user);
    for (const role of Object.values(roles)) {
      const submitted = await must(
        `activate ${role}`,
        call(server, auth, "POST", "/v1/activation-requests", {
          role,
          duration: "1h",
          reason: "query policy benchmark",
        }),
        201,
      );
      for (let pass = 0; pass < 50 && (await server.outbox.runOnce()).claimed > 0; pass++);
      const request = await must(
        "request",
        call(server, auth, "GET", `/v1/activation-requests/${String(submitted.id)}`),
        200,
      );
      if (request.state !== "active") throw new Error(`activate ${role}: the request is ${String(request.state)}`);
    }
    const endpoint = async (policy: Policy): Promise<Endpoint> => {
      const token = await must("token", call(server, auth, "POST", "/v1/db/tokens", { role: roles[policy] }), 200);
      return {
        host: String(token.host),
        port: Number(token.port),
        user: String(token.user),
        database: String(token.database),
        password: String(token.password),
      };
    };

    progress(`warm-up, ${WARMUP_SECONDS} s each`);
    await pgbench(binary, "warm-up off", await endpoint("off"), WARMUP_SECONDS, options.mode);
    await pgbench(binary, "warm-up on", await endpoint("on"), WARMUP_SECONDS, options.mode);
    const cacheBefore = queryParserStats();
    const runs: Record<Policy, Run[]> = { off: [], on: [] };
    for (let round = 1; round <= options.rounds; round++) {
      for (const policy of ["off", "on"] as const) {
        const run = await pgbench(binary, policy, await endpoint(policy), options.seconds, options.mode);
        runs[policy].push(run);
        progress(
          `round ${round}/${options.rounds} policy ${policy.padEnd(3)} ${run.tps.toFixed(0).padStart(7)} tps, ` +
            `Stint CPU ${run.cpuUsPerTx.toFixed(1)} µs/tx`,
        );
      }
    }
    const cacheAfter = queryParserStats();
    const tps = { off: median(runs.off.map((r) => r.tps)), on: median(runs.on.map((r) => r.tps)) };
    const ratios = runs.on.map((run, i) => run.tps / runs.off[i]!.tps);
    const ratio = median(ratios);
    return {
      options,
      runs,
      median: {
        tps,
        cpuUsPerTx: { off: median(runs.off.map((r) => r.cpuUsPerTx)), on: median(runs.on.map((r) => r.cpuUsPerTx)) },
      },
      ratio,
      pass: ratio >= THRESHOLD,
      cache: { hits: cacheAfter.hits - cacheBefore.hits, misses: cacheAfter.misses - cacheBefore.misses },
      load: os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(", "),
    };
  } finally {
    for (const cleanup of cleanups.reverse())
      await cleanup().catch((error: unknown) => console.error(`cleanup failed: ${String(error)}`));
  }
}

export function formatQueryPolicyBench(result: QueryPolicyBenchResult): string {
  const { options, median: m } = result;
  return [
    `pgbench -S -M ${options.mode} -n -c ${CLIENTS} -j ${THREADS} -T ${options.seconds}, ${options.rounds} rounds, scale ${SCALE}`,
    `policy off: ${result.runs.off.map((r) => r.tps.toFixed(0)).join(" / ")} tps (median ${m.tps.off.toFixed(0)}), Stint CPU ${m.cpuUsPerTx.off.toFixed(1)} µs/tx`,
    `policy on:  ${result.runs.on.map((r) => r.tps.toFixed(0)).join(" / ")} tps (median ${m.tps.on.toFixed(0)}), Stint CPU ${m.cpuUsPerTx.on.toFixed(1)} µs/tx`,
    `parse cache during the measured runs: ${result.cache.hits} hits, ${result.cache.misses} misses`,
    `throughput with the policy on: ${(result.ratio * 100).toFixed(1)}% of off (median of per-round ratios); ` +
      `CPU +${(m.cpuUsPerTx.on - m.cpuUsPerTx.off).toFixed(1)} µs/tx`,
    `${result.pass ? "PASS" : "FAIL"} (threshold ${THRESHOLD * 100}%)   load average: ${result.load}`,
  ].join("\n");
}

function parseArgs(argv: string[]): Options {
  const options: Options = { seconds: 10, rounds: 3, mode: "simple" };
  for (const arg of argv) {
    const [key, value = ""] = arg.split("=", 2);
    if (key === "--seconds" && /^[1-9]\d*$/.test(value)) options.seconds = Number(value);
    else if (key === "--rounds" && /^[1-9]\d*$/.test(value)) options.rounds = Number(value);
    else if (key === "--mode" && ["simple", "extended", "prepared"].includes(value)) options.mode = value as Mode;
    else throw new Error(`unknown argument ${arg} (use --seconds=N, --rounds=N, --mode=simple|extended|prepared)`);
  }
  return options;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const cpus = os.cpus();
  console.log(
    `Stint query policy benchmark — node ${process.version}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "CPU"}`,
  );
  runQueryPolicyBench(parseArgs(process.argv.slice(2)))
    .then((result) => {
      console.log(formatQueryPolicyBench(result));
      if (!result.pass) process.exitCode = 1;
    })
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
