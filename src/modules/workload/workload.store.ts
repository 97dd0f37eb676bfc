/** SQL of workload identity (Kysely); every function takes the transaction or connection it runs on. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import type { WorkloadTrust } from "./workload.types.js";

type Db = Kysely<Database>;
/** A trust as stored: the service identity by id (its name and status are the identity module's). */
export type TrustRecord = Omit<WorkloadTrust, "service">;

function trustQuery(db: Db) {
  return db
    .selectFrom("workload_trusts")
    .select(["id", "principal_id", "name", "issuer", "audiences", "conditions", "token_ttl_ms", "created_at"]);
}

type TrustRow = Awaited<ReturnType<ReturnType<typeof trustQuery>["execute"]>>[number];

function toTrust(row: TrustRow): TrustRecord {
  return {
    id: row.id,
    principalId: row.principal_id,
    name: row.name,
    issuer: row.issuer,
    audiences: row.audiences,
    conditions: row.conditions,
    tokenTtlMs: row.token_ttl_ms,
    createdAt: new Date(row.created_at).toISOString(),
  };
}

/** The trusts naming this issuer (of any service identity: the caller keeps those of active ones). */
export async function trustsOfIssuer(db: Db, issuer: string): Promise<TrustRecord[]> {
  const rows = await trustQuery(db).where("issuer", "=", issuer).orderBy("id").execute();
  return rows.map(toTrust);
}

export async function trustsOfService(db: Db, principalId: string): Promise<TrustRecord[]> {
  const rows = await trustQuery(db).where("principal_id", "=", principalId).orderBy("name").execute();
  return rows.map(toTrust);
}

export async function insertTrust(
  db: Db,
  row: Omit<WorkloadTrust, "service" | "createdAt"> & { createdBy: string | null; createdAt: Date },
): Promise<boolean> {
  const inserted = await db
    .insertInto("workload_trusts")
    .values({
      id: row.id,
      principal_id: row.principalId,
      name: row.name,
      issuer: row.issuer,
      audiences: row.audiences,
      conditions: JSON.stringify(row.conditions),
      token_ttl_ms: row.tokenTtlMs,
      created_by: row.createdBy,
      created_at: row.createdAt,
    })
    .onConflict((oc) => oc.columns(["principal_id", "name"]).doNothing())
    .returning("id")
    .executeTakeFirst();
  return inserted !== undefined;
}

/** Deletes a trust; its row as it was, or undefined when there was none. */
export async function deleteTrust(db: Db, principalId: string, name: string): Promise<{ issuer: string } | undefined> {
  return db
    .deleteFrom("workload_trusts")
    .where("principal_id", "=", principalId)
    .where("name", "=", name)
    .returning("issuer")
    .executeTakeFirst();
}

/**
 * Records a job token's use; false when its issuer's `jti` was already used (a replay). Uses past their keeping
 * time are removed first, a few at a time, so the table stays the size of the tokens that could still be accepted.
 */
export async function useJti(
  db: Db,
  use: { issuer: string; jti: string; keepUntil: Date; principalId: string; usedAt: Date },
): Promise<boolean> {
  await sql`delete from workload_token_uses where ctid = any(array(
    select ctid from workload_token_uses where keep_until < ${use.usedAt} limit 100))`.execute(db);
  const inserted = await db
    .insertInto("workload_token_uses")
    .values({
      issuer: use.issuer,
      jti: use.jti,
      keep_until: use.keepUntil,
      principal_id: use.principalId,
      used_at: use.usedAt,
    })
    .onConflict((oc) => oc.columns(["issuer", "jti"]).doNothing())
    .returning("jti")
    .executeTakeFirst();
  return inserted !== undefined;
}
