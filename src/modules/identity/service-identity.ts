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

function serviceIdentities(db: Q) {
  return db.selectFrom("principals").select(["id", "name", "status"]).where("kind", "=", "service");
}

/** The service identity named `name`; undefined when there is none (or the name is a user's). */
export async function findServiceIdentity(db: Q, name: string): Promise<ServiceIdentity | undefined> {
  return serviceIdentities(db).where("name", "=", name).executeTakeFirst();
}

/**
 * The service identity `id`, share-locked until the transaction ends (a disable waits for a token being minted,
 * and a token is never minted for an identity being disabled); undefined when there is none.
 */
export async function lockServiceIdentity(tx: Q, id: string): Promise<ServiceIdentity | undefined> {
  return serviceIdentities(tx).where("id", "=", id).forShare().executeTakeFirst();
}

/** The names of the active service identities among `ids` (id → name); others are left out. */
export async function activeServiceIdentities(db: Q, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await serviceIdentities(db).where("id", "in", ids).where("status", "=", "active").execute();
  return new Map(rows.map((r) => [r.id, r.name]));
}
