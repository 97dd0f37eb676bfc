/** SQL of the access index: the snapshot a node loads, and the notification a transaction sends. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
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

/** Sends `message` to every node; delivered when the transaction commits, never if it rolls back. */
export async function notify(db: Q, message: AccessMessage): Promise<void> {
  await sql`select pg_notify(${ACCESS_CHANNEL}, ${JSON.stringify(message)})`.execute(db);
}

/**
 * The payloads of `messages`, in order: a run of `end` messages travels as `ends` messages of up to
 * `MAX_PACKED_IDS` packed ids each (`parseMessages` gives them back as `end` messages), so a batch of 500
 * activations ended is two notifications, not 500, for the database to queue and every node to read.
 */
export function payloadsOf(messages: readonly AccessMessage[]): string[] {
  const payloads: string[] = [];
  for (let i = 0; i < messages.length;) {
    const message = messages[i]!;
    if (message.t !== "end") {
      payloads.push(JSON.stringify(message));
      i++;
      continue;
    }
    const run: AccessMessage[] = [];
    while (i < messages.length && messages[i]!.t === "end" && run.length < MAX_PACKED_IDS) run.push(messages[i++]!);
    const ids = packIds(run.map((m) => (m as { id: string }).id));
    if (run.length > 1 && ids !== null) payloads.push(JSON.stringify({ t: "ends", at: run[0]!.at, ids }));
    else for (const m of run) payloads.push(JSON.stringify(m));
  }
  return payloads;
}

/** Sends `messages` in this order, in one statement (ending thousands of activations at once). */
export async function notifyMany(db: Q, messages: AccessMessage[]): Promise<void> {
  if (messages.length === 0) return;
  const payloads = payloadsOf(messages);
  if (payloads.length === 1) {
    await sql`select pg_notify(${ACCESS_CHANNEL}, ${payloads[0]})`.execute(db);
    return;
  }
  await sql`select pg_notify(${ACCESS_CHANNEL}, m) from unnest(${payloads}::text[]) with ordinality as t(m, n) order by n`.execute(
    db,
  );
}
