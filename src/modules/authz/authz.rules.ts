/**
 * The one place that decides what a platform role may do in Stint itself.
 * Deny by default: a permission not listed here is granted to nobody.
 */
import { StintError } from "../../lib/errors.js";
import type { Actor, PlatformRole } from "./authz.types.js";

export const PERMISSIONS = {
  "users.read": ["admin", "security", "auditor"],
  "users.write": ["admin"],
  "groups.read": ["admin", "security", "auditor"],
  "groups.write": ["admin"],
  "tokens.read": ["admin", "auditor"],
  "tokens.write": ["admin"],
  "audit.read": ["admin", "security", "auditor"],
  "catalog.read": ["admin", "security", "auditor"],
  "catalog.write": ["admin", "security"],
  "requests.read": ["admin", "security", "auditor"],
  "requests.revoke": ["admin", "security"],
  "access.check": ["admin", "security", "auditor"],
  "grants.read": ["admin", "security", "auditor"],
  "targets.operate": ["admin", "security"],
  "secrets.read": ["admin", "security", "auditor"],
  "secrets.write": ["admin", "security"],
  "vault.operate": ["admin"],
  "sessions.read": ["admin", "auditor"],
  "sessions.kill": ["admin", "security"],
  /** Access review campaigns: open, close, see every item. Deciding an item needs only to be its reviewer. */
  "reviews.read": ["admin", "security", "auditor"],
  "reviews.manage": ["admin", "security"],
  /** The evidence report (who had privileged access, approved by whom, why, what they did); audited per report. */
  "evidence.read": ["admin", "security", "auditor"],
  /** Anomaly alerts: read them, and acknowledge them (the people who watch for misuse). */
  "alerts.read": ["admin", "security", "auditor"],
  "alerts.ack": ["admin", "security", "auditor"],
  "outbox.read": ["admin"],
  /** The Prometheus metrics (the Dashboards page reads them); Prometheus itself uses STINT_METRICS_TOKEN. */
  "metrics.read": ["admin", "security", "auditor"],
  "outbox.write": ["admin"],
} as const satisfies Record<string, readonly PlatformRole[]>;

export type Permission = keyof typeof PERMISSIONS;

/** What a route asks of its caller: nothing, a signed-in principal, or a permission. */
export type Requirement = "public" | "authenticated" | Permission;

export function isPermission(value: string): value is Permission {
  return Object.hasOwn(PERMISSIONS, value);
}

export function can(actor: Actor, permission: Permission): boolean {
  if (actor.kind === "system") return true;
  if (actor.kind !== "principal") return false;
  const allowed: readonly PlatformRole[] = PERMISSIONS[permission] ?? [];
  // A loop, not `some` with a closure: this runs twice on every check API call (the hottest route).
  for (const role of actor.roles) if (allowed.includes(role)) return true;
  return false;
}

/**
 * Whether platform roles may approve a held change of the catalog (four-eyes): the roles that write it. Losing the
 * last of them is remembered (`approver_role_lost_at`), so a demotion does not make an admin "alone".
 */
export function mayApproveChanges(roles: readonly string[]): boolean {
  const allowed: readonly string[] = PERMISSIONS["catalog.write"];
  return roles.some((role) => allowed.includes(role));
}

/** Throws UNAUTHENTICATED for anonymous callers and FORBIDDEN for everyone else who may not. */
export function authorize(actor: Actor, requirement: Requirement): void {
  if (requirement === "public") return;
  if (actor.kind === "anonymous") throw new StintError("UNAUTHENTICATED");
  if (requirement === "authenticated") return;
  if (!can(actor, requirement)) throw new StintError("FORBIDDEN", forbiddenMessage(actor, requirement));
}

/**
 * What a refusal says: the platform roles that may, and the caller's own, so the person knows whom to ask.
 * It names the route's permission only, never whether a particular object exists.
 */
export function forbiddenMessage(actor: Actor, permission: Permission): string {
  const allowed: readonly string[] = PERMISSIONS[permission];
  const needs =
    allowed.length === 1
      ? `the platform role ${allowed[0]}`
      : `one of the platform roles ${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}`;
  const has = actor.kind === "principal" && actor.roles.length > 0 ? actor.roles.join(", ") : "none";
  return `You are not allowed to do that: it needs ${needs} (permission ${permission}); yours: ${has}.`;
}
