/**
 * The reads' group commit: steady callers who come back a moment after their answer share one batch
 * instead of splitting into two halves that take turns (what cost a statement and a commit per half), a
 * caller that does not come back holds nobody for good, and no call is answered before its batch committed.
 */
import { describe, expect, it } from "vitest";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { createAuditBatcher } from "./audit-batch.js";

const actor = { kind: "user", name: "reader" } as unknown as Actor;
const context = { correlationId: "c" } as unknown as CallContext;
const event = { action: "secret.read", outcome: "success" as const, subject: "secret:a" };
const turns = (n: number) =>
  Array.from({ length: n }).reduce<Promise<void>>(
    (p) => p.then(() => new Promise<void>((resolve) => setImmediate(resolve))),
    Promise.resolve(),
  );

/** A batcher over a fake audit log whose commits take `commitMs`; records each batch's size and end. */
function fakeBatcher(options: { commitMs: number; holdMs?: number }) {
  const sizes: number[] = [];
  const committed = new Set<number>();
  let next = 0;
  const batcher = createAuditBatcher({
    store: { db: {} as never, transaction: () => Promise.reject(new Error("no transaction expected")) },
    audit: {
      sequencing: "background",
      appendManyWhere: () => Promise.reject(new Error("no copies here")),
      async appendMany(_db, calls) {
        const batch = next++;
        sizes.push(calls.length);
        await new Promise((resolve) => setTimeout(resolve, options.commitMs));
        committed.add(batch);
        return [];
      },
    },
    ...(options.holdMs === undefined ? {} : { holdMs: options.holdMs }),
  });
  return { batcher, sizes, committed, batchesStarted: () => next };
}

/** `readers` callers each recording `rounds` times, coming back 0–3 event-loop turns after each answer. */
async function steadyReaders(batcher: ReturnType<typeof fakeBatcher>["batcher"], readers: number, rounds: number) {
  await Promise.all(
    Array.from({ length: readers }, async (_, i) => {
      for (let r = 0; r < rounds; r++) {
        await batcher.record(actor, context, event);
        await turns((i + r) % 4);
      }
    }),
  );
}

describe("group commit of the reads' audit events", () => {
  it("keeps steady readers in one batch instead of halves taking turns", async () => {
    const held = fakeBatcher({ commitMs: 4 });
    await steadyReaders(held.batcher, 16, 12);
    const unheld = fakeBatcher({ commitMs: 4, holdMs: 0 });
    await steadyReaders(unheld.batcher, 16, 12);
    const mean = (sizes: number[]) => sizes.reduce((a, b) => a + b, 0) / sizes.length;
    // 192 reads each way: with the hold nearly every batch has all 16; without it they split.
    expect(mean(held.sizes.slice(2))).toBeGreaterThan(12);
    expect(mean(unheld.sizes.slice(2))).toBeLessThan(mean(held.sizes.slice(2)));
  });

  it("sends the waiting calls when a caller does not come back, and answers none before its commit", async () => {
    const { batcher, committed, batchesStarted } = fakeBatcher({ commitMs: 4 });
    await Promise.all(Array.from({ length: 8 }, () => batcher.record(actor, context, event)));
    // Seven of the eight come back; the eighth never does. Each answer comes after its batch committed.
    const again = Array.from({ length: 7 }, () =>
      batcher.record(actor, context, event).then(() => {
        expect(committed.has(batchesStarted() - 1)).toBe(true);
        return true;
      }),
    );
    expect(await Promise.all(again)).toEqual(Array(7).fill(true));
    expect(batcher.stats()).toMatchObject({ batches: 2, events: 15, waiting: 0, inFlight: 0 });
  });

  it("fails every call of a batch whose commit fails", async () => {
    const batcher = createAuditBatcher({
      store: { db: {} as never, transaction: () => Promise.reject(new Error("no transaction expected")) },
      audit: {
        sequencing: "background",
        appendManyWhere: () => Promise.reject(new Error("no copies here")),
        appendMany: () => Promise.reject(new Error("the store refused the audit write")),
      },
    });
    const calls = Array.from({ length: 3 }, () => batcher.record(actor, context, event));
    for (const call of calls) await expect(call).rejects.toThrow(/refused/);
  });
});
