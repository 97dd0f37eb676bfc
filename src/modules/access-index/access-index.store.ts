/** SQL of the access index: the snapshot a node loads, and the notification a transaction sends. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { oneParameter } from "../../lib/constant-sql.js";
import { PREPARED } from "../../lib/db.js";
import { MAX_PACKED_IDS, packIds } from "../../lib/packed-ids.js";
import type { AccessMessage, ActiveActivation, PrincipalEntry } from "./access-index.types.js";

type Q = Kysely<Database>;

/** The channel every node listens on. */
export const ACCESS_CHANNEL = "stint_access";

/** Every activation in state `active` (expired ones too: the clock decides when they stop counting). */
export async function loadActive(db: Q): Promise<ActiveActivation[]> {
  const rows = await db
    .selectFrom("activation_requests")
    .innerJoin("roles", "roles.id", "activation_requests.role_id")
    .innerJoin("principals", "principals.id", "activation_requests.requester_id")
    .select([
      "activation_requests.id",
      "activation_requests.requester_id",
      "principals.name as principal_name",
      "activation_requests.role_id",
      "roles.name as role_name",
      "activation_requests.expires_at",
      "activation_requests.activated_at",
    ])
    .where("activation_requests.state", "=", "active")
    .where("activation_requests.extends_request_id", "is", null)
    .execute();
  return rows
    .filter((r) => r.expires_at !== null)
    .map((r) => ({
      requestId: r.id,
      principalId: r.requester_id,
      principalName: r.principal_name,
      roleId: r.role_id,
      roleName: r.role_name,
      expiresAt: new Date(r.expires_at!).getTime(),
      activatedAt: r.activated_at ? new Date(r.activated_at).getTime() : 0,
    }));
}

export async function loadPrincipals(db: Q): Promise<PrincipalEntry[]> {
  const rows = await db.selectFrom("principals").select(["id", "name", "kind", "status", "platform_roles"]).execute();
  return rows.map(principalEntry);
}

export async function loadPrincipal(db: Q, id: string): Promise<PrincipalEntry | undefined> {
  const row = await db
    .selectFrom("principals")
    .select(["id", "name", "kind", "status", "platform_roles"])
    .where("id", "=", id)
    .executeTakeFirst();
  return row ? principalEntry(row) : undefined;
}

function principalEntry(row: {
  id: string;
  name: string;
  kind: "user" | "service";
  status: "active" | "disabled";
  platform_roles: string[];
}): PrincipalEntry {
  return { id: row.id, name: row.name, kind: row.kind, status: row.status, platformRoles: row.platform_roles };
}

/** Every role's id and current name (a rename is picked up from this, see the README). */
export function roleNames(db: Q): Promise<{ id: string; name: string }[]> {
  return db.selectFrom("roles").select(["id", "name"]).execute();
}

/**
 * What a reload reads, in one read-only repeatable-read transaction: the transaction snapshot its reads saw
 * (`pg_current_snapshot()`, "xmin:xmax:xip,…", taken by its first statement) and the activations and
 * principals as of that snapshot.
 */
export function loadSnapshot(
  db: Q,
): Promise<{ tx: string; activations: ActiveActivation[]; principals: PrincipalEntry[] }> {
  return db
    .transaction()
    .setIsolationLevel("repeatable read")
    .setAccessMode("read only")
    .execute(async (tx) => {
      const { rows } = await sql<{ snapshot: string }>`select pg_current_snapshot()::text as snapshot`.execute(tx);
      const activations = await loadActive(tx);
      const principals = await loadPrincipals(tx);
      return { tx: rows[0]!.snapshot, activations, principals };
    });
}

/** The sending transaction's id, as text. */
type Xid = { x: string };

/**
 * The notifications' statements: constant texts with one parameter each (`oneParameter`), prepared on each
 * PostgreSQL connection: no query built per message, no text array escaped element by element.
 */
const NOTIFY_ONE = oneParameter(`${PREPARED} select pg_notify('${ACCESS_CHANNEL}', $1::text)`);
/** `$1` completed by the sending transaction's id and `}`. */
const NOTIFY_ONE_WITH_X = oneParameter<Xid>(`${PREPARED} select x, pg_notify('${ACCESS_CHANNEL}', $1::text || x || '}')
  from (select pg_current_xact_id()::text as x) as current`);
/** The payloads as one JSON array of texts, sent in its order. */
const NOTIFY_MANY = oneParameter(`${PREPARED} select pg_notify('${ACCESS_CHANNEL}', m)
  from jsonb_array_elements_text($1::jsonb) with ordinality as t(m, n) order by n`);
/** As `NOTIFY_MANY`, each payload `[text, tail]`: with `tail` true, completed by the transaction's id and `}`. */
const NOTIFY_MANY_WITH_X = oneParameter<Xid>(`${PREPARED} select current.x,
    pg_notify('${ACCESS_CHANNEL}', case when (t.e->>1)::boolean then (t.e->>0) || current.x || '}' else t.e->>0 end)
  from (select pg_current_xact_id()::text as x) as current, jsonb_array_elements($1::jsonb) with ordinality as t(e, n)
  order by t.n`);

/**
 * Sends `message` to every node; delivered when the transaction commits, never if it rolls back. An `act` or
 * a `prn` carries the sending transaction's id as `x` (added by the statement itself, no extra round trip),
 * which is returned.
 */
export async function notify(db: Q, message: AccessMessage): Promise<number | undefined> {
  if (message.t !== "act" && message.t !== "prn") {
    await NOTIFY_ONE(JSON.stringify(message)).execute(db);
    return undefined;
  }
  const { rows } = await NOTIFY_ONE_WITH_X(`${JSON.stringify(message).slice(0, -1)},"x":`).execute(db);
  return Number(rows[0]!.x);
}

/**
 * `messages` as the notifications they travel in, in order: a run of `end` messages travels as `ends`
 * messages of up to `MAX_PACKED_IDS` packed ids each (`parseMessages` gives them back as `end` messages), so a
 * batch of 500 activations ended is two notifications, not 500, for the database to queue and every node to
 * read; any other message as one of its own.
 */
export function notificationsOf(messages: readonly AccessMessage[]): AccessMessage[][] {
  const groups: AccessMessage[][] = [];
  for (let i = 0; i < messages.length;) {
    if (messages[i]!.t !== "end") {
      groups.push([messages[i++]!]);
      continue;
    }
    const run: AccessMessage[] = [];
    while (i < messages.length && messages[i]!.t === "end" && run.length < MAX_PACKED_IDS) run.push(messages[i++]!);
    groups.push(run);
  }
  return groups;
}

/** The payload of one notification of `notificationsOf` (several if its ids cannot be packed). */
export function payloadsOfNotification(group: readonly AccessMessage[]): string[] {
  if (group.length === 1) return [JSON.stringify(group[0])];
  const first = group[0]!;
  const ids = packIds(group.map((m) => (m as { id: string }).id));
  if (ids === null) return group.map((m) => JSON.stringify(m));
  return [JSON.stringify({ t: "ends", o: first.o, at: first.at, ids })];
}

/** The payloads of `messages`, in order (`notificationsOf`). */
export function payloadsOf(messages: readonly AccessMessage[]): string[] {
  return notificationsOf(messages).flatMap(payloadsOfNotification);
}

/** Whether a payload is an `act` or a `prn` (they carry the sending transaction's id). */
const ordered = (payload: string) => payload.startsWith('{"t":"act"') || payload.startsWith('{"t":"prn"');

/**
 * Sends `messages` in this order, in one statement (ending thousands of activations at once). Returns the
 * transaction's id when an `act` or a `prn` is among them (they carry it, as with `notify`).
 */
export async function notifyMany(db: Q, messages: AccessMessage[]): Promise<number | undefined> {
  if (messages.length === 0) return undefined;
  const payloads = payloadsOf(messages);
  if (payloads.some(ordered)) {
    const rows = payloads.map((p) => (ordered(p) ? [`${p.slice(0, -1)},"x":`, true] : [p, false]));
    const { rows: sent } = await NOTIFY_MANY_WITH_X(JSON.stringify(rows)).execute(db);
    return Number(sent[0]!.x);
  }
  if (payloads.length === 1) await NOTIFY_ONE(payloads[0]).execute(db);
  else await NOTIFY_MANY(JSON.stringify(payloads)).execute(db);
  return undefined;
}
