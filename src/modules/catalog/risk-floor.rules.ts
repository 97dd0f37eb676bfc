/**
 * The lowest risk tier a role may declare, from what it grants: a role's tier decides four-eyes on changes to its
 * access (`fourEyes.tiers`), whether its policy may approve on timeout (low only), a review's default `onMissed`
 * and what alerts weigh. Declared by its author alone, a "low" role granting SUPERUSER on production, or using a
 * break-glass policy, escaped all of that. The rule (docs/configuration-as-code.md#risk-floor):
 *
 * - critical: the role's policy is break-glass; or a strong entitlement on a production target (a label
 *   `env` or `environment` of `prod` or `production`);
 * - high: a strong entitlement on any other target.
 *
 * A declared tier below an entitlement's floor is refused (file and API); four-eyes weighs every role at the
 * higher of its declared tier and its floor (`effectiveRisk`), so a break-glass role counts as critical.
 *
 * Strong: PostgreSQL attributes SUPERUSER, CREATEROLE, BYPASSRLS, REPLICATION, or a role that is a superuser's or
 * writes server files or all data; MySQL ALL PRIVILEGES, GRANT OPTION, SUPER, CREATE USER, FILE, SHUTDOWN or
 * RELOAD, or any privilege on `*.*` beyond reading; ssh-host groups that are root by another name (root, sudo,
 * wheel, admin, docker, lxd, disk); an LDAP group whose name says admin or operators; a session login of root,
 * postgres, admin or administrator. Pure: no IO.
 */
import type { PolicySpec } from "../../contract/catalog.js";
import type { RiskTier, TargetKind } from "./catalog.types.js";

export const TIER_ORDER: readonly RiskTier[] = ["low", "medium", "high", "critical"];

const PG_ATTRIBUTES = new Set(["SUPERUSER", "CREATEROLE", "BYPASSRLS", "REPLICATION"]);
const PG_ROLES = new Set([
  "postgres",
  "rds_superuser",
  "azure_pg_admin",
  "cloudsqlsuperuser",
  "pg_write_all_data",
  "pg_read_server_files",
  "pg_write_server_files",
  "pg_execute_server_program",
]);
const MYSQL_STRONG = new Set(["ALL PRIVILEGES", "GRANT OPTION", "SUPER", "CREATE USER", "FILE", "SHUTDOWN", "RELOAD"]);
const MYSQL_READ = new Set(["SELECT", "SHOW VIEW", "SHOW DATABASES", "PROCESS", "REPLICATION CLIENT"]);
const ROOT_GROUPS = new Set(["root", "sudo", "wheel", "admin", "docker", "lxd", "disk"]);
const ADMIN_LOGINS = new Set(["root", "postgres", "admin", "administrator"]);

export interface RoleGrant {
  targetKind: TargetKind;
  targetLabels: Readonly<Record<string, string>>;
  entitlement: Readonly<Record<string, unknown>>;
  policy: Pick<PolicySpec, "breakGlass">;
}

const lower = (value: unknown) => (typeof value === "string" ? value.trim().toLowerCase() : "");

/** Why this entitlement is strong, or null. */
export function strongEntitlement(kind: TargetKind, entitlement: Readonly<Record<string, unknown>>): string | null {
  const session = entitlement.session as { login?: unknown } | undefined;
  if (ADMIN_LOGINS.has(lower(session?.login))) return `session login ${String(session?.login)}`;
  if (kind === "postgres") {
    if (PG_ATTRIBUTES.has(String(entitlement.attribute).toUpperCase()))
      return `attribute ${String(entitlement.attribute)}`;
    if (PG_ROLES.has(lower(entitlement.role))) return `role ${String(entitlement.role)}`;
  }
  if (kind === "mysql" && Array.isArray(entitlement.privileges)) {
    const privileges = entitlement.privileges.map((p) =>
      String(p).trim().replace(/\s+/g, " ").toUpperCase().replace(/^ALL$/, "ALL PRIVILEGES"),
    );
    const strong = privileges.find((p) => MYSQL_STRONG.has(p));
    if (strong) return `privilege ${strong}`;
    const global = privileges.find((p) => !MYSQL_READ.has(p));
    if (entitlement.on === "*.*" && global) return `privilege ${global} on *.*`;
  }
  if (kind === "ssh-host" && ROOT_GROUPS.has(lower(entitlement.group))) return `group ${String(entitlement.group)}`;
  if (kind === "ldap") {
    const first = lower(entitlement.group).split(",")[0] ?? "";
    if (/admin|operators/.test(first)) return `group ${String(entitlement.group)}`;
  }
  return null;
}

function production(labels: Readonly<Record<string, string>>): boolean {
  return ["env", "environment"].some((key) => ["prod", "production"].includes(lower(labels[key])));
}

/** The lowest tier the role may declare and why; null when anything goes. */
export function riskFloor(grant: RoleGrant): { tier: RiskTier; reason: string } | null {
  if (grant.policy.breakGlass) return { tier: "critical", reason: "its policy is break-glass" };
  const strong = strongEntitlement(grant.targetKind, grant.entitlement);
  if (!strong) return null;
  return production(grant.targetLabels)
    ? { tier: "critical", reason: `it grants ${strong} on a production target` }
    : { tier: "high", reason: `it grants ${strong}` };
}

/** The higher of the declared tier and the floor: what four-eyes weighs a role at. */
export function effectiveRisk(grant: RoleGrant, risk: RiskTier): RiskTier {
  const floor = riskFloor(grant);
  return floor && TIER_ORDER.indexOf(floor.tier) > TIER_ORDER.indexOf(risk) ? floor.tier : risk;
}

/**
 * Why a role declaring `risk` is below the floor of its entitlement, or null. Break-glass is not refused here (files
 * written before the floor keep applying): it raises the role to critical where the tier is weighed.
 */
export function riskFloorProblem(grant: RoleGrant, risk: RiskTier): string | null {
  const floor = riskFloor({ ...grant, policy: { breakGlass: false } });
  if (!floor || TIER_ORDER.indexOf(risk) >= TIER_ORDER.indexOf(floor.tier)) return null;
  return `risk ${risk} is below ${floor.tier}, the least for this role: ${floor.reason}`;
}
