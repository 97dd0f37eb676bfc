/**
 * A burst under way, told by the work that makes it to background work that can wait: the scheduler's expiries
 * (one full batch after another, a wave of activations due at once) hold the audit sequencer's next pass, so the
 * wave's ending transactions have this process and the database to themselves and their events are chained
 * right after it. Who waits bounds its own wait (`heldFor`): a burst that goes on longer does not starve it.
 */
export interface BurstHold {
  /** The burst goes on for at least `ms` more (from now). */
  hold(ms: number): void;
  /** Until when (epoch ms) the burst is known to go on; in the past when none is under way. */
  until(): number;
}

export function createBurstHold(): BurstHold {
  let until = Number.NEGATIVE_INFINITY;
  return {
    hold(ms) {
      until = Math.max(until, Date.now() + ms);
    },
    until: () => until,
  };
}

/**
 * Waits while `burst` is under way, `maxMs` at most from the moment this waiter first saw it (later calls during
 * the same burst return at once once that is spent); `stopped` ends the wait early. Returns the waiter to call
 * before each piece of work.
 */
export function burstWaiter(burst: Pick<BurstHold, "until">, maxMs: number, stopped: () => boolean) {
  let heldSince: number | undefined;
  return async function waitOutBurst(): Promise<void> {
    for (;;) {
      const at = Date.now();
      const until = burst.until();
      if (until <= at) {
        heldSince = undefined;
        return;
      }
      heldSince ??= at;
      const left = Math.min(until - at, heldSince + maxMs - at);
      if (left <= 0 || stopped()) return;
      // In slices, so a stop is not kept waiting.
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, SLICE_MS)));
    }
  };
}

const SLICE_MS = 50;
