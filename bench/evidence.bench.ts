/**
 * Evidence report benchmark: what one report costs the server as the period holds more activations.
 *
 * A test server (PGlite in memory) is seeded straight in SQL with N activations of one role, each approved by
 * one person, half with a recorded session; then GET /v1/evidence (JSON, then CSV) is asked `--repeat` times per
 * size through app.inject, as an auditor. Printed per size and format: the server process's CPU time per report
 * (process.cpuUsage: user + system, which other load on a shared machine does not inflate the way it does wall
 * time), the wall time, and the answer's size. Each report also writes its audit event (evidence.report).
 *
 *   node --import tsx bench/evidence.bench.ts [--sizes=100,1000,5000] [--repeat=5]
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { newId } from "../src/lib/ids.js";
import { passwordFor, testServer } from "../src/testing/server.js";

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .map((a) => /^--([a-z-]+)=(.*)$/.exec(a))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1], m[2]]),
);
const SIZES = (args.sizes ?? "100,1000,5000").split(",").map(Number);
const REPEAT = Number(args.repeat ?? 5);

const server = await testServer("pglite");
try {
  await server.userWithRoles("aud", ["auditor"]);
  await server.userWithRoles("olive", ["user"]);
  await server.userWithRoles("ann", ["user"]);
  const apply = await server.app.inject({
    method: "POST",
    url: "/v1/config/apply",
    headers: { authorization: server.adminAuth },
    payload: {
      yaml: `apiVersion: stint/v1
policies:
  - { name: p, mfa: { required: false }, maxDuration: 8h }
targets:
  - { name: stint, kind: internal }
roles:
  - { name: bench-role, target: stint, policy: p, risk: low }
`,
    },
  });
  if (apply.statusCode !== 200) throw new Error(apply.body);
  const db = server.store.db;
  const role = await db
    .selectFrom("roles")
    .select(["id", "target_id"])
    .where("name", "=", "bench-role")
    .executeTakeFirstOrThrow();
  const ann = await db.selectFrom("principals").select("id").where("name", "=", "ann").executeTakeFirstOrThrow();
  const olive = await db.selectFrom("principals").select("id").where("name", "=", "olive").executeTakeFirstOrThrow();
  const auditor = `Bearer ${(await server.login("aud", passwordFor("aud"))).slice("Bearer ".length)}`;

  const start = Date.parse("2027-01-01T00:00:00Z");
  let seeded = 0;
  async function seedTo(n: number) {
    for (; seeded < n;) {
      const batch = Math.min(500, n - seeded);
      const requests = [];
      const decisions = [];
      const sessions = [];
      for (let i = 0; i < batch; i++, seeded++) {
        const id = newId();
        const at = new Date(start + seeded * 60_000);
        const activated = new Date(at.getTime() + 30_000);
        const ended = new Date(activated.getTime() + 3600_000);
        requests.push({
          id,
          role_id: role.id,
          requester_id: ann.id,
          extends_request_id: null,
          state: "expired" as const,
          duration_ms: 3600_000,
          reason: `scheduled maintenance window ${seeded}`,
          ticket: `CHG-${seeded}`,
          policy_snapshot: JSON.stringify({}),
          stages: JSON.stringify([]),
          mfa_at: null,
          submitted_at: at,
          decided_at: new Date(at.getTime() + 20_000),
          activated_at: activated,
          expires_at: ended,
          ended_at: ended,
          end_reason: "expired",
          ended_by: "system",
          expiring_notified_at: null,
          stage_deadline: null,
          updated_at: ended,
        });
        decisions.push({
          id: newId(),
          request_id: id,
          stage_index: 0,
          approver_id: olive.id,
          decision: "approve" as const,
          reason: "agreed",
          decided_at: new Date(at.getTime() + 20_000),
        });
        if (seeded % 2 === 0)
          sessions.push({
            id: newId(),
            kind: "postgres" as const,
            principal_id: ann.id,
            request_id: id,
            role_id: role.id,
            target_id: role.target_id,
            login: "stint_ann_x",
            client_address: "127.0.0.1",
            node: "bench",
            started_at: new Date(activated.getTime() + 60_000),
            ended_at: new Date(activated.getTime() + 120_000),
            end_reason: "client_closed",
            end_detail: null,
            ended_by: null,
            recording_key: `sessions/${id}.rec`,
            recording_sha256: randomBytes(32).toString("hex"),
            recording_bytes: 4096,
            seen_at: null,
          });
      }
      await db.insertInto("activation_requests").values(requests).execute();
      await db.insertInto("request_decisions").values(decisions).execute();
      if (sessions.length > 0) await db.insertInto("sessions").values(sessions).execute();
    }
  }

  console.log(`evidence report, PGlite in memory, ${REPEAT} reports per row (median)`);
  console.log("activations  format  cpu ms/report  wall ms/report  bytes");
  for (const size of SIZES) {
    await seedTo(size);
    const to = new Date(start + size * 60_000 + 7200_000).toISOString();
    for (const format of ["json", "csv"] as const) {
      const url = `/v1/evidence?from=${new Date(start).toISOString()}&to=${to}&format=${format}`;
      const cpu: number[] = [];
      const wall: number[] = [];
      let bytes = 0;
      for (let i = 0; i <= REPEAT; i++) {
        const before = process.cpuUsage();
        const t0 = performance.now();
        const res = await server.app.inject({ method: "GET", url, headers: { authorization: auditor } });
        const t1 = performance.now();
        const used = process.cpuUsage(before);
        if (res.statusCode !== 200) throw new Error(res.body);
        bytes = res.rawPayload.length;
        if (i === 0) continue; // warm-up
        cpu.push((used.user + used.system) / 1000);
        wall.push(t1 - t0);
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      console.log(
        `${String(size).padStart(11)}  ${format.padEnd(6)}  ${median(cpu).toFixed(1).padStart(13)}  ${median(wall)
          .toFixed(1)
          .padStart(14)}  ${bytes}`,
      );
    }
  }
} finally {
  await server.cleanup();
}
