/** SQL of access reviews (Kysely); every function takes the caller's transaction or the pool. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import {
  activeMembersByGroup,
  lastSignInOf,
  memberIdsOfGroup,
  memberIdsOfGroups,
} from "../identity/membership-reads.js";
import { FINDING_KINDS } from "./reviews.rules.js";
import { activationUsage, participantsOf } from "../requests/requests.reads.js";
import type { CampaignReviewers, CampaignScope, Risk } from "./reviews.types.js";

type Q = Kysely<Database>;

export interface ScopedEligibility {
  id: string;
  roleId: string;
  roleName: string;
  risk: Risk;
  owners: string[];
  principalId: string | null;
  principalName: string | null;
  managerId: string | null;
  groupId: string | null;
  groupName: string | null;
}

/** The live eligibility (started, not ended, not removed) a scope selects. */
export async function eligibilitiesInScope(db: Q, scope: CampaignScope, now: Date): Promise<ScopedEligibility[]> {
  let query = db
    .selectFrom("eligibilities as e")
    .innerJoin("roles as r", "r.id", "e.role_id")
    .innerJoin("targets as t", "t.id", "r.target_id")
    .leftJoin("principals as p", "p.id", "e.principal_id")
    .leftJoin("groups as g", "g.id", "e.group_id")
    .select([
      "e.id",
      "e.role_id as roleId",
      "r.name as roleName",
      "r.risk",
      "r.owners",
      "e.principal_id as principalId",
      "p.name as principalName",
      "p.manager_id as managerId",
      "e.group_id as groupId",
      "g.name as groupName",
    ])
    .where("e.removed_at", "is", null)
    .where("e.starts_at", "<=", now)
    .where((eb) => eb.or([eb("e.ends_at", "is", null), eb("e.ends_at", ">", now)]));
  if (scope.roles?.length) query = query.where("r.name", "in", scope.roles);
  if (scope.targets?.length) query = query.where("t.name", "in", scope.targets);
  if (scope.risk?.length) query = query.where("r.risk", "in", scope.risk);
  if (scope.groups?.length) {
    const groups = scope.groups;
    // Eligibility held by these groups, or by their members (membership asked of the identity module).
    const members = await memberIdsOfGroups(db, groups);
    query = query.where((eb) =>
      eb.or([eb("g.name", "in", groups), ...(members.length > 0 ? [eb("e.principal_id", "in", members)] : [])]),
    );
  }
  const rows = await query.orderBy("r.name").orderBy("p.name").orderBy("g.name").execute();
  return rows.map((r) => ({ ...r, risk: r.risk as Risk }));
}

/** Active members of the named groups, by group name. */
export const membersOf = activeMembersByGroup;

export const groupMemberIds = memberIdsOfGroup;

/** The requester and deciders of a request (ids), asked of the requests module. */
export const requestParticipants = participantsOf;

/** Evidence facts for one principal and role. */
export async function usageFacts(db: Q, principalIds: readonly string[], roleId: string, since: Date) {
  if (principalIds.length === 0)
    return { lastActivationAt: null, activationsInPeriod: 0, sessionsInPeriod: 0, lastSignInAt: null };
  const activations = await activationUsage(db, principalIds, roleId, since);
  const sessions = await db
    .selectFrom("sessions")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("principal_id", "in", principalIds)
    .where("role_id", "=", roleId)
    .where("started_at", ">=", since)
    .executeTakeFirst();
  return {
    sessionsInPeriod: Number(sessions?.n ?? 0),
    lastActivationAt: activations.lastActivationAt,
    activationsInPeriod: activations.activationsInPeriod,
    lastSignInAt: await lastSignInOf(db, principalIds),
  };
}

export type CampaignRow = Awaited<ReturnType<typeof findCampaign>> & object;

export function findCampaign(db: Q, id: string) {
  return db.selectFrom("review_campaigns").selectAll().where("id", "=", id).executeTakeFirst();
}

export function listCampaigns(db: Q) {
  return db.selectFrom("review_campaigns").selectAll().orderBy("opened_at", "desc").limit(500).execute();
}

export async function progressOf(db: Q, campaignIds: readonly string[]) {
  const result = new Map<string, { total: number; open: number }>();
  if (campaignIds.length === 0) return result;
  const rows = await db
    .selectFrom("review_items")
    .select([
      "campaign_id",
      (eb) => eb.fn.countAll<string>().as("total"),
      (eb) => eb.fn.count<string>("id").filterWhere("status", "=", "open").as("open"),
    ])
    .where("campaign_id", "in", campaignIds)
    .groupBy("campaign_id")
    .execute();
  for (const row of rows) result.set(row.campaign_id!, { total: Number(row.total), open: Number(row.open) });
  return result;
}

export function itemsQuery(db: Q) {
  return (
    db
      .selectFrom("review_items as i")
      .leftJoin("roles as r", "r.id", "i.role_id")
      .leftJoin("eligibilities as e", "e.id", "i.eligibility_id")
      .leftJoin("principals as p", "p.id", "e.principal_id")
      .leftJoin("groups as g", "g.id", "e.group_id")
      // Whoever broke the glass (break-glass items), or whose access it is.
      .leftJoin("principals as ap", "ap.id", "i.actor_id")
      .selectAll("i")
      .select([
        "r.name as role_name",
        "r.risk as role_risk",
        "p.name as member_name",
        "g.name as group_name",
        "ap.name as actor_name",
      ])
      .select((eb) =>
        eb
          .selectFrom("principals as rv")
          .select(sql<string[]>`coalesce(array_agg(rv.name order by rv.name), '{}')`.as("names"))
          .where(sql<boolean>`rv.id = any(i.reviewer_ids)`)
          .as("reviewer_names"),
      )
  );
}
export type ItemRow = Awaited<ReturnType<ReturnType<typeof itemsQuery>["executeTakeFirstOrThrow"]>>;

export function campaignItems(db: Q, campaignId: string) {
  return itemsQuery(db).where("i.campaign_id", "=", campaignId).orderBy("i.subject").execute();
}

/**
 * Open eligibility items naming `reviewerId`, and (for those who manage reviews) open break-glass and
 * anomaly-alert items.
 */
export function inbox(db: Q, reviewerId: string, withFindings: boolean) {
  return itemsQuery(db)
    .where("i.status", "=", "open")
    .where((eb) =>
      eb.or([
        sql<boolean>`${reviewerId}::uuid = any(i.reviewer_ids)`,
        ...(withFindings ? [eb("i.kind", "in", [...FINDING_KINDS])] : []),
      ]),
    )
    .orderBy("i.due_at")
    .orderBy("i.subject")
    .limit(1000)
    .execute();
}

export function lockItem(db: Q, id: string) {
  return db.selectFrom("review_items").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
}

export async function closeItem(
  db: Q,
  id: string,
  values: { outcome: string; closedBy: string; reason: string | null; now: Date },
): Promise<void> {
  await db
    .updateTable("review_items")
    .set({
      status: "closed",
      outcome: values.outcome,
      closed_by: values.closedBy,
      decision_reason: values.reason,
      closed_at: values.now,
    })
    .where("id", "=", id)
    .execute();
}

/** One due (or to be closed) campaign, claimed so that another node's pass skips it. */
export function claimDueCampaign(db: Q, now: Date) {
  return db
    .selectFrom("review_campaigns")
    .selectAll()
    .where("status", "=", "open")
    .where("due_at", "<=", now)
    .orderBy("due_at")
    .limit(1)
    .forUpdate()
    .skipLocked()
    .executeTakeFirst();
}

/** Open campaigns whose reminder may be due, claimed like due campaigns. */
export function claimRemindable(db: Q, now: Date) {
  return db
    .selectFrom("review_campaigns")
    .selectAll()
    .where("status", "=", "open")
    .where("due_at", ">", now)
    .where("remind_every_ms", "is not", null)
    .orderBy("opened_at")
    .limit(50)
    .forUpdate()
    .skipLocked()
    .execute();
}

export function openItemsOf(db: Q, campaignId: string) {
  return db
    .selectFrom("review_items")
    .selectAll()
    .where("campaign_id", "=", campaignId)
    .where("status", "=", "open")
    .orderBy("subject")
    .forUpdate()
    .execute();
}

/**
 * The subjects of a campaign's open items about this principal: their own eligibility, or a group's they are a
 * member of (any status), as `decide` counts a subject.
 */
export async function openItemsAbout(db: Q, campaignId: string, principalId: string): Promise<string[]> {
  const items = await db
    .selectFrom("review_items as i")
    .leftJoin("eligibilities as e", "e.id", "i.eligibility_id")
    .select(["i.subject", "i.actor_id", "e.group_id"])
    .where("i.campaign_id", "=", campaignId)
    .where("i.status", "=", "open")
    .orderBy("i.subject")
    .execute();
  const members = new Map<string, string[]>();
  const own: string[] = [];
  for (const item of items) {
    if (item.actor_id === principalId) own.push(item.subject);
    if (item.actor_id || !item.group_id) continue;
    if (!members.has(item.group_id)) members.set(item.group_id, await memberIdsOfGroup(db, item.group_id));
    if (members.get(item.group_id)!.includes(principalId)) own.push(item.subject);
  }
  return own;
}

export async function reviewerNamesOfOpenItems(db: Q, campaignId: string): Promise<string[]> {
  const rows = await db
    .selectFrom("review_items as i")
    .innerJoin("principals as p", (join) => join.on(sql<boolean>`p.id = any(i.reviewer_ids)`))
    .select("p.name")
    .distinct()
    .where("i.campaign_id", "=", campaignId)
    .where("i.status", "=", "open")
    .orderBy("p.name")
    .execute();
  return rows.map((r) => r.name);
}

/** Recurring definitions whose next campaign is due, claimed (SKIP LOCKED). */
export function claimDueDefinitions(db: Q, now: Date) {
  return db
    .selectFrom("review_definitions")
    .selectAll()
    .where("next_open_at", "<=", now)
    .orderBy("name")
    .limit(10)
    .forUpdate()
    .skipLocked()
    .execute();
}

export function listDefinitions(db: Q) {
  return db.selectFrom("review_definitions").selectAll().orderBy("name").execute();
}

export type StoredScope = CampaignScope;
export type StoredReviewers = CampaignReviewers;
