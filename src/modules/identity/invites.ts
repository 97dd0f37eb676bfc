/**
 * Invites (docs/security.md, finding 89): an administrator makes a user without choosing their password, and the
 * user redeems a one-time code to choose it themselves, as `tctl users add` does. The code (160 random bits) is
 * answered once, to the administrator who issued it, and kept only as its SHA-256; it expires (`inviteTtl`,
 * default 24 hours), is used once, and issuing another replaces it. Redemption is guessed at like a password:
 * each attempt is claimed against the account before the code is checked (sign-in-guard.ts), so wrong codes lock
 * the account out as wrong passwords do. The code is in no log, audit event, URL or later answer.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { constantTimeEqual, randomToken, sha256Hex } from "../../lib/security.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import { ANONYMOUS, type Actor, type CallContext } from "../authz/authz.types.js";
import type { IdentityContext } from "./identity.context.js";
import { passwordProblem } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import { signInGuard } from "./sign-in-guard.js";

/** How long an invite is good for when the configuration says nothing. */
export const DEFAULT_INVITE_TTL_MS = 86_400_000;

const REDEEMED = "user.invite_redeemed";

/**
 * In the caller's transaction, with `row` locked: a one-time invite for this user without a password, replacing
 * an open one. Answers the code (once) and the `user.invited` event for the caller to append with its own.
 */
export async function writeInvite(
  tx: Kysely<Database>,
  deps: { clock: Clock; ttlMs: number },
  actor: Actor,
  row: Pick<identityStore.PrincipalRow, "id" | "name" | "kind" | "status">,
): Promise<{ invite: { code: string; expiresAt: string }; event: AuditInput }> {
  if (row.kind !== "user")
    throw new StintError("VALIDATION_FAILED", "Service identities sign in with API tokens, not invites.");
  if (row.status !== "active")
    throw new StintError("ACCOUNT_DISABLED", `${row.name} is disabled: enable the account before inviting.`);
  if ((await identityStore.getPasswordHash(tx, row.id)) !== undefined)
    throw new StintError("PASSWORD_ALREADY_SET", `${row.name} already has a password; an invite would not be used.`);
  const code = randomToken(20);
  const now = deps.clock.now();
  const expiresAt = new Date(now.getTime() + deps.ttlMs);
  const replaced = await tx
    .updateTable("user_invites")
    .set({ used_at: now, ended_as: "replaced" })
    .where("principal_id", "=", row.id)
    .where("used_at", "is", null)
    .executeTakeFirst();
  await tx
    .insertInto("user_invites")
    .values({
      id: newId(),
      principal_id: row.id,
      code_hash: sha256Hex(code),
      issued_by: actor.kind === "principal" ? `user:${actor.name}` : actor.kind,
      created_at: now,
      expires_at: expiresAt,
    })
    .execute();
  return {
    invite: { code, expiresAt: expiresAt.toISOString() },
    event: {
      action: "user.invited",
      outcome: "success",
      subject: `user:${row.name}`,
      details: { expiresAt: expiresAt.toISOString(), replaced: Number(replaced.numUpdatedRows) > 0 },
    },
  };
}

export function createInviteUseCases(deps: IdentityContext) {
  const { store, audit, clock, hash } = deps;
  const { failSignIn, claimAttempt, releaseAttempt, deny } = signInGuard(deps);
  const ttlMs = deps.inviteTtlMs ?? DEFAULT_INVITE_TTL_MS;

  /** The open invite of the user `username` whose code is `code`, or undefined (unknown user, wrong code). */
  async function openInvite(username: string, code: string) {
    const row = await store.db
      .selectFrom("user_invites")
      .innerJoin("principals", "principals.id", "user_invites.principal_id")
      .select(["user_invites.id", "user_invites.code_hash", "principals.id as principalId"])
      .where("principals.name", "=", username)
      .where("user_invites.used_at", "is", null)
      .where("user_invites.expires_at", ">", clock.now())
      .executeTakeFirst();
    // Compared even when there is no invite, so an unknown user costs what a wrong code does.
    const matches = constantTimeEqual(row?.code_hash ?? sha256Hex(""), sha256Hex(code));
    return row && matches ? row : undefined;
  }

  return {
    /**
     * Issues a one-time invite for `name`, a user without a password (made with `invite: true`, or before the
     * password was set): the code is answered once. Any earlier open invite of theirs is replaced.
     */
    async issueInvite(actor: Actor, name: string, context: CallContext): Promise<{ code: string; expiresAt: string }> {
      authorize(actor, "users.write");
      return store.transaction(async (tx) => {
        const found = await identityStore.findPrincipalByName(tx, name);
        const row = found ? await identityStore.lockPrincipal(tx, found.id) : undefined;
        if (!row) throw new StintError("NOT_FOUND", `No user is named ${name}.`);
        const { invite, event } = await writeInvite(tx, { clock, ttlMs }, actor, row);
        await audit.append(tx, actor, context, event);
        return invite;
      });
    },

    /**
     * Redeems an invite: `username` chooses their own password with the code. A wrong, used, expired or replaced
     * code (or an unknown user) is INVITE_INVALID and counts against the account like a wrong password.
     */
    async redeemInvite(
      input: { username: string; code: string; password: string },
      context: CallContext,
    ): Promise<{ ok: true }> {
      const problem = passwordProblem(input.password, input.username);
      if (problem) throw new StintError("WEAK_PASSWORD", `The password ${problem}.`);
      const claim = await claimAttempt(input.username, context, REDEEMED, ANONYMOUS);
      const invite = await openInvite(input.username, input.code);
      if (!invite) {
        const as = { action: REDEEMED, actor: ANONYMOUS };
        return failSignIn(input.username, context, "invite code wrong, used or expired", "INVITE_INVALID", as, claim);
      }
      await releaseAttempt(claim);
      const passwordHash = await hash(input.password);
      const refusal = await store.transaction(async (tx) => {
        const row = await identityStore.lockPrincipal(tx, invite.principalId);
        const now = clock.now();
        // Used by a parallel redemption, or replaced, while the password was hashed.
        const still = await tx
          .updateTable("user_invites")
          .set({ used_at: now, ended_as: "redeemed" })
          .where("id", "=", invite.id)
          .where("used_at", "is", null)
          .executeTakeFirst();
        if (Number(still.numUpdatedRows) === 0) return new StintError("INVITE_INVALID");
        if (!row || row.status !== "active") return new StintError("ACCOUNT_DISABLED");
        if ((await identityStore.getPasswordHash(tx, row.id)) !== undefined)
          return new StintError("PASSWORD_ALREADY_SET", `${row.name} already has a password.`);
        await identityStore.setPasswordHash(tx, row.id, passwordHash, now);
        await audit.append(tx, ANONYMOUS, context, {
          action: REDEEMED,
          outcome: "success",
          subject: `user:${row.name}`,
          reason: "the user chose their password with an invite",
        });
        return undefined;
      });
      if (refusal) return deny(context, REDEEMED, `user:${input.username}`, refusal.message, refusal);
      return { ok: true };
    },
  };
}
