import { afterEach, describe, expect, it } from "vitest";
import { manualClock } from "../../lib/clock.js";
import { ENGINES, freshStore, type TestStore } from "../../testing/engines.js";
import { AuditKeyMissingError, loadKeyring, MasterKeyMismatchError } from "./keys.service.js";

const masterKey = Buffer.alloc(32, 3);

describe.each(ENGINES)("keyring on %s", (engine) => {
  let t: TestStore | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it("mints each purpose's key once and loads the same keys again", async () => {
    t = await freshStore(engine);
    const clock = manualClock("2026-12-04T12:00:00Z");
    const first = await loadKeyring({ store: t.store, masterKey, clock });
    const second = await loadKeyring({ store: t.store, masterKey, clock });
    expect(second.current("audit").id).toBe(first.current("audit").id);
    expect(second.current("token").id).toBe(first.current("token").id);
    const signed = first.signDetached("audit", "head");
    expect(second.verifyDetached("audit", signed.keyId, "head", signed.signature)).toBe(true);
    await expect(loadKeyring({ store: t.store, masterKey: Buffer.alloc(32, 4), clock })).rejects.toBeInstanceOf(
      MasterKeyMismatchError,
    );
  });

  it("refuses to mint a new audit key over a log whose checkpoints an earlier key signed (a database writer removed it)", async () => {
    t = await freshStore(engine);
    const clock = manualClock("2026-12-04T12:00:00Z");
    const keyring = await loadKeyring({ store: t.store, masterKey, clock });
    const signed = keyring.signDetached("audit", "checkpoint");
    await t.store.db
      .insertInto("audit_checkpoints")
      .values({
        seq: 1000,
        hash: "h",
        key_id: signed.keyId,
        signature: signed.signature,
        signed_at: clock.now(),
        every: 1000,
      })
      .execute();
    await t.store.db.deleteFrom("signing_keys").where("purpose", "=", "audit").execute();

    await expect(loadKeyring({ store: t.store, masterKey, clock })).rejects.toBeInstanceOf(AuditKeyMissingError);
    const left = await t.store.db.selectFrom("signing_keys").select("id").where("purpose", "=", "audit").execute();
    expect(left).toEqual([]);
  });
});
