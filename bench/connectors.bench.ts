/**
 * Connector benchmark, against the machine's real PostgreSQL as the target.
 *
 * 1. dynamic login (issue 14 acceptance 5): a whole Stint server with its outbox runner started (woken by
 *    NOTIFY on commit, as in production), on PostgreSQL and on PGlite. A requester submits an activation of a
 *    role with `dynamic: true`, asks for its credentials at once with `?wait=30` (answered the moment the
 *    activation is active) and signs in at the target with them: submit → the login works, excluding nothing.
 *    `--poll`: the requester instead looks whether its request is active (a direct query after each of the
 *    server's transactions, and every 20 ms), then reads the credentials without waiting (the flow before
 *    `?wait=`). Sequential requesters, then concurrent ones; PASS/FAIL against p99 < 25 ms.
 * 2. role membership: Stint on PGlite, the outbox run at once after each submit (no runner): submit → the
 *    login holds the role; deactivate with an open connection of the login → membership gone and the backend
 *    terminated. Then reconcile cycles of a target with N roles.
 *
 *   node --import tsx bench/connectors.bench.ts [--logins=100] [--concurrency=4] [--engines=postgres,pglite]
 *     [--activations=50] [--roles=20] [--scenarios=dynamic,connector,membership] [--trace=N] [--precreated=N]
 *     [--poll]
 *
 * `--precreated=N` gives the target `options.preCreatedLogins: N`: logins created ahead of demand, so an
 * activation only hands one out (ALTER ROLE … LOGIN VALID UNTIL, the GRANT); the warm-up's first login fills it.
 *
 * CPU per issuance (1 at a time, the deactivation and the drop included): this process's, split into its main
 * thread and its other threads (V8's garbage collector and compiler, libuv's pool: the minted password's PBKDF2),
 * and PostgreSQL's, read from /proc/<pid>/schedstat of the backends of this run's databases (the store's, the
 * requesters' watcher, the target's admin pool) and of each minted login's own backend just before it signs off.
 * The machine's PostgreSQL trusts local sign-ins: the requester's sign-in runs no SCRAM exchange here (the
 * password is checked against pg_authid by grants.statements.test.ts), so a SCRAM target costs the client one
 * PBKDF2 of the secret's 4,096 rounds more (about 1 ms of CPU here).
 *
 * `--trace=N` prints, for N issuances one at a time (after the sequential samples), every statement sent to the
 * store and to the target with its start and end (ms after the submit) and the requester's milestones: where the
 * milliseconds go. A statement is shown by its first words only, cut before any PASSWORD.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { performance } from "node:perf_hooks";
import pg from "pg";
import type { Engine } from "../src/lib/db.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { ACTIVE_POLL_MS, benchDynamic, load, type DynamicOptions } from "./connectors.dynamic.js";
import { benchConnector, benchMembership } from "./connectors.target.js";

interface Options extends DynamicOptions {
  engines: Engine[];
  activations: number;
  roles: number;
  scenarios: string[];
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    logins: 100,
    concurrency: 4,
    engines: ["postgres", "pglite"],
    activations: 50,
    roles: 20,
    scenarios: ["dynamic", "connector", "membership"],
    trace: 0,
    precreated: 0,
    poll: false,
  };
  const count = (value: string | undefined) => (value && /^[1-9]\d*$/.test(value) ? Number(value) : undefined);
  for (const arg of argv) {
    const [key, value] = arg.split("=", 2);
    if (key === "--logins" && count(value)) options.logins = count(value)!;
    else if (key === "--concurrency" && count(value)) options.concurrency = count(value)!;
    else if (key === "--activations" && count(value)) options.activations = count(value)!;
    else if (key === "--roles" && count(value)) options.roles = count(value)!;
    else if (key === "--trace" && count(value)) options.trace = count(value)!;
    else if (key === "--precreated" && value !== undefined && /^\d+$/.test(value)) options.precreated = Number(value);
    else if (key === "--poll" && value === undefined) options.poll = true;
    else if (key === "--engines" && value && value.split(",").every((e) => e === "pglite" || e === "postgres"))
      options.engines = value.split(",") as Engine[];
    else if (
      key === "--scenarios" &&
      value &&
      value.split(",").every((s) => ["dynamic", "connector", "membership"].includes(s))
    )
      options.scenarios = value.split(",");
    else
      throw new Error(
        `unknown argument ${arg} (use --logins=N, --concurrency=N, --engines=postgres,pglite, --activations=N, ` +
          "--roles=N, --scenarios=dynamic,connector,membership, --trace=N, --precreated=N, --poll)",
      );
  }
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const cpus = os.cpus();
  console.log(
    `Stint connectors benchmark — node ${process.version}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ` +
      `load average ${load()}`,
  );
  const started = performance.now();
  if (options.scenarios.includes("dynamic")) {
    const hex = randomBytes(4).toString("hex");
    const database = `stint_bench_dyn_${hex}`;
    const reader = `stint_bench_dyn_reader_${hex}`;
    const root = new pg.Client({ connectionString: PG_ADMIN_URL });
    await root.connect();
    const url = new URL(PG_ADMIN_URL);
    url.pathname = `/${database}`;
    try {
      await root.query(`create database ${database}`);
      await root.query(`create role ${reader} nologin`);
      const db = new pg.Client({ connectionString: url.toString() });
      await db.connect();
      await db.query("create table ledger (entry text)");
      await db.query("insert into ledger values ('opening balance')");
      await db.query("revoke all on ledger from public");
      await db.query(`grant select on ledger to ${reader}`);
      await db.end();
      // The requesters look for their login's drop at once: a pool, not one client.
      const checks = new pg.Pool({ connectionString: PG_ADMIN_URL, max: options.concurrency });
      try {
        for (const engine of options.engines)
          await benchDynamic(engine, options, { url: url.toString(), reader, userPrefix: `dyn${hex}` }, checks);
      } finally {
        await checks.end();
      }
    } finally {
      await root.query(`drop database if exists ${database} with (force)`);
      const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
        `stint\\_dyn${hex}%`,
      ]);
      for (const r of minted.rows) await root.query(`drop role if exists ${pg.escapeIdentifier(r.rolname)}`);
      if (minted.rowCount) console.error(`dropped ${minted.rowCount} minted login(s) left behind`);
      await root.query(`drop role if exists ${reader}`);
      await root.end();
    }
    console.log(
      "dynamic: the server's outbox runner started (NOTIFY wakes it); submit (app.inject) → " +
        (options.poll
          ? "the request active (looked up with a direct query after each of the server's transactions, and every " +
            `${ACTIVE_POLL_MS} ms) → GET /v1/me/roles/:role/credentials`
          : "GET /v1/me/roles/:role/credentials?wait=30 (answered once the request is active)") +
        " → a new connection as the minted login reads the granted table. Each requester then deactivates and " +
        "waits for the drop (untimed, but load for the others).",
    );
  }
  if (options.scenarios.includes("connector")) {
    console.error(`connector alone: ${options.logins} createLogin/dropLogin each way (load ${load()})`);
    await benchConnector(options);
  }
  if (options.scenarios.includes("membership")) await benchMembership(options);
  console.log(`load average ${load()} at the end; total ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
