/**
 * Logins pre-created ahead of demand (a target's `options.preCreatedLogins`), at the machine's PostgreSQL, attacked:
 * a pre-created login cannot sign in until it is handed out; two activations at once never get one login; a node
 * that dies between the hand-out (the submit) and the activation leaves no login anyone can use; a login is handed
 * out once and dropped when its activation ends; no password reaches the audit log.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { armFailpoint, disarmFailpoints } from "../../lib/failpoints.js";
import type { Actor } from "../authz/authz.types.js";
import { ENGINES, PG_ADMIN_URL } from "../../testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../../testing/server.js";
import { statementCounter } from "../../testing/statements.js";
import type { AppStore } from "../../db/index.js";

const hex = randomBytes(4).toString("hex");
const database = `stint_pre_db_${hex}`;
const reader = `stint_pre_reader_${hex}`;
const users = [`pa${hex}`, `pb${hex}`, `pc${hex}`];
const role = "ledger-reader";
const STOCK = 2;

let root: pg.Client;
const databaseUrl = () => Object.assign(new URL(PG_ADMIN_URL), { pathname: `/${database}` }).toString();

beforeAll(async () => {
  root = new pg.Client({ connectionString: PG_ADMIN_URL });
  await root.connect();
  await root.query(`create database ${database}`);
  await root.query(`create role ${reader} nologin`);
  const db = new pg.Client({ connectionString: databaseUrl() });
  await db.connect();
  await db.query("create table ledger (entry text); insert into ledger values ('opening balance')");
  await db.query(`revoke all on ledger from public; grant select on ledger to ${reader}`);
  await db.end();
});

afterAll(async () => {
  if (!root) return;
  await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
  const made = await root.query<{ rolname: string }>(
    "select rolname from pg_roles where shobj_description(oid, 'pg_authid') = 'stint: dynamic login' and rolname like 'stint_%'",
  );
  // Only this file's: the logins still named by its servers were dropped with them; these are what a failure left.
  for (const r of made.rows.filter((row) => leftovers.has(row.rolname)))
    await root.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
  await root.query(`drop role if exists ${reader}`).catch(() => undefined);
  await root.end();
});

/** Every login this file saw, dropped in afterAll if a failing test left it. */
const leftovers = new Set<string>();

/** "ok" when `login` signs in with `password` and reads the ledger, else the server's SQLSTATE. */
async function readAs(login: string, password: string): Promise<string> {
  const url = new URL(PG_ADMIN_URL);
  const client = new pg.Client({ host: url.hostname, port: Number(url.port || 5432), database, user: login, password });
  client.on("error", () => undefined);
  try {
    await client.connect();
    const rows = (await client.query<{ entry: string }>("select entry from ledger")).rows;
    return rows.length === 1 ? "ok" : `rows: ${rows.length}`;
  } catch (error) {
    return (error as { code?: string }).code ?? (error as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function roleAtTarget(login: string) {
  const row = (
    await root.query<{ rolcanlogin: boolean; members: number }>(
      `select r.rolcanlogin, (select count(*)::int from pg_auth_members m where m.member = r.oid) as members
         from pg_roles r where r.rolname = $1`,
      [login],
    )
  ).rows[0];
  return row ?? null;
}

describe.each(ENGINES)("logins pre-created ahead of demand, store on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    disarmFailpoints();
    await server?.cleanup();
    server = undefined;
  });

  async function setup(wrapStore?: (store: AppStore) => AppStore) {
    server = await testServer(engine, { ...(wrapStore ? { wrapStore } : {}), env: { STINT_RECONCILE_INTERVAL: "0" } });
    const s = server;
    const post = async (url: string, payload: object) => {
      const res = await s.app.inject({ method: "POST", url, headers: { authorization: s.adminAuth }, payload });
      expect(res.statusCode, res.body).toBeLessThan(300);
    };
    for (const name of users) await post("/v1/users", { name, password: passwordFor(name) });
    await post("/v1/config/apply", {
      yaml: `
apiVersion: stint/v1
policies: [{ name: pre-self, mfa: { required: false }, maxDuration: 8h }]
targets:
  - name: ledger
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${database}?sslmode=disable
    options: { preCreatedLogins: ${STOCK} }
roles:
  - { name: ${role}, target: ledger, entitlement: { role: ${reader}, dynamic: true }, policy: pre-self, risk: medium }
eligibility: [{ role: ${role}, users: [${users.join(", ")}] }]
`,
    });
    const actors: Actor[] = [];
    for (const name of users) {
      const row = await s.store.db.selectFrom("principals").select("id").where("name", "=", name).executeTakeFirst();
      actors.push({ kind: "principal", id: row!.id, name, principalKind: "user", roles: ["user"] });
    }
    const context = { correlationId: "precreated-test", sourceIp: "127.0.0.1", userAgent: null };
    const drain = async () => {
      for (let i = 0; i < 20; i++) if ((await s.outbox.runOnce()).claimed === 0) return;
    };
    const submit = (actor: Actor) =>
      s.requests.submit(actor, { role, reason: "reconcile the ledger's entries" }, context);
    const loginOf = async (requestId: string) =>
      (
        await s.store.db
          .selectFrom("grants")
          .select(["id", "login"])
          .where("request_id", "=", requestId)
          .executeTakeFirstOrThrow()
      ).login!;
    const stock = () =>
      s.store.db
        .selectFrom("precreated_logins")
        .selectAll()
        .where("state", "=", "ready")
        .orderBy("created_at")
        .orderBy("id")
        .execute();
    /** Runs the outbox until the stock is full again (its fill is due a moment after the activation). */
    const filled = () =>
      expect
        .poll(
          async () => {
            await drain();
            return (await stock()).length;
          },
          { timeout: 60_000, interval: 100 },
        )
        .toBe(STOCK);
    /** The first activation at the target creates its login and queues the stock's fill. */
    const warm = async () => {
      await submit(actors[0]!);
      await drain();
      await s.requests.deactivate(actors[0]!, role, context);
      await filled();
      const ready = await stock();
      for (const row of ready) leftovers.add(row.login);
      return ready;
    };
    /** A pre-created login's password, as only the vault can open it. */
    const passwordOf = (row: { id: string; ciphertext: string; wrapped_key: string; kek_version: number }) =>
      s.vault.openValue(`precreated:${row.id}`, {
        ciphertext: row.ciphertext,
        wrappedKey: row.wrapped_key,
        kekVersion: row.kek_version,
      });
    /** An admin ends the activation, whatever its state (the requester's deactivate needs it active). */
    const revoke = async (requestId: string) => {
      const res = await s.app.inject({
        method: "POST",
        url: `/v1/activation-requests/${requestId}/revoke`,
        headers: { authorization: s.adminAuth },
        payload: { reason: "the provisioning's node died" },
      });
      expect(res.statusCode, res.body).toBe(200);
    };
    return { s, actors, context, drain, filled, submit, loginOf, stock, warm, passwordOf, revoke };
  }

  it("a pre-created login cannot sign in; handed out, it works; then it is dropped and never handed out again", async () => {
    const { wrap, measure } = statementCounter();
    const { s, actors, context, drain, filled, submit, loginOf, stock, warm, passwordOf } = await setup(wrap);
    const ready = await warm();
    const passwords = await Promise.all(ready.map(passwordOf));
    // The submit's hook hands the login out in the job's INSERT: one statement, as when it mints one.
    const hooked: number[] = [];
    const onGrant = s.grants.onGrant;
    s.grants.onGrant = async (tx, change) => {
      const measured = await measure(() => onGrant(tx, change));
      hooked.push(measured.statements.length);
      return measured.result;
    };
    for (const [i, row] of ready.entries()) {
      expect(row.login).toMatch(/^stint_pre_[0-9a-f]{16}$/);
      // NOLOGIN (refused even where the server trusts local sign-ins), holding nothing.
      expect(await roleAtTarget(row.login)).toEqual({ rolcanlogin: false, members: 0 });
      expect(await readAs(row.login, passwords[i]!)).toBe("28000");
    }
    const submitted = await submit(actors[1]!);
    const login = await loginOf(submitted.id);
    expect(login).toBe(ready[0]!.login);
    expect(hooked).toEqual([1]);
    // Handed out (the submit committed) but not activated yet: still unusable.
    expect(await readAs(login, passwords[0]!)).toBe("28000");
    await drain();
    const read = await s.grants.credentials(actors[1]!, context, role);
    expect(read).toMatchObject({ user: login, password: passwords[0] });
    expect(await readAs(read.user, read.password)).toBe("ok");
    // Taken out of the stock for good, and the stock topped up again with new logins.
    await filled();
    const after = await stock();
    expect(after.map((row) => row.login)).not.toContain(login);
    expect(after).toHaveLength(STOCK);
    await s.requests.deactivate(actors[1]!, role, context);
    await drain();
    expect(await roleAtTarget(login)).toBeNull();
    expect(await readAs(login, passwords[0]!)).not.toBe("ok");
    // The creation and the hand-out are audited; no password is.
    const events = await s.store.db
      .selectFrom("audit_pending")
      .select(["action", "details"])
      .unionAll(s.store.db.selectFrom("audit_events").select(["action", "details"]))
      .execute();
    const created = events.filter((e) => e.action === "login.precreated").map((e) => e.details);
    expect(created).toContainEqual({ target: "ledger", logins: ready.map((row) => row.login) });
    // The login's one hand-out: the activation that names it.
    const handOuts = events.filter(
      (e) => e.action === "request.activated" && (e.details as { login?: string }).login === login,
    );
    expect(handOuts).toHaveLength(1);
    const text = JSON.stringify(events);
    for (const password of passwords) expect(text).not.toContain(password);
  });

  it("activations at the same moment never get the same pre-created login", async () => {
    const { actors, drain, submit, loginOf, warm } = await setup();
    const ready = await warm();
    // Three requesters at once for a stock of two: two pre-created logins, each to one of them; one minted.
    const submitted = await Promise.all(actors.map((actor) => submit(actor)));
    const logins = await Promise.all(submitted.map((request) => loginOf(request.id)));
    for (const login of logins) leftovers.add(login);
    expect(new Set(logins).size).toBe(3);
    expect(logins.filter((login) => login.startsWith("stint_pre_")).sort()).toEqual(ready.map((r) => r.login).sort());
    await drain();
  });

  it("a node that dies between the hand-out and the activation leaves no usable login", async () => {
    const { s, actors, context, drain, submit, loginOf, warm, passwordOf, revoke } = await setup();
    const ready = await warm();
    const password = await passwordOf(ready[0]!);
    const submitted = await submit(actors[1]!);
    const login = await loginOf(submitted.id);
    expect(login).toBe(ready[0]!.login);
    // The provisioning's node dies before the target call: the login stays NOLOGIN, holding nothing.
    armFailpoint("grant.provision.before-target");
    await s.outbox.runOnce();
    expect(await roleAtTarget(login)).toEqual({ rolcanlogin: false, members: 0 });
    expect(await readAs(login, password)).toBe("28000");
    await expect(s.grants.credentials(actors[1]!, context, role)).rejects.toThrow(/no active activation/);
    // An admin ends it: the login is dropped although it was never activated.
    await revoke(submitted.id);
    await drain();
    expect(await roleAtTarget(login)).toBeNull();
    // And after the target call, before the activation: dropped the same way.
    const again = await submit(actors[2]!);
    const second = await loginOf(again.id);
    expect(second).toBe(ready[1]!.login);
    armFailpoint("grant.provision.after-target");
    await s.outbox.runOnce();
    await expect(s.grants.credentials(actors[2]!, context, role)).rejects.toThrow(/no active activation/);
    await revoke(again.id);
    await drain();
    expect(await roleAtTarget(second)).toBeNull();
  });
  it("a vault key rotation re-wraps pre-created logins' passwords, kept and handed out, which still open", async () => {
    const { s, actors, context, drain, submit, stock, warm, passwordOf } = await setup();
    const ready = await warm();
    const passwords = await Promise.all(ready.map(passwordOf));
    await submit(actors[1]!);
    await drain();
    const rotated = await s.app.inject({
      method: "POST",
      url: "/v1/operator/rotate-key",
      headers: { authorization: s.adminAuth },
    });
    expect(rotated.statusCode, rotated.body).toBe(200);
    const { keyVersion } = rotated.json() as { keyVersion: number };
    const kept = await stock();
    expect(kept.map((row) => row.kek_version)).toEqual(kept.map(() => keyVersion));
    expect(await passwordOf(kept.find((row) => row.id === ready[1]!.id)!)).toBe(passwords[1]);
    const read = await s.grants.credentials(actors[1]!, context, role);
    expect(read).toMatchObject({ user: ready[0]!.login, password: passwords[0] });
    expect(await readAs(read.user, read.password)).toBe("ok");
    await s.requests.deactivate(actors[1]!, role, context);
    await drain();
  });
});
