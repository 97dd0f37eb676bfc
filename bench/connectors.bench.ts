/**
 * Connector benchmark: against the real PostgreSQL, how long an activation of a
 * role at a real target takes from submit to the privilege usable (the outbox
 * run at once, as a worker with no backlog would), and how long from the end of
 * the activation to the privilege gone with the login's open connection ended.
 * Also one reconcile cycle of a target with N roles.
 *
 *   node --import tsx bench/connectors.bench.ts [--activations=50] [--roles=20]
 *
 * Stint runs on PGlite in memory (the control plane), the target is PostgreSQL.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { passwordFor } from "../src/testing/server.js";
import { selfServicePolicy, targetsHarness } from "../src/testing/targets-harness.js";

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = arg ? Number(arg.split("=")[1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  return value;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
function summary(label: string, samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  console.log(
    `${label.padEnd(44)} n=${String(sorted.length).padStart(3)}  p50 ${quantile(sorted, 0.5).toFixed(1).padStart(7)} ms` +
      `  p95 ${quantile(sorted, 0.95).toFixed(1).padStart(7)} ms  max ${sorted.at(-1)!.toFixed(1).padStart(7)} ms`,
  );
}

async function main() {
  const activations = option("activations", 50);
  const roleCount = option("roles", 20);
  const hex = randomBytes(4).toString("hex");
  const database = `stint_bench_${hex}`;
  const login = `stint_bench_user_${hex}`;
  const admin = "postgres://postgres@127.0.0.1:5432";
  const root = new pg.Client({ connectionString: `${admin}/postgres` });
  await root.connect();
  const roles = Array.from({ length: roleCount }, (_, i) => `stint_bench_r${i}_${hex}`);
  console.log(
    `connectors bench: ${os.cpus().length} cpus, load ${os.loadavg()[0]!.toFixed(1)}, node ${process.version}`,
  );
  await root.query(`create database ${database}`);
  await root.query(`create role ${login} login`);
  for (const role of roles) await root.query(`create role ${role} nologin`);
  const h = await targetsHarness();
  try {
    await h.createUser("bench");
    await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("bench-self")}
targets:
  - name: bench-db
    kind: postgres
    address: ${admin}/${database}?sslmode=disable
    identity: { map: { bench: ${login} } }
roles:
${roles
  .map(
    (role, i) => `  - name: bench-role-${i}
    target: bench-db
    entitlement: { role: ${role} }
    policy: bench-self
    risk: low`,
  )
  .join("\n")}
eligibility:
  - role: bench-role-0
    users: [bench]
`);
    const auth = await h.server.login("bench", passwordFor("bench"));
    const elevate: number[] = [];
    const revoke: number[] = [];
    for (let i = 0; i < activations; i++) {
      const started = performance.now();
      const res = await h.server.app.inject({
        method: "POST",
        url: "/v1/activation-requests",
        headers: { authorization: auth },
        payload: { role: "bench-role-0", duration: "10m", reason: "benchmark of the postgres connector" },
      });
      if (res.statusCode !== 201) throw new Error(res.body);
      await h.drainOutbox();
      elevate.push(performance.now() - started);
      const held = new pg.Client({ connectionString: `postgres://${login}@127.0.0.1:5432/${database}` });
      held.on("error", () => undefined);
      await held.connect();
      const ended = performance.now();
      await h.server.app.inject({
        method: "POST",
        url: "/v1/me/roles/bench-role-0/deactivate",
        headers: { authorization: auth },
      });
      await h.drainOutbox();
      revoke.push(performance.now() - ended);
      await held.end().catch(() => undefined);
    }
    summary("submit → privilege at PostgreSQL", elevate);
    summary("deactivate → revoked, sessions terminated", revoke);
    const cycles: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const res = await h.admin("POST", "/v1/reconcile", { target: "bench-db" });
      if (res.status !== 200) throw new Error(JSON.stringify(res.body));
      cycles.push(performance.now() - started);
    }
    summary(`reconcile of a target with ${roleCount} roles`, cycles);
  } finally {
    await h.server.cleanup();
    await root.query(`drop database if exists ${database} with (force)`);
    for (const role of [login, ...roles]) await root.query(`drop role if exists ${role}`);
    await root.end();
  }
}

await main();
