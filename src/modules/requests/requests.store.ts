/** SQL of activation requests. Every function takes the transaction (or db) it runs in. */
import { sql, type Expression, type ExpressionBuilder, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { lockOpenOfRolesJson } from "./elevation.store.js";
import type { Decision, RequestFacts, Stage } from "./requests.types.js";

type Q = Kysely<Database>;

export function findRole(db: Q, name: string) {
  return db
    .selectFrom("roles")
    .innerJoin("policies", "policies.id", "roles.policy_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .select([
      "roles.id",
      "roles.name",
      "roles.risk",
      "roles.entitlement",
      "policies.name as policy_name",
      "policies.spec as policy_spec",
      "targets.name as target_name",
      "targets.kind as target_kind",
    ])
    .where("roles.name", "=", name)
    .executeTakeFirst();
}
export type RoleRow = NonNullable<Awaited<ReturnType<typeof findRole>>>;

/** An eligibility held by the principal (an id, or a column of an outer query) directly or through its groups. */
function heldBy(eb: ExpressionBuilder<Database, "eligibilities">, principalId: string | Expression<string>) {
  return eb.or([
    eb("eligibilities.principal_id", "=", principalId),
    eb(
      "eligibilities.group_id",
      "in",
      eb
        .selectFrom("group_members")
        .select("group_members.group_id")
        .where("group_members.principal_id", "=", principalId),
    ),
  ]);
}

/** Eligibilities of a principal, directly or through a group, valid at `now`. */
export function eligibleQuery(db: Q, principalId: string | Expression<string>, now: Date) {
  return db
    .selectFrom("eligibilities")
    .where("eligibilities.removed_at", "is", null)
    .where("eligibilities.starts_at", "<=", now)
    .where((eb) => eb.or([eb("eligibilities.ends_at", "is", null), eb("eligibilities.ends_at", ">", now)]))
    .where((eb) => heldBy(eb, principalId));
}

export async function isEligible(db: Q, principalId: string, roleId: string, now: Date): Promise<boolean> {
  const row = await eligibleQuery(db, principalId, now)
    .select("eligibilities.id")
    .where("eligibilities.role_id", "=", roleId)
    .executeTakeFirst();
  return row !== undefined;
}

/** Every live eligibility of a principal, directly or through its groups, whatever its dates. */
export function eligibilityWindowsOf(db: Q, principalId: string) {
  return db
    .selectFrom("eligibilities")
    .innerJoin("roles", "roles.id", "eligibilities.role_id")
    .select(["roles.name as role_name", "eligibilities.starts_at", "eligibilities.ends_at"])
    .where("eligibilities.removed_at", "is", null)
    .where((eb) => heldBy(eb, principalId))
    .execute();
}

/** The rules of roles by name: target, entitlement, risk, policy and its spec (ordered by name). */
export async function rulesOfRoles(db: Q, names: string[]) {
  if (names.length === 0) return [];
  return db
    .selectFrom("roles")
    .innerJoin("policies", "policies.id", "roles.policy_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .select([
      "roles.name",
      "roles.target_id",
      "roles.entitlement",
      "roles.risk",
      "roles.policy_id",
      "policies.spec as policy_spec",
      "targets.kind as target_kind",
      "targets.address as target_address",
      "targets.config as target_config",
    ])
    .where("roles.name", "in", names)
    .orderBy("roles.name")
    .execute();
}

export function eligibleRoles(db: Q, principalId: string, now: Date) {
  return eligibleQuery(db, principalId, now)
    .innerJoin("roles", "roles.id", "eligibilities.role_id")
    .innerJoin("policies", "policies.id", "roles.policy_id")
    .leftJoin("targets", "targets.id", "roles.target_id")
    .select([
      "roles.id",
      "roles.name",
      "roles.description",
      "roles.risk",
      "policies.spec as policy_spec",
      "targets.name as target_name",
      "targets.kind as target_kind",
      sql<Date | null>`max(coalesce(eligibilities.ends_at, 'infinity'::timestamptz))`.as("eligible_until"),
    ])
    .groupBy([
      "roles.id",
      "roles.name",
      "roles.description",
      "roles.risk",
      "policies.spec",
      "targets.name",
      "targets.kind",
    ])
    .orderBy("roles.name")
    .execute();
}

/** The requester's account status, locked against a concurrent disable (FOR SHARE) when asked. */
export async function principalStatus(db: Q, principalId: string, lock = false) {
  const query = db.selectFrom("principals").select(["id", "status"]).where("id", "=", principalId);
  const row = await (lock ? query.forShare() : query).executeTakeFirst();
  return row?.status;
}

export { submitFacts, submitFactsMany } from "./elevation.store.js";

/**
 * Open activations (not extensions) of some principals or roles, or of everyone, locked in id order for
 * the rest of the transaction: what a change to accounts, eligibility or groups must check again.
 */
export function lockOpenActivations(db: Q, scope: { principalIds?: string[]; roleIds?: string[] }) {
  let query = db
    .selectFrom("activation_requests")
    .select(["id"])
    .where("extends_request_id", "is", null)
    .where("state", "in", ["pending", "approved", "provisioning", "active"]);
  if (scope.principalIds) query = query.where("requester_id", "in", scope.principalIds);
  if (scope.roleIds) query = query.where("role_id", "in", scope.roleIds);
  return query.orderBy("id").forUpdate().execute();
}

export async function principalContext(db: Q, principalId: string) {
  const principal = await db
    .selectFrom("principals")
    .select(["id", "name", "manager_id", "status"])
    .where("id", "=", principalId)
    .executeTakeFirst();
  const groups = await db
    .selectFrom("group_members")
    .innerJoin("groups", "groups.id", "group_members.group_id")
    .select("groups.name")
    .where("group_members.principal_id", "=", principalId)
    .execute();
  return principal ? { ...principal, groups: groups.map((g) => g.name) } : undefined;
}

export function findOpenRequest(db: Q, requesterId: string, roleId: string) {
  return db
    .selectFrom("activation_requests")
    .select(["id", "state", "expires_at"])
    .where("requester_id", "=", requesterId)
    .where("role_id", "=", roleId)
    .where("extends_request_id", "is", null)
    .where("state", "in", ["pending", "approved", "provisioning", "active"])
    .executeTakeFirst();
}

const requestColumns = [
  "activation_requests.id",
  "activation_requests.role_id",
  "activation_requests.requester_id",
  "activation_requests.extends_request_id",
  "activation_requests.state",
  "activation_requests.duration_ms",
  "activation_requests.reason",
  "activation_requests.ticket",
  "activation_requests.break_glass",
  "activation_requests.policy_snapshot",
  "activation_requests.stages",
  "activation_requests.stage_index",
  "activation_requests.stage_deadline",
  "activation_requests.mfa_at",
  "activation_requests.submitted_at",
  "activation_requests.decided_at",
  "activation_requests.activated_at",
  "activation_requests.expires_at",
  "activation_requests.ended_at",
  "activation_requests.end_reason",
  "activation_requests.ended_by",
  "activation_requests.extensions",
  "activation_requests.start_at",
  "activation_requests.pending_expires_at",
  "roles.name as role_name",
  "roles.risk as role_risk",
  "targets.kind as target_kind",
  "principals.name as requester_name",
  "principals.manager_id as requester_manager_id",
] as const;

export function requestQuery(db: Q) {
  return db
    .selectFrom("activation_requests")
    .innerJoin("roles", "roles.id", "activation_requests.role_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .innerJoin("principals", "principals.id", "activation_requests.requester_id")
    .select(requestColumns);
}
export type RequestRow = NonNullable<Awaited<ReturnType<typeof findRequest>>>;

export function findRequest(db: Q, id: string) {
  return requestQuery(db).where("activation_requests.id", "=", id).executeTakeFirst();
}

/**
 * Locks the request row for the rest of the transaction and reads it, in one statement: after waiting for
 * another transaction's lock, the row read is the version that transaction left.
 */
export function lockRequest(db: Q, id: string): Promise<RequestRow | undefined> {
  return requestQuery(db)
    .where("activation_requests.id", "=", id)
    .modifyEnd(sql`for update of activation_requests`)
    .executeTakeFirst();
}

/** The request a grant was made for and the grant's state, both rows locked, in one statement. */
export async function lockRequestOfGrant(db: Q, grantId: string) {
  const row = await requestQuery(db)
    .innerJoin("grants", "grants.request_id", "activation_requests.id")
    .select("grants.state as grant_state")
    .where("grants.id", "=", grantId)
    .modifyEnd(sql`for update of activation_requests, grants`)
    .executeTakeFirst();
  if (!row) return undefined;
  const { grant_state, ...request } = row;
  return { row: request as RequestRow, grantState: grant_state };
}

/** Is the principal active, and eligible for the role at `now`? One statement. */
export async function basisOf(db: Q, principalId: string, roleId: string, now: Date) {
  const row = await db
    .selectFrom("principals")
    .select((eb) => [
      "principals.status",
      eb
        .exists(
          eligibleQuery(db, principalId, now).select("eligibilities.id").where("eligibilities.role_id", "=", roleId),
        )
        .as("eligible"),
    ])
    .where("principals.id", "=", principalId)
    .executeTakeFirst();
  return { active: row?.status === "active", eligible: row?.eligible === true };
}

/** The decisions on a request as one JSON column (`elevation.store.ts`), in the order `decisionsOf` reads them. */
export interface DecisionJson {
  stage_index: number;
  approver_id: string;
  decision: "approve" | "deny";
  reason: string | null;
  /** A text in JSON; a `Date` when read as a column (`decisionsOf`). */
  decided_at: string | Date;
  name: string;
}

export type DecisionOf = Awaited<ReturnType<typeof decisionsOf>>[number];

function decisionsFromJson(rows: DecisionJson[]): DecisionOf[] {
  return rows.map((r) => ({
    stageIndex: r.stage_index,
    approverId: r.approver_id,
    decision: r.decision,
    approverName: r.name,
    reason: r.reason,
    decidedAt: new Date(r.decided_at),
  }));
}

/**
 * The caller's open activation (not an extension) of a role, by its name, locked for the rest of the
 * transaction, with its decisions: one statement (`elevation.store.ts`, as a group of deactivates reads them).
 */
export async function lockOpenOfRole(db: Q, requesterId: string, roleName: string) {
  return (await lockOpenOfRoles(db, [{ requesterId, roleName }]))[0];
}

/** `lockOpenOfRole` of many callers in one statement (a group of deactivates), in the order asked. */
export async function lockOpenOfRoles(db: Q, asked: readonly { requesterId: string; roleName: string }[]) {
  return (await lockOpenOfRolesJson(db, asked)).map(
    (found) => found && { row: found.row, decisions: decisionsFromJson(found.decisions) },
  );
}

export function listRequests(
  db: Q,
  filter: {
    requesterId?: string | undefined;
    states?: readonly string[] | undefined;
    roleName?: string | undefined;
    limit: number;
  },
) {
  let query = requestQuery(db);
  if (filter.requesterId) query = query.where("activation_requests.requester_id", "=", filter.requesterId);
  if (filter.states?.length) query = query.where("activation_requests.state", "in", filter.states as never);
  if (filter.roleName) query = query.where("roles.name", "=", filter.roleName);
  return query.orderBy("activation_requests.submitted_at", "desc").limit(filter.limit).execute();
}

export async function decisionsOf(
  db: Q,
  requestId: string,
): Promise<(Decision & { approverName: string; reason: string | null; decidedAt: Date })[]> {
  const rows = await db
    .selectFrom("request_decisions")
    .innerJoin("principals", "principals.id", "request_decisions.approver_id")
    .select([
      "request_decisions.stage_index",
      "request_decisions.approver_id",
      "request_decisions.decision",
      "request_decisions.reason",
      "request_decisions.decided_at",
      "principals.name",
    ])
    .where("request_decisions.request_id", "=", requestId)
    .orderBy("request_decisions.decided_at")
    .orderBy("request_decisions.id")
    .execute();
  return decisionsFromJson(rows);
}

export function stagesOf(row: { stages: unknown }): Stage[] {
  return row.stages as Stage[];
}

export { insertRequest } from "./group.store.js";

export { endActivations, expireDue, notifyAll, type EndedRow, type ExpiredColumns } from "./ending.store.js";

export function claimDueDeadlines(db: Q, now: Date, limit: number) {
  return db
    .selectFrom("activation_requests")
    .select(["id"])
    .where("state", "=", "pending")
    .where("stage_deadline", "<=", now)
    .orderBy("stage_deadline")
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
}

export function nextExpiry(db: Q) {
  return db
    .selectFrom("activation_requests")
    .select((eb) => eb.fn.min("expires_at").as("next"))
    .where("state", "=", "active")
    .executeTakeFirst()
    .then((r) => (r?.next ? new Date(r.next) : null));
}

/** Active activations of a principal (what the check API and activation tokens report). */
export function activeFor(db: Q, principalId: string, now: Date) {
  return db
    .selectFrom("activation_requests")
    .innerJoin("roles", "roles.id", "activation_requests.role_id")
    .select([
      "activation_requests.id",
      "roles.name as role_name",
      "activation_requests.expires_at",
      "activation_requests.activated_at",
    ])
    .where("activation_requests.requester_id", "=", principalId)
    .where("activation_requests.state", "=", "active")
    .where("activation_requests.expires_at", ">", now)
    .where("activation_requests.extends_request_id", "is", null)
    .orderBy("roles.name")
    .execute();
}

/** Eligibilities that reached their end and were not reported yet, locked for this transaction. */
export function claimEndedEligibilities(db: Q, now: Date, limit: number) {
  return db
    .selectFrom("eligibilities")
    .innerJoin("roles", "roles.id", "eligibilities.role_id")
    .leftJoin("principals", "principals.id", "eligibilities.principal_id")
    .leftJoin("groups", "groups.id", "eligibilities.group_id")
    .select([
      "eligibilities.id",
      "eligibilities.ends_at",
      "eligibilities.role_id",
      "roles.name as role_name",
      "principals.name as principal_name",
      "groups.name as group_name",
    ])
    .where("eligibilities.removed_at", "is", null)
    .where("eligibilities.expiry_reported_at", "is", null)
    .where("eligibilities.ends_at", "<=", now)
    .orderBy("eligibilities.ends_at")
    .limit(limit)
    .forUpdate("eligibilities")
    .skipLocked()
    .execute();
}

/** Active activations close to their end whose holder was not warned yet. */
export function claimExpiring(db: Q, now: Date, limit: number) {
  return db
    .selectFrom("activation_requests")
    .select(["id", "duration_ms", "expires_at"])
    .where("state", "=", "active")
    .where("expiring_notified_at", "is", null)
    .where("expires_at", ">", now)
    .where("expires_at", "<=", new Date(now.getTime() + EXPIRY_WARNING_MAX_MS))
    .orderBy("expires_at")
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
}

/** Warn at most ten minutes before the end, and never earlier than half-way through. */
export const EXPIRY_WARNING_MAX_MS = 10 * 60_000;

/** What the pure rules need to know about a request row. */
export function factsOf(row: RequestRow, decisions: Decision[]): RequestFacts {
  return {
    state: row.state,
    requesterId: row.requester_id,
    requesterManagerId: row.requester_manager_id,
    stages: stagesOf(row),
    stageIndex: row.stage_index,
    stageDeadline: row.stage_deadline ? new Date(row.stage_deadline) : null,
    decisions,
    risk: row.role_risk,
    // Snapshots from before the option existed lack it: they get the default, distinct approvers.
    sameApproverAcrossStages:
      (row.policy_snapshot as { approval?: { sameApproverAcrossStages?: unknown } } | null)?.approval
        ?.sameApproverAcrossStages === true,
  };
}
