/**
 * The start's upgrade steps: changes of the data that follow a migration and trust the database as it was when it
 * was upgraded (re-sealing, adopting, MACing rows an older release wrote). Each runs once per database, closed by
 * its `upgrade.completed` event in the hash-chained log, so that a database writer cannot have it run again on rows
 * they wrote later. Any module's start step goes through here; the step's own writes are the caller's.
 */
import type { Transaction } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import { lockUpgrades } from "../../lib/db.js";
import { SYSTEM } from "../authz/authz.types.js";
import { upgradeCompleted } from "./audit.reads.js";
import type { AuditLog } from "./audit.service.js";

export function createUpgradeSteps(deps: {
  store: Pick<AppStore, "transaction">;
  audit: Pick<AuditLog, "append" | "sequencing" | "catchUp">;
}) {
  const { store, audit } = deps;
  return {
    /**
     * Runs a start's upgrade step once per database: under the upgrade lock (a node starting at the same time
     * waits, then finds the marker), unless the audit log holds the step's `upgrade.completed` event, and writes
     * that event in the step's transaction. The marker is in the hash chain: deleting it breaks `stint audit
     * verify`. False: the step ran before (on a fresh database the first start runs it with nothing to do).
     */
    async onceOnUpgrade(step: string, run: (tx: Transaction<Database>) => Promise<void>): Promise<boolean> {
      const ran = await store.transaction(async (tx) => {
        await lockUpgrades<Database>(tx);
        if (await upgradeCompleted(tx, step)) return false;
        await run(tx);
        await audit.append(
          tx,
          SYSTEM,
          { correlationId: "upgrade", sourceIp: null, userAgent: null },
          { action: "upgrade.completed", outcome: "success", subject: `upgrade:${step}`, details: { step } },
        );
        return true;
      });
      // Chained at once (once per database): a pending row could still be deleted unnoticed.
      if (ran && audit.sequencing === "background") await audit.catchUp();
      return ran;
    },
  };
}
