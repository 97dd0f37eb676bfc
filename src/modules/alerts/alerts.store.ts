/**
 * SQL of anomaly alerts: what the rules learned per key (`alert_state`), the alerts, and the consumer's cursor
 * and lease, which are the SIEM deliverer's (`siem_cursors`, under a name no destination can take).
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import * as siem from "../siem/index.js";
import type { AlertAction, AlertRule, AlertSeverity, KeyState, LearnedState } from "./alerts.types.js";

type Q = Kysely<Database>;

/** The consumer's row in `siem_cursors`: destination names have no colon, so none collides with it. */
export const CONSUMER = "alerts:anomaly";

export const ensureCursor = (db: Q, startAt: "beginning" | "head") => siem.ensureCursor(db, CONSUMER, startAt);
export const readCursor = (db: Q) => siem.readCursor(db, CONSUMER);
export const takeLease = (db: Q, holder: string, ttlMs: number) => siem.takeLease(db, CONSUMER, holder, ttlMs);
export const releaseLease = (db: Q, holder: string) => siem.releaseLease(db, CONSUMER, holder);
/** Moves the cursor to `seq` only while this node holds the lease (false: another node took it). */
export const advance = (tx: Q, holder: string, seq: number, ttlMs: number) =>
  siem.advance(tx, CONSUMER, holder, { seq, checkpointSeq: 0 }, ttlMs);
export const eventsAfter = siem.eventsAfter;
export const lagFrom = siem.lagFrom;

export async function loadStates(db: Q, keys: readonly string[]): Promise<Map<string, KeyState>> {
  const out = new Map<string, KeyState>();
  if (keys.length === 0) return out;
  const { rows } = await sql<{ key: string; seq: string | number; state: LearnedState | string }>`
    select key, seq, state from alert_state where key = any(${sql.val([...keys])}::text[]) for update`.execute(db);
  for (const row of rows)
    out.set(row.key, {
      seq: Number(row.seq),
      state: typeof row.state === "string" ? (JSON.parse(row.state) as LearnedState) : row.state,
    });
  return out;
}

export async function saveStates(tx: Q, states: ReadonlyMap<string, KeyState>, now: Date): Promise<void> {
  if (states.size === 0) return;
  const keys = [...states.keys()];
  const seqs = keys.map((k) => states.get(k)!.seq);
  const bodies = keys.map((k) => JSON.stringify(states.get(k)!.state));
  await sql`insert into alert_state (key, seq, state, updated_at)
    select k, s, b::jsonb, ${now} from unnest(${sql.val(keys)}::text[], ${sql.val(seqs)}::bigint[], ${sql.val(bodies)}::text[]) as t(k, s, b)
    on conflict (key) do update set seq = greatest(alert_state.seq, excluded.seq), state = excluded.state,
      updated_at = excluded.updated_at
    where excluded.seq > alert_state.seq`.execute(tx);
}

export interface AlertRow {
  id: string;
  rule: AlertRule;
  severity: AlertSeverity;
  eventId: string;
  eventSeq: number;
  eventTime: Date;
  principal: string | null;
  subject: string | null;
  title: string;
  text: string;
  details: Record<string, unknown>;
  action: AlertAction;
  reviewItemId: string | null;
  status: "open" | "acknowledged";
  raisedAt: Date;
  acknowledgedAt: Date | null;
  acknowledgedBy: string | null;
  ackNote: string | null;
}

interface RawAlert {
  id: string;
  rule: AlertRule;
  severity: AlertSeverity;
  event_id: string;
  event_seq: string | number;
  event_time: Date | string;
  principal: string | null;
  subject: string | null;
  title: string;
  text: string;
  details: Record<string, unknown> | string;
  action: AlertAction;
  review_item_id: string | null;
  status: "open" | "acknowledged";
  raised_at: Date | string;
  acknowledged_at: Date | string | null;
  acknowledged_by: string | null;
  ack_note: string | null;
}

const date = (v: Date | string) => new Date(v);

function toAlert(row: RawAlert): AlertRow {
  return {
    id: row.id,
    rule: row.rule,
    severity: row.severity,
    eventId: row.event_id,
    eventSeq: Number(row.event_seq),
    eventTime: date(row.event_time),
    principal: row.principal,
    subject: row.subject,
    title: row.title,
    text: row.text,
    details: typeof row.details === "string" ? (JSON.parse(row.details) as Record<string, unknown>) : row.details,
    action: row.action,
    reviewItemId: row.review_item_id,
    status: row.status,
    raisedAt: date(row.raised_at),
    acknowledgedAt: row.acknowledged_at === null ? null : date(row.acknowledged_at),
    acknowledgedBy: row.acknowledged_by,
    ackNote: row.ack_note,
  };
}

export type NewAlert = Omit<AlertRow, "reviewItemId" | "status" | "acknowledgedAt" | "acknowledgedBy" | "ackNote">;

/** Inserts the alert unless its rule already alerted on that event; true when it was inserted. */
export async function insertAlert(tx: Q, alert: NewAlert): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`insert into alerts
      (id, rule, severity, event_id, event_seq, event_time, principal, subject, title, text, details, action, status, raised_at)
    values (${alert.id}, ${alert.rule}, ${alert.severity}, ${alert.eventId}, ${alert.eventSeq}, ${alert.eventTime},
      ${alert.principal}, ${alert.subject}, ${alert.title}, ${alert.text}, ${JSON.stringify(alert.details)}::jsonb,
      ${alert.action}, 'open', ${alert.raisedAt})
    on conflict (rule, event_id) do nothing
    returning id`.execute(tx);
  return rows.length === 1;
}

export async function setReviewItem(tx: Q, alertId: string, reviewItemId: string): Promise<void> {
  await sql`update alerts set review_item_id = ${reviewItemId} where id = ${alertId}`.execute(tx);
}

export interface AlertFilter {
  status?: "open" | "acknowledged" | undefined;
  rule?: AlertRule | undefined;
  principal?: string | undefined;
  limit: number;
}

export async function listAlerts(db: Q, filter: AlertFilter): Promise<AlertRow[]> {
  const { rows } = await sql<RawAlert>`select * from alerts
    where (${filter.status ?? null}::text is null or status = ${filter.status ?? null})
      and (${filter.rule ?? null}::text is null or rule = ${filter.rule ?? null})
      and (${filter.principal ?? null}::text is null or principal = ${filter.principal ?? null})
    order by raised_at desc, id desc limit ${filter.limit}`.execute(db);
  return rows.map(toAlert);
}

export async function findAlert(db: Q, id: string, lock = false): Promise<AlertRow | undefined> {
  const { rows } = lock
    ? await sql<RawAlert>`select * from alerts where id = ${id} for update`.execute(db)
    : await sql<RawAlert>`select * from alerts where id = ${id}`.execute(db);
  return rows[0] ? toAlert(rows[0]) : undefined;
}

export async function acknowledge(tx: Q, id: string, by: string, note: string | null, now: Date): Promise<void> {
  await sql`update alerts set status = 'acknowledged', acknowledged_at = ${now}, acknowledged_by = ${by},
    ack_note = ${note} where id = ${id}`.execute(tx);
}

export async function openCount(db: Q): Promise<number> {
  const { rows } = await sql<{ n: string | number }>`select count(*) as n from alerts where status = 'open'`.execute(
    db,
  );
  return Number(rows[0]?.n ?? 0);
}
