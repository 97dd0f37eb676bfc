/**
 * Read-only questions other modules ask about sessions (the evidence report), so that they do not read the
 * sessions table themselves.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

/** The sessions opened under these activations, with their recordings' keys and hashes, oldest first. */
export function sessionsOfRequests(db: Kysely<Database>, requestIds: readonly string[]) {
  if (requestIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("sessions")
    .select([
      "id",
      "request_id",
      "kind",
      "login",
      "started_at",
      "ended_at",
      "end_reason",
      "recording_key",
      "recording_sha256",
      "recording_bytes",
    ])
    .where("request_id", "in", requestIds)
    .orderBy("started_at")
    .orderBy("id")
    .execute();
}
