/**
 * Read-only questions other modules ask of the chained log (SIEM streaming, and anomaly alerts through it), so
 * that they do not read the audit tables themselves. Only chained events, but for `upgradeCompleted` (the start's
 * upgrade markers, which a node that started just before may not have chained yet).
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import * as auditStore from "./audit.store.js";
import type { AuditEvent } from "./audit.types.js";

type Q = Kysely<Database>;

/** Chained events after `afterSeq`, in seq order, `limit` of them. */
export async function chainedEventsAfter(db: Q, afterSeq: number, limit: number): Promise<AuditEvent[]> {
  const rows = await auditStore.pageFrom(db, afterSeq, limit);
  return rows.map(auditStore.toEvent);
}

/** The chain's head: the last chained seq and its hash. */
export function chainHead(db: Q): Promise<{ seq: number; hash: string }> {
  return auditStore.readHead(db);
}

/** The time of the chained event at `seq`, or null when there is none. */
export async function chainedEventTime(db: Q, seq: number): Promise<Date | null> {
  const { rows } = await sql<{ time: Date | string }>`select time from audit_events where seq = ${seq}`.execute(db);
  return rows[0] ? new Date(rows[0].time) : null;
}

/**
 * Whether the log holds the `upgrade.completed` event of a start's upgrade step (`details.step`), chained or still
 * pending (committed by a node that started just before). A pending row's MAC is not checked here: a forged one
 * could only make the caller skip its upgrade; the genuine marker, once chained, cannot be removed without
 * breaking `stint audit verify`.
 */
export async function upgradeCompleted(db: Q, step: string): Promise<boolean> {
  const { rows } = await sql<{ found: number }>`
    select 1 as found from audit_events where action = 'upgrade.completed' and details->>'step' = ${step}
    union all
    select 1 as found from audit_pending where action = 'upgrade.completed' and details->>'step' = ${step}
    limit 1`.execute(db);
  return rows.length > 0;
}
