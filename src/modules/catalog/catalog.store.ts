/**
 * SQL of the catalog: targets, policies, roles, eligibilities, and the groups
 * configuration as code manages. Every function takes the transaction (or db)
 * it runs in. A reference is a name or, when it looks like one, an id.
 */
import { sql, type Kysely, type SelectQueryBuilder } from "kysely";
import type { Database } from "../../db/index.js";
import { ADVISORY_LOCKS } from "../../lib/advisory-locks.js";
import { isUuid } from "../../lib/ids.js";
import type { RiskTier, TargetConfig, TargetKind } from "./catalog.types.js";

type Q = Kysely<Database>;

/** Serializes catalog writes for the rest of the transaction: plans are made and applied on a still picture. */
export async function lockCatalog(tx: Q): Promise<void> {
  await sql`select pg_advisory_xact_lock(${ADVISORY_LOCKS.catalog})`.execute(tx);
}

// Narrowed to the tables with an id and a name; Kysely cannot express "any such table" more simply.
function byRef<
  QB extends SelectQueryBuilder<Database, "targets" | "policies" | "roles" | "groups" | "principals", object>,
>(query: QB, table: "targets" | "policies" | "roles" | "groups" | "principals", ref: string): QB {
  if (!isUuid(ref)) return query.where(`${table}.name`, "=", ref) as QB;
  return query.where((eb) => eb.or([eb(`${table}.id`, "=", ref), eb(`${table}.name`, "=", ref)])) as QB;
}

const json = (value: unknown) => JSON.stringify(value);

// ---------------------------------------------------------------------------
// Targets

export function listTargets(db: Q) {
  return db.selectFrom("targets").selectAll().orderBy("name").execute();
}

export function findTarget(db: Q, ref: string) {
  return byRef(db.selectFrom("targets").selectAll(), "targets", ref).executeTakeFirst();
}

export type TargetRow = NonNullable<Awaited<ReturnType<typeof findTarget>>>;

export interface TargetValues {
  name: string;
  kind: TargetKind;
  address: string | null;
  labels: Record<string, string>;
  credential: string | null;
  identity: { template: string; map: Record<string, string> };
  options: Record<string, unknown>;
}

/** Exactly the columns: callers may pass richer objects (a desired state carries its file position). */
function targetColumns(values: TargetValues) {
  const config: TargetConfig = { credential: values.credential, identity: values.identity, options: values.options };
  return {
    name: values.name,
    kind: values.kind,
    address: values.address,
    labels: json(values.labels),
    config: json(config),
  };
}

export async function insertTarget(db: Q, id: string, values: TargetValues, now: Date): Promise<void> {
  await db
    .insertInto("targets")
    .values({ id, ...targetColumns(values), created_at: now, updated_at: now })
    .execute();
}

export async function updateTarget(db: Q, id: string, values: TargetValues, now: Date): Promise<void> {
  await db
    .updateTable("targets")
    .set({ ...targetColumns(values), updated_at: now })
    .where("id", "=", id)
    .execute();
}

export async function deleteTarget(db: Q, id: string): Promise<void> {
  await db.deleteFrom("targets").where("id", "=", id).execute();
}

export async function roleNamesUsingTarget(db: Q, targetId: string): Promise<string[]> {
  const rows = await db.selectFrom("roles").select("name").where("target_id", "=", targetId).orderBy("name").execute();
  return rows.map((r) => r.name);
}

// ---------------------------------------------------------------------------
// Policies

export function listPolicies(db: Q) {
  return db.selectFrom("policies").selectAll().orderBy("name").execute();
}

export function findPolicy(db: Q, ref: string) {
  return byRef(db.selectFrom("policies").selectAll(), "policies", ref).executeTakeFirst();
}

export type PolicyRow = NonNullable<Awaited<ReturnType<typeof findPolicy>>>;

export interface PolicyValues {
  name: string;
  description: string | null;
  spec: unknown;
}

export async function insertPolicy(db: Q, id: string, values: PolicyValues, now: Date): Promise<void> {
  await db
    .insertInto("policies")
    .values({
      id,
      name: values.name,
      description: values.description,
      spec: json(values.spec),
      created_at: now,
      updated_at: now,
    })
    .execute();
}

export async function updatePolicy(db: Q, id: string, values: PolicyValues, now: Date): Promise<void> {
  await db
    .updateTable("policies")
    .set({ name: values.name, description: values.description, spec: json(values.spec), updated_at: now })
    .where("id", "=", id)
    .execute();
}

export async function deletePolicy(db: Q, id: string): Promise<void> {
  await db.deleteFrom("policies").where("id", "=", id).execute();
}

export function rolesUsingPolicy(db: Q, policyId: string) {
  return db.selectFrom("roles").select(["name", "risk"]).where("policy_id", "=", policyId).orderBy("name").execute();
}

/** Role names per policy id, for listing policies. */
export async function roleNamesByPolicy(db: Q): Promise<Map<string, string[]>> {
  const rows = await db.selectFrom("roles").select(["policy_id", "name"]).orderBy("name").execute();
  const map = new Map<string, string[]>();
  for (const row of rows) map.set(row.policy_id, [...(map.get(row.policy_id) ?? []), row.name]);
  return map;
}

// ---------------------------------------------------------------------------
// Roles

function roleQuery(db: Q) {
  return db
    .selectFrom("roles")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .innerJoin("policies", "policies.id", "roles.policy_id")
    .selectAll("roles")
    .select(["targets.name as target_name", "policies.name as policy_name", "policies.spec as policy_spec"]);
}

export function listRoles(db: Q) {
  return roleQuery(db).orderBy("roles.name").execute();
}

/** The roles on a target with their policies' specs, to weigh a change of the target against their floors. */
export function rolesOnTarget(db: Q, targetId: string) {
  return roleQuery(db).where("roles.target_id", "=", targetId).orderBy("roles.name").execute();
}

export function findRole(db: Q, ref: string) {
  return byRef(roleQuery(db), "roles", ref).executeTakeFirst();
}

export type RoleRow = NonNullable<Awaited<ReturnType<typeof findRole>>>;

export interface RoleValues {
  name: string;
  description: string | null;
  target_id: string;
  policy_id: string;
  entitlement: Record<string, unknown>;
  risk: RiskTier;
  owners: string[];
}

export async function insertRole(db: Q, id: string, values: RoleValues, now: Date): Promise<void> {
  await db
    .insertInto("roles")
    .values({ id, ...values, entitlement: json(values.entitlement), created_at: now, updated_at: now })
    .execute();
}

export async function updateRole(db: Q, id: string, values: RoleValues, now: Date): Promise<void> {
  await db
    .updateTable("roles")
    .set({ ...values, entitlement: json(values.entitlement), updated_at: now })
    .where("id", "=", id)
    .execute();
}

/** Deletes a role and the removed eligibilities that still point at it (the audit log keeps their story). */
export async function deleteRole(db: Q, id: string): Promise<void> {
  await db.deleteFrom("eligibilities").where("role_id", "=", id).where("removed_at", "is not", null).execute();
  await db.deleteFrom("roles").where("id", "=", id).execute();
}

export async function roleHasRequests(db: Q, roleId: string): Promise<boolean> {
  const row = await db
    .selectFrom("activation_requests")
    .select("id")
    .where("role_id", "=", roleId)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

export async function roleNamesWithRequests(db: Q): Promise<Set<string>> {
  const rows = await db
    .selectFrom("roles")
    .select("roles.name")
    .where((eb) =>
      eb.exists(
        eb.selectFrom("activation_requests").select("id").whereRef("activation_requests.role_id", "=", "roles.id"),
      ),
    )
    .execute();
  return new Set(rows.map((r) => r.name));
}

// ---------------------------------------------------------------------------
// Eligibilities

function eligibilityQuery(db: Q) {
  return db
    .selectFrom("eligibilities")
    .innerJoin("roles", "roles.id", "eligibilities.role_id")
    .leftJoin("principals", "principals.id", "eligibilities.principal_id")
    .leftJoin("groups", "groups.id", "eligibilities.group_id")
    .selectAll("eligibilities")
    .select(["roles.name as role_name", "principals.name as principal_name", "groups.name as group_name"])
    .where("eligibilities.removed_at", "is", null);
}

export type EligibilityRow = NonNullable<Awaited<ReturnType<typeof findEligibility>>>;

export interface EligibilityFilter {
  role?: string | undefined;
  principal?: string | undefined;
  group?: string | undefined;
}

/** Live (not removed) eligibilities; filters take names or ids. */
export function listEligibilities(db: Q, filter: EligibilityFilter = {}) {
  let query = eligibilityQuery(db);
  const match = (column: "roles" | "principals" | "groups", ref: string) =>
    query.where((eb) =>
      isUuid(ref)
        ? eb.or([eb(`${column}.id`, "=", ref), eb(`${column}.name`, "=", ref)])
        : eb(`${column}.name`, "=", ref),
    );
  if (filter.role !== undefined) query = match("roles", filter.role);
  if (filter.principal !== undefined) query = match("principals", filter.principal);
  if (filter.group !== undefined) query = match("groups", filter.group);
  return query.orderBy("roles.name").orderBy("eligibilities.id").execute();
}

export function findEligibility(db: Q, id: string, lock = false) {
  const query = eligibilityQuery(db).where("eligibilities.id", "=", id);
  return (lock ? query.forUpdate("eligibilities") : query).executeTakeFirst();
}

/** Live eligibilities of one role for one principal or group. */
export function findEligibilitiesOf(db: Q, roleId: string, subject: { principalId?: string; groupId?: string }) {
  let query = db.selectFrom("eligibilities").selectAll().where("role_id", "=", roleId).where("removed_at", "is", null);
  query = subject.principalId
    ? query.where("principal_id", "=", subject.principalId)
    : query.where("group_id", "=", subject.groupId ?? "");
  return query.execute();
}

export async function countLiveEligibilities(db: Q, roleId: string): Promise<number> {
  const row = await db
    .selectFrom("eligibilities")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("role_id", "=", roleId)
    .where("removed_at", "is", null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export interface EligibilityValues {
  role_id: string;
  principal_id: string | null;
  group_id: string | null;
  starts_at: Date;
  ends_at: Date | null;
  granted_by: string;
  reason: string | null;
}

export async function insertEligibility(db: Q, id: string, values: EligibilityValues, now: Date): Promise<void> {
  await db
    .insertInto("eligibilities")
    .values({ id, ...values, created_at: now })
    .execute();
}

export async function updateEligibility(
  db: Q,
  id: string,
  values: { starts_at: Date; ends_at: Date | null; reason: string | null },
): Promise<void> {
  await db
    .updateTable("eligibilities")
    .set((eb) => ({
      ...values,
      // A new end date is a new chance to report its expiry; the same one keeps its report.
      expiry_reported_at: eb
        .case()
        .when(sql<boolean>`ends_at is not distinct from ${values.ends_at}`)
        .then(eb.ref("expiry_reported_at"))
        .else(null)
        .end(),
    }))
    .where("id", "=", id)
    .execute();
}

export async function removeEligibility(db: Q, id: string, now: Date): Promise<void> {
  await db.updateTable("eligibilities").set({ removed_at: now }).where("id", "=", id).execute();
}

// ---------------------------------------------------------------------------
// Groups and principals (read by the catalog; configuration as code writes groups)

export function findGroup(db: Q, ref: string) {
  return byRef(db.selectFrom("groups").selectAll(), "groups", ref).executeTakeFirst();
}

export function findPrincipal(db: Q, ref: string) {
  return byRef(db.selectFrom("principals").select(["id", "name", "kind"]), "principals", ref).executeTakeFirst();
}

export async function listGroupsWithMembers(db: Q) {
  const groups = await db.selectFrom("groups").select(["id", "name", "description"]).orderBy("name").execute();
  const members = await db
    .selectFrom("group_members")
    .innerJoin("principals", "principals.id", "group_members.principal_id")
    .select(["group_members.group_id", "principals.name"])
    .orderBy("principals.name")
    .execute();
  const byGroup = new Map<string, string[]>();
  for (const m of members) byGroup.set(m.group_id, [...(byGroup.get(m.group_id) ?? []), m.name]);
  return groups.map((g) => ({ ...g, members: byGroup.get(g.id) ?? [] }));
}

export async function principalIdsByName(db: Q): Promise<Map<string, string>> {
  const rows = await db.selectFrom("principals").select(["id", "name"]).execute();
  return new Map(rows.map((r) => [r.name, r.id]));
}

export async function groupNames(db: Q, names: string[]): Promise<Set<string>> {
  if (names.length === 0) return new Set();
  const rows = await db.selectFrom("groups").select("name").where("name", "in", names).execute();
  return new Set(rows.map((r) => r.name));
}

export async function principalNames(db: Q, names: string[]): Promise<Set<string>> {
  if (names.length === 0) return new Set();
  const rows = await db.selectFrom("principals").select("name").where("name", "in", names).execute();
  return new Set(rows.map((r) => r.name));
}

export async function insertGroup(db: Q, id: string, name: string, description: string | null, now: Date) {
  await db.insertInto("groups").values({ id, name, description, created_at: now }).execute();
}

export async function setGroupDescription(db: Q, id: string, description: string | null): Promise<void> {
  await db.updateTable("groups").set({ description }).where("id", "=", id).execute();
}

export async function addMembers(db: Q, groupId: string, principalIds: string[], now: Date): Promise<void> {
  if (principalIds.length === 0) return;
  await db
    .insertInto("group_members")
    .values(principalIds.map((principal_id) => ({ group_id: groupId, principal_id, added_at: now })))
    .onConflict((oc) => oc.columns(["group_id", "principal_id"]).doNothing())
    .execute();
}

export async function removeMembers(db: Q, groupId: string, principalIds: string[]): Promise<void> {
  if (principalIds.length === 0) return;
  await db
    .deleteFrom("group_members")
    .where("group_id", "=", groupId)
    .where("principal_id", "in", principalIds)
    .execute();
}

/** Deletes a group, its memberships and the removed eligibilities that still point at it. */
export async function deleteGroup(db: Q, id: string): Promise<void> {
  await db.deleteFrom("group_members").where("group_id", "=", id).execute();
  await db.deleteFrom("eligibilities").where("group_id", "=", id).where("removed_at", "is not", null).execute();
  await db.deleteFrom("groups").where("id", "=", id).execute();
}
