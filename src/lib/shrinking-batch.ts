/**
 * Batch sizes for work that runs in one transaction per batch against a store that may drop connections.
 */

/**
 * A batch size that halves after a failed transaction (down to 1) and doubles back after a committed
 * one (up to `max`): when the store keeps dropping connections it soon reaches a transaction short
 * enough to commit between two losses, so the backlog drains instead of growing.
 */
export function shrinkingBatch(max: number) {
  if (!Number.isInteger(max) || max < 1) throw new RangeError("a batch size must be a positive integer");
  let limit = max;
  return {
    current: () => limit,
    async run(step: (limit: number) => Promise<number>): Promise<{ done: number; limit: number }> {
      const asked = limit;
      try {
        const done = await step(asked);
        limit = Math.min(max, asked * 2);
        return { done, limit: asked };
      } catch (error) {
        limit = Math.max(1, Math.floor(asked / 2));
        throw error;
      }
    },
  };
}
