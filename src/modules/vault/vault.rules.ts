/**
 * Pure vault decisions: which path may release a secret's value, and which changes to a secret only an
 * operator may make. No IO; the service loads the secret and applies them.
 */

/**
 * Every way a value leaves the vault. `reveal` is the break-glass path (fresh MFA, alarm, review, rotation);
 * `rotation` is the vault's own use of the old value to restore it at a target when a rotation fails (it
 * goes to the secret's rotation login, never to a person).
 */
export type ReleasePurpose = "read" | "checkout" | "session" | "reveal" | "rotation";

/** Why a value may not be released this way, or null. A break-glass secret leaves only through its reveal. */
export function releaseProblem(
  purpose: ReleasePurpose,
  secret: { breakGlass: boolean },
): "break-glass" | "not-break-glass" | null {
  if (purpose === "rotation") return null;
  if (purpose === "reveal") return secret.breakGlass ? null : "not-break-glass";
  return secret.breakGlass ? "break-glass" : null;
}

export interface SecretAccessFields {
  roles: readonly string[];
  platformRoles: readonly string[];
  breakGlass: boolean;
  rotation: { target: string; login: string; every?: string } | null;
}

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().every((v, i) => v === [...b].sort()[i]);

/**
 * The fields of an existing secret whose change would widen who may read it, turn off its break-glass,
 * or send its current value somewhere (a rotation restores the old password at its target on failure):
 * only an operator changes them, or puts a new value on a secret that is a login's password at a target.
 */
export function custodyChanges(before: SecretAccessFields, after: SecretAccessFields): string[] {
  const changed: string[] = [];
  if (!sameSet(before.roles, after.roles)) changed.push("roles");
  if (!sameSet(before.platformRoles, after.platformRoles)) changed.push("platformRoles");
  if (before.breakGlass !== after.breakGlass) changed.push("breakGlass");
  const rotationKey = (r: SecretAccessFields["rotation"]) => (r ? `${r.target}\u0000${r.login}` : "");
  if (rotationKey(before.rotation) !== rotationKey(after.rotation)) changed.push("rotation");
  // A login's password at a target changes by rotation (set there, proven, then stored), not by a value put
  // here: the vault would hold a password the target does not, and a failed rotation would set it back there.
  else if (before.rotation !== null) changed.push("value of a rotated login");
  return changed;
}
