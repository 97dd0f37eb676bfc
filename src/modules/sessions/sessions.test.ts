/**
 * The sessions module without sockets: the gate's decisions on database tokens and SSH certificates,
 * recordings and their SHA-256, who may see them, fail-closed recording, and the kill switch (an
 * activation's end reaches its sessions through NOTIFY, on another node too). The proxies' own tests
 * and test/e2e/sessions-*.test.ts drive the same gate with real clients.
 */
import { createHash, randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdir, readdir, readFile, writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { openAppStore, type AppStore } from "../../db/index.js";
import { createLogger } from "../../lib/logger.js";
import { generateEd25519KeyPair } from "../../lib/ssh-keys.js";
import { freshStore } from "../../testing/engines.js";
import { ADMIN_PASSWORD, TEST_SCRYPT, passwordFor } from "../../testing/server.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../testing/targets-harness.js";
import { createServer, type Server } from "../../server.js";
import { parseRecording, transcript } from "../../contract/recording.js";
import { generateCa, signUserCertificate } from "./ssh-ca.js";
import { SessionRefusedError, type SessionEnd } from "./sessions.types.js";

const hex = randomBytes(4).toString("hex");
const database = `stint_sess_${hex}`;
const reader = `stint_sess_reader_${hex}`;
const alice = `alice${hex}`;
const bob = `bob${hex}`;

let h: TargetsHarness;
let pgRoot: pg.Client;

function catalog(recording: "required" | "optional") {
  return `
apiVersion: stint/v1
policies:${selfServicePolicy("sess-self")}
    session: { recording: ${recording} }
targets:
  - name: sess-pg
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${database}?sslmode=disable
  - name: sess-host
    kind: ssh-host
    address: ssh://root@127.0.0.1:1
    options:
      hostKey: "SHA256:${"A".repeat(43)}"
      session: { login: deploy, secret: ssh/sess-host/deploy }
roles:
  - name: sess-reader
    target: sess-pg
    entitlement: { role: ${reader}, dynamic: true }
    policy: sess-self
    risk: medium
  - name: sess-other
    target: sess-pg
    entitlement: { role: ${reader}, dynamic: true }
    policy: sess-self
    risk: medium
eligibility:
  - role: sess-reader
    users: [${alice}, ${bob}]
  - role: sess-other
    users: [${alice}]
`;
}

beforeAll(async () => {
  pgRoot = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
  await pgRoot.connect();
  await pgRoot.query(`create database ${database}`);
  await pgRoot.query(`create role ${reader} nologin`);
  h = await targetsHarness();
  h.server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: 6543 });
  await h.createUser(alice);
  await h.createUser(bob);
  await h.apply(catalog("optional"));
});

afterAll(async () => {
  await h?.server.cleanup();
  if (pgRoot) {
    await pgRoot.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
    const minted = await pgRoot.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
      `stint_%${hex}%`,
    ]);
    for (const r of minted.rows) await pgRoot.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
    await pgRoot.query(`drop role if exists ${reader}`).catch(() => undefined);
    await pgRoot.end();
  }
});

async function token(user: string, role: string, once = false) {
  const res = await h.as(user, "POST", "/v1/db/tokens", { role, once });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as {
    host: string;
    port: number;
    database: string;
    user: string;
    password: string;
    expiresAt: string;
  };
}

async function refusal(promise: Promise<unknown>): Promise<SessionRefusedError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SessionRefusedError);
  return error as SessionRefusedError;
}

/** How a PostgreSQL session opened from ::1 with the database token `t` is refused. */
const refusedOpen = (t: { user: string; password: string }) =>
  refusal(
    h.server.sessions.gate.openPostgres({ user: t.user, password: t.password, database: null, clientAddress: "::1" }),
  );

async function auditEvents(action: string) {
  const res = await h.admin("GET", "/v1/audit/events?limit=1000");
  const items = res.body.items as {
    action: string;
    subject: string | null;
    reason: string | null;
    actor: string;
    details: Record<string, unknown>;
  }[];
  return items.filter((e) => e.action === action);
}

describe("database tokens", () => {
  it("open a session only for their user, role and live activation; --once tokens once", async () => {
    const gate = h.server.sessions.gate;
    expect((await h.as(alice, "POST", "/v1/db/tokens", { role: "sess-reader" })).body.error?.code).toBe("NOT_ACTIVE");
    const request = await h.activate(alice, "sess-reader");
    expect(request.state).toBe("active");
    await h.activate(alice, "sess-other");
    await h.activate(bob, "sess-reader");
    const mine = await token(alice, "sess-reader");
    expect(mine.user).toBe(`${alice}%sess-reader`);
    expect(mine.database).toBe(database);
    expect(mine.password).toMatch(/^stint_/);
    const bobs = await token(bob, "sess-reader");
    const other = await token(alice, "sess-other");
    const client = { database: null, clientAddress: "127.0.0.1" };

    const session = await gate.openPostgres({ user: mine.user, password: mine.password, ...client });
    expect(session.upstream).toMatchObject({ kind: "postgres", host: "127.0.0.1", port: 5432, database });
    expect(session.upstream.user).toMatch(new RegExp(`^stint_${alice}_`));
    // The token works again: pools and reconnects.
    const second = await gate.openPostgres({ user: mine.user, password: mine.password, ...client });
    await Promise.all([session.end("client_closed"), second.end("client_closed")]);

    expect((await refusal(gate.openPostgres({ user: mine.user, password: "stint_wrong", ...client }))).code).toBe(
      "BAD_CREDENTIALS",
    );
    // Another user's token, and another role's.
    expect((await refusal(gate.openPostgres({ user: mine.user, password: bobs.password, ...client }))).code).toBe(
      "BAD_CREDENTIALS",
    );
    const crossRole = await refusal(gate.openPostgres({ user: mine.user, password: other.password, ...client }));
    expect(crossRole.code).toBe("BAD_CREDENTIALS");
    expect(crossRole.message).toContain("stint db login sess-reader");
    expect((await refusal(gate.openPostgres({ user: alice, password: mine.password, ...client }))).message).toMatch(
      /<user>%<role>/,
    );

    const once = await token(alice, "sess-reader", true);
    const used = await gate.openPostgres({ user: mine.user, password: once.password, ...client });
    await used.end("client_closed");
    expect((await refusal(gate.openPostgres({ user: mine.user, password: once.password, ...client }))).message).toMatch(
      /already used/,
    );

    // The activation ends: so does every token of it.
    const revoke = await h.admin("POST", `/v1/activation-requests/${String(request.id)}/revoke`, {
      reason: "rotation of duties for the test",
    });
    expect(revoke.status, JSON.stringify(revoke.body)).toBe(200);
    const ended = await refusal(gate.openPostgres({ user: mine.user, password: mine.password, ...client }));
    expect(ended.code).toBe("NOT_ACTIVE");
    expect(ended.message).toContain("has ended");

    const refused = await auditEvents("session.refused");
    expect(refused.length).toBeGreaterThanOrEqual(5);
    const audit = JSON.stringify(await h.admin("GET", "/v1/audit/events?limit=1000"));
    for (const t of [mine, bobs, other, once]) expect(audit).not.toContain(t.password);
  });
});

describe("recordings", () => {
  it("are stored with the SHA-256 the audit event names, and only admins and auditors see them", async () => {
    await h.server.userWithRoles(`aud${hex}`, ["auditor"]);
    const t = await token(bob, "sess-reader");
    const session = await h.server.sessions.gate.openPostgres({
      user: t.user,
      password: t.password,
      database: null,
      clientAddress: "127.0.0.1",
    });
    session.recorder.query({ statement: "select 1", durationMs: 0.4, rows: 1, command: "SELECT", error: null });
    session.recorder.query({
      statement: "select 1/0",
      durationMs: 0.2,
      rows: null,
      command: null,
      error: "22012: division by zero",
    });
    session.countBytes("up", 40);
    await session.end("client_closed");

    const shown = await h.admin("GET", `/v1/sessions/${session.id}`);
    expect(shown.body).toMatchObject({ kind: "postgres", user: bob, role: "sess-reader", endReason: "client_closed" });
    const sha = (shown.body.recording as { sha256: string }).sha256;
    const res = await h.server.app.inject({
      method: "GET",
      url: `/v1/sessions/${session.id}/recording`,
      headers: { authorization: await h.server.login(`aud${hex}`, passwordFor(`aud${hex}`)) },
    });
    expect(res.statusCode).toBe(200);
    expect(createHash("sha256").update(res.rawPayload).digest("hex")).toBe(sha);
    const recording = parseRecording(res.body);
    expect(recording.kind === "postgres" && recording.queries.map((q) => q.statement)).toEqual([
      "select 1",
      "select 1/0",
    ]);
    expect(transcript(recording)).toContain("ERROR 22012: division by zero");
    const ended = (await auditEvents("session.ended")).find((e) => e.subject === `session:${session.id}`);
    expect((ended?.details.recording as { sha256: string }).sha256).toBe(sha);

    // Anyone else: as if there were no sessions at all.
    for (const url of ["/v1/sessions", `/v1/sessions/${session.id}`, `/v1/sessions/${session.id}/recording`]) {
      const other = await h.as(bob, "GET", url);
      expect(other.status, url).toBe(404);
    }
    const listed = await h.as(`aud${hex}`, "GET", "/v1/sessions");
    expect((listed.body.items as { id: string }[]).map((s) => s.id)).toContain(session.id);
  });

  it("a role that requires recording refuses sessions when the blob store cannot be written", async () => {
    await h.apply(catalog("required"));
    try {
      const t = await token(bob, "sess-reader");
      // A file where the recordings directory should be: nothing can be created under it.
      const original = path.join(h.server.config.blobDir, "recordings");
      await rm(original, { recursive: true, force: true });
      await writeFile(original, "not a directory");
      const refused = await refusedOpen(t);
      expect(refused.code).toBe("RECORDING_UNAVAILABLE");
      expect(refused.message).toMatch(/Recording is required for sess-reader/);
      expect(await h.metric("stint_session_recording_failures_total", { kind: "postgres" })).toBeGreaterThanOrEqual(1);
      await rm(original, { force: true });
    } finally {
      await h.apply(catalog("optional"));
    }
  });

  it("a full recordings directory under recording: required refuses at open and leaves no .partial file (issue 13 finding 6)", async () => {
    // A real full disk: a 1 MiB tmpfs over the recordings directory, filled. Needs root (mount).
    const recordings = path.join(h.server.config.blobDir, "recordings");
    await rm(recordings, { recursive: true, force: true });
    await mkdir(recordings, { recursive: true });
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", recordings]).status === 0;
    if (!mounted) {
      console.warn("skipped: cannot mount a tmpfs here (needs root)");
      return;
    }
    await h.apply(catalog("required"));
    try {
      spawnSync("dd", ["if=/dev/zero", `of=${path.join(recordings, "filler")}`, "bs=64k"]); // fills it (ENOSPC)
      const t = await token(bob, "sess-reader");
      const refused = await refusedOpen(t);
      expect(refused.code).toBe("RECORDING_UNAVAILABLE");
      const left = (await readdir(recordings, { recursive: true })).filter((f) => String(f).endsWith(".partial"));
      expect(left).toEqual([]);
    } finally {
      await h.apply(catalog("optional"));
      spawnSync("umount", ["-l", recordings]); // lazily: a writer may still hold a file there
    }
  });
});

describe("kill", () => {
  it("an administrator's kill and the activation's end abort the session with a reason the user reads", async () => {
    const t = await token(bob, "sess-reader");
    const open = () =>
      h.server.sessions.gate.openPostgres({ user: t.user, password: t.password, database: null, clientAddress: "::1" });
    const killed = await open();
    const aborted = new Promise<SessionEnd>((resolve) =>
      killed.signal.addEventListener("abort", () => resolve(killed.signal.reason as SessionEnd)),
    );
    const kill = await h.admin("POST", `/v1/sessions/${killed.id}/kill`, { reason: "suspicious query pattern" });
    expect(kill.status, JSON.stringify(kill.body)).toBe(200);
    expect(await aborted).toEqual({
      reason: "killed",
      message: `admin ended this session: suspicious query pattern`,
    });
    await killed.end("killed");
    const again = await h.admin("POST", `/v1/sessions/${killed.id}/kill`, { reason: "suspicious query pattern" });
    expect(again.body.error?.code).toBe("CONFLICT");
    const shown = await h.admin("GET", `/v1/sessions/${killed.id}`);
    expect(shown.body).toMatchObject({ endReason: "killed", endedBy: "admin", endDetail: "suspicious query pattern" });
    expect((shown.body.recording as { sha256: string | null }).sha256).toMatch(/^[0-9a-f]{64}$/);

    const second = await open();
    const ended = new Promise<SessionEnd>((resolve) =>
      second.signal.addEventListener("abort", () => resolve(second.signal.reason as SessionEnd)),
    );
    const active = (await h.as(bob, "GET", "/v1/me/roles")).body;
    expect(active).toBeTruthy();
    const deactivate = await h.as(bob, "POST", "/v1/me/roles/sess-reader/deactivate");
    expect(deactivate.status, JSON.stringify(deactivate.body)).toBe(200);
    const end = await ended;
    expect(end.reason).toBe("activation_ended");
    expect(end.message).toContain("sess-reader was deactivated");
    await second.end(end.reason);
    expect(await h.metric("stint_session_kill_latency_seconds_count", { cause: "activation_ended" })).toBe(1);
  });
});

describe("lost nodes", () => {
  it("a live session no node touches any more is ended as node_lost by another node's sweep, and audited", async () => {
    await h.activate(bob, "sess-reader");
    const t = await token(bob, "sess-reader");
    const session = await h.server.sessions.gate.openPostgres({
      user: t.user,
      password: t.password,
      database: null,
      clientAddress: "::1",
    });
    // A copy of it, relayed by a node that died two minutes ago.
    const lostId = crypto.randomUUID();
    const db = h.server.store.db;
    const row = await db.selectFrom("sessions").selectAll().where("id", "=", session.id).executeTakeFirstOrThrow();
    const past = new Date(h.clock.now().getTime() - 120_000);
    await db
      .insertInto("sessions")
      .values({ ...row, id: lostId, node: "gone-host:4242", started_at: past, seen_at: past, recording_key: null })
      .execute();
    await h.server.sessions.sweepOnce();
    const lost = await h.admin("GET", `/v1/sessions/${lostId}`);
    expect(lost.body).toMatchObject({ live: false, endReason: "node_lost" });
    expect(String(lost.body.endDetail)).toContain("gone-host:4242");
    // This node's own live session was touched, not taken for lost.
    expect((await h.admin("GET", `/v1/sessions/${session.id}`)).body).toMatchObject({ live: true });
    const ended = (await auditEvents("session.ended")).find((e) => e.subject === `session:${lostId}`);
    expect(ended?.details).toMatchObject({ endReason: "node_lost", node: "gone-host:4242" });
    await session.end("client_closed");
  });
});

describe("SSH certificates", () => {
  it("are refused without an activation, and the gate takes only Stint's", async () => {
    await h.apply(
      catalog("optional").replace(
        "eligibility:",
        `  - name: sess-shell
    target: sess-host
    entitlement: { group: wheel }
    policy: sess-self
    risk: high
eligibility:
  - role: sess-shell
    users: [${alice}]`,
      ),
    );
    // A key ssh2 loads (its own generator makes one that it cannot about once in 256: refused as a bad key).
    const pair = generateEd25519KeyPair("");
    const noActivation = await h.as(alice, "POST", "/v1/ssh/certificates", { publicKey: pair.publicKey });
    expect(noActivation.body.error?.code).toBe("NOT_ACTIVE");
    // Validity bound to the activation and the proxy's use of it: test/e2e/sessions-ssh.test.ts.
    const gate = h.server.sessions.gate;
    const foreign = generateCa();
    const cert = signUserCertificate({
      caPrivateKey: foreign.privateKey,
      userPublicKey: pair.publicKey,
      keyId: "forged",
      principals: [alice],
      validAfter: new Date(Date.now() - 60_000),
      validBefore: new Date(Date.now() + 3600_000),
      serial: 1n,
    });
    const [algorithm, blob] = cert.split(" ");
    expect(() =>
      gate.checkSshCertificate({
        username: `${alice}%sess-host`,
        algorithm: algorithm!,
        key: Buffer.from(blob!, "base64"),
      }),
    ).toThrow(/not valid/);
    expect(() =>
      gate.checkSshCertificate({ username: `${alice}%sess-host`, algorithm: "ssh-ed25519", key: Buffer.alloc(8) }),
    ).toThrow(/Only Stint certificates/);
    const ca = await h.server.app.inject({ method: "GET", url: "/v1/ssh/ca" });
    expect(ca.json<{ caPublicKey: string }>().caPublicKey).toMatch(/^ssh-ed25519 /);
  });
});

describe("on two nodes sharing PostgreSQL", () => {
  let url: string;
  let drop: () => Promise<void>;
  const nodes: Server[] = [];
  const stores: AppStore[] = [];
  let work: string;

  beforeAll(async () => {
    // A migrated copy (the nodes' own start finds nothing to migrate); its harness store closes with the drop.
    const fresh = await freshStore("postgres");
    url = fresh.url!;
    drop = fresh.cleanup;
    work = await mkdtemp(path.join(tmpdir(), "stint-sess-nodes-"));
  });
  afterAll(async () => {
    for (const node of nodes) await node.close().catch(() => undefined);
    await drop?.();
    await rm(work, { recursive: true, force: true });
  });

  it("ending an activation on one node kills its session on the other within a second", async () => {
    const masterKey = randomBytes(32);
    const vaultKey = randomBytes(32);
    for (const name of ["a", "b"]) {
      const parsed = loadConfig({
        STINT_DATABASE_URL: url,
        STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
        STINT_BLOB_DIR: path.join(work, name),
        STINT_RECONCILE_INTERVAL: "0",
      });
      if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
      const store = await openAppStore({ databaseUrl: url });
      stores.push(store);
      const node = await createServer({
        config: parsed.config,
        logger: createLogger({ level: "silent" }),
        masterKey,
        vaultKey,
        store,
        scrypt: TEST_SCRYPT,
      });
      nodes.push(node);
    }
    const [a, b] = nodes as [Server, Server];
    await a.bootstrap();
    await a.app.ready();
    await b.app.ready();
    a.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: 6543 });
    const call = async (node: Server, auth: string, method: "GET" | "POST", u: string, payload?: object) => {
      const res = await node.app.inject({
        method,
        url: u,
        headers: { authorization: auth },
        ...(payload ? { payload } : {}),
      });
      return res.json<Record<string, unknown> & { id?: string }>();
    };
    const login = async (node: Server, name: string, password: string) => {
      const res = await node.app.inject({
        method: "POST",
        url: "/v1/auth/login",
        payload: { username: name, password },
      });
      return `Bearer ${res.json<{ accessToken: string }>().accessToken}`;
    };
    const admin = await login(a, "admin", ADMIN_PASSWORD);
    await call(a, admin, "POST", "/v1/users", { name: "nina", password: passwordFor("nina") });
    const applied = await call(a, admin, "POST", "/v1/config/apply", {
      yaml: catalog("optional").replace(/users: \[[^\]]*\]/g, "users: [nina]"),
    });
    expect(applied.error).toBeUndefined();
    const nina = await login(a, "nina", passwordFor("nina"));
    const request = await call(a, nina, "POST", "/v1/activation-requests", {
      role: "sess-reader",
      duration: "10m",
      reason: "investigating incident 4242 in production",
    });
    for (let i = 0; i < 10; i++) if ((await a.outbox.runOnce()).claimed === 0) break;
    const t = await call(a, nina, "POST", "/v1/db/tokens", { role: "sess-reader" });
    const session = await a.sessions.gate.openPostgres({
      user: String(t.user),
      password: String(t.password),
      database: null,
      clientAddress: "127.0.0.1",
    });
    const aborted = new Promise<number>((resolve) =>
      session.signal.addEventListener("abort", () => resolve(Date.now())),
    );
    const adminB = await login(b, "admin", ADMIN_PASSWORD);
    const started = Date.now();
    const revoke = await call(b, adminB, "POST", `/v1/activation-requests/${String(request.id)}/revoke`, {
      reason: "ending the on-call shift early",
    });
    expect(revoke.error).toBeUndefined();
    const at = await aborted;
    expect(at - started).toBeLessThan(1000);
    expect((session.signal.reason as SessionEnd).message).toContain(
      "was revoked by admin: ending the on-call shift early",
    );
    await session.end("activation_ended");
    for (let i = 0; i < 10; i++) if ((await a.outbox.runOnce()).claimed === 0) break;
    const minted = await pgRoot.query<{ rolname: string }>(
      "select rolname from pg_roles where rolname like 'stint_nina_%'",
    );
    for (const r of minted.rows) await pgRoot.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
    expect(
      await readFile(
        path.join(
          work,
          "a",
          "recordings",
          new Date().toISOString().slice(0, 7).replace("-", "/"),
          `${session.id}.jsonl`,
        ),
        "utf8",
      ),
    ).toContain('"kind":"postgres"');
  });
});
