/**
 * One membership at the target, several activations relying on it. Two activations of the same login that grant
 * the same entitlement at a target (the same role activated again, or two roles granting the same thing) share
 * one membership there: `GRANT reader TO stint_x` once, whoever asked. A revocation that is late (its node died,
 * its target was slow, or it is the safety-net revocation queued for a provisioning in flight) must not take away
 * the membership a newer activation relies on; and whatever it skips must still go when the last activation
 * relying on it ends. A user must neither lose privilege they hold nor keep privilege they no longer hold.
 *
 * Against the machine's real PostgreSQL (127.0.0.1:5432) as the target, the outbox and the clock driven by hand and
 * the interleavings forced with failpoints: the delayed revocation runs before, between and after the steps of the
 * newer activation's provisioning.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { armFailpoint, disarmFailpoints } from "../../src/lib/failpoints.js";
import { isMemberOf } from "../../src/testing/pg-target.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const hex = randomBytes(4).toString("hex");
const database = `stint_shm_${hex}`;
const reader = `stint_shm_reader_${hex}`;
const minted = `stint_shm_minted_${hex}`;
const adminUrl = "postgres://postgres@127.0.0.1:5432";
const user = (name: string) => `${name}${hex}`;
const ann = user("ann");
const ben = user("ben");
const cal = user("cal");
const dee = user("dee");
const eve = user("eve");
const fay = user("fay");
const gus = user("gus");
const hal = user("hal");
const ida = user("ida");
const users = [ann, ben, cal, dee, eve, fay, gus, hal, ida];
const loginOf = (user: string) => `stint_shm_${user}`;
/** The outbox runner's default lease: a crashed attempt is taken over this long after its claim. */
const LEASE_MS = 30_000;

let root: pg.Client;
let h: TargetsHarness;

const isMember = (login: string, role = reader) => isMemberOf(root, role, login);

async function roleExists(name: string): Promise<boolean> {
  return (await root.query("select 1 from pg_roles where rolname = $1", [name])).rowCount === 1;
}

/** Submits an activation (the outbox does not run). */
async function submit(user: string, role = "db-reader"): Promise<string> {
  const res = await h.as(user, "POST", "/v1/activation-requests", {
    role,
    duration: "1h",
    reason: "investigating incident 4242 in production",
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return String(res.body.id);
}

/** Submits an activation and runs the outbox: it is active and the target shows it. */
async function activate(user: string, role = "db-reader"): Promise<string> {
  const id = await submit(user, role);
  await h.drainOutbox();
  expect(await state(id)).toBe("active");
  return id;
}

async function state(requestId: string): Promise<string> {
  const res = await h.admin("GET", `/v1/activation-requests/${requestId}`);
  return String(res.body.state);
}

async function deactivate(user: string, role = "db-reader"): Promise<void> {
  const res = await h.as(user, "POST", `/v1/me/roles/${role}/deactivate`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function revoke(requestId: string): Promise<void> {
  const res = await h.admin("POST", `/v1/activation-requests/${requestId}/revoke`, { reason: "wrong account" });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function grantOf(requestId: string) {
  return h.server.store.db
    .selectFrom("grants")
    .select(["id", "state", "login"])
    .where("request_id", "=", requestId)
    .executeTakeFirstOrThrow();
}

/** The drift the reconciler sees at the target now, for one login. */
async function driftOf(login: string): Promise<{ role: string; login: string; kind: string; action: string }[]> {
  const res = await h.admin("POST", "/v1/reconcile", { target: "shm-db" });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const items = res.body.items as { drift: { role: string; login: string; kind: string; action: string }[] }[];
  return items[0]!.drift.filter((d) => d.login === login);
}

/** Audit actions recorded for a grant (chained, or still waiting for the sequencer). */
async function auditOf(grantId: string): Promise<{ action: string; details: Record<string, unknown> }[]> {
  await h.server.audit.catchUp();
  const rows = await h.server.store.db
    .selectFrom("audit_events")
    .select(["action", "details"])
    .where("subject", "=", `grant:${grantId}`)
    .orderBy("seq")
    .execute();
  return rows.map((r) => ({ action: r.action, details: (r.details ?? {}) as Record<string, unknown> }));
}

beforeAll(async () => {
  root = new pg.Client({ connectionString: `${adminUrl}/postgres` });
  await root.connect();
  await root.query(`create database ${database}`);
  for (const user of users) await root.query(`create role ${loginOf(user)} login`);
  await root.query(`create role ${reader} nologin`);
  await root.query(`create role ${minted} nologin`);
  h = await targetsHarness();
  for (const user of users) await h.createUser(user);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("shm-self", "report")}
targets:
  - name: shm-db
    kind: postgres
    address: ${adminUrl}/${database}?sslmode=disable
    identity: { template: "stint_shm_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: db-reader
    target: shm-db
    entitlement: { role: ${reader} }
    policy: shm-self
    risk: medium
  - name: db-reader-oncall
    target: shm-db
    entitlement: { role: ${reader} }
    policy: shm-self
    risk: high
  - name: db-minted
    target: shm-db
    entitlement: { role: ${minted}, dynamic: true }
    policy: shm-self
    risk: medium
eligibility:
  - role: db-reader
    users: [${users.join(", ")}]
  - role: db-reader-oncall
    users: [${users.join(", ")}]
  - role: db-minted
    users: [${users.join(", ")}]
`);
});

afterEach(() => disarmFailpoints());

afterAll(async () => {
  await h?.server.cleanup();
  if (!root) return;
  await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
  const roles = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
    `%${hex}%`,
  ]);
  for (const { rolname } of roles.rows) await root.query(`drop role if exists "${rolname}"`).catch(() => undefined);
  await root.end();
});

describe("a late revocation of an earlier activation, while the user holds a newer one", () => {
  it("a revocation delayed past the user activating again (its node died) leaves the newer activation its membership", async () => {
    const login = loginOf(ann);
    const first = await activate(ann);
    expect(await isMember(login)).toBe(true);
    // The revocation's node dies before it reaches the target: the row keeps its lease.
    armFailpoint("grant.revoke.before-target", "crash");
    await deactivate(ann);
    await h.drainOutbox();
    expect((await grantOf(first)).state).toBe("revoking");
    // Meanwhile the user activates again: the GRANT finds the membership already there.
    const second = await activate(ann);
    expect(await isMember(login)).toBe(true);
    // The lease runs out; another attempt of the old revocation runs.
    h.clock.advance(LEASE_MS + 1_000);
    await h.drainOutbox();
    expect((await grantOf(first)).state).toBe("revoked");
    expect(await state(second)).toBe("active");
    expect(await isMember(login), "the newer activation lost its membership to the old revocation").toBe(true);
    // The old grant's end is audited, saying the privilege stayed for the newer activation.
    const revoked = (await auditOf((await grantOf(first)).id)).filter((e) => e.action === "grant.revoked");
    expect(revoked).toHaveLength(1);
    expect(revoked[0]!.details.keptFor).toMatchObject({ requestId: second });
    // The reconciler sees nothing wrong (a minute later, the old grant is not "just ended" any more): the
    // membership is the newer activation's.
    h.clock.advance(60_000);
    expect(await driftOf(login)).toEqual([]);
    // And it goes with the newer activation.
    await deactivate(ann);
    await h.drainOutbox();
    expect(await isMember(login), "the membership outlived the last activation relying on it").toBe(false);
  });

  it("the revocation checked before the newer activation existed, and its REVOKE lands after the newer GRANT", async () => {
    const login = loginOf(ben);
    const first = await activate(ben);
    let second = "";
    // Between the revocation's checks and its call to the target: the user activates again, completely.
    armFailpoint("grant.revoke.before-target", async () => {
      second = await submit(ben);
      await h.drainOutbox();
      expect(await state(second)).toBe("active");
      expect(await isMember(login)).toBe(true);
    });
    await deactivate(ben);
    await h.drainOutbox();
    expect((await grantOf(first)).state).toBe("revoked");
    expect(await state(second)).toBe("active");
    expect(await isMember(login), "the newer activation lost its membership to the old revocation").toBe(true);
    // Audited: the old REVOKE landed, and the membership was put back for the newer activation.
    const secondGrant = (await grantOf(second)).id;
    const revoked = (await auditOf((await grantOf(first)).id)).find((e) => e.action === "grant.revoked");
    expect(revoked?.details.restoring).toEqual([secondGrant]);
    expect((await auditOf(secondGrant)).map((e) => e.action)).toContain("grant.restored");
    h.clock.advance(60_000);
    expect(await driftOf(login)).toEqual([]);
    await deactivate(ben);
    await h.drainOutbox();
    expect(await isMember(login)).toBe(false);
  });

  it("the old REVOKE lands after the newer GRANT and its node dies before saying so", async () => {
    const login = loginOf(ida);
    const first = await activate(ida);
    let second = "";
    armFailpoint("grant.revoke.before-target", async () => {
      second = await submit(ida);
      await h.drainOutbox();
      expect(await state(second)).toBe("active");
    });
    armFailpoint("grant.revoke.after-target", "crash");
    await deactivate(ida);
    await h.drainOutbox();
    // The window: the newer activation is active, the target lost its membership, and nothing is queued yet.
    expect(await state(second)).toBe("active");
    expect(await isMember(login)).toBe(false);
    expect((await grantOf(first)).state).toBe("revoking");
    // The lease runs out: the retry finds the newer activation active, keeps the membership and puts it back.
    h.clock.advance(LEASE_MS + 1_000);
    await h.drainOutbox();
    expect((await grantOf(first)).state).toBe("revoked");
    expect(await isMember(login), "the newer activation lost its membership to the old revocation").toBe(true);
    await deactivate(ida);
    await h.drainOutbox();
    expect(await isMember(login)).toBe(false);
  });

  it("the old REVOKE lands before the newer GRANT", async () => {
    const login = loginOf(cal);
    const first = await activate(cal);
    let second = "";
    // The user activates again while the old revocation is on its way to the target; the newer
    // provisioning runs only after the REVOKE.
    armFailpoint("grant.revoke.before-target", async () => {
      second = await submit(cal);
    });
    await deactivate(cal);
    await h.drainOutbox();
    expect((await grantOf(first)).state).toBe("revoked");
    expect(await state(second), JSON.stringify((await h.admin("GET", `/v1/activation-requests/${second}`)).body)).toBe(
      "active",
    );
    expect(await isMember(login)).toBe(true);
    await deactivate(cal);
    await h.drainOutbox();
    expect(await isMember(login)).toBe(false);
  });

  it("the safety-net revocation of a provisioning that was in flight does not strip the user's next activation", async () => {
    // Revoked while its provisioning was running: the end queues a forced revocation due after the attempt's
    // lease and a settling time (issue 13 finding 2). No crash, no outage: a user who activates again
    // within that minute and a half relies on the same membership.
    const login = loginOf(dee);
    const first = await submit(dee);
    armFailpoint("grant.provision.before-target", async () => {
      await revoke(first);
      await h.drainOutbox();
    });
    await h.drainOutbox();
    expect(await state(first)).toBe("revoked");
    expect(await isMember(login)).toBe(false);
    const second = await activate(dee);
    expect(await isMember(login)).toBe(true);
    h.clock.advance(LEASE_MS + 61_000);
    await h.drainOutbox();
    const safetyNet = await h.server.store.db
      .selectFrom("outbox")
      .select("status")
      .where("idempotency_key", "=", `revoke:${(await grantOf(first)).id}:provision-in-flight`)
      .executeTakeFirstOrThrow();
    expect(safetyNet.status).toBe("done");
    expect(await state(second)).toBe("active");
    expect(await isMember(login), "the newer activation lost its membership to the safety-net revocation").toBe(true);
    await deactivate(dee);
    await h.drainOutbox();
    expect(await isMember(login)).toBe(false);
  });

  it("two roles granting the same membership: ending one keeps it for the other, ending both removes it", async () => {
    const login = loginOf(eve);
    await activate(eve, "db-reader");
    await activate(eve, "db-reader-oncall");
    await deactivate(eve, "db-reader");
    await h.drainOutbox();
    expect(await isMember(login), "ending one role took the membership the other role's activation holds").toBe(true);
    // Neither role's view of the target shows drift (a minute later, the ended grant is not "just ended" any
    // more): the membership is the on-call activation's, and nothing removes it.
    h.clock.advance(60_000);
    expect(await driftOf(login)).toEqual([]);
    await h.drainOutbox();
    expect(await isMember(login)).toBe(true);
    await deactivate(eve, "db-reader-oncall");
    await h.drainOutbox();
    expect(await isMember(login)).toBe(false);
  });

  it("a Stint leftover is still removed by the reconciler once no activation relies on it", async () => {
    const login = loginOf(fay);
    await activate(fay, "db-reader");
    await activate(fay, "db-reader-oncall");
    await deactivate(fay, "db-reader-oncall");
    await h.drainOutbox();
    expect(await isMember(login)).toBe(true);
    await deactivate(fay, "db-reader");
    await h.drainOutbox();
    expect(await isMember(login)).toBe(false);
    // A GRANT that landed after everything else (a provisioning call that outlived its attempt).
    await root.query(`grant ${reader} to ${login}`);
    h.clock.advance(60_000);
    const drift = await driftOf(login);
    expect(drift.length).toBeGreaterThan(0);
    expect(drift.every((d) => d.kind === "unexpected" && d.action === "removing")).toBe(true);
    await h.drainOutbox();
    expect(await isMember(login)).toBe(false);
  });

  it("a newer activation that ends before it was ever active never keeps the old one's membership", async () => {
    // The old revocation is late; when it runs, the user's next activation is still provisioning (so nothing is
    // kept for it), and that activation is revoked before it becomes active: nothing may stay.
    const login = loginOf(gus);
    const first = await activate(gus);
    armFailpoint("grant.revoke.before-target", "crash");
    await deactivate(gus);
    await h.drainOutbox();
    const second = await submit(gus);
    armFailpoint("grant.provision.before-target", async () => {
      // Before the newer GRANT: the old revocation's lease runs out and it runs.
      h.clock.advance(LEASE_MS + 1_000);
      await h.drainOutbox();
      expect((await grantOf(first)).state).toBe("revoked");
      await revoke(second);
      await h.drainOutbox();
    });
    await h.drainOutbox();
    // Every safety net has run.
    h.clock.advance(LEASE_MS + 61_000);
    await h.drainOutbox();
    expect(await state(second)).toBe("revoked");
    expect(await isMember(login), "the membership outlived every activation relying on it").toBe(false);
  });

  it("minted logins (dynamic roles) are one per activation: the late revocation drops only its own", async () => {
    const first = await activate(hal, "db-minted");
    const firstLogin = (await grantOf(first)).login!;
    expect(await roleExists(firstLogin)).toBe(true);
    armFailpoint("grant.revoke.before-target", "crash");
    await deactivate(hal, "db-minted");
    await h.drainOutbox();
    const second = await activate(hal, "db-minted");
    const secondLogin = (await grantOf(second)).login!;
    expect(secondLogin).not.toBe(firstLogin);
    h.clock.advance(LEASE_MS + 1_000);
    await h.drainOutbox();
    expect(await roleExists(firstLogin)).toBe(false);
    expect(await roleExists(secondLogin)).toBe(true);
    expect(await isMember(secondLogin, minted)).toBe(true);
    await deactivate(hal, "db-minted");
    await h.drainOutbox();
    expect(await roleExists(secondLogin)).toBe(false);
  });
});
