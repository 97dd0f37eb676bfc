/**
 * On PostgreSQL the activation's transaction runs beside the target's change and commits only once the change
 * succeeded (grants.provision.ts, requests/provisioned.ts). What that must never do: show an activation before the
 * target holds the privilege, keep any of it when the target fails, or let a slow (or hanging) target hold the
 * request's locks, so that an administrator could not revoke it meanwhile.
 */
import { sql } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { armFailpoint, disarmFailpoints } from "../../lib/failpoints.js";
import { pgTarget, type PgTarget } from "../../testing/pg-target.js";
import { targetsHarness, type TargetsHarness } from "../../testing/targets-harness.js";
import { OVERLAP_MS } from "../requests/provisioned.js";

let t: PgTarget;
let h: TargetsHarness;

async function submit(user: string): Promise<string> {
  const res = await h.as(user, "POST", "/v1/activation-requests", {
    role: "db-reader",
    duration: "1h",
    reason: "investigating incident 4242 in production",
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  expect(res.body.state).toBe("provisioning");
  return String(res.body.id);
}

/**
 * The request's state and its `request.activated` events, chained or waiting: one statement, so one snapshot (the
 * background sequencer moves events from pending to chained meanwhile).
 */
async function seen(requestId: string): Promise<{ state: string; activatedEvents: number }> {
  const subject = `request:${requestId}`;
  const { rows } = await sql<{ state: string; n: string }>`
    select (select state from activation_requests where id = ${requestId}) as state,
      (select count(*) from audit_events where action = 'request.activated' and subject = ${subject})
      + (select count(*) from audit_pending where action = 'request.activated' and subject = ${subject}) as n`.execute(
    h.server.store.db,
  );
  return { state: rows[0]!.state, activatedEvents: Number(rows[0]!.n) };
}

/** `stint_provisioned_activations_total` for the postgres targets on `path` (0 before the first). */
const paths = async (path: string) =>
  (await h.metric("stint_provisioned_activations_total", { kind: "postgres", path })) ?? 0;

beforeAll(async () => {
  t = await pgTarget("ovl", ["ann", "ben", "cal"]);
  h = await targetsHarness({ engine: "postgres", backoff: { baseMs: 1, capMs: 1 } });
  for (const user of t.users) await h.createUser(user);
  await h.apply(t.catalog("ovl-db", "db-ovl"));
});

afterEach(() => disarmFailpoints());

afterAll(async () => {
  await h?.server.cleanup();
  await t?.drop();
});

describe("an activation written beside the target's change (PostgreSQL)", () => {
  it("is not visible until the target holds the privilege, then is active with its event", async () => {
    const user = t.users[0]!;
    const beside = await paths("beside_target");
    const requestId = await submit(user);
    let during: { member: boolean; state: string; activatedEvents: number } | undefined;
    armFailpoint("grant.provision.after-target", async () => {
      during = { member: await t.isMember(t.loginOf(user)), ...(await seen(requestId)) };
    });
    await h.drainOutbox();
    expect(during).toEqual({ member: true, state: "provisioning", activatedEvents: 0 });
    expect(await seen(requestId)).toEqual({ state: "active", activatedEvents: 1 });
    // Operators see how the activation ran.
    expect(await paths("beside_target")).toBe(beside + 1);
  });

  it("a target that fails keeps nothing of the activation; the retry activates it", async () => {
    const user = t.users[1]!;
    const requestId = await submit(user);
    armFailpoint("grant.provision.after-target", () => {
      throw new Error("the target's connection was lost");
    });
    await h.server.outbox.runOnce();
    expect(await seen(requestId)).toEqual({ state: "provisioning", activatedEvents: 0 });
    disarmFailpoints();
    h.clock.advance(60_000);
    await h.drainOutbox();
    expect(await seen(requestId)).toEqual({ state: "active", activatedEvents: 1 });
  });

  it(`a target slower than ${OVERLAP_MS} ms does not hold the request: an administrator revokes it meanwhile`, async () => {
    const user = t.users[2]!;
    const slow = await paths("after_slow_target");
    const requestId = await submit(user);
    let revoked: { status: number; state: unknown } | undefined;
    // The target's change has landed and its call has not returned yet: the revocation comes now and must not
    // wait for the call (held by the activation's locks, it would wait for ever: the call waits for it here).
    armFailpoint("grant.provision.after-target", async () => {
      const res = await h.admin("POST", `/v1/activation-requests/${requestId}/revoke`, { reason: "wrong account" });
      revoked = { status: res.status, state: res.body.state };
    });
    await h.drainOutbox();
    expect(revoked).toEqual({ status: 200, state: "revoked" });
    expect(await seen(requestId)).toEqual({ state: "revoked", activatedEvents: 0 });
    // Counted as what it was: an operator watching slow targets sees the rolled-back transaction.
    expect(await paths("after_slow_target")).toBe(slow + 1);
    // The privilege the late change left is taken away again.
    await h.drainOutbox();
    expect(await t.isMember(t.loginOf(user))).toBe(false);
  });
});
