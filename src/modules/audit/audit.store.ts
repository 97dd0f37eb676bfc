/** SQL of the audit log. Every function takes the transaction (or db) it runs in. */
import { sql, type Expression, type ExpressionBuilder, type Kysely, type RawBuilder, type SqlBool } from "kysely";
import type { Database } from "../../db/index.js";
import { oneParameter } from "../../lib/constant-sql.js";
import { PREPARED } from "../../lib/db.js";
import { decodeVerifyRow, eventTime, toEvent, type EventRow } from "./audit.rows.js";
import { EVENT_ROW_COLUMNS, type AuditEvent, type CheckpointValues, type PendingAuditEvent } from "./audit.types.js";

export { decodeVerifyRow, toEvent, type EventRow };

type Q = Kysely<Database>;

export async function lockHead(tx: Q): Promise<{ seq: number; hash: string }> {
  return tx.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1).forUpdate().executeTakeFirstOrThrow();
}

export async function readHead(db: Q): Promise<{ seq: number; hash: string }> {
  return db.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1).executeTakeFirstOrThrow();
}

/**
 * The rows of an INSERT of events travel as one JSON text (an array of rows, each an array of the event's
 * columns in `EVENT_INSERT_COLUMNS` order, then the table's own): one parameter, one native `JSON.stringify`, whatever
 * the batch's size, where `unnest` arrays had one parameter a column, each escaped by node-postgres element by
 * element (6.4% of an elevation's process CPU at 50 requesters), and a VALUES list one a value, built by Kysely
 * at every call. The statements' texts are constant and prepared on each PostgreSQL connection (`PREPARED`).
 * PostgreSQL text holds no NUL: a value with one is refused as before (jsonb refuses the escape `\u0000`,
 * SQLSTATE 22P05, where a text parameter was refused at bind, 22021), nothing written.
 */
function eventRow(e: PendingAuditEvent): unknown[] {
  return [
    e.id,
    e.time,
    e.actor,
    e.actorId,
    e.action,
    e.subject,
    e.outcome,
    e.reason,
    e.correlationId,
    e.sourceIp,
    e.userAgent,
    e.details,
  ];
}

/** The columns an event has before it is chained (shared by audit_pending and audit_events), in `eventRow` order. */
const EVENT_INSERT_COLUMNS = [
  "id",
  "time",
  "actor",
  "actor_id",
  "action",
  "subject",
  "outcome",
  "reason",
  "correlation_id",
  "source_ip",
  "user_agent",
  "details",
] as const;

/** Those columns read from a JSON row `e` (`eventRow`): each field's text is its column's input, as it was. */
const EVENT_FROM_JSON = EVENT_INSERT_COLUMNS.map((column, i) => {
  if (column === "details") return `e->${i}`;
  if (column === "time") return `(e->>${i})::timestamptz`;
  return column === "id" || column === "actor_id" ? `(e->>${i})::uuid` : `e->>${i}`;
}).join(", ");

/**
 * `insert into <table> (<event columns>, <more>) select <event columns>, <fields> from jsonb_array_elements(`:
 * the JSON text of the rows follows, then `ROWS_FROM_JSON`. `e` is a row, `n` its place.
 */
const insertFromJson = (table: string, more: string, fields: string) =>
  `insert into ${table} (${EVENT_INSERT_COLUMNS.join(", ")}, ${more})
    select ${EVENT_FROM_JSON}, ${fields} from jsonb_array_elements(`;
const ROWS_FROM_JSON = "::jsonb) with ordinality as t(e, n)";

/** Rows in their order: `pos` (audit_pending), and so the chain's order, is the order of the events given. */
const INSERT_PENDING = oneParameter(
  `${PREPARED} ${insertFromJson("audit_pending", "mac", "e->>12")}$1${ROWS_FROM_JSON} order by n`,
);
const INSERT_EVENTS = oneParameter(
  `${PREPARED} ${insertFromJson(
    "audit_events",
    "seq, prev_hash, hash",
    "(e->>12)::bigint, e->>13, e->>14",
  )}$1${ROWS_FROM_JSON} order by n`,
);

/**
 * Chained events the sequencer made itself (`audit.pending_rejected` notes): not in `audit_pending`, so
 * written from their values.
 */
export async function insertEvents(tx: Q, events: AuditEvent[]): Promise<void> {
  if (events.length === 0) return;
  const rows = events.map((e) => [...eventRow(e), e.seq, e.prevHash, e.hash]);
  await INSERT_EVENTS(JSON.stringify(rows)).execute(tx);
}

/** An event committed by its transaction but not chained yet; `mac` proves a Stint node wrote it. */
export async function insertPending(tx: Q, events: { event: PendingAuditEvent; mac: string }[]): Promise<void> {
  if (events.length === 0) return;
  const rows = new Array<unknown[]>(events.length);
  for (let i = 0; i < events.length; i++) {
    const row = eventRow(events[i]!.event);
    row.push(events[i]!.mac);
    rows[i] = row;
  }
  await INSERT_PENDING(JSON.stringify(rows)).execute(tx);
}

/**
 * A condition a call's events must meet to be written, checked by the database inside the INSERT
 * (`insertPendingWhere`): constant SQL (a boolean expression) over `copy`, the call's copy (a JSON value, given
 * per call and sent in the rows' JSON text, as jsonb). The SQL is code, never input: one prepared statement text
 * per condition.
 */
export interface PendingCondition {
  readonly sql: string;
}

/** The INSERT of each condition's statement, made once. */
const insertWhere = new Map<string, (rows: string) => RawBuilder<{ id: string }>>();

/**
 * `insertPending` of the events of many calls in one statement that inserts an event only if its call gave no
 * copy or `condition` holds for that copy, decided by the database in that statement. One JSON parameter (each row
 * the event's columns, its MAC and its call's copy or null) under a constant, prepared text: nothing built or
 * escaped value by value per call. Returns the ids of the events inserted.
 */
export async function insertPendingWhere(
  tx: Q,
  events: readonly { event: PendingAuditEvent; mac: string; copy: unknown }[],
  condition: PendingCondition,
): Promise<Set<string>> {
  if (events.length === 0) return new Set();
  const rows = new Array<unknown[]>(events.length);
  for (let i = 0; i < events.length; i++) {
    const row = eventRow(events[i]!.event);
    row.push(events[i]!.mac, events[i]!.copy ?? null);
    rows[i] = row;
  }
  let insert = insertWhere.get(condition.sql);
  if (insert === undefined)
    insertWhere.set(
      condition.sql,
      (insert = oneParameter<{ id: string }>(
        `${PREPARED} ${insertFromJson("audit_pending", "mac", "e->>12")}$1${ROWS_FROM_JSON},
          lateral (select e->13 as copy) as c
        where c.copy = 'null'::jsonb or (${condition.sql}) order by n returning id`,
      )),
    );
  const { rows: inserted } = await insert(JSON.stringify(rows)).execute(tx);
  return new Set(inserted.map((r) => r.id));
}

/** A pending event as the sequencer reads it: `time` as the database stores it (`TIME_TEXT`). */
export interface PendingRow {
  pos: string;
  id: string;
  time: string;
  actor: string;
  actor_id: string | null;
  action: string;
  subject: string | null;
  outcome: AuditEvent["outcome"];
  reason: string | null;
  correlation_id: string | null;
  source_ip: string | null;
  user_agent: string | null;
  details: Record<string, unknown>;
  mac: string;
  /** The row's version as read (its `xmin`): `chainMove` moves it only while it is still that version. */
  version: string;
}

/**
 * Up to `limit` pending events, oldest `pos` first. Run under the head lock (`lockHead`): only the
 * transaction holding it moves pending events (`chainMove`), so what this reads stays there until then.
 * The time is read as text, exactly (as verify reads it): a time moved below the millisecond no longer
 * matches its MAC, where a `Date` would have dropped the change.
 */
export async function readPending(tx: Q, limit: number): Promise<PendingRow[]> {
  return (await pendingRows(limit).$castTo<PendingRow>().execute(tx)).rows;
}

/** `TIME_TEXT`'s SQL. */
const TIME_TEXT_SQL = `pg_catalog.to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')`;

/** A pending row's columns as the sequencer reads them (`PendingRow`), the time as `TIME_TEXT`. */
const PENDING_COLUMNS = `pos, id, ${TIME_TEXT_SQL} as time, actor, actor_id, action, subject, outcome, reason,
  correlation_id, source_ip, user_agent, details, mac, xmin::text as version`;

/** The SELECT of up to `limit` pending rows, oldest `pos` first. */
function pendingRows(limit: number) {
  return sql`select ${sql.raw(PENDING_COLUMNS)} from audit_pending order by pos limit ${limit}`;
}

/** Pending rows read beside something else (one row, every column null, when none is pending). */
type PendingOrNone = { [K in keyof PendingRow]: PendingRow[K] | null };

/** The pending rows of `rows`, none when its one row's are null. */
const pendingOf = (rows: readonly PendingOrNone[]) => (rows[0]?.pos == null ? [] : (rows as PendingRow[]));

export interface HeadAndPending {
  head: { seq: number; hash: string };
  rows: PendingRow[];
}

/**
 * The head (locked with `lock`) and up to `limit` pending rows in one statement; `seen`: the head's seq as the
 * statement's snapshot saw it (older than `head` when another pass chained while this one waited for the lock).
 */
async function headAndPending(db: Q, limit: number, lock: boolean): Promise<HeadAndPending & { seen: number }> {
  const { rows } = await sql<
    { head_seq: number | string; head_hash: string; seen_seq: number | string } & PendingOrNone
  >`
    with head as (select seq, hash from audit_head where id = 1 ${lock ? sql`for update` : sql``})
    select h.seq as head_seq, h.hash as head_hash, (select seq from audit_head where id = 1) as seen_seq, p.*
    from head h left join lateral (${pendingRows(limit)}) p on true
    order by p.pos`.execute(db);
  const first = rows[0];
  if (!first) throw new Error("audit: the chain head row is missing");
  const head = { seq: Number(first.head_seq), hash: first.head_hash };
  return { head, seen: Number(first.seen_seq), rows: pendingOf(rows) };
}

/**
 * `lockHead` and `readPending` in one statement (one round trip less in every chaining pass). The pending rows
 * are read with the statement's snapshot, taken before the head's lock was granted: when another pass chained
 * while this one waited for the lock (the locked head is newer than the head that snapshot sees), the rows are
 * read again, now under the lock, as `readPending` after `lockHead` would have read them.
 */
export async function lockHeadAndReadPending(tx: Q, limit: number): Promise<HeadAndPending> {
  const { head, seen, rows } = await headAndPending(tx, limit, true);
  return { head, rows: seen === head.seq ? rows : await readPending(tx, limit) };
}

/**
 * The head and up to `limit` pending rows as one snapshot saw them, with no lock and no transaction (the
 * background sequencer's own pass): `chainMove` writes only if the head is still this one, so rows another
 * pass chained meanwhile are never chained again.
 */
export async function readHeadAndPending(db: Q, limit: number): Promise<HeadAndPending> {
  const { head, rows } = await headAndPending(db, limit, false);
  return { head, rows };
}

export function pendingToEvent(row: PendingRow): PendingAuditEvent {
  return {
    id: row.id,
    time: eventTime(row.time),
    actor: row.actor,
    actorId: row.actor_id,
    action: row.action,
    subject: row.subject,
    outcome: row.outcome,
    reason: row.reason,
    correlationId: row.correlation_id,
    sourceIp: row.source_ip,
    userAgent: row.user_agent,
    details: row.details,
  };
}

/**
 * True for a `chainMove` refused, nothing written, because what it read is no longer there as read: another
 * pass moved the head (SQLSTATE STA01), or a pending row it took is no longer the version it read (STA03: a
 * database writer changed it; run again under the head lock, the row's MAC is checked as it is now).
 */
export function headMoved(error: unknown): boolean {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return code === "STA01" || code === "STA03";
}

/**
 * Moves pending events into the chain in one statement (`audit_chain_move`, migrations 0034, 0035): moves the
 * head from `from` to `to` only if it is still `from` (else it raises, `headMoved`, and writes nothing), deletes
 * the pending rows `taken` (the chained ones and those rejected) — raising (`headMoved`, STA03, nothing written)
 * unless each is still the version read: the chained events are inserted from the table, under the hashes of
 * what was read and MAC-checked, so a row changed since must not be (docs/security.md, finding 28) —, inserts each chained one into `audit_events`
 * from its pending row with its `seq`, `prevHash` and `hash`, and inserts the `checkpoints`. A chained row
 * missing from `audit_pending` raises (STA02): the statement, and any transaction it is in, roll back. Only
 * positions, versions, seqs and hashes travel, as one JSON text (`CHAIN_MOVE_ARGUMENTS`), never the events'
 * columns; the statement's text is constant (prepared). Outside a transaction it commits alone.
 * With `next`, the same statement also reads up to `next` pending rows besides those it moved (with its own
 * snapshot, from before the move: what committed before the statement began), the next pass's rows after `to`.
 */
export async function chainMove(
  db: Q,
  from: { seq: number; hash: string },
  taken: readonly Pick<PendingRow, "pos" | "version">[],
  chained: readonly { pos: number | string; seq: number; prevHash: string; hash: string }[],
  to: { seq: number; hash: string },
  checkpoints: readonly CheckpointValues[],
  next = 0,
): Promise<PendingRow[]> {
  const n = taken.length;
  const takenRows = new Array<unknown[]>(n);
  for (let i = 0; i < n; i++) takenRows[i] = [taken[i]!.pos, taken[i]!.version];
  const chainedRows = new Array<unknown[]>(chained.length);
  for (let i = 0; i < chained.length; i++) {
    const c = chained[i]!;
    chainedRows[i] = [c.pos, c.seq, c.prevHash, c.hash];
  }
  const signed = checkpoints.map((c) => [c.seq, c.hash, c.every, c.keyId, c.signature, c.signedAt.toISOString()]);
  const move = JSON.stringify([from.seq, from.hash, to.seq, to.hash, takenRows, chainedRows, signed, next]);
  if (next === 0) {
    await CHAIN_MOVE(move).execute(db);
    return [];
  }
  return pendingOf((await CHAIN_MOVE_AND_READ(move).execute(db)).rows);
}

/**
 * `audit_chain_move`'s arguments from one JSON text `$1` (`chainMove`): `[fromSeq, fromHash, toSeq, toHash,
 * taken [[pos, version]…], chained [[pos, seq, prevHash, hash]…], checkpoints [[seq, hash, every, keyId,
 * signature, signedAt]…], next]`. Each list's arrays are aggregated in one pass over its rows, so they pair up
 * element for element as the function's `unnest` pairs them; an empty list gives empty arrays, as before.
 */
const CHAIN_MOVE_ARGUMENTS = `p as (select $1::jsonb as j),
  taken as (
    select coalesce(array_agg((e->>0)::bigint), '{}') as pos, coalesce(array_agg(e->>1), '{}') as version
    from p, jsonb_array_elements(p.j->4) as t(e)
  ),
  chained as (
    select coalesce(array_agg((e->>0)::bigint), '{}') as pos, coalesce(array_agg((e->>1)::bigint), '{}') as seq,
      coalesce(array_agg(e->>2), '{}') as prev_hash, coalesce(array_agg(e->>3), '{}') as hash
    from p, jsonb_array_elements(p.j->5) as t(e)
  ),
  cp as (
    select coalesce(array_agg((e->>0)::bigint), '{}') as seq, coalesce(array_agg(e->>1), '{}') as hash,
      coalesce(array_agg((e->>2)::integer), '{}') as every, coalesce(array_agg(e->>3), '{}') as key_id,
      coalesce(array_agg(e->>4), '{}') as signature, coalesce(array_agg((e->>5)::timestamptz), '{}') as signed_at
    from p, jsonb_array_elements(p.j->6) as t(e)
  ),
  m as materialized (
    select audit_chain_move((p.j->>0)::bigint, p.j->>1, taken.pos, taken.version, chained.pos, chained.seq,
      chained.prev_hash, chained.hash, (p.j->>2)::bigint, p.j->>3, cp.seq, cp.hash, cp.every, cp.key_id,
      cp.signature, cp.signed_at) as moved
    from p, taken, chained, cp
  )`;

const CHAIN_MOVE = oneParameter(`${PREPARED} with ${CHAIN_MOVE_ARGUMENTS} select moved from m`);

/**
 * The move, and up to `next` pending rows it did not take (with the statement's snapshot, from before the move).
 * The move on the preserved side of the join: it runs once, whether or not anything else is pending. The rows
 * taken are left out by a hashed lookup (`not in` a subquery), not a scan of their array for every row read.
 */
const CHAIN_MOVE_AND_READ = oneParameter<PendingOrNone & { moved: string }>(`${PREPARED} with ${CHAIN_MOVE_ARGUMENTS}
  select m.moved, r.* from m left join lateral (
    select ${PENDING_COLUMNS} from audit_pending
    where pos not in (select unnest(taken.pos) from taken)
    order by pos limit (select (p.j->>7)::integer from p)
  ) r on true
  order by r.pos`);

/** How many events wait to be chained, and the time of the oldest. */
export async function pendingStats(db: Q): Promise<{ count: number; oldest: Date | null }> {
  const row = await db
    .selectFrom("audit_pending")
    .select((eb) => [eb.fn.countAll<number>().as("count"), eb.fn.min("time").as("oldest")])
    .executeTakeFirstOrThrow();
  return { count: Number(row.count), oldest: row.oldest === null ? null : new Date(row.oldest) };
}

/** True when a pending event is there at all (cheaper than counting). */
export async function anyPending(db: Q): Promise<boolean> {
  const row = await db.selectFrom("audit_pending").select("pos").limit(1).executeTakeFirst();
  return row !== undefined;
}

/**
 * Takes or renews the background sequencer's lease for `holder` until the database's now() + ttlMs, if it
 * is free, expired or already held by `holder`. True when `holder` holds it now.
 */
export async function takeLease(db: Q, holder: string, ttlMs: number): Promise<boolean> {
  const row = await db
    .updateTable("audit_sequencer")
    .set({ holder, expires_at: sql<Date>`now() + make_interval(secs => ${ttlMs / 1000})` })
    .where("id", "=", 1)
    .where((eb) =>
      eb.or([eb("holder", "=", holder), eb("holder", "is", null), eb("expires_at", "<", sql<Date>`now()`)]),
    )
    .returning("holder")
    .executeTakeFirst();
  return row !== undefined;
}

export async function releaseLease(db: Q, holder: string): Promise<void> {
  await db
    .updateTable("audit_sequencer")
    .set({ holder: null, expires_at: sql<Date>`'epoch'::timestamptz` })
    .where("id", "=", 1)
    .where("holder", "=", holder)
    .execute();
}

/** Where a node that does not sequence tells the one that does that it appended (PostgreSQL only). */
export const WAKE_CHANNEL = "stint_audit_wake";

/** The wake itself: its own statement, never inside the appending transaction (NOTIFY serializes commits). */
export async function sendWake(db: Q): Promise<void> {
  await sql`select pg_notify(${WAKE_CHANNEL}, '')`.execute(db);
}

/**
 * An event's time as the database stores it, in UTC with microseconds and no zone letter
 * ("2026-12-05T01:17:02.123456"): `eventTime` turns it into the event's `time`. Read as text, with no
 * `Date` per row (parsing and re-formatting them was ~8% of verify), and exactly: a time moved by less
 * than a millisecond, which a `Date` would drop, no longer matches its hash.
 */
const TIME_TEXT = sql<string>`${sql.raw(TIME_TEXT_SQL)}`;

/** The columns of an event (`EVENT_ROW_COLUMNS`), every one of them read by `toEvent`; the time as `TIME_TEXT`. */
const EVENT_COLUMNS = EVENT_ROW_COLUMNS.map((column) => (column === "time" ? TIME_TEXT.as("time") : column));

/** Events with seq > afterSeq, in order, `limit` at a time. */
export interface EventFilter {
  since?: Date | undefined;
  until?: Date | undefined;
  actor?: string | undefined;
  /** Exact, or a prefix when it ends with "*". */
  action?: string | undefined;
  /** details.role, or the subject role:<name> */
  role?: string | undefined;
  /** The subject: exact, or a prefix when it ends with "*". */
  target?: string | undefined;
  outcome?: AuditEvent["outcome"] | undefined;
  /** Only events up to this seq (an export stops at the head it began with). */
  maxSeq?: number | undefined;
}

const likePrefix = (value: string) => `${value.slice(0, -1).replace(/[\\%_]/g, "\\$&")}%`;

function filtered(db: Q, filter: EventFilter) {
  return db
    .selectFrom("audit_events")
    .select(EVENT_COLUMNS)
    .where((eb) => matching(eb, filter));
}

/** The filter as one condition (all of its parts; true when it has none). */
function matching(eb: ExpressionBuilder<Database, "audit_events">, filter: EventFilter): Expression<SqlBool> {
  const all: Expression<SqlBool>[] = [];
  if (filter.since) all.push(eb("time", ">=", filter.since));
  if (filter.until) all.push(eb("time", "<", filter.until));
  if (filter.actor) all.push(eb("actor", "=", filter.actor));
  if (filter.action?.endsWith("*")) all.push(eb("action", "like", likePrefix(filter.action)));
  else if (filter.action) all.push(eb("action", "=", filter.action));
  if (filter.target?.endsWith("*")) all.push(eb("subject", "like", likePrefix(filter.target)));
  else if (filter.target) all.push(eb("subject", "=", filter.target));
  if (filter.outcome) all.push(eb("outcome", "=", filter.outcome));
  if (filter.maxSeq !== undefined) all.push(eb("seq", "<=", filter.maxSeq));
  if (filter.role)
    all.push(eb.or([eb(sql<string>`details->>'role'`, "=", filter.role), eb("subject", "=", `role:${filter.role}`)]));
  return eb.and(all);
}

/** How many events match `filter`, counting no further than `cap` (an index-only walk of at most `cap` rows). */
export async function countEvents(db: Q, filter: EventFilter, cap: number): Promise<number> {
  const rows = db
    .selectFrom("audit_events")
    .select(sql<number>`1`.as("one"))
    .where((eb) => matching(eb, filter))
    .limit(cap);
  const row = await db
    .selectFrom(rows.as("matching"))
    .select((eb) => eb.fn.countAll<string | number>().as("count"))
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

export async function pageFrom(db: Q, afterSeq: number, limit: number, filter: EventFilter = {}): Promise<EventRow[]> {
  return filtered(db, filter).where("seq", ">", afterSeq).orderBy("seq").limit(limit).execute() as Promise<EventRow[]>;
}

/** Verify's read lives in audit.verify.store.ts; re-exported for the tests that read through the store. */
export { VERIFY_PAGE, visitForVerify } from "./audit.verify.store.js";

/** Newest first, before `beforeSeq` (all when undefined). */
export async function pageBefore(
  db: Q,
  beforeSeq: number | undefined,
  limit: number,
  filter: EventFilter = {},
): Promise<EventRow[]> {
  let query = filtered(db, filter);
  if (beforeSeq !== undefined) query = query.where("seq", "<", beforeSeq);
  return query.orderBy("seq", "desc").limit(limit).execute() as Promise<EventRow[]>;
}

export async function insertCheckpoint(tx: Q, cp: CheckpointValues): Promise<void> {
  await tx
    .insertInto("audit_checkpoints")
    .values({
      seq: cp.seq,
      hash: cp.hash,
      every: cp.every,
      key_id: cp.keyId,
      signature: cp.signature,
      signed_at: cp.signedAt,
    })
    .onConflict((oc) => oc.column("seq").doNothing())
    .execute();
}

export function listCheckpoints(db: Q) {
  return db.selectFrom("audit_checkpoints").selectAll().orderBy("seq").execute();
}

/** Checkpoints with fromSeq <= seq <= toSeq, oldest first. */
export function checkpointsBetween(db: Q, fromSeq: number, toSeq: number) {
  return db
    .selectFrom("audit_checkpoints")
    .selectAll()
    .where("seq", ">=", fromSeq)
    .where("seq", "<=", toSeq)
    .orderBy("seq")
    .execute();
}

/** The newest checkpoints first, `limit` of them. */
export function latestCheckpoints(db: Q, limit: number) {
  return db.selectFrom("audit_checkpoints").selectAll().orderBy("seq", "desc").limit(limit).execute();
}

export type CheckpointRow = Awaited<ReturnType<typeof listCheckpoints>>[number];
