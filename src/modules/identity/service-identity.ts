/**
 * Service identities as other modules see them (workload identity's trusts and token exchange): looked up by
 * name or locked by id, only ever a principal of kind `service`; a user of that name is not one. Every function
 * takes the transaction (or db) it runs in.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/schema.js";

type Q = Kysely<Database>;

export interface ServiceIdentity {
  id: string;
  name: string;
  status: "active" | "disabled";
}

/** The service identity named `name`; undefined when there is none (or the name is a user's). */
export async function findServiceIdentity(db: Q, name: string): Promise<ServiceIdentity | undefined> {
  return db
    .selectFrom("principals")
    .select(["id", "name", "status"])
    .where("name", "=", name)
    .where("kind", "=", "service")
    .executeTakeFirst();
}

/**
 * The service identity `id`, share-locked until the transaction ends (a disable waits for a token being minted,
 * and a token is never minted for an identity being disabled); undefined when there is none.
 */
export async function lockServiceIdentity(tx: Q, id: string): Promise<ServiceIdentity | undefined> {
  return tx
    .selectFrom("principals")
    .select(["id", "name", "status"])
    .where("id", "=", id)
    .where("kind", "=", "service")
    .forShare()
    .executeTakeFirst();
}

/** The names of the active service identities among `ids` (id → name); others are left out. */
export async function activeServiceIdentities(db: Q, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom("principals")
    .select(["id", "name"])
    .where("id", "in", ids)
    .where("kind", "=", "service")
    .where("status", "=", "active")
    .execute();
  return new Map(rows.map((r) => [r.id, r.name]));
}
