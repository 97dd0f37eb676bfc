/**
 * Credential custody, pure: which stored credential and which vault secrets a target may use, and what
 * "the same endpoint" means. A credential goes only to the target it was set for, at the endpoint it was
 * set for; whoever points a secret at an endpoint must be someone who could read it anyway (or an admin).
 * No IO: the catalog, grants and vault modules load the facts and apply these decisions.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import canonicalize from "canonicalize";

/** The vault prefix a target owns: `targets/<name>/`. */
export const ownPrefix = (targetName: string) => `targets/${targetName}/`;

export const isOwnPath = (targetName: string, path: string) => path.startsWith(ownPrefix(targetName));

/**
 * Option keys that decide where a credential goes or how it is protected on the way: the LDAP bind DN,
 * the pinned SSH host key, TLS and the authentication methods allowed. Anything else (ignore lists, group
 * bases, databases, the session's login) may change without setting the credential again.
 */
const ENDPOINT_OPTIONS = ["bindDn", "hostKey", "tls", "auth", "user", "host", "port", "url"] as const;

/** A fingerprint of where a target's credential goes: kind, address and the options above. */
export function endpointOf(target: { kind: string; address: string | null; options: Record<string, unknown> }): string {
  const options: Record<string, unknown> = {};
  for (const key of ENDPOINT_OPTIONS) if (target.options[key] !== undefined) options[key] = target.options[key];
  const text = canonicalize({ kind: target.kind, address: target.address ?? null, options }) ?? "";
  return createHash("sha256").update(text).digest("base64url");
}

/** The associated data a target credential is sealed with: its target, its path and its endpoint. */
export const credentialBinding = (targetId: string, path: string, endpoint: string) =>
  `target-secret:v2:${targetId}:${path}:${endpoint}`;

/** The associated data of credentials stored before 0011 (path only); read once at start to re-seal. */
export const legacyCredentialBinding = (path: string) => `target-secret:${path}`;

/**
 * Why a target may not name this credential path, or null. Its own prefix always; a path it already
 * named (a renamed target keeps its credential); never a path whose stored value belongs to another target.
 */
export function credentialPathProblem(input: {
  targetName: string;
  path: string | null;
  previousPath: string | null;
  storedFor: { targetId: string | null } | null;
  targetId: string | null;
}): string | null {
  const { targetName, path } = input;
  if (path === null) return null;
  if (input.storedFor && input.storedFor.targetId !== null && input.storedFor.targetId !== input.targetId)
    return `the credential ${path} belongs to another target; a target uses only its own (${ownPrefix(targetName)}…)`;
  if (isOwnPath(targetName, path) || path === input.previousPath) return null;
  return `must be this target's own path (${ownPrefix(targetName)}…): a target cannot name another's credential`;
}

export interface SessionSecretFacts {
  targetName: string;
  /** Null while the target is being created. */
  targetId: string | null;
  path: string;
  endpoint: string;
  /** The vault secret at the path, or null when there is none (yet). */
  secret: { breakGlass: boolean; platformRoles: string[] } | null;
  /** The allowance of this path, whichever target holds it. */
  allowance: { targetId: string; endpoint: string } | null;
  /** Who is defining the target. */
  actor: { roles: readonly string[]; admin: boolean };
}

export type SessionSecretDecision =
  | { ok: true; allowance: "keep" | "grant" }
  | {
      ok: false;
      problem: string;
      /** The endpoint moved: drop the allowance rather than refuse the change. */ stale?: boolean;
    };

/**
 * May the target's sessions use this vault secret? A break-glass secret: never (only its reveal releases
 * it). A secret another target holds: never. An allowance for this target at this endpoint: yes. Otherwise
 * an allowance is granted by an admin's definition, by someone who could read the value anyway (a platform
 * role it lists), or for a path under the target's own prefix that holds nothing yet.
 */
export function sessionSecretDecision(facts: SessionSecretFacts): SessionSecretDecision {
  const { path, targetName } = facts;
  if (facts.secret?.breakGlass)
    return { ok: false, problem: `${path} is a break-glass secret: only its reveal releases it, never a session` };
  if (facts.allowance && facts.allowance.targetId !== facts.targetId)
    return { ok: false, problem: `${path} is the session secret of another target` };
  if (facts.allowance && facts.allowance.endpoint === facts.endpoint) return { ok: true, allowance: "keep" };
  // An admin's definition is itself the explicit grant; anyone else may only hand out what they could read.
  const mayRead = (facts.secret?.platformRoles ?? []).some((r) => facts.actor.roles.includes(r));
  if (facts.actor.admin || (facts.secret ? mayRead : isOwnPath(targetName, path)))
    return { ok: true, allowance: "grant" };
  const how = `an admin allows it with \`stint secret allow ${path} --target ${targetName}\``;
  if (facts.allowance)
    return {
      ok: false,
      stale: true,
      problem: `the address of ${targetName} changed, so its session secret ${path} is no longer sent there until ${how}`,
    };
  return {
    ok: false,
    problem: `must be this target's own secret (${ownPrefix(targetName)}…) or one ${how}`,
  };
}

/** The MAC an allowance carries, under a key derived from the master key: a database writer cannot make one. */
export function allowanceMac(key: Uint8Array, allowance: { path: string; targetId: string; endpoint: string }): string {
  return createHmac("sha256", key)
    .update(`secret-allowance:v1\u0000${allowance.path}\u0000${allowance.targetId}\u0000${allowance.endpoint}`)
    .digest("base64url");
}

function macMatches(
  key: Uint8Array,
  allowance: { path: string; targetId: string; endpoint: string; mac: string | null },
) {
  if (allowance.mac === null) return false;
  const expected = Buffer.from(allowanceMac(key, allowance));
  const given = Buffer.from(allowance.mac);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/**
 * At session open: the allowance must be this target's, for its endpoint as it is now, carry its MAC, and
 * the secret must not be break-glass.
 */
export function sessionSecretUsable(facts: {
  key: Uint8Array;
  path: string;
  targetId: string;
  endpoint: string;
  secret: { breakGlass: boolean } | null;
  allowance: { targetId: string; endpoint: string; mac: string | null } | null;
}): string | null {
  if (!facts.secret) return "is not in the vault";
  if (facts.secret.breakGlass) return "is a break-glass secret: only its reveal releases it";
  if (!facts.allowance || facts.allowance.targetId !== facts.targetId) return "is not allowed for this target";
  if (!macMatches(facts.key, { ...facts.allowance, path: facts.path }))
    return "has an allowance Stint did not make (changed in the database): an admin must allow it again";
  if (facts.allowance.endpoint !== facts.endpoint)
    return "was allowed for another address of this target: an admin must allow it again";
  return null;
}
