/**
 * Anomaly alerts (issue 16): what the consumer costs per audit event. Seeds a stream of request events
 * (submitted, approved by a person, activated) for many users on an injected clock, then runs the consumer's
 * batches until it has caught up and prints CPU time of this process per event (process.cpuUsage: PGlite runs in
 * this process, so its share is included; on PostgreSQL the server's backends are not), wall time, and the alerts
 * raised. The seeded history spans days: events older than `learnOnlyOlderThan` (1d) are learned from without
 * alerting, so the alerts (first activations, rubber stamps, bursts of the last day; each an alert row, its
 * audit event and its outbox rows) come from the last day's events.
 *
 * Measured here (2 shared cores, under load, --requests=600: 1,802 events): PGlite ~250 µs CPU/event, PostgreSQL
 * ~65 µs CPU/event of Stint's own (84 alerts raised).
 *
 *   node --import tsx bench/alerts.bench.ts [--requests=1500] [--users=100] [--engines=pglite,postgres]
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Engine } from "../src/lib/db.js";
import { manualClock } from "../src/lib/clock.js";
import type { Actor } from "../src/modules/authz/authz.types.js";
import { testServer } from "../src/testing/server.js";

const arg = (name: string, fallback: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback;
const REQUESTS = Number(arg("requests", "1500"));
const USERS = Number(arg("users", "100"));
const ENGINES = arg("engines", "pglite,postgres").split(",") as Engine[];

const person = (name: string): Extract<Actor, { kind: "principal" }> => ({
  kind: "principal",
  id: randomUUID(),
  name,
  principalKind: "user",
  roles: [],
});

async function run(engine: Engine) {
  const clock = manualClock(new Date(Date.now() - 30 * 86_400_000));
  const server = await testServer(engine, { clock, env: { STINT_RECONCILE_INTERVAL: "0" } });
  try {
    const approvers = Array.from({ length: 5 }, (_, i) => person(`approver-${i}`));
    const users = Array.from({ length: USERS }, (_, i) => person(`user-${i}`));
    const system: Actor = { kind: "system", name: "system" };
    for (let i = 0; i < REQUESTS; i++) {
      const user = users[i % USERS]!;
      const role = `role-${i % 7}`;
      const id = randomUUID();
      const subject = `request:${id}`;
      const context = { correlationId: subject, sourceIp: `10.0.${i % 4}.${i % 200}`, userAgent: null };
      await server.audit.record(user, context, {
        action: "request.submitted",
        outcome: "success",
        subject,
        details: { role },
      });
      clock.advance(60_000 + (i % 13) * 1000);
      await server.audit.record(approvers[i % approvers.length]!, context, {
        action: "request.approved",
        outcome: "success",
        subject,
        details: { role, requester: user.name, stage: 1 },
      });
      await server.audit.record(system, context, {
        action: "request.activated",
        outcome: "success",
        subject,
        details: { role, requester: user.name },
      });
      clock.advance(17 * 60_000);
    }
    await server.audit.catchUp();
    const events = (await server.audit.read({ order: "desc", limit: 1 }))[0]!.seq;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let processed = 0;
    let batches = 0;
    for (;;) {
      const n = await server.alerts.runOnce();
      if (n === 0) break;
      processed += n;
      batches++;
    }
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const cpuUs = cpu.user + cpu.system;
    const alerts = (await server.alerts.list({ kind: "system", name: "bench" }, { limit: 500 })).length;
    console.log(
      `${engine.padEnd(8)} ${String(processed).padStart(6)} events (${events} seeded, the rest its own alert.raised) in ${batches} batches: ` +
        `${(cpuUs / processed).toFixed(0)} µs CPU/event, ${((wallMs * 1000) / processed).toFixed(0)} µs wall/event, ` +
        `${alerts}${alerts === 500 ? "+" : ""} alerts raised`,
    );
  } finally {
    await server.cleanup();
  }
}

for (const engine of ENGINES) {
  try {
    await run(engine);
  } catch (error) {
    console.log(`${engine}: skipped (${(error as Error).message.split("\n")[0]})`);
  }
}
