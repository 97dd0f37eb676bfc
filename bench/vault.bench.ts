/**
 * Vault benchmark, on PGlite in memory and on PostgreSQL (the control plane's engine):
 *
 * 1. secret reads: `GET /v1/secrets/:path/value` by a user the secrets allow (`platformRoles: [user]`), round
 *    robin over 100 secrets, at concurrency 1 and 16, through app.inject; then over real HTTP from a separate
 *    load-generator process at 16 connections, judged against issue 14 acceptance 4 (≥ 10,000 reads/s,
 *    p99 < 5 ms, every read with its audit event: the secret.read events are counted before and after).
 * 2. dynamic credentials: an activation of a role with `dynamic: true` at a postgres target (the machine's
 *    PostgreSQL), from submit through the outbox run at once to the minted login's credentials fetched and
 *    a connection with them reading the granted table; then from deactivate to the login dropped.
 *
 *   node --import tsx bench/vault.bench.ts [--reads=2000] [--secrets=100] [--issuances=30]
 *     [--engines=pglite,postgres] [--load-seconds=8] [--reads-only | --http-only] [--profile=FILE.cpuprofile]
 *     [--split]
 *
 * --split: the reads over HTTP first with the audit sequencer stopped, then its catch-up, then as they run:
 * prints the per-read CPU split (the server's and PostgreSQL's, the reads' own and the sequencer's share).
 *
 * The target database, its NOLOGIN role and every minted login are dropped at the end.
 */
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { Session as InspectorSession } from "node:inspector/promises";
import os from "node:os";
import { performance } from "node:perf_hooks";
import type { AddressInfo } from "node:net";
import { sql } from "kysely";
import pg from "pg";
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs } from "kysely";
import type { AppStore } from "../src/db/index.js";
import type { Engine } from "../src/lib/db.js";
import { describeNode } from "../src/testing/statements.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../src/testing/server.js";
import { dynamicRoleConfig } from "./connectors.target.js";
import { loadHttp } from "./http-load.js";
import { cpuSplit, machineCpu } from "./machine-cpu.js";

const READ_CONCURRENCY = [1, 16];
const WARMUP_READS = 100;
const WARMUP_ISSUANCES = 2;
/** Outbox passes allowed for one provisioning or drop before the run gives up. */
const MAX_PASSES = 50;
const ROLE = "bench-ledger-reader";
/** Issue 14 acceptance 4. */
const LOAD_READERS = 16;
const LOAD_MIN_PER_SECOND = 10_000;
const LOAD_MAX_P99_MS = 5;

interface Options {
  reads: number;
  secrets: number;
  issuances: number;
  engines: Engine[];
  loadSeconds: number;
  /** Skip the dynamic credentials (a read-only run). */
  readsOnly: boolean;
  /** Skip the app.inject levels: only the reads over HTTP (implies readsOnly). */
  httpOnly: boolean;
  /** A CPU profile of the server's process during the reads over HTTP (of the last engine run). */
  profileFile?: string;
  /** First a load with the sequencer stopped and its catch-up: the per-read CPU split (reads, sequencer). */
  split: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    reads: 2000,
    secrets: 100,
    issuances: 30,
    engines: ["pglite", "postgres"],
    loadSeconds: 8,
    readsOnly: false,
    httpOnly: false,
    split: false,
  };
  const count = (value: string | undefined) => (value && /^[1-9]\d*$/.test(value) ? Number(value) : undefined);
  for (const arg of argv) {
    const [key, value] = arg.split("=", 2);
    if (key === "--reads" && count(value)) options.reads = count(value)!;
    else if (key === "--secrets" && count(value)) options.secrets = count(value)!;
    else if (key === "--issuances" && count(value)) options.issuances = count(value)!;
    else if (key === "--engines" && value && value.split(",").every((e) => e === "pglite" || e === "postgres"))
      options.engines = value.split(",") as Engine[];
    else if (key === "--load-seconds" && count(value)) options.loadSeconds = count(value)!;
    else if (key === "--reads-only" && value === undefined) options.readsOnly = true;
    else if (key === "--http-only" && value === undefined) options.httpOnly = options.readsOnly = true;
    else if (key === "--profile" && value) options.profileFile = value;
    else if (key === "--split" && value === undefined) options.split = true;
    else
      throw new Error(
        "unknown argument " +
          `${arg} (use --reads=N, --secrets=N, --issuances=N, --engines=pglite,postgres, --load-seconds=N, --reads-only, --http-only, --profile=FILE.cpuprofile, --split)`,
      );
  }
  return options;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
function summary(label: string, samples: number[], extra = "") {
  const sorted = [...samples].sort((a, b) => a - b);
  const ms = (q: number) => quantile(sorted, q).toFixed(1).padStart(7);
  console.log(
    `${label.padEnd(48)} n=${String(sorted.length).padStart(5)}  p50 ${ms(0.5)} ms  p95 ${ms(0.95)} ms` +
      `  p99 ${ms(0.99)} ms  max ${sorted.at(-1)!.toFixed(1).padStart(7)} ms${extra}`,
  );
}

/**
 * Counts every statement and transaction the server sends to its store, background work included (the
 * audit sequencer): what a read costs in round trips, all in. BEGIN and COMMIT are not statements here.
 */
function storeCounter() {
  const counts = { statements: new Map<string, number>(), transactions: 0 };
  const plugin: KyselyPlugin = {
    transformQuery(args: PluginTransformQueryArgs) {
      const kind = describeNode(args.node);
      counts.statements.set(kind, (counts.statements.get(kind) ?? 0) + 1);
      return args.node;
    },
    transformResult: async (args: PluginTransformResultArgs) => args.result,
  };
  const wrap = (store: AppStore): AppStore => ({
    engine: store.engine,
    db: store.db.withPlugin(plugin),
    transaction: (fn) => {
      counts.transactions += 1;
      return store.transaction((tx) => fn(tx.withPlugin(plugin)));
    },
    migrate: (dir) => store.migrate(dir),
    ping: () => store.ping(),
    listen: (channel, onMessage, options) => store.listen(channel, onMessage, options),
    close: () => store.close(),
  });
  const snapshot = () => ({ statements: new Map(counts.statements), transactions: counts.transactions });
  /** Per `per` (reads): statements by kind and transactions since `before`. */
  const since = (before: ReturnType<typeof snapshot>, per: number) => {
    const parts: string[] = [];
    let total = 0;
    for (const [kind, n] of counts.statements) {
      const d = n - (before.statements.get(kind) ?? 0);
      if (d === 0) continue;
      total += d;
      parts.push(`${kind} ${(d / per).toFixed(3)}`);
    }
    const tx = (counts.transactions - before.transactions) / per;
    return `${(total / per).toFixed(3)} statements (${parts.join(", ")}), ${tx.toFixed(3)} transactions`;
  };
  return { wrap, snapshot, since };
}

/** The server process's CPU while it serves nothing (timers, heartbeats, the sequencer's polls), µs per ms. */
async function idleCpu(ms = 2000): Promise<number> {
  const before = process.cpuUsage();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / (performance.now() - started);
}

/**
 * CPU time (µs) of each PostgreSQL backend serving the store's database, by pid, from /proc (PostgreSQL on
 * this machine); null on PGlite (it runs in this process) or when /proc cannot be read.
 */
async function backendCpu(store: AppStore): Promise<Map<number, number> | null> {
  if (store.engine !== "postgres") return null;
  const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid()`.execute(store.db);
  const used = new Map<number, number>();
  try {
    for (const { pid } of rows) {
      const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
      used.set(pid, (Number(fields[11]) + Number(fields[12])) * 10_000); // utime + stime, ticks of 10 ms
    }
  } catch {
    return null;
  }
  return used;
}

function backendCpuSince(before: Map<number, number> | null, after: Map<number, number> | null): number | null {
  if (!before || !after) return null;
  let total = 0;
  for (const [pid, used] of after) total += used - (before.get(pid) ?? 0);
  return total;
}

/** CPU µs per operation, less what the process spends idle over the same time. */
function netCpuPerOp(cpu: NodeJS.CpuUsage, idlePerMs: number, ms: number, ops: number): number {
  return (cpu.user + cpu.system - idlePerMs * ms) / ops;
}

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

/** Runs `ops` operations from `concurrency` workers sharing one queue; returns latencies and wall time. */
async function run(ops: number, concurrency: number, op: (i: number) => Promise<number>) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < ops; i = next++) latencies.push(await op(i));
    }),
  );
  return { latencies, ms: performance.now() - started };
}

async function benchReads(
  server: TestServer,
  engine: Engine,
  options: Options,
  counter: ReturnType<typeof storeCounter>,
) {
  const paths = Array.from({ length: options.secrets }, (_, i) => `bench/app-${String(i).padStart(3, "0")}/token`);
  const values = paths.map(() => randomBytes(24).toString("base64url"));
  for (const [i, path] of paths.entries()) {
    const put = await call(server, server.adminAuth, "PUT", `/v1/secrets/${encodeURIComponent(path)}`, {
      kind: "api-key",
      value: values[i],
      platformRoles: ["user"],
    });
    expectStatus(`put ${path}`, put, 200);
  }
  const reader = await server.userWithRoles("bench-reader", ["user"]);
  const readOnce = async (i: number) => {
    const k = i % paths.length;
    const started = performance.now();
    const reply = await call(server, reader, "GET", `/v1/secrets/${encodeURIComponent(paths[k]!)}/value`);
    const latency = performance.now() - started;
    expectStatus(`read ${paths[k]}`, reply, 200);
    if (reply.body.value !== values[k]) throw new Error(`read ${paths[k]}: wrong value`);
    return latency;
  };
  await run(WARMUP_READS, 1, readOnce);
  for (const concurrency of options.httpOnly ? [] : READ_CONCURRENCY) {
    const idle = await idleCpu();
    const cpuBefore = process.cpuUsage();
    const { latencies, ms } = await run(options.reads, concurrency, readOnce);
    const cpu = process.cpuUsage(cpuBefore);
    summary(
      `${engine.padEnd(8)} secret read, concurrency ${concurrency}`,
      latencies,
      `  ${Math.round((latencies.length / ms) * 1000)} reads/s, ` +
        `CPU ${netCpuPerOp(cpu, idle, ms, latencies.length).toFixed(0)} µs/read net of idle`,
    );
  }

  // Acceptance 4: over real HTTP, 16 readers in another process; every read's audit event counted.
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const port = (server.app.server.address() as AddressInfo).port;
  const requests = paths.map((path, k) => ({
    path: `/v1/secrets/${encodeURIComponent(path)}/value`,
    headers: { authorization: reader },
    expect: values[k]!,
  }));
  const measure = (profileFile?: string) => measureLoad(server, counter, port, requests, options, profileFile);
  // The split: the reads with the sequencer stopped (their INSERTs alone), then its catch-up of what they left
  // (a few large passes), then the reads as they run (chained as they commit); the sequencer's share in steady
  // state is what the last adds to the first.
  let alone: Measured | undefined;
  if (options.split) {
    await server.auditSequencer.stop();
    alone = await measure();
    console.log(`${engine.padEnd(8)} reads with the sequencer stopped: ${describe(alone)}`);
    const backlog = Number((await server.audit.pendingStats()).count);
    const caught = await cpuOf(server.store, async () => {
      server.auditSequencer.start();
      while ((await server.audit.pendingStats()).count > 0) await new Promise((r) => setTimeout(r, 20));
    });
    console.log(
      `${engine.padEnd(8)} its catch-up of ${backlog} events: server ${(caught.server / backlog).toFixed(1)} µs/event` +
        (caught.db === null ? "" : `, PostgreSQL ${(caught.db / backlog).toFixed(1)} µs/event`),
    );
  }
  const all = await measure(options.profileFile);
  const pass =
    all.result.perSecond >= LOAD_MIN_PER_SECOND &&
    all.result.p99 < LOAD_MAX_P99_MS &&
    all.events === all.result.responses;
  console.log(
    `${engine.padEnd(8)} secret read over HTTP, ${LOAD_READERS} readers, ${options.loadSeconds} s: ` +
      `${Math.round(all.result.perSecond)} reads/s, p50 ${all.result.p50.toFixed(2)} ms, p99 ${all.result.p99.toFixed(2)} ms, ` +
      `secret.read events ${all.events} for ${all.result.responses} reads — acceptance 4 (≥ ${LOAD_MIN_PER_SECOND}/s, ` +
      `p99 < ${LOAD_MAX_P99_MS} ms, every read audited): ${pass ? "PASS" : "FAIL"}`,
  );
  console.log(`${engine.padEnd(8)}   ${describe(all)}`);
  if (alone) {
    const share = (a: number | null, b: number | null) => (a === null || b === null ? "n/a" : (a - b).toFixed(0));
    console.log(
      `${engine.padEnd(8)}   per read: server ${all.serverPerRead.toFixed(0)} µs (reads ${alone.serverPerRead.toFixed(0)}, ` +
        `sequencer ${share(all.serverPerRead, alone.serverPerRead)}), PostgreSQL ${all.dbPerRead?.toFixed(0) ?? "n/a"} µs ` +
        `(reads' INSERTs ${alone.dbPerRead?.toFixed(0) ?? "n/a"}, sequencer ${share(all.dbPerRead, alone.dbPerRead)})`,
    );
  }
}

/** The CPU (µs) `work` took in this process and in the store's PostgreSQL backends (null on PGlite). */
async function cpuOf(store: AppStore, work: () => Promise<void>) {
  const dbBefore = await backendCpu(store);
  const before = process.cpuUsage();
  await work();
  const used = process.cpuUsage(before);
  return { server: used.user + used.system, db: backendCpuSince(dbBefore, await backendCpu(store)) };
}

interface Measured {
  result: Awaited<ReturnType<typeof loadHttp>>;
  events: number;
  serverPerRead: number;
  dbPerRead: number | null;
  text: string;
}
const describe = (m: Measured) => m.text;

/** One load of reads over HTTP: its figures, the server's and PostgreSQL's CPU per read, the statements. */
async function measureLoad(
  server: TestServer,
  counter: ReturnType<typeof storeCounter>,
  port: number,
  requests: Parameters<typeof loadHttp>[0]["requests"],
  options: Options,
  profileFile?: string,
): Promise<Measured> {
  const readEvents = async () => {
    // One statement: an event is either waiting to be chained or chained, never both.
    const { rows } = await sql<{ n: number }>`select
        (select count(*) from audit_events where action = 'secret.read') +
        (select count(*) from audit_pending where action = 'secret.read') as n`.execute(server.store.db);
    return Number(rows[0]!.n);
  };
  const before = await readEvents();
  const statementsBefore = counter.snapshot();
  const batchesBefore = server.vault.readAuditStats();
  const idle = await idleCpu();
  const profiler = profileFile ? new InspectorSession() : null;
  if (profiler) {
    profiler.connect();
    await profiler.post("Profiler.enable");
    await profiler.post("Profiler.setSamplingInterval", { interval: 200 });
    await profiler.post("Profiler.start");
  }
  const machineBefore = await machineCpu();
  const dbBefore = await backendCpu(server.store);
  const cpuBefore = process.cpuUsage();
  const loadStarted = performance.now();
  const result = await loadHttp({ port, connections: LOAD_READERS, seconds: options.loadSeconds, requests });
  const cpu = process.cpuUsage(cpuBefore);
  const loadMs = performance.now() - loadStarted;
  const dbAfter = await backendCpu(server.store);
  const dbCpu = backendCpuSince(dbBefore, dbAfter);
  // This database's backends: those `backendCpu` found before or after (as its own figure counts them).
  const backends = new Set([...(dbBefore?.keys() ?? []), ...(dbAfter?.keys() ?? [])]);
  const machine = cpuSplit(machineBefore, await machineCpu(), (p) => {
    if (p.pid === process.pid) return "server";
    if (backends.has(p.pid)) return "its PostgreSQL backends";
    // The WAL writer, checkpointer and the like (another database's backends are another run's).
    return p.comm === "postgres" && /^postgres: [^:]+: [a-z ]+$/.test(p.cmd) ? "PostgreSQL's own processes" : undefined;
  });
  if (profiler) {
    const { profile } = await profiler.post("Profiler.stop");
    profiler.disconnect();
    await writeFile(profileFile!, JSON.stringify(profile));
    console.log(`CPU profile of the server's process during the reads over HTTP: ${profileFile}`);
  }
  const batches = server.vault.readAuditStats();
  const statements = counter.since(statementsBefore, result.responses);
  const events = (await readEvents()) - before;
  if (result.wrong > 0) throw new Error(`${result.wrong} wrong answers, e.g. ${result.problems.join(" | ")}`);
  // Where a read's cost goes in the server's process (this one; the load generator is another process).
  const readBatches = batches.batches - batchesBefore.batches;
  const n = result.responses;
  const serverPerRead = (cpu.user + cpu.system) / n;
  const dbPerRead = dbCpu === null ? null : dbCpu / n;
  const text =
    `${Math.round(result.perSecond)} reads/s, p99 ${result.p99.toFixed(2)} ms; server CPU ${serverPerRead.toFixed(0)} µs/read ` +
    `(user ${(cpu.user / n).toFixed(0)}, system ${(cpu.system / n).toFixed(0)}; ` +
    `${netCpuPerOp(cpu, idle, loadMs, n).toFixed(0)} net of idle, which was ${(idle / 10).toFixed(1)}% of a core); ` +
    (dbPerRead === null ? "" : `PostgreSQL backends ${dbPerRead.toFixed(0)} µs/read; `) +
    `${readBatches} audit batches, ${((batches.events - batchesBefore.events) / Math.max(1, readBatches)).toFixed(1)} reads/batch, ` +
    `${batches.stale - batchesBefore.stale} found stale, ` +
    `${((batches.commitMs - batchesBefore.commitMs) / Math.max(1, readBatches)).toFixed(2)} ms a batch's commit; ` +
    `per read: ${statements}; load average ${os.loadavg()[0]!.toFixed(1)}` +
    (machine === null
      ? ""
      : `\n  the machine's CPU per read (µs): ${(machine.busyNs / 1000 / n).toFixed(0)} busy in all = ` +
        [...machine.groups, ["the rest (other processes, interrupts)", machine.restNs] as const]
          .map(
            ([group, ns]) =>
              `${group === "server's children" ? "load generator" : group} ${(ns / 1000 / n).toFixed(0)}`,
          )
          .join(" + "));
  return { result, events, serverPerRead, dbPerRead, text };
}

interface Target {
  /** The target database's URL, for Stint's catalog and for the connections made with minted logins. */
  url: string;
  /** The NOLOGIN role the minted logins are made members of. */
  reader: string;
}

async function benchDynamic(server: TestServer, engine: Engine, options: Options, target: Target, user: string) {
  const created = await call(server, server.adminAuth, "POST", "/v1/users", {
    name: user,
    password: passwordFor(user),
  });
  expectStatus(`create ${user}`, created, 201);
  const apply = await call(server, server.adminAuth, "POST", "/v1/config/apply", {
    yaml: dynamicRoleConfig({ role: ROLE, url: target.url, reader: target.reader, users: [user] }),
  });
  expectStatus("config apply", apply, 200);
  const auth = await server.login(user);
  const root = new pg.Client({ connectionString: target.url });
  await root.connect();

  /** Runs the outbox until `done` holds, checking after each pass that claimed nothing more. */
  const runOutboxUntil = async (what: string, done: () => Promise<boolean>) => {
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      if ((await server.outbox.runOnce()).claimed === 0 && (await done())) return;
    }
    throw new Error(`${what}: not done after ${MAX_PASSES} outbox passes`);
  };

  const once = async (n: number) => {
    const started = performance.now();
    const submitted = await call(server, auth, "POST", "/v1/activation-requests", {
      role: ROLE,
      duration: "10m",
      reason: `benchmark of dynamic credentials, run ${n}`,
    });
    expectStatus("submit", submitted, 201);
    const id = String(submitted.body.id);
    await runOutboxUntil("provisioning", async () => {
      const now = await call(server, auth, "GET", `/v1/activation-requests/${id}`);
      expectStatus("request", now, 200);
      return now.body.state === "active";
    });
    const active = performance.now() - started;
    const creds = await call(server, auth, "GET", `/v1/me/roles/${ROLE}/credentials`);
    expectStatus("credentials", creds, 200);
    const login = String(creds.body.user);
    const client = new pg.Client({
      host: String(creds.body.host),
      port: Number(creds.body.port),
      database: String(creds.body.database),
      user: login,
      password: String(creds.body.password),
    });
    await client.connect();
    const rows = await client.query("select entry from ledger");
    if (rows.rowCount !== 1) throw new Error(`the minted login read ${rows.rowCount} rows, expected 1`);
    await client.end();
    const usable = performance.now() - started;

    const ending = performance.now();
    const ended = await call(server, auth, "POST", `/v1/me/roles/${ROLE}/deactivate`);
    expectStatus("deactivate", ended, 200);
    await runOutboxUntil("drop", async () => {
      const left = await root.query("select 1 from pg_roles where rolname = $1", [login]);
      return left.rowCount === 0;
    });
    return { active, usable, dropped: performance.now() - ending };
  };

  try {
    for (let i = 0; i < WARMUP_ISSUANCES; i++) await once(-i);
    const active: number[] = [];
    const usable: number[] = [];
    const dropped: number[] = [];
    for (let i = 0; i < options.issuances; i++) {
      const r = await once(i);
      active.push(r.active);
      usable.push(r.usable);
      dropped.push(r.dropped);
    }
    summary(`${engine.padEnd(8)} dynamic: submit → active`, active);
    summary(`${engine.padEnd(8)} dynamic: submit → credentials usable`, usable);
    summary(`${engine.padEnd(8)} dynamic: deactivate → login dropped`, dropped);
  } finally {
    await root.end();
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const cpus = os.cpus();
  console.log(
    `Stint vault benchmark — node ${process.version}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ` +
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
  );
  console.log(
    `${options.secrets} secrets, ${options.reads} reads per level via app.inject; ` +
      `${options.issuances} dynamic-credential issuances (after ${WARMUP_ISSUANCES} warm-up) per engine`,
  );
  const started = performance.now();
  const hex = randomBytes(4).toString("hex");
  const database = `stint_bench_vault_${hex}`;
  const reader = `stint_bench_vault_reader_${hex}`;
  const user = `vb${hex}`;
  const root = new pg.Client({ connectionString: PG_ADMIN_URL });
  await root.connect();
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${database}`;
  const target: Target = { url: url.toString(), reader };
  try {
    await root.query(`create database ${database}`);
    await root.query(`create role ${reader} nologin`);
    const db = new pg.Client({ connectionString: target.url });
    await db.connect();
    await db.query("create table ledger (entry text)");
    await db.query("insert into ledger values ('opening balance')");
    await db.query("revoke all on ledger from public");
    await db.query(`grant select on ledger to ${reader}`);
    await db.end();

    for (const engine of options.engines) {
      const counter = storeCounter();
      const server = await testServer(engine, { env: { STINT_RECONCILE_INTERVAL: "0" }, wrapStore: counter.wrap });
      try {
        await benchReads(server, engine, options, counter);
        if (!options.readsOnly) await benchDynamic(server, engine, options, target, user);
      } finally {
        await server.cleanup();
      }
    }
  } finally {
    await root.query(`drop database if exists ${database} with (force)`);
    const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
      `stint\\_${user}\\_%`,
    ]);
    for (const r of minted.rows) await root.query(`drop role if exists ${r.rolname}`);
    if (minted.rowCount) console.error(`dropped ${minted.rowCount} minted login(s) left behind`);
    await root.query(`drop role if exists ${reader}`);
    await root.end();
  }
  console.log(
    "secret read: GET /v1/secrets/:path/value by a user the secret allows (platformRoles: [user]); each read " +
      "has its audit event, committed (grouped with other reads') before the value is returned. Over HTTP: a " +
      "load generator in another process, keep-alive connections, every value checked; the events are counted " +
      "in the database before and after (the warm-up second's reads included on both sides).",
  );
  console.log(
    "dynamic: submit → the outbox run at once until the request is active → GET /v1/me/roles/:role/credentials → " +
      "a connection with the minted login reads the granted table. drop: deactivate → the outbox run until the " +
      "login is gone from pg_roles.",
  );
  console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
