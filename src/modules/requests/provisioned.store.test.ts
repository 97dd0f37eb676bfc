/**
 * The activation's statement (`activateProvisioned`) turns the WAL flush wait off for the transaction that activates
 * (synchronous_commit off, set by the statement itself: no round trip more), and for that transaction only: one that
 * activates nothing, and every later transaction on the same connection, keep the synchronous commit that the
 * credentials read's audit event and the password handed out after it rely on.
 */
import { randomBytes } from "node:crypto";
import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../db/index.js";
import type { TargetsHarness } from "../../testing/targets-harness.js";
import type { WebhookEndpoint } from "../../testing/webhook-endpoint.js";
import { cloudIamHarness } from "../../testing/webhook-target.js";
import { activateProvisioned } from "./provisioned.store.js";

let h: TargetsHarness;
let endpoint: WebhookEndpoint;

beforeAll(async () => {
  ({ h, endpoint } = await cloudIamHarness(`whsec-${randomBytes(16).toString("hex")}`, {
    role: { name: "iam-reader", risk: "medium" },
    users: ["ann"],
    signed: false,
  }));
});

afterAll(async () => {
  await h?.server.cleanup();
  await endpoint?.close();
});

const syncCommit = async (tx: Kysely<Database>) =>
  (await sql<{ s: string }>`select current_setting('synchronous_commit') as s`.execute(tx)).rows[0]!.s;

describe("the activation's commit", () => {
  it("does not wait for the WAL flush when it activates, and only then", async () => {
    // Submitted, not provisioned: the outbox is run by hand and is not.
    const submitted = await h.as("ann", "POST", "/v1/activation-requests", {
      role: "iam-reader",
      duration: "10m",
      reason: "investigating incident 4242 in production",
    });
    expect(submitted.status).toBe(201);
    const { id: grantId } = await h.server.store.db
      .selectFrom("grants")
      .select("id")
      .where("request_id", "=", String(submitted.body.id))
      .executeTakeFirstOrThrow();
    const db = h.server.store;
    expect(await db.transaction(syncCommit)).toBe("on");

    const activating = await db.transaction(async (tx) => {
      const done = await activateProvisioned(tx, grantId, h.clock.now(), null);
      return { activated: done?.activated, setting: await syncCommit(tx) };
    });
    expect(activating).toEqual({ activated: true, setting: "off" });
    const request = await h.admin("GET", `/v1/activation-requests/${String(submitted.body.id)}`);
    expect(request.body.state).toBe("active");

    // Active already: the same statement activates nothing and leaves the commit synchronous.
    const again = await db.transaction(async (tx) => {
      const done = await activateProvisioned(tx, grantId, h.clock.now(), null);
      return { activated: done?.activated, setting: await syncCommit(tx) };
    });
    expect(again).toEqual({ activated: false, setting: "on" });
    // Nothing carried over to later transactions.
    expect(await db.transaction(syncCommit)).toBe("on");
  });
});
