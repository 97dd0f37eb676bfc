/** SQL of logins pre-created at targets ahead of demand (migrations/0038; grants.precreated.ts). */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { Alongside } from "../outbox/index.js";

type Q = Kysely<Database>;

/**
 * Hands one ready pre-created login of the target to the grant, carried by the provisioning job's INSERT in the
 * submit's transaction (outbox `alongside`, one statement): the oldest ready row, locked (rows another submit is
 * taking are skipped, never waited for), is deleted, its sealed password becomes the grant's credential (`pool_id`
 * naming its binding; unique, so no two grants ever hold one login) and its login the grant's; with none ready,
 * the grant gets `minted`. A rollback of the submit puts the row back as it was.
 */
export function claimPreCreated(input: { grantId: string; targetId: string; now: Date; minted: string }): Alongside[] {
  return [
    () => sql`(select id, login, ciphertext, wrapped_key, kek_version from precreated_logins
               where target_id = ${input.targetId} and state = 'ready'
               order by created_at, id
               limit 1
                 for update skip locked)`,
    () => sql`(delete from precreated_logins where id in (select id from alongside))`,
    () => sql`(insert into grant_credentials (grant_id, login, ciphertext, wrapped_key, kek_version, created_at, pool_id)
              select ${input.grantId}, login, ciphertext, wrapped_key, kek_version, ${input.now}, id from alongside)`,
    () => sql`(update grants set login = coalesce((select login from alongside), ${input.minted})
               where id = ${input.grantId})`,
  ];
}

/** Rows of pre-created logins about to be made at the target (state `creating`), in one statement. */
export async function insertCreating(
  db: Q,
  rows: {
    id: string;
    targetId: string;
    login: string;
    ciphertext: string;
    wrappedKey: string;
    kekVersion: number;
    now: Date;
  }[],
): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto("precreated_logins")
    .values(
      rows.map((row) => ({
        id: row.id,
        target_id: row.targetId,
        login: row.login,
        state: "creating" as const,
        ciphertext: row.ciphertext,
        wrapped_key: row.wrappedKey,
        kek_version: row.kekVersion,
        created_at: row.now,
      })),
    )
    .execute();
}

/** The logins made at the target: ready to be handed out. */
export async function markReady(tx: Q, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await tx.updateTable("precreated_logins").set({ state: "ready" }).where("id", "in", ids).execute();
}

/** The target's pre-created logins: how many are ready, and those left `creating` before `staleBefore`. */
export async function preCreatedOf(db: Q, targetId: string, staleBefore: Date) {
  const rows = await db
    .selectFrom("precreated_logins")
    .select(["id", "login", "state", "created_at"])
    .where("target_id", "=", targetId)
    .execute();
  return {
    ready: rows.filter((row) => row.state === "ready").length,
    creating: rows.filter((row) => row.state === "creating" && new Date(row.created_at) >= staleBefore).length,
    stale: rows.filter((row) => row.state === "creating" && new Date(row.created_at) < staleBefore),
  };
}

export async function deletePreCreated(db: Q, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.deleteFrom("precreated_logins").where("id", "in", ids).execute();
}
