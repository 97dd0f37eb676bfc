/**
 * The scheduler: ends activations at their expiry and applies approval-stage
 * timeouts. It polls often (sub-second); rows are claimed with SKIP LOCKED, so
 * any number of nodes may run it without doing the same work twice, and after
 * a restart the first pass ends everything overdue.
 */
import { failpoint } from "../lib/failpoints.js";
import type { Logger } from "../lib/logger.js";
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
  batchSize?: number;
}): Scheduler {
  const pollMs = deps.pollMs ?? 250;
  const batch = deps.batchSize ?? 100;
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  let lastReconcileSlot = -1;

  async function runOnce() {
    let expired = 0;
    let timedOut = 0;
    for (;;) {
      const n = await deps.requests.expireDue(batch);
      if (n > 0) await failpoint("scheduler.expiry.after-commit");
      expired += n;
      if (n < batch) break;
    }
    for (;;) {
      const n = await deps.requests.processDeadlines(batch);
      timedOut += n;
      if (n < batch) break;
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
      .catch((error: unknown) => deps.logger?.error({ err: error }, "scheduler pass failed"))
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
