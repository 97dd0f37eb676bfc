/** Minting an API token in the caller's transaction: only the SHA-256 of its secret is stored. */
import type { Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import { newId } from "../../lib/ids.js";
import { randomToken, sha256Hex } from "../../lib/security.js";
import { formatApiToken } from "./identity.rules.js";

export async function insertApiToken(
  tx: Kysely<Database>,
  input: { principalId: string; name: string; createdBy: string | null; now: Date; expiresAt: Date },
): Promise<{ id: string; token: string }> {
  const id = newId();
  const secret = randomToken(32);
  await tx
    .insertInto("api_tokens")
    .values({
      id,
      principal_id: input.principalId,
      name: input.name,
      token_hash: sha256Hex(secret),
      created_by: input.createdBy,
      created_at: input.now,
      expires_at: input.expiresAt,
    })
    .execute();
  return { id, token: formatApiToken(id, secret) };
}
