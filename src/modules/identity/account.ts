/**
 * The signed-in principal's own account: who they are, and changing their password (other sessions end).
 */
import { StintError } from "../../lib/errors.js";
import { verifyPassword } from "../../lib/security.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { IdentityContext } from "./identity.context.js";
import { passwordProblem } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import type { Principal } from "./identity.types.js";
import { toPrincipal } from "./principal.mapper.js";
import { signInGuard } from "./sign-in-guard.js";

export function createAccountUseCases(deps: IdentityContext) {
  const { store, audit, clock, index, hash } = deps;
  const { failSignIn, claimAttempt, releaseAttempt } = signInGuard(deps);

  return {
    async me(actor: Actor): Promise<Principal> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const row = await identityStore.findPrincipalById(store.db, actor.id);
      if (!row) throw new StintError("UNAUTHENTICATED");
      return toPrincipal(store.db, row);
    },

    async changePassword(
      actor: Actor,
      input: { currentPassword: string; newPassword: string },
      context: CallContext,
    ): Promise<void> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      // Counted before the current password is checked: parallel guesses cannot outrun the lockout.
      const claim = await claimAttempt(actor.name, context, "user.password_changed", actor);
      const stored = await identityStore.getPasswordHash(store.db, actor.id);
      if (!stored || !(await verifyPassword(input.currentPassword, stored))) {
        const as = { action: "user.password_changed", actor };
        return failSignIn(actor.name, context, "current password wrong", "INVALID_CREDENTIALS", as, claim);
      }
      await releaseAttempt(claim);
      const problem = passwordProblem(input.newPassword, actor.name);
      if (problem) throw new StintError("WEAK_PASSWORD", `The password ${problem}.`);
      const newHash = await hash(input.newPassword);
      await store.transaction(async (tx) => {
        const now = clock.now();
        await identityStore.setPasswordHash(tx, actor.id, newHash, now);
        // Other sessions end: whoever knew the old password is signed out.
        await tx
          .updateTable("refresh_sessions")
          .set({ revoked_at: now, revoked_reason: "password changed" })
          .where("principal_id", "=", actor.id)
          .where("revoked_at", "is", null)
          .where("id", "!=", actor.sessionId ?? "00000000-0000-0000-0000-000000000000")
          .execute();
        await index?.send(tx, { t: "pses", pid: actor.id });
        await audit.append(tx, actor, context, {
          action: "user.password_changed",
          outcome: "success",
          subject: `user:${actor.name}`,
        });
      });
    },
  };
}
