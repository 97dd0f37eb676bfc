/**
 * Issue 13 acceptance 2: a crash at every failpoint, on the embedded store (PGlite) and on PostgreSQL.
 *
 * For each failpoint registered in src/lib/failpoints.ts, an activation of a role at a real PostgreSQL target is
 * driven through that failpoint's path by node A (the test server's outbox runner and scheduler), and node A dies
 * there: its outbox row keeps its lease, a transaction it was in rolls back. Node B (a second outbox runner and
 * scheduler on the same store, standing for the restarted node) takes over once the lease runs out. Time is a
 * manual clock moved from one due event to the next (leases, backoffs, expiries), so minutes of clock take
 * milliseconds. Then what a user checks:
 * - the activation ended as it should (at its expiry, within a lease when a crash delayed it), exactly once;
 * - no privilege remains at the target (pg_auth_members, or the minted login gone), it was gone within a lease
 *   (plus a probe interval) of the activation's end, and it never came back once gone;
 * - no outbox row is lost (none dead, none left over) and jobs run twice did no harm; the audit chain verifies.
 *
 * The walk fails when a failpoint is registered but no scenario crashes there, and when a scenario's failpoint
 * does not fire. The failpoints of the vault's rotation and of session recordings (`vault.*`, `session.*`) are
 * walked by failpoint-rotation-recording.test.ts, which fails the same way for those. Finding 2 is the `grant.provision.before-follow-up` scenario.
 */
import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import pg from "pg";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import type { Engine } from "../../src/lib/db.js";
import {
  armFailpoint,
  disarmFailpoints,
  FAILPOINT_NAMES,
  FailpointCrash,
  type ArmedFailpoint,
  type FailpointAction,
  type FailpointName,
} from "../../src/lib/failpoints.js";
import { ENGINES } from "../../src/testing/engines.js";
import { ADMIN_PASSWORD, passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { selfServicePolicy } from "../../src/testing/targets-harness.js";
import { switchableRelay } from "../../src/testing/tcp-relay.js";
import { createOutboxRunner, type OutboxRunner } from "../../src/workers/outbox-runner.js";
import { createScheduler, type Scheduler } from "../../src/workers/scheduler.js";
import { isMemberOf } from "../../src/testing/pg-target.js";

/** The outbox runner's default lease: a crashed attempt is taken over this long after its claim. */
const LEASE_MS = 30_000;
/** How often a target that stopped answering is probed (the grants service's default). */
const PROBE_INTERVAL_MS = 2_000;
/** The default backoff cap: a stuck revocation may wait this long without the probe. */
const BACKOFF_CAP_MS = 600_000;
const BACKOFF = { baseMs: 1_000, capMs: 10_000 };

const hex = randomBytes(4).toString("hex");
const database = `stint_fpw_${hex}`;
const adminUrl = "postgres://postgres@127.0.0.1:5432";
const readers = { static: `fpw_static_${hex}`, dynamic: `fpw_dynamic_${hex}`, flaky: `fpw_flaky_${hex}` };
type RoleKind = keyof typeof readers;
const loginOf = (user: string) => `stint_fpw_${user}`;

let root: pg.Client;

/** A TCP proxy to 127.0.0.1:5432, the flaky target's address: down, it refuses connections and cuts live ones. */
const proxy = switchableRelay({ host: "127.0.0.1", port: 5432 });
let proxyPort = 0;

const isMember = (reader: string, login: string) => isMemberOf(root, reader, login);

async function roleExists(name: string): Promise<boolean> {
  return (await root.query("select 1 from pg_roles where rolname = $1", [name])).rowCount === 1;
}

// ---------------------------------------------------------------------------------------------------------------
// One Stint deployment per engine: node A crashes, node B recovers

interface Node {
  outbox: Pick<OutboxRunner, "runOnce">;
  scheduler: Pick<Scheduler, "runOnce">;
}

interface Deployment {
  server: TestServer;
  clock: ReturnType<typeof manualClock>;
  nodeA: Node;
  nodeB: Node;
  user(index: number): string;
  api(as: string | null, method: "GET" | "POST", url: string, payload?: unknown): Promise<ApiReply>;
}

interface ApiReply {
  status: number;
  body: Record<string, unknown>;
}

async function deploy(engine: Engine, users: string[]): Promise<Deployment> {
  const clock = manualClock(new Date());
  const server = await testServer(engine, {
    clock,
    env: { STINT_RECONCILE_INTERVAL: "0" },
    outboxBackoff: BACKOFF,
  });
  const api: Deployment["api"] = async (as, method, url, payload) => {
    const auth =
      as === null ? await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD) : await server.login(as);
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: res.body ? (res.json() as Record<string, unknown>) : {} };
  };
  for (const name of users) {
    const res = await api(null, "POST", "/v1/users", { name, password: passwordFor(name) });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  }
  const applied = await api(null, "POST", "/v1/config/apply", {
    yaml: `
apiVersion: stint/v1
policies:${selfServicePolicy("walk-self")}
targets:
  - name: walk-db
    kind: postgres
    address: ${adminUrl}/${database}?sslmode=disable
    identity: { template: "stint_fpw_{{name}}" }
    options: { ignore: [postgres] }
  - name: flaky-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:${proxyPort}/${database}?sslmode=disable
    identity: { template: "stint_fpw_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: walk-static
    target: walk-db
    entitlement: { role: ${readers.static} }
    policy: walk-self
    risk: medium
  - name: walk-dynamic
    target: walk-db
    entitlement: { role: ${readers.dynamic}, dynamic: true }
    policy: walk-self
    risk: medium
  - name: walk-flaky
    target: flaky-db
    entitlement: { role: ${readers.flaky} }
    policy: walk-self
    risk: medium
eligibility:
${(["static", "dynamic", "flaky"] as const).map((kind) => `  - role: walk-${kind}\n    users: [${users.join(", ")}]`).join("\n")}
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  const nodeB: Node = {
    outbox: createOutboxRunner({
      store: server.store,
      clock,
      handlers: server.grants.handlers,
      audit: server.audit,
      registry: new Registry(),
      backoff: BACKOFF,
    }),
    scheduler: createScheduler({ requests: server.requests }),
  };
  return { server, clock, nodeA: server, nodeB, user: (i) => users[i]!, api };
}

// ---------------------------------------------------------------------------------------------------------------
// One walk: an activation, driven to a crash, recovered

interface Observation {
  at: number;
  held: boolean;
  state: string;
}

class Walk {
  readonly db;
  requestId = "";
  grantId = "";
  crash: { name: FailpointName; armed: ArmedFailpoint } | undefined;
  /** The user had the privilege while the activation was active. */
  sawActive = false;
  /** When the privilege should start going (clock ms): the activation's end unless the scenario says otherwise. */
  dueFrom: number | undefined;

  constructor(
    readonly d: Deployment,
    readonly user: string,
    readonly kind: RoleKind,
  ) {
    this.db = d.server.store.db;
  }

  async submit(): Promise<void> {
    const res = await this.d.api(this.user, "POST", "/v1/activation-requests", {
      role: `walk-${this.kind}`,
      duration: "10m",
      reason: "walking the failpoints of issue 13",
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    this.requestId = String(res.body.id);
    const grant = await this.db
      .selectFrom("grants")
      .select("id")
      .where("request_id", "=", this.requestId)
      .executeTakeFirstOrThrow();
    this.grantId = grant.id;
  }

  /** The scenario's crash: armed once. */
  crashAt(name: FailpointName): void {
    this.crash = { name, armed: armFailpoint(name, "crash") };
  }

  arm(name: FailpointName, action: FailpointAction): ArmedFailpoint {
    return armFailpoint(name, action);
  }

  async grant() {
    return this.db
      .selectFrom("grants")
      .select(["state", "login"])
      .where("id", "=", this.grantId)
      .executeTakeFirstOrThrow();
  }

  async request() {
    const row = await this.db
      .selectFrom("activation_requests")
      .select(["state", "expires_at", "ended_at"])
      .where("id", "=", this.requestId)
      .executeTakeFirstOrThrow();
    return {
      state: row.state,
      expiresAt: row.expires_at === null ? null : new Date(row.expires_at).getTime(),
      endedAt: row.ended_at === null ? null : new Date(row.ended_at).getTime(),
    };
  }

  /** Whether the target holds the privilege now: the membership, or for a dynamic role the minted login. */
  async held(): Promise<boolean> {
    if (this.kind === "dynamic") {
      const { login } = await this.grant();
      return login !== null && (await roleExists(login));
    }
    return isMember(readers[this.kind], loginOf(this.user));
  }

  async drain(node: Node): Promise<void> {
    for (let pass = 0; pass < 20; pass++) if ((await node.outbox.runOnce()).claimed === 0) return;
  }

  /** The earliest time something is due: an outbox row, a lease running out, this activation's expiry. */
  async nextEvent(): Promise<number | null> {
    const rows = await this.db
      .selectFrom("outbox")
      .select(["status", "next_attempt_at", "locked_until"])
      .where("status", "in", ["pending", "running"])
      .execute();
    const times = rows.map((r) =>
      r.status === "pending" ? new Date(r.next_attempt_at).getTime() : new Date(r.locked_until!).getTime() + 1,
    );
    const request = await this.request();
    if (request.state === "active" && request.expiresAt !== null) times.push(request.expiresAt);
    return times.length === 0 ? null : Math.min(...times);
  }

  jumpTo(time: number): void {
    const ahead = time - this.d.clock.now().getTime();
    if (ahead > 0) this.d.clock.advance(ahead);
  }

  /** Node A runs the outbox, the clock moving to each next due row, until `done` (at most 20 events). */
  async driveA(done: () => Promise<boolean> | boolean): Promise<void> {
    for (let step = 0; step < 20; step++) {
      if (await done()) return;
      const next = await this.nextEvent();
      if (next !== null) this.jumpTo(next);
      await this.drain(this.d.nodeA);
    }
    throw new Error("node A did not get there within 20 events");
  }

  /** Node A provisions the activation, and the user has the privilege. */
  async activateA(): Promise<void> {
    await this.drain(this.d.nodeA);
    expect((await this.request()).state).toBe("active");
    expect(await this.held()).toBe(true);
    this.sawActive = true;
  }

  /** The clock reaches the activation's expiry and node A's scheduler runs (it may crash: returned). */
  async expireA(): Promise<unknown> {
    this.jumpTo((await this.request()).expiresAt!);
    return this.d.nodeA.scheduler.runOnce().then(
      () => undefined,
      (error: unknown) => error,
    );
  }

  /** Node B, the restarted node, runs everything that comes due until this activation has settled. */
  async recover(): Promise<Observation[]> {
    const seen: Observation[] = [];
    for (let step = 0; step < 40; step++) {
      const { state } = await this.request();
      const held = await this.held();
      seen.push({ at: this.d.clock.now().getTime(), held, state });
      if (state === "active" && held) this.sawActive = true;
      const open = await this.db
        .selectFrom("outbox")
        .select("id")
        .where("status", "in", ["pending", "running"])
        .execute();
      if (["expired", "revoked", "failed"].includes(state) && open.length === 0) return seen;
      const next = await this.nextEvent();
      if (next === null) return seen; // nothing more will happen: the checks say what is wrong
      this.jumpTo(next);
      await this.d.nodeB.scheduler.runOnce();
      await this.drain(this.d.nodeB);
    }
    throw new Error("the activation did not settle within 40 events");
  }

  /** Audit actions of a subject, chained or still waiting for the sequencer. */
  async auditActions(subject: string): Promise<string[]> {
    const pending = await sql<{ t: string | null }>`select to_regclass('audit_pending')::text as t`.execute(this.db);
    const query =
      pending.rows[0]?.t != null
        ? sql<{ action: string }>`select action from audit_events where subject = ${subject}
            union all select action from audit_pending where subject = ${subject}`
        : sql<{ action: string }>`select action from audit_events where subject = ${subject}`;
    return (await query.execute(this.db)).rows.map((r) => r.action);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The walk: one scenario (at least) per failpoint

interface Scenario {
  failpoint: FailpointName;
  what: string;
  role: RoleKind;
  /** How the activation must end. */
  ends: "expired" | "revoked" | "failed";
  /** Longest time from the activation's end to the privilege gone at the target (default: one lease and 1 s). */
  recoveryMs?: number;
  /** The scenario submits the walked activation itself (something else happens first). */
  submitsItself?: boolean;
  /** Drives the activation up to node A's crash at `failpoint`. */
  crash(w: Walk): Promise<void>;
  /** What else a user checks after the recovery. */
  check?(w: Walk): Promise<void>;
}

/** Node A provisions while the flaky target is down, until `attempts` attempts have failed. */
async function failProvisioningAttempts(w: Walk, attempts: number): Promise<void> {
  await proxy.down();
  await w.driveA(async () => {
    const row = await w.db
      .selectFrom("outbox")
      .select(["attempts", "status"])
      .where("idempotency_key", "=", `provision:${w.grantId}`)
      .executeTakeFirstOrThrow();
    return row.attempts >= attempts && row.status === "pending";
  });
}

const WALK: Scenario[] = [
  {
    failpoint: "grant.provision.before-target",
    what: "the provisioning attempt dies before calling the target",
    role: "static",
    ends: "expired",
    async crash(w) {
      w.crashAt("grant.provision.before-target");
      await w.drain(w.d.nodeA);
    },
  },
  {
    failpoint: "grant.provision.before-credential",
    what: "the provisioning of a dynamic login dies before storing its new password, the login made with it",
    role: "dynamic",
    ends: "expired",
    async crash(w) {
      w.crashAt("grant.provision.before-credential");
      await w.drain(w.d.nodeA);
    },
  },
  {
    failpoint: "grant.provision.after-credential",
    what: "the provisioning of a dynamic login dies after storing its password, the login being made beside it",
    role: "dynamic",
    ends: "expired",
    async crash(w) {
      w.crashAt("grant.provision.after-credential");
      await w.drain(w.d.nodeA);
    },
  },
  {
    failpoint: "grant.provision.after-target",
    what: "the GRANT commits at the target and the node dies before the activation is marked active",
    role: "static",
    ends: "expired",
    async crash(w) {
      w.crashAt("grant.provision.after-target");
      await w.drain(w.d.nodeA);
      expect(await w.held()).toBe(true);
    },
  },
  {
    failpoint: "grant.provision.after-target",
    what: "as above on the provisioning's last attempt (the target was down for the first four)",
    role: "flaky",
    ends: "failed",
    async crash(w) {
      await failProvisioningAttempts(w, 4);
      await proxy.up();
      w.crashAt("grant.provision.after-target");
      await w.driveA(() => w.crash!.armed.fired > 0);
      expect(await w.held()).toBe(true);
    },
  },
  {
    failpoint: "grant.provision.before-follow-up",
    what: "finding 2: revoked while provisioning (the revocation finds nothing), the GRANT lands, the node dies",
    role: "static",
    ends: "revoked",
    async crash(w) {
      w.arm("grant.provision.before-target", async () => {
        const revoked = await w.d.api(null, "POST", `/v1/activation-requests/${w.requestId}/revoke`, {
          reason: "wrong account",
        });
        expect(revoked.body.state).toBe("revoked");
        await w.drain(w.d.nodeA); // the revocation runs now and finds nothing at the target
      });
      w.crashAt("grant.provision.before-follow-up");
      await w.drain(w.d.nodeA);
      // The window of the finding: revoked in Stint, held at the target.
      expect((await w.grant()).state).toBe("revoked");
      expect(await w.held()).toBe(true);
    },
  },
  {
    failpoint: "grant.provision.after-give-up",
    what: "the target never answers (a call landed unseen); the activation fails and the node dies",
    role: "flaky",
    ends: "failed",
    async crash(w) {
      // What a call that timed out may leave behind: the membership, without an answer.
      await root.query(`grant ${readers.flaky} to ${loginOf(w.user)}`);
      await proxy.down();
      w.crashAt("grant.provision.after-give-up");
      await w.driveA(() => w.crash!.armed.fired > 0);
      await proxy.up();
      expect((await w.request()).state).toBe("failed");
      expect(await w.held()).toBe(true);
    },
  },
  {
    failpoint: "grant.end.before-commit",
    what: "the scheduler's expiry transaction dies after queueing the revocation, before committing",
    role: "static",
    ends: "expired",
    async crash(w) {
      await w.activateA();
      w.crashAt("grant.end.before-commit");
      expect(await w.expireA()).toBeInstanceOf(FailpointCrash);
      // Rolled back whole: still active, no revocation queued.
      expect((await w.request()).state).toBe("active");
      expect((await w.grant()).state).toBe("active");
      const revoke = await w.db
        .selectFrom("outbox")
        .select("id")
        .where("idempotency_key", "=", `revoke:${w.grantId}`)
        .executeTakeFirst();
      expect(revoke).toBeUndefined();
    },
  },
  {
    failpoint: "scheduler.expiry.after-commit",
    what: "the node dies right after its scheduler committed the expiry",
    role: "static",
    ends: "expired",
    async crash(w) {
      await w.activateA();
      w.crashAt("scheduler.expiry.after-commit");
      expect(await w.expireA()).toBeInstanceOf(FailpointCrash);
      expect((await w.grant()).state).toBe("revoking");
      expect(await w.held()).toBe(true);
    },
  },
  {
    failpoint: "grant.revoke.before-target",
    what: "the revocation attempt dies before calling the target",
    role: "static",
    ends: "expired",
    async crash(w) {
      await w.activateA();
      expect(await w.expireA()).toBeUndefined();
      w.crashAt("grant.revoke.before-target");
      await w.drain(w.d.nodeA);
      expect(await w.held()).toBe(true);
    },
  },
  {
    failpoint: "grant.revoke.after-target",
    what: "the minted login is dropped at the target and the node dies before the grant is marked revoked",
    role: "dynamic",
    ends: "expired",
    async crash(w) {
      await w.activateA();
      expect(await w.expireA()).toBeUndefined();
      w.crashAt("grant.revoke.after-target");
      await w.drain(w.d.nodeA);
      expect(await w.held()).toBe(false);
      expect((await w.grant()).state).toBe("revoking");
    },
    async check(w) {
      expect(await w.auditActions(`grant:${w.grantId}`)).toEqual(["grant.revoked"]);
    },
  },
  {
    failpoint: "grant.restore.after-target",
    what: "the revocation of the user's earlier activation lands after this one's GRANT; the membership is put back and the node dies before checking it is still needed",
    role: "static",
    ends: "expired",
    submitsItself: true,
    async crash(w) {
      // The user's earlier activation of the same role, ended by the user: one membership for both.
      const earlier = await w.d.api(w.user, "POST", "/v1/activation-requests", {
        role: "walk-static",
        duration: "10m",
        reason: "walking the failpoints of issue 13",
      });
      expect(earlier.status, JSON.stringify(earlier.body)).toBe(201);
      await w.drain(w.d.nodeA);
      expect(await w.held()).toBe(true);
      const ended = await w.d.api(w.user, "POST", "/v1/me/roles/walk-static/deactivate");
      expect(ended.status, JSON.stringify(ended.body)).toBe(200);
      // Its revocation has checked that no active grant relies on the membership; before its REVOKE lands, the
      // user activates again (the GRANT finds the membership there).
      w.arm("grant.revoke.before-target", async () => {
        await w.submit();
        await w.activateA();
      });
      w.crashAt("grant.restore.after-target");
      await w.drain(w.d.nodeA);
      expect(await w.held()).toBe(true);
      expect((await w.request()).state).toBe("active");
    },
    async check(w) {
      const actions = await w.auditActions(`grant:${w.grantId}`);
      expect(actions.filter((a) => a === "grant.restored")).toHaveLength(1);
    },
  },
  {
    failpoint: "grant.probe.after-target",
    what: "the target was down at the expiry; it answers its probe and the node dies before waking the revocation",
    role: "flaky",
    ends: "expired",
    // The probe comes one interval after the failed revocation; its crash costs a lease.
    recoveryMs: PROBE_INTERVAL_MS + LEASE_MS + 1_000,
    async crash(w) {
      await w.activateA();
      await proxy.down();
      expect(await w.expireA()).toBeUndefined();
      await w.drain(w.d.nodeA); // the revocation fails: the target does not answer
      expect((await w.grant()).state).toBe("revoking");
      // Its backoff has grown to the cap (as after a long outage): only the probe brings it forward.
      await w.db
        .updateTable("outbox")
        .set({ next_attempt_at: new Date(w.d.clock.now().getTime() + BACKOFF_CAP_MS) })
        .where("idempotency_key", "=", `revoke:${w.grantId}`)
        .execute();
      await proxy.up();
      w.crashAt("grant.probe.after-target");
      await w.driveA(() => w.crash!.armed.fired > 0);
      expect(await w.held()).toBe(true);
    },
  },
  {
    failpoint: "drift.remove.after-target",
    what: "the reconciler removes a membership Stint left for an ended grant and dies before resolving the finding",
    role: "static",
    ends: "expired",
    async crash(w) {
      await leftoverFound(w);
      w.crashAt("drift.remove.after-target");
      await w.drain(w.d.nodeA);
      expect(await w.held()).toBe(false);
    },
    check: leftoverRemoved,
  },
  {
    failpoint: "outbox.job.before-run",
    what: "the node dies holding the lease of a provisioning it claimed, before running it",
    role: "static",
    ends: "expired",
    async crash(w) {
      w.crashAt("outbox.job.before-run");
      await w.drain(w.d.nodeA);
      const row = await w.db
        .selectFrom("outbox")
        .select(["status", "attempts"])
        .where("idempotency_key", "=", `provision:${w.grantId}`)
        .executeTakeFirstOrThrow();
      expect(row).toEqual({ status: "running", attempts: 1 });
    },
  },
  {
    // A revocation's (and a provisioning's) done-mark commits with its last transaction: a job that ends with a
    // transaction of its own cannot finish without it. A drift removal's is still the runner's.
    failpoint: "outbox.job.before-done",
    what: "the reconciler's removal of a leftover finishes and the node dies before marking its row done: it runs again",
    role: "static",
    ends: "expired",
    async crash(w) {
      await leftoverFound(w);
      w.crashAt("outbox.job.before-done");
      await w.drain(w.d.nodeA);
      expect(await w.held()).toBe(false);
    },
    async check(w) {
      await leftoverRemoved(w);
      // Run twice, audited once.
      const events = await sql<{ n: number }>`select count(*)::int as n from (
          select details from audit_events where action = 'drift.removed'
          union all select details from audit_pending where action = 'drift.removed') e
        where e.details->>'login' = ${loginOf(w.user)}`.execute(w.db);
      expect(events.rows[0]!.n).toBe(1);
    },
  },
  {
    failpoint: "audit.sequence.before-commit",
    what: "the node chaining audit events dies before its chaining transaction commits",
    role: "static",
    ends: "expired",
    async crash(w) {
      await w.activateA();
      w.crashAt("audit.sequence.before-commit");
      // Inline sequencing (PGlite): the expiry's own transaction chains, and dies with it. Background
      // (PostgreSQL): the expiry commits; the pass that chains its events dies (the server's sequencer, or ours).
      await w.expireA();
      if (w.crash!.armed.fired === 0) await w.d.server.audit.catchUp().catch(() => undefined);
    },
    async check(w) {
      // Nothing lost (the walk counted one end event), nothing waiting, nothing chained twice.
      await w.d.server.audit.catchUp();
      expect((await w.d.server.audit.pendingStats()).count).toBe(0);
      const twice = await sql<{ id: string }>`select id from audit_events group by id having count(*) > 1`.execute(
        w.db,
      );
      expect(twice.rows).toEqual([]);
    },
  },
];

/** The user's activation expired and was revoked; then a GRANT that landed after everything else (see finding
 * 2): Stint's own leftover, found by a reconcile a minute later, its removal queued. */
async function leftoverFound(w: Walk): Promise<void> {
  await w.activateA();
  expect(await w.expireA()).toBeUndefined();
  await w.drain(w.d.nodeA);
  expect(await w.held()).toBe(false);
  await root.query(`grant ${readers.static} to ${loginOf(w.user)}`);
  w.d.clock.advance(60_000);
  w.dueFrom = w.d.clock.now().getTime();
  const res = await w.d.api(null, "POST", "/v1/reconcile", { target: "walk-db" });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const drift = (res.body.items as { drift: { login: string; action: string }[] }[])[0]!.drift;
  expect(drift).toContainEqual(expect.objectContaining({ login: loginOf(w.user), action: "removing" }));
}

/** The leftover's finding: removed and resolved. */
async function leftoverRemoved(w: Walk): Promise<void> {
  const finding = await w.db
    .selectFrom("drift_findings")
    .select(["action", "resolved_at"])
    .where("login", "=", loginOf(w.user))
    .executeTakeFirstOrThrow();
  expect(finding.action).toBe("removed");
  expect(finding.resolved_at).not.toBeNull();
}

const END_EVENTS = ["request.expired", "request.revoked", "request.deactivated", "request.failed"];

async function walk(d: Deployment, scenario: Scenario, index: number): Promise<void> {
  const w = new Walk(d, d.user(index), scenario.role);
  const deadBefore = await d.server.store.db.selectFrom("outbox").select("id").where("status", "=", "dead").execute();
  if (!scenario.submitsItself) await w.submit();
  await scenario.crash(w);
  // The scenario's node died at its failpoint, once.
  expect(w.crash?.name).toBe(scenario.failpoint);
  expect(w.crash!.armed.fired).toBe(1);
  disarmFailpoints();

  const seen = await w.recover();
  const request = await w.request();
  const grant = await w.grant();
  const dueFrom = w.dueFrom ?? request.endedAt!;
  const describeSeen = () => JSON.stringify({ request, grant, seen: seen.map((o) => ({ ...o, at: o.at - dueFrom })) });

  // The activation ended as it should, once.
  expect(request.state, describeSeen()).toBe(scenario.ends);
  expect(grant.state).toBe(scenario.ends === "failed" ? "failed" : "revoked");
  const actions = await w.auditActions(`request:${w.requestId}`);
  expect(actions.filter((a) => END_EVENTS.includes(a))).toEqual([`request.${scenario.ends}`]);
  expect(actions.filter((a) => a === "request.activated").length).toBe(scenario.ends === "expired" ? 1 : 0);
  if (scenario.ends === "expired") {
    expect(w.sawActive, "the user had the privilege while the activation was active").toBe(true);
    // Ended at its expiry, even when the node ending it died.
    expect(request.endedAt! - request.expiresAt!).toBeLessThanOrEqual(1_000);
  }

  // No privilege remains; it went within the recovery bound of the end and never came back.
  expect(await w.held(), describeSeen()).toBe(false);
  const afterEnd = seen.filter((o) => o.at >= dueFrom);
  const gone = afterEnd.findIndex((o) => !o.held);
  expect(gone, describeSeen()).toBeGreaterThanOrEqual(0);
  expect(
    afterEnd.slice(gone).every((o) => !o.held),
    describeSeen(),
  ).toBe(true);
  expect(afterEnd[gone]!.at - dueFrom, describeSeen()).toBeLessThanOrEqual(scenario.recoveryMs ?? LEASE_MS + 1_000);

  // No outbox row lost or left over: nothing dead-lettered meanwhile, everything of this grant done.
  const dead = await w.db
    .selectFrom("outbox")
    .select(["id", "kind", "idempotency_key", "last_error"])
    .where("status", "=", "dead")
    .execute();
  expect(dead.filter((row) => !deadBefore.some((before) => before.id === row.id))).toEqual([]);
  const rows = await w.db
    .selectFrom("outbox")
    .select(["idempotency_key", "status"])
    .where("idempotency_key", "like", `%${w.grantId}%`)
    .execute();
  expect(rows.filter((r) => r.status !== "done")).toEqual([]);

  await scenario.check?.(w);
  const verified = await d.server.audit.verify();
  expect(verified.ok, JSON.stringify(verified)).toBe(true);
}

// ---------------------------------------------------------------------------------------------------------------

beforeAll(async () => {
  root = new pg.Client({ connectionString: `${adminUrl}/postgres` });
  await root.connect();
  await root.query(`create database ${database}`);
  for (const reader of Object.values(readers)) await root.query(`create role ${reader} nologin`);
  proxyPort = await proxy.up();
});

afterEach(() => disarmFailpoints());

afterAll(async () => {
  await proxy.down();
  if (!root) return;
  await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
  // The logins, minted logins and roles of this run all carry its hex.
  const roles = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
    `%${hex}%`,
  ]);
  const ordered = roles.rows
    .map((r) => r.rolname)
    .sort((a, b) => Number(a.startsWith("fpw_")) - Number(b.startsWith("fpw_")));
  for (const role of ordered) await root.query(`drop role if exists "${role}"`).catch(() => undefined);
  await root.end();
});

/** Failpoints of the vault's rotation and of session recordings: walked by failpoint-rotation-recording.test.ts. */
const WALKED_ELSEWHERE = /^(vault|session)\./;

it("walks every registered failpoint (with failpoint-rotation-recording.test.ts)", () => {
  expect(new Set(WALK.map((s) => s.failpoint))).toEqual(
    new Set(FAILPOINT_NAMES.filter((name) => !WALKED_ELSEWHERE.test(name))),
  );
});

describe.each(ENGINES)("a crash at every failpoint, store on %s", (engine) => {
  const tag = engine === "pglite" ? "l" : "q";
  const users = WALK.map((_, i) => `w${i}${tag}${hex}`);
  let d: Deployment;

  beforeAll(async () => {
    for (const user of users) await root.query(`create role ${loginOf(user)} login`);
    d = await deploy(engine, users);
  });

  afterAll(async () => {
    await d?.server.cleanup();
  });

  it.each(WALK.map((scenario, index) => ({ scenario, index, name: `${scenario.failpoint}: ${scenario.what}` })))(
    "$name",
    async ({ scenario, index }) => {
      await walk(d, scenario, index);
    },
  );
});
