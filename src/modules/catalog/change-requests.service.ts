/**
 * Four-eyes on changes to access itself. A configuration file whose plan widens access at a covered risk tier is
 * kept as a change request (`hold`) instead of being applied; a second admin, never its author, approves it, and
 * only then is the file applied: in one transaction under the catalog lock, as its author, and only if the catalog
 * is still the one the plan was made against (else the request turns stale and the author applies again). The
 * author may withdraw it; anyone allowed to write the catalog may deny it; it expires after `expireAfterMs`.
 * Every step and every refusal is audited.
 */
import type { AppStore } from "../../db/index.js";
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { ChangeRequestDto } from "../../contract/change-requests.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize, can, PERMISSIONS } from "../authz/authz.rules.js";
import { PLATFORM_ROLES, SYSTEM, type Actor, type CallContext, type PlatformRole } from "../authz/authz.types.js";
import type { CatalogService, HeldFollowUp, HeldPlan } from "./catalog.service.js";
import * as catalogStore from "./catalog.store.js";
import { approverMfaRuleCheck, approverMfaRuleHint, changeApproverMfaRule } from "../requests/approver-mfa.rules.js";
import { decisionRefusal, effectiveStatus, type ChangeAssessment } from "./change-requests.rules.js";
import * as store from "./change-requests.store.js";
import type { RiskTier } from "./catalog.types.js";
import type { ChangeRequestCreated } from "./change-request-notifications.js";
import { directorySubject, heldDirectoryUseCases, type DirectoryApplier } from "./change-requests.directory.js";

/** How long an approver who was disabled or demoted still counts against `fourEyes.alone: apply`. */
const ALONE_COOLDOWN_MS = 24 * 60 * 60 * 1000;

export interface ChangeRequestServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  /** The catalog service that applies a held file (set after both are made: they refer to each other). */
  catalog: () => Pick<CatalogService, "applyHeld" | "fingerprint">;
  /** How long a change request waits for a decision. */
  expireAfterMs: number;
  /** `fourEyes.approverMfa`: the approver's own fresh MFA for change requests at these tiers (absent: none). */
  approverMfa?: { tiers: readonly RiskTier[]; maxAge: number };
  /**
   * Called in the transaction that applies an approved change request kept with a follow-up (`HeldFollowUp`: a
   * conversion's removal of standing access), after its file: does it and answers its audit events.
   */
  onApplied?: (
    tx: Parameters<typeof store.approverEmails>[0],
    applied: { changeRequestId: string; followUp: HeldFollowUp; author: Actor; approver: Actor },
  ) => Promise<AuditInput[]>;
  /** Called in the transaction that keeps a change request: tells who may approve it (change-request-notifications). */
  onCreated?: (tx: Parameters<typeof store.approverEmails>[0], created: ChangeRequestCreated) => Promise<void>;
  /** The directory, which applies a held directory change (change-requests.directory.ts). */
  directory?: DirectoryApplier;
}

/** Refusals of a decision that are audited (outcome denied) in a transaction of their own. */
const AUDITED_REFUSALS = new Set([
  "FORBIDDEN",
  "CHANGE_REQUEST_SELF_APPROVAL",
  "CHANGE_REQUEST_NOT_PENDING",
  "CHANGE_REQUEST_EXPIRED",
  "CHANGE_REQUEST_STALE",
  "SELF_GRANT",
  "MFA_STEP_UP_REQUIRED",
]);

const iso = (value: Date | string) => new Date(value).toISOString();

export function createChangeRequestService(deps: ChangeRequestServiceDeps) {
  const { audit, clock } = deps;

  function toDto(row: store.ChangeRequestRow, viewer: Actor, now: Date): ChangeRequestDto {
    const status = effectiveStatus(row.status, new Date(row.expires_at), now);
    // The follow-up and a directory change are the approval's to run, not to show (the plan's notes tell).
    const {
      followUp: _followUp,
      directory: _directory,
      ...plan
    } = row.plan as ChangeRequestDto["plan"] & { followUp?: unknown; directory?: unknown };
    const canApprove =
      status === "pending" &&
      viewer.kind === "principal" &&
      viewer.principalKind === "user" &&
      viewer.id !== row.author_id &&
      viewer.id !== directorySubject(row) &&
      can(viewer, "catalog.write");
    return {
      id: row.id,
      kind: row.kind,
      status,
      tier: row.tier,
      author: row.author_name,
      createdAt: iso(row.created_at),
      expiresAt: iso(row.expires_at),
      plan,
      assessment: row.assessment as ChangeRequestDto["assessment"],
      document: row.document,
      decidedBy: row.decided_by_name,
      decidedAt: row.decided_at ? iso(row.decided_at) : null,
      reason: row.decision_reason,
      canApprove,
      // To whoever may approve it: what approving asks of their own MFA now (fourEyes.approverMfa), ahead of it.
      ...(canApprove && viewer.kind === "principal" ? { approverMfa: approverMfaHintFor(row.tier, viewer, now) } : {}),
    };
  }

  /** Expires what is due, audited as the system, in the caller's transaction. */
  async function expire(tx: Parameters<typeof store.expireDue>[0], now: Date, context: CallContext): Promise<void> {
    const ids = await store.expireDue(tx, now);
    if (ids.length === 0) return;
    await audit.append(
      tx,
      SYSTEM,
      context,
      ids.map((id) => ({ action: "change_request.expired", outcome: "success", subject: `change-request:${id}` })),
    );
  }

  async function refused<T>(
    actor: Actor,
    context: CallContext,
    action: string,
    id: string,
    call: () => Promise<T>,
  ): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof StintError && AUDITED_REFUSALS.has(error.code)) {
        await audit.record(actor, context, {
          action,
          outcome: "denied",
          subject: `change-request:${id}`,
          reason: error.code,
        });
      }
      throw error;
    }
  }

  /**
   * The approving admin's own fresh second factor, where `fourEyes.approverMfa` covers the change request's tier:
   * what the approval's audit event records of it, or MFA_STEP_UP_REQUIRED (a phished password alone applies
   * nothing). Null when the tier is not covered. The same check as the list's hint (`approverMfaHintFor`).
   */
  function approverMfaFor(tier: RiskTier, approver: Extract<Actor, { kind: "principal" }>, now: Date) {
    const checked = approverMfaRuleCheck(
      changeApproverMfaRule(deps.approverMfa, tier),
      approver,
      now,
      `Approving a change request at risk ${tier} needs`,
    );
    if (!checked.ok) throw new StintError(checked.code, checked.message, { tier });
    return checked.used;
  }

  /** What approving asks of this approver's MFA now: the decision's own check, a hint only (it checks again). */
  function approverMfaHintFor(tier: RiskTier, approver: Extract<Actor, { kind: "principal" }>, now: Date) {
    return approverMfaRuleHint(changeApproverMfaRule(deps.approverMfa, tier), approver, now);
  }

  function principalOf(actor: Actor): Extract<Actor, { kind: "principal" }> {
    if (actor.kind !== "principal") throw new StintError("FORBIDDEN", "Only a person decides a change request.");
    return actor;
  }

  const directory = heldDirectoryUseCases({ ...deps, expire, principalOf });

  async function get(actor: Actor, id: string): Promise<ChangeRequestDto> {
    authorize(actor, "catalog.read");
    const row = await store.findChangeRequest(deps.store.db, id);
    if (!row) throw new StintError("NOT_FOUND", "No such change request.");
    return toDto(row, actor, clock.now());
  }

  return {
    /**
     * Whether someone other than `actor` could approve a change request (an active admin or security user), or
     * could have a day ago: one disabled or demoted (no longer admin nor security) in the last 24 hours still
     * counts, so disabling or demoting the only other admin, applying alone and restoring them does not waive
     * four-eyes.
     */
    async anotherApprover(tx: Parameters<typeof store.anotherWithRoles>[0], actor: Actor): Promise<boolean> {
      if (actor.kind !== "principal") return true;
      const since = new Date(clock.now().getTime() - ALONE_COOLDOWN_MS);
      return store.anotherWithRoles(tx, actor.id, PERMISSIONS["catalog.write"], since);
    },

    /** Keeps a held plan as a change request (catalog.applyConfig calls it); the catalog must not have moved. */
    async hold(actor: Actor, text: string, held: HeldPlan, context: CallContext): Promise<ChangeRequestRefDto> {
      const author = principalOf(actor);
      const now = clock.now();
      const id = newId();
      const expiresAt = new Date(now.getTime() + deps.expireAfterMs);
      const tier = held.assessment.tier as RiskTier;
      await deps.store.transaction(async (tx) => {
        await catalogStore.lockCatalog(tx);
        if ((await deps.catalog().fingerprint(tx)) !== held.fingerprint)
          throw new StintError(
            "CHANGE_REQUEST_STALE",
            "The catalog changed while the file was applied; apply it again.",
          );
        await expire(tx, now, context);
        await store.insertChangeRequest(tx, {
          id,
          status: "pending",
          author_id: author.id,
          author_name: author.name,
          document: text,
          plan: held.followUp
            ? { ...held.plan, notes: [...held.plan.notes, ...held.followUp.notes], followUp: held.followUp }
            : held.plan,
          assessment: held.assessment.changes,
          tier,
          base_fingerprint: held.fingerprint,
          created_at: now,
          expires_at: expiresAt,
        });
        const widening = held.assessment.changes
          .filter((c: ChangeAssessment) => c.effect === "widens")
          .map((c) => ({ kind: c.kind, name: c.name, tier: c.tier, reasons: c.reasons }));
        await audit.append(tx, actor, context, {
          action: "change_request.created",
          outcome: "success",
          subject: `change-request:${id}`,
          details: { tier, summary: held.plan.summary, widening, expiresAt: expiresAt.toISOString() },
        });
        await deps.onCreated?.(tx, {
          id,
          author: author.name,
          tier,
          widening: widening.map((c) => `${c.kind} ${c.name}: ${c.reasons.join("; ")}`),
          expiresAt,
          createdAt: now,
          recipients: await store.approverEmails(tx, author.id, PERMISSIONS["catalog.write"]),
        });
      });
      return { id, status: "pending", tier, expiresAt: expiresAt.toISOString() };
    },

    holdDirectory: directory.hold,

    async list(actor: Actor, status: store.ChangeRequestRow["status"] | "all"): Promise<ChangeRequestDto[]> {
      authorize(actor, "catalog.read");
      const now = clock.now();
      const rows = await store.listChangeRequests(deps.store.db, status === "expired" ? "all" : status);
      return rows.map((row) => toDto(row, actor, now)).filter((dto) => status === "all" || dto.status === status);
    },

    get,

    /**
     * A second admin approves: the held file is applied now, as its author, in this one transaction with its audit
     * events (each naming the change request), or nothing happens. Refused to the author, to anyone who may not
     * write the catalog, once decided, past its expiry, and when the catalog changed under it (then it turns stale).
     */
    async approve(
      actor: Actor,
      id: string,
      reason: string | undefined,
      context: CallContext,
    ): Promise<ChangeRequestDto> {
      return refused(actor, context, "change_request.approved", id, async () => {
        authorize(actor, "catalog.write");
        const approver = principalOf(actor);
        // Never a service identity: an admin mints its API tokens, so it would be a second pair of eyes of theirs.
        if (approver.principalKind !== "user")
          throw new StintError("FORBIDDEN", "Only a person approves a change request, not a service identity.");
        const now = clock.now();
        const passwordHash = await directory.openBeforeApproval(id, approver);
        const outcome = await deps.store.transaction(async (tx) => {
          await catalogStore.lockCatalog(tx);
          const row = await store.findChangeRequest(tx, id, true);
          if (!row) throw new StintError("NOT_FOUND", "No such change request.");
          const refusal = decisionRefusal(
            { status: row.status, authorId: row.author_id, expiresAt: new Date(row.expires_at) },
            approver.id,
            "approve",
            now,
          );
          if (refusal === "CHANGE_REQUEST_EXPIRED") {
            await expire(tx, now, context);
            return { refusal } as const;
          }
          if (refusal) throw new StintError(refusal);
          const approverMfa = approverMfaFor(row.tier, approver, now);
          if (row.kind === "directory") {
            return {
              refusal: await directory.approve(tx, row, approver, passwordHash, reason, context, approverMfa),
            } as const;
          }
          const plan = row.plan as HeldPlan["plan"];
          if (plan.changes.some((change) => change.kind === "group")) authorize(actor, "groups.write");
          // The catalog must still be the one the plan was made against; else the author applies again.
          if ((await deps.catalog().fingerprint(tx)) !== row.base_fingerprint) {
            await store.decideChangeRequest(tx, id, {
              status: "stale",
              byId: approver.id,
              byName: approver.name,
              at: now,
              reason: "the catalog changed since the plan was made",
            });
            await audit.append(tx, actor, context, {
              action: "change_request.stale",
              outcome: "failed",
              subject: `change-request:${id}`,
              reason: "the catalog changed since the plan was made",
            });
            return { refusal: "CHANGE_REQUEST_STALE" } as const;
          }
          const found = await store.findActivePrincipal(tx, row.author_id);
          const author: Actor | null = found
            ? {
                kind: "principal",
                id: found.id,
                name: found.name,
                principalKind: found.kind,
                roles: found.platform_roles.filter((r): r is PlatformRole =>
                  (PLATFORM_ROLES as readonly string[]).includes(r),
                ),
              }
            : null;
          if (!author || !can(author, "catalog.write"))
            throw new StintError(
              "CHANGE_REQUEST_STALE",
              "The author of this change can no longer write the catalog; someone who can must apply it again.",
            );
          const applied = await deps.catalog().applyHeld(tx, author, actor, row.document, row.base_fingerprint);
          // What the use case that held it does once it is applied (a conversion removes the standing access).
          const { followUp } = row.plan as { followUp?: HeldFollowUp };
          if (followUp && !deps.onApplied)
            throw new StintError("UNAVAILABLE", "This change request's follow-up cannot be run here.");
          const followed = followUp
            ? await deps.onApplied!(tx, { changeRequestId: id, followUp, author, approver: actor })
            : [];
          await store.decideChangeRequest(tx, id, {
            status: "applied",
            byId: approver.id,
            byName: approver.name,
            at: now,
            reason: reason ?? null,
          });
          const events: AuditInput[] = [
            {
              action: "change_request.approved",
              outcome: "success",
              subject: `change-request:${id}`,
              ...(reason ? { reason } : {}),
              details: {
                author: row.author_name,
                tier: row.tier,
                summary: applied.plan.summary,
                ...(approverMfa ? { approverMfa } : {}),
              },
            },
            ...[...applied.events, ...followed].map((event) => ({
              ...event,
              details: { ...event.details, changeRequest: id, author: row.author_name },
            })),
          ];
          await audit.append(tx, actor, context, events);
          return { refusal: null } as const;
        });
        if (outcome.refusal) throw new StintError(outcome.refusal);
        return get(actor, id);
      });
    },

    /** Denies (or, by its author, withdraws) a pending change request; nothing of it is applied. */
    async deny(actor: Actor, id: string, reason: string | undefined, context: CallContext): Promise<ChangeRequestDto> {
      return refused(actor, context, "change_request.denied", id, async () => {
        authorize(actor, "catalog.write");
        const decider = principalOf(actor);
        const now = clock.now();
        await deps.store.transaction(async (tx) => {
          const row = await store.findChangeRequest(tx, id, true);
          if (!row) throw new StintError("NOT_FOUND", "No such change request.");
          const refusal = decisionRefusal(
            { status: row.status, authorId: row.author_id, expiresAt: new Date(row.expires_at) },
            decider.id,
            "deny",
            now,
          );
          if (refusal) throw new StintError(refusal);
          await store.decideChangeRequest(tx, id, {
            status: "denied",
            byId: decider.id,
            byName: decider.name,
            at: now,
            reason: reason ?? null,
          });
          await audit.append(tx, actor, context, {
            action: decider.id === row.author_id ? "change_request.withdrawn" : "change_request.denied",
            outcome: "success",
            subject: `change-request:${id}`,
            ...(reason ? { reason } : {}),
            details: { author: row.author_name, tier: row.tier },
          });
        });
        return get(actor, id);
      });
    },
  };
}

export type ChangeRequestService = ReturnType<typeof createChangeRequestService>;
