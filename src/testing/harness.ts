/** Test support: a migrated store, keyring and audit log on a given engine. */
import { randomBytes } from "node:crypto";
import type { Engine } from "../lib/db.js";
import { manualClock } from "../lib/clock.js";
import { loadKeyring } from "../modules/keys/keys.service.js";
import { createAuditLog } from "../modules/audit/audit.service.js";
import { freshStore } from "./engines.js";

export async function auditHarness(
  engine: Engine,
  options: { checkpointEvery?: number; sequencing?: "inline" | "background" } = {},
) {
  const t = await freshStore(engine);
  const clock = manualClock("2026-03-01T09:00:00Z");
  const masterKey = randomBytes(32);
  const keyring = await loadKeyring({ store: t.store, masterKey, clock });
  const audit = createAuditLog({
    store: t.store,
    keyring,
    clock,
    checkpointEvery: options.checkpointEvery ?? 1000,
    ...(options.sequencing && { sequencing: options.sequencing }),
  });
  return { ...t, clock, masterKey, keyring, audit };
}
