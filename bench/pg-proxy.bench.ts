/**
 * PostgreSQL proxy benchmark (issue 14, acceptance 6): `pgbench -S -n -c 8 -j 2 -T <seconds>` straight to
 * the machine's PostgreSQL, through Debian's PgBouncer (session pooling, records nothing) and through
 * Stint's PostgreSQL proxy (a Stint database token as the password, a dynamic login minted upstream,
 * every query written to the session's recording) and through a bare Node relay (the floor: what Node's
 * sockets cost with nothing parsed or recorded), interleaved `--rounds` times. Prints tps per run, each
 * path's ratio to the direct run of its round, the medians, PASS when Stint's median ratio is at least
 * PgBouncer's, whether the bare relay's ratio reaches PgBouncer's (if not, the target is out of reach for
 * a relay in Node on this machine), and each proxy's CPU per transaction, user and system.
 *
 *   npm run bench:pgproxy -- [--seconds=15] [--rounds=3] [--engine=pglite|postgres] [--no-node-relay] [--rate=TPS]
 *
 * Stint (its store on PGlite in memory, or on a fresh database of the machine's PostgreSQL) and its
 * proxy run in this process, as they do in `stint server`; pgbench and pgbouncer are child processes.
 * Needs pgbench (PostgreSQL 15's client) and pgbouncer (`apt-get install -y -qq pgbouncer
 * postgresql-contrib` when missing). The database, logins, pgbouncer and temp files are removed at the
 * end, also on failure. `runPgProxyBench()` returns the figures for the throughput harness.
 *
 * To see where the proxy's CPU goes under this load: `--profile=/tmp/stint.cpuprofile` writes a CPU
 * profile of this process covering the first Stint run only (open it in Chrome DevTools).
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { Session as InspectorSession } from "node:inspector/promises";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { destination as logDestination } from "pino";
import { createLogger } from "../src/lib/logger.js";
import { startProxies } from "../src/proxies/index.js";
import type { Engine } from "../src/lib/db.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../src/testing/server.js";
import { exec, mustExec, startPgbouncer } from "./processes.js";

const CLIENTS = 8;
const THREADS = 2;
const SCALE = 10;
const WARMUP_SECONDS = 3;
const MAX_PASSES = 50;
const ROLE = "bench-pgproxy";
const PGBENCH_CANDIDATES = ["/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench"];
const PGBOUNCER = "/usr/sbin/pgbouncer";
/** Linux's USER_HZ: /proc's CPU times are in these ticks. */
const CLOCK_TICKS = 100;

export type PgProxyPath = "direct" | "pgbouncer" | "stint" | "node";
export const PG_PROXY_PATHS: readonly PgProxyPath[] = ["direct", "pgbouncer", "stint"];
/** By default also a bare Node relay (`on('data')` → `write`, nothing else) in this process, Node's floor. */
const WITH_NODE_RELAY: readonly PgProxyPath[] = [...PG_PROXY_PATHS, "node"];
type Proxied = "pgbouncer" | "stint" | "node";

export interface PgProxyBenchOptions {
  /** Seconds per pgbench run (15 in the acceptance). */
  seconds?: number;
  /** Interleaved rounds of direct / pgbouncer / stint (3 in the acceptance). */
  rounds?: number;
  /** Stint's own store; the proxied database is always the machine's PostgreSQL. */
  engine?: Engine;
  /** Progress lines (stderr by default). */
  progress?: (line: string) => void;
  /** Writes a CPU profile of this process (so of Stint's proxy) covering only the Stint runs. */
  profileFile?: string;
  /** A fourth path each round (default true): a bare Node relay in this process (what Node's sockets cost alone). */
  nodeRelay?: boolean;
  /**
   * pgbench -R: every path runs at this many transactions/s. CPU per transaction then compares paths
   * (and commits) at the same load: at full speed it falls as tps rises (more work per wake-up).
   */
  rate?: number;
}

export interface PgbenchRun {
  tps: number;
  latencyMs: number;
  transactions: number;
  /**
   * CPU the proxy itself spent per transaction (user + system, all its threads), in µs: Stint's whole
   * process, or the pgbouncer process; null for direct. Unlike tps it hardly depends on what else runs.
   */
  proxyCpuUsPerTx: number | null;
  /** The same, of which in the kernel (system time). */
  proxySystemUsPerTx: number | null;
  /**
   * The proxy's CPU per transaction in the steady state: from pgbench's first progress report (1 s in,
   * the sign-ins done) to its last, so without the sessions' opening and end. Null for direct.
   */
  steadyCpuUsPerTx: number | null;
  /**
   * This process's CPU during a direct run (Stint idle, nothing relayed), in ms per second: what its
   * timers and background work cost, included in Stint's figure. Null for the other paths.
   */
  idleCpuMsPerS: number | null;
}

export interface PgProxyBenchResult {
  seconds: number;
  /** pgbench -R, when the runs were rate-limited. */
  rate: number | null;
  rounds: number;
  /** tps and latency per path, one entry per round. */
  runs: Record<PgProxyPath, PgbenchRun[]>;
  /** Each run's tps divided by the direct run of its round (node: empty unless the bare relay ran). */
  ratios: Record<Proxied, number[]>;
  median: {
    tps: Record<PgProxyPath, number>;
    /** node: the bare Node relay's, null unless it ran. */
    ratio: { pgbouncer: number; stint: number; node: number | null };
    /** CPU per transaction (µs, user + system) of each proxy; node: the bare Node relay, null unless run. */
    proxyCpuUsPerTx: { pgbouncer: number; stint: number; node: number | null };
    /** Of which in the kernel. */
    proxySystemUsPerTx: { pgbouncer: number; stint: number; node: number | null };
    /** Per transaction in the steady state (without sign-ins and ends; see PgbenchRun). */
    steadyCpuUsPerTx: { pgbouncer: number; stint: number; node: number | null };
    /** This process's CPU while Stint relays nothing (during the direct runs), ms per second. */
    idleCpuMsPerS: number;
  };
  /** Stint's median ratio to direct is at least PgBouncer's. */
  pass: boolean;
  /**
   * The bare Node relay's median ratio is at least PgBouncer's: the target is within reach of a relay
   * in Node on this machine (false: out of reach whatever the proxy does; null: the relay did not run,
   * or the runs were rate-limited).
   */
  floorReaches: boolean | null;
  /** Sessions the proxy recorded during the runs (each pgbench client is one), and their recordings' bytes. */
  recorded: { sessions: number; withRecording: number; recordingBytes: number };
  load: { before: string; after: string };
}

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

// ---- child processes ----

async function uptime(): Promise<string> {
  const ran = await exec("uptime", []);
  return ran.code === 0
    ? ran.stdout.trim()
    : `load average: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(", ")}`;
}

// ---- pgbench ----

interface Endpoint {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
}

function pgbenchBinary(): string {
  const found = PGBENCH_CANDIDATES.find((file) => existsSync(file));
  if (found === undefined)
    throw new Error(`pgbench not found (looked at ${PGBENCH_CANDIDATES.join(", ")}): install postgresql-client-15`);
  return found;
}

function pgbenchEnv(endpoint: Endpoint): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGCONNECT_TIMEOUT: "10" };
  for (const key of ["PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGSSLMODE"]) delete env[key];
  if (endpoint.password !== undefined) env.PGPASSWORD = endpoint.password;
  return env;
}

interface CpuSeconds {
  user: number;
  system: number;
}

/** CPU seconds a process has used so far, from /proc. */
async function processCpuSeconds(pid: number): Promise<CpuSeconds> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
}

const thisProcessCpu = (): Promise<CpuSeconds> => {
  const used = process.cpuUsage();
  return Promise.resolve({ user: used.user / 1e6, system: used.system / 1e6 });
};

async function pgbench(
  binary: string,
  what: string,
  endpoint: Endpoint,
  seconds: number,
  proxyCpuSeconds: (() => Promise<CpuSeconds>) | null = null,
  rate?: number,
): Promise<PgbenchRun> {
  const cpuBefore = proxyCpuSeconds ? await proxyCpuSeconds() : null;
  // On a direct run this process relays nothing: its CPU meanwhile is its background cost.
  const idleBefore = proxyCpuSeconds ? null : { cpu: await thisProcessCpu(), at: performance.now() };
  // pgbench's progress each second, with the proxy's CPU read as each line arrives: the steady state
  // without the sign-ins (second 1) and the sessions' ends.
  const progress: { at: number; tps: number; cpu: Promise<CpuSeconds> }[] = [];
  let pendingText = "";
  const onStderr = (text: string): void => {
    const lines = (pendingText + text).split("\n");
    pendingText = lines.pop() ?? "";
    for (const line of lines) {
      const matched = /^progress: ([\d.]+) s, ([\d.]+) tps/.exec(line);
      if (matched && proxyCpuSeconds)
        progress.push({ at: Number(matched[1]), tps: Number(matched[2]), cpu: proxyCpuSeconds() });
    }
  };
  const ran = await exec(
    binary,
    [
      ...["-S", "-n", "-c", String(CLIENTS), "-j", String(THREADS), "-T", String(seconds), "-P", "1"],
      ...(rate === undefined ? [] : ["-R", String(rate)]),
      ...["-h", endpoint.host, "-p", String(endpoint.port), "-U", endpoint.user, endpoint.database],
    ],
    { env: pgbenchEnv(endpoint), timeoutMs: (seconds + 60) * 1000, onStderr },
  );
  const tps = /^tps = ([\d.]+)/m.exec(ran.stdout);
  const latency = /^latency average = ([\d.]+) ms/m.exec(ran.stdout);
  const transactions = /^number of transactions actually processed: (\d+)/m.exec(ran.stdout);
  const failed = /^number of failed transactions: (\d+)/m.exec(ran.stdout);
  if (ran.code !== 0 || !tps || !latency || !transactions)
    throw new Error(`pgbench ${what} failed (exit ${ran.code}): ${(ran.stderr || ran.stdout).trim().slice(-800)}`);
  if (failed && failed[1] !== "0") throw new Error(`pgbench ${what}: ${failed[1]} failed transactions`);
  const cpuAfter = proxyCpuSeconds ? await proxyCpuSeconds() : null;
  let idleCpuMsPerS: number | null = null;
  if (idleBefore !== null) {
    const idle = await thisProcessCpu();
    const used = idle.user + idle.system - idleBefore.cpu.user - idleBefore.cpu.system;
    idleCpuMsPerS = (used * 1e6) / (performance.now() - idleBefore.at);
  }
  const count = Number(transactions[1]);
  const perTx = (seconds: number) => (seconds * 1e6) / count;
  let steadyCpuUsPerTx: number | null = null;
  if (progress.length >= 3) {
    // From the end of second 1 to the last report before the end.
    const first = progress[0]!;
    const last = progress.at(-1)!;
    const [from, to] = [await first.cpu, await last.cpu];
    let steadyTx = 0;
    for (let i = 1; i < progress.length; i++) steadyTx += progress[i]!.tps * (progress[i]!.at - progress[i - 1]!.at);
    if (steadyTx > 0) steadyCpuUsPerTx = ((to.user + to.system - from.user - from.system) * 1e6) / steadyTx;
  }
  return {
    tps: Number(tps[1]),
    latencyMs: Number(latency[1]),
    transactions: count,
    proxyCpuUsPerTx:
      cpuBefore && cpuAfter ? perTx(cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system) : null,
    proxySystemUsPerTx: cpuBefore && cpuAfter ? perTx(cpuAfter.system - cpuBefore.system) : null,
    steadyCpuUsPerTx,
    idleCpuMsPerS,
  };
}

// ---- Node's floor ----

/**
 * The least a relay in Node does: each chunk read from one socket written to the other, nothing
 * parsed, nothing recorded (pgbench signs in to PostgreSQL through it directly).
 */
async function startNodeRelay(
  pgHost: string,
  pgPort: number,
  defer: (what: string, run: () => Promise<unknown>) => void,
): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = connect({ host: pgHost, port: pgPort, noDelay: true });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => socket.destroy());
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (chunk: Buffer) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  defer("close the Node relay", async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as AddressInfo).port;
}

// ---- pgbouncer ----

async function ensurePgbouncer(progress: (line: string) => void): Promise<void> {
  if (existsSync(PGBOUNCER)) return;
  progress("pgbouncer is missing: apt-get install -y -qq pgbouncer postgresql-contrib");
  const installed = await exec("apt-get", ["install", "-y", "-qq", "pgbouncer", "postgresql-contrib"], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    timeoutMs: 300_000,
  });
  if (installed.code !== 0 || !existsSync(PGBOUNCER))
    throw new Error(`apt-get install pgbouncer failed: ${installed.stderr.trim().split("\n").at(-1) ?? ""}`);
}

// ---- Stint ----

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function call(server: TestServer, auth: string, method: "GET" | "POST" | "PUT", url: string, payload?: object) {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: auth },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.body ? (res.json() as Record<string, unknown>) : {} } as Reply;
}

function expectStatus(what: string, reply: Reply, status: number) {
  if (reply.status !== status)
    throw new Error(`${what}: expected ${status}, got ${reply.status} ${JSON.stringify(reply.body)}`);
}

/** Runs the outbox until it claims nothing. */
async function drainOutbox(server: TestServer, what: string) {
  for (let pass = 0; ; pass++) {
    if (pass >= MAX_PASSES) throw new Error(`${what}: the outbox was still busy after ${MAX_PASSES} passes`);
    if ((await server.outbox.runOnce()).claimed === 0) return;
  }
}

interface SessionRow {
  user: string;
  kind: string;
  live: boolean;
  recording: { available: boolean; bytes: number } | null;
}

/** The user's postgres sessions once none is live (the proxy ends them just after the client leaves). */
async function recordedSessions(server: TestServer, user: string) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const listed = await call(server, server.adminAuth, "GET", "/v1/sessions?limit=1000");
    expectStatus("sessions", listed, 200);
    const mine = (listed.body.items as SessionRow[]).filter((s) => s.user === user && s.kind === "postgres");
    if (mine.every((s) => !s.live) || Date.now() > deadline)
      return {
        sessions: mine.length,
        withRecording: mine.filter((s) => s.recording?.available).length,
        recordingBytes: mine.reduce((sum, s) => sum + (s.recording?.bytes ?? 0), 0),
      };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ---- the benchmark ----

/**
 * Runs the comparison and returns its figures (formatPgProxyBench prints them). Stint's CPU per
 * transaction is this process's: run nothing else in it meanwhile.
 */
export async function runPgProxyBench(options: PgProxyBenchOptions = {}): Promise<PgProxyBenchResult> {
  const seconds = options.seconds ?? 15;
  const rounds = options.rounds ?? 3;
  const engine = options.engine ?? "pglite";
  const progress = options.progress ?? ((line: string) => console.error(`· ${line}`));
  const cleanups: { what: string; run: () => Promise<unknown> }[] = [];
  const defer = (what: string, run: () => Promise<unknown>) => cleanups.push({ what, run });
  try {
    const binary = pgbenchBinary();
    await ensurePgbouncer(progress);
    const loadBefore = await uptime();
    const hex = randomBytes(4).toString("hex");
    const database = `stint_bench_pgproxy_${hex}`;
    const reader = `stint_bench_pgproxy_reader_${hex}`;
    const user = `pb${hex}`;
    const adminUrl = new URL(PG_ADMIN_URL);
    const pgHost = adminUrl.hostname;
    const pgPort = Number(adminUrl.port || 5432);
    const pgAdminUser = decodeURIComponent(adminUrl.username || "postgres");
    const targetUrl = new URL(PG_ADMIN_URL);
    targetUrl.pathname = `/${database}`;

    // The pgbench database and the NOLOGIN role the minted logins join.
    const root = new pg.Client({ connectionString: PG_ADMIN_URL });
    await root.connect();
    defer("close the admin connection", () => root.end());
    defer("drop the database, the minted logins and the NOLOGIN role", async () => {
      await root.query(`drop database if exists ${database} with (force)`);
      const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
        `stint\\_${user}\\_%`,
      ]);
      for (const r of minted.rows) await root.query(`drop role if exists ${r.rolname}`);
      await root.query(`drop role if exists ${reader}`);
    });
    await root.query(`create database ${database}`);
    await root.query(`create role ${reader} nologin`);
    progress(`pgbench -i -s ${SCALE} into ${database}`);
    const direct: Endpoint = { host: pgHost, port: pgPort, user: pgAdminUser, database };
    await mustExec(
      "pgbench -i",
      binary,
      ["-i", "-q", "-s", String(SCALE), "-h", pgHost, "-p", String(pgPort), "-U", pgAdminUser, database],
      { env: pgbenchEnv(direct), timeoutMs: 300_000 },
    );
    {
      const db = new pg.Client({ connectionString: targetUrl.toString() });
      await db.connect();
      await db.query(
        `grant select on pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history to ${reader}`,
      );
      await db.end();
    }

    const bouncer = await startPgbouncer({
      binary: PGBOUNCER,
      database,
      pgPort,
      poolMode: "session",
      poolSize: CLIENTS * 2,
      defer,
    });
    const viaBouncer: Endpoint = { ...direct, host: "127.0.0.1", port: bouncer.port };
    const cpuOf: Record<PgProxyPath, (() => Promise<CpuSeconds>) | null> = {
      direct: null,
      pgbouncer: () => processCpuSeconds(bouncer.pid),
      // Stint's whole process: the proxy, its recordings, and whatever else the server does meanwhile.
      stint: thisProcessCpu,
      node: thisProcessCpu,
    };
    const withNode = options.nodeRelay ?? true;
    const paths = withNode ? WITH_NODE_RELAY : PG_PROXY_PATHS;
    const viaNode: Endpoint = withNode
      ? { ...direct, host: "127.0.0.1", port: await startNodeRelay(pgHost, pgPort, defer) }
      : direct;

    // Stint in this process, its PostgreSQL proxy on a free port, every session recorded.
    const server = await testServer(engine, {
      env: { STINT_PG_PROXY_LISTEN: "127.0.0.1:0", STINT_SSH_PROXY_LISTEN: "off", STINT_RECONCILE_INTERVAL: "0" },
    });
    defer("stop the Stint server", () => server.cleanup());
    const proxies = await startProxies({
      config: server.config,
      sessions: server.sessions,
      logger: createLogger({ level: "warn", destination: logDestination(2) }),
    });
    defer("close the proxy", () => proxies.close());
    if (!proxies.postgres) throw new Error("the PostgreSQL proxy did not start");

    expectStatus(
      `create ${user}`,
      await call(server, server.adminAuth, "POST", "/v1/users", { name: user, password: passwordFor(user) }),
      201,
    );
    expectStatus(
      "config apply",
      await call(server, server.adminAuth, "POST", "/v1/config/apply", {
        yaml: `
apiVersion: stint/v1
policies:
  - name: bench-recorded
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
targets:
  - name: bench-db
    kind: postgres
    address: ${targetUrl.toString()}?sslmode=disable
roles:
  - name: ${ROLE}
    target: bench-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: bench-recorded
    risk: medium
eligibility:
  - role: ${ROLE}
    users: [${user}]
`,
      }),
      200,
    );
    const auth = await server.login(user);
    const submitted = await call(server, auth, "POST", "/v1/activation-requests", {
      role: ROLE,
      duration: "1h",
      reason: "PostgreSQL proxy benchmark",
    });
    expectStatus(`activate ${ROLE}`, submitted, 201);
    await drainOutbox(server, `activate ${ROLE}`);
    const request = await call(server, auth, "GET", `/v1/activation-requests/${String(submitted.body.id)}`);
    if (request.body.state !== "active")
      throw new Error(`activate ${ROLE}: the request is ${String(request.body.state)}`);
    defer("deactivate", async () => {
      await call(server, auth, "POST", `/v1/me/roles/${ROLE}/deactivate`);
      await drainOutbox(server, "deactivate").catch(() => undefined);
    });
    const viaStint = async (): Promise<Endpoint> => {
      const token = await call(server, auth, "POST", "/v1/db/tokens", { role: ROLE });
      expectStatus("database token", token, 200);
      return {
        host: String(token.body.host),
        port: Number(token.body.port),
        user: String(token.body.user),
        database: String(token.body.database),
        password: String(token.body.password),
      };
    };

    progress(`warm-up, ${WARMUP_SECONDS} s on each path`);
    await pgbench(binary, "warm-up direct", direct, WARMUP_SECONDS);
    await pgbench(binary, "warm-up pgbouncer", viaBouncer, WARMUP_SECONDS);
    await pgbench(binary, "warm-up stint", await viaStint(), WARMUP_SECONDS);
    if (withNode) await pgbench(binary, "warm-up node", viaNode, WARMUP_SECONDS);

    const profiler = options.profileFile ? new InspectorSession() : null;
    const profiles: { profile: object }[] = [];
    if (profiler !== null) {
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.setSamplingInterval", { interval: 200 });
      defer("disconnect the profiler", async () => profiler.disconnect());
    }
    const runs: Record<PgProxyPath, PgbenchRun[]> = { direct: [], pgbouncer: [], stint: [], node: [] };
    const endpointOf = async (via: PgProxyPath) =>
      via === "direct" ? direct : via === "pgbouncer" ? viaBouncer : via === "node" ? viaNode : await viaStint();
    for (let round = 1; round <= rounds; round++) {
      for (const via of paths) {
        const endpoint = await endpointOf(via);
        const profiling = via === "stint" && profiler !== null;
        if (profiling) await profiler.post("Profiler.start");
        const run = await pgbench(binary, via, endpoint, seconds, cpuOf[via], options.rate);
        if (profiling) profiles.push(await profiler.post("Profiler.stop"));
        runs[via].push(run);
        const cpu =
          run.proxyCpuUsPerTx === null
            ? `, Stint idle ${run.idleCpuMsPerS!.toFixed(1)} ms CPU/s`
            : `, proxy CPU ${run.proxyCpuUsPerTx.toFixed(1)} µs/tx (user ` +
              `${(run.proxyCpuUsPerTx - run.proxySystemUsPerTx!).toFixed(1)}, system ${run.proxySystemUsPerTx!.toFixed(1)}, ` +
              `steady state ${run.steadyCpuUsPerTx?.toFixed(1) ?? "?"})`;
        progress(`round ${round}/${rounds} ${via.padEnd(9)} ${run.tps.toFixed(0).padStart(7)} tps${cpu}`);
      }
    }
    if (options.profileFile && profiles.length > 0) {
      // The first Stint run's profile (one file; open it in Chrome DevTools or speedscope).
      await writeFile(options.profileFile, JSON.stringify(profiles[0]!.profile));
      progress(`CPU profile of the first Stint run: ${options.profileFile}`);
    }
    const recorded = await recordedSessions(server, user);
    const ratioOf = (via: Proxied) => runs[via].map((run, i) => run.tps / runs.direct[i]!.tps);
    const ratios = { pgbouncer: ratioOf("pgbouncer"), stint: ratioOf("stint"), node: ratioOf("node") };
    const ratio = {
      pgbouncer: median(ratios.pgbouncer),
      stint: median(ratios.stint),
      node: withNode ? median(ratios.node) : null,
    };
    return {
      seconds,
      rate: options.rate ?? null,
      rounds,
      runs,
      ratios,
      median: {
        tps: {
          direct: median(runs.direct.map((r) => r.tps)),
          pgbouncer: median(runs.pgbouncer.map((r) => r.tps)),
          stint: median(runs.stint.map((r) => r.tps)),
          node: withNode ? median(runs.node.map((r) => r.tps)) : 0,
        },
        ratio,
        proxyCpuUsPerTx: {
          pgbouncer: median(runs.pgbouncer.map((r) => r.proxyCpuUsPerTx!)),
          stint: median(runs.stint.map((r) => r.proxyCpuUsPerTx!)),
          node: withNode ? median(runs.node.map((r) => r.proxyCpuUsPerTx!)) : null,
        },
        proxySystemUsPerTx: {
          pgbouncer: median(runs.pgbouncer.map((r) => r.proxySystemUsPerTx!)),
          stint: median(runs.stint.map((r) => r.proxySystemUsPerTx!)),
          node: withNode ? median(runs.node.map((r) => r.proxySystemUsPerTx!)) : null,
        },
        steadyCpuUsPerTx: {
          pgbouncer: median(runs.pgbouncer.map((r) => r.steadyCpuUsPerTx ?? Number.NaN)),
          stint: median(runs.stint.map((r) => r.steadyCpuUsPerTx ?? Number.NaN)),
          node: withNode ? median(runs.node.map((r) => r.steadyCpuUsPerTx ?? Number.NaN)) : null,
        },
        idleCpuMsPerS: median(runs.direct.map((r) => r.idleCpuMsPerS!)),
      },
      pass: ratio.stint >= ratio.pgbouncer,
      // At a fixed rate (-R) every path reaches it: the ratios then say nothing.
      floorReaches: ratio.node === null || options.rate !== undefined ? null : ratio.node >= ratio.pgbouncer,
      recorded,
      load: { before: loadBefore, after: await uptime() },
    };
  } finally {
    for (const step of cleanups.reverse())
      await step.run().catch((error: unknown) => console.error(`cleanup: ${step.what} failed: ${String(error)}`));
  }
}

export function formatPgProxyBench(result: PgProxyBenchResult): string {
  const lines: string[] = [];
  lines.push(
    `pgbench -S -n -c ${CLIENTS} -j ${THREADS} -T ${result.seconds}${result.rate === null ? "" : ` -R ${result.rate}`} (select-only, scale ${SCALE}), ` +
      `direct / PgBouncer (session pooling) / Stint proxy (query recording on)` +
      `${result.median.ratio.node === null ? "" : " / bare Node relay"}, interleaved ${result.rounds}×`,
  );
  lines.push(
    `${"path".padEnd(11)}${result.runs.direct.map((_, i) => `run ${i + 1} tps`.padStart(13)).join("")}` +
      `${"median tps".padStart(12)}${"ratios to direct".padStart(24)}${"median ×".padStart(10)}`,
  );
  const shown = result.median.ratio.node === null ? PG_PROXY_PATHS : WITH_NODE_RELAY;
  for (const via of shown) {
    const ratios = via === "direct" ? [] : result.ratios[via];
    const ratio = via === "direct" ? 1 : result.median.ratio[via]!;
    lines.push(
      `${(via === "node" ? "node relay" : via).padEnd(11)}` +
        `${result.runs[via].map((r) => r.tps.toFixed(0).padStart(13)).join("")}` +
        `${result.median.tps[via].toFixed(0).padStart(12)}` +
        `${ratios
          .map((r) => r.toFixed(2))
          .join(" ")
          .padStart(24)}${ratio.toFixed(2).padStart(10)}`,
    );
  }
  lines.push(
    `${result.pass ? "PASS" : "FAIL"}: Stint's ratio to direct ${result.median.ratio.stint.toFixed(2)} ` +
      `${result.pass ? "≥" : "<"} PgBouncer's ${result.median.ratio.pgbouncer.toFixed(2)}`,
  );
  // One select per transaction (-S): µs per transaction is µs per relayed query.
  const { proxyCpuUsPerTx: cpu, proxySystemUsPerTx: system, steadyCpuUsPerTx: steady } = result.median;
  const figure = (total: number, kernel: number, steadyState: number | null) =>
    `${total.toFixed(1)} µs (user ${(total - kernel).toFixed(1)}, system ${kernel.toFixed(1)}; ` +
    `steady state ${steadyState?.toFixed(1) ?? "?"} µs)`;
  lines.push(
    `proxy CPU per query, median of the runs (whole run; steady state: without sign-ins and ends):`,
    `  PgBouncer               ${figure(cpu.pgbouncer, system.pgbouncer, steady.pgbouncer)}`,
    `  Stint                   ${figure(cpu.stint, system.stint, steady.stint)}, its whole process ` +
      `(${result.median.idleCpuMsPerS.toFixed(1)} ms CPU/s relaying nothing)`,
  );
  if (cpu.node !== null && system.node !== null && result.median.ratio.node !== null) {
    lines.push(`  bare Node relay (floor) ${figure(cpu.node, system.node, steady.node)}, same process`);
    const [floor, bouncer] = [result.median.ratio.node.toFixed(2), result.median.ratio.pgbouncer.toFixed(2)];
    const cpuFloor = `${cpu.node.toFixed(1)} µs/query against PgBouncer's ${cpu.pgbouncer.toFixed(1)}`;
    lines.push(
      result.floorReaches === null
        ? `floor: at -R ${result.rate ?? "?"} every path keeps the rate (ratios say nothing); the bare Node relay ${cpuFloor}`
        : result.floorReaches
          ? `floor: the bare Node relay's ratio ${floor} ≥ PgBouncer's ${bouncer}: the target is within Node's reach here`
          : `floor: the bare Node relay's ratio ${floor} < PgBouncer's ${bouncer}: out of reach for a relay in Node ` +
            `on this machine (${cpuFloor})`,
    );
  }
  lines.push(
    `Stint sessions: ${result.recorded.sessions} (${result.recorded.withRecording} with a recording, ` +
      `${(result.recorded.recordingBytes / 1e6).toFixed(1)} MB of query log)`,
  );
  lines.push(`uptime before: ${result.load.before}`);
  lines.push(`uptime after:  ${result.load.after}`);
  return lines.join("\n");
}

function parseArgs(argv: string[]): PgProxyBenchOptions {
  const options: PgProxyBenchOptions = {};
  const count = (value: string | undefined) => (value && /^[1-9]\d*$/.test(value) ? Number(value) : undefined);
  for (const arg of argv) {
    const [key, value] = arg.split("=", 2);
    if (key === "--seconds" && count(value)) options.seconds = count(value)!;
    else if (key === "--rounds" && count(value)) options.rounds = count(value)!;
    else if (key === "--engine" && (value === "pglite" || value === "postgres")) options.engine = value;
    else if (key === "--profile" && value) options.profileFile = path.resolve(value);
    else if (key === "--node-relay" && value === undefined) options.nodeRelay = true;
    else if (key === "--no-node-relay" && value === undefined) options.nodeRelay = false;
    else if (key === "--rate" && count(value)) options.rate = count(value)!;
    else
      throw new Error(
        `unknown argument ${arg} (use --seconds=N, --rounds=N, --engine=pglite|postgres, --profile=FILE.cpuprofile, --no-node-relay, --rate=TPS)`,
      );
  }
  return options;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const cpus = os.cpus();
  console.log(
    `Stint PostgreSQL proxy benchmark — node ${process.version}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}`,
  );
  // Ctrl-C reaches pgbench and pgbouncer too (one process group): the run then fails and cleans up.
  process.on("SIGINT", () => console.error("interrupted: cleaning up"));
  runPgProxyBench(parseArgs(process.argv.slice(2)))
    .then((result) => console.log(formatPgProxyBench(result)))
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
