/**
 * Read-only questions other modules ask about grants (the evidence report), so that they do not read the grants
 * table themselves.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

/** When each of these activations' grants was removed at the target (state revoked). */
export function revokedGrantsOf(db: Kysely<Database>, requestIds: readonly string[]) {
  if (requestIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("grants")
    .select(["request_id", "updated_at"])
    .where("request_id", "in", requestIds)
    .where("state", "=", "revoked")
    .execute();
}
