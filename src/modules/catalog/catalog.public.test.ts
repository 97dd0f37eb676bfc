/**
 * The session-secret allowances other modules write through catalog.public.ts (the vault's `secret allow`, the
 * start's adoption and MACs, which the start runs once per database under its audit marker: see
 * test/security/legacy-allowances.test.ts): each is MACed over exactly what is written, so the vault's check at
 * session open accepts it for its own target and endpoint only; a MAC already there is never replaced.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppStore } from "../../db/index.js";
import { freshStore, type TestStore } from "../../testing/engines.js";
import { adoptSessionSecret, allowancesWithoutMac, allowSessionSecret, macLegacyAllowances } from "./catalog.public.js";
import { insertTarget } from "./catalog.store.js";
import { sessionSecretUsable } from "./custody.rules.js";

const key = randomBytes(32);
const otherKey = randomBytes(32);
const now = new Date("2026-12-06T10:00:00Z");
const A = "00000000-0000-4000-8000-00000000000a";
const B = "00000000-0000-4000-8000-00000000000b";

describe("catalog.public: session-secret allowances", () => {
  let t: TestStore;
  let store: AppStore;

  beforeAll(async () => {
    t = await freshStore("pglite");
    store = t.store;
    for (const [id, name] of [
      [A, "db-a"],
      [B, "db-b"],
    ] as const)
      await insertTarget(
        store.db,
        id,
        {
          name,
          kind: "postgres",
          address: `${name}:5432`,
          labels: {},
          credential: null,
          identity: { template: "{{name}}", map: {} },
          options: {},
        },
        now,
      );
  });
  afterAll(() => t.cleanup());

  const allowanceOf = (path: string) =>
    store.db
      .selectFrom("secret_target_allowances")
      .select(["target_id", "endpoint", "granted_by", "mac"])
      .where("path", "=", path)
      .executeTakeFirst();

  /** The vault's decision at session open, for `targetId` at `endpoint`, under `withKey`. */
  async function usable(path: string, targetId: string, endpoint: string, withKey = key) {
    const row = await allowanceOf(path);
    return sessionSecretUsable({
      key: withKey,
      path,
      targetId,
      endpoint,
      secret: { breakGlass: false },
      allowance: row ? { targetId: row.target_id, endpoint: row.endpoint, mac: row.mac } : null,
    });
  }

  it("an adopted allowance opens for its target at its endpoint only, and a second adoption changes nothing", async () => {
    const path = "targets/db-a/session";
    expect(await adoptSessionSecret(store.db, { path, targetId: A, endpoint: "E1", now }, key)).toBe(true);
    expect(await allowanceOf(path)).toMatchObject({ target_id: A, endpoint: "E1", granted_by: "upgrade" });
    expect(await usable(path, A, "E1")).toBeNull();
    expect(await usable(path, B, "E1")).toMatch(/not allowed for this target/);
    expect(await usable(path, A, "E2")).toMatch(/another address/);
    expect(await usable(path, A, "E1", otherKey)).toMatch(/did not make/);

    // Another node (or another target naming the same path) adopting after it: false, the first one stays.
    expect(await adoptSessionSecret(store.db, { path, targetId: B, endpoint: "E9", now }, key)).toBe(false);
    expect(await allowanceOf(path)).toMatchObject({ target_id: A, endpoint: "E1", granted_by: "upgrade" });
  });

  it("an operator's allowance replaces the target's own with one MACed for the new endpoint", async () => {
    const path = "targets/db-a/session";
    await allowSessionSecret(store.db, { path, targetId: A, endpoint: "E2", grantedBy: "admin", now }, key);
    expect(await allowanceOf(path)).toMatchObject({ target_id: A, endpoint: "E2", granted_by: "admin" });
    expect(await usable(path, A, "E2")).toBeNull();
    expect(await usable(path, A, "E1")).toMatch(/another address/);
  });

  it("the upgrade step MACs only allowances without a MAC: a MAC changed in the database stays refused", async () => {
    const legacy = "shared/legacy-session";
    const forged = "shared/forged-session";
    await store.db
      .insertInto("secret_target_allowances")
      .values([
        { path: legacy, target_id: B, endpoint: "E3", granted_by: "admin", created_at: now, mac: null },
        { path: forged, target_id: B, endpoint: "E4", granted_by: "admin", created_at: now, mac: "forged" },
      ])
      .execute();
    expect(await usable(legacy, B, "E3")).toMatch(/did not make/);
    // What a start after the upgrade reports (and leaves refused): the MAC-less rows, not the forged one.
    expect(await allowancesWithoutMac(store.db)).toEqual([{ path: legacy, target_id: B, endpoint: "E3" }]);

    // It answers what it MACed, for the start to audit with the step's marker; run again it finds nothing left.
    expect(await macLegacyAllowances(store.db, key)).toEqual([{ path: legacy, targetId: B, endpoint: "E3" }]);
    expect(await macLegacyAllowances(store.db, key)).toEqual([]);
    expect(await allowancesWithoutMac(store.db)).toEqual([]);

    expect(await usable(legacy, B, "E3")).toBeNull();
    expect((await allowanceOf(forged))?.mac).toBe("forged");
    expect(await usable(forged, B, "E4")).toMatch(/did not make/);
    expect(await usable("targets/db-a/session", A, "E2")).toBeNull();
  });
});
