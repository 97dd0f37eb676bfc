/**
 * The background audit sequencer: chains committed events (`audit_pending` → `audit_events`) in
 * batches, off the business transactions' critical path — the design of Trillian's log signer and
 * Certificate Transparency's merge delay.
 *
 * One runs per cluster: every node runs this loop, and only the holder of the lease row
 * (`audit_sequencer`, renewed every third of its TTL against the database's clock) chains in the
 * background; when the holder dies its lease runs out and the next node to try takes over. The lease
 * is for efficiency, not correctness: a chaining pass writes in one statement that moves the chain head
 * only if it is still the head the pass read (two passes never both chain), and a pending row leaves
 * `audit_pending` in the statement that chains it, so a crash at any moment loses nothing and chains
 * nothing twice.
 *
 * It wakes when an event commits. The leader's own appends wake it directly (a nudge once the appending
 * transaction committed, `gatherMs` after the first append since its last look, `streamGatherMs` while they
 * stream, so that a stream of small commits is chained many at a time rather than a pass each). A node that
 * does not hold the lease tells the leader over LISTEN/NOTIFY (PostgreSQL):
 * after its own commit, in a statement of its own, at most one NOTIFY per `wakeGapMs` however many events it
 * appends — never a pg_notify inside the audited transaction: PostgreSQL serializes the commits of every
 * transaction that sent a NOTIFY (a database-wide lock in PreCommit_Notify), the very contention this takes
 * away. Only the leader listens. A wake that is lost (the listening connection down, a NOTIFY sent while the
 * lease changed hands) is caught by the idle poll, every `pollMs`; on PGlite (one process) the nudge is all.
 * Any user of the database may NOTIFY the channel; the store delivers only those sent by Stint's own role, and
 * reports as unverified one whose sender exited before it could be checked (it may have been a lost wake). Only
 * an unverified wake right after a look that found nothing waits out `wakeGapMs`, so a flood of them costs the
 * leader one look per gap; this node's own appends and verified wakes are looked at at once.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Logger } from "../../lib/logger.js";
import type { AppStore } from "../../db/index.js";
import { burstWaiter, type BurstHold } from "../../lib/burst-hold.js";
import { shrinkingBatch } from "../../lib/shrinking-batch.js";
import type { AuditLog, ChainResult } from "./audit.service.js";
import * as auditStore from "./audit.store.js";

export interface AuditSequencer {
  start(): void;
  /** Stops the loop after the pass in flight and gives the lease up (a node shutting down cleanly). */
  stop(): Promise<void>;
  /** True while this node holds the lease. */
  isLeader(): boolean;
}

export interface AuditSequencerOptions {
  audit: Pick<AuditLog, "chainPending" | "pendingStats" | "anyPending" | "onPending" | "sequencing">;
  lease: {
    take(holder: string, ttlMs: number): Promise<boolean>;
    release(holder: string): Promise<void>;
  };
  /** This node's name in the lease row. */
  holder: string;
  registry?: Registry | undefined;
  logger?: Pick<Logger, "info" | "warn" | "error"> | undefined;
  /**
   * Wakes between nodes (`storeWakes`): the leader listens, the others send. Without it (PGlite, one
   * process) only this node's own appends wake the sequencer.
   */
  wakes?: AuditWakes | undefined;
  /** Poll interval while idle, the fallback for a lost wake (default `DEFAULT_POLL_MS`). */
  pollMs?: number;
  /**
   * At least this long between two wakes this node sends the leader, and on the leader between a look that
   * found nothing and the next look an unverified wake starts (default 5 ms).
   */
  wakeGapMs?: number;
  /**
   * From the leader's own first append since its last look to the look that chains it (default
   * `DEFAULT_GATHER_MS`): the appends that commit meanwhile go in the same pass. Under a stream of small
   * commits (grouped secret reads) a pass each cost the database about as much again as the appends.
   */
  gatherMs?: number;
  /**
   * The window while the leader's own appends stream (default `DEFAULT_STREAM_GATHER_MS`; never less than
   * `gatherMs`): when the first append after a look's window comes within this long of that window's end,
   * the next window is this long too. A pass has a fixed cost (its statement, the head's update, a commit) that
   * a stream of small commits pays once per window; an isolated commit still waits `gatherMs` only.
   */
  streamGatherMs?: number;
  /** Lease TTL (default 5 s): a dead holder is replaced within about this long. */
  leaseMs?: number;
  /** Events per chaining transaction (default 2000). */
  batch?: number;
  /** Unchained for longer than this raises the alert (log error + `stint_audit_lag_alerts_total`). Default 30 s. */
  alertAfterMs?: number;
  now?: () => number;
  /**
   * A burst of appends this node's scheduler is making (a wave of expiries): the leader holds its next pass
   * while it goes on, `burstHoldMs` at most (default 2 s), and chains it right after.
   */
  burst?: Pick<BurstHold, "until"> | undefined;
  burstHoldMs?: number;
}

/** Wakes between nodes: the leader listens, a node that appends and does not sequence sends. */
export interface AuditWakes {
  /**
   * Calls `onWake` at every wake sent by Stint's role (and when the listening connection is back: wakes may be
   * lost), `onUnverified` at one whose sender could not be checked (by default `onWake`).
   */
  listen(onWake: () => void, onUnverified?: () => void): Promise<() => Promise<void>>;
  /** Tells whichever node sequences that this one appended; its own statement, after the append committed. */
  send(): Promise<void>;
}

/** What woke the sequencer: "unverified" is a NOTIFY whose sender could not be checked. */
type Wake = "verified" | "unverified";

/** The idle poll: only a lost wake waits for it. */
export const DEFAULT_POLL_MS = 250;
/** How long a burst (`burst`) holds the chaining at most: the wave's events are chained this much later at worst. */
export const DEFAULT_BURST_HOLD_MS = 2000;
/** From an append's commit to the look that finds it: lets a burst of appends wake once. */
const NUDGE_MS = 2;
/** The leader's `gatherMs` by default: an event is chained this much later at most for it. */
export const DEFAULT_GATHER_MS = 10;
/**
 * The leader's `streamGatherMs` by default: while its own appends stream, an event waits this much at most
 * for its pass to start (issue 14: chaining lag p99 ≤ 100 ms leaves room for it and the pass).
 */
export const DEFAULT_STREAM_GATHER_MS = 25;

function metric<M>(registry: Registry | undefined, name: string, create: (registers: Registry[]) => M): M {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as M;
  return create(registry ? [registry] : []);
}

export function createAuditSequencer(options: AuditSequencerOptions): AuditSequencer {
  const { audit, lease, holder, registry } = options;
  const { wakes } = options;
  const pollMs = options.pollMs ?? DEFAULT_POLL_MS;
  const wakeGapMs = options.wakeGapMs ?? 5;
  const gatherMs = options.gatherMs ?? DEFAULT_GATHER_MS;
  const streamGatherMs = Math.max(gatherMs, options.streamGatherMs ?? DEFAULT_STREAM_GATHER_MS);
  const leaseMs = options.leaseMs ?? 5000;
  const passes = shrinkingBatch(options.batch ?? 2000);
  const alertAfterMs = options.alertAfterMs ?? 30_000;
  const lagCheckMs = Math.min(5000, Math.max(100, alertAfterMs / 2));
  const now = options.now ?? Date.now;
  const logger = options.logger ?? { info: () => undefined, warn: () => undefined, error: () => undefined };

  const lag = metric(
    registry,
    "stint_audit_chaining_lag_seconds",
    (registers) =>
      new Histogram({
        name: "stint_audit_chaining_lag_seconds",
        help: "From an audit event's time (in its transaction) to its chaining by the sequencer.",
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
        registers,
      }),
  );
  const rejectedTotal = metric(
    registry,
    "stint_audit_rejected_events_total",
    (registers) =>
      new Counter({
        name: "stint_audit_rejected_events_total",
        help: "Unchained audit rows whose integrity check failed (not written by a Stint node); each is recorded in the chain.",
        registers,
      }),
  );
  const alerts = metric(
    registry,
    "stint_audit_lag_alerts_total",
    (registers) =>
      new Counter({
        name: "stint_audit_lag_alerts_total",
        help: "Times the oldest unchained audit event was older than the configured limit.",
        registers,
      }),
  );
  // Set by the lag watch (every few seconds, on every node), never read at scrape time: a scrape must not
  // cost a database read (STINT_METRICS_REFRESH decides how often those happen).
  const unchained = metric(
    registry,
    "stint_audit_unchained_events",
    (registers) =>
      new Gauge({
        name: "stint_audit_unchained_events",
        help: "Audit events committed and not chained yet.",
        registers,
      }),
  );
  const unchainedAge = metric(
    registry,
    "stint_audit_unchained_age_seconds",
    (registers) =>
      new Gauge({
        name: "stint_audit_unchained_age_seconds",
        help: "Age of the oldest audit event committed and not chained yet (0 when none waits).",
        registers,
      }),
  );

  let running = false;
  let leader = false;
  let leaseCheckedAt = 0;
  let wake: ((kind: Wake) => void) | undefined;
  /** A wake that came while no sleep waited for it (a pass in flight): the next sleep ends at once. */
  let woken: Wake | undefined;
  /** Wakes so far, a counter; `pokesSeen`: its value when the last pass started, `lastFull`: that pass was full. */
  let pokes = 0;
  let pokesSeen = 0;
  let lastFull = false;
  let nudgeTimer: NodeJS.Timeout | undefined;
  /** When the leader's last gather window ended (its look asked for). */
  let gatheredAt = Number.NEGATIVE_INFINITY;
  let loop: Promise<void> | undefined;
  let alerting = false;
  let lastAlertAt = 0;
  let stopListening: (() => Promise<void>) | undefined;
  let listenTriedAt = Number.NEGATIVE_INFINITY;
  let sending = false;
  let sendAgain = false;
  let sentAt = Number.NEGATIVE_INFINITY;
  const waitOutBurst = options.burst
    ? burstWaiter(options.burst, options.burstHoldMs ?? DEFAULT_BURST_HOLD_MS, () => !running)
    : async () => undefined;

  /** Wakes the loop: "verified" (this node's appends, Stint's NOTIFYs, a listener back) or "unverified". */
  function poke(kind: Wake = "verified") {
    pokes++;
    if (wake) wake(kind);
    else if (woken !== "verified") woken = kind;
  }

  /**
   * This node appended (and committed): wake the loop if it sequences, else the node that does. The leader
   * gathers first: `gatherMs`, or `streamGatherMs` when this append follows the last window closely (a stream).
   */
  function nudge() {
    if (!running || nudgeTimer) return;
    const at = Date.now();
    const delay = leader
      ? at - gatheredAt < streamGatherMs
        ? streamGatherMs
        : gatherMs
      : Math.max(NUDGE_MS, sentAt + wakeGapMs - at);
    nudgeTimer = setTimeout(() => {
      nudgeTimer = undefined;
      if (leader) {
        gatheredAt = Date.now();
        poke();
      } else void sendWake();
    }, delay);
  }

  async function sendWake() {
    if (!wakes || !running) return;
    if (sending) {
      sendAgain = true;
      return;
    }
    sending = true;
    sentAt = Date.now();
    try {
      await wakes.send();
    } catch {
      // The store is unreachable: the leader's poll finds the events (the append itself may have failed).
    } finally {
      sending = false;
    }
    if (sendAgain) {
      sendAgain = false;
      nudge();
    }
  }

  audit.onPending(nudge);

  /**
   * Sleeps `ms`, or less when woken (by a verified wake only, with `verifiedOnly`: an unverified one then is
   * absorbed, the look after the sleep covers it); the kind of wake that ended it, undefined when none did.
   */
  const sleep = (ms: number, verifiedOnly = false) =>
    new Promise<Wake | undefined>((resolve) => {
      if (woken && !(verifiedOnly && woken === "unverified")) {
        const kind = woken;
        woken = undefined;
        resolve(kind);
        return;
      }
      woken = undefined;
      const timer = setTimeout(() => done(undefined), ms);
      function done(kind: Wake | undefined) {
        clearTimeout(timer);
        wake = undefined;
        resolve(kind);
      }
      wake = (kind) => {
        if (!(verifiedOnly && kind === "unverified")) done(kind);
      };
    });

  /** The leader listens for other nodes' wakes; a node that is not stops. A failed LISTEN is tried again with the lease. */
  async function followWakes(): Promise<void> {
    if (!wakes) return;
    if (leader && !stopListening) {
      if (now() - listenTriedAt < leaseMs / 3) return;
      listenTriedAt = now();
      try {
        stopListening = await wakes.listen(
          () => poke("verified"),
          () => poke("unverified"),
        );
        // Events another node appended before this one listened: look now.
        poke();
      } catch (error) {
        logger.warn(
          { err: error instanceof Error ? error.message : String(error), pollMs },
          "audit sequencer cannot listen for other nodes' appends; it polls meanwhile",
        );
      }
    } else if (!leader && stopListening) await unlisten();
  }

  async function unlisten(): Promise<void> {
    const stop = stopListening;
    stopListening = undefined;
    listenTriedAt = Number.NEGATIVE_INFINITY;
    await stop?.().catch(() => undefined);
  }

  /** The leader's renewal of its lease, when one runs beside its passes. */
  let renewal: Promise<boolean> | undefined;

  async function takeLease(at: number): Promise<boolean> {
    const had = leader;
    try {
      leader = await lease.take(holder, leaseMs);
    } catch (error) {
      // Without the store we cannot tell whether we still hold it: stop chaining until we know.
      leader = false;
      logger.warn({ err: error instanceof Error ? error.message : String(error) }, "audit sequencer lease unreachable");
    }
    leaseCheckedAt = at;
    if (leader && !had) logger.info({ holder }, "this node sequences the audit log");
    if (!leader && had) logger.warn({ holder }, "this node lost the audit sequencer lease");
    return leader;
  }

  /**
   * Whether this node sequences. The leader renews every third of the TTL, beside its passes while a third of
   * the TTL is left (a round trip queued behind the writers' would hold up every event waiting for the next
   * pass); a pass never counts on the lease, it writes only over the head it read.
   */
  async function holdLease(): Promise<boolean> {
    const at = now();
    if (leader && at - leaseCheckedAt < leaseMs / 3) return true;
    if (leader && at - leaseCheckedAt < (2 * leaseMs) / 3) {
      renewal ??= takeLease(at).finally(() => (renewal = undefined));
      return true;
    }
    return renewal ?? takeLease(at);
  }

  async function checkLag(): Promise<void> {
    const { count, oldest } = await audit.pendingStats();
    const age = oldest ? Math.max(0, now() - oldest.getTime()) : 0;
    unchained.set(count);
    unchainedAge.set(age / 1000);
    if (age > alertAfterMs) {
      if (!alerting || now() - lastAlertAt > 60_000) {
        alerts.inc();
        lastAlertAt = now();
        logger.error(
          { ageSeconds: Math.round(age / 1000) },
          "audit events are waiting longer than allowed to be chained",
        );
      }
      alerting = true;
    } else alerting = false;
  }

  /** When the leader last looked (a read or a pass) and found nothing to chain. */
  let foundNothingAt = Number.NEGATIVE_INFINITY;
  /**
   * The leader's wait for a wake: the poll at most, and never past the lease's renewal. An unverified wake
   * within `wakeGapMs` of a look that found nothing waits out the gap (a verified wake ends that wait): anyone
   * who may connect can make NOTIFYs whose senders are gone before they are checked, and a flood of them costs
   * one look per gap, not a chaining pass each. True when a wake ended the wait.
   */
  const idleSleep = async () => {
    const renewDue = renewal ? pollMs : leaseCheckedAt + leaseMs / 3 - now();
    const kind = await sleep(Math.min(pollMs, Math.max(1, renewDue)));
    const wait = foundNothingAt + wakeGapMs - Date.now();
    if (kind === "unverified" && wait > 0 && running) await sleep(wait, true);
    return kind !== undefined;
  };

  let lagCheck: Promise<void> | undefined;

  async function run(): Promise<void> {
    let lastLagCheck = 0;
    let idle = false;
    while (running) {
      try {
        // Every node watches the lag, leader or not: a cluster where nobody chains must raise the alert.
        // Beside the passes, as the renewal: not one round trip more in front of the events waiting.
        if (now() - lastLagCheck > lagCheckMs && !lagCheck) {
          lastLagCheck = now();
          lagCheck = checkLag()
            .catch((error: unknown) =>
              logger.warn({ err: error instanceof Error ? error.message : String(error) }, "audit lag check failed"),
            )
            .finally(() => (lagCheck = undefined));
        }
        const leading = await holdLease();
        await followWakes();
        if (!leading) {
          await sleep(leaseMs / 3);
          continue;
        }
        // A wave of expiries ending: their transactions first (their lateness counts), the chaining right after.
        await waitOutBurst();
        // Idle, a poll is one cheap read; the chaining transaction only when something waits.
        if (idle && !(await audit.anyPending())) {
          foundNothingAt = Date.now();
          idle = !(await idleSleep());
          continue;
        }
        // All or nothing per pass: a pass cut by a lost connection is retried half as large, so a burst's
        // backlog drains even when the store drops connections faster than a full pass commits.
        let result: ChainResult = { chained: 0, rejected: 0, times: [] };
        // The pending rows the last pass read with its move serve this one, unless a wake came since it started
        // and it was not full: that wake covers commits its read may have missed (they would wait for the poll).
        const fresh = pokes !== pokesSeen && !lastFull;
        pokesSeen = pokes;
        const { limit } = await passes.run(async (n) => {
          result = await audit.chainPending(undefined, n, fresh);
          return result.chained + result.rejected;
        });
        lastFull = result.chained + result.rejected >= limit;
        idle = result.chained + result.rejected === 0;
        if (idle) foundNothingAt = Date.now();
        const at = now();
        // A batch's events share their time (group commit): each distinct time parsed once.
        let time: string | undefined;
        let seconds = 0;
        for (const next of result.times) {
          if (next !== time) seconds = Math.max(0, (at - Date.parse((time = next))) / 1000);
          lag.observe(seconds);
        }
        if (result.rejected > 0) {
          rejectedTotal.inc(result.rejected);
          logger.error(
            { rejected: result.rejected },
            "unchained audit rows failed their integrity check and were not chained (recorded as audit.pending_rejected)",
          );
        }
        // A full batch: more is waiting; go on at once. Woken, something committed: chain it without asking.
        if (result.chained + result.rejected < limit && (await idleSleep())) idle = false;
      } catch (error) {
        logger.warn({ err: error instanceof Error ? error.message : String(error) }, "audit chaining pass failed");
        await sleep(Math.max(pollMs, 500));
      }
    }
  }

  return {
    start() {
      if (running || audit.sequencing !== "background") return;
      running = true;
      loop = run();
    },
    async stop() {
      if (!running) return;
      running = false;
      if (nudgeTimer) clearTimeout(nudgeTimer);
      nudgeTimer = undefined;
      wake?.("verified");
      await loop;
      await Promise.all([renewal, lagCheck]);
      await unlisten();
      if (leader) {
        leader = false;
        await lease.release(holder).catch(() => undefined);
      }
    },
    isLeader: () => leader,
  };
}

/** Wakes over LISTEN/NOTIFY on PostgreSQL; none on PGlite (one process: this node's own appends are all). */
export function storeWakes(store: Pick<AppStore, "db" | "engine" | "listen">): AuditWakes | undefined {
  if (store.engine !== "postgres") return undefined;
  return {
    listen: (onWake, onUnverified = onWake) =>
      store.listen(auditStore.WAKE_CHANNEL, onWake, { onReconnect: onWake, onUnverified }),
    send: () => auditStore.sendWake(store.db),
  };
}

/** The lease in the store's `audit_sequencer` row. */
export function storeLease(store: Pick<AppStore, "db">): AuditSequencerOptions["lease"] {
  return {
    take: (holder, ttlMs) => auditStore.takeLease(store.db, holder, ttlMs),
    release: (holder) => auditStore.releaseLease(store.db, holder),
  };
}
