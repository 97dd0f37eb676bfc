/**
 * `npm run soak -- [--minutes=30] [--store=postgres|pglite] [--warmup-minutes=5] [--window-minutes=5]
 * [--sample-seconds=10] [--heap-snapshots] [--access-token-ttl=10m]` — issue 13, acceptance 7.
 *
 * Starts the built server (`node bin/stint.js server`, dist/) on a fresh PostgreSQL database on
 * 127.0.0.1:5432 (or, with --store=pglite, its embedded store in a fresh data directory), with the
 * vault unsealed by a key file and the PostgreSQL session proxy on, and drives a steady mixed
 * workload of what users do for --minutes:
 *
 * - sign-in (each user again every couple of minutes) and a look at "my roles" before activating;
 * - activations of auto-approved roles on a real PostgreSQL target (a membership there) and on the
 *   internal target, lasting 30–90 s; some deactivated early by their requester, the rest expire;
 * - activations of roles that need an approval, approved from the inbox by a second user;
 * - secret reads (the value compared with what was put), audit reads by an auditor;
 * - now and then a dynamic-credential activation and a proxied PostgreSQL session with its token.
 *
 * Every acknowledged operation is recorded and checked at the end, once every activation has had
 * time to end: it exists in the API, an activation ended (deactivated ones as deactivated), an
 * approval is among its request's decisions, each proxied session is recorded and ended, every
 * acknowledged secret read has its audit event, nothing remains at the target (memberships, minted
 * logins), the audit chain verifies. Every `--sample-seconds` the server's RSS and open file
 * descriptors (/proc/<pid>/status, /proc/<pid>/fd) and the load average are sampled; a table per
 * window gives operations, errors, p50/p99 latency, RSS, descriptors and load. Verdict: no lost
 * operation, no unhandled error, and the median RSS and descriptor count of the last window within
 * 10% of the first window after warm-up → PASS, else FAIL (exit code 1).
 *
 * Needs the build (`npm run build`) and PostgreSQL on 127.0.0.1:5432 (trust), for the target in any
 * case. Everything it creates is removed at the end, also on failure or Ctrl-C.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { createPgDatabase } from "../src/testing/engines.js";
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
  store: "postgres" | "pglite";
  warmupMinutes: number;
  windowMinutes: number;
  sampleSeconds: number;
  heapSnapshots: boolean;
  /** The server's STINT_ACCESS_TOKEN_TTL, when given (short ones exercise the clients' renewal). */
  accessTokenTtl?: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    minutes: 30,
    store: "postgres",
    warmupMinutes: 5,
    windowMinutes: 5,
    sampleSeconds: 10,
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
    else if (key === "--warmup-minutes" && n >= 0) options.warmupMinutes = n;
    else if (key === "--window-minutes" && n > 0) options.windowMinutes = n;
    else if (key === "--sample-seconds" && n > 0) options.sampleSeconds = n;
    else if (key === "--store" && (value === "postgres" || value === "pglite")) options.store = value;
    else if (key === "--access-token-ttl" && /^\d+[smh]$/.test(value)) options.accessTokenTtl = value;
    else
      throw new Error(
        `unknown argument ${arg} (use --minutes=N, --store=postgres|pglite, --warmup-minutes=N, --window-minutes=N, --sample-seconds=N, --heap-snapshots, --access-token-ttl=5m)`,
      );
  }
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

function catalog(): string {
  return `
apiVersion: stint/v1
policies:
  - name: soak-self
    mfa: { required: false }
    maxDuration: 8h
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
roles:
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
)}${[DYNAMIC_ROLE, ...INTERNAL_ROLES, ...APPROVAL_ROLES]
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
}
const ops: Op[] = [];
const errorsByWhat = new Map<string, number>();

interface Activation {
  id: string;
  user: string;
  role: string;
  kind: "pg" | "internal" | "approval" | "dynamic";
  expiresAt: number;
  deactivated?: boolean;
  approvedBy?: string;
  session?: boolean;
}
const acknowledged: Activation[] = [];
let secretReads = 0;

let node!: ServerNode;
const tokens = new Map<string, string>();

/** Passwords by user name (the administrator's is the bootstrap one). */
const passwords = new Map<string, string>();

/**
 * One API call as a user (no operation recorded). An access token that has expired is renewed by
 * signing in again, as a client would, and the call made once more. Throws nothing: the answer says.
 */
async function callAs(user: string, method: string, url: string, body?: unknown): Promise<Answer> {
  const once = async (): Promise<Answer> => {
    const started = Date.now();
    try {
      return await node.call(method, url, tokens.get(user), body);
    } catch (error) {
      return {
        what: `${method} ${url}`,
        status: 0,
        code: (error as Error).name,
        retryAfter: null,
        ms: Date.now() - started,
        body: null,
      };
    }
  };
  const answer = await once();
  if (answer.status !== 401 || answer.code !== "TOKEN_EXPIRED") return answer;
  await signIn(user, passwords.get(user) ?? PASSWORD);
  return once();
}

/** One API call as a user, recorded as an operation of `kind`. */
async function api(kind: string, user: string, method: string, url: string, body?: unknown): Promise<Answer> {
  const answer = await callAs(user, method, url, body);
  record(kind, answer.status >= 200 && answer.status < 300, answer.ms, `${kind} ${answer.status} ${answer.code ?? ""}`);
  return answer;
}

function record(kind: string, ok: boolean, ms: number, what: string): void {
  ops.push({ at: Date.now(), kind, ok, ms, what });
  if (!ok) errorsByWhat.set(what, (errorsByWhat.get(what) ?? 0) + 1);
}

async function signIn(user: string, password: string): Promise<boolean> {
  const started = Date.now();
  const answer = await node
    .call("POST", "/v1/auth/login", undefined, { username: user, password })
    .catch(() => undefined);
  const ok = answer?.status === 200;
  record("sign-in", ok, Date.now() - started, `sign-in ${answer?.status ?? 0}`);
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
      record("proxied session", minted, Date.now() - started, `proxied session ${minted ? "ok" : "wrong login"}`);
      if (minted) activation.session = true;
    } catch (error) {
      record("proxied session", false, Date.now() - started, `proxied session: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
    }
    if (Math.random() < 0.5) {
      const answer = await api("deactivate", user, "POST", `/v1/me/roles/${DYNAMIC_ROLE}/deactivate`);
      if (answer.status === 200) activation.deactivated = true;
    }
  }
}

// --- sampling -----------------------------------------------------------------------------------

interface Sample {
  at: number;
  rssMb: number;
  fds: number;
  load: number;
  /** V8's used heap, from the server's own /metrics (scraped as Prometheus would, with its token). */
  heapMb: number;
}
const samples: Sample[] = [];
const METRICS_TOKEN = randomBytes(24).toString("hex");

async function sampleServer(pid: number): Promise<Sample | undefined> {
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
  return { at: Date.now(), rssMb, fds, load: loadavg()[0]!, heapMb };
}

const minutesOf = (ms: number) => Number((ms / 60_000).toFixed(1));
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!;
};
const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

interface WindowRow {
  window: string;
  ops: number;
  errors: number;
  p50: number;
  p99: number;
  rss: number;
  rssRange: string;
  heap: number;
  fds: number;
  fdRange: string;
  load: number;
}

function windowRow(from: number, to: number, label: string): WindowRow {
  const inOps = ops.filter((o) => o.at >= from && o.at < to);
  const inSamples = samples.filter((s) => s.at >= from && s.at < to);
  const latencies = inOps.filter((o) => o.ms > 0).map((o) => o.ms);
  const rss = inSamples.map((s) => s.rssMb);
  const fds = inSamples.map((s) => s.fds);
  return {
    window: label,
    ops: inOps.length,
    errors: inOps.filter((o) => !o.ok).length,
    p50: Math.round(percentile(latencies, 50)),
    p99: Math.round(percentile(latencies, 99)),
    rss: Math.round(median(rss)),
    rssRange: rss.length ? `${Math.round(Math.min(...rss))}–${Math.round(Math.max(...rss))}` : "",
    heap: Math.round(median(inSamples.map((s) => s.heapMb).filter((x) => !Number.isNaN(x)))),
    fds: median(fds),
    fdRange: fds.length ? `${Math.min(...fds)}–${Math.max(...fds)}` : "",
    load: Number((inSamples.reduce((a, s) => a + s.load, 0) / Math.max(inSamples.length, 1)).toFixed(1)),
  };
}

function printRow(row: WindowRow): void {
  console.log(
    `| ${row.window} | ${row.ops} | ${row.errors} | ${row.p50} | ${row.p99} | ${row.rss} (${row.rssRange}) | ${row.heap} | ${row.fds} (${row.fdRange}) | ${row.load} |`,
  );
}
const TABLE_HEAD =
  "| minutes | ops | errors | p50 ms | p99 ms | RSS MB median (range) | heap used MB | fds median (range) | load 1-min |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|";

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
    return [
      ...memberships.map((m) => `${m.user} is still a member of ${m.role}'s target role`),
      ...logins.map((l) => `minted login ${l.rolname} still exists`),
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
  const masterKeyFile = path.join(work, "master.key");
  const vaultKeyFile = path.join(work, "vault.key");
  await writeFile(masterKeyFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  await writeFile(vaultKeyFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  const env: Record<string, string> = {
    STINT_DATA_DIR: path.join(work, "data"),
    STINT_MASTER_KEY_FILE: masterKeyFile,
    STINT_VAULT_KEY_FILE: vaultKeyFile,
    STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    STINT_PG_PROXY_LISTEN: `127.0.0.1:${await freePort()}`,
    STINT_METRICS_TOKEN: METRICS_TOKEN,
    ...(options.accessTokenTtl ? { STINT_ACCESS_TOKEN_TTL: options.accessTokenTtl } : {}),
  };
  let diagnostics: string | undefined;
  if (options.heapSnapshots) {
    // Kept after the run: a heap snapshot after warm-up and one at the end, to compare in DevTools.
    diagnostics = await mkdtemp(path.join(tmpdir(), "stint-soak-heap-"));
    env.NODE_OPTIONS = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${diagnostics}`;
  }
  if (options.store === "postgres") {
    const database = await createPgDatabase();
    cleanups.push(database.drop);
    env.STINT_DATABASE_URL = database.url;
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

  progress(`starting the built server (store: ${options.store})`);
  node = await startServerNode("soak", env);
  cleanups.push(() => node.kill());
  const pid = node.child.pid!;
  if (!(await signIn("admin", ADMIN_PASSWORD))) throw new Error(`admin sign-in failed:\n${node.output()}`);
  passwords.set("admin", ADMIN_PASSWORD);
  const admin = (method: string, url: string, body?: unknown) => callAs("admin", method, url, body);
  progress("users, catalog and secrets");
  for (const user of [...REQUESTERS, ...APPROVERS])
    await must(admin("POST", "/v1/users", { name: user, password: PASSWORD }), `user ${user}`);
  await must(admin("POST", "/v1/users", { name: AUDITOR, password: PASSWORD, platformRoles: ["auditor"] }), "auditor");
  await must(admin("POST", "/v1/config/apply", { yaml: catalog() }), "catalog");
  for (const secret of SECRETS) {
    const value = randomBytes(18).toString("base64url");
    secretValues.set(secret, value);
    await must(
      admin("PUT", `/v1/secrets/${encodeURIComponent(secret)}`, { kind: "api-key", value, platformRoles: ["user"] }),
      `secret ${secret}`,
    );
  }
  for (const user of [...REQUESTERS, ...APPROVERS, AUDITOR]) await signIn(user, PASSWORD);

  const started = Date.now();
  const end = started + options.minutes * 60_000;
  const windowMs = options.windowMinutes * 60_000;
  const warmupEnd = started + options.warmupMinutes * 60_000;
  const built = statSync(path.join(ROOT, "dist/main.js")).mtime.toISOString();
  console.log(
    `soak: ${options.minutes} min, store ${options.store}, server pid ${pid} (dist/ built ${built}), ` +
      `sampling every ${options.sampleSeconds} s; warm-up ${options.warmupMinutes} min`,
  );
  console.log(`uptime at start: ${uptime()}`);
  samples.length = 0;
  ops.length = 0;
  const sampler = setInterval(() => {
    void sampleServer(pid).then((sample) => sample && samples.push(sample));
  }, options.sampleSeconds * 1000);
  const first = await sampleServer(pid);
  if (first) samples.push(first);
  const snapshot = (when: string) => {
    if (!diagnostics) return;
    process.kill(pid, "SIGUSR2");
    progress(`heap snapshot (${when}) requested into ${diagnostics}`);
  };
  if (diagnostics) setTimeout(() => snapshot("after warm-up"), Math.max(0, warmupEnd - Date.now())).unref();

  const workers = [activator(), activator(), approvals(), secretReader(), auditReader(), signIns(), proxiedSessions()];
  console.log(TABLE_HEAD);
  const rows: WindowRow[] = [];
  for (let from = started; from < end; from += windowMs) {
    const to = Math.min(from + windowMs, end);
    while (Date.now() < to) {
      if (node.exited()) break;
      await sleep(Math.min(1_000, to - Date.now()));
    }
    if (node.exited()) break;
    const row = windowRow(from, to, `${minutesOf(from - started)}–${minutesOf(to - started)}`);
    rows.push(row);
    printRow(row);
    progress(`window ${row.window} min: ${row.ops} ops, ${row.errors} errors; ${uptime()}`);
  }
  running = false;
  await Promise.all(workers);
  clearInterval(sampler);
  snapshot("at the end of the load");
  console.log(`uptime at end of load: ${uptime()}`);
  console.log("");
  console.log(TABLE_HEAD);
  rows.forEach(printRow);

  const exited = node.exited();
  const lost = exited ? [`the server exited: ${JSON.stringify(exited)}`] : await verify();
  const unhandled = node.unhandled();

  // Flatness: the first window after warm-up against the last one (medians of their samples).
  const after = samples.filter((s) => s.at >= warmupEnd);
  const firstWindow = after.filter((s) => s.at < warmupEnd + windowMs);
  const lastWindow = after.filter((s) => s.at >= Math.max(end - windowMs, warmupEnd + windowMs));
  const change = (pick: (s: Sample) => number) => {
    const a = median(firstWindow.map(pick));
    const b = median(lastWindow.map(pick));
    return { first: a, last: b, change: (b - a) / a };
  };
  const rss = change((s) => s.rssMb);
  const fds = change((s) => s.fds);
  const measured = firstWindow.length > 0 && lastWindow.length > 0;
  const rssFlat = measured && Math.abs(rss.change) <= 0.1;
  const fdsFlat = measured && Math.abs(fds.change) <= 0.1;

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
  console.log(
    `acknowledged: ${acknowledged.length} activations (${byKind("pg")} PostgreSQL target, ${byKind("internal")} internal, ` +
      `${byKind("approval")} approval-required of which ${acknowledged.filter((a) => a.approvedBy).length} approved, ` +
      `${byKind("dynamic")} dynamic with ${acknowledged.filter((a) => a.session).length} proxied sessions), ` +
      `${acknowledged.filter((a) => a.deactivated).length} deactivations, ${secretReads} secret reads`,
  );
  console.log(`lost acknowledged operations: ${lost.length}`);
  for (const line of lost.slice(0, 30)) console.log(`  ${line}`);
  if (unhandled.length > 0)
    console.log(`unhandled errors in the server's output: ${unhandled.length}\n  ${unhandled[0]}`);
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}%`;
  console.log(
    measured
      ? `RSS after warm-up: ${rss.first.toFixed(0)} MB → ${rss.last.toFixed(0)} MB (${pct(rss.change)}); ` +
          `file descriptors: ${fds.first} → ${fds.last} (${pct(fds.change)}); first window after warm-up vs last window, medians`
      : "RSS and descriptors: the run is too short for a window after warm-up (use --minutes ≥ warm-up + 2 windows)",
  );
  const pass = lost.length === 0 && unhandled.length === 0 && rssFlat && fdsFlat && !exited;
  console.log(
    `verdict: ${pass ? "PASS" : "FAIL"} (lost ops ${lost.length} = 0: ${lost.length === 0 ? "yes" : "no"}; ` +
      `RSS within 10%: ${rssFlat ? "yes" : "no"}; fds within 10%: ${fdsFlat ? "yes" : "no"}; ` +
      `unhandled errors: ${unhandled.length})`,
  );
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
  if (node) console.error(`server output (tail):\n${node.output().slice(-4000)}`);
} finally {
  running = false;
  await cleanup();
}
process.exit(code);
