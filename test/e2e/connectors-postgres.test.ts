/**
 * Acceptance against the machine's real PostgreSQL: activation gives a login a
 * role it really uses, expiry takes it away and ends its open connection; drift
 * made behind Stint's back is found and removed; a standing superuser is
 * discovered and converted into eligibility.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const hex = randomBytes(4).toString("hex");
const database = `stint_e2e_${hex}`;
const reader = `stint_e2e_reader_${hex}`;
const adminUrl = "postgres://postgres@127.0.0.1:5432";
// Stint users; at the database they are stint_e2e_<name> (the target's identity template).
const alice = `alice${hex}`;
const bob = `bob${hex}`;
const carol = `carol${hex}`;
const loginOf = (user: string) => `stint_e2e_${user}`;

let root: pg.Client;
let h: TargetsHarness;
const clients: pg.Client[] = [];

async function connectAs(login: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: `postgres://${login}@127.0.0.1:5432/${database}` });
  client.on("error", () => undefined); // a terminated backend reports here too
  await client.connect();
  clients.push(client);
  return client;
}

/** What a user sees: a fresh connection as the login, then the query. */
async function freshSelect(login: string): Promise<string[]> {
  const client = await connectAs(login);
  try {
    const result = await client.query<{ name: string }>("select name from payroll order by name");
    return result.rows.map((r) => r.name);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function isMember(login: string, role: string): Promise<boolean> {
  const result = await root.query(
    `select 1 from pg_auth_members m join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member
      where r.rolname = $1 and u.rolname = $2`,
    [role, login],
  );
  return result.rowCount === 1;
}

async function isSuperuser(login: string): Promise<boolean> {
  const result = await root.query<{ rolsuper: boolean }>("select rolsuper from pg_roles where rolname = $1", [login]);
  return result.rows[0]?.rolsuper === true;
}

beforeAll(async () => {
  root = new pg.Client({ connectionString: `${adminUrl}/postgres` });
  await root.connect();
  await root.query(`create database ${database}`);
  for (const user of [alice, bob, carol]) await root.query(`create role ${loginOf(user)} login`);
  await root.query(`create role ${reader} nologin`);
  await root.query(`alter role ${loginOf(carol)} superuser`);
  const db = new pg.Client({ connectionString: `${adminUrl}/${database}` });
  await db.connect();
  await db.query("create table payroll (name text not null, salary integer not null)");
  await db.query("insert into payroll values ('ada', 100), ('grace', 120)");
  await db.query(`revoke all on payroll from public`);
  await db.query(`grant select on payroll to ${reader}`);
  await db.end();

  h = await targetsHarness();
  for (const user of [alice, bob, carol]) await h.createUser(user);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("pg-self")}${selfServicePolicy("pg-strict", "remove")}
targets:
  - name: app-db
    kind: postgres
    address: ${adminUrl}/${database}?sslmode=disable
    identity: { template: "stint_e2e_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: app-db-reader
    target: app-db
    entitlement: { role: ${reader} }
    policy: pg-self
    risk: medium
  - name: app-db-reader-strict
    target: app-db
    entitlement: { role: ${reader} }
    policy: pg-strict
    risk: medium
  - name: app-db-superuser
    target: app-db
    entitlement: { attribute: SUPERUSER }
    policy: pg-self
    risk: high
eligibility:
  - role: app-db-reader
    users: [${alice}]
`);
});

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => undefined);
  await h?.server.cleanup();
  if (!root) return;
  await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
  for (const role of [...[alice, bob, carol].map(loginOf), reader])
    await root.query(`drop role if exists ${role}`).catch(() => undefined);
  await root.end();
});

describe("PostgreSQL target", () => {
  it("activation grants the role at the database; expiry revokes it and ends the open connection", async () => {
    await expect(freshSelect(loginOf(alice))).rejects.toThrow(/permission denied/);

    const afterTarget = { kind: "postgres", path: "after_target" };
    const before = (await h.metric("stint_provisioned_activations_total", afterTarget)) ?? 0;
    const request = await h.activate(alice, "app-db-reader");
    expect(request.state).toBe("active");
    // On the embedded store the activation's transaction runs after the target's change, and says so.
    expect(await h.metric("stint_provisioned_activations_total", afterTarget)).toBe(before + 1);
    expect(await freshSelect(loginOf(alice))).toEqual(["ada", "grace"]);
    const open = await connectAs(loginOf(alice));
    expect((await open.query("select count(*)::int as n from payroll")).rows[0].n).toBe(2);

    await h.expireAll();
    const after = await h.admin("GET", `/v1/activation-requests/${String(request.id)}`);
    expect(after.body.state).toBe("expired");
    // The connection that held the privilege is gone, and a new one is refused.
    await expect(open.query("select count(*) from payroll")).rejects.toThrow();
    await expect(freshSelect(loginOf(alice))).rejects.toThrow(/permission denied/);
    expect(await isMember(loginOf(alice), reader)).toBe(false);

    const events = await h.admin("GET", "/v1/audit/events?limit=200");
    const actions = (events.body.items as { action: string; details: Record<string, unknown> }[]).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["request.activated", "request.expired", "grant.revoked"]));
  });

  it("a privilege granted behind Stint's back is reported in one reconcile and removed when the policy says so", async () => {
    // The role whose policy only reports drift: found, audited, counted, left in place.
    await root.query(`grant ${reader} to ${loginOf(bob)}`);
    const first = await h.admin("POST", "/v1/reconcile", { target: "app-db" });
    expect(first.status).toBe(200);
    const [report] = first.body.items as {
      drift: { role: string; login: string; kind: string; action: string; new: boolean }[];
    }[];
    // Both roles grant the same database role: the reporting one reports, the strict one removes.
    expect(report!.drift).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          role: "app-db-reader",
          login: loginOf(bob),
          kind: "unexpected",
          action: "reported",
          new: true,
        }),
        expect.objectContaining({
          role: "app-db-reader-strict",
          login: loginOf(bob),
          kind: "unexpected",
          action: "removing",
          new: true,
        }),
      ]),
    );
    // The gauge counts every open finding at the target (the standing superuser carol too, until converted).
    const unexpected = report!.drift.filter((d) => d.kind === "unexpected").length;
    expect(unexpected).toBeGreaterThanOrEqual(2);
    expect(await h.metric("stint_privilege_drift", { target: "app-db", kind: "unexpected" })).toBe(unexpected);
    const events = await h.admin("GET", "/v1/audit/events?limit=200");
    const detected = (events.body.items as { action: string; details: Record<string, unknown> }[]).filter(
      (e) => e.action === "drift.detected" && e.details.login === loginOf(bob),
    );
    expect(detected).toHaveLength(2);

    // The strict policy's removal runs from the outbox.
    await h.drainOutbox();
    expect(await isMember(loginOf(bob), reader)).toBe(false);

    // The next cycle sees nothing: both findings close, the gauge goes back to zero, nothing is reported twice.
    const second = await h.admin("POST", "/v1/reconcile", { target: "app-db" });
    const [again] = second.body.items as {
      drift: { login: string; new: boolean }[];
      resolved: { role: string; login: string }[];
    }[];
    expect(again!.drift.filter((d) => d.login === loginOf(bob))).toEqual([]);
    expect(again!.resolved).toEqual([expect.objectContaining({ role: "app-db-reader", login: loginOf(bob) })]);
    expect(await h.metric("stint_privilege_drift", { target: "app-db", kind: "unexpected" })).toBe(unexpected - 2);
  });

  it("an active activation whose privilege vanished at the target is reported as missing and provisioned again", async () => {
    const request = await h.activate(alice, "app-db-reader");
    expect(request.state).toBe("active");
    await root.query(`revoke ${reader} from ${loginOf(alice)}`);
    const res = await h.admin("POST", "/v1/reconcile", { target: "app-db" });
    const [report] = res.body.items as { drift: { login: string; kind: string; action: string }[] }[];
    expect(report!.drift).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ login: loginOf(alice), kind: "missing", action: "reprovisioning" }),
      ]),
    );
    await h.drainOutbox();
    expect(await freshSelect(loginOf(alice))).toEqual(["ada", "grace"]);
    await h.expireAll();
    expect(await isMember(loginOf(alice), reader)).toBe(false);
  });

  it("discovery lists the standing superuser; converting makes the user eligible and removes the superuser bit", async () => {
    const discovery = await h.admin("GET", "/v1/targets/app-db/discovery");
    expect(discovery.status).toBe(200);
    const found = (discovery.body.items as { login: string; privilege: string; principal: string | null }[]).filter(
      (a) => a.login === loginOf(carol),
    );
    expect(found).toEqual([
      expect.objectContaining({
        privilege: expect.stringMatching(/superuser/i),
        principal: carol,
        entitlement: { attribute: "SUPERUSER" },
      }),
    ]);

    const dryRun = await h.admin("POST", "/v1/targets/app-db/discovery/conversions", {
      role: "app-db-superuser",
      logins: [loginOf(carol)],
      dryRun: true,
      reason: "phase two: no standing superusers",
    });
    expect(dryRun.status, JSON.stringify(dryRun.body)).toBe(200);
    expect(dryRun.body.converted).toEqual([expect.objectContaining({ login: loginOf(carol), principal: carol })]);
    await h.drainOutbox();
    expect(await isSuperuser(loginOf(carol))).toBe(true);
    expect((await h.as(carol, "GET", "/v1/me/roles")).body.items).toEqual([]);

    const converted = await h.admin("POST", "/v1/targets/app-db/discovery/conversions", {
      role: "app-db-superuser",
      logins: [loginOf(carol)],
      reason: "phase two: no standing superusers",
    });
    expect(converted.status).toBe(200);
    await h.drainOutbox();
    expect(await isSuperuser(loginOf(carol))).toBe(false);
    const roles = (await h.as(carol, "GET", "/v1/me/roles")).body.items as { role: string }[];
    expect(roles.map((r) => r.role)).toEqual(["app-db-superuser"]);

    // Eligible now, so the superuser bit comes back only through an activation, and goes with it.
    const request = await h.activate(carol, "app-db-superuser");
    expect(request.state).toBe("active");
    expect(await isSuperuser(loginOf(carol))).toBe(true);
    await h.expireAll();
    expect(await isSuperuser(loginOf(carol))).toBe(false);

    const events = await h.admin("GET", "/v1/audit/events?limit=300");
    const actions = (events.body.items as { action: string }[]).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["target.discovered", "standing.converted", "standing.removed"]));
  });

  it("a target that refuses provisioning fails the activation with the target's message", async () => {
    await h.apply(`
apiVersion: stint/v1
roles:
  - name: app-db-ghost
    target: app-db
    entitlement: { role: stint_e2e_no_such_role_${hex} }
    policy: pg-self
    risk: medium
eligibility:
  - role: app-db-ghost
    users: [${bob}]
`);
    const request = await h.activate(bob, "app-db-ghost");
    expect(request.state).toBe("failed");
    expect(String(request.endReason)).toMatch(/does not exist/);
  });
});
