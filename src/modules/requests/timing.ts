/**
 * Request timing, the scheduler's side: a pending request expires when its policy's `requestTtl` has passed
 * since submission, and a request approved ahead starts when its start time comes. Both claim their rows
 * with SKIP LOCKED (any number of nodes, each row once) and write the change, its audit events and its
 * notification in one transaction. The rules are in `timing.rules.ts`.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import { policySpec } from "../../contract/catalog.js";
import type { Clock } from "../../lib/clock.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { SYSTEM, type CallContext } from "../authz/authz.types.js";
import * as requestStore from "./requests.store.js";
import { pendingExpiryReason, requestTtlMs } from "./timing.rules.js";
import * as timingStore from "./timing.store.js";
import { formatDuration } from "../../lib/duration.js";

export interface RequestTimingDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  /** The request service's end of a request that never started: its row and its notification. */
  endUnstarted: (
    tx: Kysely<Database>,
    row: requestStore.RequestRow,
    end: { state: "expired"; event: "pending_expired"; reason: string; by: string },
    now: Date,
  ) => Promise<void>;
  /** The request service's start of an approved request (basis and windows checked again, grant written). */
  grant: (tx: Kysely<Database>, row: requestStore.RequestRow, now: Date) => Promise<AuditInput[]>;
}

const SCHEDULER: CallContext = { correlationId: "scheduler", sourceIp: null, userAgent: null };

export function createRequestTiming(deps: RequestTimingDeps) {
  const { store, audit, clock } = deps;

  /**
   * A pending request (its row locked by the caller) whose time to live has passed ends as `expired`, with
   * no activation behind it: the requester hears of it, approvers can no longer decide it.
   */
  async function expireUndecided(tx: Kysely<Database>, row: requestStore.RequestRow, now: Date): Promise<AuditInput[]> {
    const spec = policySpec.parse(row.policy_snapshot);
    const reason = pendingExpiryReason(spec);
    await deps.endUnstarted(tx, row, { state: "expired", event: "pending_expired", reason, by: "system" }, now);
    return [
      {
        action: "request.expired",
        outcome: "success",
        subject: `request:${row.id}`,
        reason,
        details: {
          role: row.role_name,
          requester: row.requester_name,
          // Never started: an undecided request, not an activation that ran out.
          pending: true,
          requestTtl: formatDuration(requestTtlMs(spec)),
          submittedAt: new Date(row.submitted_at).toISOString(),
          endedAt: now.toISOString(),
          stage: row.stage_index + 1,
          ...(row.extends_request_id ? { extends: row.extends_request_id } : {}),
        },
      },
    ];
  }

  return {
    expireUndecided,

    /** Scheduler: expires every pending request past its time to live. */
    async expirePendingDue(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const due = await timingStore.claimPendingPastTtl(tx, now, limit);
        const events: AuditInput[] = [];
        for (const { id } of due)
          events.push(...(await expireUndecided(tx, (await requestStore.findRequest(tx, id))!, now)));
        await audit.append(tx, SYSTEM, SCHEDULER, events);
        return due.length;
      });
    },

    /**
     * Scheduler: starts every request approved ahead whose start time has come. Its duration counts from now;
     * a requester who lost the basis meanwhile, or a start outside the activation windows, cancels it instead.
     */
    async startScheduledDue(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const due = await timingStore.claimDueStarts(tx, now, limit);
        const events: AuditInput[] = [];
        for (const { id } of due) {
          const row = (await requestStore.findRequest(tx, id))!;
          events.push({
            action: "request.start_due",
            outcome: "success",
            subject: `request:${row.id}`,
            details: {
              role: row.role_name,
              requester: row.requester_name,
              startAt: new Date(row.start_at!).toISOString(),
              lateByMs: now.getTime() - new Date(row.start_at!).getTime(),
            },
          });
          events.push(...(await deps.grant(tx, row, now)));
        }
        await audit.append(tx, SYSTEM, SCHEDULER, events);
        return due.length;
      });
    },

    /** The earliest pending expiry or scheduled start: the scheduler wakes for it. */
    nextTimingDue: () => timingStore.nextTimingDue(store.db),
  };
}

export type RequestTiming = ReturnType<typeof createRequestTiming>;
