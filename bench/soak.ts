/**
 * `npm run soak -- [--minutes=30] [--nodes=3] [--kill-every-minutes=5] [--store=postgres|pglite]
 * [--steady-nodes=1] [--lifetime-warmup-minutes=6] [--judge-window-minutes=5] [--window-minutes=3]
 * [--sample-seconds=5] [--heap-snapshots] [--access-token-ttl=10m]` — issue 13, acceptance 7.
 *
 * Starts --nodes built servers (`node bin/stint.js server`, dist/) on ONE fresh Stint database on
 * PostgreSQL at 127.0.0.1:5432 (one key pair of master and vault key files; each node its own data
 * directory, HTTP port, PostgreSQL-proxy port and SSH-proxy port), with the vault unsealed by a key
 * file, and drives a steady mixed workload of what users do for --minutes, each call sent to the
 * next live node in turn:
 *
 * - sign-in (each user again every couple of minutes) and a look at "my roles" before activating;
 * - activations of auto-approved roles on a real PostgreSQL target (a membership there) and on the
 *   internal target, lasting 30–90 s; some deactivated early by their requester, the rest expire;
 * - activations of roles that need an approval, approved from the inbox by a second user;
 * - secret reads (the value compared with what was put), audit reads by an auditor;
 * - now and then a dynamic-credential activation and a proxied PostgreSQL session with its token
 *   (through the proxy of the node that issued it), and an activation of an ssh-host role on a local
 *   sshd (a Unix group membership there), an SSH certificate and a proxied ssh session through a
 *   live node's SSH proxy (recording required) that checks the membership from inside.
 *
 * Every --kill-every-minutes one node (in rotation) is SIGKILLed, and restarted with the same
 * settings a few seconds later. The first --steady-nodes nodes (default 1 when there are several)
 * are never killed: they take their share of the load through every other node's crash and restart,
 * and theirs is the one lifetime long enough to show whether memory creeps over the whole run. A call refused at connect (the node is down) is sent to another
 * live node; a call cut off in flight is an error and, never acknowledged, not a lost operation.
 * A server exit that the soak did not cause ends the run as a failure.
 *
 * Every acknowledged operation is recorded and checked at the end, once every activation has had
 * time to end: it exists in the API, an activation ended (deactivated ones as deactivated), an
 * approval is among its request's decisions, each proxied session (psql and ssh) is recorded and
 * ended, every acknowledged secret read has its audit event, nothing remains at the targets
 * (memberships, minted logins, the Unix group), the audit chain verifies.
 *
 * Every `--sample-seconds` each live node's RSS and open file descriptors (/proc/<pid>/status,
 * /proc/<pid>/fd) and the load average are sampled. A table per --window-minutes gives operations,
 * errors, p50/p99 latency, and per node its operations, errors, median RSS and descriptors (and a
 * `†` where it was killed in that window).
 *
 * Flatness across restarts: a restart resets a process's memory, so RSS and descriptors are judged
 * within each node LIFETIME (one process, start to SIGKILL or to the end of the load). In every
 * lifetime at least --lifetime-warmup-minutes + 2 × --judge-window-minutes long, the median of the
 * samples in its first judge window after its warm-up (ages 6–11 min by default: every process steps up once by ~15 MB
 * at 3–6 min, then holds) is compared with the median of its last judge window (its last 5 min); each must be within
 * 10%. RSS swings by ±15 MB within a minute as V8 grows and shrinks its young generation, so a window is many samples
 * (one every 5 s, 60 per window) and its median is what is judged. With the defaults the steady node is judged
 * (minutes 6–11 against 25–30) and the killed nodes, each living 10 minutes, are shown but too short to judge. Shorter lifetimes are
 * shown but not judged. The table of lifetimes also shows each one's first-window figure, so a
 * growth that carries across restarts (a node that starts fatter every time) is visible too.
 *
 * Verdict: no lost operation, no unhandled error in any node's output, no unexpected exit, at least
 * one judged lifetime, every judged lifetime flat within 10% → PASS, else FAIL (exit code 1).
 *
 * Needs the build (`npm run build`), root (the ssh-host target gets a throwaway Unix user and group),
 * OpenSSH's sshd and PostgreSQL on 127.0.0.1:5432 (trust). Everything it creates is removed at the
 * end, also on failure or Ctrl-C. With --store=pglite, one node (the embedded store is one process's).
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { createPgDatabase } from "../src/testing/engines.js";
import {
  createGroup,
  createUser,
  deleteGroup,
  deleteUser,
  idGroups,
  startSshd,
  type Sshd,
} from "../src/testing/sshd.js";
import { freePort, ROOT } from "../test/e2e/support.js";
import {
  postgresTarget,
  queryOnce,
  sleep,
  startServerNode,
  TARGET_ADMIN_URL,
  type Answer,
  type ServerNode,
} from "../test/reliability/support.js";

// --- options ------------------------------------------------------------------------------------

interface Options {
  minutes: number;
  nodes: number;
  killEveryMinutes: number;
  /** Nodes never killed (the first ones): the long lifetimes that judge flatness over the run. */
  steadyNodes: number;
  lifetimeWarmupMinutes: number;
  judgeWindowMinutes: number;
  store: "postgres" | "pglite";
  windowMinutes: number;
  sampleSeconds: number;
  heapSnapshots: boolean;
  /** The server's STINT_ACCESS_TOKEN_TTL, when given (short ones exercise the clients' renewal). */
  accessTokenTtl?: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    minutes: 30,
    nodes: 3,
    killEveryMinutes: 5,
    steadyNodes: -1,
    lifetimeWarmupMinutes: 6,
    judgeWindowMinutes: 5,
    store: "postgres",
    windowMinutes: 3,
    sampleSeconds: 5,
    heapSnapshots: false,
  };
  for (const arg of argv) {
    if (arg === "--heap-snapshots") {
      options.heapSnapshots = true;
      continue;
    }
    const [key, value = ""] = arg.split("=", 2) as [string, string?];
    const n = Number(value);
    if (key === "--minutes" && n > 0) options.minutes = n;
    else if (key === "--nodes" && Number.isInteger(n) && n >= 1) options.nodes = n;
    else if (key === "--kill-every-minutes" && n >= 0) options.killEveryMinutes = n;
    else if (key === "--steady-nodes" && Number.isInteger(n) && n >= 0) options.steadyNodes = n;
    else if (key === "--lifetime-warmup-minutes" && n >= 0) options.lifetimeWarmupMinutes = n;
    else if (key === "--judge-window-minutes" && n > 0) options.judgeWindowMinutes = n;
    else if (key === "--window-minutes" && n > 0) options.windowMinutes = n;
    else if (key === "--sample-seconds" && n > 0) options.sampleSeconds = n;
    else if (key === "--store" && (value === "postgres" || value === "pglite")) options.store = value;
    else if (key === "--access-token-ttl" && /^\d+[smh]$/.test(value)) options.accessTokenTtl = value;
    else
      throw new Error(
        `unknown argument ${arg} (use --minutes=N, --nodes=N, --kill-every-minutes=N (0: none), --steady-nodes=N, --store=postgres|pglite, --lifetime-warmup-minutes=N, --judge-window-minutes=N, --window-minutes=N, --sample-seconds=N, --heap-snapshots, --access-token-ttl=5m)`,
      );
  }
  if (options.store === "pglite" && options.nodes > 1) throw new Error("--store=pglite runs one node (use --nodes=1)");
  if (options.steadyNodes < 0) options.steadyNodes = options.nodes > 1 ? 1 : 0;
  if (options.killEveryMinutes > 0 && options.steadyNodes >= options.nodes)
    throw new Error(`--steady-nodes=${options.steadyNodes} leaves no node to kill among --nodes=${options.nodes}`);
  return options;
}

const options = parseOptions(process.argv.slice(2));
const progress = (message: string) => process.stderr.write(`[soak ${clock()}] ${message}\n`);
const clock = (t = Date.now()) => new Date(t).toISOString().slice(11, 19);
const uptime = () => {
  try {
    return execFileSync("uptime", { encoding: "utf8" }).trim();
  } catch {
    return `load average: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(", ")}`;
  }
};

// --- the installation ---------------------------------------------------------------------------

const hex = randomBytes(3).toString("hex");
const ADMIN_PASSWORD = `soak-admin-${randomBytes(8).toString("hex")}`;
const PASSWORD = "soak-password-correct-horse-battery";
/** Requesters, approvers and an auditor: names unique to this run (minted logins carry them). */
const REQUESTERS = Array.from({ length: 6 }, (_, i) => `sk${hex}r${i}`);
const APPROVERS = [`sk${hex}a0`, `sk${hex}a1`];
const AUDITOR = `sk${hex}aud`;
const PG_ROLES = Array.from({ length: 6 }, (_, i) => `soak-pg-${i}`);
const INTERNAL_ROLES = Array.from({ length: 4 }, (_, i) => `soak-int-${i}`);
const APPROVAL_ROLES = Array.from({ length: 3 }, (_, i) => `soak-appr-${i}`);
const DYNAMIC_ROLE = "soak-dyn";
const SSH_TARGET = "soak-ssh";
const SSH_ROLE = "soak-ssh-shell";
/** The Unix account the Stint users map to at the ssh-host target, and the group its role grants. */
const UNIX_USER = `sks${hex}`;
const UNIX_GROUP = `skg${hex}`;
const SECRETS = Array.from({ length: 20 }, (_, i) => `soak/app-${String(i).padStart(2, "0")}/token`);
const DURATIONS_S = [30, 45, 60, 90];
const target = postgresTarget({ prefix: `stint_soak${hex}`, users: REQUESTERS, roles: PG_ROLES });
const dynamicReader = `stint_soak${hex}_dyn`;

const cleanups: (() => Promise<unknown>)[] = [];
async function cleanup(): Promise<void> {
  for (const step of cleanups.splice(0).reverse()) await step().catch(() => undefined);
}
process.once("SIGINT", () => {
  progress("interrupted: cleaning up");
  void cleanup().then(() => process.exit(130));
});

function catalog(sshd: Sshd): string {
  return `
apiVersion: stint/v1
policies:
  - name: soak-self
    mfa: { required: false }
    maxDuration: 8h
  - name: soak-ssh
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
  - name: soak-approval
    mfa: { required: false }
    maxDuration: 8h
    approval:
      stages:
        - approvers: { users: [${APPROVERS.join(", ")}] }
${target.yaml("soak-self").replace(
  /\nroles:/,
  `
  - name: soak-internal
    kind: internal
  - name: ${SSH_TARGET}
    kind: ssh-host
    address: ssh://root@127.0.0.1:${sshd.port}
    credential: { secret: targets/${SSH_TARGET}/admin }
    identity: { map: { ${REQUESTERS.map((u) => `${u}: ${UNIX_USER}`).join(", ")} } }
    options:
      hostKey: "${sshd.hostKeyFingerprint}"
      session: { login: root, secret: targets/${SSH_TARGET}/session }
roles:
  - name: ${SSH_ROLE}
    target: ${SSH_TARGET}
    entitlement: { group: ${UNIX_GROUP} }
    policy: soak-ssh
    risk: low
  - name: ${DYNAMIC_ROLE}
    target: ${target.name}
    entitlement: { role: ${dynamicReader}, dynamic: true }
    policy: soak-self
    risk: low${[...INTERNAL_ROLES, ...APPROVAL_ROLES]
      .map(
        (role) => `
  - name: ${role}
    target: soak-internal
    policy: ${APPROVAL_ROLES.includes(role) ? "soak-approval" : "soak-self"}
    risk: low`,
      )
      .join("")}`,
)}${[DYNAMIC_ROLE, SSH_ROLE, ...INTERNAL_ROLES, ...APPROVAL_ROLES]
    .map(
      (role) => `
  - role: ${role}
    users: [${REQUESTERS.join(", ")}]`,
    )
    .join("")}
`;
}

// --- operations and their record ----------------------------------------------------------------

interface Op {
  at: number;
  kind: string;
  ok: boolean;
  ms: number;
  what: string;
  /** The node that answered (or was last tried), when a node was involved. */
  node?: number;
}
const ops: Op[] = [];
const errorsByWhat = new Map<string, number>();

interface Activation {
  id: string;
  user: string;
  role: string;
  kind: "pg" | "internal" | "approval" | "dynamic" | "ssh";
  expiresAt: number;
  deactivated?: boolean;
  approvedBy?: string;
  session?: boolean;
}
const acknowledged: Activation[] = [];
let secretReads = 0;

// --- the nodes ------------------------------------------------------------------------------------

/** One node's seat: its settings (kept across restarts) and the process now in it. */
interface Slot {
  index: number;
  env: Record<string, string>;
  pgProxyPort: number;
  sshProxyPort: number;
  node: ServerNode;
  /** Taking calls: false from its SIGKILL until its successor is ready. */
  up: boolean;
  /** Its process's number, 0 for the first. */
  lifetime: number;
  /** Unhandled-error lines of its earlier processes. */
  pastUnhandled: string[];
}
const slots: Slot[] = [];
interface Lifetime {
  node: number;
  lifetime: number;
  pid: number;
  start: number;
  end?: number;
  /** How it ended: "SIGKILL" by the soak, "end" of the run, or an unexpected exit. */
  ended?: string;
}
const lifetimes: Lifetime[] = [];
const kills: { at: number; node: number; downMs?: number }[] = [];
const unexpectedExits: string[] = [];

let turn = 0;
/** The next live node in turn (other than `not`), waiting up to 30 s for one. */
async function liveSlot(not?: Slot): Promise<Slot | undefined> {
  for (const until = Date.now() + 30_000; ; await sleep(250)) {
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[turn++ % slots.length]!;
      if (slot.up && slot !== not) return slot;
    }
    if (not?.up) return not;
    if (Date.now() > until) return undefined;
  }
}

const tokens = new Map<string, string>();

/** Passwords by user name (the administrator's is the bootstrap one). */
const passwords = new Map<string, string>();

type NodeAnswer = Answer & { node?: number };

/** A refusal at connect: nothing was sent, so the call may go to another node whatever it is. */
const refused = (error: unknown) => {
  const cause = (error as { cause?: { code?: string } }).cause;
  return cause?.code === "ECONNREFUSED";
};

/**
 * One call to a live node. Refused at connect (the node is down) → the next live node; cut off in
 * flight → for a GET the next live node, otherwise the error answer (status 0: not acknowledged).
 */
async function callNode(method: string, url: string, auth?: string, body?: unknown): Promise<NodeAnswer> {
  let slot: Slot | undefined;
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    slot = await liveSlot(slot);
    if (!slot)
      return { what: `${method} ${url}`, status: 0, code: "NO_LIVE_NODE", retryAfter: null, ms: 0, body: null };
    try {
      return { ...(await slot.node.call(method, url, auth, body)), node: slot.index };
    } catch (error) {
      if (attempt < 4 && (refused(error) || method === "GET")) {
        await sleep(200);
        continue;
      }
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      return {
        what: `${method} ${url}`,
        status: 0,
        code: cause ?? (error as Error).name,
        retryAfter: null,
        ms: Date.now() - started,
        body: null,
        node: slot.index,
      };
    }
  }
}

/**
 * One API call as a user (no operation recorded). An access token that has expired is renewed by
 * signing in again, as a client would, and the call made once more. Throws nothing: the answer says.
 */
async function callAs(user: string, method: string, url: string, body?: unknown): Promise<NodeAnswer> {
  const answer = await callNode(method, url, tokens.get(user), body);
  if (answer.status !== 401 || answer.code !== "TOKEN_EXPIRED") return answer;
  await signIn(user, passwords.get(user) ?? PASSWORD);
  return callNode(method, url, tokens.get(user), body);
}

/** One API call as a user, recorded as an operation of `kind`. */
async function api(kind: string, user: string, method: string, url: string, body?: unknown): Promise<NodeAnswer> {
  const answer = await callAs(user, method, url, body);
  record(
    kind,
    answer.status >= 200 && answer.status < 300,
    answer.ms,
    `${kind} ${answer.status} ${answer.code ?? ""}`,
    answer.node,
  );
  return answer;
}

function record(kind: string, ok: boolean, ms: number, what: string, node?: number): void {
  ops.push({ at: Date.now(), kind, ok, ms, what, ...(node === undefined ? {} : { node }) });
  if (!ok) errorsByWhat.set(what, (errorsByWhat.get(what) ?? 0) + 1);
}

async function signIn(user: string, password: string): Promise<boolean> {
  const started = Date.now();
  const answer = await callNode("POST", "/v1/auth/login", undefined, { username: user, password });
  const ok = answer.status === 200;
  record("sign-in", ok, Date.now() - started, `sign-in ${answer.status} ${answer.code ?? ""}`, answer.node);
  if (ok) tokens.set(user, `Bearer ${(answer.body as { accessToken: string }).accessToken}`);
  return ok;
}
// --- the workload -------------------------------------------------------------------------------

let running = true;
const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const busy = new Set<string>();

/** Waits until a request reaches `active` (provisioning runs through the outbox). */
async function untilActive(user: string, id: string, timeoutMs = 60_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const answer = await api("request read", user, "GET", `/v1/activation-requests/${id}`);
    const state = (answer.body as { state?: string } | null)?.state;
    if (state === "active") return true;
    if (state && !["pending", "approved", "provisioning"].includes(state)) return false;
    await sleep(500);
  }
  return false;
}

/** Submits an activation of `role` for `user` if "my roles" shows none open; records it when acknowledged. */
async function activate(user: string, role: string, kind: Activation["kind"]): Promise<Activation | undefined> {
  const key = `${user} ${role}`;
  if (busy.has(key)) return undefined;
  busy.add(key);
  try {
    const mine = await api("my roles", user, "GET", "/v1/me/roles");
    const open = (mine.body as { items?: { role: string; state: string | null }[] } | null)?.items?.find(
      (r) => r.role === role,
    )?.state;
    if (mine.status !== 200 || open) return undefined;
    const duration = pick(DURATIONS_S);
    const answer = await api("activate", user, "POST", "/v1/activation-requests", {
      role,
      duration: `${duration}s`,
      reason: `soak test ${kind} activation`,
    });
    if (answer.status !== 201) return undefined;
    const body = answer.body as { id: string; expiresAt: string | null };
    const activation: Activation = {
      id: body.id,
      user,
      role,
      kind,
      expiresAt: body.expiresAt ? Date.parse(body.expiresAt) : Date.now() + duration * 1000,
    };
    acknowledged.push(activation);
    return activation;
  } finally {
    // The pair is free again once "my roles" no longer shows it open (checked before the next submit).
    setTimeout(() => busy.delete(key), 5_000).unref();
  }
}

async function activator(): Promise<void> {
  while (running) {
    const user = pick(REQUESTERS);
    const pgRole = Math.random() < 0.6;
    const role = pgRole ? pick(PG_ROLES) : pick(INTERNAL_ROLES);
    const activation = await activate(user, role, pgRole ? "pg" : "internal");
    if (activation && Math.random() < 0.4) {
      // Deactivated early by its requester, a little later.
      const delay = 5_000 + Math.random() * 15_000;
      setTimeout(() => {
        if (!running && Date.now() > activation.expiresAt) return;
        void (async () => {
          if (pgRole) await untilActive(user, activation.id);
          const answer = await api("deactivate", user, "POST", `/v1/me/roles/${role}/deactivate`);
          if (answer.status === 200) activation.deactivated = true;
        })();
      }, delay).unref();
    }
    await sleep(1_500);
  }
}

async function approvals(): Promise<void> {
  while (running) {
    const user = pick(REQUESTERS);
    const activation = await activate(user, pick(APPROVAL_ROLES), "approval");
    if (activation) {
      const approver = pick(APPROVERS);
      const inbox = await api("inbox", approver, "GET", "/v1/activation-requests?scope=inbox&state=pending");
      const listed = (inbox.body as { items?: { id: string }[] } | null)?.items?.some((r) => r.id === activation.id);
      if (listed) {
        const answer = await api("approve", approver, "POST", `/v1/activation-requests/${activation.id}/approvals`, {
          reason: "soak test approval",
        });
        if (answer.status === 200) activation.approvedBy = approver;
      } else {
        record("inbox", false, 0, "inbox: the pending request is not in the approver's inbox");
      }
    }
    await sleep(5_000);
  }
}

const secretValues = new Map<string, string>();
async function secretReader(): Promise<void> {
  while (running) {
    const path = pick(SECRETS);
    const answer = await api("secret read", pick(REQUESTERS), "GET", `/v1/secrets/${encodeURIComponent(path)}/value`);
    if (answer.status === 200) {
      if ((answer.body as { value?: string }).value === secretValues.get(path)) secretReads++;
      else record("secret read", false, 0, "secret read: a wrong value");
    }
    await sleep(1_000);
  }
}

async function auditReader(): Promise<void> {
  while (running) {
    await api("audit read", AUDITOR, "GET", "/v1/audit/events?order=desc&limit=50");
    await sleep(3_000);
  }
}

async function signIns(): Promise<void> {
  const everyone = [...REQUESTERS, ...APPROVERS, AUDITOR];
  for (let i = 0; running; i++) {
    await sleep(20_000);
    if (running) await signIn(everyone[i % everyone.length]!, PASSWORD);
  }
}

/** A dynamic activation, its token, a session through the PostgreSQL proxy, now and then. */
async function proxiedSessions(): Promise<void> {
  while (running) {
    await sleep(45_000 + Math.random() * 30_000);
    if (!running) break;
    const user = pick(REQUESTERS);
    const activation = await activate(user, DYNAMIC_ROLE, "dynamic");
    if (!activation || !(await untilActive(user, activation.id))) continue;
    const token = await api("db token", user, "POST", "/v1/db/tokens", { role: DYNAMIC_ROLE });
    if (token.status !== 200) continue;
    const t = token.body as { host: string; port: number; database: string; user: string; password: string };
    const started = Date.now();
    const client = new pg.Client({ ...t, connectionTimeoutMillis: 20_000 });
    client.on("error", () => undefined);
    try {
      await client.connect();
      const who = await client.query<{ who: string }>("select current_user as who");
      await client.query("select count(*) from pg_class");
      const minted = who.rows[0]?.who.startsWith(`stint_${user}_`) === true;
      record("psql session", minted, Date.now() - started, `psql session ${minted ? "ok" : "wrong login"}`);
      if (minted) activation.session = true;
    } catch (error) {
      record("psql session", false, Date.now() - started, `psql session: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
    }
    if (Math.random() < 0.5) {
      const answer = await api("deactivate", user, "POST", `/v1/me/roles/${DYNAMIC_ROLE}/deactivate`);
      if (answer.status === 200) activation.deactivated = true;
    }
  }
}

const run = promisify(execFile);
let sshKeys = 0;
let sshWork = "";
let knownHosts = "";

/** An ssh-host activation, an SSH certificate and a session through a live node's SSH proxy, now and then. */
async function sshSessions(): Promise<void> {
  while (running) {
    await sleep(40_000 + Math.random() * 30_000);
    if (!running) break;
    const user = pick(REQUESTERS);
    const activation = await activate(user, SSH_ROLE, "ssh");
    if (!activation || !(await untilActive(user, activation.id))) continue;
    const key = path.join(sshWork, `key${sshKeys++}`);
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", user, "-f", key]);
    const cert = await api("ssh certificate", user, "POST", "/v1/ssh/certificates", {
      publicKey: (await readFile(`${key}.pub`, "utf8")).trim(),
      role: SSH_ROLE,
    });
    if (cert.status !== 200) continue;
    await writeFile(`${key}-cert.pub`, `${(cert.body as { certificate: string }).certificate}\n`);
    const slot = await liveSlot();
    if (!slot) continue;
    const started = Date.now();
    const marker = `soak-${randomBytes(4).toString("hex")}`;
    const result = await sshClient([
      ...["-F", "/dev/null", "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "StrictHostKeyChecking=yes"],
      ...["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-i", key],
      ...["-p", String(slot.sshProxyPort), `${user}%${SSH_TARGET}@127.0.0.1`],
      `echo ${marker}; id -nG ${UNIX_USER}`,
    ]);
    // The session runs as the session login; the activation's privilege is the group seen from inside.
    const ok = result.code === 0 && result.stdout.includes(marker) && result.stdout.includes(UNIX_GROUP);
    record(
      "ssh session",
      ok,
      Date.now() - started,
      ok ? "ssh session ok" : `ssh session: exit ${result.code} ${result.stderr.trim().split("\n").at(-1) ?? ""}`,
      slot.index,
    );
    if (ok) activation.session = true;
    await rm(key, { force: true });
    await rm(`${key}.pub`, { force: true });
    await rm(`${key}-cert.pub`, { force: true });
    if (Math.random() < 0.5) {
      const answer = await api("deactivate", user, "POST", `/v1/me/roles/${SSH_ROLE}/deactivate`);
      if (answer.status === 200) activation.deactivated = true;
    }
  }
}

function sshClient(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("ssh", args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Every --kill-every-minutes: SIGKILL the next node in rotation (never one of the --steady-nodes),
 * restart it with its settings.
 */
async function killer(): Promise<void> {
  if (options.killEveryMinutes <= 0) return;
  for (let k = 0; ; k++) {
    for (const until = Date.now() + options.killEveryMinutes * 60_000; Date.now() < until;) {
      if (!running) return;
      await sleep(Math.min(1_000, until - Date.now()));
    }
    if (!running) return;
    const killable = slots.slice(options.steadyNodes);
    const slot = killable[k % killable.length]!;
    if (!slot.up) continue;
    const at = Date.now();
    const kill = { at, node: slot.index } as (typeof kills)[number];
    kills.push(kill);
    slot.up = false;
    await slot.node.kill();
    endLifetime(slot, "SIGKILL");
    progress(`node ${slot.index} SIGKILLed (pid ${slot.node.child.pid}); restarting`);
    await sleep(3_000);
    for (let attempt = 0; ; attempt++) {
      try {
        await startSlot(slot);
        break;
      } catch (error) {
        progress(`node ${slot.index} restart failed: ${(error as Error).message.slice(0, 500)}`);
        if (attempt >= 2) {
          unexpectedExits.push(`node ${slot.index} did not restart: ${(error as Error).message.slice(0, 300)}`);
          return;
        }
      }
    }
    kill.downMs = Date.now() - at;
    progress(`node ${slot.index} back (pid ${slot.node.child.pid}) after ${(kill.downMs / 1000).toFixed(1)} s`);
  }
}

function endLifetime(slot: Slot, how: string): void {
  const life = lifetimes.find((l) => l.node === slot.index && l.lifetime === slot.lifetime);
  if (life && life.end === undefined) {
    life.end = Date.now();
    life.ended = how;
  }
  slot.pastUnhandled.push(...slot.node.unhandled());
}

/** Starts (or restarts) the process of a slot and makes it live. */
async function startSlot(slot: Slot): Promise<void> {
  const first = !slot.node;
  const node = await startServerNode(`soak${slot.index}`, slot.env);
  if (!first) slot.lifetime++;
  slot.node = node;
  lifetimes.push({ node: slot.index, lifetime: slot.lifetime, pid: node.child.pid!, start: Date.now() });
  slot.up = true;
}

/** A node whose process exited without the soak's SIGKILL. */
function watchExits(): string | undefined {
  for (const slot of slots) {
    const exit = slot.up ? slot.node.exited() : undefined;
    if (exit) {
      slot.up = false;
      endLifetime(slot, `exit ${JSON.stringify(exit)}`);
      unexpectedExits.push(`node ${slot.index} exited by itself: ${JSON.stringify(exit)}`);
    }
  }
  return unexpectedExits[0];
}

// --- sampling -----------------------------------------------------------------------------------

interface Sample {
  at: number;
  node: number;
  lifetime: number;
  rssMb: number;
  fds: number;
  load: number;
  /** V8's used heap, from the node's own /metrics (scraped as Prometheus would, with its token). */
  heapMb: number;
}
const samples: Sample[] = [];
const METRICS_TOKEN = randomBytes(24).toString("hex");

async function sampleNode(slot: Slot): Promise<Sample | undefined> {
  const { node, lifetime } = slot;
  const pid = node.child.pid!;
  let rssMb: number;
  let fds: number;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    rssMb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024;
    fds = readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
  let heapMb = Number.NaN;
  try {
    const res = await fetch(`${node.base}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    const used = /^stint_process_nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1];
    if (used) heapMb = Number(used) / 2 ** 20;
  } catch {
    // the figure is missing from this sample
  }
  // A sample of a process killed meanwhile is dropped (its figures may be of its last moments).
  if (!slot.up || slot.node !== node) return undefined;
  return { at: Date.now(), node: slot.index, lifetime, rssMb, fds, load: loadavg()[0]!, heapMb };
}

const sampleAll = async () => {
  for (const slot of slots.filter((s) => s.up)) {
    const sample = await sampleNode(slot);
    if (sample) samples.push(sample);
  }
};

const minutesOf = (ms: number) => Number((ms / 60_000).toFixed(1));
const median = (xs: number[]) => {
  const sorted = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!;
};
const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

function windowRow(from: number, to: number, label: string): string {
  const inOps = ops.filter((o) => o.at >= from && o.at < to);
  const inSamples = samples.filter((s) => s.at >= from && s.at < to);
  const latencies = inOps.filter((o) => o.ms > 0).map((o) => o.ms);
  const perNode = slots.map((slot) => {
    const mine = inOps.filter((o) => o.node === slot.index);
    const own = inSamples.filter((s) => s.node === slot.index);
    const killed = kills.some((k) => k.node === slot.index && k.at >= from && k.at < to) ? " †" : "";
    const rss = Math.round(median(own.map((s) => s.rssMb)));
    const fds = median(own.map((s) => s.fds));
    return `${mine.length}/${mine.filter((o) => !o.ok).length} · ${Number.isNaN(rss) ? "–" : rss} MB · ${Number.isNaN(fds) ? "–" : fds} fd${killed}`;
  });
  const load = (inSamples.reduce((a, s) => a + s.load, 0) / Math.max(inSamples.length, 1)).toFixed(1);
  return `| ${label} | ${inOps.length} | ${inOps.filter((o) => !o.ok).length} | ${Math.round(percentile(latencies, 50))} | ${Math.round(percentile(latencies, 99))} | ${perNode.join(" | ")} | ${load} |`;
}

const tableHead = () =>
  `| minutes | ops | errors | p50 ms | p99 ms | ${slots.map((s) => `node ${s.index}: ops/errors · RSS · fds`).join(" | ")} | load 1-min |\n` +
  `|---|--:|--:|--:|--:|${slots.map(() => "--:|").join("")}--:|`;

// --- the end: every acknowledged operation checked ----------------------------------------------

const ENDED = new Set(["expired", "deactivated", "revoked"]);

async function verify(): Promise<string[]> {
  const lost: string[] = [];
  const admin = (method: string, url: string) => callAs("admin", method, url);
  // Every activation has had its time: wait until the API shows each one ended.
  const deadline = Math.max(...acknowledged.map((a) => a.expiresAt), Date.now()) + 180_000;
  const states = new Map<string, { state?: string; endedAt?: string | null; decisions?: { approver: string }[] }>();
  for (;;) {
    const open = acknowledged.filter((a) => !ENDED.has(states.get(a.id)?.state ?? ""));
    for (const a of open) {
      const answer = await admin("GET", `/v1/activation-requests/${a.id}`);
      if (answer.status === 200) states.set(a.id, answer.body as never);
      else if (answer.status !== 404) progress(`reading ${a.id}: ${answer.status} ${answer.code ?? ""}`);
    }
    const still = acknowledged.filter((a) => !ENDED.has(states.get(a.id)?.state ?? ""));
    if (still.length === 0 || Date.now() > deadline) break;
    progress(`${still.length} acknowledged activations not ended yet`);
    await sleep(5_000);
  }
  for (const a of acknowledged) {
    const seen = states.get(a.id);
    if (!seen) lost.push(`activation ${a.id} (${a.user}, ${a.role}) is not in the API`);
    else if (!ENDED.has(seen.state ?? "") || !seen.endedAt)
      lost.push(`activation ${a.id} (${a.user}, ${a.role}) is ${seen.state}, not ended`);
    else if (a.deactivated && seen.state !== "deactivated")
      lost.push(`activation ${a.id} was deactivated (acknowledged) but is ${seen.state}`);
    if (a.approvedBy && !seen?.decisions?.some((d) => d.approver === a.approvedBy))
      lost.push(`approval of ${a.id} by ${a.approvedBy} is not among its decisions`);
  }
  // Each proxied session is recorded, for its activation, and ended.
  const withSession = acknowledged.filter((a) => a.session);
  if (withSession.length > 0) {
    const answer = await admin("GET", "/v1/sessions?limit=500");
    const sessions = (answer.body as { items?: { requestId: string; endedAt: string | null }[] }).items ?? [];
    for (const a of withSession) {
      const session = sessions.find((s) => s.requestId === a.id);
      if (!session) lost.push(`the proxied session of ${a.id} is not recorded`);
      else if (!session.endedAt) lost.push(`the proxied session of ${a.id} has not ended`);
    }
  }
  // Nothing left at the target: no membership, no minted login (revocation runs through the outbox).
  const leftovers = async () => {
    const memberships = await target.memberships();
    const logins = await queryOnce<{ rolname: string }>(
      TARGET_ADMIN_URL,
      "select rolname from pg_roles where rolname like $1",
      [`stint_sk${hex}%`],
    );
    const groups = await idGroups(UNIX_USER);
    return [
      ...memberships.map((m) => `${m.user} is still a member of ${m.role}'s target role`),
      ...logins.map((l) => `minted login ${l.rolname} still exists`),
      ...(groups.includes(UNIX_GROUP)
        ? [`${UNIX_USER} is still in the Unix group ${UNIX_GROUP} at the ssh-host target`]
        : []),
    ];
  };
  let left = await leftovers();
  for (const until = Date.now() + 60_000; left.length > 0 && Date.now() < until; left = await leftovers())
    await sleep(2_000);
  lost.push(...left);
  // Every acknowledged secret read has its audit event.
  let audited = 0;
  for (let after = 0; ;) {
    const page = await admin("GET", `/v1/audit/events?action=secret.read&afterSeq=${after}&limit=1000`);
    if (page.status !== 200) {
      lost.push(`the audit events cannot be read: ${page.status} ${page.code ?? ""}`);
      break;
    }
    const items = (page.body as { items?: { seq: number }[] }).items ?? [];
    audited += items.length;
    if (items.length < 1000) break;
    after = items.at(-1)!.seq;
  }
  if (audited < secretReads) lost.push(`${secretReads} secret reads acknowledged, ${audited} audited`);
  // The audit chain verifies.
  const verified = await admin("GET", "/v1/audit/verify");
  const result = verified.body as { ok?: boolean; events?: number; checked?: number };
  if (verified.status !== 200 || result.ok !== true)
    lost.push(`the audit chain does not verify: ${verified.status} ${JSON.stringify(verified.body).slice(0, 300)}`);
  progress(`audit chain: ${JSON.stringify(verified.body).slice(0, 200)}; ${audited} secret.read events`);
  return lost;
}

// --- main -----------------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (!existsSync(path.join(ROOT, "dist/cli/main.js"))) throw new Error("dist/ is missing: run `npm run build` first");
  const work = await mkdtemp(path.join(tmpdir(), "stint-soak-"));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  sshWork = work;
  const masterKeyFile = path.join(work, "master.key");
  const vaultKeyFile = path.join(work, "vault.key");
  await writeFile(masterKeyFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  await writeFile(vaultKeyFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  const shared: Record<string, string> = {
    STINT_MASTER_KEY_FILE: masterKeyFile,
    STINT_VAULT_KEY_FILE: vaultKeyFile,
    STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    STINT_METRICS_TOKEN: METRICS_TOKEN,
    ...(options.accessTokenTtl ? { STINT_ACCESS_TOKEN_TTL: options.accessTokenTtl } : {}),
  };
  let diagnostics: string | undefined;
  if (options.heapSnapshots) {
    // Kept after the run: a heap snapshot per live node after warm-up and at the end, to compare in DevTools.
    diagnostics = await mkdtemp(path.join(tmpdir(), "stint-soak-heap-"));
    shared.NODE_OPTIONS = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${diagnostics}`;
  }
  if (options.store === "postgres") {
    const database = await createPgDatabase();
    cleanups.push(database.drop);
    shared.STINT_DATABASE_URL = database.url;
  }
  await target.create();
  cleanups.push(() => target.drop());
  await queryOnce(TARGET_ADMIN_URL, `create role ${dynamicReader} nologin`);
  cleanups.push(() => queryOnce(TARGET_ADMIN_URL, `drop role if exists ${dynamicReader}`));
  cleanups.push(async () => {
    const logins = await queryOnce<{ rolname: string }>(
      TARGET_ADMIN_URL,
      "select rolname from pg_roles where rolname like $1",
      [`stint_sk${hex}%`],
    );
    for (const { rolname } of logins) await queryOnce(TARGET_ADMIN_URL, `drop role if exists "${rolname}"`);
  });
  progress("starting the sshd of the ssh-host target (a throwaway Unix user and group)");
  const sshd = await startSshd({ extraConfig: ["MaxStartups 200"] });
  cleanups.push(() => sshd.stop());
  await createUser(UNIX_USER);
  cleanups.push(() => deleteUser(UNIX_USER));
  await createGroup(UNIX_GROUP);
  cleanups.push(() => deleteGroup(UNIX_GROUP));

  progress(`starting ${options.nodes} built server node(s) (store: ${options.store})`);
  for (let index = 0; index < options.nodes; index++) {
    const pgProxyPort = await freePort();
    const sshProxyPort = await freePort();
    const slot: Slot = {
      index,
      env: {
        ...shared,
        STINT_DATA_DIR: path.join(work, `node${index}`),
        STINT_PG_PROXY_LISTEN: `127.0.0.1:${pgProxyPort}`,
        STINT_SSH_PROXY_LISTEN: `127.0.0.1:${sshProxyPort}`,
      },
      pgProxyPort,
      sshProxyPort,
      node: undefined as unknown as ServerNode,
      up: false,
      lifetime: 0,
      pastUnhandled: [],
    };
    slots.push(slot);
    // The first node creates the schema and the administrator; the others join it.
    await startSlot(slot);
    cleanups.push(() => slot.node.kill());
  }
  if (!(await signIn("admin", ADMIN_PASSWORD))) throw new Error(`admin sign-in failed:\n${slots[0]!.node.output()}`);
  passwords.set("admin", ADMIN_PASSWORD);
  const admin = (method: string, url: string, body?: unknown) => callAs("admin", method, url, body);
  progress("users, catalog, target credentials and secrets");
  for (const user of [...REQUESTERS, ...APPROVERS])
    await must(admin("POST", "/v1/users", { name: user, password: PASSWORD }), `user ${user}`);
  await must(admin("POST", "/v1/users", { name: AUDITOR, password: PASSWORD, platformRoles: ["auditor"] }), "auditor");
  await must(admin("POST", "/v1/config/apply", { yaml: catalog(sshd) }), "catalog");
  await must(admin("PUT", `/v1/targets/${SSH_TARGET}/credential`, { secret: sshd.adminPrivateKey }), "ssh credential");
  await must(
    admin("PUT", `/v1/secrets/${encodeURIComponent(`targets/${SSH_TARGET}/session`)}`, {
      kind: "ssh-key",
      value: sshd.adminPrivateKey,
    }),
    "ssh session secret",
  );
  for (const secret of SECRETS) {
    const value = randomBytes(18).toString("base64url");
    secretValues.set(secret, value);
    await must(
      admin("PUT", `/v1/secrets/${encodeURIComponent(secret)}`, { kind: "api-key", value, platformRoles: ["user"] }),
      `secret ${secret}`,
    );
  }
  // The proxies' host key is the installation's (in the store): one line per node's SSH proxy port.
  const ca = await must(admin("GET", "/v1/ssh/ca"), "ssh ca");
  const hostKey = (ca.body as { proxy: { hostKey: string } }).proxy.hostKey;
  knownHosts = path.join(work, "known_hosts");
  await writeFile(knownHosts, slots.map((s) => `[127.0.0.1]:${s.sshProxyPort} ${hostKey}\n`).join(""));
  for (const user of [...REQUESTERS, ...APPROVERS, AUDITOR]) await signIn(user, PASSWORD);

  const started = Date.now();
  const end = started + options.minutes * 60_000;
  const windowMs = options.windowMinutes * 60_000;
  const built = statSync(path.join(ROOT, "dist/main.js")).mtime.toISOString();
  console.log(
    `soak: ${options.minutes} min, ${options.nodes} node(s) on ${options.store}, ` +
      `${options.killEveryMinutes > 0 ? `a node SIGKILLed and restarted every ${options.killEveryMinutes} min (in rotation; ${options.steadyNodes} never killed)` : "no kills"}, ` +
      `pids ${slots.map((s) => s.node.child.pid).join(", ")} (dist/ built ${built}), sampling every ${options.sampleSeconds} s; ` +
      `per-lifetime warm-up ${options.lifetimeWarmupMinutes} min, judge windows ${options.judgeWindowMinutes} min`,
  );
  console.log(`uptime at start: ${uptime()}`);
  samples.length = 0;
  ops.length = 0;
  const sampler = setInterval(() => void sampleAll(), options.sampleSeconds * 1000);
  await sampleAll();
  const snapshot = (when: string) => {
    if (!diagnostics) return;
    for (const slot of slots.filter((s) => s.up)) process.kill(slot.node.child.pid!, "SIGUSR2");
    progress(`heap snapshots (${when}) requested into ${diagnostics}`);
  };
  if (diagnostics) setTimeout(() => snapshot("after warm-up"), options.lifetimeWarmupMinutes * 60_000).unref();

  const workers = [
    activator(),
    activator(),
    approvals(),
    secretReader(),
    auditReader(),
    signIns(),
    proxiedSessions(),
    sshSessions(),
    killer(),
  ];
  console.log(tableHead());
  const rows: string[] = [];
  for (let from = started; from < end; from += windowMs) {
    const to = Math.min(from + windowMs, end);
    while (Date.now() < to && !watchExits()) await sleep(Math.min(1_000, to - Date.now()));
    if (watchExits()) break;
    const row = windowRow(from, to, `${minutesOf(from - started)}–${minutesOf(to - started)}`);
    rows.push(row);
    console.log(row);
    const last = ops.filter((o) => o.at >= from && o.at < to);
    progress(
      `window ${minutesOf(from - started)} min: ${last.length} ops, ${last.filter((o) => !o.ok).length} errors; ${uptime()}`,
    );
  }
  running = false;
  await Promise.all(workers);
  clearInterval(sampler);
  const loadEnd = Date.now();
  snapshot("at the end of the load");
  console.log(`uptime at end of load: ${uptime()}`);
  console.log("");
  console.log(tableHead());
  rows.forEach((row) => console.log(row));

  watchExits();
  const lost = await verify();
  watchExits();
  for (const slot of slots) if (slot.up) endLifetime(slot, "end");
  const unhandled = slots.flatMap((s) => s.pastUnhandled);

  // Flatness per lifetime: its first judge window after its warm-up against its last judge window.
  const warmupMs = options.lifetimeWarmupMinutes * 60_000;
  const judgeMs = options.judgeWindowMinutes * 60_000;
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}%`;
  console.log("");
  console.log(
    `node lifetimes (RSS and fds: medians of the first ${options.judgeWindowMinutes} min after a ${options.lifetimeWarmupMinutes}-min warm-up → the last ${options.judgeWindowMinutes} min of the load in that lifetime):`,
  );
  console.log(
    "| node | lifetime | minutes | ended | RSS MB | fds | V8 heap used MB (not judged) | judged |\n|---|--:|---|---|---|---|---|---|",
  );
  let judged = 0;
  let flat = 0;
  for (const life of lifetimes) {
    const stop = Math.min(life.end ?? loadEnd, loadEnd);
    const own = samples.filter((s) => s.node === life.node && s.lifetime === life.lifetime && s.at <= stop);
    const firstWindow = own.filter((s) => s.at >= life.start + warmupMs && s.at < life.start + warmupMs + judgeMs);
    const lastWindow = own.filter((s) => s.at >= Math.max(stop - judgeMs, life.start + warmupMs + judgeMs));
    const long = stop - life.start >= warmupMs + 2 * judgeMs && firstWindow.length > 0 && lastWindow.length > 0;
    const change = (pick: (s: Sample) => number) => {
      const a = median(firstWindow.map(pick));
      const b = median(lastWindow.map(pick));
      return { a, b, change: (b - a) / a };
    };
    const rss = change((s) => s.rssMb);
    const fds = change((s) => s.fds);
    const heap = change((s) => s.heapMb);
    const ok = long && Math.abs(rss.change) <= 0.1 && Math.abs(fds.change) <= 0.1;
    if (long) judged++;
    if (ok) flat++;
    const span = `${minutesOf(life.start - started)}–${minutesOf(stop - started)}`;
    console.log(
      long
        ? `| ${life.node} | ${life.lifetime} | ${span} | ${life.ended ?? ""} | ${rss.a.toFixed(0)} → ${rss.b.toFixed(0)} (${pct(rss.change)}) | ${fds.a} → ${fds.b} (${pct(fds.change)}) | ${heap.a.toFixed(0)} → ${heap.b.toFixed(0)} (${pct(heap.change)}) | ${ok ? "flat" : "NOT FLAT"} |`
        : `| ${life.node} | ${life.lifetime} | ${span} | ${life.ended ?? ""} | ${Math.round(median(own.map((s) => s.rssMb)))} (median) | ${median(own.map((s) => s.fds))} (median) | ${Math.round(median(own.map((s) => s.heapMb)))} (median) | too short |`,
    );
  }
  console.log(
    `kills: ${kills.length} (${kills.map((k) => `node ${k.node} at ${minutesOf(k.at - started)} min, back after ${k.downMs ? (k.downMs / 1000).toFixed(1) : "?"} s`).join("; ")})`,
  );

  console.log("");
  console.log("operations by kind (whole run):");
  const kinds = [...new Set(ops.map((o) => o.kind))];
  console.log("| kind | ops | errors | p50 ms | p99 ms |\n|---|--:|--:|--:|--:|");
  for (const kind of kinds) {
    const of = ops.filter((o) => o.kind === kind);
    const ms = of.filter((o) => o.ms > 0).map((o) => o.ms);
    console.log(
      `| ${kind} | ${of.length} | ${of.filter((o) => !o.ok).length} | ${Math.round(percentile(ms, 50))} | ${Math.round(percentile(ms, 99))} |`,
    );
  }
  if (errorsByWhat.size > 0) {
    console.log("errors:");
    for (const [what, n] of [...errorsByWhat].sort((a, b) => b[1] - a[1])) console.log(`  ${n} × ${what}`);
  }
  const byKind = (kind: Activation["kind"]) => acknowledged.filter((a) => a.kind === kind).length;
  const withSession = (kind: Activation["kind"]) => acknowledged.filter((a) => a.kind === kind && a.session).length;
  console.log(
    `acknowledged: ${acknowledged.length} activations (${byKind("pg")} PostgreSQL target, ${byKind("internal")} internal, ` +
      `${byKind("approval")} approval-required of which ${acknowledged.filter((a) => a.approvedBy).length} approved, ` +
      `${byKind("dynamic")} dynamic with ${withSession("dynamic")} proxied psql sessions, ` +
      `${byKind("ssh")} ssh-host with ${withSession("ssh")} proxied ssh sessions), ` +
      `${acknowledged.filter((a) => a.deactivated).length} deactivations, ${secretReads} secret reads`,
  );
  console.log(`lost acknowledged operations: ${lost.length}`);
  for (const line of lost.slice(0, 30)) console.log(`  ${line}`);
  if (unhandled.length > 0)
    console.log(`unhandled errors in the nodes' output: ${unhandled.length}\n  ${unhandled[0]}`);
  for (const line of unexpectedExits) console.log(`unexpected: ${line}`);
  const pass =
    lost.length === 0 && unhandled.length === 0 && unexpectedExits.length === 0 && judged > 0 && flat === judged;
  console.log(
    `verdict: ${pass ? "PASS" : "FAIL"} (lost ops ${lost.length} = 0: ${lost.length === 0 ? "yes" : "no"}; ` +
      `lifetimes flat within 10% (RSS and fds): ${flat} of ${judged} judged; ` +
      `unhandled errors: ${unhandled.length}; unexpected exits: ${unexpectedExits.length})`,
  );
  // Every sample, for a closer look at a curve (removed with nothing else: it is in the temp directory).
  const dump = path.join(tmpdir(), `stint-soak-samples-${hex}.json`);
  await writeFile(dump, JSON.stringify({ started, lifetimes, kills, samples }));
  console.log(`samples: ${dump}`);
  console.log(`uptime at end: ${uptime()}`);
  if (diagnostics) console.log(`heap snapshots: ${diagnostics}`);
  return pass ? 0 : 1;
}

async function must(answer: Promise<Answer>, what: string): Promise<Answer> {
  const a = await answer;
  if (a.status >= 300) throw new Error(`${what}: ${a.status} ${JSON.stringify(a.body)}`);
  return a;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  console.error(error);
  for (const slot of slots) console.error(`node ${slot.index} output (tail):\n${slot.node?.output().slice(-4000)}`);
} finally {
  running = false;
  await cleanup();
}
process.exit(code);
