/**
 * Audit log benchmark: audited transactions per second (one event per
 * transaction at concurrency 1, 16 and 32; batches of 10 per transaction), the
 * chaining lag (event time → chained by the sequencer) and verify speed, on
 * PGlite in memory, PGlite on a temporary data directory and PostgreSQL.
 * Issue 14 acceptance 1 (PostgreSQL): ≥ 3,000 tx/s at 32 writers, verify
 * ≥ 200,000 events/s, chaining lag p99 ≤ 100 ms; printed as PASS/FAIL.
 *
 *   node --import tsx bench/audit.bench.ts [--events=4000] [--batched-events=20000]
 *     [--engines=pglite-memory,pglite-dir,postgres]
 *   node --import tsx bench/audit.bench.ts --verify-only[=100000] [--verify-runs=3] [--engines=postgres]
 *
 * `--verify-only=N` writes N events (500 per transaction, chained inline: quick) and times `verify` alone,
 * `--verify-runs` times in a row, with the CPU it spends per event in this process (robust under load).
 *
 * See bench/README.md for what the figures mean.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { sql } from "kysely";
import pg from "pg";
import { MIGRATIONS_DIR, openAppStore, type AppStore } from "../src/db/index.js";
import { systemClock } from "../src/lib/clock.js";
import { createAuditLog, type AuditLog } from "../src/modules/audit/audit.service.js";
import { createAuditSequencer, storeLease, storeWakes } from "../src/modules/audit/audit.sequencer.js";
import type { AuditInput } from "../src/modules/audit/audit.types.js";
import type { Actor, CallContext } from "../src/modules/authz/authz.types.js";
import { loadKeyring } from "../src/modules/keys/keys.service.js";
import { createPgDatabase, PG_ADMIN_URL } from "../src/testing/engines.js";

/** Statements sent to the database by this process (writers and sequencer): round trips per transaction. */
let statements = 0;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  statements++;
  return (query as (...a: unknown[]) => unknown).apply(this, args);
} as typeof query;

const CONCURRENCY_HIGH = 32;
const CONCURRENCY_MID = 16;
const BATCH = 10;
const WARMUP_EVENTS = 50;

interface Options {
  /** Events per one-event-per-transaction scenario. */
  events: number;
  /** Events per batched scenario. */
  batchedEvents: number;
  engines: string[];
  /** Events to write before timing verify alone; 0 runs the full benchmark. */
  verifyOnly: number;
  verifyRuns: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    events: 4000,
    batchedEvents: 20000,
    engines: ["pglite-memory", "pglite-dir", "postgres"],
    verifyOnly: 0,
    verifyRuns: 3,
  };
  for (const arg of argv) {
    const [key, value] = arg.split("=", 2);
    if (key === "--verify-only" && value === undefined) options.verifyOnly = 100_000;
    else if (key === "--verify-only" && value && /^[1-9]\d*$/.test(value)) options.verifyOnly = Number(value);
    else if (key === "--verify-runs" && value && /^[1-9]\d*$/.test(value)) options.verifyRuns = Number(value);
    else if (key === "--events" && value && /^[1-9]\d*$/.test(value)) options.events = Number(value);
    else if (key === "--batched-events" && value && /^[1-9]\d*$/.test(value)) options.batchedEvents = Number(value);
    else if (key === "--engines" && value) options.engines = value.split(",");
    else
      throw new Error(
        `unknown argument ${arg} (use --events=N, --batched-events=N, --engines=a,b, --verify-only[=N], --verify-runs=N)`,
      );
  }
  if (options.batchedEvents % BATCH !== 0) throw new Error(`--batched-events must be a multiple of ${BATCH}`);
  return options;
}

interface Opened {
  store: AppStore;
  note: string;
  cleanup: () => Promise<void>;
}

const ENGINES: Record<string, () => Promise<Opened>> = {
  "pglite-memory": async () => {
    const store = await openAppStore({ dataDir: "memory://" });
    return { store, note: "memory://", cleanup: () => store.close() };
  },
  "pglite-dir": async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "stint-bench-"));
    const store = await openAppStore({ dataDir: dir });
    return {
      store,
      note: dir,
      cleanup: async () => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  postgres: async () => {
    const database = await createPgDatabase();
    // A connection per worker, so the figures show the chain-head lock and not pool queueing.
    const store = await openAppStore({ databaseUrl: database.url, poolSize: CONCURRENCY_HIGH + 1 });
    const setting = async (name: string) =>
      (await sql<{ setting: string }>`select current_setting(${name}) as setting`.execute(store.db)).rows[0]?.setting;
    const host = new URL(PG_ADMIN_URL).host;
    return {
      store,
      note:
        `PostgreSQL ${await setting("server_version")} at ${host}, fresh database, ` +
        `fsync=${await setting("fsync")}, synchronous_commit=${await setting("synchronous_commit")}`,
      cleanup: async () => {
        await store.close();
        await database.drop();
      },
    };
  },
};

const actor: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-00000000be0c",
  name: "bench",
  principalKind: "user",
  roles: ["admin"],
};
const context: CallContext = { correlationId: "bench", sourceIp: "192.0.2.1", userAgent: "stint-bench" };

function inputs(first: number, count: number): AuditInput[] {
  return Array.from({ length: count }, (_, k) => ({
    action: "bench.append",
    outcome: "success" as const,
    subject: `thing:${first + k}`,
    reason: "benchmark",
    details: { n: first + k },
  }));
}

export interface Row {
  engine: string;
  scenario: string;
  events: number;
  transactions: number | null;
  ms: number;
  p50: number | null;
  p99: number | null;
  /**
   * Chaining lag p99 (ms) over the scenario's events, from the event's time (set in its transaction before
   * the INSERT, so the transaction's own wait for the pool, the database and COMMIT is counted in it) to
   * the commit of the pass that chained it: an upper bound of the lag from commit.
   */
  lagP99: number | null;
  /**
   * The same from the moment the writer saw its COMMIT acknowledged (after the commit: a lower bound; 0
   * when chained before the writer heard back).
   */
  commitLagP99?: number | null;
  /** Its median. */
  commitLagP50?: number | null;
  /** Statements this process sent (writers and the sequencer's passes) per transaction. */
  statementsPerTx?: number | null;
  /** CPU of this process per event (µs), the sequencer's chaining included (append scenarios). */
  cpuPerEvent?: number | null;
  /** CPU of the database's backends per event (µs), from /proc (PostgreSQL on this machine). */
  dbCpuPerEvent?: number | null;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** How a scenario writes a transaction's events. */
type Write = (batch: AuditInput[]) => Promise<{ id: string }[]>;

/**
 * Appends `events` events, `perTx` per transaction, from `concurrency` workers sharing one queue; notes in
 * `acked` when each event's writer saw its commit.
 */
async function appendRun(
  write: Write,
  events: number,
  perTx: number,
  concurrency: number,
  acked?: Map<string, number>,
) {
  const transactions = events / perTx;
  const latencies = new Float64Array(transactions);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < transactions; i = next++) {
      const batch = inputs(i * perTx, perTx);
      const started = performance.now();
      const written = await write(batch);
      latencies[i] = performance.now() - started;
      if (acked) {
        const at = Date.now();
        for (const event of written) acked.set(event.id, at);
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const ms = performance.now() - started;
  latencies.sort();
  return { transactions, ms, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** Opens engine `name`, migrates it and runs `body` on an audit log there (a checkpoint every 1,000 events). */
async function withAuditLog(
  name: string,
  sequencing: "inline" | undefined,
  body: (store: AppStore, audit: AuditLog) => Promise<Row[]>,
): Promise<Row[]> {
  const open = ENGINES[name];
  if (!open) throw new Error(`unknown engine ${name}`);
  const opened = await open();
  const { store } = opened;
  try {
    console.error(`# ${name}: ${opened.note}`);
    await store.migrate(MIGRATIONS_DIR);
    const keyring = await loadKeyring({ store, masterKey: randomBytes(32), clock: systemClock });
    return await body(
      store,
      createAuditLog({ store, keyring, clock: systemClock, checkpointEvery: 1000, ...(sequencing && { sequencing }) }),
    );
  } finally {
    await opened.cleanup();
  }
}

/**
 * Times one `verify` of `expected` events: wall time, this process's CPU per event (its main thread and verify's
 * worker threads apart) and the database's (every backend, those opened meanwhile too: serverCpuDuring).
 */
async function timeVerify(name: string, store: AppStore, audit: AuditLog, expected: number, run: string): Promise<Row> {
  const mainBefore = await mainThreadCpu();
  const cpu = process.cpuUsage();
  const started = performance.now();
  const { result, cpu: serverUsed } = await serverCpuDuring(store, () => audit.verify());
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const mainAfter = await mainThreadCpu();
  if (!result.ok || result.count !== expected)
    throw new Error(`verify on ${name} expected ${expected} intact events, got ${JSON.stringify(result)}`);
  const cpuPerEvent = (used.user + used.system) / result.count;
  const server = serverUsed === null ? null : serverUsed / result.count;
  const main = mainBefore === null || mainAfter === null ? null : (mainAfter - mainBefore) / result.count;
  const serverNote =
    (main === null ? "" : ` (main thread ${main.toFixed(2)}, worker threads ${(cpuPerEvent - main).toFixed(2)})`) +
    (server === null ? "" : `, database ${server.toFixed(2)} µs CPU/event`);
  console.error(
    `  verify ${run}: ${Math.round(ms)} ms, ${Math.round((result.count / ms) * 1000)} events/s, ` +
      `${cpuPerEvent.toFixed(2)} µs CPU/event${serverNote}, load ${os.loadavg()[0]!.toFixed(2)}`,
  );
  return {
    engine: name,
    scenario: `verify (${result.checkpoints} checkpoints), ${run}`,
    events: result.count,
    transactions: null,
    ms,
    p50: null,
    p99: null,
    lagP99: null,
    cpuPerEvent,
    dbCpuPerEvent: server,
  };
}

function benchEngine(name: string, options: Options): Promise<Row[]> {
  return withAuditLog(name, undefined, async (store, audit) => {
    const rows: Row[] = [];
    // Every chaining pass's lag, from the events' own times (set in their transactions, before commit).
    let lags: number[] = [];
    // When each event was chained (its pass committed) and when its writer saw its own commit.
    let chainedAt = new Map<string, number>();
    let acked = new Map<string, number>();
    const chainPending = audit.chainPending;
    const measured: AuditLog = {
      ...audit,
      chainPending: async (tx, limit, fresh) => {
        const result = await chainPending(tx, limit, fresh);
        const now = Date.now();
        for (const time of result.times) lags.push(now - Date.parse(time));
        for (const id of result.ids ?? []) chainedAt.set(id, now);
        return result;
      },
    };
    const record: Write = (batch) => audit.record(actor, context, batch);
    // A business transaction's shape: BEGIN, its statements, COMMIT (here the event is its only statement).
    const inTransaction: Write = (batch) => store.transaction((tx) => audit.append(tx, actor, context, batch));
    // As the server runs it (its default poll, its wakes): this process's appends wake it, the poll is the fallback.
    const sequencer = createAuditSequencer({
      audit: measured,
      lease: storeLease(store),
      wakes: storeWakes(store),
      holder: "bench",
    });
    sequencer.start();
    console.error(`  sequencing: ${audit.sequencing}`);
    await appendRun(record, WARMUP_EVENTS, 1, 1);
    let total = WARMUP_EVENTS;

    const { events: single, batchedEvents: batched } = options;
    const scenarios: [string, number, number, number, Write][] = [
      ["append 1/tx, concurrency 1", Math.min(single, 1000), 1, 1, record],
      [`append 1/tx, concurrency ${CONCURRENCY_MID}`, single, 1, CONCURRENCY_MID, record],
      [`append 1/tx, concurrency ${CONCURRENCY_HIGH}`, single, 1, CONCURRENCY_HIGH, record],
      [`append 1 in BEGIN…COMMIT, concurrency ${CONCURRENCY_HIGH}`, single, 1, CONCURRENCY_HIGH, inTransaction],
      [`append ${BATCH}/tx, concurrency 1`, Math.min(batched, 5000), BATCH, 1, record],
      [`append ${BATCH}/tx, concurrency ${CONCURRENCY_HIGH}`, batched, BATCH, CONCURRENCY_HIGH, record],
    ];
    for (const [scenario, events, perTx, concurrency, write] of scenarios) {
      lags = [];
      chainedAt = new Map();
      acked = new Map();
      const serverBefore = await serverCpu(store);
      const cpu = process.cpuUsage();
      const sent = statements;
      const r = await appendRun(write, events, perTx, concurrency, acked);
      // Wait for the sequencer to chain the scenario's last events (inline: already done).
      while ((await audit.pendingStats()).count > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      // Appending and chaining, the waiting loop's reads included (a few per scenario).
      const used = process.cpuUsage(cpu);
      const sentPerTx = (statements - sent) / r.transactions;
      const serverAfter = await serverCpu(store);
      total += events;
      const sorted = Float64Array.from(lags).sort();
      const fromCommit = Float64Array.from(
        [...acked].map(([id, at]) => Math.max(0, (chainedAt.get(id) ?? Number.POSITIVE_INFINITY) - at)),
      ).sort();
      rows.push({
        engine: name,
        scenario,
        events,
        transactions: r.transactions,
        ms: r.ms,
        p50: r.p50,
        p99: r.p99,
        lagP99: audit.sequencing === "background" ? percentile(sorted, 99) : null,
        commitLagP99: audit.sequencing === "background" ? percentile(fromCommit, 99) : null,
        commitLagP50: audit.sequencing === "background" ? percentile(fromCommit, 50) : null,
        statementsPerTx: sentPerTx,
        cpuPerEvent: (used.user + used.system) / events,
        dbCpuPerEvent: serverBefore && serverAfter ? serverCpuSince(serverBefore, serverAfter) / events : null,
      });
      console.error(`  ${scenario}: ${Math.round(r.ms)} ms, load ${os.loadavg()[0]!.toFixed(2)}`);
    }
    await sequencer.stop();

    // Twice: run 1 starts verify's worker threads (from 20,000 events; run from TypeScript each loads tsx
    // first), run 2 finds them started, as a server's next verify within their idle time; the verdict takes the faster.
    for (const run of ["run 1", "run 2"]) rows.push(await timeVerify(name, store, audit, total, run));
    return rows;
  });
}

/**
 * CPU time (µs) each backend of the store's database has used, by pid, read from /proc: only when the
 * database runs on this machine (PostgreSQL on loopback); null otherwise (PGlite runs in this process).
 */
async function serverCpu(store: AppStore): Promise<Map<number, number> | null> {
  if (store.engine !== "postgres") return null;
  const { rows } = await sql<{
    pid: number;
  }>`select pid from pg_stat_activity where datname = current_database()`.execute(store.db);
  const ticks = new Map<number, number>();
  try {
    for (const { pid } of rows) {
      const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
      // utime and stime, in clock ticks of 10 ms (Linux's USER_HZ).
      ticks.set(pid, (Number(fields[11]) + Number(fields[12])) * 10_000);
    }
  } catch {
    return null;
  }
  return ticks;
}

/**
 * The database's CPU while `run` runs, every backend of it included, those that open and close meanwhile
 * too (verify's worker connections), which `serverCpu` before and after would miss. Backends are looked up
 * every 50 ms; one younger than the run counts all its CPU (the lookup's delay loses nothing) and is read
 * every 2 ms, as it may close before the run ends (what it uses after its last reading is missed). Those
 * there before (the pool's, 33 after the append scenarios) are read every 100 ms: reading them all every
 * 2 ms, as this did before, took ~40 µs a backend at load 17, ~64% of this thread (verify's critical path).
 */
async function serverCpuDuring<T>(store: AppStore, run: () => Promise<T>): Promise<{ result: T; cpu: number | null }> {
  if (store.engine !== "postgres") return { result: await run(), cpu: null };
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  const fresh = new Set<number>();
  let startedAt = Number.POSITIVE_INFINITY;
  const read = (pid: number) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      const used = (Number(fields[11]) + Number(fields[12])) * 10_000;
      if (!first.has(pid)) {
        // Field 22: the start time, in clock ticks (100 a second) since boot, as /proc/uptime counts them.
        const young = Number(fields[19]) >= startedAt;
        if (young) fresh.add(pid);
        first.set(pid, young ? 0 : used);
      }
      last.set(pid, used);
    } catch {
      // Ended since its last reading.
    }
  };
  const discover = async () => {
    const { rows } = await sql<{
      pid: number;
    }>`select pid from pg_stat_activity where datname = current_database()`.execute(store.db);
    for (const { pid } of rows) if (!first.has(pid)) read(pid);
  };
  await discover();
  startedAt = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 100;
  let looking = false;
  const lookup = setInterval(() => {
    if (looking) return;
    looking = true;
    void discover().finally(() => (looking = false));
  }, 50);
  const pollFresh = setInterval(() => {
    for (const pid of fresh) read(pid);
  }, 2);
  const pollAll = setInterval(() => {
    for (const pid of first.keys()) read(pid);
  }, 100);
  try {
    const result = await run();
    for (const pid of first.keys()) read(pid);
    let cpu = 0;
    for (const [pid, used] of last) cpu += used - first.get(pid)!;
    return { result, cpu };
  } finally {
    clearInterval(lookup);
    clearInterval(pollFresh);
    clearInterval(pollAll);
    while (looking) await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** CPU time (µs) of this process's main thread alone (the rest of `process.cpuUsage()` is other threads'). */
async function mainThreadCpu(): Promise<number | null> {
  try {
    const fields = (await readFile(`/proc/self/task/${process.pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return null;
  }
}

function serverCpuSince(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, used] of after) total += used - (before.get(pid) ?? 0);
  return total;
}

/**
 * Verify alone: writes `options.verifyOnly` events quickly (500 per transaction, chained inline), then
 * times `verify` `options.verifyRuns` times: wall time and this process's CPU (user + system) per event.
 */
function benchVerifyOnly(name: string, options: Options): Promise<Row[]> {
  return withAuditLog(name, "inline", async (store, audit) => {
    const rows: Row[] = [];
    const perTx = 500;
    for (let written = 0; written < options.verifyOnly; written += perTx)
      await audit.record(actor, context, inputs(written, Math.min(perTx, options.verifyOnly - written)));
    console.error(`  wrote ${options.verifyOnly} events`);
    for (let run = 1; run <= options.verifyRuns; run++)
      rows.push(await timeVerify(name, store, audit, options.verifyOnly, `run ${run}`));
    return rows;
  });
}

function table(rows: Row[]): string {
  const fmt = (n: number | null, digits = 0) =>
    n === null ? "-" : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const head = [
    "engine",
    "scenario",
    "events",
    "tx",
    "total ms",
    "events/s",
    "tx/s",
    "tx p50 ms",
    "tx p99 ms",
    "chain lag p99 ms",
    "from commit p50 ms",
    "from commit p99 ms",
    "stmts/tx",
    "CPU µs/event",
    "db CPU µs/event",
  ];
  const body = rows.map((r) => [
    r.engine,
    r.scenario,
    fmt(r.events),
    fmt(r.transactions),
    fmt(r.ms),
    fmt((r.events / r.ms) * 1000),
    r.transactions === null ? "-" : fmt((r.transactions / r.ms) * 1000),
    fmt(r.p50, 2),
    fmt(r.p99, 2),
    fmt(r.lagP99, 1),
    fmt(r.commitLagP50 ?? null, 1),
    fmt(r.commitLagP99 ?? null, 1),
    fmt(r.statementsPerTx ?? null, 2),
    fmt(r.cpuPerEvent ?? null, (r.cpuPerEvent ?? 99) < 20 ? 2 : 1),
    fmt(r.dbCpuPerEvent ?? null, (r.dbCpuPerEvent ?? 99) < 20 ? 2 : 1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  const rule = "|" + widths.map((w, i) => (i < 2 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|";
  return [line(head), rule, ...body.map(line)].join("\n");
}

/** Issue 14 acceptance 1, judged on the PostgreSQL rows (verify: the fastest of the runs there were). */
export function verdicts(rows: Row[]): { target: string; value: string; pass: boolean }[] {
  const pg = rows.filter((r) => r.engine === "postgres");
  const at32 = pg.find((r) => r.scenario === `append 1/tx, concurrency ${CONCURRENCY_HIGH}`);
  const verifies = pg.filter((r) => r.scenario.startsWith("verify"));
  const result: { target: string; value: string; pass: boolean }[] = [];
  if (at32) {
    const txs = (at32.transactions! / at32.ms) * 1000;
    const lag = at32.commitLagP99 ?? Number.POSITIVE_INFINITY;
    const upper = at32.lagP99 ?? Number.POSITIVE_INFINITY;
    result.push({
      target: "audited tx/s at 32 writers (PostgreSQL) >= 3,000",
      value: txs.toFixed(0),
      pass: txs >= 3000,
    });
    result.push({
      target: "chaining lag p99 at 32 writers <= 100 ms",
      value: `${lag.toFixed(1)} from the commit seen by the writer (${upper.toFixed(1)} from the event's time)`,
      pass: lag <= 100,
    });
  }
  if (verifies.length > 0) {
    const vps = Math.max(...verifies.map((r) => (r.events / r.ms) * 1000));
    result.push({ target: "audit verify events/s >= 200,000", value: vps.toFixed(0), pass: vps >= 200_000 });
  }
  return result;
}

/** Every engine of `options` in turn; PostgreSQL not listening is skipped, told to `skipped`. */
async function benchEngines(options: Options, skipped: (line: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  for (const engine of options.engines) {
    try {
      rows.push(...(await (options.verifyOnly > 0 ? benchVerifyOnly : benchEngine)(engine, options)));
    } catch (error) {
      if (engine === "postgres" && (error as { code?: string }).code === "ECONNREFUSED") {
        skipped(`postgres skipped: nothing listens at ${new URL(PG_ADMIN_URL).host} (set STINT_TEST_PG_URL)`);
      } else throw error;
    }
  }
  return rows;
}

export function runAuditBench(argv: string[] = []): Promise<Row[]> {
  return benchEngines(parseArgs(argv), (line) => console.error(line));
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const cpus = os.cpus();
  console.log(
    `Stint audit benchmark — node ${process.version}, ${os.platform()} ${os.arch()}, ` +
      `${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}`,
  );
  const started = performance.now();
  const skipped: string[] = [];
  const rows = await benchEngines(options, (line) => skipped.push(line));
  console.log(table(rows));
  for (const line of skipped) console.log(line);
  for (const v of verdicts(rows)) console.log(`${v.pass ? "PASS" : "FAIL"}  ${v.target}: ${v.value}`);
  console.log(
    `load average ${os
      .loadavg()
      .map((n) => n.toFixed(2))
      .join(" ")}`,
  );
  console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

if (import.meta.url === `file://${process.argv[1]}`)
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
