/**
 * The reviews worker: a small periodic pass of its own (recurring campaigns opened, reminders sent, missed items
 * applied at the due date). Each pass is idempotent and safe on many nodes (the service claims rows with
 * SKIP LOCKED under the catalog lock); a failed pass is logged and retried at the next tick.
 */
import type { Logger } from "../lib/logger.js";

export interface ReviewsWorker {
  start(): void;
  stop(): Promise<void>;
  runOnce(): Promise<{ opened: number; reminded: number; applied: number }>;
}

export function createReviewsWorker(deps: {
  reviews: { runOnce(): Promise<{ opened: number; reminded: number; applied: number }> };
  logger: Pick<Logger, "info" | "error">;
  pollMs: number;
}): ReviewsWorker {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let stopped = true;

  async function tick() {
    try {
      const result = await deps.reviews.runOnce();
      if (result.opened + result.reminded + result.applied > 0) deps.logger.info(result, "access reviews pass");
    } catch (error) {
      deps.logger.error({ err: error }, "access reviews pass failed");
    }
  }

  function schedule() {
    if (stopped) return;
    timer = setTimeout(() => {
      running = tick().finally(schedule);
    }, deps.pollMs);
    timer.unref();
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      schedule();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
    runOnce: () => deps.reviews.runOnce(),
  };
}
