/**
 * SQL that writes new requests: one submit's (`insertRequest`) and a group of submits' (`submit.group.ts`:
 * the requests of many callers, their grants and the access index's messages, in one statement).
 */
import { CompiledQuery, sql, type Insertable, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { PREPARED } from "../../lib/db.js";
import { precompiled } from "./precompiled.js";

type Q = Kysely<Database>;

/** The statement's text for a set of columns (every submit of a group writes the same ones): one text each. */
const texts = new Map<string, string>();

function textFor(columns: readonly string[]): string {
  const key = columns.join(",");
  let text = texts.get(key);
  if (text) return text;
  const list = columns.map((c) => `"${c.replaceAll('"', '""')}"`).join(", ");
  // The rows travel as one JSON array, read with the table's own row type (`jsonb_populate_recordset`): one
  // text whatever the group's size, prepared once per connection. A request the partial unique index refuses
  // (its requester has one open for that role) is not written, nor its grant, nor its message: the RETURNING
  // names the ones written. `sent` runs once (its count is read by the RETURNING).
  text = `${PREPARED} with request as (
    insert into activation_requests (${list})
    select ${list} from jsonb_populate_recordset(null::activation_requests, $1::jsonb)
    on conflict do nothing
    returning id, role_id, requester_id
  ),
  g as (select * from unnest($2::uuid[], $3::uuid[], $4::text[]) as g(rid, gid, head)),
  sent as (
    select pg_notify($5, g.head || pg_current_xact_id()::text || '}') from request r join g on g.rid = r.id
    where g.head <> ''
  )
  insert into grants (id, request_id, role_id, principal_id, state, created_at, updated_at)
  select g.gid, r.id, r.role_id, r.requester_id, 'active', $6::timestamptz, $6::timestamptz
  from request r join g on g.rid = r.id
  returning request_id, (select pg_current_xact_id()::text) as x, (select count(*) from sent) as sent`;
  texts.set(key, text);
  return text;
}

/**
 * Inserts active requests on the internal target, each with its grant (`active`) and, when it has one, its
 * index message (`head` completed by the transaction id, sent at commit). Returns the transaction id for each
 * request written, by request id; a request missing from it was not written (its requester has one open).
 */
export async function insertActiveRequests(
  db: Q,
  rows: readonly { columns: Record<string, unknown>; grantId: string; head: string }[],
  channel: string,
  now: Date,
): Promise<Map<string, number>> {
  if (rows.length === 0) return new Map();
  const columns = Object.keys(rows[0]!.columns);
  const result = await db.executeQuery(
    CompiledQuery.raw(textFor(columns), [
      JSON.stringify(rows.map((r) => r.columns)),
      rows.map((r) => r.columns.id),
      rows.map((r) => r.grantId),
      rows.map((r) => r.head),
      channel,
      now,
    ]) as CompiledQuery<{ request_id: string; x: string }>,
  );
  return new Map(result.rows.map((r) => [r.request_id, Number(r.x)]));
}

/** The request with its grant (and the index's message), by the columns the caller writes: one text each. */
const insertWithGrant = new Map<string, ReturnType<typeof insertWithGrantQuery>>();

function insertWithGrantQuery(columns: string[]) {
  return precompiled(
    [...columns, "$grant_id", "$grant_state", "$grant_at", "$notify", "$channel", "$head"],
    (db, p: Record<string, unknown>) =>
      db
        .with("request", (db) =>
          db
            .insertInto("activation_requests")
            .values(Object.fromEntries(columns.map((c) => [c, p[c]])) as Insertable<Database["activation_requests"]>)
            .onConflict((oc) => oc.doNothing())
            .returning(["id", "role_id", "requester_id"]),
        )
        // Sent only when the request was written (one row in `request`); read back by the grant's RETURNING.
        .with("sent", (db) =>
          db
            .selectFrom("request")
            .select([
              sql<string>`pg_current_xact_id()::text`.as("x"),
              sql`pg_notify(${p.$channel}, ${p.$head} || pg_current_xact_id()::text || '}')`.as("n"),
            ])
            .where(sql<boolean>`${p.$notify}`),
        )
        .insertInto("grants")
        .columns(["id", "request_id", "role_id", "principal_id", "state", "created_at", "updated_at"])
        .expression((eb) =>
          eb
            .selectFrom("request")
            .select([
              sql<string>`${p.$grant_id}::uuid`.as("id"),
              "request.id as request_id",
              "request.role_id",
              "request.requester_id as principal_id",
              sql<string>`${p.$grant_state}::text`.as("state"),
              sql<Date>`${p.$grant_at}::timestamptz`.as("created_at"),
              sql<Date>`${p.$grant_at}::timestamptz`.as("updated_at"),
            ]),
        )
        .returning(["grants.id", sql<string | null>`(select x from sent)`.as("x")]),
  );
}

/**
 * Inserts a request, unless its requester has one open for its role (the partial unique index: then nothing is
 * written and the answer is false). A request written already approved in its final state gets its grant
 * (`active` on the internal target, `provisioning` elsewhere) in the same statement: one round trip, and no
 * grant without its request.
 */
export async function insertRequest(
  db: Q,
  values: Insertable<Database["activation_requests"]>,
  grant: { id: string; state: "active" | "provisioning"; at: Date } | null,
  /** A message the same statement sends once the request is written: `head` completed by the transaction id. */
  notify?: { channel: string; head: string },
): Promise<{ x?: number } | undefined> {
  if (!grant) {
    const request = db
      .insertInto("activation_requests")
      .values(values)
      .onConflict((oc) => oc.doNothing())
      .returning("id");
    return (await request.executeTakeFirst()) ? {} : undefined;
  }
  // Every auto-approved submit runs this one: precompiled (built, compiled and planned once).
  const columns = Object.keys(values);
  const key = columns.join(",");
  let query = insertWithGrant.get(key);
  if (!query) insertWithGrant.set(key, (query = insertWithGrantQuery(columns)));
  const inserted = (
    await query(db, {
      ...values,
      $grant_id: grant.id,
      $grant_state: grant.state,
      $grant_at: grant.at,
      $notify: notify !== undefined,
      $channel: notify?.channel ?? "",
      $head: notify?.head ?? "",
    })
  ).rows[0];
  if (!inserted) return undefined;
  return inserted.x === null ? {} : { x: Number(inserted.x) };
}
