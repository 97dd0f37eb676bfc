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
 *
 * Expiries do not wait for the poll: given `expiries`, the scheduler sets a timer at the earliest expiry
 * it knows (read after each pass) and moves it earlier when an activation starts or is extended (the
 * access index's `act` messages, which every node hears); when it fires, the next pass starts at once.
 * The poll stays as the fallback (a missed message, another node's clock, stage deadlines and the rest).
 *
 * Request timing (`timing`): pending requests past their policy's requestTtl expire, and requests approved
 * ahead start when their start time comes; the wake timer is set at the earliest of those and the expiries.
 */
import { failpoint } from "../lib/failpoints.js";
import type { Logger } from "../lib/logger.js";
import { shrinkingBatch } from "../lib/shrinking-batch.js";
import type { RequestService } from "../modules/requests/requests.service.js";
import { earliest } from "../modules/requests/timing.rules.js";

export interface Scheduler {
  /** One pass: expiries, then stage deadlines, until nothing more is due. */
  runOnce(): Promise<{
    expired: number;
    timedOut: number;
    eligibilitiesEnded: number;
    /** Pending requests that expired undecided, and requests approved ahead that started (with `timing`). */
    expiredPending: number;
    started: number;
  }>;
  start(): void;
  stop(): Promise<void>;
}

export function createScheduler(deps: {
  requests: Pick<RequestService, "expireDue" | "processDeadlines" | "reportEndedEligibilities" | "warnExpiring">;
  /** Pending requests' time to live and scheduled starts (see above). */
  timing?: Pick<RequestService, "expirePendingDue" | "startScheduledDue" | "nextTimingDue">;
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
  /** Expiry transactions run at once (default 2; on PGlite's one connection they take turns). */
  expiryLanes?: number;
  /** Wakes the scheduler at the next expiry instead of the next poll (see above). */
  expiries?: {
    /** The earliest expiry of an active activation (read after each pass). */
    next: () => Promise<Date | null>;
    /** Calls `listener` with the expiry (epoch ms) of each activation started or extended; returns an unsubscribe. */
    onActivated: (listener: (expiresAt: number) => void) => () => void;
  };
  /** The clock the timer is set against (epoch ms; default Date.now). */
  now?: () => number;
}): Scheduler {
  const pollMs = deps.pollMs ?? 250;
  const batch = deps.batchSize ?? 100;
  const expiries = shrinkingBatch(deps.endBatchSize ?? DEFAULT_EXPIRY_BATCH);
  const deadlines = shrinkingBatch(deps.endBatchSize ?? DEFAULT_DEADLINE_BATCH);
  const expiryLanes = Math.max(1, deps.expiryLanes ?? DEFAULT_EXPIRY_LANES);
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  let lastReconcileSlot = -1;
  const now = deps.now ?? Date.now;
  /** A pass runs (or is about to): a wake then only asks for another one right after it. */
  let ticking = false;
  let wakeRequested = false;
  let wakeTimer: NodeJS.Timeout | undefined;
  /** When `wakeTimer` fires (epoch ms), Infinity when unset. */
  let wakeAt = Number.POSITIVE_INFINITY;
  let unsubscribe: (() => void) | undefined;
  /** The wake timer fired: the next pass starts at an expiry it knew of, all lanes at once. */
  let expiryDue = false;

  /** Starts a pass now, or right after the one running. */
  function wake() {
    if (!running) return;
    if (ticking) {
      wakeRequested = true;
      return;
    }
    if (timer) clearTimeout(timer);
    timer = undefined;
    tick();
  }

  /**
   * Sets the wake timer at `at` (epoch ms) unless it is set earlier already. Only for an expiry still
   * ahead: one already due that a pass left (rows another node holds, a clock behind) is the poll's, or
   * the scheduler would spin on it.
   */
  function wakeAtExpiry(at: number) {
    if (!running || !(at < wakeAt) || !(at > now())) return;
    if (wakeTimer) clearTimeout(wakeTimer);
    wakeAt = at;
    // A millisecond late: an expiry is due once the clock has reached it. Never longer than a timer holds.
    const delay = Math.min(Math.max(0, at - now() + 1), MAX_TIMER_MS);
    wakeTimer = setTimeout(() => {
      wakeTimer = undefined;
      wakeAt = Number.POSITIVE_INFINITY;
      expiryDue = true;
      wake();
    }, delay);
    wakeTimer.unref?.();
  }

  async function runOnce() {
    let timedOut = 0;
    // Expiries: one batch first; if it was full, the rest in `expiryLanes` transactions at once (rows claimed with
    // SKIP LOCKED: disjoint), so one lane's statements run in the database while another writes its audit events
    // here. An idle pass stays one claim, and once a lane fails the others start no further batch (a failed
    // transaction rolled its rows back: the next pass takes them).
    let failed = false;
    const expireBatch = async () => {
      const n = await expiries.run((limit) => deps.requests.expireDue(limit));
      if (n.done > 0) await failpoint("scheduler.expiry.after-commit");
      return n;
    };
    const lane = async () => {
      let ended = 0;
      try {
        while (!failed) {
          const n = await expireBatch();
          ended += n.done;
          if (n.done < n.limit) break;
        }
      } catch (error) {
        failed = true;
        throw error;
      }
      return ended;
    };
    // Woken at an expiry (a wave may be due at once): every lane starts at once. Else one batch first, so an
    // idle poll stays one claim.
    const atExpiry = expiryDue;
    expiryDue = false;
    const first = atExpiry ? { done: 0, limit: 0 } : await expireBatch();
    let expired = first.done;
    if (first.done >= first.limit) {
      const lanes = await Promise.allSettled(Array.from({ length: expiryLanes }, lane));
      const rejected = lanes.find((l) => l.status === "rejected");
      if (rejected) throw rejected.reason;
      expired += lanes.reduce((sum, l) => sum + (l.status === "fulfilled" ? l.value : 0), 0);
    }
    // One indexed read says whether any pending expiry or start is due: an idle pass then costs one statement,
    // not two claiming transactions (bench/request-timing.bench.ts).
    const timingDue = deps.timing ? await deps.timing.nextTimingDue() : null;
    const timing = timingDue !== null && timingDue.getTime() <= now() ? deps.timing : undefined;
    // A request past its time to live expires before its stage deadline is applied: the earlier limit wins.
    let expiredPending = 0;
    for (;;) {
      const n = timing ? await timing.expirePendingDue(batch) : 0;
      expiredPending += n;
      if (n < batch) break;
    }
    for (;;) {
      const n = await deadlines.run((limit) => deps.requests.processDeadlines(limit));
      timedOut += n.done;
      if (n.done < n.limit) break;
    }
    // Starts come after the stage deadlines (a stage approving on timeout may start its request at once).
    let started = 0;
    for (;;) {
      const n = timing ? await timing.startScheduledDue(batch) : 0;
      started += n;
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
    return { expired, timedOut, eligibilitiesEnded, expiredPending, started };
  }

  function tick() {
    if (!running) return;
    ticking = true;
    wakeRequested = false;
    inFlight = runOnce()
      .then(async (r) => {
        if (r.expired + r.timedOut + r.eligibilitiesEnded + r.expiredPending + r.started > 0)
          deps.logger?.info(r, "scheduler pass");
        // The earliest expiry, pending expiry or start left, read after the pass (what it ended is gone).
        const next = earliest(await deps.expiries?.next(), await deps.timing?.nextTimingDue());
        if (next) wakeAtExpiry(next.getTime());
      })
      .catch((error: unknown) =>
        deps.logger?.error(
          { err: error, nextEndBatch: { expiries: expiries.current(), deadlines: deadlines.current() } },
          "scheduler pass failed",
        ),
      )
      .finally(() => {
        ticking = false;
        if (running) timer = setTimeout(tick, wakeRequested ? 0 : pollMs);
      });
  }

  return {
    runOnce,
    start() {
      if (running) return;
      running = true;
      unsubscribe = deps.expiries?.onActivated((expiresAt) => wakeAtExpiry(expiresAt));
      tick();
    },
    async stop() {
      running = false;
      unsubscribe?.();
      unsubscribe = undefined;
      if (timer) clearTimeout(timer);
      if (wakeTimer) clearTimeout(wakeTimer);
      wakeTimer = undefined;
      wakeAt = Number.POSITIVE_INFINITY;
      await inFlight;
    },
  };
}

/**
 * Activations one expiry transaction ends at most by default. Ending is set-based (a few statements
 * whatever the number), so a large batch is short and the per-transaction costs (BEGIN, COMMIT's flush, the
 * round trips) are shared by more activations; bench/expiry.bench.ts measured 16 per transaction far too slow
 * for a wave of 10,000 (p99 13 s against 2.5 s at 500), and CPU per activation lower at 2,000 than at 500.
 */
const DEFAULT_EXPIRY_BATCH = 1000;
/** Expiry transactions at once: the database ends one batch while this process writes another's events. */
const DEFAULT_EXPIRY_LANES = 2;
/** setTimeout's longest delay (about 24.8 days); a later expiry is re-armed after the next pass. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Stage deadlines are still applied one row at a time (several statements each): fewer per transaction. */
const DEFAULT_DEADLINE_BATCH = 16;

export { shrinkingBatch };
