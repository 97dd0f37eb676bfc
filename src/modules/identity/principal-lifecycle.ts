/**
 * Disabling a principal, in the caller's transaction: its sessions and API tokens revoked, its status set, every
 * node's index told, and what it held or waited for ended (pending requests cancelled, activations revoked at the
 * targets through the outbox) — one shared sequence for the directory (`stint users disable`) and SCIM. Who disabled is kept
 * (`disabled_by`): SCIM's `active: true` undoes only a SCIM deprovision. API tokens the principal minted for service
 * identities stay valid (they are the services' credentials); how many is told (`mintedTokensLive`, in the
 * `user.disable` event), and `stint tokens list --minted-by NAME` lists them.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import { StintError } from "../../lib/errors.js";
import type { AuditInput } from "../audit/audit.types.js";
import { countLiveTokensMintedBy } from "./api-token.js";
import * as identityStore from "./identity.store.js";

export interface LifecycleDeps {
  onAccessBasisLost?:
    | ((
        tx: Kysely<Database>,
        scope: { principalIds: string[] },
        cause: { by: string; reason?: string },
      ) => Promise<AuditInput[]>)
    | undefined;
  /** Sends the principal's new state to every node's index (and drops its sessions and tokens from caches). */
  tellPrincipal(tx: Kysely<Database>, id: string): Promise<void>;
}

/**
 * Who disabled a principal, as `principals.disabled_by` keeps it: a SCIM deprovision (`scim:<service>`), which
 * that SCIM may undo, or a Stint administrator (`user:<name>`), which only an administrator undoes.
 */
export type DisabledBy = `scim:${string}` | `user:${string}`;

/** Whether SCIM's `active: true` may enable a principal disabled by `disabledBy` (null: from before 0033). */
export function scimMayEnable(disabledBy: string | null): boolean {
  return disabledBy !== null && disabledBy.startsWith("scim:");
}

/** Disables a locked, active principal; refuses to disable the last active administrator. */
export async function disablePrincipal(
  tx: Kysely<Database>,
  deps: LifecycleDeps,
  row: { id: string; platform_roles: string[] },
  now: Date,
  cause: { by: string; reason?: string },
  disabledBy: DisabledBy,
): Promise<{ sessionsEnded: number; tokensRevoked: number; mintedTokensLive: number; ended: AuditInput[] }> {
  if (row.platform_roles.includes("admin")) {
    await identityStore.lockAdministrators(tx);
    if ((await identityStore.countActiveAdmins(tx)) <= 1)
      throw new StintError("CONFLICT", "That would leave Stint without an active administrator.");
  }
  const sessionsEnded = await identityStore.revokeSessions(tx, row.id, now, "account disabled");
  const tokensRevoked = await identityStore.revokeApiTokens(tx, row.id, now);
  const mintedTokensLive = await countLiveTokensMintedBy(tx, row.id, now);
  // An open invite ends with the account: enabled again later, the user needs a new one.
  await tx
    .updateTable("user_invites")
    .set({ used_at: now, ended_as: "revoked" })
    .where("principal_id", "=", row.id)
    .where("used_at", "is", null)
    .execute();
  await tx
    .updateTable("principals")
    .set({ status: "disabled", disabled_by: disabledBy, updated_at: now })
    .where("id", "=", row.id)
    .execute();
  // Its sessions and tokens (revoked above) are dropped from every node's cache with it.
  await deps.tellPrincipal(tx, row.id);
  // Pending requests are cancelled and active activations revoked in this same transaction.
  const ended = (await deps.onAccessBasisLost?.(tx, { principalIds: [row.id] }, cause)) ?? [];
  return { sessionsEnded, tokensRevoked, mintedTokensLive, ended };
}
