/** SQL of SIEM streaming: the per-destination cursor and lease (`siem_cursors`), and the chained events to send. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { AuditEvent } from "../audit/audit.types.js";
import { chainedEventsAfter, chainedEventTime, chainHead } from "../audit/audit.reads.js";

type Q = Kysely<Database>;

export interface CursorRow {
  destination: string;
  seq: number;
  checkpointSeq: number;
  holder: string | null;
  leaseExpiresAt: Date;
  deliveredAt: Date | null;
}

interface RawCursor {
  destination: string;
  seq: string | number;
  checkpoint_seq: string | number;
  holder: string | null;
  lease_expires_at: Date | string;
  delivered_at: Date | string | null;
}

function toCursor(row: RawCursor): CursorRow {
  return {
    destination: row.destination,
    seq: Number(row.seq),
    checkpointSeq: Number(row.checkpoint_seq),
    holder: row.holder,
    leaseExpiresAt: new Date(row.lease_expires_at),
    deliveredAt: row.delivered_at === null ? null : new Date(row.delivered_at),
  };
}

/** Creates the destination's cursor if it has none: at 0, or at the chain's head (`startAt: head`). */
export async function ensureCursor(db: Q, destination: string, startAt: "beginning" | "head"): Promise<void> {
  if (startAt === "head")
    await sql`insert into siem_cursors (destination, seq, checkpoint_seq)
      select ${destination}, seq, seq from audit_head where id = 1
      on conflict (destination) do nothing`.execute(db);
  else await sql`insert into siem_cursors (destination) values (${destination}) on conflict do nothing`.execute(db);
}

export async function readCursors(db: Q): Promise<CursorRow[]> {
  const { rows } = await sql<RawCursor>`select destination, seq, checkpoint_seq, holder, lease_expires_at, delivered_at
    from siem_cursors order by destination`.execute(db);
  return rows.map(toCursor);
}

export async function readCursor(db: Q, destination: string): Promise<CursorRow | undefined> {
  const { rows } = await sql<RawCursor>`select destination, seq, checkpoint_seq, holder, lease_expires_at, delivered_at
    from siem_cursors where destination = ${destination}`.execute(db);
  return rows[0] ? toCursor(rows[0]) : undefined;
}

/**
 * Takes or renews the destination's lease for `holder` until the database's now() + ttlMs when it is free,
 * expired or held by `holder` already. True when `holder` holds it now.
 */
export async function takeLease(db: Q, destination: string, holder: string, ttlMs: number): Promise<boolean> {
  const { rows } = await sql<{ holder: string }>`update siem_cursors
    set holder = ${holder}, lease_expires_at = now() + make_interval(secs => ${ttlMs / 1000})
    where destination = ${destination}
      and (holder = ${holder} or holder is null or lease_expires_at < now())
    returning holder`.execute(db);
  return rows.length === 1;
}

export async function releaseLease(db: Q, destination: string, holder: string): Promise<void> {
  await sql`update siem_cursors set holder = null, lease_expires_at = 'epoch'
    where destination = ${destination} and holder = ${holder}`.execute(db);
}

/**
 * Moves the cursor forward and renews the lease, only while the row still names `holder`: a node whose
 * lease another node took moves nothing. A lease that merely ran out (a long send, a paused process) with
 * nobody taking it over is still this node's: nobody else can have delivered meanwhile, since taking it
 * writes the taker's name. True when it moved (or stood there already).
 */
export async function advance(
  db: Q,
  destination: string,
  holder: string,
  to: { seq: number; checkpointSeq: number },
  ttlMs: number,
): Promise<boolean> {
  const { rows } = await sql<{ destination: string }>`update siem_cursors
    set seq = greatest(seq, ${to.seq}), checkpoint_seq = greatest(checkpoint_seq, ${to.checkpointSeq}),
      delivered_at = now(), updated_at = now(), lease_expires_at = now() + make_interval(secs => ${ttlMs / 1000})
    where destination = ${destination} and holder = ${holder}
    returning destination`.execute(db);
  return rows.length === 1;
}

/** Chained events after `afterSeq`, in seq order, `limit` of them (only what is chained: never pending rows). */
export function eventsAfter(db: Q, afterSeq: number, limit: number): Promise<AuditEvent[]> {
  return chainedEventsAfter(db, afterSeq, limit);
}

/** The chain's head, and the time of the first event after `seq` (null when none is). */
export async function lagFrom(db: Q, seq: number): Promise<{ headSeq: number; nextTime: Date | null }> {
  const head = await chainHead(db);
  if (Number(head.seq) <= seq) return { headSeq: Number(head.seq), nextTime: null };
  return { headSeq: Number(head.seq), nextTime: await chainedEventTime(db, seq + 1) };
}
