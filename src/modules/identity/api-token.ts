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

/** Where a token's minter stands now: `disabled` by an admin, `deprovisioned` by SCIM (a leaver either way). */
export type MinterStatus = "active" | "disabled" | "deprovisioned";

/**
 * API tokens, never their secrets, with their minter (`created_by`, a principal: never deleted) as it stands now;
 * narrowed to one minter's (`mintedBy`), or to those whose minter left (`minterLeft`: disabled or deprovisioned).
 * A token outlives its minter leaving: the credential is the service's, as Entra and GitHub keep app credentials;
 * this is how an operator finds them.
 */
export async function listApiTokens(db: Kysely<Database>, filter: { mintedBy?: string; minterLeft?: boolean }) {
  let query = db
    .selectFrom("api_tokens")
    .innerJoin("principals", "principals.id", "api_tokens.principal_id")
    .leftJoin("principals as minters", "minters.id", "api_tokens.created_by")
    .select([
      "api_tokens.id",
      "api_tokens.name",
      "principals.name as principal",
      "api_tokens.created_at",
      "api_tokens.expires_at",
      "api_tokens.last_used_at",
      "api_tokens.revoked_at",
      "minters.name as minter_name",
      "minters.status as minter_status",
      "minters.source as minter_source",
    ]);
  if (filter.mintedBy !== undefined) query = query.where("minters.name", "=", filter.mintedBy);
  if (filter.minterLeft) query = query.where("minters.status", "=", "disabled");
  const rows = await query.orderBy("api_tokens.created_at", "desc").execute();
  const iso = (value: Date | string) => new Date(value).toISOString();
  return rows.map((t) => ({
    id: t.id,
    name: t.name,
    principal: t.principal,
    createdAt: iso(t.created_at),
    expiresAt: iso(t.expires_at),
    lastUsedAt: t.last_used_at ? iso(t.last_used_at) : null,
    revokedAt: t.revoked_at ? iso(t.revoked_at) : null,
    minter:
      t.minter_name === null
        ? null
        : {
            name: t.minter_name,
            status: (t.minter_status === "active"
              ? "active"
              : t.minter_source === "scim-deleted"
                ? "deprovisioned"
                : "disabled") as MinterStatus,
          },
  }));
}

/** How many live (not revoked, not expired) API tokens a principal minted: what stays valid when they leave. */
export async function countLiveTokensMintedBy(db: Kysely<Database>, principalId: string, now: Date): Promise<number> {
  const row = await db
    .selectFrom("api_tokens")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("created_by", "=", principalId)
    .where("revoked_at", "is", null)
    .where("expires_at", ">", now)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
