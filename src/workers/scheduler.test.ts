/**
 * The scheduler's expiry under a store that keeps losing connections (issue 13: the store chaos test saw
 * every activation of a backlog end 20–50 s late on both nodes under load). A model store, no clock: each
 * statement counts, every `LOSS_EVERY` statements the connection is lost, and a transaction in flight then
 * fails with nothing committed (PostgreSQL's 57P01, as pg_terminate_backend gives). Ending one activation
 * costs `PER_END` statements (as it did before ending became set-based; set-based, a transaction still
 * grows with its rows, only more slowly), so a transaction's length grows with the rows it ends.
 */
import { describe, expect, it } from "vitest";
import { isStoreUnavailable } from "../lib/db.js";
import { createScheduler, shrinkingBatch } from "./scheduler.js";

const LOSS_EVERY = 400;
const PER_END = 10;

function terminated(): Error {
  return Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
}

/** Due activations as a store that loses its connection every LOSS_EVERY statements would end them. */
function lossyStore(initialBacklog: number) {
  let statements = 0;
  let due = initialBacklog;
  let ended = 0;
  let failed = 0;
  /** Runs a transaction of `cost` statements: it commits unless a connection loss falls inside it. */
  const transaction = (cost: number) => {
    const nextLoss = (Math.floor(statements / LOSS_EVERY) + 1) * LOSS_EVERY;
    if (statements + cost >= nextLoss) {
      statements = nextLoss;
      failed += 1;
      throw terminated();
    }
    statements += cost;
  };
  return {
    requests: {
      async expireDue(limit = 100) {
        const n = Math.min(limit, due);
        transaction(2 + n * PER_END);
        due -= n;
        ended += n;
        return n;
      },
      async processDeadlines() {
        transaction(1);
        return 0;
      },
      async reportEndedEligibilities() {
        transaction(1);
        return 0;
      },
      async warnExpiring() {
        transaction(1);
        return 0;
      },
    },
    /** Activations keep reaching their end while the scheduler works. */
    expireMore: (n: number) => (due += n),
    stats: () => ({ due, ended, failed }),
  };
}

describe("scheduler expiry while the store keeps losing connections", () => {
  it("ends a backlog larger than one transaction can carry between two losses, and keeps up with new expiries", async () => {
    // 50 overdue: ending them in one transaction (500 statements) spans a loss, every time.
    const store = lossyStore(50);
    // The server's setting (500 per transaction) at most: the batch is whatever the backlog is.
    const scheduler = createScheduler({ requests: store.requests });
    for (let pass = 0; pass < 100; pass++) {
      store.expireMore(2);
      await scheduler.runOnce().catch((error: unknown) => {
        // A pass fails only because the store went away, and tries again at the next one.
        if (!isStoreUnavailable(error)) throw error;
      });
    }
    const { due, ended, failed } = store.stats();
    expect(failed).toBeGreaterThan(0);
    // Everything that was due by the last pass has ended (what the last two passes added may wait for the next).
    expect(ended).toBeGreaterThanOrEqual(50 + 2 * 100 - 4);
    expect(due).toBeLessThanOrEqual(4);
  });

  it("halves the rows per transaction after a failed one, down to one, and doubles them back after a commit", async () => {
    const batch = shrinkingBatch(16);
    const fail = () => Promise.reject(terminated());
    const sizes: number[] = [];
    for (let i = 0; i < 6; i++) {
      await batch.run(fail).catch(() => undefined);
      sizes.push(batch.current());
    }
    expect(sizes).toEqual([8, 4, 2, 1, 1, 1]);
    const asked: number[] = [];
    for (let i = 0; i < 6; i++)
      await batch.run(async (limit) => {
        asked.push(limit);
        return limit;
      });
    expect(asked).toEqual([1, 2, 4, 8, 16, 16]);
    expect(() => shrinkingBatch(0)).toThrow(RangeError);
  });
});
