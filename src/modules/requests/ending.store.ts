/**
 * SQL that ends activations set-based: the ones a caller locked (`endActivations`) and the scheduler's claim of
 * those whose time is up (`expireDue`), with their grants and pending extensions, in one statement each.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { PREPARED } from "../../lib/db.js";
import { oneParameter } from "../../lib/constant-sql.js";

type Q = Kysely<Database>;

/** An activation that ended, with what followed from it: its grant (if any), its cancelled extensions. */
export interface EndedRow {
  id: string;
  target_kind: string;
  role_name: string;
  requester_name: string;
  activated_at: Date | null;
  expires_at: Date | null;
  grant_id: string | null;
  cancelled: string[];
}

/** What `END_ACTIVATIONS` answers: one row of three JSON arrays. */
interface EndedJson {
  ended: (Omit<EndedRow, "grant_id" | "cancelled" | "activated_at" | "expires_at"> & {
    activated_at: string | null;
    expires_at: string | null;
  })[];
  grants: { id: string; request_id: string }[];
  cancelled: { id: string; extends_request_id: string }[];
}

/**
 * `endActivations`' statement: a constant text with one JSON parameter (`lib/constant-sql.ts`), `{"ids": [[id]
 * or [id, ended by], …], "state", "reason", "by", "now", "notify": [[channel, payload], …]}`.
 *
 * One row of three JSON arrays comes back: joining the data-modifying CTEs' outputs would be planned as nested
 * loops (their row counts are unknown to the planner), quadratic in the batch. The chosen rows are looked up by
 * primary key (`= any(array(…))`): joined to the CTE, the planner hashed all of activation_requests and of
 * grants for every batch (a sequential scan of each, ~30 ms of 90 per batch of 500 among 10,000).
 */
const END_ACTIVATIONS = oneParameter<EndedJson>(`${PREPARED} with p as (select $1::jsonb as j),
  k as (
    select j->>'state' as state, j->>'reason' as reason, j->>'by' as by, (j->>'now')::timestamptz as now from p
  ),
  chosen as (select (e->>0)::uuid as id, e->>1 as by from p, jsonb_array_elements(p.j->'ids') as e),
  ended as (
    update activation_requests a
    set state = k.state, ended_at = k.now, end_reason = k.reason,
      ended_by = coalesce((select c.by from chosen c where c.id = a.id), k.by), updated_at = k.now
    from roles r, targets t, principals pr, k
    where a.id = any(array(select id from chosen)) and r.id = a.role_id and t.id = r.target_id
      and pr.id = a.requester_id
    returning a.id, t.kind as target_kind, r.name as role_name, pr.name as requester_name, a.activated_at,
      a.expires_at
  ),
  grants_ended as (
    update grants g
    set state = case when ended.target_kind = 'internal' then 'revoked' else 'revoking' end, updated_at = k.now
    from ended, k
    where g.request_id = ended.id
    returning g.id, g.request_id
  ),
  extensions_cancelled as (
    update activation_requests x
    set state = 'cancelled', end_reason = 'the activation ended', ended_by = 'system', updated_at = k.now
    from ended, k
    where x.extends_request_id = ended.id and x.state = 'pending'
    returning x.id, x.extends_request_id
  )
  select
    (select coalesce(json_agg(e order by e.expires_at, e.id), '[]') from ended e) as ended,
    (select coalesce(json_agg(g), '[]') from grants_ended g) as grants,
    (select coalesce(json_agg(c order by c.id), '[]') from extensions_cancelled c) as cancelled,
    (select count(*) from (select pg_notify(m->>0, m->>1) from p, jsonb_array_elements(p.j->'notify')
      with ordinality as t(m, n) order by n) sent)::int as notified`);

/**
 * Ends the given activations (locked by the caller) in one statement, set-based whatever their number (the
 * scheduler's expiries claim theirs in `expireDue`, which ends them the same way). Their rows take the end state; their grants end too (`revoked` on the internal target,
 * which Stint enforces itself; `revoking` elsewhere, for the outbox to revoke at the target); their pending
 * extensions are cancelled (nothing left to extend). Its text is fixed (one JSON parameter, however many):
 * prepared on each connection (`PREPARED`), planned once — every deactivate runs it.
 */
export async function endActivations(
  db: Q,
  /** `by`, when given: who ended each one (in `ids` order), instead of `end.by` for all (a group of deactivates). */
  which: { ids: string[]; by?: readonly string[] },
  end: { state: "expired" | "deactivated" | "revoked"; reason: string; by: string; now: Date },
  /** Payloads to their channels, sent in this statement, in this order (delivered at commit). */
  notify: readonly { channel: string; payload: string }[] = [],
): Promise<EndedRow[]> {
  const ids = which.by ? which.ids.map((id, i) => [id, which.by![i]]) : which.ids.map((id) => [id]);
  const parameter = JSON.stringify({
    ids,
    state: end.state,
    reason: end.reason,
    by: end.by,
    now: end.now,
    notify: notify.map((m) => [m.channel, m.payload]),
  });
  const result = await END_ACTIVATIONS(parameter).execute(db);
  const { ended, grants, cancelled } = result.rows[0]!;
  const grantOf = new Map(grants.map((g) => [g.request_id, g.id]));
  const cancelledOf = new Map<string, string[]>();
  for (const c of cancelled)
    cancelledOf.set(c.extends_request_id, [...(cancelledOf.get(c.extends_request_id) ?? []), c.id]);
  return ended.map((e) => ({
    ...e,
    activated_at: e.activated_at === null ? null : new Date(e.activated_at),
    expires_at: e.expires_at === null ? null : new Date(e.expires_at),
    grant_id: grantOf.get(e.id) ?? null,
    cancelled: cancelledOf.get(e.id) ?? [],
  }));
}

/**
 * The activations one expiry transaction ended (`expireDue`), column by column in expiry order: no object per
 * activation. Times are epoch milliseconds (as a \`Date\` from the driver would hold them).
 */
export interface ExpiredColumns {
  ids: string[];
  roles: string[];
  requesters: string[];
  /** Null for an activation with no start recorded. */
  activatedAt: (number | null)[];
  expiresAt: number[];
  /** Grants ended at a target other than the internal one (`revoking`: the outbox revokes them there). */
  revoking: { grantId: string; requestId: string }[];
  /** Pending extensions cancelled with the activation they would extend. */
  cancelled: { id: string; extendsRequestId: string }[];
}

/**
 * `endActivations` for the scheduler: claims up to `limit` active activations whose time is up, soonest first
 * (rows another node's scheduler holds are skipped), and ends them as `endActivations` does, in one statement;
 * what it ended comes back as one row of texts (ids and times comma-separated, names as JSON arrays), which the
 * driver hands over as strings and this splits without building a row object each. The texts are aggregated from
 * one sorted input (expiry order; one aggregate node reads each row into all five, so they stay aligned), not
 * sorted once per aggregate: ~10 ms less backend CPU per batch of 1,000.
 *
 * The claimed rows are updated by the tuple the claim locked (`ctid`, a TID scan) rather than looked up again
 * by primary key: a row another transaction changed after this statement's snapshot is then left alone (not
 * ended, not audited; the next pass takes it), never ended twice. The transaction commits without waiting for
 * the WAL flush (`synchronous_commit` off for it alone, set by this statement): a database crash right after
 * can only lose ends whose activations are then still active and past their `expires_at`, which the next pass
 * ends again, each with its event; any transaction that commits after it waits for the flush (the sequencer
 * chaining its events, the outbox revoking a grant it queued), so nothing durable depends on a lost one.
 */
export async function expireDue(db: Q, end: { now: Date; limit: number; reason: string }): Promise<ExpiredColumns> {
  const { now } = end;
  const result = await sql<{
    ids: string | null;
    roles: string | null;
    requesters: string | null;
    activated: string | null;
    expires: string | null;
    revoking: string | null;
    cancelled: string | null;
  }>`
    with chosen as (
      select ctid from activation_requests
      where state = 'active' and expires_at <= ${now}
      order by expires_at limit ${end.limit}
      for update skip locked
    ),
    ended as (
      update activation_requests a
      set state = 'expired', ended_at = ${now}, end_reason = ${end.reason}, ended_by = 'system', updated_at = ${now}
      from roles r, targets t, principals p
      where a.ctid = any(array(select ctid from chosen)) and r.id = a.role_id and t.id = r.target_id and p.id = a.requester_id
      returning a.id, t.kind as target_kind, r.name as role_name, p.name as requester_name,
        floor(extract(epoch from a.activated_at) * 1000)::bigint as activated,
        floor(extract(epoch from a.expires_at) * 1000)::bigint as expires
    ),
    grants_ended as (
      update grants g
      set state = case when ended.target_kind = 'internal' then 'revoked' else 'revoking' end, updated_at = ${now}
      from ended
      where g.request_id = ended.id
      returning g.id, g.request_id, ended.target_kind
    ),
    extensions_cancelled as (
      update activation_requests x
      set state = 'cancelled', end_reason = 'the activation ended', ended_by = 'system', updated_at = ${now}
      from ended
      where x.extends_request_id = ended.id and x.state = 'pending'
      returning x.id, x.extends_request_id
    )
    select e.ids, e.roles, e.requesters, e.activated, e.expires,
      (select string_agg(g.id || ':' || g.request_id, ',') from grants_ended g where g.target_kind <> 'internal')
        as revoking,
      (select string_agg(c.id || ':' || c.extends_request_id, ',' order by c.id) from extensions_cancelled c)
        as cancelled,
      set_config('synchronous_commit', 'off', true) as async_commit
    from (select string_agg(id::text, ',') as ids, json_agg(role_name)::text as roles,
        json_agg(requester_name)::text as requesters, string_agg(coalesce(activated::text, ''), ',') as activated,
        string_agg(expires::text, ',') as expires
      from (select * from ended order by expires, id) sorted) e`.execute(db);
  const row = result.rows[0];
  if (!row?.ids)
    return { ids: [], roles: [], requesters: [], activatedAt: [], expiresAt: [], revoking: [], cancelled: [] };
  const pairs = (text: string | null) =>
    text ? text.split(",").map((pair) => pair.split(":") as [string, string]) : [];
  return {
    ids: row.ids.split(","),
    roles: JSON.parse(row.roles!) as string[],
    requesters: JSON.parse(row.requesters!) as string[],
    activatedAt: row.activated!.split(",").map((ms) => (ms === "" ? null : Number(ms))),
    expiresAt: row.expires!.split(",").map(Number),
    revoking: pairs(row.revoking).map(([grantId, requestId]) => ({ grantId, requestId })),
    cancelled: pairs(row.cancelled).map(([id, extendsRequestId]) => ({ id, extendsRequestId })),
  };
}

/** `notifyAll`'s statement: `$1` is `[[channel, payload], …]`. */
const NOTIFY_ALL = oneParameter(`${PREPARED} select pg_notify(m->>0, m->>1)
  from jsonb_array_elements($1::jsonb) with ordinality as t(m, n) order by n`);

/** Payloads to their channels, in this order, in one statement (delivered at commit). */
export async function notifyAll(db: Q, notify: readonly { channel: string; payload: string }[]): Promise<void> {
  if (notify.length === 0) return;
  await NOTIFY_ALL(JSON.stringify(notify.map((m) => [m.channel, m.payload]))).execute(db);
}
