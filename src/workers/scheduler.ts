/**
 * The scheduler: ends activations at their expiry and applies approval-stage
 * timeouts. It polls often (sub-second); rows are claimed with SKIP LOCKED, so
 * any number of nodes may run it without doing the same work twice, and after
 * a restart the first pass ends everything overdue.
 *
 * Overdue work is ended in bounded transactions, and a transaction that fails makes the next one
 * smaller (halved, down to one row; doubled back after each success). A transaction commits all or
 * nothing: when the store keeps losing connections (terminated backends, a failover, a flaky network)
 * one longer than the gap between two losses never commits, the backlog grows while it retries, and
 * the next one is longer still. Both nodes then stall together (SKIP LOCKED hands the whole backlog
 * to one of them) until the losses stop: seen in the store chaos test, when each end cost ~10
 * statements, as 45 activations ending 53 s late in one commit under load. Halving always makes progress.
 */
import { failpoint } from "../lib/failpoints.js";
import type { Logger } from "../lib/logger.js";
import { shrinkingBatch } from "../lib/shrinking-batch.js";
import type { RequestService } from "../modules/requests/requests.service.js";

export interface Scheduler {
  /** One pass: expiries, then stage deadlines, until nothing more is due. */
  runOnce(): Promise<{ expired: number; timedOut: number; eligibilitiesEnded: number }>;
  start(): void;
  stop(): Promise<void>;
}

export function createScheduler(deps: {
  requests: Pick<RequestService, "expireDue" | "processDeadlines" | "reportEndedEligibilities" | "warnExpiring">;
  /** Queues a reconcile of every target once per interval (the outbox runs it, on whichever node claims it). */
  reconcile?: { intervalMs: number; schedule: (intervalMs: number) => Promise<number> };
  /** Checks in vault check-outs that reached their end. */
  checkouts?: { returnExpired: (limit?: number) => Promise<number> };
  /** Rotates secrets whose rotation is due (after a break-glass reveal). */
  rotations?: { rotateDue: (limit?: number) => Promise<number> };
  logger?: Pick<Logger, "error" | "info">;
  pollMs?: number;
  /** Rows a pass handles at most in each of the other steps (warnings, eligibility ends, check-ins, rotations). */
  batchSize?: number;
  /** Activations or stage deadlines one transaction ends at most (fewer after a failed one; it loops until done). */
  endBatchSize?: number;
}): Scheduler {
  const pollMs = deps.pollMs ?? 250;
  const batch = deps.batchSize ?? 100;
  const expiries = shrinkingBatch(deps.endBatchSize ?? DEFAULT_EXPIRY_BATCH);
  const deadlines = shrinkingBatch(deps.endBatchSize ?? DEFAULT_DEADLINE_BATCH);
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  let lastReconcileSlot = -1;

  async function runOnce() {
    let expired = 0;
    let timedOut = 0;
    for (;;) {
      const n = await expiries.run((limit) => deps.requests.expireDue(limit));
      if (n.done > 0) await failpoint("scheduler.expiry.after-commit");
      expired += n.done;
      if (n.done < n.limit) break;
    }
    for (;;) {
      const n = await deadlines.run((limit) => deps.requests.processDeadlines(limit));
      timedOut += n.done;
      if (n.done < n.limit) break;
    }
    const eligibilitiesEnded = await deps.requests.reportEndedEligibilities(batch);
    await deps.requests.warnExpiring(batch);
    await deps.checkouts?.returnExpired(batch);
    // A sealed vault cannot rotate: that waits for the unseal, without failing the rest of the pass.
    await deps.rotations?.rotateDue(batch).catch(() => 0);
    if (deps.reconcile && deps.reconcile.intervalMs > 0) {
      const slot = Math.floor(Date.now() / deps.reconcile.intervalMs);
      if (slot !== lastReconcileSlot) {
        await deps.reconcile.schedule(deps.reconcile.intervalMs);
        lastReconcileSlot = slot;
      }
    }
    return { expired, timedOut, eligibilitiesEnded };
  }

  function tick() {
    if (!running) return;
    inFlight = runOnce()
      .then((r) => {
        if (r.expired + r.timedOut + r.eligibilitiesEnded > 0) deps.logger?.info(r, "scheduler pass");
      })
      .catch((error: unknown) =>
        deps.logger?.error(
          { err: error, nextEndBatch: { expiries: expiries.current(), deadlines: deadlines.current() } },
          "scheduler pass failed",
        ),
      )
      .finally(() => {
        if (running) timer = setTimeout(tick, pollMs);
      });
  }

  return {
    runOnce,
    start() {
      if (running) return;
      running = true;
      tick();
    },
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      await inFlight;
    },
  };
}

/**
 * Activations one expiry transaction ends at most by default. Ending is set-based (`endActivations`: six round
 * trips whatever the number, ~130 ms for 500 on a loaded host), so a large batch is short; bench/expiry.bench.ts
 * measured 16 per transaction far too slow for a wave of 10,000 (p99 13 s against 2.5 s at 500).
 */
const DEFAULT_EXPIRY_BATCH = 500;
/** Stage deadlines are still applied one row at a time (several statements each): fewer per transaction. */
const DEFAULT_DEADLINE_BATCH = 16;

export { shrinkingBatch };
