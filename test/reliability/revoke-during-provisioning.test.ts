/**
 * Issue 13 finding 2: an admin revokes an activation while its provisioning is in flight; the revocation
 * runs first and finds nothing; the provisioning's GRANT then commits at the real PostgreSQL target and its
 * node dies (a failpoint crash: nothing after the target call runs, the outbox row keeps its lease). The
 * privilege must not stay: the retried attempt leaves a revocation behind; a provisioning that is never
 * retried is covered by the revocation queued with the end; and the reconciler removes privilege Stint
 * left for an ended grant even under `drift: report`, while still only reporting privilege granted
 * outside Stint.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { armFailpoint, disarmFailpoints, type FailpointName } from "../../src/lib/failpoints.js";
import { pgTarget, type PgTarget } from "../../src/testing/pg-target.js";
import { targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

/** The outbox runner's default lease: after it, another attempt takes over a crashed one. */
const LEASE_MS = 30_000;

let t: PgTarget;
let h: TargetsHarness;

/**
 * The sequence of the finding, up to the crash: provisioning reaches the target call; meanwhile an admin
 * revokes and the revocation runs (nothing to remove yet); the GRANT commits; the node dies at `crashAt`.
 */
async function revokeDuringProvisioningThenCrash(user: string, crashAt: FailpointName): Promise<string> {
  const res = await h.as(user, "POST", "/v1/activation-requests", {
    role: "db-reader",
    duration: "1h",
    reason: "investigating incident 4242 in production",
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const requestId = String(res.body.id);
  armFailpoint("grant.provision.before-target", async () => {
    const revoked = await h.admin("POST", `/v1/activation-requests/${requestId}/revoke`, { reason: "wrong account" });
    expect(revoked.body.state).toBe("revoked");
    await h.drainOutbox(); // the revocation runs now and finds nothing at the target
  });
  armFailpoint(crashAt, "crash");
  await h.server.outbox.runOnce();
  disarmFailpoints();
  const grant = await h.server.store.db
    .selectFrom("grants")
    .select(["id", "state"])
    .where("request_id", "=", requestId)
    .executeTakeFirstOrThrow();
  expect(grant.state).toBe("revoked");
  // The window of the finding: the grant is revoked in Stint, the target holds the privilege.
  expect(await t.isMember(t.loginOf(user))).toBe(true);
  return grant.id;
}

beforeAll(async () => {
  t = await pgTarget("rdp", ["ann", "ben", "cal", "dee", "eve"]);
  h = await targetsHarness();
  for (const user of t.users) await h.createUser(user);
  await h.apply(t.catalog("rdp-db", "db-report"));
});

afterEach(() => disarmFailpoints());

afterAll(async () => {
  await h?.server.cleanup();
  await t?.drop();
});

describe("a crash while provisioning an activation that was revoked meanwhile (issue 13 finding 2)", () => {
  it.each<[FailpointName, number]>([
    ["grant.provision.after-target", 0],
    ["grant.provision.before-follow-up", 1],
  ])("crashed at %s: the retried attempt leaves a revocation behind", async (crashAt, index) => {
    const user = t.users[index]!;
    await revokeDuringProvisioningThenCrash(user, crashAt);
    // The crashed attempt's lease runs out; the retry finds the grant ended (before the end's own
    // safety revocation is due, so this is the retry's doing).
    h.clock.advance(LEASE_MS + 1_000);
    await h.drainOutbox();
    expect(await t.isMember(t.loginOf(user))).toBe(false);
  });

  it("a provisioning never retried (its last attempt died) is covered by the revocation queued with the end", async () => {
    const user = t.users[2]!;
    const grantId = await revokeDuringProvisioningThenCrash(user, "grant.provision.after-target");
    // As if that was its last attempt and its settling attempts died too: the runner dead-letters it.
    await h.server.store.db
      .updateTable("outbox")
      .set({ max_attempts: 1 })
      .where("idempotency_key", "=", `provision:${grantId}`)
      .execute();
    h.clock.advance(LEASE_MS + 1_000);
    await h.drainOutbox();
    const provision = await h.server.store.db
      .selectFrom("outbox")
      .select("status")
      .where("idempotency_key", "=", `provision:${grantId}`)
      .executeTakeFirstOrThrow();
    expect(provision.status).toBe("dead");
    expect(await t.isMember(t.loginOf(user))).toBe(true);
    // Due once the crashed attempt's lease and a settling time are over.
    h.clock.advance(61_000);
    await h.drainOutbox();
    expect(await t.isMember(t.loginOf(user))).toBe(false);
  });

  it("the reconciler removes privilege Stint granted for an ended grant under drift: report; privilege granted outside Stint is only reported", async () => {
    const user = t.users[3]!;
    const outsider = t.users[4]!;
    const grantId = await revokeDuringProvisioningThenCrash(user, "grant.provision.after-target");
    // Neither safety net runs (as if the GRANT landed after both): only the reconciler is left.
    await h.server.store.db
      .deleteFrom("outbox")
      .where("idempotency_key", "like", `revoke:${grantId}:%`)
      .where("status", "=", "pending")
      .execute();
    await h.server.store.db
      .updateTable("outbox")
      .set({ max_attempts: 1 })
      .where("idempotency_key", "=", `provision:${grantId}`)
      .execute();
    h.clock.advance(LEASE_MS + 1_000);
    await h.drainOutbox();
    expect(await t.isMember(t.loginOf(user))).toBe(true);
    await t.root.query(`grant ${t.reader} to ${t.loginOf(outsider)}`);

    const res = await h.admin("POST", "/v1/reconcile", { target: "rdp-db" });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const drift = (res.body.items as { drift: { login: string; action: string }[] }[])[0]!.drift;
    expect(drift).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ login: t.loginOf(user), action: "removing" }),
        expect.objectContaining({ login: t.loginOf(outsider), action: "reported" }),
      ]),
    );
    await h.drainOutbox();
    expect(await t.isMember(t.loginOf(user))).toBe(false);
    expect(await t.isMember(t.loginOf(outsider))).toBe(true);
  });
});
