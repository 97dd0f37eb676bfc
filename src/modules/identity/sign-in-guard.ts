/**
 * Sign-in throttling and refusals: a failed check counts against the account and the peer address (and may
 * lock them out), a locked account is refused before any check, and every refusal is audited.
 *
 * A guess at a password or a one-time code is counted against the account *before* it is checked
 * (`claimAttempt`, under the counter's row lock), and given back when it was no failure: concurrent guesses
 * cannot outrun the lockout, on one node or many (the count is in the database). Counted after the check,
 * a burst of 60 parallel step-ups had all 60 codes checked under a limit of 5.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { StintError } from "../../lib/errors.js";
import type { AuditLog } from "../audit/audit.service.js";
import { ANONYMOUS, type Actor, type CallContext } from "../authz/authz.types.js";
import type { IdentityContext } from "./identity.context.js";
import { canonicalUsername, isLocked, recordFailure, type ThrottleState } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";

/** A guess counted against the account before its check (`claimAttempt`). */
export interface AttemptClaim {
  key: string;
  failures: number;
  /** This claim reached the limit and locked the account. */
  justLocked: boolean;
  lockedUntil: Date | null;
}

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

/** A lock younger than this may belong to a guess still being checked: a claim waits for it (see claimAttempt). */
const FRESH_LOCK_MS = 3_000;
/** How long a claim waits, at most, for a fresh lock to be given back, and how often it looks. */
const CLAIM_WAIT_MS = 3_000;
const CLAIM_RETRY_MS = 50;

/** When the latest of these locks was set (ms since the epoch). */
function lockStart(locks: (ThrottleState | undefined)[], lockoutMs: number): number {
  return Math.max(...locks.map((state) => (state?.lockedUntil?.getTime() ?? 0) - lockoutMs));
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
      | "WEBAUTHN_CLONED_AUTHENTICATOR"
      | "INVITE_INVALID",
    /** Password and code checks after sign-in (step-up, password change) count against the same lockout. */
    as: { action: string; actor: Actor } = { action: "auth.login", actor: ANONYMOUS },
    /** The attempt `claimAttempt` already counted against the account: only the address is counted now. */
    claim?: AttemptClaim,
  ): Promise<never> {
    const now = clock.now();
    const alreadyLocked = await store.transaction(async (tx) => {
      const keys = [userKey(username), ipKey(context)];
      await identityStore.ensureThrottle(tx, keys, now);
      const rows = await identityStore.getThrottle(tx, keys);
      // Attempts that passed the early check while others were locking the account get the lockout answer too
      // (a claimed attempt was let through: the account's lock it may have set is its own).
      const locked = rows.some((row) => (!claim || row.key !== claim.key) && isLocked(throttleState(row), now));
      const events: Parameters<AuditLog["append"]>[3] & unknown[] = [
        { action: as.action, outcome: "denied", subject: `user:${username}`, reason },
      ];
      if (claim?.justLocked) events.push(lockoutEvent(`user:${username}`, claim.failures, claim.lockedUntil));
      for (const key of keys) {
        if (key === claim?.key) continue;
        const next = recordFailure(
          throttleState(rows.find((r) => r.key === key)),
          now,
          key.startsWith("ip:") ? ipPolicy : policy.throttle,
        );
        await identityStore.putThrottle(tx, key, next);
        if (next.justLocked)
          events.push(
            lockoutEvent(
              key.startsWith("ip:") ? `ip:${context.sourceIp}` : `user:${username}`,
              next.failures,
              next.lockedUntil,
            ),
          );
      }
      await audit.append(tx, as.actor, context, events);
      return locked;
    });
    throw new StintError(alreadyLocked ? "ACCOUNT_LOCKED" : code);
  }

  function lockoutEvent(subject: string, failures: number, lockedUntil: Date | null) {
    return {
      action: "auth.lockout",
      outcome: "denied" as const,
      subject,
      reason: `${failures} failed sign-ins`,
      details: { lockedUntil: lockedUntil?.toISOString() },
    };
  }

  /**
   * Counts a guess against the account before it is checked, refusing (audited ACCOUNT_LOCKED) when the account
   * or the peer address is locked out. The claim that reaches the limit locks the account for the guesses after
   * it. Settle it with `failSignIn(…, claim)` on a wrong guess, or `releaseAttempt` when it was none.
   */
  async function claimAttempt(
    username: string,
    context: CallContext,
    action: string,
    actor: Actor,
  ): Promise<AttemptClaim> {
    const key = userKey(username);
    const started = performance.now();
    for (;;) {
      const now = clock.now();
      const claim = await store.transaction(async (tx): Promise<AttemptClaim | { lockedSince: number }> => {
        await identityStore.ensureThrottle(tx, [key], now);
        const rows = await identityStore.getThrottle(tx, [key, ipKey(context)]);
        const locks = rows.map((row) => throttleState(row)).filter((state) => isLocked(state, now));
        if (locks.length > 0) return { lockedSince: lockStart(locks, policy.throttle.lockoutMs) };
        const before = throttleState(rows.find((r) => r.key === key));
        const next = recordFailure(before, now, policy.throttle);
        await identityStore.putThrottle(tx, key, next);
        return { key, failures: next.failures, justLocked: next.justLocked, lockedUntil: next.lockedUntil };
      });
      if ("key" in claim) return claim;
      // A lock set a moment ago may be a claim still being checked (simultaneous right sign-ins past the limit):
      // wait for it to settle rather than refuse a right password as "too many failures". Only briefly, and only
      // after a fresh lock, so a locked account's refusals stay one statement each.
      const fresh = now.getTime() - claim.lockedSince < FRESH_LOCK_MS;
      if (!fresh || performance.now() - started > CLAIM_WAIT_MS) return lockedOut(username, context, action, actor);
      await new Promise((resolve) => setTimeout(resolve, CLAIM_RETRY_MS));
    }
  }

  /**
   * Gives a claimed attempt back: it was no wrong guess (the right one, or a refusal that checked nothing more,
   * such as MFA_REQUIRED). The lock its claim set goes with it. In the caller's transaction when given one.
   */
  async function releaseAttempt(claim: AttemptClaim, db: Kysely<Database> = store.db): Promise<void> {
    await db
      .updateTable("login_throttle")
      .set((eb) => ({
        failures: sql<number>`greatest(${eb.ref("failures")} - 1, 0)`,
        ...(claim.justLocked ? { locked_until: null } : {}),
      }))
      .where("key", "=", claim.key)
      .execute();
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

  return { userKey, ipKey, failSignIn, claimAttempt, releaseAttempt, refuseIfLocked, lockedOut, deny };
}
