/** Pure rules of passkeys: relying party from configuration, challenge use, signature counters. No IO. */

export type ChallengePurpose = "register" | "login" | "step_up";

export interface RelyingParty {
  /** The WebAuthn RP ID: a registrable domain (never an IP address), e.g. `stint.example.com`. */
  id: string;
  name: string;
  /** Origins an answer may come from, e.g. `https://stint.example.com`. */
  origins: string[];
}

/**
 * The relying party: what the configuration names, else derived from the public URL (its host is the RP
 * ID, its origin the only origin). Browsers refuse an IP address as RP ID: use a host name.
 */
export function relyingPartyFrom(input: {
  publicUrl: string;
  rpId?: string | undefined;
  rpName?: string | undefined;
  origins?: readonly string[] | undefined;
}): RelyingParty {
  const url = new URL(input.publicUrl);
  const origins = input.origins && input.origins.length > 0 ? [...input.origins] : [url.origin];
  return { id: input.rpId ?? url.hostname, name: input.rpName ?? "Stint", origins };
}

/** Why a stored challenge cannot be answered (unknown, someone else's, another purpose, used, expired), or null. */
export function challengeProblem(
  row: { principal_id: string; purpose: string; used_at: Date | string | null; expires_at: Date | string } | undefined,
  expected: { principalId: string; purpose: ChallengePurpose; now: Date },
): string | null {
  if (!row) return "unknown challenge";
  if (row.principal_id !== expected.principalId) return "challenge issued to someone else";
  if (row.purpose !== expected.purpose) return `challenge issued for ${row.purpose}, not ${expected.purpose}`;
  if (row.used_at) return "challenge already used";
  if (new Date(row.expires_at) <= expected.now) return "challenge expired";
  return null;
}

/** Whether a CLI hand-off can still be answered: it exists, is not completed and has not expired. */
export function handoffOpen<T extends { completed_at: Date | string | null; expires_at: Date | string }>(
  row: T | undefined,
  now: Date,
): row is T {
  return !!row && !row.completed_at && new Date(row.expires_at) > now;
}

/**
 * WebAuthn §6.1.1: when either counter is non-zero, the new one must be greater than the stored one;
 * otherwise two copies of the credential are signing (a cloned authenticator). Authenticators that keep
 * no counter always send 0, and so do synced passkeys: both 0 is accepted.
 */
export function counterWentBack(stored: number, presented: number): boolean {
  return (stored > 0 || presented > 0) && presented <= stored;
}

/** The counter to keep after an accepted assertion (never lower than what was seen). */
export function nextCounter(stored: number, presented: number): number {
  return Math.max(stored, presented);
}

/** A short code shown by the CLI and by the hand-off page (no 0/O, 1/l confusion), from random bytes. */
export function matchCode(bytes: Uint8Array): string {
  const alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
  const chars = Array.from(bytes.slice(0, 8), (b) => alphabet[b % alphabet.length]).join("");
  return `${chars.slice(0, 4)}-${chars.slice(4, 8)}`;
}

/**
 * How fresh the session's MFA must be to add or remove a passkey when the account already has a second
 * factor: whoever has only the password must not swap the factors. An account without one adds its first
 * only from a session signed in as recently: whoever holds an older session (a copied refresh token) must not
 * make a factor of their own, step up with it, and be the owner's second factor from then on.
 */
export const FACTOR_CHANGE_MFA_MAX_AGE_MS = 15 * 60_000;

const recent = (at: Date | null, now: Date) => {
  if (!at) return false;
  const age = now.getTime() - at.getTime();
  return age >= -60_000 && age <= FACTOR_CHANGE_MFA_MAX_AGE_MS;
};

/**
 * What a change of second factors needs that the session lacks: nothing (`null`), a fresh MFA check
 * (`step-up`), or, on an account without a factor, a fresh sign-in (`sign-in`; `signedInAt` is when the
 * session was opened: refreshing keeps it).
 */
export function factorChangeNeeds(input: {
  hasFactor: boolean;
  mfaAt: Date | null;
  signedInAt: Date | null;
  now: Date;
}): "step-up" | "sign-in" | null {
  if (input.hasFactor) return recent(input.mfaAt, input.now) ? null : "step-up";
  return recent(input.signedInAt, input.now) ? null : "sign-in";
}
