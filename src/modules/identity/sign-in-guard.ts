/**
 * Sign-in throttling and refusals: a failed check counts against the account and the peer address (and may
 * lock them out), a locked account is refused before any check, and every refusal is audited.
 */
import { StintError } from "../../lib/errors.js";
import type { AuditLog } from "../audit/audit.service.js";
import { ANONYMOUS, type Actor, type CallContext } from "../authz/authz.types.js";
import type { IdentityContext } from "./identity.context.js";
import { canonicalUsername, isLocked, recordFailure, type ThrottleState } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";

export function throttleState(
  row: { failures: number; window_started_at: Date | string; locked_until: Date | string | null } | undefined,
): ThrottleState | undefined {
  if (!row) return undefined;
  return {
    failures: row.failures,
    windowStartedAt: new Date(row.window_started_at),
    lockedUntil: row.locked_until ? new Date(row.locked_until) : null,
  };
}

export function signInGuard(deps: IdentityContext) {
  const { store, audit, clock, policy } = deps;
  const userKey = (username: string) => `user:${canonicalUsername(username)}`;
  const ipKey = (context: CallContext) => `ip:${context.sourceIp ?? "unknown"}`;
  const ipPolicy = { ...policy.throttle, maxFailures: policy.throttle.maxFailures * 4 };

  /** Counts a failed sign-in against the account and the peer address, and audits it. */
  async function failSignIn(
    username: string,
    context: CallContext,
    reason: string,
    code:
      | "INVALID_CREDENTIALS"
      | "MFA_INVALID"
      | "WEBAUTHN_INVALID"
      | "WEBAUTHN_CHALLENGE_INVALID"
      | "WEBAUTHN_CLONED_AUTHENTICATOR",
    /** Password and code checks after sign-in (step-up, password change) count against the same lockout. */
    as: { action: string; actor: Actor } = { action: "auth.login", actor: ANONYMOUS },
  ): Promise<never> {
    const now = clock.now();
    const alreadyLocked = await store.transaction(async (tx) => {
      const keys = [userKey(username), ipKey(context)];
      await identityStore.ensureThrottle(tx, keys, now);
      const rows = await identityStore.getThrottle(tx, keys);
      // Attempts that passed the early check while others were locking the account get the lockout answer too.
      const locked = rows.some((row) => isLocked(throttleState(row), now));
      const events: Parameters<AuditLog["append"]>[3] & unknown[] = [
        { action: as.action, outcome: "denied", subject: `user:${username}`, reason },
      ];
      for (const key of keys) {
        const next = recordFailure(
          throttleState(rows.find((r) => r.key === key)),
          now,
          key.startsWith("ip:") ? ipPolicy : policy.throttle,
        );
        await identityStore.putThrottle(tx, key, next);
        if (next.justLocked) {
          events.push({
            action: "auth.lockout",
            outcome: "denied",
            subject: key.startsWith("ip:") ? `ip:${context.sourceIp}` : `user:${username}`,
            reason: `${next.failures} failed sign-ins`,
            details: { lockedUntil: next.lockedUntil?.toISOString() },
          });
        }
      }
      await audit.append(tx, as.actor, context, events);
      return locked;
    });
    throw new StintError(alreadyLocked ? "ACCOUNT_LOCKED" : code);
  }

  /** Refuses a check for an account (or peer) that is locked out. */
  async function refuseIfLocked(username: string, context: CallContext, action: string, actor: Actor): Promise<void> {
    const rows = await identityStore.getThrottle(store.db, [userKey(username), ipKey(context)]);
    if (rows.some((row) => isLocked(throttleState(row), clock.now())))
      await lockedOut(username, context, action, actor);
  }

  /** The audited ACCOUNT_LOCKED refusal. */
  function lockedOut(username: string, context: CallContext, action: string, actor: Actor = ANONYMOUS): Promise<never> {
    const error = new StintError("ACCOUNT_LOCKED");
    return deny(context, action, `user:${username}`, "locked out after repeated failures", error, actor);
  }

  async function deny(
    context: CallContext,
    action: string,
    subject: string,
    reason: string,
    error: StintError,
    actor: Actor = ANONYMOUS,
  ): Promise<never> {
    await audit.record(actor, context, { action, outcome: "denied", subject, reason });
    throw error;
  }

  return { userKey, ipKey, failSignIn, refuseIfLocked, lockedOut, deny };
}
