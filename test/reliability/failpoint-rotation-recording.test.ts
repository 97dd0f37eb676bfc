/**
 * Issue 13 acceptance 2, the vault's rotation and session recordings: a crash at each `vault.` and `session.`
 * failpoint of src/lib/failpoints.ts, with the store on PGlite and on PostgreSQL (the activation paths are walked by
 * failpoint-walk.test.ts).
 *
 * Rotation: a secret that is the password of a real login on a throwaway PostgreSQL cluster that checks passwords.
 * Node A rotates it and dies at the failpoint (its rotation claim stays held, as a dead node's does). Node B, a fresh
 * vault service on the same store standing for the restarted node, settles what A left once A's claim runs out
 * (manual clock). Then what a user checks: the vault's current version signs in at the target, nothing is left
 * pending, every committed rotation version has exactly one event that made it current, a further rotation works,
 * and the audit chain verifies.
 *
 * Recording: a PostgreSQL session opened through node A's gate (a sessions service of its own, never started: no
 * sweep touches its sessions once it is dead) records statements and node A dies at the failpoint. Node B (the test
 * server's sessions service) sweeps a minute later. Then: the session is ended (`node_lost`), not left live; exactly
 * one `session.ended`; its recording is readable, holds what reached the disk before the crash, and its SHA-256 is
 * the one in `session.ended` and on the row; no `.partial` file is left; the audit chain verifies. When node A kept
 * its recordings in a directory of its own, node B says in `session.ended` that it does not hold the recording.
 *
 * Besides the crashes: a rotation paused past its claim (a stalled node) while another node settles its pending
 * version on the old password must not leave the target on a password the vault does not hold (it did: node A then
 * changed the target, its fenced commit did nothing, and it answered success).
 *
 * The test fails when a `vault.` or `session.` failpoint is registered but not walked, and when a scenario's
 * failpoint does not fire.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseRecording } from "../../src/contract/recording.js";
import { createBlobStore } from "../../src/lib/blob-store.js";
import { manualClock } from "../../src/lib/clock.js";
import type { Engine } from "../../src/lib/db.js";
import {
  armFailpoint,
  disarmFailpoints,
  FAILPOINT_NAMES,
  FailpointCrash,
  type FailpointName,
} from "../../src/lib/failpoints.js";
import { createLogger } from "../../src/lib/logger.js";
import type { Actor } from "../../src/modules/authz/authz.types.js";
import { createSessionService } from "../../src/modules/sessions/sessions.service.js";
import { createVaultService } from "../../src/modules/vault/vault.service.js";
import { ENGINES } from "../../src/testing/engines.js";
import { asSuperuser, signsIn, startPostgres, type PostgresInstance } from "../../src/testing/postgres-instance.js";
import { ADMIN_PASSWORD, passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { selfServicePolicy } from "../../src/testing/targets-harness.js";
import { until } from "../../src/testing/until.js";

/** The vault's rotation claim: a dead node's claim is taken over this long after it was made. */
const ROTATION_LEASE_MS = 10 * 60_000;
/** A live session untouched this long belonged to a dead node (the sessions service's default with a 5 s sweep). */
const SESSION_LOST_MS = 60_000;

const PATHS = /^(vault|session)\./;
const hex = randomBytes(4).toString("hex");
const reader = `fpr_reader_${hex}`;
const context = { correlationId: "failpoint-walk", sourceIp: null, userAgent: null };

let instance: PostgresInstance;

// ---------------------------------------------------------------------------------------------------------------
// One deployment per engine

interface Deployment {
  server: TestServer;
  clock: ReturnType<typeof manualClock>;
  vaultKey: Buffer;
  masterKey: Buffer;
  admin: Extract<Actor, { kind: "principal" }>;
  api(as: string | null, method: "GET" | "POST" | "PUT", url: string, payload?: unknown): Promise<ApiReply>;
}

interface ApiReply {
  status: number;
  body: Record<string, unknown>;
  raw: Buffer;
}

async function deploy(engine: Engine, users: string[]): Promise<Deployment> {
  const clock = manualClock(new Date());
  const vaultKey = randomBytes(32);
  const masterKey = randomBytes(32);
  const server = await testServer(engine, {
    clock,
    vaultKey,
    masterKey,
    logLevel: "error",
    env: { STINT_RECONCILE_INTERVAL: "0" },
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
    const json = res.headers["content-type"]?.toString().startsWith("application/json") && res.body;
    return {
      status: res.statusCode,
      body: json ? (res.json() as Record<string, unknown>) : {},
      raw: res.rawPayload,
    };
  };
  // Database tokens name where the proxy listens; the test drives the gate itself.
  server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: 6543 });
  for (const name of users) {
    const res = await api(null, "POST", "/v1/users", { name, password: passwordFor(name) });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  }
  const applied = await api(null, "POST", "/v1/config/apply", {
    yaml: `
apiVersion: stint/v1
policies:${selfServicePolicy("fpr-self")}
    session: { recording: required }
targets:
  - name: fpr-db
    kind: postgres
    address: ${instance.url}?sslmode=disable
    credential: { secret: targets/fpr-db/admin }
    identity: { template: "fpr_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: fpr-session
    target: fpr-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: fpr-self
    risk: medium
eligibility:
  - role: fpr-session
    users: [${users.join(", ")}]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  const set = await api(null, "PUT", "/v1/targets/fpr-db/credential", { secret: instance.adminPassword });
  expect(set.status, JSON.stringify(set.body)).toBe(200);
  const adminId = await server.store.db
    .selectFrom("principals")
    .select("id")
    .where("name", "=", server.config.bootstrapAdminName)
    .executeTakeFirstOrThrow();
  const admin: Deployment["admin"] = {
    kind: "principal",
    id: adminId.id,
    name: server.config.bootstrapAdminName,
    principalKind: "user",
    roles: ["admin"],
    mfaAt: null,
  };
  return { server, clock, vaultKey, masterKey, admin, api };
}

/** Audit actions and details of a subject, chained or still waiting for the sequencer. */
async function auditOf(
  d: Deployment,
  subject: string,
): Promise<{ action: string; details: Record<string, unknown> }[]> {
  await d.server.audit.catchUp();
  const rows = await d.server.store.db
    .selectFrom("audit_events")
    .select(["action", "details"])
    .where("subject", "=", subject)
    .orderBy("seq")
    .execute();
  return rows.map((r) => ({
    action: r.action,
    details: (typeof r.details === "string" ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// Rotation

interface RotationScenario {
  failpoint: FailpointName;
  what: string;
  /** Which password the target accepts when node A dies. */
  targetHas: "old" | "new";
}

const ROTATIONS: RotationScenario[] = [
  {
    failpoint: "vault.rotate.after-pending",
    what: "the new password is stored pending and the node dies before touching the target",
    targetHas: "old",
  },
  {
    failpoint: "vault.rotate.after-target",
    what: "the target accepts the new password and the node dies before committing its version",
    targetHas: "new",
  },
  {
    failpoint: "vault.rotate.before-commit",
    what: "the transaction making the new version current dies with the node",
    targetHas: "new",
  },
];

/** A login at the target and, at `secretPath`, the vault's password secret that rotates it; returns its password. */
async function rotatedLogin(d: Deployment, login: string, secretPath: string): Promise<string> {
  const original = `orig-${randomBytes(10).toString("hex")}`;
  await asSuperuser(instance, (c) => c.query(`create role ${login} login password '${original}'`));
  await d.server.vault.put(d.admin, context, secretPath, {
    kind: "password",
    value: original,
    platformRoles: ["admin"],
    rotation: { target: "fpr-db", login, every: "30d" },
  } as never);
  return original;
}

async function walkRotation(d: Deployment, scenario: RotationScenario, index: number): Promise<void> {
  const { server, clock, admin } = d;
  const db = server.store.db;
  const login = `fpr_app_${index}_${hex}`;
  const secretPath = `fpr/${index}/${hex}`;
  const original = await rotatedLogin(d, login, secretPath);
  const secret = await db.selectFrom("secrets").select("id").where("path", "=", secretPath).executeTakeFirstOrThrow();

  // Node A rotates and dies at the failpoint.
  const armed = armFailpoint(scenario.failpoint, "crash");
  const crash = await server.vault.rotate(admin, context, secretPath).then(
    () => null,
    (error: unknown) => error,
  );
  expect(crash).toBeInstanceOf(FailpointCrash);
  expect(armed.fired).toBe(1);
  disarmFailpoints();
  const crashedAt = clock.now().getTime();
  const pendingAtCrash = await db
    .selectFrom("secret_versions")
    .select("version")
    .where("secret_id", "=", secret.id)
    .where("pending", "=", true)
    .execute();
  expect(pendingAtCrash.map((v) => v.version)).toEqual([2]);
  expect(await signsIn(instance, login, original)).toBe(scenario.targetHas === "old");

  // Node B: the restarted node, a vault service of its own on the same store.
  const nodeB = createVaultService({
    store: server.store,
    audit: server.audit,
    clock,
    fileKey: d.vaultKey,
    masterKey: d.masterKey,
    node: "node-b",
    targets: { withCredentials: (name, work) => server.grants.withCredentials(name, work) },
  });
  // At once (what the restarted node does at start): node A's claim still holds, so nothing is settled yet.
  expect((await nodeB.reconcilePending()).settled).toBe(0);
  // Once the claim has run out, the next pass settles on the password the target accepts.
  clock.advance(ROTATION_LEASE_MS + 1_000);
  expect((await nodeB.reconcilePending()).settled).toBe(1);
  expect(clock.now().getTime() - crashedAt).toBeLessThanOrEqual(ROTATION_LEASE_MS + 60_000);

  const checkInvariants = async () => {
    // Nothing pending; the vault's current version signs in at the target.
    const pending = await db
      .selectFrom("secret_versions")
      .select("version")
      .where("secret_id", "=", secret.id)
      .where("pending", "=", true)
      .execute();
    expect(pending).toEqual([]);
    const current = await nodeB.read(admin, context, secretPath);
    expect(await signsIn(instance, login, current.value), "the vault's current version signs in at the target").toBe(
      true,
    );
    // Every committed rotation version was made current by exactly one event; nothing else was.
    const committed = await db
      .selectFrom("secret_versions")
      .select("version")
      .where("secret_id", "=", secret.id)
      .where("source", "=", "rotation")
      .where("pending", "=", false)
      .orderBy("version")
      .execute();
    const events = await auditOf(d, `secret:${secretPath}`);
    const madeCurrent = events
      .filter(
        (e) =>
          e.action === "secret.rotated" || (e.action === "secret.rotation_reconciled" && e.details.settledOn === "new"),
      )
      .map((e) => Number(e.details.version))
      .sort((a, b) => a - b);
    expect(madeCurrent).toEqual(committed.map((v) => v.version));
    return { events, current };
  };

  const settled = await checkInvariants();
  const reconciled = settled.events.filter((e) => e.action === "secret.rotation_reconciled");
  expect(reconciled.map((e) => e.details.settledOn)).toEqual([scenario.targetHas]);
  expect(settled.current.version).toBe(scenario.targetHas === "new" ? 2 : 1);
  if (scenario.targetHas === "new") expect(await signsIn(instance, login, original)).toBe(false);

  // The secret rotates again (no claim or version left stuck), and everything above still holds.
  const again = await nodeB.rotate(admin, context, secretPath);
  expect(again.version).toBeGreaterThan(settled.current.version);
  const after = await checkInvariants();
  expect(after.current.version).toBe(again.version);

  const verified = await server.audit.verify();
  expect(verified.ok, JSON.stringify(verified)).toBe(true);
}

/**
 * Not a crash: node A pauses after storing its pending version (a stalled connection) past its claim; node B
 * settles the version on the old password (the target still has it); then A wakes up and changes the target.
 */
async function rotationOutlivesClaim(d: Deployment, index: number): Promise<void> {
  const { server, clock, admin } = d;
  const login = `fpr_slow_${index}_${hex}`;
  const secretPath = `fpr/slow-${index}/${hex}`;
  await rotatedLogin(d, login, secretPath);
  const nodeB = createVaultService({
    store: server.store,
    audit: server.audit,
    clock,
    fileKey: d.vaultKey,
    masterKey: d.masterKey,
    node: "node-b",
    targets: { withCredentials: (name, work) => server.grants.withCredentials(name, work) },
  });
  const paused = armFailpoint("vault.rotate.after-pending", async () => {
    clock.advance(ROTATION_LEASE_MS + 1_000);
    expect((await nodeB.reconcilePending()).settled).toBe(1);
  });
  const outcome = await server.vault.rotate(admin, context, secretPath).then(
    (result) => result,
    (error: unknown) => error,
  );
  expect(paused.fired).toBe(1);
  // Whatever node A answers, the vault's current version is the password the target accepts, and nothing pends.
  const current = await nodeB.read(admin, context, secretPath);
  expect(
    await signsIn(instance, login, current.value),
    `the vault's current version signs in (A said ${JSON.stringify(outcome)})`,
  ).toBe(true);
  const pending = await server.store.db
    .selectFrom("secret_versions")
    .innerJoin("secrets", "secrets.id", "secret_versions.secret_id")
    .select("secret_versions.version")
    .where("secrets.path", "=", secretPath)
    .where("secret_versions.pending", "=", true)
    .execute();
  expect(pending).toEqual([]);
  // A did not report a rotation that did not happen.
  const events = await auditOf(d, `secret:${secretPath}`);
  expect(events.filter((e) => e.action === "secret.rotated")).toEqual([]);
  expect(outcome).toMatchObject({ code: "CONFLICT" });
  expect(events.filter((e) => e.action === "secret.rotation_failed")).toHaveLength(1);
  const verified = await server.audit.verify();
  expect(verified.ok, JSON.stringify(verified)).toBe(true);
}

// ---------------------------------------------------------------------------------------------------------------
// Session recording

interface RecordingScenario {
  failpoint: FailpointName;
  what: string;
  /** Drives node A's session to its death; returns the statements the kept recording must hold. */
  crash(session: OpenSession, d: Deployment): Promise<string[]>;
}

type OpenSession = Awaited<ReturnType<ReturnType<typeof createSessionService>["gate"]["openPostgres"]>>;

const statement = (text: string) => ({ statement: text, durationMs: 0.3, rows: 1, command: "SELECT", error: null });

const RECORDINGS: RecordingScenario[] = [
  {
    failpoint: "session.recording.after-write",
    what: "the node dies right after a batch of a live session's recording reached the disk",
    async crash(session) {
      const armed = armFailpoint("session.recording.after-write", "crash");
      session.recorder.query(statement("select 'before the crash'"));
      session.recorder.query(statement("select 'in the same batch'"));
      await until("the batch is written and the node dies", () => armed.fired === 1);
      return ["select 'before the crash'", "select 'in the same batch'"];
    },
  },
  {
    failpoint: "session.end.after-recording",
    what: "the client leaves; the recording is closed whole and the node dies before ending the row",
    async crash(session) {
      session.recorder.query(statement("select 1"));
      session.recorder.query(statement("select 2"));
      const armed = armFailpoint("session.end.after-recording", "crash");
      await expect(session.end("client_closed")).rejects.toBeInstanceOf(FailpointCrash);
      expect(armed.fired).toBe(1);
      return ["select 1", "select 2"];
    },
  },
  {
    failpoint: "session.end.before-commit",
    what: "the transaction ending the session (session.ended appended) dies with the node",
    async crash(session) {
      session.recorder.query(statement("select 'last words'"));
      const armed = armFailpoint("session.end.before-commit", "crash");
      await expect(session.end("client_closed")).rejects.toBeInstanceOf(FailpointCrash);
      expect(armed.fired).toBe(1);
      return ["select 'last words'"];
    },
  },
];

/** An activation of `user` and a PostgreSQL session through node A's gate, recorded into `blobDir`. */
async function openOnNodeA(d: Deployment, user: string, blobDir: string): Promise<OpenSession> {
  const { server, clock } = d;
  const activation = await d.api(user, "POST", "/v1/activation-requests", {
    role: "fpr-session",
    duration: "1h",
    reason: "walking the failpoints of issue 13",
  });
  expect(activation.status, JSON.stringify(activation.body)).toBe(201);
  for (let pass = 0; pass < 10; pass++) if ((await server.outbox.runOnce()).claimed === 0) break;
  const token = await d.api(user, "POST", "/v1/db/tokens", { role: "fpr-session" });
  expect(token.status, JSON.stringify(token.body)).toBe(200);

  // Node A: a sessions service of its own on the same store, never started (no sweep runs on it: once it is
  // dead, nothing touches its sessions).
  const nodeA = createSessionService({
    store: server.store,
    audit: server.audit,
    clock,
    masterKey: d.masterKey,
    blobs: createBlobStore(blobDir),
    registry: new Registry(),
    logger: createLogger({ level: "silent" }),
    vault: server.vault,
    node: `node-a-${hex}`,
  });
  return nodeA.gate.openPostgres({
    user: String(token.body.user),
    password: String(token.body.password),
    database: null,
    clientAddress: "127.0.0.1",
  });
}

async function walkRecording(d: Deployment, scenario: RecordingScenario, user: string): Promise<void> {
  const { server, clock } = d;
  const db = server.store.db;
  // Node A records into the blob directory node B reads (one shared STINT_BLOB_DIR).
  const session = await openOnNodeA(d, user, server.config.blobDir);
  const expected = await scenario.crash(session, d);
  disarmFailpoints();
  const row = await db.selectFrom("sessions").select(["ended_at"]).where("id", "=", session.id).executeTakeFirst();
  expect(row?.ended_at, "node A died before ending the session's row").toBeNull();

  // Node B (the test server's sessions service) sweeps once node A has been silent for a minute.
  clock.advance(SESSION_LOST_MS + 1_000);
  await server.sessions.sweepOnce();

  const shown = await d.api(null, "GET", `/v1/sessions/${session.id}`);
  expect(shown.status).toBe(200);
  expect(shown.body, "ended, not left live").toMatchObject({ live: false, endReason: "node_lost" });
  const recording = shown.body.recording as { sha256: string | null; bytes: number | null; available: boolean };
  expect(recording, "the recording is kept").toMatchObject({ available: true });

  const events = await auditOf(d, `session:${session.id}`);
  expect(events.map((e) => e.action)).toEqual(["session.started", "session.ended"]);
  const ended = events[1]!.details as { endReason: string; recording: { sha256: string; bytes: number } };
  expect(ended.endReason).toBe("node_lost");
  expect(ended.recording.sha256).toBe(recording.sha256);
  expect(ended.recording.bytes).toBe(recording.bytes);

  const replay = await d.api(null, "GET", `/v1/sessions/${session.id}/recording`);
  expect(replay.status, replay.raw.toString()).toBe(200);
  expect(createHash("sha256").update(replay.raw).digest("hex")).toBe(recording.sha256);
  expect(replay.raw.length).toBe(recording.bytes);
  const parsed = parseRecording(replay.raw.toString("utf8"));
  expect(parsed.kind === "postgres" && parsed.queries.map((q) => q.statement)).toEqual(expected);

  // Nothing half-written left behind.
  const files = await readdir(server.config.blobDir, { recursive: true });
  expect(files.filter((f) => String(f).includes(session.id) && String(f).endsWith(".partial"))).toEqual([]);
  expect(files.filter((f) => path.basename(String(f)).startsWith(session.id))).toHaveLength(1);

  const verified = await server.audit.verify();
  expect(verified.ok, JSON.stringify(verified)).toBe(true);
}

/** Node A kept its recordings in a directory of its own: node B cannot keep the recording, and says so. */
async function recordingElsewhere(d: Deployment, user: string): Promise<void> {
  const { server, clock } = d;
  const elsewhere = await mkdtemp(path.join(tmpdir(), "stint-blobs-node-a-"));
  try {
    const session = await openOnNodeA(d, user, elsewhere);
    const armed = armFailpoint("session.recording.after-write", "crash");
    session.recorder.query(statement("select 'on node A only'"));
    await until("the batch is written and the node dies", () => armed.fired === 1);
    disarmFailpoints();
    clock.advance(SESSION_LOST_MS + 1_000);
    await server.sessions.sweepOnce();

    const shown = await d.api(null, "GET", `/v1/sessions/${session.id}`);
    expect(shown.body).toMatchObject({ live: false, endReason: "node_lost", recording: { available: false } });
    const events = await auditOf(d, `session:${session.id}`);
    expect(events.map((e) => e.action)).toEqual(["session.started", "session.ended"]);
    const key = `recordings/${new Date(String(shown.body.startedAt)).toISOString().slice(0, 7).replace("-", "/")}/${session.id}.jsonl`;
    expect(events[1]!.details.recording).toEqual({ key, found: false });
    // Not lost: node A's directory still holds what reached its disk.
    expect(await readFile(path.join(elsewhere, `${key}.partial`), "utf8")).toContain("on node A only");
    const verified = await server.audit.verify();
    expect(verified.ok, JSON.stringify(verified)).toBe(true);
  } finally {
    await rm(elsewhere, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------

beforeAll(async () => {
  instance = await startPostgres();
  await asSuperuser(instance, (c) => c.query(`create role ${reader} nologin`));
});

afterEach(() => disarmFailpoints());

afterAll(async () => {
  await instance?.stop();
});

it("walks every registered failpoint of the vault's rotation and session recordings", () => {
  const walked = [...ROTATIONS, ...RECORDINGS].map((s) => s.failpoint);
  expect(new Set(walked)).toEqual(new Set(FAILPOINT_NAMES.filter((name) => PATHS.test(name))));
  expect(walked.length).toBe(new Set(walked).size);
});

describe.each(ENGINES)("a crash at every rotation and recording failpoint, store on %s", (engine) => {
  const tag = engine === "pglite" ? "l" : "q";
  const users = [...RECORDINGS, "elsewhere"].map((_, i) => `r${i}${tag}${hex}`);
  let d: Deployment;

  beforeAll(async () => {
    d = await deploy(engine, users);
  });

  afterAll(async () => {
    await d?.server.cleanup();
  });

  it.each(ROTATIONS.map((scenario, index) => ({ scenario, index, name: `${scenario.failpoint}: ${scenario.what}` })))(
    "$name",
    async ({ scenario, index }) => {
      await walkRotation(d, scenario, index + (engine === "pglite" ? 0 : 10));
    },
  );

  it("a lost node's recording that another node's blob store does not hold is named in session.ended as not found", async () => {
    await recordingElsewhere(d, users[RECORDINGS.length]!);
  });

  it("a rotation that outlives its claim while another node settles it leaves the vault and the target agreeing", async () => {
    await rotationOutlivesClaim(d, engine === "pglite" ? 0 : 10);
  });

  it.each(RECORDINGS.map((scenario, index) => ({ scenario, index, name: `${scenario.failpoint}: ${scenario.what}` })))(
    "$name",
    async ({ scenario, index }) => {
      await walkRecording(d, scenario, users[index]!);
    },
  );
});
