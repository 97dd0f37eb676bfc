/**
 * Probe of a secret read's audit path alone, without HTTP: 16 loops in this process call the vault's
 * `readFromMemoryOnly` (the fast path's read: the decision and the value from memory, the read's event
 * group-committed with the others', then chained by the background sequencer) on a fresh PostgreSQL store,
 * and the probe prints, per read, this process's CPU and the store's PostgreSQL backends' (from /proc), with
 * the batches' size. HTTP (parsing, the response's write) costs the same in every tree, so the audit path's
 * cuts show here above the noise of a loaded host.
 *
 *   node --import tsx bench/vault-audit.probe.ts [--rounds=3] [--reads=20000] [--readers=16] [--profile=FILE]
 *
 * --profile=FILE: a CPU profile of this process over the rounds (`.cpuprofile`).
 */
import { readFile } from "node:fs/promises";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import { sql, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs } from "kysely";
import type { AppStore } from "../src/db/index.js";
import type { Actor, CallContext } from "../src/modules/authz/authz.types.js";
import { testServer } from "../src/testing/server.js";
import { startCpuProfile } from "./cpu-profile.js";

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = arg === undefined ? fallback : Number(arg.slice(name.length + 3));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name}: a positive integer`);
  return value;
}

/** CPU so far (µs) of each PostgreSQL backend of the store's database but this statement's. */
async function backendCpu(store: AppStore): Promise<Map<number, number>> {
  const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid()`.execute(store.db);
  const used = new Map<number, number>();
  for (const { pid } of rows) {
    const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
    used.set(pid, (Number(fields[11]) + Number(fields[12])) * 10_000);
  }
  return used;
}

/**
 * Counts the statements the server sends to its store and the pending rows the sequencer's statements read
 * (what a pass parses: the rows it chains, and any it reads for the next pass).
 */
function storeCounter() {
  const counts = { statements: 0, pendingRowsRead: 0 };
  const reads = new WeakSet<object>();
  const plugin: KyselyPlugin = {
    transformQuery(args: PluginTransformQueryArgs) {
      counts.statements += 1;
      return args.node;
    },
    transformResult: async (args: PluginTransformResultArgs) => {
      const rows = args.result.rows as { pos?: unknown; mac?: unknown }[];
      if (rows.length > 0 && rows[0]!.mac !== undefined && !reads.has(args.result))
        for (const row of rows) if (row.pos != null) counts.pendingRowsRead += 1;
      reads.add(args.result);
      return args.result;
    },
  };
  const wrap = (store: AppStore): AppStore => ({
    ...store,
    db: store.db.withPlugin(plugin),
    transaction: (fn) => store.transaction((tx) => fn(tx.withPlugin(plugin))),
  });
  return { counts, wrap };
}

async function main() {
  const rounds = option("rounds", 3);
  const reads = option("reads", 20_000);
  const readers = option("readers", 16);
  const counter = storeCounter();
  const server = await testServer("postgres", { env: { STINT_RECONCILE_INTERVAL: "0" }, wrapStore: counter.wrap });
  try {
    const paths = Array.from({ length: 100 }, (_, i) => `probe/app-${String(i).padStart(3, "0")}/token`);
    for (const path of paths) {
      const put = await server.app.inject({
        method: "PUT",
        url: `/v1/secrets/${encodeURIComponent(path)}`,
        headers: { authorization: server.adminAuth },
        payload: { kind: "api-key", value: randomBytes(24).toString("base64url"), platformRoles: ["user"] },
      });
      if (put.statusCode !== 200) throw new Error(`put ${path}: ${put.statusCode} ${put.body}`);
    }
    await server.userWithRoles("probe-reader", ["user"]);
    const { rows } = await sql<{ id: string }>`select id from principals where name = 'probe-reader'`.execute(
      server.store.db,
    );
    const actor: Actor = {
      kind: "principal",
      id: rows[0]!.id,
      name: "probe-reader",
      principalKind: "user",
      roles: ["user"],
    };
    let next = 0;
    const readAll = async (n: number) => {
      next = 0;
      await Promise.all(
        Array.from({ length: readers }, async (_, r) => {
          const context: CallContext = { correlationId: `probe-${r}`, sourceIp: "127.0.0.1", userAgent: "probe" };
          for (let i = next++; i < n; i = next++) {
            const got = await server.vault.readFromMemoryOnly(actor, context, paths[i % paths.length]!);
            if (got === null) throw new Error("not read from memory");
          }
        }),
      );
    };
    await readAll(2000);
    const profileFile = process.argv.find((a) => a.startsWith("--profile="))?.slice("--profile=".length);
    const profiler = profileFile ? await startCpuProfile() : null;
    console.log(`vault audit probe: ${readers} readers, ${reads} reads a round, load ${os.loadavg()[0]!.toFixed(1)}`);
    for (let round = 0; round < rounds; round++) {
      const stats = server.vault.readAuditStats();
      const counted = { ...counter.counts };
      const dbBefore = await backendCpu(server.store);
      const cpu = process.cpuUsage();
      const started = performance.now();
      await readAll(reads);
      // The sequencer's share: every event chained before the round ends.
      while ((await server.audit.pendingStats()).count > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      const dbAfter = await backendCpu(server.store);
      let db = 0;
      for (const [pid, us] of dbAfter) db += us - (dbBefore.get(pid) ?? 0);
      const after = server.vault.readAuditStats();
      const batches = after.batches - stats.batches;
      console.log(
        `round ${round + 1}: ${Math.round((reads / ms) * 1000)} reads/s; process ${((used.user + used.system) / reads).toFixed(1)} µs/read ` +
          `(system ${(used.system / reads).toFixed(1)}), backends ${(db / reads).toFixed(1)} µs/read; ` +
          `${(reads / batches).toFixed(1)} reads/batch, ${((after.commitMs - stats.commitMs) / batches).toFixed(2)} ms a commit; ` +
          `${((counter.counts.statements - counted.statements) / reads).toFixed(3)} statements and ` +
          `${((counter.counts.pendingRowsRead - counted.pendingRowsRead) / reads).toFixed(2)} pending rows read a read; ` +
          `load ${os.loadavg()[0]!.toFixed(1)}`,
      );
    }
    await profiler?.stop(profileFile);
  } finally {
    await server.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
