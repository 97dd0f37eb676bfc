/**
 * The web SQL console's cost per query (issue 17): the same small SELECT run N times by node-postgres through
 * Stint's PostgreSQL proxy (what psql does), and N times through the console's HTTP route (app.inject →
 * console → node-postgres → the same proxy). Stint, the proxy and both clients run in this process, so
 * process.cpuUsage() per query is the whole Stint-side cost of each path; wall time per query is printed too
 * but depends on the machine's load. PASS when the console adds at most TARGET_EXTRA_CPU_US of CPU per query.
 *
 *   node --import tsx bench/sql-console.bench.ts [--queries=500] [--rounds=3]
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { destination as logDestination } from "pino";
import { createLogger } from "../src/lib/logger.js";
import { startProxies } from "../src/proxies/index.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../src/testing/server.js";

const TARGET_EXTRA_CPU_US = 1000;
const SQL = (i: number) => `SELECT id, owner FROM accounts WHERE id = ${(i % 100) + 1}`;

interface Figures {
  cpuUsPerQuery: number;
  wallMsPerQuery: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function call(server: TestServer, auth: string, method: string, url: string, payload?: unknown) {
  const res = await server.app.inject({
    method: method as "POST",
    url,
    headers: { authorization: auth },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
  return res.body ? (res.json() as Record<string, unknown>) : {};
}

async function measure(queries: number, run: (i: number) => Promise<void>): Promise<Figures> {
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < queries; i++) await run(i);
  const used = process.cpuUsage(cpu);
  return {
    cpuUsPerQuery: (used.user + used.system) / queries,
    wallMsPerQuery: (performance.now() - t0) / queries,
  };
}

export async function runSqlConsoleBench(options: { queries: number; rounds: number }) {
  const hex = randomBytes(3).toString("hex");
  const database = `bench_sqlc_${hex}`;
  const reader = `bench_sqlc_reader_${hex}`;
  const user = `bench${hex}`;
  const root = new pg.Client({ connectionString: `${PG_ADMIN_URL}` });
  await root.connect();
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    await root.query(`CREATE DATABASE ${database}`);
    cleanups.push(() => root.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
    await root.query(`CREATE ROLE ${reader} NOLOGIN`);
    cleanups.push(async () => {
      const minted = await root.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", [
        `stint_${user}_%`,
      ]);
      for (const r of minted.rows) await root.query(`DROP ROLE IF EXISTS ${r.rolname}`).catch(() => undefined);
      await root.query(`DROP ROLE IF EXISTS ${reader}`);
    });
    const targetUrl = new URL(PG_ADMIN_URL);
    targetUrl.pathname = `/${database}`;
    const db = new pg.Client({ connectionString: targetUrl.toString() });
    await db.connect();
    await db.query("CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL)");
    await db.query("INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 100) g");
    await db.query(`GRANT SELECT ON accounts TO ${reader}`);
    await db.end();

    const server = await testServer("pglite", {
      env: { STINT_PG_PROXY_LISTEN: "127.0.0.1:0", STINT_SSH_PROXY_LISTEN: "off", STINT_RECONCILE_INTERVAL: "0" },
    });
    cleanups.unshift(() => server.cleanup());
    const proxies = await startProxies({
      config: server.config,
      sessions: server.sessions,
      logger: createLogger({ level: "warn", destination: logDestination(2) }),
    });
    cleanups.unshift(() => proxies.close());
    await call(server, server.adminAuth, "POST", "/v1/users", { name: user, password: passwordFor(user) });
    await call(server, server.adminAuth, "POST", "/v1/config/apply", {
      yaml: `
apiVersion: stint/v1
policies:
  - name: bench-sqlc
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required, queries: { allow: [select] } }
targets:
  - name: bench-db
    kind: postgres
    address: ${targetUrl.toString()}?sslmode=disable
roles:
  - { name: bench-sqlc, target: bench-db, entitlement: { role: ${reader}, dynamic: true }, policy: bench-sqlc, risk: medium }
eligibility:
  - { role: bench-sqlc, users: [${user}] }
`,
    });
    const auth = await server.login(user);
    await call(server, auth, "POST", "/v1/activation-requests", {
      role: "bench-sqlc",
      duration: "1h",
      reason: "sql console benchmark",
    });
    for (let pass = 0; pass < 50 && (await server.outbox.runOnce()).claimed > 0; pass++);

    const token = await call(server, auth, "POST", "/v1/db/tokens", { role: "bench-sqlc" });
    const direct = new pg.Client({
      host: String(token.host),
      port: Number(token.port),
      user: String(token.user),
      password: String(token.password),
      database: String(token.database),
    });
    await direct.connect();
    const opened = await call(server, auth, "POST", "/v1/sql-console/sessions", { role: "bench-sqlc" });
    const route = `/v1/sql-console/sessions/${String(opened.id)}/queries`;
    const viaProxy = async (i: number) => void (await direct.query(SQL(i)));
    const viaConsole = async (i: number) => void (await call(server, auth, "POST", route, { sql: SQL(i) }));
    // What any authenticated API call costs here (app.inject, bearer check, zod, JSON): the console's HTTP share.
    const bareRoute = async () => void (await call(server, auth, "GET", "/v1/sql-console/sessions"));
    await measure(50, viaProxy);
    await measure(50, viaConsole);
    await measure(50, bareRoute);
    const rounds: { proxy: Figures; console: Figures; http: Figures }[] = [];
    for (let round = 0; round < options.rounds; round++)
      rounds.push({
        proxy: await measure(options.queries, viaProxy),
        console: await measure(options.queries, viaConsole),
        http: await measure(options.queries, bareRoute),
      });
    await direct.end();
    await call(server, auth, "DELETE", `/v1/sql-console/sessions/${String(opened.id)}`);
    const proxyCpu = median(rounds.map((r) => r.proxy.cpuUsPerQuery));
    const consoleCpu = median(rounds.map((r) => r.console.cpuUsPerQuery));
    return {
      rounds,
      proxyCpu,
      consoleCpu,
      extraCpu: consoleCpu - proxyCpu,
      httpCpu: median(rounds.map((r) => r.http.cpuUsPerQuery)),
      proxyWall: median(rounds.map((r) => r.proxy.wallMsPerQuery)),
      consoleWall: median(rounds.map((r) => r.console.wallMsPerQuery)),
      pass: consoleCpu - proxyCpu <= TARGET_EXTRA_CPU_US,
    };
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
    await root.end();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const options = { queries: 500, rounds: 3 };
  for (const arg of process.argv.slice(2)) {
    const [key, value = ""] = arg.split("=", 2);
    if (key === "--queries" && /^[1-9]\d*$/.test(value)) options.queries = Number(value);
    else if (key === "--rounds" && /^[1-9]\d*$/.test(value)) options.rounds = Number(value);
    else throw new Error(`unknown argument ${arg} (use --queries=N, --rounds=N)`);
  }
  const cpus = os.cpus();
  console.log(
    `Stint SQL console benchmark — node ${process.version}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "CPU"}, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  runSqlConsoleBench(options)
    .then((r) => {
      for (const [i, round] of r.rounds.entries())
        console.log(
          `round ${i + 1}: proxy ${round.proxy.cpuUsPerQuery.toFixed(0)} µs CPU, ${round.proxy.wallMsPerQuery.toFixed(2)} ms wall; console ${round.console.cpuUsPerQuery.toFixed(0)} µs CPU, ${round.console.wallMsPerQuery.toFixed(2)} ms wall per query; a bare authenticated GET ${round.http.cpuUsPerQuery.toFixed(0)} µs CPU`,
        );
      console.log(
        `median CPU per query: node-postgres through the proxy ${r.proxyCpu.toFixed(0)} µs, through the SQL console ${r.consoleCpu.toFixed(0)} µs (+${r.extraCpu.toFixed(0)} µs; target ≤ +${TARGET_EXTRA_CPU_US} µs) — ${r.pass ? "PASS" : "FAIL"}`,
      );
      console.log(
        `of that, a bare authenticated API call (inject, bearer, zod, JSON) costs ${r.httpCpu.toFixed(0)} µs; the console's own share ~${(r.extraCpu - r.httpCpu).toFixed(0)} µs`,
      );
      console.log(
        `median wall per query: proxy ${r.proxyWall.toFixed(2)} ms, console ${r.consoleWall.toFixed(2)} ms (load-dependent)`,
      );
      if (!r.pass) process.exitCode = 1;
    })
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
