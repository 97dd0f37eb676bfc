/**
 * `node --import tsx bench/revoke-sessions.bench.ts [--trials=50] [--sessions-per-node=2]` — issue 14,
 * acceptance 8 (second half): "`revoke → every live session on every node closed` p99 < 1 s over 50
 * trials".
 *
 * Two Stint nodes in this process share one fresh PostgreSQL database (each with its own store
 * connections, scheduler, outbox runner and LISTEN connection, so a change on one reaches the other
 * through PostgreSQL as between two hosts), each with its PostgreSQL session proxy on a free port. The
 * target is the machine's PostgreSQL (a throwaway database and a NOLOGIN role; the role is
 * `dynamic: true`, so each activation mints a login there). Each trial: a user activates the role on
 * node A, waits until it is active, asks for a database token and opens --sessions-per-node real
 * node-postgres connections through each node's proxy (each runs `select 1`); then an administrator
 * revokes the activation on one node (alternating). The figure is the time from sending the revoke
 * to the moment the last of those client connections saw its connection end (the proxy's FATAL
 * 57P01 or the socket closing). Prints p50/p99/max and PASS when p99 < 1 s.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { loadConfig } from "../src/config/config.js";
import { openAppStore } from "../src/db/index.js";
import { createLogger } from "../src/lib/logger.js";
import { createPgProxy, type PgProxy } from "../src/proxies/pg/pg-proxy.js";
import { createServer, type Server } from "../src/server.js";
import { createPgDatabase, PG_ADMIN_URL } from "../src/testing/engines.js";
import { TEST_SCRYPT } from "../src/testing/server.js";

const GOAL_MS = 1000;
const ADMIN_PASSWORD = randomBytes(12).toString("base64url");
const PASSWORD = randomBytes(12).toString("base64url");
const hex = randomBytes(4).toString("hex");
const targetDatabase = `stint_revoke_${hex}`;
const targetRole = `stint_revoke_reader_${hex}`;
const USER = `rina${hex}`;
const ROLE = "revoke-reader";

function parseOptions(argv: string[]) {
  const options = { trials: 50, sessionsPerNode: 2 };
  for (const arg of argv) {
    const [key, value = ""] = arg.split("=", 2);
    if (key === "--trials" && /^[1-9]\d*$/.test(value)) options.trials = Number(value);
    else if (key === "--sessions-per-node" && /^[1-9]\d*$/.test(value)) options.sessionsPerNode = Number(value);
    else throw new Error(`unknown or malformed argument ${arg} (--trials=N --sessions-per-node=N)`);
  }
  return options;
}

const uptime = () =>
  os
    .loadavg()
    .map((n) => n.toFixed(2))
    .join(" ");

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

interface Node {
  server: Server;
  proxy: PgProxy;
  proxyPort: number;
}

async function call(node: Node, auth: string | undefined, method: "GET" | "POST", url: string, payload?: object) {
  const res = await node.server.app.inject({
    method,
    url,
    headers: auth ? { authorization: auth } : {},
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.json<Record<string, unknown>>() };
}

async function login(node: Node, username: string, password: string): Promise<string> {
  const res = await call(node, undefined, "POST", "/v1/auth/login", { username, password });
  if (res.status !== 200) throw new Error(`sign-in of ${username}: ${res.status} ${JSON.stringify(res.body)}`);
  return `Bearer ${String(res.body.accessToken)}`;
}

const cleanups: (() => Promise<unknown>)[] = [];

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const root = new pg.Client({ connectionString: PG_ADMIN_URL });
  await root.connect();
  cleanups.push(() => root.end());
  await root.query(`create database ${targetDatabase}`);
  cleanups.push(() => root.query(`drop database if exists ${targetDatabase} with (force)`));
  await root.query(`create role ${targetRole} nologin`);
  cleanups.push(async () => {
    const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
      `stint_${USER}_%`,
    ]);
    for (const r of minted.rows) await root.query(`drop role if exists "${r.rolname}"`).catch(() => undefined);
    await root.query(`drop role if exists ${targetRole}`);
  });
  const { url, drop } = await createPgDatabase();
  cleanups.push(drop);
  const work = await mkdtemp(path.join(os.tmpdir(), "stint-revoke-bench-"));
  cleanups.push(() => rm(work, { recursive: true, force: true }));

  const masterKey = randomBytes(32);
  const vaultKey = randomBytes(32);
  const nodes: Node[] = [];
  for (const name of ["a", "b"]) {
    const parsed = loadConfig({
      STINT_DATABASE_URL: url,
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_BLOB_DIR: path.join(work, name),
      STINT_RECONCILE_INTERVAL: "0",
    });
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const store = await openAppStore({ databaseUrl: url });
    const logger = createLogger({ level: process.env.STINT_BENCH_LOG === "1" ? "error" : "silent" });
    const server = await createServer({
      config: parsed.config,
      logger,
      masterKey,
      vaultKey,
      store,
      scrypt: TEST_SCRYPT,
    });
    if (name === "a") await server.bootstrap();
    await server.app.ready();
    // What `stint server` starts besides the API (src/main.ts).
    server.outbox.start();
    server.scheduler.start();
    const proxy = createPgProxy({ gate: server.sessions.gate, logger, port: 0 });
    const proxyPort = (await proxy.listen()).port;
    server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: proxyPort });
    nodes.push({ server, proxy, proxyPort });
    cleanups.push(async () => {
      await proxy.close();
      await server.close();
    });
  }
  const [a, b] = nodes as [Node, Node];
  const admin = [await login(a, "admin", ADMIN_PASSWORD), await login(b, "admin", ADMIN_PASSWORD)];
  const created = await call(a, admin[0], "POST", "/v1/users", { name: USER, password: PASSWORD });
  if (created.status !== 201) throw new Error(`user: ${created.status} ${JSON.stringify(created.body)}`);
  const applied = await call(a, admin[0], "POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: revoke-self
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
targets:
  - name: revoke-pg
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${targetDatabase}?sslmode=disable
roles:
  - name: ${ROLE}
    target: revoke-pg
    entitlement: { role: ${targetRole}, dynamic: true }
    policy: revoke-self
    risk: low
eligibility:
  - role: ${ROLE}
    users: [${USER}]
`,
  });
  if (applied.status !== 200) throw new Error(`catalog: ${applied.status} ${JSON.stringify(applied.body)}`);
  const user = await login(a, USER, PASSWORD);

  console.log(
    `revoke → sessions closed: ${options.trials} trials, ${options.sessionsPerNode} sessions on each of 2 nodes; load ${uptime()}`,
  );
  const closings: number[] = [];
  const problems: string[] = [];
  for (let trial = 0; trial < options.trials; trial++) {
    const submitted = await call(a, user, "POST", "/v1/activation-requests", {
      role: ROLE,
      duration: "10m",
      reason: `revoke benchmark trial ${trial}`,
    });
    if (submitted.status !== 201) throw new Error(`submit: ${submitted.status} ${JSON.stringify(submitted.body)}`);
    const id = String(submitted.body.id);
    for (let waited = 0; ; waited += 20) {
      const state = (await call(a, user, "GET", `/v1/activation-requests/${id}`)).body.state;
      if (state === "active") break;
      if (waited > 30_000 || (state !== "provisioning" && state !== "approved"))
        throw new Error(`trial ${trial}: the activation is ${String(state)}`);
      await sleep(20);
    }
    const clients: { ended: Promise<number> }[] = [];
    for (const node of nodes)
      for (let s = 0; s < options.sessionsPerNode; s++) {
        const token = await call(node, user, "POST", "/v1/db/tokens", { role: ROLE });
        if (token.status !== 200) throw new Error(`token: ${token.status} ${JSON.stringify(token.body)}`);
        const client = new pg.Client({
          host: "127.0.0.1",
          port: node.proxyPort,
          user: String(token.body.user),
          password: String(token.body.password),
          database: String(token.body.database),
        });
        const ended = new Promise<number>((resolve) => {
          const done = () => resolve(performance.now());
          client.on("error", done);
          client.on("end", done);
        });
        await client.connect();
        await client.query("select 1");
        clients.push({ ended });
      }
    const by = trial % 2;
    const sent = performance.now();
    const revoked = await call(nodes[by]!, admin[by], "POST", `/v1/activation-requests/${id}/revoke`, {
      reason: "revoke benchmark: ending access",
    });
    if (revoked.status !== 200) problems.push(`revoke ${revoked.status} ${JSON.stringify(revoked.body)}`);
    const deadline = sleep(10_000).then(() => Number.POSITIVE_INFINITY);
    const ends = await Promise.all(clients.map((c) => Promise.race([c.ended, deadline])));
    const last = Math.max(...ends) - sent;
    closings.push(last);
    if (!Number.isFinite(last)) problems.push(`trial ${trial}: a session was still open 10 s after the revoke`);
  }
  const finite = closings.filter(Number.isFinite);
  const p99 = percentile(closings, 99);
  console.log(
    `revoke → last session closed (ms): p50 ${percentile(finite, 50).toFixed(0)}, p99 ${p99.toFixed(0)}, ` +
      `max ${Math.max(...closings).toFixed(0)} over ${closings.length} trials × ${2 * options.sessionsPerNode} sessions`,
  );
  for (const problem of problems.slice(0, 5)) console.log(`  problem: ${problem}`);
  const pass = p99 < GOAL_MS && problems.length === 0;
  console.log(
    `${pass ? "PASS" : "FAIL"} acceptance 8b: revoke → every live session on every node closed, p99 ${p99.toFixed(0)} ms ` +
      `(< ${GOAL_MS} ms); load ${uptime()}`,
  );
  return pass ? 0 : 1;
}

main()
  .then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  )
  .finally(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    // Pools and timers of two servers: do not wait for their idle timeouts.
    setTimeout(() => process.exit(), 2_000).unref();
  });
