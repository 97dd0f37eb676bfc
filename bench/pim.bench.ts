/**
 * PIM benchmark: time-to-elevate (submit → active on an auto-approved internal
 * role) at 1, 10 and 50 concurrent requesters, and check-API throughput at 1
 * and 16 concurrent callers, on PGlite in memory and PostgreSQL, each through
 * app.inject (in-process, no socket) and over real HTTP on 127.0.0.1; then the
 * check API over HTTP at 50 connections from a separate load-generator process
 * against a bare Fastify server answering `{}` started in the same run (issue 14
 * acceptance 3: ≥ 70% of its requests/s, p99 ≤ 5 ms); and, on PostgreSQL, how long a second node takes
 * to honour a change made on the first (issue 14 item 2, goal p99 < 100 ms).
 *
 *   node --import tsx bench/pim.bench.ts [--users=50] [--elevations=200] [--checks=2000]
 *     [--engines=pglite,postgres] [--transports=inject,http] [--scenarios=elevate,check,check-load]
 *     [--load-seconds=5] [--levels=1,10,50] [--profile=DIR] [--statements]
 *
 * `--profile=DIR` writes a V8 CPU profile of this process during each elevate level at 50 requesters (DIR/
 * pim-<engine>-<via>-<requesters>.cpuprofile) and prints where its time went per elevation (`cpu-profile.ts`);
 * `--statements` counts the statements sent to PostgreSQL during those levels, by kind, per elevation.
 *
 * See bench/README.md for what the figures mean.
 */
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { AddressInfo } from "node:net";
import Fastify from "fastify";
import type { Engine } from "../src/lib/db.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { AUTO_APPROVED_POLICY, seedRole, seedUser } from "../src/testing/pim.js";
import { testServer, type TestServer } from "../src/testing/server.js";
import { startCpuProfile, summarize, summaryLines } from "./cpu-profile.js";
import { loadHttp, type LoadRequest } from "./http-load.js";
import { rawHttpClient } from "./raw-http.js";
import { LOAD_CONNECTIONS, LOAD_ROUNDS, loadLines, type LoadRow } from "./pim.check-load.js";
import { benchStaleness, stalenessLines, type StalenessRow } from "./pim.staleness.js";
import {
  cpuMeter,
  ELEVATE_GOAL_P99_MS,
  ELEVATE_JUDGED_CONCURRENCY,
  elevateCpu,
  elevateCpuLines,
  elevateIdle,
  IDLE_MS,
  measureChaining,
  statementTally,
  type Transport,
} from "./pim.cpu.js";

const ELEVATE_CONCURRENCY = [1, 10, 50];
/** Ends the http transport's client connections (before the server closes). */
const clientClosers: (() => void)[] = [];
/** What `--profile` and `--statements` found, printed after the tables. */
const examinedLines: string[] = [];
/** Each elevate level's first elevation per requester (the synchronized start, not in the percentiles), as table rows. */
const startLines: string[] = [];
const CHECK_CONCURRENCY = [1, 16];
const ROLE = "bench-elevate";
const WARMUP_ELEVATIONS = 20;
const WARMUP_CHECKS = 200;
/** Margin kept below the access-token lifetime: the run refuses to go on past it. */
const TOKEN_MARGIN_MS = 30_000;

type Scenario = "elevate" | "check" | "check-load" | "staleness";
const SCENARIOS: Scenario[] = ["elevate", "check", "check-load", "staleness"];

interface Options {
  users: number;
  elevations: number;
  checks: number;
  /** No operation of a measured level starts after this many seconds. */
  levelSeconds: number;
  engines: Engine[];
  transports: Transport[];
  scenarios: Scenario[];
  loadSeconds: number;
  /** The elevate levels to measure (requesters). */
  levels: number[];
  /** Where to write CPU profiles of the levels at the judged concurrency. */
  profileDir: string | undefined;
  /** Count the statements sent to PostgreSQL during the levels at the judged concurrency. */
  statements: boolean;
  /** The client of the http transport. */
  httpClient: "raw" | "fetch";
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    users: 50,
    elevations: 200,
    checks: 2000,
    levelSeconds: 6,
    engines: ["pglite", "postgres"],
    transports: ["inject", "http"],
    scenarios: SCENARIOS,
    loadSeconds: 5,
    levels: ELEVATE_CONCURRENCY,
    profileDir: undefined,
    statements: false,
    httpClient: "raw",
  };
  const count = (value: string | undefined) => (value && /^[1-9]\d*$/.test(value) ? Number(value) : undefined);
  for (const arg of argv) {
    const [key, value] = arg.split("=", 2);
    if (key === "--users" && count(value)) options.users = count(value)!;
    else if (key === "--elevations" && count(value)) options.elevations = count(value)!;
    else if (key === "--checks" && count(value)) options.checks = count(value)!;
    else if (key === "--level-seconds" && count(value)) options.levelSeconds = count(value)!;
    else if (key === "--engines" && value && value.split(",").every((e) => e === "pglite" || e === "postgres"))
      options.engines = value.split(",") as Engine[];
    else if (key === "--transports" && value && value.split(",").every((t) => t === "inject" || t === "http"))
      options.transports = value.split(",") as Transport[];
    else if (key === "--scenarios" && value && value.split(",").every((t) => SCENARIOS.includes(t as Scenario)))
      options.scenarios = value.split(",") as Scenario[];
    else if (key === "--load-seconds" && count(value)) options.loadSeconds = count(value)!;
    else if (key === "--levels" && value && value.split(",").every((v) => count(v)))
      options.levels = value.split(",").map(Number);
    else if (key === "--profile" && value) options.profileDir = value;
    else if (key === "--statements" && value === undefined) options.statements = true;
    else if (key === "--http-client" && (value === "raw" || value === "fetch")) options.httpClient = value;
    else
      throw new Error(
        `unknown argument ${arg} (use --users=N, --elevations=N, --checks=N, --level-seconds=N, ` +
          `--engines=pglite,postgres, --transports=inject,http, --scenarios=${SCENARIOS.join(",")}, --load-seconds=N, ` +
          `--levels=1,10,50, --profile=DIR, --statements, --http-client=raw|fetch)`,
      );
  }
  // One user per requester: fewer users (a quick run) measure fewer levels.
  if (options.users < 2) throw new Error("--users must be at least 2 (half of them hold the role for the checks)");
  return options;
}

/** The requester counts measured with `users` users. */
function elevateLevels(options: Options): number[] {
  return options.levels.filter((c) => c <= options.users);
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}
type Call = (method: "GET" | "POST", url: string, auth: string, payload?: object) => Promise<Reply>;

function injectCall(server: TestServer): Call {
  return async (method, url, auth, payload) => {
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(payload ? { payload } : {}),
    });
    return { status: res.statusCode, body: res.json() };
  };
}

/**
 * Real HTTP: the server listens on an ephemeral port; keep-alive connections from a lean client (`raw-http.ts`),
 * or fetch (undici) with `--http-client=fetch`, which cost this process more per call than the server did.
 */
async function httpCall(server: TestServer, client: Options["httpClient"]): Promise<Call> {
  if (!server.app.server.listening) await server.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = server.app.server.address() as AddressInfo;
  if (client === "raw") {
    const raw = rawHttpClient(port);
    clientClosers.push(() => raw.close());
    return (method, url, auth, payload) => raw.call(method, url, { authorization: auth }, payload);
  }
  const base = `http://127.0.0.1:${port}`;
  return async (method, url, auth, payload) => {
    const res = await fetch(base + url, {
      method,
      headers: payload
        ? { authorization: auth, "content-type": "application/json", connection: "keep-alive" }
        : { authorization: auth, connection: "keep-alive" },
      ...(payload ? { body: JSON.stringify(payload) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
}

function expectReply(what: string, reply: Reply, status: number, check: (body: Record<string, unknown>) => boolean) {
  if (reply.status !== status || !check(reply.body))
    throw new Error(`${what}: expected ${status}, got ${reply.status} ${JSON.stringify(reply.body)}`);
}

interface Row {
  engine: string;
  transport: Transport;
  scenario: string;
  concurrency: number;
  ops: number;
  capped: boolean;
  ms: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/**
 * Runs up to `ops` operations from `concurrency` workers sharing one queue; `op` returns the latency to
 * record. No operation starts after `budgetMs`, so a slow engine or a busy host reports fewer operations
 * (`capped`) rather than overrunning the run.
 *
 * With `startApart`, each worker's first operation counts in `ops` and in the time (so in ops/s) but its
 * latency goes to `start` instead of the percentiles: all workers send their first operation in the same
 * instant, a burst the closed loop makes once per level and never again (every requester's first submit
 * queued behind all the others', and over HTTP each opening its connection), which at 2,000 elevations
 * is 2.5% of the latencies, so the p99 would measure that burst instead of the level. `start` is printed
 * beside the table.
 */
async function run(
  ops: number,
  concurrency: number,
  op: (i: number, worker: number) => Promise<number>,
  budgetMs = Number.POSITIVE_INFINITY,
  startApart = false,
) {
  const all = new Float64Array(ops);
  const first = new Set<number>();
  let next = 0;
  const started = performance.now();
  const worker = async (w: number) => {
    let firstOfWorker = startApart;
    while (performance.now() - started < budgetMs) {
      const i = next++;
      if (i >= ops) return;
      if (firstOfWorker) first.add(i);
      firstOfWorker = false;
      all[i] = await op(i, w);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const ms = performance.now() - started;
  const done = Math.min(next, ops);
  const timed = all.subarray(0, done).filter((_, i) => !first.has(i) || first.size === done);
  const latencies = timed.sort();
  const start = Float64Array.from([...first].filter((i) => i < done).map((i) => all[i]!)).sort();
  return {
    ops: done,
    capped: done < ops,
    ms,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? Number.NaN,
    start: first.size === done ? undefined : start,
  };
}

interface Fixture {
  server: TestServer;
  users: { name: string; auth: string }[];
  checker: string;
  signedInAt: number;
}

async function setUp(engine: Engine, options: Options): Promise<Fixture> {
  const server = await testServer(engine);
  const names = Array.from({ length: options.users }, (_, i) => `bench-user-${String(i).padStart(3, "0")}`);
  for (const name of names) await seedUser(server, name, { groups: ["bench-requesters"] });
  await seedRole(server, {
    name: ROLE,
    risk: "low",
    policy: AUTO_APPROVED_POLICY,
    eligibleGroups: ["bench-requesters"],
  });
  const signedInAt = Date.now();
  const users = [];
  for (const name of names) users.push({ name, auth: await server.login(name) });
  // The check API is called by a service on behalf of others: a principal with the auditor role.
  const checker = await server.userWithRoles("bench-checker", ["auditor"]);
  return { server, users, checker, signedInAt };
}

/** Submits as `user` and returns the latency until the response says active; then deactivates (not timed). */
async function elevateOnce(call: Call, user: { name: string; auth: string }, n: number): Promise<number> {
  const started = performance.now();
  const submitted = await call("POST", "/v1/activation-requests", user.auth, {
    role: ROLE,
    duration: "30m",
    reason: `benchmark elevation number ${n}`,
  });
  const latency = performance.now() - started;
  expectReply(`submit as ${user.name}`, submitted, 201, (b) => b.state === "active");
  const ended = await call("POST", `/v1/me/roles/${ROLE}/deactivate`, user.auth);
  expectReply(`deactivate as ${user.name}`, ended, 200, (b) => b.state === "deactivated");
  return latency;
}

async function benchTransport(
  engine: Engine,
  transport: Transport,
  fixture: Fixture,
  options: Options,
  ttlMs: number,
): Promise<Row[]> {
  const { server, users, checker } = fixture;
  const call = transport === "inject" ? injectCall(server) : await httpCall(server, options.httpClient);
  const rows: Row[] = [];
  const budget = options.levelSeconds * 1000;
  const tokensStillValid = () => {
    if (Date.now() - fixture.signedInAt > ttlMs - TOKEN_MARGIN_MS)
      throw new Error("the run outlived the access tokens: use smaller --elevations/--checks");
  };
  const push = (scenario: string, concurrency: number, { start: _start, ...r }: Awaited<ReturnType<typeof run>>) => {
    rows.push({ engine: engine === "pglite" ? "pglite-memory" : engine, transport, scenario, concurrency, ...r });
    console.error(`  ${transport} ${scenario} c=${concurrency}: ${Math.round(r.ms)} ms, p50 ${r.p50.toFixed(2)} ms`);
  };

  if (options.scenarios.includes("elevate")) {
    // Every requester once: a token's first use verifies its signature and reads its session (then remembered).
    await run(Math.max(WARMUP_ELEVATIONS, users.length), 1, (i) => elevateOnce(call, users[i % users.length]!, i));
    // What the server spends with nothing asked of it (timers, the sequencer's poll, the index's checks): a
    // level's CPU includes it, more of it per elevation the slower the level.
    const idle = await cpuMeter(server, engine);
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    elevateIdle.push({ engine, transport, ...(await idle.stop()) });
    for (const concurrency of elevateLevels(options)) {
      tokensStillValid();
      const examined = concurrency === ELEVATE_JUDGED_CONCURRENCY;
      const profile = examined && options.profileDir ? await startCpuProfile() : undefined;
      const statements = examined && options.statements ? statementTally() : undefined;
      const cpu = await cpuMeter(server, engine);
      // Each worker is its own requester (a distinct user), so no request meets another's active grant.
      const r = await run(options.elevations, concurrency, (i, w) => elevateOnce(call, users[w]!, i), budget, true);
      push("time-to-elevate", concurrency, r);
      if (r.start && r.start.length > 1)
        startLines.push(
          `| ${engine} | ${transport} | ${concurrency} | ${r.start.length} | ${percentile(r.start, 50).toFixed(2)} | ` +
            `${percentile(r.start, 99).toFixed(2)} | ${r.start[r.start.length - 1]!.toFixed(2)} |`,
        );
      elevateCpu.push({ engine, transport, concurrency, ops: r.ops, ...(await cpu.stop()) });
      const what = `${engine} via ${transport} at ${concurrency} requesters`;
      if (statements) {
        const [head, ...table] = statements.stop(r.ops);
        examinedLines.push(`\n${what}: ${head}`, ...table);
      }
      if (profile) {
        const file = path.join(options.profileDir!, `pim-${engine}-${transport}-${concurrency}.cpuprofile`);
        const summary = summarize(await profile.stop(file));
        examinedLines.push(`\nCPU profile of this process, ${what} (${file}):`, ...summaryLines(summary, r.ops));
      }
    }
    if (engine === "postgres")
      await measureChaining(server, engine, transport, (concurrency) =>
        run(options.elevations, concurrency, (i, w) => elevateOnce(call, users[w]!, i), budget),
      );
  }
  if (!options.scenarios.includes("check")) return rows;

  // Check API: every other user holds an active activation, so the round-robin mix is half allowed.
  const active = await activateHalf(call, users);
  const checkOnce = async (i: number) => {
    const k = i % users.length;
    const url = `/v1/check?principal=${users[k]!.name}&role=${ROLE}`;
    const started = performance.now();
    const reply = await call("GET", url, checker);
    const latency = performance.now() - started;
    expectReply(`check ${users[k]!.name}`, reply, 200, (b) => b.allowed === (k % 2 === 0));
    return latency;
  };
  await run(WARMUP_CHECKS, 1, checkOnce);
  for (const concurrency of CHECK_CONCURRENCY) {
    tokensStillValid();
    push("check (50% allowed)", concurrency, await run(options.checks, concurrency, checkOnce, budget));
  }
  await deactivateAll(call, active);
  tokensStillValid();
  return rows;
}

/** Every other user (even indexes) activates the role; returns them. */
async function activateHalf(call: Call, users: Fixture["users"]) {
  const active = users.filter((_, i) => i % 2 === 0);
  for (const [i, user] of active.entries()) {
    const reply = await call("POST", "/v1/activation-requests", user.auth, {
      role: ROLE,
      reason: `benchmark standing activation ${i}`,
    });
    expectReply(`submit as ${user.name}`, reply, 201, (b) => b.state === "active");
  }
  return active;
}

async function deactivateAll(call: Call, active: Fixture["users"]) {
  for (const user of active) {
    const ended = await call("POST", `/v1/me/roles/${ROLE}/deactivate`, user.auth);
    expectReply(`deactivate as ${user.name}`, ended, 200, (b) => b.state === "deactivated");
  }
}

/** Runs the load against `port` and adds this process's CPU time per response (the servers live here). */
async function measured(port: number, requests: LoadRequest[], options: Options) {
  const before = process.cpuUsage();
  const result = await loadHttp({ port, requests, connections: LOAD_CONNECTIONS, seconds: options.loadSeconds });
  const used = process.cpuUsage(before);
  return { ...result, cpuPerRequest: (used.user + used.system) / Math.max(1, result.responses) };
}

/**
 * Acceptance 3 of issue 14: the check API over real HTTP with a bearer token at 50 connections from a
 * separate process, against a bare Fastify server answering `{}` measured in the same run, alternating.
 */
async function benchCheckLoad(engine: Engine, fixture: Fixture, options: Options): Promise<LoadRow[]> {
  const { server, users, checker } = fixture;
  const call = injectCall(server);
  const active = await activateHalf(call, users);
  // The http transport's scenarios may have made it listen already.
  if (!server.app.server.listening) await server.app.listen({ host: "127.0.0.1", port: 0 });
  const stintPort = (server.app.server.address() as AddressInfo).port;
  const bare = Fastify();
  bare.get("/", async () => ({}));
  await bare.listen({ host: "127.0.0.1", port: 0 });
  const barePort = (bare.server.address() as AddressInfo).port;
  const checks = users.map((user, k) => ({
    path: `/v1/check?principal=${user.name}&role=${ROLE}`,
    headers: { authorization: checker },
    expect: `"allowed":${k % 2 === 0}`,
  }));
  const rows: LoadRow[] = [];
  try {
    for (let round = 1; round <= LOAD_ROUNDS; round++) {
      const bareResult = await measured(barePort, [{ path: "/", expect: "{}" }], options);
      const stintResult = await measured(stintPort, checks, options);
      for (const [what, r] of [
        ["bare Fastify", bareResult],
        ["check API", stintResult],
      ] as const) {
        if (r.wrong > 0) throw new Error(`${what}: ${r.wrong} wrong answers, e.g. ${r.problems.join(" | ")}`);
        console.error(`  load round ${round} ${what}: ${Math.round(r.perSecond)} req/s, p99 ${r.p99.toFixed(2)} ms`);
      }
      rows.push({
        engine: engine === "pglite" ? "pglite-memory" : engine,
        round,
        bare: bareResult,
        stint: stintResult,
      });
    }
  } finally {
    await bare.close();
  }
  await deactivateAll(call, active);
  return rows;
}

async function benchEngine(engine: Engine, options: Options): Promise<{ rows: Row[]; load: LoadRow[] }> {
  const started = performance.now();
  const fixture = await setUp(engine, options);
  const rows: Row[] = [];
  const load: LoadRow[] = [];
  try {
    console.error(
      `# ${engine}: ${options.users} users seeded and signed in (${Math.round(performance.now() - started)} ms)`,
    );
    if (options.scenarios.includes("elevate") || options.scenarios.includes("check"))
      for (const transport of options.transports)
        rows.push(...(await benchTransport(engine, transport, fixture, options, fixture.server.config.accessTokenTtl)));
    if (options.scenarios.includes("check-load")) load.push(...(await benchCheckLoad(engine, fixture, options)));
  } finally {
    for (const close of clientClosers.splice(0)) close();
    await fixture.server.cleanup();
  }
  return { rows, load };
}

function table(rows: Row[]): string {
  const fmt = (n: number, digits = 0) =>
    n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const head = [
    "engine",
    "via",
    "scenario",
    "conc.",
    "ops",
    "total ms",
    "ops/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
  ];
  const body = rows.map((r) => [
    r.engine,
    r.transport,
    r.scenario,
    fmt(r.concurrency),
    fmt(r.ops) + (r.capped ? "*" : ""),
    fmt(r.ms),
    fmt((r.ops / r.ms) * 1000),
    fmt(r.p50, 2),
    fmt(r.p95, 2),
    fmt(r.p99, 2),
    fmt(r.max, 2),
  ]);
  const left = 3;
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (i < left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  const rule = "|" + widths.map((w, i) => (i < left ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|";
  return [line(head), rule, ...body.map(line)].join("\n");
}

function elevateVerdicts(rows: Row[]): string[] {
  return rows
    .filter(
      (r) =>
        r.engine === "postgres" && r.scenario === "time-to-elevate" && r.concurrency === ELEVATE_JUDGED_CONCURRENCY,
    )
    .map((r) => {
      const perSecond = rows
        .filter((o) => o.engine === r.engine && o.transport === r.transport && o.scenario === r.scenario)
        .map((o) => `${o.concurrency}: ${Math.round((o.ops / o.ms) * 1000)}/s`)
        .join(", ");
      return (
        `acceptance 2, time-to-elevate at ${r.concurrency} requesters on postgres via ${r.transport}: p99 ` +
        `${r.p99.toFixed(1)} ms (target < ${ELEVATE_GOAL_P99_MS} ms); elevations/s ${perSecond}: ` +
        `${r.p99 < ELEVATE_GOAL_P99_MS ? "PASS" : "FAIL"}`
      );
    });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const cpus = os.cpus();
  console.log(
    `Stint PIM benchmark — node ${process.version}, ${os.platform()} ${os.arch()}, ` +
      `${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ` +
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
  );
  console.log(
    `${options.users} users; per level up to ${options.elevations} elevations or ${options.checks} checks ` +
      `within ${options.levelSeconds} s; postgres: fresh database, pool of 10 (the default)`,
  );
  const started = performance.now();
  const rows: Row[] = [];
  const load: LoadRow[] = [];
  const skipped: string[] = [];
  let staleness: StalenessRow[] = [];
  for (const engine of options.engines) {
    try {
      if (options.scenarios.some((s) => s !== "staleness")) {
        const result = await benchEngine(engine, options);
        rows.push(...result.rows);
        load.push(...result.load);
      }
      if (engine === "postgres" && options.scenarios.includes("staleness")) staleness = await benchStaleness(ROLE);
    } catch (error) {
      if (engine === "postgres" && (error as { code?: string }).code === "ECONNREFUSED") {
        skipped.push(`postgres skipped: nothing listens at ${new URL(PG_ADMIN_URL).host} (set STINT_TEST_PG_URL)`);
      } else throw error;
    }
  }
  if (rows.length > 0) console.log(table(rows));
  console.log(
    "time-to-elevate: POST /v1/activation-requests until the response says active (the role is auto-approved and " +
      "internal, so activation is synchronous); ops/s = elevations/s. Each requester deactivates between submits " +
      "(not timed, but it shares the run). check: GET /v1/check by an auditor; ops/s = checks/s.",
  );
  console.log(
    "via inject = app.inject in-process: no socket, excludes network and HTTP parsing. via http = real HTTP on " +
      `127.0.0.1 with keep-alive connections (${options.httpClient === "raw" ? "a lean client, raw-http.ts" : "fetch"}); ` +
      "the client runs in the same process as the server.",
  );
  if (startLines.length > 0)
    console.log(
      [
        "time-to-elevate: each level's first submit of every requester (all sent in the same instant; over HTTP each",
        "opening its connection), counted in ops and ops/s but not in the percentiles above (see run()):",
        "| engine | via | conc. | first submits | p50 ms | p99 ms | max ms |",
        "|---|---|--:|--:|--:|--:|--:|",
        ...startLines,
      ].join("\n"),
    );
  for (const line of loadLines(load, options.loadSeconds)) console.log(line);
  for (const line of stalenessLines(staleness)) console.log(line);
  for (const line of elevateCpuLines()) console.log(line);
  for (const line of examinedLines) console.log(line);
  for (const line of elevateVerdicts(rows)) console.log(line);
  if (rows.some((r) => r.capped))
    console.log(`* cut short by the ${options.levelSeconds} s budget per level (--level-seconds).`);
  for (const line of skipped) console.log(line);
  console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
