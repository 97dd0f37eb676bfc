/**
 * Access review campaigns. Each call authorizes first (managing campaigns needs reviews.manage; deciding an item
 * needs only to be its reviewer), then writes its change and its audit events in one transaction. A removal takes
 * the catalog lock, ends the eligibility and what it backed (`onAccessBasisLost`) in that same transaction.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database, Tx } from "../../db/index.js";
import type { CampaignDetailDto, CampaignDto, CampaignInput, ReviewItemDto } from "../../contract/reviews.js";
import type { Clock } from "../../lib/clock.js";
import { parseDuration } from "../../lib/duration.js";
import { StintError } from "../../lib/errors.js";
import { isUuid, newId } from "../../lib/ids.js";
import { actorLabel, type AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize, can } from "../authz/authz.rules.js";
import { NO_CONTEXT, SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import { lockCatalog, removeEligibility } from "../catalog/catalog.public.js";
import {
  findingOutcome,
  checkFindingDecision,
  checkDecision,
  DAY_MS,
  decisionFits,
  type ItemDecision,
  onMissedFor,
  outcomeOf,
  recommend,
  reminderDue,
  reviewersFor,
} from "./reviews.rules.js";
import * as reviewStore from "./reviews.store.js";
import { campaignDto, itemDto, type CampaignRow } from "./reviews.dto.js";
import type { CampaignReviewers, CampaignScope, OnMissed, ReviewDefinition } from "./reviews.types.js";

export interface ReviewNotice {
  event: string;
  severity: "info" | "warning" | "critical";
  title: string;
  text: string;
  dedupeKey: string;
}

export interface ReviewServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  /** Ends the open activations that lost their basis (the requests service); returns their audit events. */
  onAccessBasisLost?: (
    tx: Tx,
    scope: { roleIds?: string[] },
    cause: { by: string; reason?: string },
  ) => Promise<AuditInput[]>;
  /** Writes a notification to the outbox in the caller's transaction (reminders, escalations). */
  notify?: (tx: Tx, notice: ReviewNotice) => Promise<void>;
}

interface CampaignSpec {
  name: string;
  definitionName: string | null;
  scope: CampaignScope;
  reviewers: CampaignReviewers;
  dueAt: Date;
  remindEveryMs: number | null;
  escalateTo: string | null;
  onMissed: OnMissed | "by-risk";
}

const iso = (value: Date | string) => new Date(value).toISOString();

function principalOf(actor: Actor): Extract<Actor, { kind: "principal" }> {
  if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
  return actor;
}

function invalidDecision(kind: string): StintError {
  const allowed = kind === "eligibility" ? "keep or remove" : "acknowledge or escalate";
  return new StintError("VALIDATION_FAILED", `A ${kind} review item is decided with ${allowed}.`, {
    issues: [{ path: "body.decision", message: `must be ${allowed} for a ${kind} item` }],
  });
}

function systemContext(correlationId: string): CallContext {
  return { ...NO_CONTEXT, correlationId };
}

export function createReviewService(deps: ReviewServiceDeps) {
  const { store, audit, clock } = deps;

  /** Opens a campaign and generates its items (one per eligibility in scope), in the caller's transaction. */
  async function openCampaign(tx: Tx, actor: Actor, context: CallContext, spec: CampaignSpec): Promise<string> {
    const now = clock.now();
    const id = newId();
    const createdBy = actorLabel(actor).actor;
    await tx
      .insertInto("review_campaigns")
      .values({
        id,
        name: spec.name,
        definition_name: spec.definitionName,
        scope: JSON.stringify(spec.scope),
        reviewers: JSON.stringify(spec.reviewers),
        on_missed: spec.onMissed,
        remind_every_ms: spec.remindEveryMs,
        escalate_to: spec.escalateTo,
        status: "open",
        opened_at: now,
        due_at: spec.dueAt,
        created_by: createdBy,
      })
      .execute();
    const eligibility = await reviewStore.eligibilitiesInScope(tx, spec.scope, now);
    const groupNames = [
      ...eligibility.flatMap((e) => (spec.reviewers.owners ? e.owners : [])),
      ...(spec.reviewers.groups ?? []),
      ...(spec.reviewers.fallback ? [spec.reviewers.fallback] : []),
    ];
    const members = await reviewStore.membersOf(tx, groupNames);
    const membersOfAll = (names: readonly string[]) => names.flatMap((n) => members.get(n) ?? []);
    const periodDays = 90;
    const since = new Date(now.getTime() - periodDays * DAY_MS);
    let unreviewable = 0;
    for (const e of eligibility) {
      const subjectIds = e.principalId ? [e.principalId] : await reviewStore.groupMemberIds(tx, e.groupId!);
      const reviewerIds = reviewersFor({
        subjectIds,
        owners: spec.reviewers.owners ? membersOfAll(e.owners) : [],
        manager: spec.reviewers.manager ? e.managerId : null,
        groups: membersOfAll(spec.reviewers.groups ?? []),
        fallback: membersOfAll(spec.reviewers.fallback ? [spec.reviewers.fallback] : []),
      });
      if (reviewerIds.length === 0) unreviewable++;
      const facts = await reviewStore.usageFacts(tx, subjectIds, e.roleId, since);
      const evidence = recommend({ ...facts, periodDays }, now);
      const holder = e.principalName ?? `group:${e.groupName}`;
      await tx
        .insertInto("review_items")
        .values({
          id: newId(),
          kind: "eligibility",
          subject: `eligibility:${e.roleName}/${holder}`,
          actor_id: e.principalId,
          reason: `access review ${spec.name}`,
          status: "open",
          created_at: now,
          due_at: spec.dueAt,
          campaign_id: id,
          eligibility_id: e.id,
          role_id: e.roleId,
          reviewer_ids: reviewerIds,
          evidence: JSON.stringify(evidence),
          on_missed: onMissedFor(spec.onMissed, e.risk),
        })
        .execute();
    }
    await audit.append(tx, actor, context, {
      action: "review.campaign.open",
      outcome: "success",
      subject: `review-campaign:${spec.name}`,
      details: {
        campaignId: id,
        definition: spec.definitionName,
        items: eligibility.length,
        withoutReviewer: unreviewable,
        dueAt: spec.dueAt.toISOString(),
      },
    });
    return id;
  }

  async function requireCampaign(db: Kysely<Database>, id: string): Promise<CampaignRow> {
    const row = await reviewStore.findCampaign(db, id);
    if (!row) throw new StintError("NOT_FOUND", "No such review campaign.");
    return row;
  }

  async function detail(db: Kysely<Database>, row: CampaignRow): Promise<CampaignDetailDto> {
    const progress = await reviewStore.progressOf(db, [row.id]);
    const items = await reviewStore.campaignItems(db, row.id);
    return { ...campaignDto(row, progress.get(row.id)), items: items.map(itemDto) };
  }

  /**
   * Applies one item's outcome in `tx` (the catalog lock already held): a removal ends the eligibility and what it
   * backed. Returns the audit events (the decision's own first).
   */
  async function applyOutcome(
    tx: Tx,
    item: {
      id: string;
      subject: string;
      eligibility_id: string | null;
      role_id: string | null;
      campaign_id: string | null;
    },
    decision: OnMissed,
    how: { missed: boolean; by: string; reason: string | null },
  ): Promise<AuditInput[]> {
    const now = clock.now();
    const outcome = outcomeOf(decision, how.missed);
    await reviewStore.closeItem(tx, item.id, { outcome, closedBy: how.by, reason: how.reason, now });
    const events: AuditInput[] = [
      {
        action: how.missed ? "review.missed" : "review.decide",
        outcome: "success",
        subject: item.subject,
        reason: how.reason,
        details: { itemId: item.id, campaignId: item.campaign_id, decision, outcome },
      },
    ];
    if (decision !== "remove" || !item.eligibility_id) return events;
    const eligibility = await tx
      .selectFrom("eligibilities")
      .select(["id", "removed_at"])
      .where("id", "=", item.eligibility_id)
      .executeTakeFirst();
    if (!eligibility || eligibility.removed_at !== null) return events;
    await removeEligibility(tx, eligibility.id, now);
    const ended =
      (await deps.onAccessBasisLost?.(
        tx,
        { roleIds: [item.role_id!] },
        { by: how.by, reason: how.missed ? "access review missed (removed at due date)" : "removed by access review" },
      )) ?? [];
    events.push(
      {
        action: "eligibility.remove",
        outcome: "success",
        subject: item.subject,
        reason: how.reason,
        details: { source: "review", eligibilityId: eligibility.id, itemId: item.id, campaignId: item.campaign_id },
      },
      ...ended,
    );
    return events;
  }

  /** Applies onMissed to every open item of a campaign and closes it; the campaign row is locked by the caller. */
  async function finishCampaign(tx: Tx, actor: Actor, context: CallContext, row: CampaignRow, why: string) {
    const by = actorLabel(actor).actor;
    const items = await reviewStore.openItemsOf(tx, row.id);
    const events: AuditInput[] = [];
    for (const item of items)
      events.push(...(await applyOutcome(tx, item, item.on_missed ?? "keep", { missed: true, by, reason: why })));
    await tx
      .updateTable("review_campaigns")
      .set({ status: "closed", closed_at: clock.now(), closed_by: by })
      .where("id", "=", row.id)
      .execute();
    events.push({
      action: "review.campaign.close",
      outcome: "success",
      subject: `review-campaign:${row.name}`,
      reason: why,
      details: { campaignId: row.id, missed: items.length },
    });
    await audit.append(tx, actor, context, events);
    return items.length;
  }

  /** closeCampaign's transaction: the campaign locked, the closer's own open items refused, the rest applied. */
  function closeNow(actor: Actor, id: string, context: CallContext): Promise<CampaignDetailDto> {
    return store.transaction(async (tx) => {
      await lockCatalog(tx);
      const row = await tx
        .selectFrom("review_campaigns")
        .selectAll()
        .where("id", "=", id)
        .forUpdate()
        .executeTakeFirst();
      if (!row) throw new StintError("NOT_FOUND", "No such review campaign.");
      if (row.status !== "open") throw new StintError("CAMPAIGN_CLOSED");
      const own = actor.kind === "principal" ? await reviewStore.openItemsAbout(tx, row.id, actor.id) : [];
      if (own.length > 0)
        throw new StintError(
          "SELF_REVIEW",
          `The campaign ${row.name} has open items about your own access (${own.join(", ")}); closing it would apply their onMissed by your hand. Another reviewer decides them first, or another manager closes the campaign.`,
          { items: own },
        );
      await finishCampaign(tx, actor, context, row, "campaign closed before its due date");
      return detail(tx, (await reviewStore.findCampaign(tx, id))!);
    });
  }

  return {
    async createCampaign(actor: Actor, input: CampaignInput, context: CallContext): Promise<CampaignDetailDto> {
      authorize(actor, "reviews.manage");
      const now = clock.now();
      const dueAt = input.dueAt ? new Date(input.dueAt) : new Date(now.getTime() + parseDuration(input.duration!));
      if (dueAt.getTime() <= now.getTime())
        throw new StintError("VALIDATION_FAILED", "The due date must be in the future.", {
          issues: [{ path: "body.dueAt", message: "must be in the future" }],
        });
      return store.transaction(async (tx) => {
        const id = await openCampaign(tx, actor, context, {
          name: input.name,
          definitionName: null,
          scope: input.scope,
          reviewers: input.reviewers,
          dueAt,
          remindEveryMs: input.remindEvery ? parseDuration(input.remindEvery) : null,
          escalateTo: input.escalateTo ?? null,
          onMissed: input.onMissed ?? "by-risk",
        });
        return detail(tx, await requireCampaign(tx, id));
      });
    },

    async listCampaigns(actor: Actor): Promise<CampaignDto[]> {
      authorize(actor, "reviews.read");
      const rows = await reviewStore.listCampaigns(store.db);
      const progress = await reviewStore.progressOf(
        store.db,
        rows.map((r) => r.id),
      );
      return rows.map((r) => campaignDto(r, progress.get(r.id)));
    },

    async getCampaign(actor: Actor, id: string): Promise<CampaignDetailDto> {
      authorize(actor, "reviews.read");
      return detail(store.db, await requireCampaign(store.db, id));
    },

    /**
     * Closes a campaign now: undecided items are applied as at the due date (their onMissed). Not while an item
     * about the closer's own access is open: that would decide it by their hand (SELF_REVIEW, audited).
     */
    async closeCampaign(actor: Actor, id: string, context: CallContext): Promise<CampaignDetailDto> {
      authorize(actor, "reviews.manage");
      try {
        return await closeNow(actor, id, context);
      } catch (error) {
        if (error instanceof StintError && error.code === "SELF_REVIEW")
          await audit.record(actor, context, {
            action: "review.campaign.close",
            outcome: "denied",
            subject: `review-campaign:${id}`,
            reason: "SELF_REVIEW",
            details: { campaignId: id, ...error.details },
          });
        throw error;
      }
    },

    /** The caller's open items (and open break-glass items for those who manage reviews). */
    async inbox(actor: Actor): Promise<ReviewItemDto[]> {
      const principal = principalOf(actor);
      const rows = await reviewStore.inbox(store.db, principal.id, can(actor, "reviews.manage"));
      return rows.map(itemDto);
    },

    /**
     * Decides one item: keep/remove an eligibility item (its reviewers), acknowledge (with a finding) or escalate a
     * break-glass item (those who manage reviews). Nobody decides an item about themselves (audited refusal).
     */
    async decide(
      actor: Actor,
      itemId: string,
      input: { decision: ItemDecision; reason: string },
      context: CallContext,
    ): Promise<ReviewItemDto> {
      const principal = principalOf(actor);
      try {
        return await store.transaction(async (tx) => {
          await lockCatalog(tx);
          const item = await reviewStore.lockItem(tx, itemId);
          // Not a reviewer of something that does not exist either: the answer never tells which.
          if (!item) throw new StintError("NOT_A_REVIEWER");
          if (item.kind !== "eligibility") {
            const requestId = item.subject.startsWith("request:") ? item.subject.slice("request:".length) : null;
            checkFindingDecision(
              {
                status: item.status,
                actorId: item.actor_id,
                involvedIds: requestId && isUuid(requestId) ? await reviewStore.requestParticipants(tx, requestId) : [],
              },
              principal.id,
              can(actor, "reviews.manage"),
            );
            if (!decisionFits(item.kind, input.decision)) throw invalidDecision(item.kind);
            const decision = input.decision as "acknowledge" | "escalate";
            const outcome = findingOutcome(decision);
            await reviewStore.closeItem(tx, item.id, {
              outcome,
              closedBy: principal.name,
              reason: input.reason,
              now: clock.now(),
            });
            await audit.append(tx, actor, context, {
              action: decision === "acknowledge" ? "review.acknowledge" : "review.escalate",
              outcome: "success",
              subject: item.subject,
              reason: input.reason,
              details: { itemId: item.id, kind: item.kind, outcome },
            });
            if (decision === "escalate")
              await deps.notify?.(tx, {
                event: "review.escalated",
                severity: "critical",
                title: `Break-glass review escalated: ${item.subject}`,
                text: `${principal.name} escalated the review of ${item.subject}: ${input.reason}`,
                dedupeKey: `review-escalate-item:${item.id}`,
              });
            const row = await reviewStore.itemsQuery(tx).where("i.id", "=", itemId).executeTakeFirstOrThrow();
            return itemDto(row);
          }
          const subjectIds = item.actor_id
            ? [item.actor_id]
            : item.eligibility_id
              ? await reviewStore.groupMemberIds(
                  tx,
                  (
                    await tx
                      .selectFrom("eligibilities")
                      .select("group_id")
                      .where("id", "=", item.eligibility_id)
                      .executeTakeFirstOrThrow()
                  ).group_id ?? "00000000-0000-0000-0000-000000000000",
                )
              : [];
          const campaign = item.campaign_id ? await requireCampaign(tx, item.campaign_id) : undefined;
          checkDecision(
            {
              status: item.status,
              reviewerIds: item.reviewer_ids,
              subjectIds,
              dueAt: campaign ? new Date(campaign.due_at) : undefined,
            },
            principal.id,
            clock.now(),
          );
          if (!decisionFits(item.kind, input.decision)) throw invalidDecision(item.kind);
          if (campaign && campaign.status !== "open") throw new StintError("CAMPAIGN_CLOSED");
          const events = await applyOutcome(tx, item, input.decision as OnMissed, {
            missed: false,
            by: principal.name,
            reason: input.reason,
          });
          await audit.append(tx, actor, context, events);
          const row = await reviewStore.itemsQuery(tx).where("i.id", "=", itemId).executeTakeFirstOrThrow();
          return itemDto(row);
        });
      } catch (error) {
        if (error instanceof StintError && error.code === "SELF_REVIEW") {
          await audit.record(actor, context, {
            action: "review.decide",
            outcome: "denied",
            subject: `review-item:${itemId}`,
            reason: "SELF_REVIEW",
            details: { itemId, decision: input.decision },
          });
        }
        throw error;
      }
    },

    /**
     * One pass of the reviews worker: opens campaigns of recurring definitions that are due, sends due reminders
     * (and the escalation once, when less than a reminder period is left), applies missed items of campaigns past
     * their due date. Idempotent; rows are claimed with SKIP LOCKED so nodes share the work.
     */
    async runOnce(): Promise<{ opened: number; reminded: number; applied: number }> {
      let opened = 0;
      let reminded = 0;
      let applied = 0;
      const context = systemContext("reviews-worker");
      // Recurring definitions.
      await store.transaction(async (tx) => {
        const now = clock.now();
        for (const def of await reviewStore.claimDueDefinitions(tx, now)) {
          const spec = def.spec as ReviewDefinition;
          const everyMs = parseDuration(spec.every);
          const stillOpen = await tx
            .selectFrom("review_campaigns")
            .select("id")
            .where("definition_name", "=", def.name)
            .where("status", "=", "open")
            .executeTakeFirst();
          if (!stillOpen) {
            await openCampaign(tx, SYSTEM, context, {
              name: `${def.name}-${now.toISOString().slice(0, 10)}`,
              definitionName: def.name,
              scope: spec.scope ?? {},
              reviewers: spec.reviewers,
              dueAt: new Date(now.getTime() + parseDuration(spec.duration)),
              remindEveryMs: spec.remindEvery ? parseDuration(spec.remindEvery) : null,
              escalateTo: spec.escalateTo ?? null,
              onMissed: spec.onMissed ?? "by-risk",
            });
            opened++;
          }
          // Next period from the one just due (not from now), skipping periods a stopped server missed.
          let next = new Date(def.next_open_at).getTime() + everyMs;
          while (next <= now.getTime()) next += everyMs;
          await tx
            .updateTable("review_definitions")
            .set({ next_open_at: new Date(next), updated_at: now })
            .where("name", "=", def.name)
            .execute();
        }
      });
      // Reminders and escalation.
      if (deps.notify) {
        await store.transaction(async (tx) => {
          const now = clock.now();
          for (const row of await reviewStore.claimRemindable(tx, now)) {
            const remindEveryMs = row.remind_every_ms === null ? null : Number(row.remind_every_ms);
            if (
              !reminderDue(
                {
                  remindEveryMs,
                  openedAt: new Date(row.opened_at),
                  dueAt: new Date(row.due_at),
                  lastRemindedAt: row.last_reminded_at ? new Date(row.last_reminded_at) : null,
                },
                now,
              )
            )
              continue;
            const reviewers = await reviewStore.reviewerNamesOfOpenItems(tx, row.id);
            const progress = (await reviewStore.progressOf(tx, [row.id])).get(row.id);
            await tx.updateTable("review_campaigns").set({ last_reminded_at: now }).where("id", "=", row.id).execute();
            if (!progress || progress.open === 0) continue;
            const n = Math.floor((now.getTime() - new Date(row.opened_at).getTime()) / remindEveryMs!);
            await deps.notify!(tx, {
              event: "review.reminder",
              severity: "warning",
              title: `Access review ${row.name}: ${progress.open} item(s) waiting`,
              text: `Due ${iso(row.due_at)}. Reviewers: ${reviewers.join(", ") || "none"}. Decide with stint reviews decide.`,
              dedupeKey: `review-remind:${row.id}:${n}`,
            });
            // Escalate once, when less than a reminder period is left.
            if (
              row.escalate_to &&
              !row.escalated_at &&
              new Date(row.due_at).getTime() - now.getTime() <= remindEveryMs!
            ) {
              await tx.updateTable("review_campaigns").set({ escalated_at: now }).where("id", "=", row.id).execute();
              await deps.notify!(tx, {
                event: "review.escalated",
                severity: "critical",
                title: `Access review ${row.name} escalated to ${row.escalate_to}`,
                text: `${progress.open} item(s) are still undecided and the campaign is due ${iso(row.due_at)}.`,
                dedupeKey: `review-escalate:${row.id}`,
              });
            }
            await audit.append(tx, SYSTEM, context, {
              action: "review.remind",
              outcome: "success",
              subject: `review-campaign:${row.name}`,
              details: { campaignId: row.id, open: progress.open, reviewers },
            });
            reminded++;
          }
        });
      }
      // Missed items at the due date, one campaign per transaction.
      for (;;) {
        // A cheap look first, so an idle pass does not take the catalog lock.
        const due = await store.db
          .selectFrom("review_campaigns")
          .select("id")
          .where("status", "=", "open")
          .where("due_at", "<=", clock.now())
          .limit(1)
          .executeTakeFirst();
        if (!due) break;
        const done = await store.transaction(async (tx) => {
          await lockCatalog(tx);
          const row = await reviewStore.claimDueCampaign(tx, clock.now());
          if (!row) return false;
          applied += await finishCampaign(tx, SYSTEM, context, row, "not decided by the due date");
          return true;
        });
        if (!done) break;
      }
      return { opened, reminded, applied };
    },
  };
}

export type ReviewService = ReturnType<typeof createReviewService>;
