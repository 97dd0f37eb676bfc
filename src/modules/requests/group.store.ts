/**
 * SQL that writes new requests: one submit's (`insertRequest`) and a group of submits' (`insertActiveRequests`):
 * the requests, their grants and the access index's messages, in one statement, whatever the number. Its text is
 * constant for a set of columns (every submit writes the same ones) with one JSON parameter
 * (`lib/constant-sql.ts`): prepared once per PostgreSQL connection, one value serialized, and seen by Kysely's
 * plugins (tests count it, or make it fail).
 */
import type { Insertable, Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { PREPARED } from "../../lib/db.js";
import { oneParameter } from "../../lib/constant-sql.js";

type Q = Kysely<Database>;

/** The statement for a set of columns, and its rows' writer: one each. */
const statements = new Map<string, { run: ReturnType<typeof statementFor>; row: ReturnType<typeof rowWriter> }>();

function statementFor(columns: readonly string[]) {
  const list = columns.map((c) => `"${c.replaceAll('"', '""')}"`).join(", ");
  // `$1` is `{"now": …, "channel": …, "rows": [ {column: value, …, "grant$": grant id, "state$": the grant's
  // state, "head$": the index's message without its end, or ""}, … ]}`. The rows are read with the table's own
  // row type (`jsonb_populate_recordset`, which ignores the `…$` keys). A request the partial unique index
  // refuses (its requester has one open for that role) is not written, nor its grant, nor its message: the
  // RETURNING names the ones written. `sent` runs once (its count is read by the RETURNING).
  return oneParameter<{ request_id: string; x: string }>(`${PREPARED} with p as (select $1::jsonb as j),
  request as (
    insert into activation_requests (${list})
    select ${list} from jsonb_populate_recordset(null::activation_requests, (select j->'rows' from p))
    on conflict do nothing
    returning id, role_id, requester_id
  ),
  g as (
    select (e->>'id')::uuid as rid, (e->>'grant$')::uuid as gid, e->>'state$' as state, e->>'head$' as head
    from p, jsonb_array_elements(p.j->'rows') as e
  ),
  c as (select j->>'channel' as channel, (j->>'now')::timestamptz as now from p),
  sent as (
    select pg_notify(c.channel, g.head || pg_current_xact_id()::text || '}') from request r join g on g.rid = r.id, c
    where g.head <> ''
  )
  insert into grants (id, request_id, role_id, principal_id, state, created_at, updated_at)
  select g.gid, r.id, r.role_id, r.requester_id, g.state, c.now, c.now
  from request r join g on g.rid = r.id, c
  returning request_id, (select pg_current_xact_id()::text) as x, (select count(*) from sent) as sent`);
}

/** A request to write with its grant, as `insertActiveRequests` takes it. */
export interface RequestWithGrant {
  /**
   * The request's columns, the same ones for every row of a call. Its JSON columns (`policy_snapshot`,
   * `stages`) given as texts are their JSON texts (as `planSubmit` writes them): written into the parameter as
   * they are, not serialized again.
   */
  columns: Record<string, unknown>;
  grantId: string;
  grantState?: "active" | "provisioning";
  /** The index's message, completed by the transaction id and sent once the request is written; "" for none. */
  head: string;
}

/** JSON columns a caller may give as their JSON text (`planSubmit` writes them so). */
const JSON_TEXT_COLUMNS = new Set(["policy_snapshot", "stages"]);

/** A value as JSON: a `Date` as its ISO text, a JSON column's text as it is. */
function jsonValue(value: unknown, jsonText: boolean): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return jsonText ? value : JSON.stringify(value);
  if (value instanceof Date) return `"${value.toISOString()}"`;
  return JSON.stringify(value);
}

/**
 * The rows' writer for a set of columns: each row's object written key by key from texts made once (the keys
 * quoted, a JSON column's text written in as it is), not by serializing an object built per row.
 */
function rowWriter(columns: readonly string[]) {
  const keys = columns.map((c, i) => `${i === 0 ? "{" : ","}${JSON.stringify(c)}:`);
  const jsonText = columns.map((c) => JSON_TEXT_COLUMNS.has(c));
  return (row: RequestWithGrant): string => {
    let text = "";
    for (let i = 0; i < columns.length; i++) text += keys[i]! + jsonValue(row.columns[columns[i]!], jsonText[i]!);
    return `${text},"grant$":${JSON.stringify(row.grantId)},"state$":"${row.grantState ?? "active"}","head$":${JSON.stringify(row.head)}}`;
  };
}

/**
 * Inserts requests on the internal target (or provisioning elsewhere), each with its grant (`active` unless
 * told) and, when it has one, its index message (`head` completed by the transaction id, sent at commit).
 * Returns the transaction id for each request written, by request id; a request missing from it was not
 * written (its requester has one open).
 */
export async function insertActiveRequests(
  db: Q,
  rows: readonly RequestWithGrant[],
  channel: string,
  now: Date,
): Promise<Map<string, number>> {
  if (rows.length === 0) return new Map();
  const columns = Object.keys(rows[0]!.columns);
  const key = columns.join(",");
  let statement = statements.get(key);
  if (!statement) statements.set(key, (statement = { run: statementFor(columns), row: rowWriter(columns) }));
  const parameter = `{"now":"${now.toISOString()}","channel":${JSON.stringify(channel)},"rows":[${rows.map(statement.row).join(",")}]}`;
  const result = await statement.run(parameter).execute(db);
  return new Map(result.rows.map((r) => [r.request_id, Number(r.x)]));
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
  // Every auto-approved submit alone runs this one: the group's statement, for one row.
  const written = await insertActiveRequests(
    db,
    [
      {
        columns: values as Record<string, unknown>,
        grantId: grant.id,
        grantState: grant.state,
        head: notify?.head ?? "",
      },
    ],
    notify?.channel ?? "",
    grant.at,
  );
  const x = written.get(values.id as string);
  if (x === undefined) return undefined;
  return notify ? { x } : {};
}
