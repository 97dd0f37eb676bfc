/**
 * Request timing (issue 16): what the scheduler's two new steps cost. An idle pass (nothing due) now also
 * claims lapsed pending requests and due starts and reads the next due time; and a wave of N pending requests
 * expiring at once, then N requests approved ahead starting at once.
 *
 *   node --import tsx bench/request-timing.bench.ts [--requests=2000] [--idle-passes=200] [--engines=pglite,postgres]
 *
 * Seeding writes the requests straight into the store (set-based). Figures are CPU time of this process per pass
 * or per request (process.cpuUsage: PGlite runs in this process, so its share is included there; on PostgreSQL the
 * server's backends are not), and wall time, which other work on a shared host inflates.
 */
import { performance } from "node:perf_hooks";
import { sql } from "kysely";
import type { Engine } from "../src/lib/db.js";
import { manualClock } from "../src/lib/clock.js";
import { testServer, type TestServer } from "../src/testing/server.js";
import { createScheduler } from "../src/workers/scheduler.js";

const ROLES = 20;
const arg = (name: string, fallback: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback;
const N = Number(arg("requests", "2000"));
const IDLE_PASSES = Number(arg("idle-passes", "200"));
const ENGINES = arg("engines", "pglite,postgres").split(",") as Engine[];

async function seed(server: TestServer, t0: Date) {
  const db = server.store.db;
  const policy = {
    defaultDuration: "1h",
    maxDuration: "8h",
    requestTtl: "10m",
    approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
    mfa: { required: false, maxAge: "10m" },
    justification: { minLength: 10 },
  };
  const stages = JSON.stringify([
    {
      name: "manager",
      approvers: { groups: [], users: [], manager: true },
      count: 1,
      timeoutMs: null,
      onTimeout: "deny",
      escalateTo: null,
    },
  ]);
  await sql`insert into targets (id, name, kind, config, labels, created_at, updated_at)
    values (gen_random_uuid(), 'timing-bench', 'internal', '{}', '{}', ${t0}, ${t0})`.execute(db);
  const { policyId } = (
    await sql<{ policyId: string }>`insert into policies (id, name, spec, created_at, updated_at)
      values (gen_random_uuid(), 'timing-bench-policy', ${JSON.stringify(policy)}, ${t0}, ${t0})
      returning id as "policyId"`.execute(db)
  ).rows[0]!;
  for (const kind of ["pend", "start"])
    await sql`insert into roles (id, name, target_id, policy_id, entitlement, risk, owners, created_at, updated_at)
      select gen_random_uuid(), ${`tb-${kind}-`} || lpad(r::text, 3, '0'),
        (select id from targets where name = 'timing-bench'), ${policyId}, '{}', 'low', '{}', ${t0}, ${t0}
      from generate_series(1, ${ROLES}) r`.execute(db);
  await sql`insert into principals (id, kind, name, platform_roles, created_at, updated_at)
    select gen_random_uuid(), 'user', 'tb-user-' || lpad(p::text, 5, '0'), '{user}', ${t0}, ${t0}
    from generate_series(1, ${Math.ceil(N / ROLES)}) p`.execute(db);
  // Eligible (the starts check the basis again).
  await sql`insert into eligibilities (id, role_id, principal_id, starts_at, granted_by, created_at)
    select gen_random_uuid(), r.id, p.id, ${t0}, 'bench', ${t0}
    from principals p cross join roles r where p.name like 'tb-user-%' and r.name like 'tb-start-%'`.execute(db);
  for (const [kind, state, extra] of [
    ["pend", "pending", sql`${new Date(t0.getTime() + 10 * 60_000)}::timestamptz, null::timestamptz`],
    ["start", "approved", sql`null::timestamptz, ${new Date(t0.getTime() + 30 * 60_000)}::timestamptz`],
  ] as const)
    await sql`insert into activation_requests (id, role_id, requester_id, state, duration_ms, reason, policy_snapshot,
        stages, stage_index, submitted_at, decided_at, pending_expires_at, start_at, updated_at)
      select gen_random_uuid(), r.id, p.id, ${state}, 3600000, 'timing benchmark request', ${JSON.stringify(policy)},
        ${stages}, 0, ${t0}, ${state === "approved" ? t0 : null}, ${extra}, ${t0}
      from (select i, i / ${ROLES} as pi, i % ${ROLES} as ri from generate_series(0, ${N - 1}) i) x
      join (select id, row_number() over (order by name) - 1 as k from principals where name like 'tb-user-%') p
        on p.k = x.pi
      join (select id, row_number() over (order by name) - 1 as k from roles where name like ${`tb-${kind}-%`}) r
        on r.k = x.ri`.execute(db);
  await sql`analyze`.execute(db);
}

async function measure<T>(work: () => Promise<T>) {
  const cpu = process.cpuUsage();
  const wall = performance.now();
  const result = await work();
  const used = process.cpuUsage(cpu);
  return { result, cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - wall };
}

for (const engine of ENGINES) {
  const t0 = new Date("2030-01-07T09:00:00Z");
  const clock = manualClock(t0.toISOString());
  const server = await testServer(engine, { clock });
  try {
    await seed(server, t0);
    // The same scheduler with and without the timing steps (the server's own also runs check-ins, rotations…).
    const bare = createScheduler({ requests: server.requests });
    const timed = createScheduler({ requests: server.requests, timing: server.requests });
    const idle = async (scheduler: { runOnce: () => Promise<unknown> }) =>
      measure(async () => {
        for (let i = 0; i < IDLE_PASSES; i++) await scheduler.runOnce();
      });
    await idle(bare); // warm up
    await idle(timed);
    const without = await idle(bare);
    const withTiming = await idle(timed);
    const next = await measure(async () => {
      let at: Date | null = null;
      for (let i = 0; i < IDLE_PASSES; i++) at = await server.requests.nextTimingDue();
      return at;
    });
    console.info(
      `# ${engine}: idle scheduler pass (${N} pending and ${N} scheduled, none due), ${IDLE_PASSES} passes\n` +
        `  without timing steps: ${(without.cpuMs / IDLE_PASSES).toFixed(2)} ms CPU, ${(without.wallMs / IDLE_PASSES).toFixed(2)} ms wall per pass\n` +
        `  with timing steps:    ${(withTiming.cpuMs / IDLE_PASSES).toFixed(2)} ms CPU, ${(withTiming.wallMs / IDLE_PASSES).toFixed(2)} ms wall per pass\n` +
        `  next due time read:   ${(next.cpuMs / IDLE_PASSES).toFixed(2)} ms CPU, ${(next.wallMs / IDLE_PASSES).toFixed(2)} ms wall (${next.result?.toISOString()})`,
    );
    clock.advance(10 * 60_000);
    const expired = await measure(async () => {
      let n = 0;
      for (;;) {
        const done = await server.requests.expirePendingDue(100);
        n += done;
        if (done < 100) return n;
      }
    });
    clock.advance(20 * 60_000);
    const started = await measure(async () => {
      let n = 0;
      for (;;) {
        const done = await server.requests.startScheduledDue(100);
        n += done;
        if (done < 100) return n;
      }
    });
    const states = await server.store.db
      .selectFrom("activation_requests")
      .select(["state", (eb) => eb.fn.countAll<string>().as("n")])
      .groupBy("state")
      .execute();
    console.info(
      `  expired ${expired.result} pending: ${(expired.cpuMs / expired.result).toFixed(2)} ms CPU, ${(expired.wallMs / expired.result).toFixed(2)} ms wall per request (${Math.round(expired.wallMs)} ms in all)\n` +
        `  started ${started.result} scheduled: ${(started.cpuMs / started.result).toFixed(2)} ms CPU, ${(started.wallMs / started.result).toFixed(2)} ms wall per request (${Math.round(started.wallMs)} ms in all)\n` +
        `  states after: ${states.map((s) => `${s.state} ${s.n}`).join(", ")}`,
    );
    if (expired.result !== N || started.result !== N) throw new Error("FAIL: not every request expired or started");
  } finally {
    await server.cleanup();
  }
}
