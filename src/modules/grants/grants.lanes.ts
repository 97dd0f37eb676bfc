/**
 * Outbox lanes of the grants module: every job that talks to a target runs in that target's lane
 * (`target:<id>`), so the outbox runner caps how many run at once per target and a slow or dead
 * target holds up only its own provisioning and revocations (issue 13, finding 3).
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { EnqueueInput, OutboxService } from "../outbox/index.js";

export function targetLane(targetId: string): string {
  return `target:${targetId}`;
}

/** The lane of a target's recovery probe: its own, so hanging calls in the target's lane never hold it up. */
export function probeLane(targetId: string): string {
  return `probe:${targetId}`;
}

/** The target a grants job talks to, read in the enqueuing transaction (payloads carry ids only). */
async function targetOf(tx: Kysely<Database>, payload: EnqueueInput["payload"]): Promise<string | undefined> {
  if (typeof payload.targetId === "string") return payload.targetId;
  if (typeof payload.grantId === "string") {
    const row = await tx
      .selectFrom("grants")
      .innerJoin("roles", "roles.id", "grants.role_id")
      .select("roles.target_id")
      .where("grants.id", "=", payload.grantId)
      .executeTakeFirst();
    return row?.target_id;
  }
  if (typeof payload.findingId === "string") {
    const row = await tx
      .selectFrom("drift_findings")
      .select("target_id")
      .where("id", "=", payload.findingId)
      .executeTakeFirst();
    return row?.target_id;
  }
  return undefined;
}

/** Wraps `enqueue` so each job the grants module queues gets the lane of its target. */
export function withTargetLanes(outbox: Pick<OutboxService, "enqueue">): Pick<OutboxService, "enqueue"> {
  return {
    async enqueue(tx, input) {
      if (input.lane !== undefined) return outbox.enqueue(tx, input);
      const targetId = await targetOf(tx, input.payload);
      return outbox.enqueue(tx, targetId === undefined ? input : { ...input, lane: targetLane(targetId) });
    },
  };
}
