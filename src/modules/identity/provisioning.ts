/**
 * What an identity provider's provisioning (SCIM) reads and writes of principals, groups and memberships, as
 * functions of the identity module: the tables stay identity's own. Every function takes the transaction (or db)
 * it runs in and sees only rows of the `source` it is given, so a provisioner never reads or changes a local
 * account or group; a SCIM service (an `Owner`) sees, of those, only the ones it provisioned (`provisioned_by`).
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import * as identityStore from "./identity.store.js";
import type { PrincipalRow } from "./identity.store.js";

type Q = Kysely<Database>;
export type { PrincipalRow };
export type GroupRow = Awaited<ReturnType<typeof findSourcedGroup>> & object;

/** An id no row has (an empty page, a filter on a malformed id). */
const NO_ID = "00000000-0000-0000-0000-000000000000";

/**
 * Whose rows a provisioner sees: those of `source` that `service` provisioned, and with `orUnowned` also those
 * recording no service (rows from before `provisioned_by` was kept, when a single service could have made them).
 */
export interface Owner {
  source: string;
  service: string;
  orUnowned: boolean;
}

/** The condition "`table`'s row is `owner`'s". */
function owned(owner: Owner, table: "principals" | "groups") {
  const column = sql.ref(`${table}.provisioned_by`);
  return owner.orUnowned
    ? sql<boolean>`(${column} = ${owner.service} or ${column} is null)`
    : sql<boolean>`${column} = ${owner.service}`;
}

export function findSourcedPrincipal(db: Q, id: string, owner: Owner, lock = false) {
  let query = db
    .selectFrom("principals")
    .selectAll()
    .where("id", "=", id)
    .where("source", "=", owner.source)
    .where(owned(owner, "principals"));
  if (lock) query = query.forUpdate();
  return query.executeTakeFirst();
}

export function findSourcedGroup(db: Q, id: string, owner: Owner, lock = false) {
  let query = db
    .selectFrom("groups")
    .selectAll()
    .where("id", "=", id)
    .where("source", "=", owner.source)
    .where(owned(owner, "groups"));
  if (lock) query = query.forUpdate();
  return query.executeTakeFirst();
}

export async function insertPrincipal(
  tx: Q,
  values: Pick<
    PrincipalRow,
    "id" | "kind" | "name" | "email" | "display_name" | "platform_roles" | "status" | "source" | "external_id"
  > & { scim_name: string | null; provisioned_by?: string | null; disabled_by?: string | null; now: Date },
): Promise<void> {
  const { now, ...row } = values;
  await tx
    .insertInto("principals")
    .values({ ...row, created_at: now, updated_at: now })
    .execute();
}

/** Sets the attributes an identity provider keeps (only those given), and the principal's version. */
export async function updatePrincipalAttributes(
  tx: Q,
  id: string,
  changes: Partial<Pick<PrincipalRow, "email" | "display_name" | "external_id" | "status" | "source">> & {
    scim_name?: string | null;
    disabled_by?: string | null;
    provisioned_by?: string | null;
  },
  now: Date,
): Promise<void> {
  await tx
    .updateTable("principals")
    .set({ ...changes, updated_at: now })
    .where("id", "=", id)
    .execute();
}

export async function insertGroup(
  tx: Q,
  values: {
    id: string;
    name: string;
    source: string;
    externalId: string | null;
    scimName: string;
    provisionedBy: string;
    now: Date;
  },
): Promise<void> {
  await tx
    .insertInto("groups")
    .values({
      id: values.id,
      name: values.name,
      description: null,
      source: values.source,
      external_id: values.externalId,
      scim_name: values.scimName,
      provisioned_by: values.provisionedBy,
      created_at: values.now,
    })
    .execute();
}

/**
 * Inserts a group unless one of that name exists, whatever its source (two sign-ins may create the same group
 * at once): true when this call created it.
 */
export async function insertGroupIfAbsent(
  tx: Q,
  values: { id: string; name: string; description: string; source: string; externalId?: string | null; now: Date },
): Promise<boolean> {
  const created = await tx
    .insertInto("groups")
    .values({
      id: values.id,
      name: values.name,
      description: values.description,
      source: values.source,
      external_id: values.externalId ?? null,
      created_at: values.now,
    })
    .onConflict((oc) => oc.column("name").doNothing())
    .returning("id")
    .executeTakeFirst();
  return created !== undefined;
}

/** The groups of these names, of any source (the caller judges whose they are), share-locked. */
export async function groupsNamed(db: Q, names: string[]) {
  if (names.length === 0) return [];
  return db
    .selectFrom("groups")
    .select(["id", "name", "source", "external_id"])
    .where("name", "in", names)
    .forShare()
    .execute();
}

export async function updateGroupAttributes(
  tx: Q,
  id: string,
  changes: { external_id?: string | null; source?: string; provisioned_by?: string },
): Promise<void> {
  await tx.updateTable("groups").set(changes).where("id", "=", id).execute();
}

/** The groups of `source` (or of an owner) a principal is a member of, by name. */
export function sourcedGroupsOf(db: Q, principalId: string, source: string | Owner) {
  let query = db
    .selectFrom("group_members")
    .innerJoin("groups", "groups.id", "group_members.group_id")
    .select(["groups.id", "groups.name", "groups.scim_name", "groups.external_id"])
    .where("group_members.principal_id", "=", principalId);
  query =
    typeof source === "string"
      ? query.where("groups.source", "=", source)
      : query.where("groups.source", "=", source.source).where(owned(source, "groups"));
  return query.orderBy("groups.name").execute();
}

/** A group's members, by name. */
export function membersOf(db: Q, groupId: string) {
  return db
    .selectFrom("group_members")
    .innerJoin("principals", "principals.id", "group_members.principal_id")
    .select(["principals.id", "principals.name", "principals.scim_name"])
    .where("group_members.group_id", "=", groupId)
    .orderBy("principals.name")
    .execute();
}

/** The principals of `owner` among `ids` (id and name); ids of other sources, other owners or none are left out. */
export function sourcedPrincipalsByIds(db: Q, ids: string[], owner: Owner) {
  if (ids.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("principals")
    .select(["id", "name"])
    .where("id", "in", ids)
    .where("source", "=", owner.source)
    .where(owned(owner, "principals"))
    .execute();
}

export type SourcedTable = "principals" | "groups";
/** `raw`, for a name: the identity provider's own spelling, matched (case aside) to `scim_name` as well. */
export type SourcedCriterion = { by: "name" | "externalId" | "id"; value: string; raw?: string } | undefined;

/**
 * One page of `owner`'s rows in `table` (their ids, in creation order) and how many match in all,
 * optionally those with one name, external id or id.
 */
export async function pageSourced(
  db: Q,
  table: SourcedTable,
  owner: Owner,
  criterion: SourcedCriterion,
  offset: number,
  limit: number,
): Promise<{ total: number; ids: string[] }> {
  // Both tables have the columns used here; Kysely's types cannot say so for a union of table names.
  let select = db
    .selectFrom(table as "groups")
    .where("source", "=", owner.source)
    .where(owned(owner, table));
  if (criterion?.by === "name") {
    const { value, raw } = criterion;
    select =
      raw === undefined
        ? select.where("name", "=", value)
        : select.where((eb) =>
            eb.or([eb("name", "=", value), eb(eb.fn("lower", ["scim_name"]), "=", raw.toLowerCase())]),
          );
  } else if (criterion?.by === "externalId") select = select.where("external_id", "=", criterion.value);
  else if (criterion?.by === "id")
    select = select.where("id", "=", /^[0-9a-f-]{36}$/i.test(criterion.value) ? criterion.value : NO_ID);
  const total = await select.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  const page = await select.select("id").orderBy("created_at").orderBy("id").offset(offset).limit(limit).execute();
  return { total: Number(total.n), ids: page.map((r) => r.id) };
}

/** Principals by id, in the order of `ids` (ids no row has are left out). */
export async function principalsByIds(db: Q, ids: string[]): Promise<PrincipalRow[]> {
  const rows = ids.length > 0 ? await db.selectFrom("principals").selectAll().where("id", "in", ids).execute() : [];
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.flatMap((id) => byId.get(id) ?? []);
}

/** Groups by id, in the order of `ids` (ids no row has are left out). */
export async function groupsByIds(db: Q, ids: string[]): Promise<GroupRow[]> {
  const rows = ids.length > 0 ? await db.selectFrom("groups").selectAll().where("id", "in", ids).execute() : [];
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.flatMap((id) => byId.get(id) ?? []);
}

/** The ids of a group's members. */
export async function memberIdsOf(db: Q, groupId: string): Promise<string[]> {
  const rows = await db.selectFrom("group_members").select("principal_id").where("group_id", "=", groupId).execute();
  return rows.map((r) => r.principal_id);
}

/** A principal by id, whatever its source (one a provisioner just wrote, or one an identity is linked to). */
export function findPrincipalById(db: Q, id: string) {
  return identityStore.findPrincipalById(db, id);
}

/** A principal by name, whatever its source (is the name a provider asks for taken?). */
export function findPrincipalByName(db: Q, name: string) {
  return identityStore.findPrincipalByName(db, name);
}

/**
 * A principal by id, locked against concurrent changes of its status or roles for the rest of the transaction
 * (NO KEY UPDATE: an approval of that principal's request does not deadlock with it; identity.store.ts says why).
 */
export function lockPrincipal(db: Q, id: string) {
  return identityStore.lockPrincipal(db, id);
}

/**
 * The principals one SCIM service provisioned (deprovisioned too) with this external id, or this userName (case
 * aside): the accounts single sign-on may link a person to.
 */
export function provisionedMatching(db: Q, service: string, match: { externalId: string } | { userName: string }) {
  let query = db
    .selectFrom("principals")
    .selectAll()
    .where("kind", "=", "user")
    .where("source", "in", ["scim", "scim-deleted"])
    .where("provisioned_by", "=", service);
  query =
    "externalId" in match
      ? query.where("external_id", "=", match.externalId)
      : query.where((eb) => eb(eb.fn("lower", ["scim_name"]), "=", match.userName.toLowerCase()));
  return query.execute();
}
