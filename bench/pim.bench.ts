/**
 * PIM benchmark: time-to-elevate (submit → active on an auto-approved internal
 * role) at 1, 10 and 50 concurrent requesters, and check-API throughput at 1
 * and 16 concurrent callers, on PGlite in memory and PostgreSQL, each through
 * app.inject (in-process, no socket) and over real HTTP on 127.0.0.1.
 *
 *   node --import tsx bench/pim.bench.ts [--users=50] [--elevations=200] [--checks=2000]
 *     [--engines=pglite,postgres] [--transports=inject,http]
 *
 * See bench/README.md for what the figures mean.
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import type { AddressInfo } from "node:net";
import type { Engine } from "../src/lib/db.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { seedRole, seedUser } from "../src/testing/pim.js";
import { testServer, type TestServer } from "../src/testing/server.js";

const ELEVATE_CONCURRENCY = [1, 10, 50];
const CHECK_CONCURRENCY = [1, 16];
const ROLE = "bench-elevate";
const WARMUP_ELEVATIONS = 20;
const WARMUP_CHECKS = 200;
/** Margin kept below the access-token lifetime: the run refuses to go on past it. */
const TOKEN_MARGIN_MS = 30_000;

type Transport = "inject" | "http";

interface Options {
  users: number;
  elevations: number;
  checks: number;
  /** No operation of a measured level starts after this many seconds. */
  levelSeconds: number;
  engines: Engine[];
  transports: Transport[];
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    users: 50,
    elevations: 200,
    checks: 2000,
    levelSeconds: 6,
    engines: ["pglite", "postgres"],
    transports: ["inject", "http"],
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
    else
      throw new Error(
        `unknown argument ${arg} (use --users=N, --elevations=N, --checks=N, --level-seconds=N, ` +
          `--engines=pglite,postgres, --transports=inject,http)`,
      );
  }
  const most = Math.max(...ELEVATE_CONCURRENCY);
  if (options.users < most) throw new Error(`--users must be at least ${most} (one user per requester)`);
  if (options.elevations < most) throw new Error(`--elevations must be at least ${most}`);
  return options;
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

/** Real HTTP: the server listens on an ephemeral port; fetch (undici) keeps connections alive. */
async function httpCall(server: TestServer): Promise<Call> {
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = server.app.server.address() as AddressInfo;
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
 */
async function run(
  ops: number,
  concurrency: number,
  op: (i: number, worker: number) => Promise<number>,
  budgetMs = Number.POSITIVE_INFINITY,
) {
  const all = new Float64Array(ops);
  let next = 0;
  const started = performance.now();
  const worker = async (w: number) => {
    while (performance.now() - started < budgetMs) {
      const i = next++;
      if (i >= ops) return;
      all[i] = await op(i, w);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const ms = performance.now() - started;
  const done = Math.min(next, ops);
  const latencies = all.subarray(0, done).sort();
  return {
    ops: done,
    capped: done < ops,
    ms,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    max: latencies[done - 1] ?? Number.NaN,
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
    policy: {
      defaultDuration: "1h",
      maxDuration: "8h",
      approval: { stages: [] },
      mfa: { required: false, maxAge: "10m" },
      justification: { minLength: 10 },
    },
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
  const call = transport === "inject" ? injectCall(server) : await httpCall(server);
  const rows: Row[] = [];
  const budget = options.levelSeconds * 1000;
  const tokensStillValid = () => {
    if (Date.now() - fixture.signedInAt > ttlMs - TOKEN_MARGIN_MS)
      throw new Error("the run outlived the access tokens: use smaller --elevations/--checks");
  };
  const push = (scenario: string, concurrency: number, r: Awaited<ReturnType<typeof run>>) => {
    rows.push({ engine: engine === "pglite" ? "pglite-memory" : engine, transport, scenario, concurrency, ...r });
    console.error(`  ${transport} ${scenario} c=${concurrency}: ${Math.round(r.ms)} ms, p50 ${r.p50.toFixed(2)} ms`);
  };

  await run(WARMUP_ELEVATIONS, 1, (i) => elevateOnce(call, users[0]!, i));
  for (const concurrency of ELEVATE_CONCURRENCY) {
    tokensStillValid();
    // Each worker is its own requester (a distinct user), so no request meets another's active grant.
    const r = await run(options.elevations, concurrency, (i, w) => elevateOnce(call, users[w]!, i), budget);
    push("time-to-elevate", concurrency, r);
  }

  // Check API: every other user holds an active activation, so the round-robin mix is half allowed.
  const active = users.filter((_, i) => i % 2 === 0);
  for (const [i, user] of active.entries()) {
    const reply = await call("POST", "/v1/activation-requests", user.auth, {
      role: ROLE,
      reason: `benchmark standing activation ${i}`,
    });
    expectReply(`submit as ${user.name}`, reply, 201, (b) => b.state === "active");
  }
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
  for (const user of active) {
    const ended = await call("POST", `/v1/me/roles/${ROLE}/deactivate`, user.auth);
    expectReply(`deactivate as ${user.name}`, ended, 200, (b) => b.state === "deactivated");
  }
  tokensStillValid();
  return rows;
}

async function benchEngine(engine: Engine, options: Options): Promise<Row[]> {
  const started = performance.now();
  const fixture = await setUp(engine, options);
  const rows: Row[] = [];
  try {
    console.error(
      `# ${engine}: ${options.users} users seeded and signed in (${Math.round(performance.now() - started)} ms)`,
    );
    for (const transport of options.transports)
      rows.push(...(await benchTransport(engine, transport, fixture, options, fixture.server.config.accessTokenTtl)));
  } finally {
    await fixture.server.cleanup();
  }
  return rows;
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
  const skipped: string[] = [];
  for (const engine of options.engines) {
    try {
      rows.push(...(await benchEngine(engine, options)));
    } catch (error) {
      if (engine === "postgres" && (error as { code?: string }).code === "ECONNREFUSED") {
        skipped.push(`postgres skipped: nothing listens at ${new URL(PG_ADMIN_URL).host} (set STINT_TEST_PG_URL)`);
      } else throw error;
    }
  }
  console.log(table(rows));
  console.log(
    "time-to-elevate: POST /v1/activation-requests until the response says active (the role is auto-approved and " +
      "internal, so activation is synchronous); ops/s = elevations/s. Each requester deactivates between submits " +
      "(not timed, but it shares the run). check: GET /v1/check by an auditor; ops/s = checks/s.",
  );
  console.log(
    "via inject = app.inject in-process: no socket, excludes network and HTTP parsing. via http = real HTTP on " +
      "127.0.0.1 with keep-alive fetch; the client runs in the same process as the server.",
  );
  if (rows.some((r) => r.capped))
    console.log(`* cut short by the ${options.levelSeconds} s budget per level (--level-seconds).`);
  for (const line of skipped) console.log(line);
  console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
