/**
 * Group commit of concurrent calls (issue 14 acceptance 2): calls that arrive while a group's transaction is
 * being committed, or in the same turn of the event loop, are handed to `run` together, which writes them in
 * one transaction with multi-row statements; each caller is answered (or refused) once that transaction ended.
 *
 * No fixed delay: an idle caller goes at the end of the event loop's current turn (`setImmediate`), alone. While
 * a group is in flight, later calls queue and go together as soon as it ends (up to `maxGroup` a group). Only
 * one group is in flight at a time, so a caller waits at most for the group being committed and its own.
 *
 * `run` answers each item: its value (or a promise of it, answered after the group: what the item does alone
 * once the group committed), or its own error (a refusal decided for it alone). When the group's
 * transaction fails as a whole (a unique violation, a deadlock, a lost connection), nothing of it was written,
 * and every item of the group is run again alone (`alone`), so that one item's conflict fails that item only,
 * with its own error, and the others still succeed.
 */

/** One item's answer from a group: a value, or an error that is that item's alone. */
export type Settled<R> = { ok: true; value: R | Promise<R> } | { ok: false; error: unknown };

interface Waiting<I, R> {
  item: I;
  resolve: (value: R | Promise<R>) => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitOptions<I, R> {
  /** Writes the items in one transaction; an answer per item, in order. Throws if nothing was written. */
  run: (items: I[]) => Promise<Settled<R>[]>;
  /** One item alone, as it would run without grouping (after its group failed as a whole). */
  alone: (item: I) => Promise<R>;
  /**
   * Whether two items may not go in one group (the second waits for the next one): items the group's
   * statements would otherwise see conflicting with each other (the same requester and role).
   */
  key?: (item: I) => string;
  /** At most this many items a group (default 64). */
  maxGroup?: number;
}

export function createGroupCommit<I, R>(options: GroupCommitOptions<I, R>) {
  const maxGroup = options.maxGroup ?? 64;
  let queue: Waiting<I, R>[] = [];
  let inFlight = false;
  let scheduled = false;
  let groups = 0;
  let items = 0;
  let retried = 0;

  function schedule() {
    if (scheduled || inFlight || queue.length === 0) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flush();
    });
  }

  /** The next group from the queue: at most `maxGroup`, no two items with one key. */
  function take(): Waiting<I, R>[] {
    if (!options.key && queue.length <= maxGroup) {
      const group = queue;
      queue = [];
      return group;
    }
    const group: Waiting<I, R>[] = [];
    const rest: Waiting<I, R>[] = [];
    const keys = new Set<string>();
    for (const waiting of queue) {
      const key = options.key?.(waiting.item);
      if (group.length >= maxGroup || (key !== undefined && keys.has(key))) rest.push(waiting);
      else {
        if (key !== undefined) keys.add(key);
        group.push(waiting);
      }
    }
    queue = rest;
    return group;
  }

  async function runGroup(group: Waiting<I, R>[]): Promise<void> {
    let answers: Settled<R>[];
    try {
      answers = await options.run(group.map((waiting) => waiting.item));
    } catch (error) {
      if (group.length === 1) {
        group[0]!.reject(error);
        return;
      }
      // Nothing of the group was written: each item alone, so a conflict fails only its own item.
      retried += group.length;
      await Promise.all(group.map((waiting) => options.alone(waiting.item).then(waiting.resolve, waiting.reject)));
      return;
    }
    group.forEach((waiting, i) => {
      const answer = answers[i]!;
      if (answer.ok) waiting.resolve(answer.value);
      else waiting.reject(answer.error);
    });
  }

  function flush() {
    if (inFlight || queue.length === 0) return;
    const group = take();
    inFlight = true;
    groups += 1;
    items += group.length;
    void runGroup(group).finally(() => {
      inFlight = false;
      schedule();
    });
  }

  return {
    /** Runs `item` with the others waiting: resolves with its answer once its group's transaction ended. */
    submit(item: I): Promise<R> {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        schedule();
      });
    },
    /** Groups run, items in them, and items run again alone after their group failed. */
    stats: () => ({ groups, items, retried, waiting: queue.length, inFlight }),
  };
}

export type GroupCommit<I, R> = ReturnType<typeof createGroupCommit<I, R>>;
