/**
 * SQL of `audit verify`'s read (`audit.store.ts` holds the rest of the audit log's): every event up to the
 * head, page by page, one text per event (`VERIFY_ROW`, decoded by `audit.rows.ts`), and the columns
 * read (`pageFrom`) for whatever does not decode without doubt.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { pageFrom } from "./audit.store.js";
import { decodeVerifyRow, toEvent, verifyRowSeq } from "./audit.rows.js";
import type { AuditEvent } from "./audit.types.js";

export { verifyRowSeq };

type Q = Kysely<Database>;

/**
 * Bit k: the k-th nullable column is NULL (actor_id, subject, reason, correlation_id, source_ip,
 * user_agent); 64 and more: a column that may not be NULL is (a database writer dropped the constraint).
 */
const NULL_MASK = sql<number>`(num_nulls(seq, id, time, actor, action, outcome, details, prev_hash, hash) * 64
  + (actor_id is null)::int + (subject is null)::int * 2 + (reason is null)::int * 4
  + (correlation_id is null)::int * 8 + (source_ip is null)::int * 16 + (user_agent is null)::int * 32)`;

/**
 * One text per event for verify: its fields joined by `FIELD` (`\x1f`) in the order `audit.rows.ts` reads
 * them, every one of them always there (NULL as empty, flagged in the NULL mask), the details last. Verify
 * reads every event: one text field per row costs the client about a quarter of what fifteen columns do
 * (each its own string, the details parsed by the driver). `concat_ws` with one separator costs the
 * database less than `concat` with fifteen separator arguments (each printed again for every row), and
 * the time printed as a `timestamp` (ISO DateStyle, `verifyRowTime`) less than `to_char`: 2.5-2.75 ->
 * 1.9-2.05 µs of its CPU per event (measured 2026-12-06, 200,000 events in pages of 2,000).
 */
const VERIFY_ROW = sql<string>`concat_ws(E'\\x1f', coalesce(seq::text, ''), coalesce((time at time zone 'UTC')::text, ''),
  coalesce(hash, ''), ${NULL_MASK}, coalesce(prev_hash, ''), coalesce(id::text, ''), coalesce(actor, ''),
  coalesce(actor_id::text, ''), coalesce(action, ''), coalesce(subject, ''), coalesce(outcome, ''),
  coalesce(reason, ''), coalesce(correlation_id, ''), coalesce(source_ip, ''), coalesce(user_agent, ''),
  coalesce(details::text, ''))`;

async function verifyPage(db: Q, afterSeq: number, limit: number): Promise<string[]> {
  const { rows } = await sql<{ row: string }>`select ${VERIFY_ROW} as row from audit_events
    where seq > ${afterSeq} order by seq limit ${limit}`.execute(db);
  return rows.map((r) => r.row);
}

/**
 * `verifyPage`'s statement as text, `$1` the seq to read after and `$2` the limit: on PostgreSQL a verify
 * worker thread runs it on a connection of its own (`audit.verify-worker.ts`).
 */
export function verifyPageStatement(db: Q): string {
  return sql`select ${VERIFY_ROW} as row from audit_events where seq > ${0} order by seq limit ${0}`.compile(db).sql;
}

/**
 * Up to `limit` events after `afterSeq` and at most `headSeq`, in seq order, one `VERIFY_ROW` text each (the
 * parallel verify's read: the texts go to worker threads as they are), and a second row of the last one's
 * seq when there is one (one row past the page is read: the next page reads after that seq).
 */
export async function verifyPageRows(db: Q, afterSeq: number, headSeq: number, limit: number): Promise<string[]> {
  const texts = await verifyPage(db, afterSeq, limit + 1);
  // Past the head (appended since verify read it): left for the next run. Cut here, not in SQL, where a
  // second bound on seq made PostgreSQL's plan for the page much slower.
  while (texts.length > 0 && verifyRowSeq(texts[texts.length - 1]!) > headSeq) texts.pop();
  if (texts.length > limit && !(verifyRowSeq(texts[limit]!) <= verifyRowSeq(texts[limit - 1]!))) texts.pop();
  return texts;
}
/** Rows per page of `visitForVerify`: a page and the next one in flight stay small enough to die young. */
export const VERIFY_PAGE = 2000;

/**
 * Verify's read: calls `visit` with every event up to `headSeq`, in seq order, until it returns false;
 * `onPage` after each page with the last seq read. Pages are read as one text per event (`VERIFY_ROW`),
 * decoded one at a time as they are visited (a page of decoded events would outlive the young
 * generation: garbage collection was a third of verify), and the next page is read while this one is
 * visited. From an event that does not decode without doubt (a field holding the separator, a NULL
 * where none may be), the rest of its page is read again as columns.
 *
 * Whatever the table's constraints (a database writer may drop its primary key), every row of every seq
 * up to the head is visited, so a second row of a seq reaches `visit` wherever it lies: each page reads one
 * row past its end, visited too when it has the page's last seq (the next page reads after that seq), and
 * a page read again as columns starts at the seq last visited (a second row of it comes first).
 */
export async function visitForVerify(
  db: Q,
  headSeq: number,
  visit: (event: AuditEvent) => boolean,
  onPage?: (lastSeq: number) => void,
  pageSize = VERIFY_PAGE,
  /** Visits from the event after this one (the parallel path hands over here). */
  fromSeq = 0,
): Promise<void> {
  /** The last seq visited. */
  let afterSeq = fromSeq;
  /** Visits `event`; false once the visit ends (the visitor stopped, or past the head). */
  const take = (event: AuditEvent) => {
    if (event.seq > headSeq || !visit(event)) return false;
    afterSeq = event.seq;
    return true;
  };
  /** Visits the first `count` rows of `page` (and the one past them when it repeats their last seq). */
  const visitPage = async (page: string[], count: number, lastSeq: number) => {
    const end = page.length > count && verifyRowSeq(page[count]!) <= lastSeq ? count + 1 : count;
    for (let i = 0; i < end; i++) {
      const event = decodeVerifyRow(page[i]!);
      if (event) {
        if (!take(event)) return false;
        continue;
      }
      // As columns from the seq last visited: one row of it was visited, any other is a second one.
      let visited = afterSeq > 0;
      for (const row of await pageFrom(db, visited ? afterSeq - 1 : afterSeq, end - i + 1)) {
        const again = toEvent(row);
        if (visited && again.seq === afterSeq) {
          visited = false;
          continue;
        }
        if (again.seq > lastSeq) break;
        if (!take(again)) return false;
      }
      return true;
    }
    return true;
  };
  // One row past the page: the next page reads after the page's last seq, and would not see a second row of it.
  const read = (after: number) => verifyPage(db, after, pageSize + 1);
  let next: Promise<string[]> | null = headSeq > afterSeq ? read(afterSeq) : null;
  while (next) {
    const page: string[] = await next;
    if (page.length === 0) return;
    const count = Math.min(page.length, pageSize);
    const lastSeq = verifyRowSeq(page[count - 1]!);
    const more = page.length > pageSize && Number.isSafeInteger(lastSeq) && lastSeq > afterSeq && lastSeq < headSeq;
    next = more ? read(lastSeq) : null;
    if (!(await visitPage(page, count, lastSeq))) {
      await next?.catch(() => undefined);
      return;
    }
    onPage?.(afterSeq);
    // The page read again as columns may have ended elsewhere (rows changed meanwhile): go on from what was visited.
    if (afterSeq !== lastSeq) {
      await next?.catch(() => undefined);
      next = more ? read(afterSeq) : null;
    }
  }
}
