/**
 * The scheduler's side of requests: expiries, stage deadlines, expiry warnings, ended eligibilities (and the
 * timing of `timing.ts`: pending expiries, scheduled starts).
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { canonicalDetailsText } from "../audit/audit.uniform.js";
import type { AuditInput } from "../audit/audit.types.js";
import { SYSTEM, type CallContext } from "../authz/authz.types.js";
import { applyTimeout } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import type { Stage } from "./requests.types.js";
import { isPendingPastTtl } from "./timing.rules.js";
import type { RequestCore } from "./activation.js";
import { iso } from "./request-context.js";

/** Why the scheduler ends an activation (its `end_reason` and the audit event's reason). */
const EXPIRY_REASON = "the activation reached its end time";
/**
 * How long one full batch of expiries says its wave goes on (`expiryBurst`), told when its claim returns and again
 * when its events are written: longer than COMMIT and the next claim take on a loaded host (a batch of 1,000 is
 * ~170 ms in all, 400 ms and more at load 10), so the hold ends about this long after the wave's last full batch.
 */
const BURST_HOLD_MS = 500;
/** The call context of the scheduler's audit events. */
const SCHEDULER_CONTEXT: CallContext = { correlationId: "scheduler", sourceIp: null, userAgent: null };
/** A character JSON escapes, or a surrogate (which the canonical form decides on its own). */
// eslint-disable-next-line no-control-regex -- control characters are what JSON escapes
const NOT_PLAIN = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * The canonical JSON (RFC 8785: keys sorted, strings as JSON writes them) of a `request.expired` event's
 * details, `{activatedAt, endedAt, expiresAt, lateByMs, requester, role}`, written by concatenation: the ISO
 * times are given as made (`activatedAt` as JSON already: quoted, or null). A name needing an escape takes the
 * audit's own canonicalizer (`requests.expiry.test.ts` compares the two).
 */
export function expiredDetails(
  activatedAt: string,
  endedAt: string,
  expiresAt: string,
  lateByMs: number,
  requester: string,
  role: string,
): string {
  if (NOT_PLAIN.test(requester) || NOT_PLAIN.test(role) || !Number.isSafeInteger(lateByMs))
    return canonicalDetailsText({
      activatedAt: activatedAt === "null" ? null : (JSON.parse(activatedAt) as string),
      endedAt,
      expiresAt,
      lateByMs,
      requester,
      role,
    });
  return (
    `{"activatedAt":${activatedAt},"endedAt":"${endedAt}","expiresAt":"${expiresAt}","lateByMs":${lateByMs},` +
    `"requester":"${requester}","role":"${role}"}`
  );
}

export function createScheduler(core: RequestCore) {
  const { deps, store, audit, clock, index, emit, endWithoutBasis, moveToStage, approveThenGrant, timing } = core;

  return {
    /**
     * Scheduler: ends every activation whose time is up. Safe on any number of nodes: rows are claimed with
     * SKIP LOCKED. Two statements whatever the batch's size: the claim that ends them (`expireDue`, their
     * grants and pending extensions with them, the grants at real targets queued for revocation), then their
     * audit events with the index's and the sessions' notifications (`appendUniform`), each event's details
     * written from a template, with no object per activation on the way.
     */
    async expireDue(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const reason = EXPIRY_REASON;
        const due = await requestStore.expireDue(tx, { now, limit, reason });
        const n = due.ids.length;
        if (n === 0) return 0;
        // A full batch: more is due (a wave), the next batch follows at once. Work that can wait holds off (told
        // again once the batch is written, so the hold outlasts the wait for the next claim).
        const full = n >= limit;
        if (full) deps.expiryBurst?.hold(BURST_HOLD_MS);
        // A real target is revoked through the outbox (Stint enforces internal roles itself: nothing to queue).
        for (const { grantId, requestId } of due.revoking)
          await deps.onGrant?.(tx, { grantId, requestId, action: "revoke" });
        const notify =
          index?.prepareMany(
            tx,
            due.ids.map((id) => ({ t: "end", id })),
          ) ?? [];
        const ended =
          deps.onEnded || deps.endedNotifications
            ? due.ids.map((requestId, i) => ({
                requestId,
                role: due.roles[i]!,
                state: "expired" as const,
                by: "system",
                reason,
              }))
            : [];
        if (deps.endedNotifications) notify.push(...deps.endedNotifications(ended));
        else await deps.onEnded?.(tx, ended);
        if (deps.onEvent)
          await deps.onEvent(
            tx,
            due.ids.map((requestId, i) => ({
              type: "expired",
              requestId,
              role: due.roles[i]!,
              requester: due.requesters[i]!,
              reason,
              by: "system",
            })),
          );
        if (due.cancelled.length > 0)
          await audit.append(
            tx,
            SYSTEM,
            SCHEDULER_CONTEXT,
            due.cancelled.map(({ id, extendsRequestId }) => ({
              action: "request.cancelled",
              outcome: "success",
              subject: `request:${id}`,
              reason: "the activation it would extend ended",
              details: { role: due.roles[due.ids.indexOf(extendsRequestId)], extends: extendsRequestId },
            })),
          );
        const subjects = new Array<string>(n);
        const details = new Array<string>(n);
        const endedAt = now.toISOString();
        let lastExpiry = Number.NaN;
        let expiresIso = "";
        let lastActivation = Number.NaN;
        let activatedIso = "null";
        for (let i = 0; i < n; i++) {
          const expires = due.expiresAt[i]!;
          const activated = due.activatedAt[i]!;
          // A wave shares its expiry (and often its start): each ISO text made once per run of equal times.
          if (expires !== lastExpiry) expiresIso = new Date((lastExpiry = expires)).toISOString();
          if (activated !== lastActivation)
            activatedIso = activated === null ? "null" : `"${new Date((lastActivation = activated)).toISOString()}"`;
          subjects[i] = `request:${due.ids[i]}`;
          details[i] = expiredDetails(
            activatedIso,
            endedAt,
            expiresIso,
            now.getTime() - expires,
            due.requesters[i]!,
            due.roles[i]!,
          );
        }
        const batch = { action: "request.expired", outcome: "success" as const, reason, subjects, details };
        if (audit.appendUniform)
          await audit.appendUniform(tx, SYSTEM, SCHEDULER_CONTEXT, { ...batch, notify, time: endedAt });
        else {
          await requestStore.notifyAll(tx, notify);
          await audit.append(
            tx,
            SYSTEM,
            SCHEDULER_CONTEXT,
            subjects.map((subject, i) => ({
              action: batch.action,
              outcome: batch.outcome,
              subject,
              reason,
              details: JSON.parse(details[i]!) as Record<string, unknown>,
            })),
          );
        }
        if (full) deps.expiryBurst?.hold(BURST_HOLD_MS);
        return n;
      });
    },

    /** Scheduler: applies stage timeouts (deny, escalate or approve, as each stage says). */
    async processDeadlines(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const due = await requestStore.claimDueDeadlines(tx, now, limit);
        const events: AuditInput[] = [];
        for (const { id } of due) {
          const row = (await requestStore.findRequest(tx, id))!;
          // Past its time to live as well: the request expires undecided, whatever the stage would do.
          if (isPendingPastTtl(row, now)) {
            events.push(...(await timing.expireUndecided(tx, row, now)));
            continue;
          }
          const stages = requestStore.stagesOf(row);
          const result = applyTimeout(requestStore.factsOf(row, []), now);
          const subject = `request:${row.id}`;
          const base = { role: row.role_name, requester: row.requester_name, stage: row.stage_index + 1 };
          if (result.result === "escalated") {
            const updated: Stage[] = stages.map((s, i) => (i === row.stage_index ? result.stage : s));
            await tx
              .updateTable("activation_requests")
              .set({ stages: JSON.stringify(updated), stage_deadline: result.deadline, updated_at: now })
              .where("id", "=", row.id)
              .execute();
            events.push({
              action: "request.escalated",
              outcome: "success",
              subject,
              reason: `${result.stage.name} timed out; escalated to the fallback approvers`,
              details: base,
            });
            await emit(tx, {
              type: "escalated",
              requestId: row.id,
              role: row.role_name,
              requester: row.requester_name,
            });
          } else if (result.result === "denied") {
            await tx
              .updateTable("activation_requests")
              .set({
                state: "denied",
                decided_at: now,
                stage_deadline: null,
                end_reason: result.reason,
                ended_by: "system",
                updated_at: now,
              })
              .where("id", "=", row.id)
              .execute();
            events.push({
              action: "request.denied",
              outcome: "success",
              subject,
              reason: result.reason,
              details: { ...base, timeout: true },
            });
            await emit(tx, {
              type: "denied",
              requestId: row.id,
              role: row.role_name,
              requester: row.requester_name,
              reason: result.reason,
              by: "system",
            });
          } else if (result.result === "next_stage") {
            await moveToStage(tx, row, result.stageIndex, now);
            events.push({
              action: "request.stage_approved",
              outcome: "success",
              subject,
              reason: "stage timed out; the policy approves at the timeout",
              details: base,
            });
          } else if (result.result === "approved") {
            events.push({
              action: "request.approved",
              outcome: "success",
              subject,
              reason: result.reason,
              details: { ...base, automatic: true },
            });
            events.push(...(await approveThenGrant(tx, row.id, now)));
          } else {
            await tx
              .updateTable("activation_requests")
              .set({ stage_deadline: null, updated_at: now })
              .where("id", "=", row.id)
              .execute();
          }
        }
        await audit.append(tx, SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, events);
        return due.length;
      });
    },

    /** Scheduler: tells holders their activation ends soon (only when notifications are configured). */
    async warnExpiring(limit = 100): Promise<number> {
      if (!deps.onEvent) return 0;
      return store.transaction(async (tx) => {
        const now = clock.now();
        const candidates = await requestStore.claimExpiring(tx, now, limit);
        const due = candidates.filter(
          (c) =>
            new Date(c.expires_at!).getTime() - now.getTime() <=
            Math.min(requestStore.EXPIRY_WARNING_MAX_MS, c.duration_ms / 2),
        );
        const events: AuditInput[] = [];
        for (const { id } of due) {
          const row = (await requestStore.findRequest(tx, id))!;
          await tx.updateTable("activation_requests").set({ expiring_notified_at: now }).where("id", "=", id).execute();
          await emit(tx, { type: "expiring", requestId: id, role: row.role_name, requester: row.requester_name });
          events.push({
            action: "request.expiry_warning",
            outcome: "success",
            subject: `request:${id}`,
            details: { role: row.role_name, requester: row.requester_name, expiresAt: iso(row.expires_at) },
          });
        }
        await audit.append(tx, SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, events);
        return due.length;
      });
    },

    /** Scheduler: an eligibility that reached its end date stops being usable (queries check it) and is reported once. */
    async reportEndedEligibilities(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const ended = await requestStore.claimEndedEligibilities(tx, now, limit);
        if (ended.length === 0) return 0;
        await tx
          .updateTable("eligibilities")
          .set({ expiry_reported_at: now })
          .where(
            "id",
            "in",
            ended.map((e) => e.id),
          )
          .execute();
        // What was activated on an eligibility that ended does not outlive it. The request rows are locked
        // before the audit head, as every request transaction does.
        const roleIds = [...new Set(ended.map((e) => e.role_id))];
        const endedAccess = await endWithoutBasis(
          tx,
          { roleIds },
          { by: "system", reason: "the eligibility ended" },
          now,
        );
        await audit.append(tx, SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, [
          ...ended.map((e) => ({
            action: "eligibility.expired",
            outcome: "success" as const,
            subject: `role:${e.role_name}`,
            reason: "the eligibility reached its end date",
            details: { eligibilityId: e.id, principal: e.principal_name, group: e.group_name, endedAt: iso(e.ends_at) },
          })),
          ...endedAccess,
        ]);
        return ended.length;
      });
    },

    /**
     * Called inside the transaction that disables an account, removes an eligibility or a group membership:
     * every open activation in `scope` that lost its basis ends in that same transaction. Returns the audit
     * events for the caller to append with its own (after these row locks, as every request transaction does).
     */
    async endAccessWithoutBasis(
      tx: Kysely<Database>,
      scope: { principalIds?: string[]; roleIds?: string[] },
      cause: { by: string; reason?: string },
    ): Promise<AuditInput[]> {
      return endWithoutBasis(tx, scope, cause, clock.now());
    },

    nextExpiry: () => requestStore.nextExpiry(store.db),

    expirePendingDue: timing.expirePendingDue,
    startScheduledDue: timing.startScheduledDue,
    nextTimingDue: timing.nextTimingDue,
  };
}
