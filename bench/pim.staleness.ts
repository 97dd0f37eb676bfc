/**
 * pim.bench.ts's staleness scenario (issue 14 item 2): how long a second node takes to honour a change made on
 * the first, on one PostgreSQL database. See bench/README.md.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { loadConfig } from "../src/config/config.js";
import { openAppStore } from "../src/db/index.js";
import { createLogger } from "../src/lib/logger.js";
import { SYSTEM, type Actor } from "../src/modules/authz/authz.types.js";
import { createServer, type Server } from "../src/server.js";
import { createPgDatabase } from "../src/testing/engines.js";
import { AUTO_APPROVED_POLICY, seedGroupMember, seedRole } from "../src/testing/pim.js";
import { TEST_SCRYPT, type TestServer } from "../src/testing/server.js";

/** Issue 14 item 2: how long another node takes to honour a change (p99 goal). */
const STALENESS_GOAL_MS = 100;
const STALENESS_CHANGES = 200;

export interface StalenessRow {
  concurrency: number;
  changes: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * Issue 14 item 2: two nodes on one PostgreSQL database (in this process); changes (activations and
 * deactivations) made on node A; for each, how long from A's call returning (its transaction committed,
 * A honours it) until node B's index applied it. At concurrency 1 and 16.
 */
export async function benchStaleness(ROLE: string): Promise<StalenessRow[]> {
  const database = await createPgDatabase();
  const blobDir = await mkdtemp(path.join(os.tmpdir(), "stint-bench-nodes-"));
  const nodes: Server[] = [];
  try {
    const parsed = loadConfig({
      STINT_DATABASE_URL: database.url,
      STINT_BOOTSTRAP_ADMIN_PASSWORD: "bench-root-password",
      STINT_LOG_LEVEL: "silent",
      STINT_BLOB_DIR: blobDir,
    });
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const masterKey = randomBytes(32);
    for (let i = 0; i < 2; i++) {
      nodes.push(
        await createServer({
          config: parsed.config,
          logger: createLogger({ level: "silent" }),
          masterKey,
          vaultKey: randomBytes(32),
          scrypt: TEST_SCRYPT,
          store: await openAppStore({ databaseUrl: database.url }),
        }),
      );
      if (i === 0) await nodes[0]!.bootstrap();
    }
    const [a, b] = nodes as [Server, Server];
    const context = { correlationId: "bench-staleness", sourceIp: null, userAgent: null };
    const requesters: Actor[] = [];
    for (let i = 0; i < 16; i++) {
      const created = await a.directory.createPrincipal(SYSTEM, { name: `stale-${i}`, kind: "user" }, context);
      requesters.push({
        kind: "principal",
        id: created.id,
        name: created.name,
        principalKind: "user",
        roles: ["user"],
      });
      await seedGroupMember({ store: a.store } as unknown as TestServer, "stale-requesters", created.name);
    }
    await seedRole({ store: a.store } as unknown as TestServer, {
      name: ROLE,
      policy: AUTO_APPROVED_POLICY,
      eligibleGroups: ["stale-requesters"],
    });
    const applied = new Map<string, number>();
    const waiters = new Map<string, () => void>();
    const applies = (key: string) => {
      if (applied.has(key)) return;
      applied.set(key, performance.now());
      waiters.get(key)?.();
    };
    b.accessIndex.onActivated((activation) => applies(`act:${activation.requestId}`));
    b.accessIndex.onEnded((requestId) => applies(`end:${requestId}`));
    /** From `returned` (the change's call returned: its transaction committed) to node B applying it; 0 if before. */
    const heard = (key: string, returned: number) =>
      new Promise<number>((resolve, reject) => {
        const done = () => resolve(Math.max(0, applied.get(key)! - returned));
        if (applied.has(key)) return done();
        const timer = setTimeout(() => reject(new Error(`node B never heard ${key}`)), 30_000);
        waiters.set(key, () => {
          clearTimeout(timer);
          done();
        });
      });
    const rows: StalenessRow[] = [];
    for (const concurrency of [1, 16]) {
      const lags: number[] = [];
      let next = 0;
      await Promise.all(
        requesters.slice(0, concurrency).map(async (actor) => {
          while (next < STALENESS_CHANGES) {
            next += 2;
            const request = await a.requests.submit(actor, { role: ROLE, reason: "staleness benchmark run" }, context);
            lags.push(await heard(`act:${request.id}`, performance.now()));
            await a.requests.deactivate(actor, ROLE, context);
            lags.push(await heard(`end:${request.id}`, performance.now()));
          }
        }),
      );
      const sorted = lags.sort((x, y) => x - y);
      const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
      rows.push({ concurrency, changes: sorted.length, p50: q(0.5), p99: q(0.99), max: sorted.at(-1) ?? Number.NaN });
      console.error(`  staleness c=${concurrency}: p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms`);
    }
    return rows;
  } finally {
    for (const node of nodes) await node.close().catch(() => undefined);
    await database.drop().catch(() => undefined);
    await rm(blobDir, { recursive: true, force: true });
  }
}

/** The scenario's table and verdict. */
export function stalenessLines(staleness: StalenessRow[]): string[] {
  if (staleness.length === 0) return [];
  const lines: string[] = [];
  lines.push(
    `\nstaleness across nodes (issue 14 item 2): two Stint nodes on one PostgreSQL database; node A activates and ` +
      `deactivates (${STALENESS_CHANGES} changes per level); from the change's call returning on node A (committed, ` +
      `and honoured there) to node B's access index applying it (0 when B had it first). Both nodes share this ` +
      `process's event loop.`,
  );
  lines.push("| concurrency | changes | p50 ms | p99 ms | max ms |");
  lines.push("|--:|--:|--:|--:|--:|");
  for (const r of staleness)
    lines.push(`| ${r.concurrency} | ${r.changes} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} |`);
  const worst = Math.max(...staleness.map((r) => r.p99));
  lines.push(
    `item 2, staleness across nodes: worst p99 ${worst.toFixed(1)} ms (goal < ${STALENESS_GOAL_MS} ms): ` +
      `${worst < STALENESS_GOAL_MS ? "PASS" : "FAIL"}`,
  );
  return lines;
}
