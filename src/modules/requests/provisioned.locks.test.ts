/**
 * The activation's statement (`provisioned.store.ts`) runs beside the target call on PostgreSQL and its transaction
 * waits for the minted login's password to be stored (grants.provision.ts). That insert references the grant, so it
 * takes a key-share lock on it: the activation's row locks must not hold it up (with `FOR UPDATE` they did, and the
 * activation sat out `OVERLAP_MS` before being written again: the dynamic-login benchmark's 285 ms tail).
 */
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgTarget, type PgTarget } from "../../testing/pg-target.js";
import { targetsHarness, type TargetsHarness } from "../../testing/targets-harness.js";
import { activateProvisioned } from "./provisioned.store.js";

let t: PgTarget;
let h: TargetsHarness;

beforeAll(async () => {
  t = await pgTarget("pvl", ["ann"]);
  h = await targetsHarness({ engine: "postgres" });
  for (const user of t.users) await h.createUser(user);
  await h.apply(t.catalog("pvl-db", "db-pvl"));
  // A secret, so that the vault has a key to seal with (the password's row names one).
  const put = await h.admin("PUT", "/v1/secrets/pvl%2Fprobe", {
    kind: "password",
    value: "probe",
    platformRoles: ["admin"],
  });
  expect(put.status, JSON.stringify(put.body)).toBeLessThan(300);
});

afterAll(async () => {
  await h?.server.cleanup();
  await t?.drop();
});

class RolledBack extends Error {}

describe("the provisioning worker's activation statement (PostgreSQL)", () => {
  it("holds no lock that keeps a minted login's password from being stored beside it", async () => {
    const res = await h.as(t.users[0]!, "POST", "/v1/activation-requests", {
      role: "db-reader",
      duration: "1h",
      reason: "investigating incident 4242 in production",
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const { id: grantId } = await h.server.store.db
      .selectFrom("grants")
      .select("id")
      .where("request_id", "=", String(res.body.id))
      .executeTakeFirstOrThrow();
    const stored = await h.server.store
      .transaction(async (tx) => {
        const done = await activateProvisioned(tx, grantId, new Date(), null);
        expect(done?.activated).toBe(true);
        // Another connection, while the activation's transaction is open: refused after 2 s if it must wait.
        const inserted = await h.server.store.transaction(async (other) => {
          await sql`set local lock_timeout = '2s'`.execute(other);
          const result = await sql`insert into grant_credentials (grant_id, login, ciphertext, wrapped_key,
              kek_version, created_at)
            select ${grantId}, 'stint_pvl_probe', 'c', 'k', version, now() from vault_keks
            order by version desc limit 1`.execute(other);
          return Number(result.numAffectedRows);
        });
        throw new RolledBack(String(inserted));
      })
      .catch((error: unknown) => (error instanceof RolledBack ? Number(error.message) : Promise.reject(error)));
    expect(stored).toBe(1);
  });
});
