/** What the catalog's use cases share that needs no context: row → DTO, input → values, refusals in words. */
import type { AppStore, Tx } from "../../db/index.js";
import { policySpec, type PolicySpec } from "../../contract/catalog.js";
import type {
  ConfigProblem,
  EligibilityDto,
  PolicyDto,
  RoleDto,
  TargetDto,
  TargetInput,
} from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import type { Actor } from "../authz/authz.types.js";
import { sortProblems } from "./catalog.config.js";
import { eligibilityStatus, targetConfig } from "./catalog.rules.js";
import * as catalogStore from "./catalog.store.js";
import { checkCustody, type CustodyCheck } from "./custody.js";
import { endpointOf } from "./custody.rules.js";
import { DEFAULT_IDENTITY } from "../../contract/catalog-api.js";
import { entitlementProblems, targetProblems, targetWarnings } from "../connectors/index.js";
import type { CatalogState, Change, DesiredCatalog, Path, PathProblem, ReviewState } from "./catalog.types.js";

/** Thrown inside the apply transaction to roll back a plan that is held (never leaves the service). */
export const HOLD = Symbol("hold");

export type Db = AppStore["db"];
export type Issue = { path: string; message: string };

export const quote = (name: string) => JSON.stringify(name);
export const iso = (value: Date | string) => new Date(value).toISOString();

export function isForeignKeyViolation(error: unknown): boolean {
  return (error as { code?: string })?.code === "23503";
}

/** A review definition as stored (the `reviews:` entry, absent fields left out). */
export function reviewSpec(r: ReviewState): Record<string, unknown> {
  return {
    name: r.name,
    every: r.every,
    duration: r.duration,
    scope: r.scope,
    reviewers: r.reviewers,
    ...(r.remindEvery !== null ? { remindEvery: r.remindEvery } : {}),
    ...(r.escalateTo !== null ? { escalateTo: r.escalateTo } : {}),
    ...(r.onMissed !== null ? { onMissed: r.onMissed } : {}),
  };
}

/** A target's values from the API, checked by its connector. */
export function targetValues(input: TargetInput): catalogStore.TargetValues {
  const values = {
    name: input.name,
    kind: input.kind,
    address: input.address ?? null,
    labels: input.labels,
    credential: input.credential?.secret ?? null,
    identity: input.identity ?? DEFAULT_IDENTITY,
    options: input.options,
  };
  const problems = targetProblems(values);
  if (problems.length > 0) throw invalid(problems.map((p) => ({ path: `body.${p.field}`, message: p.message })));
  return values;
}

/** Where a stored target's credential goes now (custody.rules endpointOf). */
export function endpointOfRow(row: catalogStore.TargetRow): string {
  return endpointOf({ kind: row.kind, address: row.address, options: targetConfig(row.config).options });
}

/** A stored target as custody checks see it. */
export function targetDefinition(row: catalogStore.TargetRow) {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    address: row.address,
    options: targetConfig(row.config).options,
  };
}

/** Custody checks of a target from the API: VALIDATION_FAILED with the fields at fault. */
export async function custodyOrThrow(
  tx: Tx,
  actor: Actor,
  values: catalogStore.TargetValues,
  existing: catalogStore.TargetRow | null,
): Promise<CustodyCheck> {
  const check = await checkCustody(tx, actor, values, existing);
  if (check.problems.length > 0)
    throw invalid(check.problems.map((p) => ({ path: `body.${p.field}`, message: p.message })));
  return check;
}

/** Connector checks of a file's targets and roles, located in the file. */
export function connectorProblems(current: CatalogState, desired: DesiredCatalog): PathProblem[] {
  const problems: PathProblem[] = [];
  const kinds = new Map(current.targets.map((t) => [t.name, t.kind]));
  for (const target of desired.targets ?? []) {
    kinds.set(target.name, target.kind);
    for (const p of targetProblems(target))
      problems.push({ path: [...(target.at ?? []), p.field], message: p.message });
  }
  for (const role of desired.roles ?? []) {
    const kind = kinds.get(role.target);
    if (kind === undefined) continue; // checkConfig reports the unknown target
    for (const message of entitlementProblems(kind, role.entitlement))
      problems.push({ path: [...(role.at ?? []), "entitlement"], message });
  }
  return problems;
}

export function invalid(issues: Issue[]): StintError {
  return new StintError(
    "VALIDATION_FAILED",
    `The request is not valid: ${issues.map((i) => `${i.path} ${i.message}`).join("; ")}.`,
    { issues },
  );
}

export function invalidFile(problems: ConfigProblem[]): StintError {
  const sorted = sortProblems(problems);
  const first = sorted[0]!;
  const where = `${first.line}:${first.column}: ${first.path ? `${first.path}: ` : ""}`;
  return new StintError(
    "VALIDATION_FAILED",
    `The configuration file has ${sorted.length} problem${sorted.length === 1 ? "" : "s"}, so nothing was changed; the first is ${where}${first.message}.`,
    { problems: sorted },
  );
}

export const dotted = (path: Path) => path.join(".");

/** A stored spec with every default filled in (rows written before a default existed still read right). */
export function normalizeSpec(raw: unknown): PolicySpec {
  const parsed = policySpec.safeParse(raw);
  return parsed.success ? parsed.data : (raw as PolicySpec);
}

/** `stored`: a credential is stored at the path for this very target (custody binds it to the target). */
export function targetDto(row: catalogStore.TargetRow, storedSecrets: ReadonlyMap<string, string | null>): TargetDto {
  const config = targetConfig(row.config);
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    address: row.address,
    labels: row.labels ?? {},
    credential: config.credential
      ? { secret: config.credential, stored: storedSecrets.get(config.credential) === row.id }
      : null,
    identity: config.identity,
    options: config.options,
    warnings: targetWarnings({ kind: row.kind, address: row.address, options: config.options }),
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

export function policyDto(row: catalogStore.PolicyRow, roles: string[]): PolicyDto {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    spec: normalizeSpec(row.spec),
    roles,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

export function roleDto(row: catalogStore.RoleRow): RoleDto {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    target: row.target_name,
    policy: row.policy_name,
    entitlement: row.entitlement ?? {},
    risk: row.risk,
    owners: row.owners,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

export function eligibilityDto(row: catalogStore.EligibilityRow, now: Date): EligibilityDto {
  const startsAt = new Date(row.starts_at);
  const endsAt = row.ends_at ? new Date(row.ends_at) : null;
  return {
    id: row.id,
    role: row.role_name,
    principal: row.principal_name,
    group: row.group_name,
    startsAt: startsAt.toISOString(),
    endsAt: endsAt?.toISOString() ?? null,
    status: eligibilityStatus(startsAt, endsAt, now),
    grantedBy: row.granted_by,
    reason: row.reason,
    createdAt: iso(row.created_at),
  };
}

export function auditAction(change: Change): string {
  if (change.action === "delete") return change.kind === "eligibility" ? "eligibility.remove" : `${change.kind}.delete`;
  return `${change.kind}.${change.action}`;
}
