/** Pure rules of identity: sign-in throttling, one-time codes, token formats. */

export interface ThrottleState {
  failures: number;
  windowStartedAt: Date;
  lockedUntil: Date | null;
}

export interface ThrottlePolicy {
  maxFailures: number;
  windowMs: number;
  lockoutMs: number;
}

export function isLocked(state: ThrottleState | undefined, now: Date): boolean {
  return !!state?.lockedUntil && state.lockedUntil.getTime() > now.getTime();
}

/** The counter after one more failure; it locks when the count reaches the limit within the window. */
export function recordFailure(
  state: ThrottleState | undefined,
  now: Date,
  policy: ThrottlePolicy,
): ThrottleState & { justLocked: boolean } {
  const windowOpen = state && now.getTime() - state.windowStartedAt.getTime() < policy.windowMs;
  const failures = windowOpen ? state.failures + 1 : 1;
  const windowStartedAt = windowOpen ? state.windowStartedAt : now;
  const lockNow = failures >= policy.maxFailures && !isLocked(state, now);
  return {
    failures,
    windowStartedAt,
    lockedUntil: lockNow ? new Date(now.getTime() + policy.lockoutMs) : (state?.lockedUntil ?? null),
    justLocked: lockNow,
  };
}

export const TOTP_PERIOD_SECONDS = 30;

/** The 30-second step a code was accepted at; a step at or before the last used one is a replay. */
export function totpStep(timeMs: number, delta: number): number {
  return Math.floor(timeMs / 1000 / TOTP_PERIOD_SECONDS) + delta;
}

export function isTotpReplay(step: number, lastUsedStep: number): boolean {
  return step <= lastUsedStep;
}

/** Recovery codes look like `abcde-fghij` (Crockford-ish base32, no confusable characters). */
export const RECOVERY_CODE = /^[a-z2-9]{5}-[a-z2-9]{5}$/;
export const TOTP_CODE = /^\d{6}$/;

export function normalizeRecoveryCode(input: string): string {
  return input.trim().toLowerCase();
}

/**
 * The one form of a name typed at sign-in: compatibility forms folded (NFKC: full-width letters, ligatures),
 * surrounding whitespace dropped, lower case. The account lookup and the lockout counters both use it, so no
 * spelling of a name gets a fresh set of guesses or escapes its lockout. Stored names are already in this form.
 */
export function canonicalUsername(input: string): string {
  return input.normalize("NFKC").trim().toLowerCase().normalize("NFKC");
}

/** Refresh tokens are `<session id>.<secret>`; API tokens `stint_<token id>_<secret>`. */
export function parseRefreshToken(token: string): { sessionId: string; secret: string } | null {
  const match = /^([0-9a-f-]{36})\.([A-Za-z0-9_-]{43})$/.exec(token);
  return match ? { sessionId: match[1]!, secret: match[2]! } : null;
}

/** How many rotated refresh secrets a session remembers for reuse detection. */
export const REFRESH_HISTORY = 50;

/**
 * What a presented refresh secret is to its session, by hash: the current one (rotate), one it rotated
 * away from (reuse: two parties hold the chain, end the session), or neither (a wrong token, nothing
 * more: knowing a session id must not be enough to end it). Every hash is compared, in constant time.
 */
export function classifyRefreshSecret(
  presentedHash: string,
  session: { currentHash: string; previousHashes: readonly string[] },
  equal: (a: string, b: string) => boolean,
): "current" | "reused" | "unknown" {
  let reused = false;
  for (const previous of session.previousHashes) reused = equal(previous, presentedHash) || reused;
  if (equal(session.currentHash, presentedHash)) return "current";
  return reused ? "reused" : "unknown";
}

/** The remembered hashes after rotating away from `currentHash`: the newest REFRESH_HISTORY. */
export function rememberRotated(previousHashes: readonly string[], currentHash: string): string[] {
  return [...previousHashes, currentHash].slice(-REFRESH_HISTORY);
}

export function formatApiToken(tokenId: string, secret: string): string {
  return `stint_${tokenId.replaceAll("-", "")}_${secret}`;
}

export function parseApiToken(token: string): { tokenId: string; secret: string } | null {
  const match = /^stint_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/.exec(token);
  if (!match) return null;
  const hex = match[1]!;
  const tokenId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { tokenId, secret: match[2]! };
}

export function passwordProblem(password: string, username: string): string | null {
  if (password.length < 12) return "must be at least 12 characters";
  if (password.toLowerCase().includes(username.toLowerCase())) return "must not contain the user name";
  if (new Set(password).size < 5) return "must use more than a few distinct characters";
  return null;
}
