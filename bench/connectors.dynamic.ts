/**
 * The connectors bench's dynamic-login scenario (issue 14 acceptance 5): a whole Stint server with its outbox
 * runner started; submit → the minted login works at the target, excluding nothing (see connectors.bench.ts).
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { CompiledQuery } from "kysely";
import pg from "pg";
import type { Engine } from "../src/lib/db.js";
import { DUE_CHANNEL as OUTBOX_CHANNEL } from "../src/modules/outbox/outbox.store.js";
import { passwordFor, testServer, type TestServer } from "../src/testing/server.js";
import {
  ANSWERED,
  SEEN_ACTIVE,
  backendCpu,
  cpuBetween,
  cpuNs,
  threadCpu,
  mark,
  observed,
  printSteps,
  quantile,
  summary,
  printTimeline,
  stepsOf,
  WATCHER_APP,
  ENDED,
  type Steps,
} from "./connectors.timeline.js";
import { dynamicRoleConfig } from "./connectors.target.js";

/** Issue 14 acceptance 5: submit → the dynamic login works at the server, p99. */
const DYNAMIC_P99_TARGET_MS = 25;
const WARMUP_LOGINS = 5;
/** A requester looks whether its request is active after each transaction of the server, and at least this often. */
export const ACTIVE_POLL_MS = 20;
const ROLE = "bench-dyn-reader";

/** What the scenario takes from the bench's options. */
export interface DynamicOptions {
  logins: number;
  concurrency: number;
  trace: number;
  /** The target's `options.preCreatedLogins` (0: every activation creates its login). */
  precreated: number;
  /** Look for the request's activation, then read the credentials (else one read that waits: `?wait=`). */
  poll: boolean;
}

export const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

/** The p50 of each phase, for "where the time goes". */
function phases(label: string, samples: Phases[]) {
  const p50 = <T>(of: T[], pick: (p: T) => number) =>
    of.length === 0
      ? "n/a"
      : quantile(
          of.map(pick).sort((a, b) => a - b),
          0.5,
        ).toFixed(1);
  console.log(
    `  ${label}: p50 submit ${p50(samples, (p) => p.submit)} · provisioning ${p50(samples, (p) => p.provisioning)}` +
      ` · credentials read ${p50(samples, (p) => p.credentials)} · sign-in ${p50(samples, (p) => p.signIn)} ms`,
  );
  const counted = samples.flatMap((p) => (p.counts ? [p.counts] : []));
  if (counted.length > 0) {
    const median = (pick: (c: NonNullable<Phases["counts"]>) => number) =>
      quantile(
        counted.map(pick).sort((a, b) => a - b),
        0.5,
      );
    console.log(
      `  ${label}, statements (median; store + target): submit ${median((c) => c.submit.store)}` +
        ` + ${median((c) => c.submit.target)} · provisioning ${median((c) => c.provisioning.store)}` +
        ` + ${median((c) => c.provisioning.target)} · credentials read ${median((c) => c.credentials.store)}` +
        ` + ${median((c) => c.credentials.target)}`,
    );
  }
  const inside = samples.flatMap((p) => (p.inside ? [p.inside] : []));
  console.log(
    `  ${label}, inside the server (its clock, ms resolution): p50 enqueued → runner has it (NOTIFY heard, or the commit) ${p50(inside, (i) => i.wakeUp)}` +
      ` · then → password sealed ${p50(inside, (i) => i.prelude)}` +
      ` · sealed → active (createLogin + activation) ${p50(inside, (i) => i.connectorAndActivation)} ms`,
  );
}

/** CPU of the minted logins' backends (the requesters' sign-ins), ns. */
let loginCpuNs = 0;
/** The store's and the target's backends whose CPU each sequential issuance reads at its milestones (split). */
let splitPids: number[] = [];
/** CPU (ms) of the sequential issuances, submit → the login works apart from the deactivation and drop after it. */
const split = { issuance: { process: 0, postgres: 0 }, teardown: { process: 0, postgres: 0 } };
function cpuNow(): { process: number; postgres: number } {
  const used = process.cpuUsage();
  return {
    process: (used.user + used.system) / 1000,
    postgres: splitPids.reduce((sum, pid) => sum + cpuNs(pid), 0) / 1e6,
  };
}
/** Where the provisioning time went, from the server's own timestamps (ms, Date resolution), after submit. */
interface Inside {
  /** The job enqueued (in the submit's transaction) → its NOTIFY heard by the runner: the rest of the transaction, commit, delivery. */
  wakeUp: number;
  /** NOTIFY heard → the minted password sealed (its row's created_at): the claim, the job's read, the vault. */
  prelude: number;
  /** Password sealed → the request active: createLogin beside the password's insert, then the activation's transaction. */
  connectorAndActivation: number;
}

interface Phases {
  /** POST /v1/activation-requests until its 201. */
  submit: number;
  /** The 201 until the request is active (outbox wake-up, the provisioning job, the activation). */
  provisioning: number;
  /** GET /v1/me/roles/:role/credentials. */
  credentials: number;
  /** A new connection at the target as the minted login, and a SELECT of the granted table. */
  signIn: number;
  total: number;
  inside: Inside | null;
  /** Statements to the store and to the target in each phase (engine postgres, 1 requester at a time only). */
  counts: { submit: Count; provisioning: Count; credentials: Count } | null;
  /** The steps read off the issuance's timeline (1 at a time, engine postgres), or null. */
  steps: Steps | null;
}

type Count = { store: number; target: number };

export interface DynamicTarget {
  url: string;
  reader: string;
  /** Names the requesters (and so their minted logins, `stint_<user>_…`), unique to this run. */
  userPrefix: string;
}

async function inject(server: TestServer, auth: string, method: "GET" | "POST", url: string, payload?: object) {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: auth },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: (res.body ? res.json() : {}) as Record<string, unknown> };
}

function expectStatus(what: string, res: { status: number; body: unknown }, status: number) {
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
}

/**
 * Submit → the minted login reads the granted table, on a server whose outbox runner is started (NOTIFY wakes
 * it). Each requester is its own user; it waits for its drop before submitting again, so every sample is one
 * full issuance while the other requesters' issuances and drops run beside it.
 */
export async function benchDynamic(engine: Engine, options: DynamicOptions, target: DynamicTarget, root: pg.Pool) {
  const requesters = Math.max(options.concurrency, 1);
  // When the server's runner hears each NOTIFY on the outbox channel (observed, not changed).
  const notified: number[] = [];
  /** When each of the server's transactions ended (a job run after commit starts then, with no NOTIFY). */
  const ended: number[] = [];
  // Requesters waiting for the next transaction of the server to end: a request turns active at a commit, so
  // they look at its state then (and at least every ACTIVE_POLL_MS), not in a busy loop.
  const committed: (() => void)[] = [];
  const nextCommit = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      committed.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  observed.targetDatabase = new URL(target.url).pathname.slice(1);
  const server = await testServer(engine, {
    env: { STINT_RECONCILE_INTERVAL: "0" },
    wrapStore: (store) =>
      Object.assign(Object.create(store) as typeof store, {
        transaction: <T>(fn: Parameters<typeof store.transaction<T>>[0]) =>
          store.transaction(fn).finally(() => {
            ended.push(Date.now());
            for (const wake of committed.splice(0)) wake();
          }),
        listen: (channel: string, onMessage: (payload: string) => void, opts?: { onReconnect?: () => void }) =>
          store.listen(
            channel,
            (payload) => {
              if (channel === OUTBOX_CHANNEL) {
                notified.push(Date.now());
                mark("server: NOTIFY heard on the outbox channel");
              }
              onMessage(payload);
            },
            opts,
          ),
      }),
  });
  // The requesters look at their request's state with a direct query: on PostgreSQL on a connection of their
  // own (not the server's pool), on PGlite through the store (it has one connection).
  const watcher =
    engine === "postgres"
      ? new pg.Pool({ connectionString: server.databaseUrl, max: requesters, application_name: WATCHER_APP })
      : null;
  observed.storeDatabase = server.databaseUrl ? new URL(server.databaseUrl).pathname.slice(1) : "";
  try {
    const users = Array.from({ length: requesters }, (_, i) => `${target.userPrefix}${engine[1]}${i}`);
    for (const user of users)
      expectStatus(
        `create ${user}`,
        await inject(server, server.adminAuth, "POST", "/v1/users", { name: user, password: passwordFor(user) }),
        201,
      );
    expectStatus(
      "config apply",
      await inject(server, server.adminAuth, "POST", "/v1/config/apply", {
        yaml: dynamicRoleConfig({
          role: ROLE,
          url: target.url,
          reader: target.reader,
          users,
          preCreatedLogins: options.precreated,
        }),
      }),
      200,
    );
    const auths = await Promise.all(users.map((user) => server.login(user)));
    server.outbox.start();

    const stateOf = async (id: string): Promise<string | undefined> => {
      if (watcher)
        return (await watcher.query<{ state: string }>("select state from activation_requests where id = $1", [id]))
          .rows[0]?.state;
      const row = await server.store.db
        .selectFrom("activation_requests")
        .select("state")
        .where("id", "=", id)
        .executeTakeFirst();
      return row?.state;
    };
    const insideOf = async (id: string): Promise<Inside | null> => {
      const query = `select extract(epoch from o.created_at) * 1000 as enqueued,
                            extract(epoch from c.created_at) * 1000 as sealed,
                            extract(epoch from r.activated_at) * 1000 as activated
                       from activation_requests r
                       join grants g on g.request_id = r.id
                       join outbox o on o.idempotency_key = 'provision:' || g.id
                       join grant_credentials c on c.grant_id = g.id
                      where r.id = $1 and o.attempts = 1`;
      const rows = watcher
        ? (await watcher.query(query, [id])).rows
        : (await server.store.db.executeQuery<Record<string, unknown>>(CompiledQuery.raw(query, [id]))).rows;
      const row = rows[0] as Record<string, unknown> | undefined;
      if (!row) return null;
      const [enqueued, sealed, activated] = ["enqueued", "sealed", "activated"].map((k) => Number(row[k])) as [
        number,
        number,
        number,
      ];
      // The first NOTIFY on the outbox channel heard at or after the enqueue (ms resolution on both sides); a job
      // handed to the runner at commit (runAfterCommit) sends none and starts when the submit's transaction ends.
      const heard = notified.find((at) => at >= enqueued) ?? ended.find((at) => at >= enqueued);
      if (heard === undefined || heard > sealed) return null;
      return { wakeUp: heard - enqueued, prelude: sealed - heard, connectorAndActivation: activated - sealed };
    };
    const activatedAt = async (id: string): Promise<number> => {
      const query = "select extract(epoch from activated_at) * 1000 as at from activation_requests where id = $1";
      const rows = watcher
        ? (await watcher.query(query, [id])).rows
        : (await server.store.db.executeQuery<Record<string, unknown>>(CompiledQuery.raw(query, [id]))).rows;
      return Number((rows[0] as Record<string, unknown> | undefined)?.at);
    };
    const waitFor = async (what: string, done: () => Promise<boolean>, wait: () => Promise<void>) => {
      const deadline = performance.now() + 30_000;
      while (!(await done())) {
        if (performance.now() > deadline) throw new Error(`${what}: not done after 30 s`);
        await wait();
      }
    };

    /** `alone`: no other requester runs meanwhile, so the statements counted are this issuance's. */
    const issue = async (auth: string, n: number, alone: boolean): Promise<Phases> => {
      const snapshot = () => ({ store: observed.statements.store, target: observed.statements.target });
      const counts0 = snapshot();
      const cpu0 = cpuNow();
      const started = performance.now();
      observed.start = started;
      const submitted = await inject(server, auth, "POST", "/v1/activation-requests", {
        role: ROLE,
        duration: "10m",
        reason: `benchmark of dynamic logins, run ${n}`,
      });
      expectStatus("submit", submitted, 201);
      const id = String(submitted.body.id);
      const afterSubmit = mark("requester: submit answered 201");
      const counts1 = snapshot();
      let looks = 0;
      let active = afterSubmit;
      if (options.poll) {
        await waitFor(
          "provisioning",
          async () => {
            looks += 1;
            const state = await stateOf(id);
            if (state === "failed") throw new Error(`request ${id} failed`);
            return state === "active";
          },
          () => nextCommit(ACTIVE_POLL_MS),
        );
        active = mark(SEEN_ACTIVE);
      }
      const counts2 = snapshot();
      // Without --poll the read waits for the activation (the answer comes once the login works).
      const wait = options.poll ? "" : "?wait=30";
      const creds = await inject(server, auth, "GET", `/v1/me/roles/${ROLE}/credentials${wait}`);
      expectStatus("credentials", creds, 200);
      const read = mark("requester: credentials answered 200");
      const readWall = Date.now();
      const counts3 = snapshot();
      const diff = (a: Count, b: Count) => ({ store: b.store - a.store, target: b.target - a.target });
      const client = new pg.Client({
        host: String(creds.body.host),
        port: Number(creds.body.port),
        database: String(creds.body.database),
        user: String(creds.body.user),
        password: String(creds.body.password),
      });
      await client.connect();
      mark("requester: signed in as the minted login");
      const rows = await client.query("select entry from ledger");
      // The login works: the end of the timed path (its connection's end is printed after it, not timed).
      const works = mark(ANSWERED);
      // The login's backend: its fork, authentication, catalog caches and the query (read before it exits).
      const loginPid = (client as unknown as { processID?: number }).processID;
      if (loginPid) loginCpuNs += cpuNs(loginPid);
      await client.end();
      if (rows.rowCount !== 1) throw new Error(`the minted login read ${rows.rowCount} rows, expected 1`);
      mark(ENDED);
      const cpu1 = cpuNow();
      const steps = observed.timeline && engine === "postgres" ? stepsOf(observed.timeline) : null;
      const inside = await insideOf(id);
      // Waiting, the request turned active inside the read: when its activation committed (server's clock, ms).
      if (!options.poll) active = read - Math.min(read - afterSubmit, Math.max(0, readWall - (await activatedAt(id))));

      expectStatus("deactivate", await inject(server, auth, "POST", `/v1/me/roles/${ROLE}/deactivate`), 200);
      await waitFor(
        "drop",
        async () => (await root.query("select 1 from pg_roles where rolname = $1", [creds.body.user])).rowCount === 0,
        () => sleep(10),
      );
      if (alone) {
        const cpu2 = cpuNow();
        split.issuance.process += cpu1.process - cpu0.process;
        split.issuance.postgres += cpu1.postgres - cpu0.postgres;
        split.teardown.process += cpu2.process - cpu1.process;
        split.teardown.postgres += cpu2.postgres - cpu1.postgres;
      }
      return {
        submit: afterSubmit - started,
        provisioning: active - afterSubmit,
        credentials: read - active,
        signIn: works - read,
        total: works - started,
        inside,
        steps,
        counts:
          !alone || engine !== "postgres"
            ? null
            : {
                submit: diff(counts0, counts1),
                // Less the requester's own looks at the request's state (one statement each, on the store).
                provisioning: { ...diff(counts1, counts2), store: diff(counts1, counts2).store - looks },
                credentials: diff(counts2, counts3),
              },
      };
    };

    for (let i = 0; i < WARMUP_LOGINS; i++) await issue(auths[0]!, -i, true);

    const verdict = (samples: number[]) => {
      const p99 = quantile(
        [...samples].sort((a, b) => a - b),
        0.99,
      );
      // The acceptance is judged on the target's documented default (no pre-created logins, docs/connectors/postgres.md).
      if (options.precreated > 0)
        return `  with preCreatedLogins: ${options.precreated} (not the default: acceptance 5 is judged without)`;
      return `  ${p99 < DYNAMIC_P99_TARGET_MS ? "PASS" : "FAIL"} (p99 < ${DYNAMIC_P99_TARGET_MS} ms)`;
    };
    console.error(`${engine}: ${options.logins} sequential dynamic logins (load ${load()})`);
    const sequential: Phases[] = [];
    const pgBefore = watcher ? await backendCpu(root, observed.storeDatabase, observed.targetDatabase) : null;
    loginCpuNs = 0;
    splitPids = pgBefore ? [...pgBefore].filter(([, [kind]]) => kind !== "bench watcher").map(([pid]) => pid) : [];
    for (const part of Object.values(split)) Object.assign(part, { process: 0, postgres: 0 });
    const threadsBefore = threadCpu();
    const cpuBefore = process.cpuUsage();
    // Each issuance on a timeline of its own (a few pushes per statement), to read its steps off.
    for (let i = 0; i < options.logins; i++) {
      observed.timeline = [];
      sequential.push(await issue(auths[0]!, i, true));
      observed.timeline = null;
    }
    const cpu = process.cpuUsage(cpuBefore);
    const threadsAfter = threadCpu();
    const pgUsed = pgBefore
      ? cpuBetween(pgBefore, await backendCpu(root, observed.storeDatabase, observed.targetDatabase))
      : null;
    summary(
      `${engine.padEnd(8)} submit → login works, 1 at a time`,
      sequential.map((p) => p.total),
      verdict(sequential.map((p) => p.total)),
    );
    // Less sensitive to other processes on the host than wall time: this process's CPU (server and requester,
    // the drop included), per issuance.
    console.log(
      `  1 at a time: ${((cpu.user + cpu.system) / 1000 / options.logins).toFixed(1)} ms of this process's CPU per issuance` +
        ` (main thread ${((threadsAfter.main - threadsBefore.main) / 1e6 / options.logins).toFixed(1)},` +
        ` other threads ${((threadsAfter.others - threadsBefore.others) / 1e6 / options.logins).toFixed(1)})`,
    );
    if (pgUsed) {
      const per = (ms: number) => (ms / options.logins).toFixed(1);
      console.log(
        `  1 at a time, PostgreSQL's CPU per issuance (backends' schedstat): ` +
          [...pgUsed].map(([kind, ms]) => `${kind} ${per(ms)}`).join(" · ") +
          ` · the minted login's own connection ${per(loginCpuNs / 1e6)} ms (drops and deactivations included)`,
      );
      console.log(
        `  1 at a time, CPU per issuance by part: submit → the login works: this process ${per(split.issuance.process)},` +
          ` store and target backends ${per(split.issuance.postgres)}, the login's backend ${per(loginCpuNs / 1e6)}` +
          ` · the deactivation and drop after it: this process ${per(split.teardown.process)},` +
          ` store and target backends ${per(split.teardown.postgres)} ms`,
      );
    }
    phases("1 at a time", sequential);
    if (engine === "postgres")
      printSteps(
        "1 at a time",
        sequential.flatMap((p) => (p.steps ? [p.steps] : [])),
      );
    for (let i = 0; i < options.trace; i++) {
      const timeline = (observed.timeline = []);
      const traced = await issue(auths[0]!, options.logins + i, true);
      observed.timeline = null;
      printTimeline(`trace ${i + 1} of ${options.trace}: submit → login works ${traced.total.toFixed(1)} ms`, timeline);
    }

    if (requesters > 1) {
      console.error(`${engine}: ${options.logins} dynamic logins by ${requesters} requesters (load ${load()})`);
      const concurrent: Phases[] = [];
      let next = 0;
      const startedAll = performance.now();
      await Promise.all(
        auths.map(async (auth) => {
          while (next < options.logins) concurrent.push(await issue(auth, next++, false));
        }),
      );
      const seconds = (performance.now() - startedAll) / 1000;
      summary(
        `${engine.padEnd(8)} submit → login works, ${requesters} at once`,
        concurrent.map((p) => p.total),
        `${verdict(concurrent.map((p) => p.total))}  ${(concurrent.length / seconds).toFixed(0)} logins/s with drops`,
      );
      phases(`${requesters} at once`, concurrent);
    }
  } finally {
    await watcher?.end().catch(() => undefined);
    // The logins still kept ready at the target (NOLOGIN) go with the run.
    const kept = await server.store.db.selectFrom("precreated_logins").select("login").execute();
    await server.cleanup();
    for (const { login } of kept) await root.query(`drop role if exists ${pg.escapeIdentifier(login)}`);
  }
}
