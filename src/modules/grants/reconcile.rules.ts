/**
 * What a reconcile cycle concludes for one role at one target, from what Stint
 * granted and what the target shows. Pure: the service loads and writes.
 *
 * - unexpected: the target shows the privilege and no activation backs it.
 * - missing: an activation is active and the target does not show the privilege.
 * Grants on their way (provisioning, revoking) are in flux and never drift in either
 * direction; a grant that ended while the target was being read may still show there,
 * so it is not unexpected (yet); ignored logins never drift. Roles at one target granting the same entitlement
 * share one membership per login: another such role's grant backs it.
 */
import { normalizeDn } from "../connectors/ldap/ldap.rules.js";

export type DriftKind = "unexpected" | "missing";

export interface RoleObservation {
  /** Logins with an active grant of the role. */
  active: readonly string[];
  /** Logins whose grant is provisioning or revoking. */
  inFlux: readonly string[];
  /** Logins whose grant ended while the target was read. */
  recentlyEnded?: readonly string[];
  /**
   * Logins with a grant of another role at the target granting the same entitlement (open, or ended while the
   * target was read): the membership is one, and it is theirs, so it is never unexpected for this role. It is
   * not this role's to miss either.
   */
  sharedWith?: readonly string[];
  /** Logins the target shows holding the role's entitlement. */
  observed: readonly string[];
  /** Logins the target's options say to leave alone. */
  ignored: readonly string[];
}

export interface OpenFinding {
  id: string;
  login: string;
  kind: DriftKind;
}

export interface Drift {
  login: string;
  kind: DriftKind;
}

/** How logins compare at a kind of target: LDAP DNs as LDAP compares them (the connector's own parser). */
export function normalizeLogin(kind: string, login: string): string {
  if (kind !== "ldap") return login;
  return normalizeDn(login) ?? login.toLowerCase();
}

export function findDrift(kind: string, observation: RoleObservation): Drift[] {
  const norm = (logins: readonly string[]) => new Set(logins.map((l) => normalizeLogin(kind, l)));
  const active = norm(observation.active);
  const inFlux = norm(observation.inFlux);
  const ignored = norm(observation.ignored);
  const ended = norm(observation.recentlyEnded ?? []);
  const shared = norm(observation.sharedWith ?? []);
  const observed = new Map(observation.observed.map((l) => [normalizeLogin(kind, l), l]));
  const drift: Drift[] = [];
  for (const [key, login] of observed)
    if (!active.has(key) && !inFlux.has(key) && !ended.has(key) && !shared.has(key) && !ignored.has(key))
      drift.push({ login, kind: "unexpected" });
  for (const login of observation.active) {
    const key = normalizeLogin(kind, login);
    if (!observed.has(key) && !inFlux.has(key) && !ignored.has(key)) drift.push({ login, kind: "missing" });
  }
  return drift.sort((a, b) => (a.login < b.login ? -1 : a.login > b.login ? 1 : a.kind < b.kind ? -1 : 1));
}

/** Which findings open (new drift), stay open (seen again) and close (gone). */
export function compareFindings<F extends OpenFinding>(
  kind: string,
  open: readonly F[],
  drift: readonly Drift[],
): { opened: Drift[]; seen: F[]; closed: F[] } {
  const key = (d: Drift) => `${d.kind}\u0000${normalizeLogin(kind, d.login)}`;
  const now = new Map(drift.map((d) => [key(d), d]));
  const before = new Map(open.map((f) => [key(f), f]));
  return {
    opened: drift.filter((d) => !before.has(key(d))),
    seen: open.filter((f) => now.has(key(f))),
    closed: open.filter((f) => !now.has(key(f))),
  };
}

export type DriftAction = "reported" | "removing" | "reprovisioning";

/**
 * What Stint does about new drift. Missing privilege of an active grant is provisioned again. Unexpected
 * privilege is removed when the role's policy says `drift: remove`, and ALWAYS when Stint itself put it
 * there for a grant that has since ended (`leftByStint`: the login's latest grant of the role ended, e.g.
 * its provisioning landed after the revocation): `drift: report` is for privilege granted outside Stint.
 */
export function driftAction(input: { kind: DriftKind; policyRemove: boolean; leftByStint: boolean }): DriftAction {
  if (input.kind === "missing") return "reprovisioning";
  return input.policyRemove || input.leftByStint ? "removing" : "reported";
}
