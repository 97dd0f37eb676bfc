/**
 * Issue 14 acceptance 5: a dynamic PostgreSQL login, submit → the login works. Counts the SQL statements (and
 * transactions) that the provisioning job of a `dynamic: true` role (one outbox pass: the claim, the job's
 * reads, the password minted and sealed in the vault, the activation, the job's completion) and the
 * credentials read (`GET /v1/me/roles/:role/credentials`, the service as its route calls it) send to the store,
 * and those of the revocation that drops the login, and holds them under a ceiling so a regression fails here rather than in a benchmark. The target is the
 * machine's PostgreSQL: the minted login must read the table. Statements to the target are not counted here
 * (bench/connectors.bench.ts prints them).
 */
import { randomBytes } from "node:crypto";
import type { CompiledQuery, QueryResult } from "kysely";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { AppStore } from "../../db/index.js";
import { armFailpoint, disarmFailpoints } from "../../lib/failpoints.js";
import type { Actor } from "../authz/authz.types.js";
import { ENGINES, PG_ADMIN_URL } from "../../testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../../testing/server.js";
import { statementCounter } from "../../testing/statements.js";
import { scramSecret } from "../connectors/postgres/postgres.rules.js";
import { parseMessages } from "../access-index/access-index.rules.js";
import { ACCESS_CHANNEL } from "../access-index/access-index.service.js";

/** Whether the login's password at the server is `password` (the machine's server trusts local sign-ins). */
async function passwordIs(login: string, password: string): Promise<boolean> {
  const row = (
    await root.query<{ rolpassword: string | null }>("select rolpassword from pg_authid where rolname = $1", [login])
  ).rows[0];
  const match = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(row?.rolpassword ?? "");
  if (!match) return false;
  return scramSecret(password, Buffer.from(match[2]!, "base64"), Number(match[1])) === row!.rolpassword;
}

/**
 * The store with `around` run for each statement the server sends through its `db` (precompiled reads, raw
 * statements such as the audit INSERTs): `run` sends it. Builders made from `db` do not pass here.
 */
function aroundStatements(
  store: AppStore,
  around: (sql: string, run: () => Promise<QueryResult<unknown>>) => Promise<QueryResult<unknown>>,
): AppStore {
  const bound = (target: object, key: string | symbol): unknown => {
    const value: unknown = Reflect.get(target, key, target);
    return typeof value === "function" ? (value as () => unknown).bind(target) : value;
  };
  const send = (target: { executeQuery(q: CompiledQuery): Promise<QueryResult<unknown>> }) => (q: CompiledQuery) =>
    around(q.sql, () => target.executeQuery(q));
  const db = new Proxy(store.db, {
    get(target, key) {
      if (key === "executeQuery") return send(target);
      if (key === "getExecutor")
        return () =>
          new Proxy(target.getExecutor(), {
            get: (executor, k) => (k === "executeQuery" ? send(executor) : bound(executor, k)),
          });
      return bound(target, key);
    },
  });
  return Object.assign(Object.create(store) as AppStore, { db });
}

/**
 * The ceilings on PostgreSQL. Measured before (after 2cfbb77): provisioning 14 statements (the claim; the
 * grant, its target, a stored password and the active KEK read apart; the password inserted then read back;
 * the activation's transaction, 6; the job's completion), the credentials read 3 (the grant, then its
 * password, then the audit event). Now the grant, its target, the target's credential and a stored password
 * are one read, the KEK comes from memory, the insert says whether it won (RETURNING), and the credentials
 * read takes the password with the grant. Transactions: only the activation's (the claim, the password's
 * insert, the completion and the read's audit event commit on their own). Then 10, of which the activation 5
 * (the locked read, the basis, the writes, the index's message, the audit event): then 7, the activation 2. Now 6:
 * the job's completion (its done-mark) is written by the activation's statement, in its transaction.
 */
const PROVISION_MAX_STATEMENTS = 6;
const PROVISION_MAX_TRANSACTIONS = 1;
const CREDENTIALS_MAX_STATEMENTS = 2;
/**
 * The credentials read's audit event is one INSERT that commits on its own where a background sequencer chains
 * it (PostgreSQL): no BEGIN and COMMIT round trips. Chained inline (PGlite), it needs its transaction.
 */
const CREDENTIALS_MAX_TRANSACTIONS = { pglite: 1, postgres: 0 };
/**
 * The submit's provisioning hook (`onGrant`, in the submit's transaction): the job's INSERT carrying the grant's
 * login (a data-modifying CTE) and the runners' NOTIFY (or written claimed, without it, where this node's runner
 * runs it); the grant's entitlement, target and principal come with the submit's own read of its facts. It was 6:
 * the grant and its target read apart, and the outbox lane's target read again; then 4: the login, the job and the
 * NOTIFY apart; then 2: the entitlement, target and principal read by the hook.
 */
const ON_GRANT_MAX_STATEMENTS = 1;
/**
 * The same hook when the activation ends (`onGrant` with `revoke`, in the deactivation's transaction): one read (the
 * grant's target, for the job's lane, and its provisioning job's state) and the revocation's INSERT with its NOTIFY.
 * It was 3: the lanes' wrapper read the target, then the INSERT, then the provisioning job was read.
 */
const ON_END_MAX_STATEMENTS = 2;
/**
 * The activation (`requests.provisioned`, in the pass): one statement locks the request and its grant, reads the
 * requester's basis, makes both active and sends the index's `act` message; then the audit event. In one
 * transaction: 4 round trips with BEGIN and COMMIT (7 before: the lock, the basis, the writes and the message
 * were a statement each).
 */
const PROVISIONED_MAX_STATEMENTS = 2;
/**
 * The revocation of the minted login (one outbox pass after the deactivation): the claim, the grant with its
 * target, the target's credential and the activation's end in one read, the grant marked revoked with its audit
 * event; the completion (its done-mark) is written by the revoked mark's statement, in its transaction. It was 7:
 * the grant, its target and the activation's end read apart (8 with the target's credential stored); then 5, the
 * completion a statement of its own after the commit.
 */
const REVOKE_MAX_STATEMENTS = 4;
/** On PGlite the audit log chains in the appending transaction (`inline`): four more per audited transaction. */
const INLINE_CHAINING = { pglite: 4, postgres: 0 };

const hex = randomBytes(4).toString("hex");
const database = `stint_dst_${hex}`;
const reader = `stint_dst_reader_${hex}`;
const user = `dyn${hex}`;
const role = "ledger-reader";

let root: pg.Client;

beforeAll(async () => {
  root = new pg.Client({ connectionString: PG_ADMIN_URL });
  await root.connect();
  await root.query(`create database ${database}`);
  await root.query(`create role ${reader} nologin`);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${database}`;
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  await db.query("create table ledger (entry text)");
  await db.query("insert into ledger values ('opening balance')");
  await db.query("revoke all on ledger from public");
  await db.query(`grant select on ledger to ${reader}`);
  await db.end();
});

afterAll(async () => {
  if (!root) return;
  await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
  const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
    `stint_${user}_%`,
  ]);
  for (const r of minted.rows) await root.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
  await root.query(`drop role if exists ${reader}`).catch(() => undefined);
  await root.end();
});

describe.each(ENGINES)("statements of a dynamic login on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    disarmFailpoints();
    vi.restoreAllMocks();
    await server?.cleanup();
    server = undefined;
  });

  /** A server with a user eligible for a dynamic role at the machine's PostgreSQL. */
  async function setup(wrapStore?: (store: AppStore) => AppStore) {
    server = await testServer(engine, { ...(wrapStore ? { wrapStore } : {}), env: { STINT_RECONCILE_INTERVAL: "0" } });
    const s = server;
    const inject = async (auth: string, method: string, url: string, payload?: object) => {
      const res = await s.app.inject({
        method: method as "GET",
        url,
        headers: { authorization: auth },
        ...(payload ? { payload } : {}),
      });
      return { status: res.statusCode, body: res.body ? (res.json() as Record<string, unknown>) : {} };
    };
    const created = await inject(s.adminAuth, "POST", "/v1/users", { name: user, password: passwordFor(user) });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const applied = await inject(s.adminAuth, "POST", "/v1/config/apply", {
      yaml: `
apiVersion: stint/v1
policies:
  - name: dyn-self
    mfa: { required: false }
    maxDuration: 8h
targets:
  - name: ledger
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${database}?sslmode=disable
roles:
  - name: ${role}
    target: ledger
    entitlement: { role: ${reader}, dynamic: true }
    policy: dyn-self
    risk: medium
eligibility:
  - role: ${role}
    users: [${user}]
`,
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    const row = await s.store.db
      .selectFrom("principals")
      .select("id")
      .where("name", "=", user)
      .executeTakeFirstOrThrow();
    const actor: Actor = { kind: "principal", id: row.id, name: user, principalKind: "user", roles: ["user"] };
    const context = { correlationId: "statements-test", sourceIp: "127.0.0.1", userAgent: null };
    const drain = async () => {
      for (let i = 0; i < 10; i++) if ((await s.outbox.runOnce()).claimed === 0) return;
    };

    return { s, actor, context, drain };
  }

  it("provisioning a minted login and reading its credentials stay under their statement ceilings", async () => {
    const { wrap, measure } = statementCounter();
    const { s, actor, context, drain } = await setup(wrap);
    // The submit's hook (in the submit's transaction) counted on its own: the rest of the submit is the requests
    // module's.
    const hooked: { statements: string[] }[] = [];
    const onGrant = s.grants.onGrant;
    const ends: { statements: string[] }[] = [];
    s.grants.onGrant = async (tx, change) => {
      const measured = await measure(() => onGrant(tx, change));
      (change.action === "provision" ? hooked : ends).push(measured);
      return measured.result;
    };
    const activations: { statements: string[]; transactions: number; result: boolean }[] = [];
    const provisionedOf = s.requests.provisioned;
    s.requests.provisioned = async (grantId, details) => {
      const measured = await measure(() => provisionedOf(grantId, details));
      activations.push(measured);
      return measured.result;
    };
    // What other nodes hear: the index's messages on the channel (the activation's is built by its statement).
    const heard: string[] = [];
    const unlisten = await s.store.listen(ACCESS_CHANNEL, (payload) => heard.push(payload));
    // The reads of a grant with its minted password (the provisioning attempt's, the credentials read's) are
    // prepared once per connection: parsed again on a connection that parsed them before, they were built again.
    const parsed = new Map<unknown, Set<string>>();
    const parsedAgain: string[] = [];
    const parse = pg.Connection.prototype.parse;
    vi.spyOn(pg.Connection.prototype, "parse").mockImplementation(function (this: unknown, ...args) {
      const text = String((args[0] as { text?: string }).text);
      if (/^(\/\*[^*]*\*\/ )?select .*"grant_credentials"/s.test(text)) {
        const seen = parsed.get(this) ?? new Set<string>();
        if (seen.has(text)) parsedAgain.push(text.slice(0, 80));
        parsed.set(this, seen.add(text));
      }
      return parse.apply(this, args);
    });
    // The first round warms what a node keeps in memory; the next ones are counted.
    for (let round = 0; round < 3; round++) {
      const submitted = await s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
      expect(submitted.state).toBe("provisioning");
      const hook = hooked.splice(0);
      expect(hook).toHaveLength(1);
      expect(hook[0]!.statements.length, JSON.stringify(hook[0]!.statements)).toBeLessThanOrEqual(
        ON_GRANT_MAX_STATEMENTS,
      );
      const provisioned = await measure(() => s.outbox.runOnce());
      expect(provisioned.result).toMatchObject({ claimed: 1, done: 1 });
      const request = await s.store.db
        .selectFrom("activation_requests")
        .select("state")
        .where("id", "=", submitted.id)
        .executeTakeFirstOrThrow();
      expect(request.state).toBe("active");
      // The job was marked done, by the activation's statement.
      const grant = await s.store.db
        .selectFrom("grants")
        .select("id")
        .where("request_id", "=", submitted.id)
        .executeTakeFirstOrThrow();
      const job = await s.store.db
        .selectFrom("outbox")
        .select(["status", "done_at"])
        .where("idempotency_key", "=", `provision:${grant.id}`)
        .executeTakeFirstOrThrow();
      expect(job).toMatchObject({ status: "done", done_at: expect.any(Date) });
      const activation = activations.splice(0);
      expect(activation.map((a) => a.result)).toEqual([true]);
      // This node's index learnt the activation at commit; another node's learns it from the channel, the same.
      const times = await s.store.db
        .selectFrom("activation_requests")
        .select(["activated_at", "expires_at"])
        .where("id", "=", submitted.id)
        .executeTakeFirstOrThrow();
      const since = new Date(times.activated_at!).getTime();
      const exp = new Date(times.expires_at!).getTime();
      expect(s.accessIndex.view()?.activation(submitted.id)).toMatchObject({ activatedAt: since, expiresAt: exp });
      await expect
        .poll(() => heard.flatMap(parseMessages).find((m) => m.t === "act" && m.id === submitted.id))
        .toMatchObject({ t: "act", pid: actor.id, pn: user, rn: role, exp, since, x: expect.any(Number) });
      const read = await measure(() => s.grants.credentials(actor, context, role));
      // The minted login works at the server, with the password read.
      expect(await passwordIs(read.result.user, read.result.password)).toBe(true);
      const client = new pg.Client({
        host: read.result.host,
        port: read.result.port,
        database: read.result.database ?? undefined,
        user: read.result.user,
        password: read.result.password,
      });
      await client.connect();
      const rows = (await client.query<{ entry: string }>("select entry from ledger")).rows;
      await client.end();
      expect(rows).toEqual([{ entry: "opening balance" }]);

      await s.requests.deactivate(actor, role, context);
      const end = ends.splice(0);
      expect(end).toHaveLength(1);
      expect(end[0]!.statements.length, JSON.stringify(end[0]!.statements)).toBeLessThanOrEqual(ON_END_MAX_STATEMENTS);
      // The revocation: the login dropped at the target and the grant marked revoked, audited.
      const revoked = await measure(() => s.outbox.runOnce());
      expect(revoked.result).toMatchObject({ claimed: 1, done: 1 });
      // The revocation's job was marked done, by the revoked mark's statement.
      const revokeJob = await s.store.db
        .selectFrom("outbox")
        .select(["status", "done_at"])
        .where("idempotency_key", "=", `revoke:${grant.id}`)
        .executeTakeFirstOrThrow();
      expect(revokeJob).toMatchObject({ status: "done", done_at: expect.any(Date) });
      await drain();
      if (round === 0) continue;
      expect(revoked.statements.length, JSON.stringify(revoked.statements)).toBeLessThanOrEqual(
        REVOKE_MAX_STATEMENTS + INLINE_CHAINING[engine],
      );
      const report = `provision: ${provisioned.statements.length} in ${provisioned.transactions} tx ${JSON.stringify(provisioned.statements)}; credentials: ${read.statements.length} in ${read.transactions} tx ${JSON.stringify(read.statements)}`;
      expect(provisioned.statements.length, report).toBeLessThanOrEqual(
        PROVISION_MAX_STATEMENTS + INLINE_CHAINING[engine],
      );
      expect(provisioned.transactions, report).toBeLessThanOrEqual(PROVISION_MAX_TRANSACTIONS);
      const activated = `activation: ${JSON.stringify(activation[0]!.statements)}`;
      expect(activation[0]!.statements.length, activated).toBeLessThanOrEqual(
        PROVISIONED_MAX_STATEMENTS + INLINE_CHAINING[engine],
      );
      expect(activation[0]!.transactions, activated).toBe(1);
      expect(read.statements.length, report).toBeLessThanOrEqual(CREDENTIALS_MAX_STATEMENTS + INLINE_CHAINING[engine]);
      expect(read.transactions, report).toBeLessThanOrEqual(CREDENTIALS_MAX_TRANSACTIONS[engine]);
    }
    await unlisten();
    if (engine === "postgres") expect(parsed.size).toBeGreaterThan(0);
    expect(parsedAgain).toEqual([]);
    // What the statements wrote is all there: each activation audited as provisioned and its credentials read.
    const audit = await s.store.db
      .selectFrom("audit_pending")
      .select("action")
      .unionAll(s.store.db.selectFrom("audit_events").select("action"))
      .execute();
    const actions = audit.map((e) => e.action);
    expect(actions.filter((a) => a === "request.activated")).toHaveLength(3);
    expect(actions.filter((a) => a === "grant.credentials_read")).toHaveLength(3);
    // No minted login is left at the target.
    const left = await root.query("select rolname from pg_roles where rolname like $1", [`stint_${user}_%`]);
    expect(left.rows).toEqual([]);
  });

  it("a waiting credentials read whose activation commits between its read and its look for what is coming answers", async () => {
    // The activation commits right after the waiting read found no active grant and before it looks whether a
    // request is still on its way: a fast activation (a pre-created login's) did in the bench, and was told
    // NOT_ACTIVE. The store's precompiled reads go through `executeQuery`; the grant's read (the only one naming
    // `credential_login`) runs the outbox once it has answered.
    let race: (() => Promise<void>) | undefined;
    const { s, actor, context, drain } = await setup((store) =>
      aroundStatements(store, async (text, run) => {
        const result = await run();
        const then = race;
        if (then && text.includes("credential_login")) {
          race = undefined;
          await then();
        }
        return result;
      }),
    );
    await s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
    race = drain;
    const read = await s.grants.credentials(actor, context, role, { waitMs: 30_000 });
    expect(race).toBeUndefined();
    expect(read.user).toMatch(new RegExp(`^stint_${user}_`));
    expect(await passwordIs(read.user, read.password)).toBe(true);
    await s.requests.deactivate(actor, role, context);
    await drain();
  });

  it("a waiting read woken by this node's activation answers from its copy: one statement, the audit INSERT", async () => {
    const { wrap, measure } = statementCounter();
    const { s, actor, context, drain } = await setup(wrap);
    for (let round = 0; round < 2; round++) {
      await s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
      const reading = measure(() => s.grants.credentials(actor, context, role, { waitMs: 30_000 }));
      await expect.poll(() => s.grants.waitingForCredentials(), { timeout: 20_000 }).toBe(1);
      await drain();
      const read = await reading;
      expect(await passwordIs(read.result.user, read.result.password)).toBe(true);
      // The first look (the grant, then what is coming: 2), then, woken, the event's INSERT that checks the copy
      // (1; the grant read again and the INSERT before: 2). Chained inline (PGlite) it reads the database.
      if (engine === "postgres" && round > 0) expect(read.statements.length, JSON.stringify(read.statements)).toBe(3);
      await s.requests.deactivate(actor, role, context);
      await drain();
    }
    const audit = await s.store.db
      .selectFrom("audit_pending")
      .select(["action", "details"])
      .unionAll(s.store.db.selectFrom("audit_events").select(["action", "details"]))
      .execute();
    expect(audit.filter((e) => e.action === "grant.credentials_read")).toHaveLength(2);
  });

  it("a waiting read that arrives while this node provisions its login waits without looking: one statement", async () => {
    const { wrap, measure } = statementCounter();
    const { s, actor, context, drain } = await setup(wrap);
    for (let round = 0; round < 2; round++) {
      await s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
      // The read arrives while the job runs (before its target call): it waits, reading nothing.
      let reading: ReturnType<typeof measure<Awaited<ReturnType<typeof s.grants.credentials>>>> | undefined;
      armFailpoint("grant.provision.before-target", async () => {
        reading = measure(() => s.grants.credentials(actor, context, role, { waitMs: 30_000 }));
        await expect.poll(() => s.grants.waitingForCredentials(), { timeout: 20_000 }).toBe(1);
      });
      await drain();
      disarmFailpoints();
      const read = await reading!;
      expect(await passwordIs(read.result.user, read.result.password)).toBe(true);
      // Woken by the activation: the event's INSERT that checks the copy, alone (PGlite reads the database).
      if (engine === "postgres" && round > 0) expect(read.statements.length, JSON.stringify(read.statements)).toBe(1);
      await s.requests.deactivate(actor, role, context);
      await drain();
    }
  });

  it("a copy the database no longer holds is not answered from: the activation ended before the read's INSERT", async () => {
    // Copies are used with a background sequencer only (PostgreSQL); PGlite reads the database.
    if (engine !== "postgres") return;
    // The activation commits, wakes the read, and ends before the read's INSERT runs: the INSERT's check finds
    // the grant revoking, writes nothing, and the read, looking at the database, answers NOT_ACTIVE.
    let ended: (() => Promise<unknown>) | undefined;
    const { s, actor, context, drain } = await setup((store) =>
      aroundStatements(store, async (text, run) => {
        const end = ended;
        if (end && text.includes("c.copy->>3")) {
          ended = undefined;
          await end();
        }
        return run();
      }),
    );
    await s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
    ended = () => s.requests.deactivate(actor, role, context);
    const reading = s.grants.credentials(actor, context, role, { waitMs: 30_000 }).then(
      () => "answered",
      (error: { code?: string }) => error.code,
    );
    await expect.poll(() => s.grants.waitingForCredentials(), { timeout: 20_000 }).toBe(1);
    await drain();
    expect(await reading).toBe("NOT_ACTIVE");
    expect(ended).toBeUndefined();
    const audit = await s.store.db
      .selectFrom("audit_pending")
      .select("action")
      .unionAll(s.store.db.selectFrom("audit_events").select("action"))
      .execute();
    expect(audit.filter((e) => e.action === "grant.credentials_read")).toEqual([]);
    await drain();
  });

  it("a requester whose eligibility ended while the login was created is not activated: it is revoked and dropped", async () => {
    const { s, actor, context, drain } = await setup();
    const submitted = await s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
    expect(submitted.state).toBe("provisioning");
    // While the worker creates the login, the eligibility reaches its end (before the scheduler has noticed).
    armFailpoint("grant.provision.before-target", async () => {
      const past = new Date(Date.now() - 1000);
      await s.store.db
        .updateTable("eligibilities")
        .set({ starts_at: new Date(past.getTime() - 60_000), ends_at: past })
        .where("principal_id", "=", actor.id)
        .execute();
    });
    expect(await s.outbox.runOnce()).toMatchObject({ claimed: 1, done: 1 });
    const request = await s.store.db
      .selectFrom("activation_requests")
      .select(["state", "activated_at", "end_reason"])
      .where("id", "=", submitted.id)
      .executeTakeFirstOrThrow();
    expect(request).toMatchObject({ state: "revoked", activated_at: null });
    expect(request.end_reason).toMatch(/eligib/);
    expect(s.accessIndex.view()?.activation(submitted.id) ?? null).toBeNull();
    await drain();
    // The login made meanwhile is gone from the target again, and the end is audited.
    const left = await root.query("select rolname from pg_roles where rolname like $1", [`stint_${user}_%`]);
    expect(left.rows).toEqual([]);
    const audit = await s.store.db
      .selectFrom("audit_pending")
      .select(["action", "subject"])
      .unionAll(s.store.db.selectFrom("audit_events").select(["action", "subject"]))
      .execute();
    expect(audit).toContainEqual({ action: "request.revoked", subject: `request:${submitted.id}` });
    expect(audit.filter((e) => e.action === "request.activated")).toEqual([]);
  });

  it("a password another worker stored first is the one the login gets", async () => {
    const { s, actor, context, drain } = await setup();
    const submitted = await s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
    // Between this attempt's read (no password stored yet) and its insert, another worker stores its own.
    armFailpoint("grant.provision.before-target", async () => {
      const grant = await s.store.db
        .selectFrom("grants")
        .select(["id", "login"])
        .where("request_id", "=", submitted.id)
        .executeTakeFirstOrThrow();
      const sealed = await s.vault.sealValue(`grant:${grant.id}`, "the-other-workers-password-1234");
      await s.store.db
        .insertInto("grant_credentials")
        .values({
          grant_id: grant.id,
          login: grant.login!,
          ciphertext: sealed.ciphertext,
          wrapped_key: sealed.wrappedKey,
          kek_version: sealed.kekVersion,
          created_at: new Date(),
        })
        .execute();
    });
    expect(await s.outbox.runOnce()).toMatchObject({ claimed: 1, done: 1 });
    const read = await s.grants.credentials(actor, context, role);
    expect(read.password).toBe("the-other-workers-password-1234");
    expect(await passwordIs(read.user, read.password)).toBe(true);
    const client = new pg.Client({
      host: read.host,
      port: read.port,
      database: read.database ?? undefined,
      user: read.user,
      password: read.password,
    });
    await client.connect();
    expect((await client.query<{ entry: string }>("select entry from ledger")).rows).toEqual([
      { entry: "opening balance" },
    ]);
    await client.end();
    await s.requests.deactivate(actor, role, context);
    await drain();
  });
});
