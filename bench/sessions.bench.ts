/**
 * Session proxy benchmark: what a brokered session costs a real client compared with going straight to
 * the server.
 *
 * 1. pgbench select-only (`pgbench -S -n -c 8 -j 2 -T <seconds>`, scale 10, a fresh database on the
 *    machine's PostgreSQL) directly, through Stint's PostgreSQL proxy (a Stint database token as the
 *    password, the upstream login minted by a dynamic activation, every query in the session's query
 *    log) and through Debian's pgbouncer (transaction pooling, for scale: a proxy that records nothing).
 * 2. a `--size-mb` file uploaded with `scp` to a real sshd, directly (the host's admin key as root) and
 *    through Stint's SSH proxy (a Stint certificate; the proxy logs in upstream with the key from the
 *    vault and records the transfer), with both of scp's protocols: SFTP (OpenSSH's default) and the
 *    legacy one (`scp -O`). Every copy is checked at the destination (size and SHA-256).
 *
 *   node --import tsx bench/sessions.bench.ts [--seconds=10] [--size-mb=100]
 *
 * Stint runs in this process (PGlite in memory) with both proxies on 127.0.0.1; the clients are the
 * real programs, run as child processes. The database, the NOLOGIN role, the minted logins, pgbouncer,
 * sshd, the throwaway Unix user and group and the temp files are removed at the end, also on failure.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdtemp, open, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { destination as logDestination } from "pino";
import { createLogger } from "../src/lib/logger.js";
import { startProxies } from "../src/proxies/index.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../src/testing/server.js";
import { createGroup, createUser, deleteGroup, deleteUser, startSshd } from "../src/testing/sshd.js";
import { exec, mustExec, startPgbouncer } from "./processes.js";

const CLIENTS = 8;
const THREADS = 2;
const SCALE = 10;
const WARMUP_SECONDS = 2;
/** Uploads per path and protocol; the table shows the median. */
const COPIES = 3;
const MAX_PASSES = 50;
const PG_ROLE = "bench-pgbench";
const SSH_ROLE = "bench-ssh";
const SSH_TARGET = "bench-web";

interface Options {
  seconds: number;
  sizeMb: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { seconds: 10, sizeMb: 100 };
  const count = (value: string | undefined) => (value && /^[1-9]\d*$/.test(value) ? Number(value) : undefined);
  for (const arg of argv) {
    const [key, value] = arg.split("=", 2);
    if (key === "--seconds" && count(value)) options.seconds = count(value)!;
    else if (key === "--size-mb" && count(value)) options.sizeMb = count(value)!;
    else throw new Error(`unknown argument ${arg} (use --seconds=N, --size-mb=N)`);
  }
  return options;
}

const progress = (message: string) => console.error(`· ${message}`);

// ---- cleanup: a stack run in reverse at the end, on failure and on Ctrl-C ----

const cleanups: { what: string; run: () => Promise<unknown> }[] = [];
function defer(what: string, run: () => Promise<unknown>) {
  cleanups.push({ what, run });
}
let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const step of cleanups.reverse()) {
      await step.run().catch((error: unknown) => console.error(`cleanup: ${step.what} failed: ${String(error)}`));
    }
  })();
  return cleaning;
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

// ---- child processes ----

// ---- Stint API ----

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function call(server: TestServer, auth: string, method: "GET" | "POST" | "PUT", url: string, payload?: object) {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: auth },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.body ? (res.json() as Record<string, unknown>) : {} } as Reply;
}

function expectStatus(what: string, reply: Reply, status: number) {
  if (reply.status !== status)
    throw new Error(`${what}: expected ${status}, got ${reply.status} ${JSON.stringify(reply.body)}`);
}

/** Submits an activation and runs the outbox until it claims nothing; the request must then be active. */
async function activate(server: TestServer, auth: string, role: string) {
  const submitted = await call(server, auth, "POST", "/v1/activation-requests", {
    role,
    duration: "1h",
    reason: "session proxy benchmark",
  });
  expectStatus(`activate ${role}`, submitted, 201);
  const id = String(submitted.body.id);
  for (let pass = 0; ; pass++) {
    if (pass >= MAX_PASSES) throw new Error(`activate ${role}: the outbox was still busy after ${MAX_PASSES} passes`);
    if ((await server.outbox.runOnce()).claimed === 0) break;
  }
  const now = await call(server, auth, "GET", `/v1/activation-requests/${id}`);
  expectStatus(`request ${id}`, now, 200);
  if (now.body.state !== "active") throw new Error(`activate ${role}: the request is ${String(now.body.state)}`);
}

// ---- pgbench ----

interface Endpoint {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
}

interface PgbenchResult {
  tps: number;
  latencyMs: number;
  transactions: number;
}

function pgbenchEnv(endpoint: Endpoint): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGCONNECT_TIMEOUT: "10" };
  for (const key of ["PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGSSLMODE"]) delete env[key];
  if (endpoint.password !== undefined) env.PGPASSWORD = endpoint.password;
  return env;
}

async function pgbench(what: string, endpoint: Endpoint, seconds: number): Promise<PgbenchResult> {
  const ran = await exec(
    "pgbench",
    [
      ...["-S", "-n", "-c", String(CLIENTS), "-j", String(THREADS), "-T", String(seconds)],
      ...["-h", endpoint.host, "-p", String(endpoint.port), "-U", endpoint.user, endpoint.database],
    ],
    { env: pgbenchEnv(endpoint), timeoutMs: (seconds + 60) * 1000 },
  );
  const tps = /^tps = ([\d.]+)/m.exec(ran.stdout);
  const latency = /^latency average = ([\d.]+) ms/m.exec(ran.stdout);
  const transactions = /^number of transactions actually processed: (\d+)/m.exec(ran.stdout);
  const failed = /^number of failed transactions: (\d+)/m.exec(ran.stdout);
  if (ran.code !== 0 || !tps || !latency || !transactions)
    throw new Error(`pgbench ${what} failed (exit ${ran.code}): ${(ran.stderr || ran.stdout).trim().slice(-800)}`);
  if (failed && failed[1] !== "0") throw new Error(`pgbench ${what}: ${failed[1]} failed transactions`);
  return { tps: Number(tps[1]), latencyMs: Number(latency[1]), transactions: Number(transactions[1]) };
}

/** Debian's pgbouncer on a free port, config and logs in a temp dir; null with the reason when it cannot run. */
async function startPgbouncerOrSkip(database: string): Promise<{ port: number } | { skipped: string }> {
  const binary = "/usr/sbin/pgbouncer";
  if (!existsSync(binary)) {
    progress("pgbouncer is missing: apt-get install -y pgbouncer");
    const installed = await exec("apt-get", ["install", "-y", "pgbouncer"], {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      timeoutMs: 300_000,
    });
    if (installed.code !== 0 || !existsSync(binary))
      return { skipped: `apt-get install -y pgbouncer failed: ${installed.stderr.trim().split("\n").at(-1) ?? ""}` };
  }
  try {
    const { port } = await startPgbouncer({
      binary,
      database,
      pgPort: 5432,
      poolMode: "transaction",
      poolSize: CLIENTS,
      defer,
    });
    return { port };
  } catch (error) {
    return { skipped: (error as Error).message };
  }
}

// ---- scp ----

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** A file of random bytes (incompressible), written in 1 MiB chunks; returns its SHA-256. */
async function randomFile(file: string, sizeMb: number): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(file, "w", 0o600);
  try {
    for (let i = 0; i < sizeMb; i++) {
      const chunk = randomBytes(1024 * 1024);
      hash.update(chunk);
      await handle.write(chunk);
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

interface ScpPath {
  label: string;
  port: number;
  user: string;
  identity: string;
  knownHosts: string;
}

interface Copy {
  seconds: number;
  mbPerSecond: number;
}

async function upload(
  via: ScpPath,
  legacy: boolean,
  source: { file: string; bytes: number; sha256: string },
  destination: string,
): Promise<Copy> {
  const args = [
    ...["-q", "-B", "-F", "/dev/null", ...(legacy ? ["-O"] : [])],
    ...["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${via.knownHosts}`],
    ...["-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"],
    ...["-i", via.identity, "-P", String(via.port), source.file, `${via.user}@127.0.0.1:${destination}`],
  ];
  const started = performance.now();
  const ran = await exec("scp", args, { timeoutMs: 600_000 });
  const seconds = (performance.now() - started) / 1000;
  if (ran.code !== 0) throw new Error(`scp ${via.label} failed (exit ${ran.code}): ${ran.stderr.trim().slice(-800)}`);
  const copied = await stat(destination);
  if (copied.size !== source.bytes)
    throw new Error(`scp ${via.label}: ${copied.size} bytes at the destination, expected ${source.bytes}`);
  if ((await sha256File(destination)) !== source.sha256)
    throw new Error(`scp ${via.label}: the copy's SHA-256 differs from the source's`);
  await unlink(destination);
  return { seconds, mbPerSecond: source.bytes / 1e6 / seconds };
}

interface SessionRow {
  kind: string;
  user: string;
  live: boolean;
  endReason: string | null;
  bytesUp: number;
  recording: { bytes: number | null; available: boolean } | null;
}

/** The user's sessions once none is live (the proxies end them just after the client leaves), summed per kind. */
async function recordedSessions(server: TestServer, user: string) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const listed = await call(server, server.adminAuth, "GET", "/v1/sessions?limit=1000");
    expectStatus("sessions", listed, 200);
    const mine = (listed.body.items as SessionRow[]).filter((s) => s.user === user);
    if (mine.every((s) => !s.live) || Date.now() > deadline) {
      return (["postgres", "ssh"] as const).map((kind) => {
        const of = mine.filter((s) => s.kind === kind);
        return {
          kind,
          sessions: of.length,
          endReasons: Object.entries(
            of.reduce<Record<string, number>>((counts, s) => {
              const reason = s.endReason ?? "live";
              counts[reason] = (counts[reason] ?? 0) + 1;
              return counts;
            }, {}),
          )
            .map(([reason, n]) => `${n} ${reason}`)
            .join(", "),
          recorded: of.filter((s) => s.recording?.available).length,
          recordingBytes: of.reduce((sum, s) => sum + (s.recording?.bytes ?? 0), 0),
          bytesUp: of.reduce((sum, s) => sum + s.bytesUp, 0),
        };
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

// ---- main ----

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const cpus = os.cpus();
  console.log(
    `Stint session proxy benchmark — node ${process.version}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ` +
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
  );
  const started = performance.now();
  const hex = randomBytes(4).toString("hex");
  const database = `stint_bench_sess_${hex}`;
  const reader = `stint_bench_sess_reader_${hex}`;
  const user = `sb${hex}`;
  const wheel = `sbg${hex}`;
  const adminUrl = new URL(PG_ADMIN_URL);
  const pgHost = adminUrl.hostname;
  const pgPort = Number(adminUrl.port || 5432);
  const pgAdminUser = decodeURIComponent(adminUrl.username || "postgres");
  const targetUrl = new URL(PG_ADMIN_URL);
  targetUrl.pathname = `/${database}`;

  // PostgreSQL: the pgbench database and the NOLOGIN role the dynamic logins join.
  const root = new pg.Client({ connectionString: PG_ADMIN_URL });
  await root.connect();
  defer("close the admin connection", () => root.end());
  defer("drop the database, the minted logins and the NOLOGIN role", async () => {
    await root.query(`drop database if exists ${database} with (force)`);
    const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
      `stint\\_${user}\\_%`,
    ]);
    for (const r of minted.rows) await root.query(`drop role if exists ${r.rolname}`);
    if (minted.rowCount) progress(`dropped ${minted.rowCount} minted login(s)`);
    await root.query(`drop role if exists ${reader}`);
  });
  await root.query(`create database ${database}`);
  await root.query(`create role ${reader} nologin`);
  progress(`pgbench -i -s ${SCALE} into ${database}`);
  const direct: Endpoint = { host: pgHost, port: pgPort, user: pgAdminUser, database };
  await mustExec(
    "pgbench -i",
    "pgbench",
    ["-i", "-q", "-s", String(SCALE), "-h", pgHost, "-p", String(pgPort), "-U", pgAdminUser, database],
    { env: pgbenchEnv(direct), timeoutMs: 300_000 },
  );
  {
    const db = new pg.Client({ connectionString: targetUrl.toString() });
    await db.connect();
    await db.query(`grant select on pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history to ${reader}`);
    await db.end();
  }

  // sshd, and the Unix user and group the ssh-host role's grant adds it to.
  // The test sshd has no SFTP subsystem by default; OpenSSH's scp speaks SFTP unless -O.
  const sshd = await startSshd({ extraConfig: ["Subsystem sftp internal-sftp"] });
  defer("stop sshd", () => sshd.stop());
  await createUser(user);
  defer("delete the Unix user", () => deleteUser(user));
  await createGroup(wheel);
  defer("delete the Unix group", () => deleteGroup(wheel));

  // Stint in-process with both proxies.
  const server = await testServer("pglite", {
    env: { STINT_PG_PROXY_LISTEN: "127.0.0.1:0", STINT_SSH_PROXY_LISTEN: "127.0.0.1:0", STINT_RECONCILE_INTERVAL: "0" },
  });
  defer("stop the Stint server", () => server.cleanup());
  const proxies = await startProxies({
    config: server.config,
    sessions: server.sessions,
    logger: createLogger({ level: "warn", destination: logDestination(2) }),
  });
  defer("close the proxies", () => proxies.close());
  if (!proxies.postgres || !proxies.ssh) throw new Error("the session proxies did not start");

  const created = await call(server, server.adminAuth, "POST", "/v1/users", {
    name: user,
    password: passwordFor(user),
  });
  expectStatus(`create ${user}`, created, 201);
  const apply = await call(server, server.adminAuth, "POST", "/v1/config/apply", {
    yaml: `
apiVersion: stint/v1
policies:
  - name: bench-recorded
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
targets:
  - name: bench-db
    kind: postgres
    address: ${targetUrl.toString()}?sslmode=disable
  - name: ${SSH_TARGET}
    kind: ssh-host
    address: ssh://root@127.0.0.1:${sshd.port}
    credential: { secret: targets/${SSH_TARGET}/admin }
    options:
      hostKey: "${sshd.hostKeyFingerprint}"
      session: { login: root, secret: ssh/${SSH_TARGET}/root }
roles:
  - name: ${PG_ROLE}
    target: bench-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: bench-recorded
    risk: medium
  - name: ${SSH_ROLE}
    target: ${SSH_TARGET}
    entitlement: { group: ${wheel} }
    policy: bench-recorded
    risk: medium
eligibility:
  - role: ${PG_ROLE}
    users: [${user}]
  - role: ${SSH_ROLE}
    users: [${user}]
`,
  });
  expectStatus("config apply", apply, 200);
  const credential = await call(server, server.adminAuth, "PUT", `/v1/targets/${SSH_TARGET}/credential`, {
    secret: sshd.adminPrivateKey,
  });
  expectStatus("target credential", credential, 200);
  const secret = await call(
    server,
    server.adminAuth,
    "PUT",
    `/v1/secrets/${encodeURIComponent(`ssh/${SSH_TARGET}/root`)}`,
    { kind: "ssh-key", value: sshd.adminPrivateKey },
  );
  expectStatus("session secret", secret, 200);

  const auth = await server.login(user);
  await activate(server, auth, PG_ROLE);
  await activate(server, auth, SSH_ROLE);
  defer("deactivate", async () => {
    for (const role of [PG_ROLE, SSH_ROLE]) await call(server, auth, "POST", `/v1/me/roles/${role}/deactivate`);
    for (let pass = 0; pass < MAX_PASSES && (await server.outbox.runOnce()).claimed > 0; pass++);
  });

  // ---- 1. pgbench ----
  const token = await call(server, auth, "POST", "/v1/db/tokens", { role: PG_ROLE });
  expectStatus("database token", token, 200);
  const viaProxy: Endpoint = {
    host: String(token.body.host),
    port: Number(token.body.port),
    user: String(token.body.user),
    database: String(token.body.database),
    password: String(token.body.password),
  };
  const bouncer = await startPgbouncerOrSkip(database);

  progress(`pgbench warm-up, ${WARMUP_SECONDS} s direct`);
  await pgbench("warm-up", direct, WARMUP_SECONDS);
  const rows: { label: string; result: PgbenchResult | null; note: string }[] = [];
  progress(`pgbench direct, ${options.seconds} s`);
  rows.push({ label: "direct", result: await pgbench("direct", direct, options.seconds), note: "" });
  progress(`pgbench through the Stint PostgreSQL proxy, ${options.seconds} s`);
  rows.push({ label: "Stint proxy", result: await pgbench("proxy", viaProxy, options.seconds), note: "" });
  if ("port" in bouncer) {
    progress(`pgbench through pgbouncer, ${options.seconds} s`);
    const viaBouncer: Endpoint = { ...direct, host: "127.0.0.1", port: bouncer.port };
    rows.push({ label: "pgbouncer", result: await pgbench("pgbouncer", viaBouncer, options.seconds), note: "" });
  } else {
    rows.push({ label: "pgbouncer", result: null, note: `skipped: ${bouncer.skipped}` });
  }

  // ---- 2. scp ----
  const sshDir = await mkdtemp(path.join(os.tmpdir(), "stint-bench-ssh-"));
  defer("remove the ssh temp dir", () => rm(sshDir, { recursive: true, force: true }));
  const destinationDir = await mkdtemp(path.join(os.tmpdir(), "stint-bench-scp-dest-"));
  defer("remove the scp destination dir", () => rm(destinationDir, { recursive: true, force: true }));

  const adminKey = path.join(sshDir, "admin_ed25519");
  await writeFile(adminKey, sshd.adminPrivateKey, { mode: 0o600 });
  const directKnownHosts = path.join(sshDir, "known_hosts_direct");
  const scanned = await mustExec("ssh-keyscan", "ssh-keyscan", ["-t", "ed25519", "-p", String(sshd.port), "127.0.0.1"]);
  await writeFile(directKnownHosts, scanned.stdout);
  const scannedFingerprint = (await mustExec("ssh-keygen -lf", "ssh-keygen", ["-lf", directKnownHosts])).stdout;
  if (!scannedFingerprint.includes(sshd.hostKeyFingerprint))
    throw new Error("ssh-keyscan returned another host key than the sshd's");

  const userKey = path.join(sshDir, "user_ed25519");
  await mustExec("ssh-keygen", "ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "stint-bench", "-f", userKey]);
  const certificate = await call(server, auth, "POST", "/v1/ssh/certificates", {
    publicKey: (await readFile(`${userKey}.pub`, "utf8")).trim(),
  });
  expectStatus("ssh certificate", certificate, 200);
  await writeFile(`${userKey}-cert.pub`, `${String(certificate.body.certificate).trim()}\n`);
  const ca = await call(server, auth, "GET", "/v1/ssh/ca");
  expectStatus("ssh ca", ca, 200);
  const proxyInfo = ca.body.proxy as { host: string; port: number; hostKey: string } | null;
  if (!proxyInfo) throw new Error("GET /v1/ssh/ca names no SSH proxy");
  const proxyKnownHosts = path.join(sshDir, "known_hosts_proxy");
  await writeFile(proxyKnownHosts, `[127.0.0.1]:${proxyInfo.port} ${proxyInfo.hostKey.trim()}\n`);

  const paths: ScpPath[] = [
    { label: "direct", port: sshd.port, user: "root", identity: adminKey, knownHosts: directKnownHosts },
    {
      label: "Stint proxy",
      port: proxyInfo.port,
      user: `${user}%${SSH_TARGET}`,
      identity: userKey,
      knownHosts: proxyKnownHosts,
    },
  ];
  const sourceFile = path.join(sshDir, "payload.bin");
  progress(`writing ${options.sizeMb} MiB of random bytes`);
  const source = {
    file: sourceFile,
    bytes: options.sizeMb * 1024 * 1024,
    sha256: await randomFile(sourceFile, options.sizeMb),
  };
  const destination = path.join(destinationDir, "payload.bin");
  const copies = new Map<string, Copy[]>();
  for (const legacy of [false, true]) {
    for (let i = 0; i < COPIES; i++) {
      for (const via of paths) {
        const key = `${legacy ? "scp -O" : "scp"}|${via.label}`;
        progress(`${key.replace("|", " ")} ${i + 1}/${COPIES}`);
        const copy = await upload(via, legacy, source, destination);
        copies.set(key, [...(copies.get(key) ?? []), copy]);
      }
    }
  }

  // The proxied runs were brokered sessions: each one ended and left a recording.
  const brokered = await recordedSessions(server, user);

  // ---- figures ----
  console.log("");
  console.log(
    `pgbench -S -n -c ${CLIENTS} -j ${THREADS} -T ${options.seconds} (select-only, scale ${SCALE}, ` +
      `after a ${WARMUP_SECONDS} s warm-up)`,
  );
  const base = rows[0]!.result!;
  console.log(
    `${"path".padEnd(14)}${"tps".padStart(12)}${"latency avg".padStart(14)}${"tps ×".padStart(9)}${"latency ×".padStart(11)}`,
  );
  for (const row of rows) {
    if (!row.result) {
      console.log(`${row.label.padEnd(14)}  ${row.note}`);
      continue;
    }
    console.log(
      `${row.label.padEnd(14)}${row.result.tps.toFixed(0).padStart(12)}${`${row.result.latencyMs.toFixed(3)} ms`.padStart(14)}` +
        `${(row.result.tps / base.tps).toFixed(2).padStart(9)}${(row.result.latencyMs / base.latencyMs).toFixed(2).padStart(11)}`,
    );
  }
  console.log("");
  console.log(
    `scp upload of ${options.sizeMb} MiB (${(source.bytes / 1e6).toFixed(1)} MB), median of ${COPIES}; ` +
      "size and SHA-256 checked at the destination",
  );
  console.log(
    `${"protocol".padEnd(24)}${"path".padEnd(14)}${"MB/s".padStart(9)}${"seconds".padStart(10)}${"all runs s".padStart(22)}${"MB/s ×".padStart(9)}`,
  );
  for (const legacy of [false, true]) {
    const protocol = legacy ? "scp -O (legacy)" : "scp (SFTP, the default)";
    const directRate = median(copies.get(`${legacy ? "scp -O" : "scp"}|direct`)!.map((c) => c.mbPerSecond));
    for (const via of paths) {
      const runs = copies.get(`${legacy ? "scp -O" : "scp"}|${via.label}`)!;
      const rate = median(runs.map((c) => c.mbPerSecond));
      const seconds = median(runs.map((c) => c.seconds));
      console.log(
        `${protocol.padEnd(24)}${via.label.padEnd(14)}${rate.toFixed(1).padStart(9)}${seconds.toFixed(2).padStart(10)}` +
          `${runs
            .map((c) => c.seconds.toFixed(2))
            .join(" ")
            .padStart(22)}${(rate / directRate).toFixed(2).padStart(9)}`,
      );
    }
  }
  console.log("");
  console.log(
    "×: the path's figure divided by the direct one's (tps × below 1 and latency × above 1 are the proxy's cost). " +
      "Stint proxy: a token or certificate checked, a session opened and recorded (query log / transfer events); " +
      "pgbouncer: transaction pooling, auth_type any, nothing recorded.",
  );
  for (const b of brokered) {
    console.log(
      `${b.kind} sessions through the proxy: ${b.sessions} (ended: ${b.endReasons}; ${b.recorded} with a ` +
        `recording, ${(b.recordingBytes / 1e6).toFixed(1)} MB of recordings, ${(b.bytesUp / 1e6).toFixed(1)} MB ` +
        "client → target)",
    );
  }
  console.log(
    `load average now ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}; total ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
