/**
 * Grants outliving their basis (Warpgate GHSA-vv28-4wq5-g7q8: access kept working after the user or the role
 * assignment behind it was removed), and issue 12 finding 4: disabling a user did not end their access.
 *
 * Against the machine's real PostgreSQL (127.0.0.1:5432) as the target: an activation makes a login a member of a
 * real role; taking away what the activation stands on (the account, the eligibility, the group membership that
 * carried the eligibility) must take the membership away at the database, end the activation, cancel what is
 * pending, and an approval that comes afterwards must not make anything active again.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgTarget, type PgTarget } from "../../src/testing/pg-target.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer } from "../../src/testing/server.js";
import { targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";
import { until } from "../../src/testing/until.js";

const hex = randomBytes(4).toString("hex");
const adminUrl = "postgres://postgres@127.0.0.1:5432";
const user = (name: string) => `${name}${hex}`;
const alice = user("alice"); // active, then disabled
const bob = user("bob"); // pending, then disabled, then approved
const carol = user("carol"); // the approver
const dave = user("dave"); // pending, eligibility removed, then approved
const erin = user("erin"); // active, eligibility removed
const frank = user("frank"); // active through a group, removed from the group
const gina = user("gina"); // active, disabled, enabled again
const hank = user("hank"); // active past the end date of the eligibility
const everyone = [alice, bob, carol, dave, erin, frank, gina, hank];
/** The names `everyone` is made of: pgTarget makes the same `<name><hex>` users and a login for each. */
const NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank"];
const team = `team${hex}`;

/** The real PostgreSQL target: its database, reader role and a login per user. */
let db: PgTarget;
let h: TargetsHarness;

const loginOf = (name: string) => db.loginOf(name);
const isMember = (login: string) => db.isMember(login);

/** Polls the real server: revocation runs in the outbox after the ending transaction commits. */
async function eventuallyNotMember(login: string): Promise<void> {
  await until(
    `${login} is no longer a member of ${db.reader} at the database`,
    async () => {
      await h.drainOutbox();
      return !(await isMember(login));
    },
    10_000,
  );
}

async function request(id: unknown) {
  return (await h.admin("GET", `/v1/activation-requests/${String(id)}`)).body;
}

async function eligibilityId(role: string, subject: { principal?: string; group?: string }): Promise<string> {
  const list = await h.admin("GET", "/v1/eligibilities");
  const items = list.body.items as { id: string; role: string; principal: string | null; group: string | null }[];
  const found = items.find(
    (e) =>
      e.role === role &&
      (subject.principal === undefined || e.principal === subject.principal) &&
      (subject.group === undefined || e.group === subject.group),
  );
  if (!found) throw new Error(`no eligibility of ${JSON.stringify(subject)} for ${role}`);
  return found.id;
}

async function submit(name: string, role: string) {
  const res = await h.as(name, "POST", "/v1/activation-requests", {
    role,
    duration: "1h",
    reason: "investigating incident 4242 in production",
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  await h.drainOutbox();
  return res.body;
}

beforeAll(async () => {
  db = await pgTarget("basis", NAMES, hex);

  h = await targetsHarness();
  for (const name of everyone) await h.createUser(name);
  for (const name of [frank]) {
    const created = await h.admin("POST", "/v1/groups", { name: team });
    if (created.status !== 201 && created.status !== 409) throw new Error(JSON.stringify(created.body));
    expect((await h.admin("POST", `/v1/groups/${team}/members`, { principal: name })).status).toBe(200);
  }
  await h.apply(`
apiVersion: stint/v1
policies:
  - name: basis-self
    mfa: { required: false }
    maxDuration: 8h
  - name: basis-approved
    mfa: { required: false }
    maxDuration: 8h
    approval:
      stages:
        - approvers: { users: [${carol}] }
targets:
  - name: basis-db
    kind: postgres
    address: ${adminUrl}/${db.database}?sslmode=disable
    identity: { template: "stint_basis_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: basis-reader
    target: basis-db
    entitlement: { role: ${db.reader} }
    policy: basis-self
    risk: medium
  - name: basis-reader-approved
    target: basis-db
    entitlement: { role: ${db.reader} }
    policy: basis-approved
    risk: medium
eligibility:
  - role: basis-reader
    users: [${alice}, ${erin}, ${gina}]
    groups: [${team}]
  - role: basis-reader-approved
    users: [${bob}, ${dave}]
`);
});

afterAll(async () => {
  await h?.server.cleanup();
  await db?.drop();
});

describe("grants outliving their basis (Warpgate GHSA-vv28-4wq5-g7q8; issue 12 finding 4)", () => {
  it("disabling a user ends their active activation and takes the membership away at the real database", async () => {
    const active = await submit(alice, "basis-reader");
    expect((await request(active.id)).state).toBe("active");
    expect(await isMember(loginOf(alice))).toBe(true);

    const disabled = await h.admin("POST", `/v1/users/${alice}/disable`, { reason: "left the company today" });
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    // The activation ended in the disabling transaction, before any worker ran.
    const ended = await request(active.id);
    expect(ended.state).toBe("revoked");
    expect(String(ended.endReason)).toMatch(/disabled/);
    await eventuallyNotMember(loginOf(alice));

    const check = await h.admin("GET", `/v1/access/check?principal=${alice}&role=basis-reader`);
    if (check.status === 200) expect(check.body.allowed).toBe(false);
    const events = await h.admin("GET", "/v1/audit/events?limit=200&order=desc");
    const actions = (events.body.items as { action: string; subject: string }[])
      .filter((e) => e.subject === `request:${String(active.id)}`)
      .map((e) => e.action);
    expect(actions).toContain("request.revoked");
  });

  it("a pending request of a user disabled since is refused when approved, and never becomes active", async () => {
    const pending = await submit(bob, "basis-reader-approved");
    expect(pending.state).toBe("pending");
    expect((await h.admin("POST", `/v1/users/${bob}/disable`, { reason: "account compromised" })).status).toBe(200);
    expect((await request(pending.id)).state).toBe("cancelled");

    const approval = await h.as(carol, "POST", `/v1/activation-requests/${String(pending.id)}/approvals`, {
      reason: "looks fine to me",
    });
    expect(approval.status).toBeGreaterThanOrEqual(400);
    await h.drainOutbox();
    const after = await request(pending.id);
    expect(after.state).not.toMatch(/^(approved|provisioning|active)$/);
    expect(after.activatedAt).toBeNull();
    expect(await isMember(loginOf(bob))).toBe(false);
  });

  it("an eligibility removed while a request is pending: the approval does not activate it", async () => {
    const pending = await submit(dave, "basis-reader-approved");
    expect(pending.state).toBe("pending");
    const id = await eligibilityId("basis-reader-approved", { principal: dave });
    expect((await h.admin("DELETE", `/v1/eligibilities/${id}`, { reason: "moved to another team" })).status).toBe(200);

    const approval = await h.as(carol, "POST", `/v1/activation-requests/${String(pending.id)}/approvals`, {
      reason: "looks fine to me",
    });
    expect(approval.status).toBeGreaterThanOrEqual(400);
    await h.drainOutbox();
    const after = await request(pending.id);
    expect(after.state).not.toMatch(/^(approved|provisioning|active)$/);
    expect(after.activatedAt).toBeNull();
    expect(await isMember(loginOf(dave))).toBe(false);
  });

  it("removing the eligibility behind an active activation ends it at the database", async () => {
    const active = await submit(erin, "basis-reader");
    expect((await request(active.id)).state).toBe("active");
    expect(await isMember(loginOf(erin))).toBe(true);
    const id = await eligibilityId("basis-reader", { principal: erin });
    expect((await h.admin("DELETE", `/v1/eligibilities/${id}`, { reason: "no longer on call" })).status).toBe(200);
    const ended = await request(active.id);
    expect(ended.state).toBe("revoked");
    expect(String(ended.endReason)).toMatch(/eligib/);
    await eventuallyNotMember(loginOf(erin));
    // And it cannot be used again: a new request is refused.
    const again = await h.as(erin, "POST", "/v1/activation-requests", {
      role: "basis-reader",
      reason: "investigating incident 4242 in production",
    });
    expect(again.status).toBe(403);
  });

  it("removing the user from the group that carried the eligibility ends the activation", async () => {
    const active = await submit(frank, "basis-reader");
    expect((await request(active.id)).state).toBe("active");
    expect(await isMember(loginOf(frank))).toBe(true);
    expect((await h.admin("DELETE", `/v1/groups/${team}/members/${frank}`)).status).toBe(200);
    expect((await request(active.id)).state).toBe("revoked");
    await eventuallyNotMember(loginOf(frank));
  });

  it("a user disabled and enabled again does not get the ended activation back", async () => {
    const active = await submit(gina, "basis-reader");
    expect(await isMember(loginOf(gina))).toBe(true);
    expect((await h.admin("POST", `/v1/users/${gina}/disable`, { reason: "suspicious sign-ins" })).status).toBe(200);
    await eventuallyNotMember(loginOf(gina));
    expect((await h.admin("POST", `/v1/users/${gina}/enable`)).status).toBe(200);
    await h.drainOutbox();
    expect((await request(active.id)).state).toBe("revoked");
    expect(await isMember(loginOf(gina))).toBe(false);
    const roles = await h.as(gina, "GET", "/v1/me/roles");
    const mine = (roles.body.items as { role: string; state: string | null }[]).find((r) => r.role === "basis-reader");
    expect(mine?.state ?? null).toBeNull();
  });

  it("an activation does not outlive an eligibility that reaches its end date", async () => {
    const endsAt = new Date(h.clock.now().getTime() + 30 * 60_000).toISOString();
    const created = await h.admin("POST", "/v1/eligibilities", { role: "basis-reader", principal: hank, endsAt });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const active = await submit(hank, "basis-reader"); // asks for 1h, longer than the eligibility lasts
    expect((await request(active.id)).state).toBe("active");
    expect(await isMember(loginOf(hank))).toBe(true);
    h.clock.advance(31 * 60_000);
    await h.server.scheduler.runOnce();
    const ended = await request(active.id);
    expect(ended.state).toBe("revoked");
    expect(String(ended.endReason)).toMatch(/eligib/);
    await eventuallyNotMember(loginOf(hank));
  });
});

describe("grants outliving their basis, races (Warpgate GHSA-vv28-4wq5-g7q8; issue 12 finding 4)", () => {
  it("an approval racing a disable on the real PostgreSQL store never leaves an activation standing", async () => {
    const server = await testServer("postgres");
    try {
      await seedUser(server, "approver", { groups: ["leads"] });
      const rounds = 12;
      for (let i = 0; i < rounds; i++) await seedUser(server, `racer${i}`, { groups: ["racers"] });
      await seedRole(server, {
        name: "raced",
        policy: { mfa: { required: false }, approval: { stages: [{ approvers: { groups: ["leads"] } }] } },
        eligibleGroups: ["racers"],
      });
      const approve = actAs(server, "approver");
      for (let i = 0; i < rounds; i++) {
        const name = `racer${i}`;
        const submitted = await actAs(server, name)("POST", "/v1/activation-requests", {
          role: "raced",
          reason: "investigating incident 4242 in production",
        });
        expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
        const id = String(submitted.body.id);
        // Both start together; whichever commits first, the other must see it.
        const [approval, disable] = await Promise.all([
          approve("POST", `/v1/activation-requests/${id}/approvals`, { reason: "fine" }),
          server.app.inject({
            method: "POST",
            url: `/v1/users/${name}/disable`,
            headers: { authorization: server.adminAuth },
            payload: { reason: "left" },
          }),
        ]);
        // Neither fails on a deadlock: both take the request row before the audit head.
        expect(disable.statusCode, disable.body).toBe(200);
        expect([200, 409]).toContain(approval.status);
        const row = await server.store.db
          .selectFrom("activation_requests")
          .select(["state"])
          .where("id", "=", id)
          .executeTakeFirstOrThrow();
        expect(["cancelled", "revoked"]).toContain(row.state);
        const grants = await server.store.db
          .selectFrom("grants")
          .select("state")
          .where("request_id", "=", id)
          .execute();
        for (const g of grants) expect(g.state).not.toBe("active");
      }
    } finally {
      await server.cleanup();
    }
  });
});
