/**
 * Expiry on several nodes, with a crash: two built server processes
 * (`node bin/stint.js server`) on one PostgreSQL database, 200 activations,
 * one process killed with SIGKILL. Every activation must end within 2 s of its
 * expiry and exactly once (one request.expired audit event each), and the
 * audit chain must verify. Node A holds the audit sequencer's lease when it dies: node B takes it over and
 * chains what A left; no event is lost or chained twice.
 *
 * The activations last 5 s, as the acceptance text asks. They come in two
 * waves of 100, submitted 2.5 s apart and spread over both nodes: while the
 * first wave expires both nodes run their schedulers (so they compete for the
 * same rows), and node A is killed in the middle of that wave, which is also
 * about halfway to the second wave's expiry. The second wave then ends on
 * node B alone.
 *
 * Needs the build (`npm test` runs `npm run build` before vitest) and
 * PostgreSQL on 127.0.0.1:5432 (STINT_TEST_PG_URL).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { policySpec } from "../../src/contract/catalog.js";
import { hashPassword } from "../../src/lib/security.js";
import { createPgDatabase } from "../../src/testing/engines.js";
import { assertBuilt, expectJson, login, sleep, startServerNode, type ServerNode } from "./support.js";

const ADMIN_PASSWORD = "multinode-root-password";
const USERS = 10;
const ROLES_PER_WAVE = 10;
/** USERS × ROLES_PER_WAVE activations per wave, two waves. */
const WAVES = 2;
const TOTAL = USERS * ROLES_PER_WAVE * WAVES;
const DURATION = "5s";
const DURATION_MS = 5_000;
const WAVE_GAP_MS = 2_500;
const MAX_LATENESS_MS = 2_000;
const CONCURRENCY = 16;
/** Kill node A once this many first-wave activations have expired (about half of them). */
const KILL_AFTER_EXPIRED = (USERS * ROLES_PER_WAVE) / 2;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

describe("expiry on two nodes with one killed", () => {
  const nodes: ServerNode[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(() => assertBuilt());

  afterEach(async () => {
    for (const node of nodes.splice(0)) await node.kill();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  }, 60_000);

  async function startNode(name: string, env: Record<string, string>): Promise<ServerNode> {
    const node = await startServerNode(name, env);
    nodes.push(node);
    return node;
  }

  /** Expired activations each node's scheduler reported (its "scheduler pass" log lines). */
  function expiredByLog(node: ServerNode): number {
    let total = 0;
    for (const line of node.output().split("\n")) {
      if (!line.includes('"scheduler pass"')) continue;
      try {
        total += (JSON.parse(line) as { expired?: number }).expired ?? 0;
      } catch {
        // a line cut by the kill
      }
    }
    return total;
  }

  it(
    "ends every activation within 2 s of its expiry, exactly once, with node A killed",
    { timeout: 300_000 },
    async () => {
      const started = Date.now();
      const work = await mkdtemp(path.join(tmpdir(), "stint-multinode-"));
      cleanups.push(() => rm(work, { recursive: true, force: true }));
      const database = await createPgDatabase();
      cleanups.push(database.drop);
      // One master key shared by both nodes (they share the keyring in the database).
      const keyFile = path.join(work, "master.key");
      await writeFile(keyFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
      const env = (node: string): Record<string, string> => ({
        STINT_DATABASE_URL: database.url,
        STINT_DATA_DIR: path.join(work, node),
        STINT_MASTER_KEY_FILE: keyFile,
        STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
        STINT_SCHEDULER_POLL: "200ms",
        // info: the scheduler logs each pass that ended something, which tells which node did the work.
        STINT_LOG_LEVEL: "info",
      });

      // 1. Node A creates the schema and the administrator; node B joins while the test seeds.
      const a = await startNode("A", env("a"));
      const startingB = startNode("B", env("b"));
      startingB.catch(() => undefined);
      const adminAuth = await login(a.base, "admin", ADMIN_PASSWORD);

      // 2. Users through the API; their passwords, and the catalog, straight into the database.
      // (The server hashes passwords with scrypt N=2^17, seconds each on a loaded machine; a hash
      // with cheaper parameters verifies just the same, since a hash carries its parameters.)
      const users = Array.from({ length: USERS }, (_, i) => `mn-user-${String(i).padStart(2, "0")}`);
      const password = (user: string) => `pw-${user.length}-correct-horse-battery-${user.at(-1)}`;
      for (const user of users) {
        const res = await fetch(`${a.base}/v1/users`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: adminAuth },
          body: JSON.stringify({ name: user }),
        });
        await expectJson(res, 201, `create ${user}`);
      }
      const db = new pg.Client({ connectionString: database.url });
      await db.connect();
      cleanups.push(() => db.end());
      const spec = policySpec.parse({
        defaultDuration: DURATION,
        maxDuration: "1h",
        mfa: { required: false, maxAge: "10m" },
        justification: { minLength: 5 },
        approval: { stages: [] },
      });
      const targetId = randomUUID();
      const policyId = randomUUID();
      const groupId = randomUUID();
      await db.query("begin");
      await db.query(
        `insert into targets (id, name, kind, config, labels, created_at, updated_at)
         values ($1, 'stint', 'internal', '{}', '{}', now(), now())`,
        [targetId],
      );
      await db.query(
        `insert into policies (id, name, spec, created_at, updated_at) values ($1, 'multinode', $2, now(), now())`,
        [policyId, JSON.stringify(spec)],
      );
      await db.query(`insert into groups (id, name, created_at) values ($1, 'multinode', now())`, [groupId]);
      await db.query(
        `insert into group_members (group_id, principal_id, added_at)
         select $1, id, now() from principals where name like 'mn-user-%'`,
        [groupId],
      );
      const roles = Array.from({ length: ROLES_PER_WAVE * WAVES }, (_, i) => `mn-role-${String(i).padStart(2, "0")}`);
      for (const role of roles) {
        const roleId = randomUUID();
        await db.query(
          `insert into roles (id, name, target_id, policy_id, entitlement, risk, owners, created_at, updated_at)
           values ($1, $2, $3, $4, '{}', 'low', '{}', now(), now())`,
          [roleId, role, targetId, policyId],
        );
        await db.query(
          `insert into eligibilities (id, role_id, group_id, starts_at, granted_by, created_at)
           values ($1, $2, $3, now() - interval '1 hour', 'multinode test', now())`,
          [randomUUID(), roleId, groupId],
        );
      }
      for (const user of users) {
        await db.query(
          `insert into password_credentials (principal_id, hash, updated_at)
           select id, $2, now() from principals where name = $1`,
          [user, await hashPassword(password(user), { N: 2 ** 10, r: 8, p: 1 })],
        );
      }
      await db.query("commit");
      const b = await startingB;
      const booted = Date.now() - started;

      // Tokens from node B, used on both nodes (they share the signing keys).
      const tokens = new Map<string, string>();
      for (const user of users) tokens.set(user, await login(b.base, user, password(user)));

      // 3. Two waves of activations, each spread over both nodes by a few concurrent workers.
      const activations: { id: string; node: string; expiresAt: number; wave: number }[] = [];
      const failures: string[] = [];
      async function wave(index: number) {
        const jobs = users.flatMap((user, u) =>
          roles
            .slice(index * ROLES_PER_WAVE, (index + 1) * ROLES_PER_WAVE)
            .map((role, r) => ({ user, role, node: (u + r) % 2 === 0 ? a : b })),
        );
        let next = 0;
        const worker = async () => {
          while (next < jobs.length) {
            const job = jobs[next++]!;
            const res = await fetch(`${job.node.base}/v1/activation-requests`, {
              method: "POST",
              headers: { "content-type": "application/json", authorization: tokens.get(job.user)! },
              body: JSON.stringify({ role: job.role, duration: DURATION, reason: "multinode expiry test" }),
            });
            const text = await res.text();
            if (res.status !== 201) {
              failures.push(`${job.user} ${job.role} on ${job.node.name}: HTTP ${res.status} ${text}`);
              continue;
            }
            const body = JSON.parse(text) as { id: string; state: string; activatedAt: string; expiresAt: string };
            if (body.state !== "active") failures.push(`${job.user} ${job.role}: ${body.state}`);
            if (Date.parse(body.expiresAt) - Date.parse(body.activatedAt) !== DURATION_MS)
              failures.push(`${job.user} ${job.role}: active from ${body.activatedAt} to ${body.expiresAt}`);
            activations.push({ id: body.id, node: job.node.name, expiresAt: Date.parse(body.expiresAt), wave: index });
          }
        };
        const t = Date.now();
        await Promise.all(Array.from({ length: CONCURRENCY }, worker));
        return Date.now() - t;
      }
      const firstWaveAt = Date.now();
      const firstWaveMs = await wave(0);
      expect(failures).toEqual([]);
      await sleep(Math.max(0, firstWaveAt + WAVE_GAP_MS - Date.now()));
      const secondWaveMs = await wave(1);
      expect(failures).toEqual([]);
      expect(activations).toHaveLength(TOTAL);

      // 4. Kill node A in the middle of the first wave's expiries (halfway to the second wave's).
      const killDeadline = Math.max(...activations.filter((x) => x.wave === 0).map((x) => x.expiresAt)) + 10_000;
      let expiredAtKill = 0;
      for (;;) {
        const { rows } = await db.query<{ n: string }>(
          `select count(*) as n from activation_requests where state = 'expired'`,
        );
        expiredAtKill = Number(rows[0]!.n);
        if (expiredAtKill >= KILL_AFTER_EXPIRED || Date.now() > killDeadline) break;
        await sleep(20);
      }
      // Node A started first: it holds the audit sequencer's lease, so the kill takes the sequencer down mid-load.
      const holder = async () =>
        (await db.query<{ holder: string | null }>("select holder from audit_sequencer")).rows[0]?.holder ?? "";
      expect(await holder()).toContain(`:${a.child.pid}:`);
      a.child.kill("SIGKILL");
      const killedAt = Date.now();
      const death = await a.whenExited();
      expect(death.signal).toBe("SIGKILL");
      // Node B takes the lease over once A's runs out (5 s) and chains what A's transactions committed.
      while (!(await holder()).includes(`:${b.child.pid}:`)) {
        expect(Date.now() - killedAt, "node B did not take the sequencer over").toBeLessThan(15_000);
        await sleep(50);
      }
      const takeoverMs = Date.now() - killedAt;

      // 5. Wait until the last expiry + 3 s, then look at the database.
      const lastExpiry = Math.max(...activations.map((x) => x.expiresAt));
      await sleep(Math.max(0, lastExpiry + 3_000 - Date.now()));
      expect(b.child.exitCode, b.output()).toBeNull();

      const ids = activations.map((x) => x.id);
      const { rows } = await db.query<{
        id: string;
        state: string;
        expires_at: Date;
        ended_at: Date | null;
        grant_state: string | null;
      }>(
        `select r.id, r.state, r.expires_at, r.ended_at, g.state as grant_state
           from activation_requests r left join grants g on g.request_id = r.id
          where r.id = any($1)`,
        [ids],
      );
      expect(rows).toHaveLength(TOTAL);
      const notExpired = rows.filter((r) => r.state !== "expired" || r.ended_at === null);
      expect(notExpired, "activations not expired").toEqual([]);
      expect(rows.filter((r) => r.grant_state !== "revoked")).toEqual([]);
      const lateness = rows.map((r) => r.ended_at!.getTime() - r.expires_at.getTime()).sort((x, y) => x - y);
      const early = rows.filter((r) => r.ended_at!.getTime() < r.expires_at.getTime());
      expect(early, "ended before their expiry").toEqual([]);
      const late = rows.filter((r) => r.ended_at!.getTime() - r.expires_at.getTime() > MAX_LATENESS_MS);
      expect(
        late.map((r) => `${r.id}: ${r.ended_at!.getTime() - r.expires_at.getTime()} ms`),
        "ended more than 2 s late",
      ).toEqual([]);

      // Nothing the killed sequencer left behind is lost or chained twice: nothing waits, every id once.
      for (;;) {
        const { rows: waiting } = await db.query<{ n: string }>("select count(*) as n from audit_pending");
        if (Number(waiting[0]!.n) === 0) break;
        expect(Date.now() - lastExpiry, "audit events still waiting to be chained").toBeLessThan(20_000);
        await sleep(50);
      }
      const { rows: twice } = await db.query("select id from audit_events group by id having count(*) > 1");
      expect(twice, "audit events chained twice").toEqual([]);

      // Exactly one end event per activation, and it is the expiry.
      const { rows: ends } = await db.query<{ subject: string; action: string; n: string }>(
        `select subject, action, count(*) as n from audit_events
          where action in ('request.expired', 'request.revoked', 'request.deactivated')
            and subject = any($1)
          group by subject, action`,
        [ids.map((id) => `request:${id}`)],
      );
      const endsOf = new Map<string, string[]>();
      for (const e of ends)
        endsOf.set(e.subject, [...(endsOf.get(e.subject) ?? []), ...Array<string>(Number(e.n)).fill(e.action)]);
      const wrong = ids.filter((id) => {
        const list = endsOf.get(`request:${id}`) ?? [];
        return list.length !== 1 || list[0] !== "request.expired";
      });
      expect(
        wrong.map((id) => `${id}: ${(endsOf.get(`request:${id}`) ?? []).join(", ") || "no end event"}`),
        "activations without exactly one request.expired event",
      ).toEqual([]);

      // The chain verifies, read through the surviving node.
      const adminOnB = await login(b.base, "admin", ADMIN_PASSWORD);
      const verify = await expectJson<{ ok: boolean; count: number }>(
        await fetch(`${b.base}/v1/audit/verify`, { headers: { authorization: adminOnB } }),
        200,
        "verify",
      );
      expect(verify, JSON.stringify(verify)).toMatchObject({ ok: true });

      const byA = expiredByLog(a);
      const byB = expiredByLog(b);
      console.info(
        `[multinode] ${TOTAL} activations of ${DURATION} (waves of ${TOTAL / WAVES} submitted in ${firstWaveMs} ms ` +
          `and ${secondWaveMs} ms, ${WAVE_GAP_MS / 1000} s apart); node A killed ${killedAt - firstWaveAt} ms after ` +
          `the first wave began, with ${expiredAtKill} expired; expired by A ${byA}, by B ${byB} (from their logs); ` +
          `lateness min ${lateness[0]} ms, p50 ${percentile(lateness, 50)} ms, p99 ${percentile(lateness, 99)} ms, ` +
          `max ${lateness.at(-1)} ms; audit events ${verify.count}; sequencer taken over by B in ${takeoverMs} ms; boot and seeding ${booted} ms, total ${Date.now() - started} ms`,
      );
    },
  );
});
