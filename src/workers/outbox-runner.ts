/**
 * The outbox runner. It claims due rows in short statements (SKIP LOCKED, so any number of runners on any number of
 * nodes share the work), runs their handlers outside any transaction, then records the outcome of each attempt.
 * Started, it claims continuously: whenever a slot is free (at most `concurrency` handlers at once, and at most
 * `laneConcurrency` of one lane — one target, one channel), not when a whole batch has finished, so a slow or dead
 * target never holds up another's jobs. A NOTIFY on its channel (the store delivers only Stint's own role's) claims
 * at once. A wake the store could not verify (its sender exited before the check: anyone can send those) within
 * `wakeGapMs` of a claim that found nothing waits out the gap: a flood of them costs one claim per gap, not one per
 * NOTIFY. Every write after the claim is fenced on (id, status running, attempts), so a worker that lost its lease
 * can never overwrite the row's newer state.
 */
import type { Registry } from "prom-client";
import type { AppStore } from "../db/index.js";
import type { Clock } from "../lib/clock.js";
import { isStoreUnavailable } from "../lib/db.js";
import { failpoint, FailpointCrash } from "../lib/failpoints.js";
import type { Logger } from "../lib/logger.js";
import type { AuditLog } from "../modules/audit/audit.service.js";
import { SYSTEM, type CallContext } from "../modules/authz/authz.types.js";
import {
  assertBackoffPolicy,
  backoffMs,
  decideAfterFailure,
  DEFAULT_BACKOFF,
  outboxStore,
  safeErrorMessage,
  type BackoffPolicy,
  type HandlerContext,
  type OutboxHandlers,
  type OutboxJob,
  type RandomSource,
} from "../modules/outbox/index.js";
import { registerLocalRunner } from "../modules/outbox/outbox.local.js";
import { outboxMetrics } from "./outbox-metrics.js";

export { outboxMetrics };

export interface OutboxRunnerOptions {
  /** With `listen`, a started runner wakes as soon as a due job is committed (NOTIFY), not at its next poll. */
  store: Pick<AppStore, "db" | "transaction"> & Partial<Pick<AppStore, "listen">>;
  clock: Clock;
  handlers: OutboxHandlers;
  audit: Pick<AuditLog, "append">;
  /** Metrics go here, never to the global registry. */
  registry: Registry;
  logger?: Pick<Logger, "info" | "warn" | "error"> | undefined;
  /** Rows claimed per statement at most. */
  batchSize?: number;
  /** Handlers running at once on this runner, all lanes together. */
  concurrency?: number;
  /** Handlers of one lane (`target:<id>`, `channel:<name>`) running at once on this runner. */
  laneConcurrency?: number;
  /** How long a claim holds a row; after that another runner may take it over. */
  leaseMs?: number;
  /**
   * A job run after its enqueuing commit (`runAfterCommit`) is written claimed with this short hold, renewed every
   * third of it while it runs (and until its outcome is written): a node that dies between the commit and the run holds
   * the job this long, not `leaseMs`. Its handler is stopped (signal aborted) when no renewal landed in time, before
   * another runner may take it. Default 5 s.
   */
  aliveMs?: number;
  /** Pause between passes that found less than a full batch. */
  pollMs?: number;
  /** An unverified wake (`onUnverified`: anyone may send one) this soon after a claim that found nothing waits out the rest. */
  wakeGapMs?: number;
  random?: RandomSource;
  backoff?: Partial<BackoffPolicy>;
  /** A handler running longer fails its attempt (and sees its signal aborted). Defaults to leaseMs. */
  handlerTimeoutMs?: number;
}

export type AttemptOutcome = "done" | "retry" | "dead" | "stale" | "error" | "crashed";

export interface RunSummary {
  claimed: number;
  done: number;
  retried: number;
  dead: number;
  /** Outcomes dropped because the lease was lost meanwhile (another runner owns the row now). */
  stale: number;
  /** Outcomes that could not be written (database trouble); the lease will expire and the row rerun. */
  errors: number;
}

export interface OutboxRunner {
  runOnce(): Promise<RunSummary>;
  /** Starts claiming continuously (no-op when running). */
  start(): void;
  /** Stops claiming and resolves once in-flight work has finished and been recorded. */
  stop(): Promise<void>;
}

const NOOP_LOGGER = { info: () => undefined, warn: () => undefined, error: () => undefined };

class AliveLostError extends Error {
  constructor() {
    super(
      "this node could not keep the job alive (renewal refused or not written in time); another runner may take it",
    );
    this.name = "AliveLost";
  }
}

class HandlerTimeoutError extends Error {
  constructor(ms: number) {
    super(`the handler did not finish within ${ms} ms`);
    this.name = "HandlerTimeout";
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`outbox runner ${name} must be a positive integer`);
  return value;
}

export function createOutboxRunner(options: OutboxRunnerOptions): OutboxRunner {
  const { store, clock, handlers, audit } = options;
  const logger = options.logger ?? NOOP_LOGGER;
  const batchSize = positiveInteger("batchSize", options.batchSize ?? 10);
  const concurrency = positiveInteger("concurrency", options.concurrency ?? 32);
  const laneConcurrency = positiveInteger("laneConcurrency", options.laneConcurrency ?? 4);
  const leaseMs = positiveInteger("leaseMs", options.leaseMs ?? 30_000);
  const aliveMs = positiveInteger("aliveMs", options.aliveMs ?? Math.min(5_000, leaseMs));
  const pollMs = positiveInteger("pollMs", options.pollMs ?? 1_000);
  const wakeGapMs = positiveInteger("wakeGapMs", options.wakeGapMs ?? 5);
  const handlerTimeoutMs = positiveInteger("handlerTimeoutMs", options.handlerTimeoutMs ?? leaseMs);
  const random = options.random ?? Math.random;
  const policy: BackoffPolicy = { ...DEFAULT_BACKOFF, ...options.backoff };
  assertBackoffPolicy(policy);
  const metrics = outboxMetrics(options.registry, { store, clock, logger });

  /** Runs the handler with a deadline; the signal tells a cooperative handler to give up. */
  async function runHandler(
    job: OutboxJob,
    timeoutMs = handlerTimeoutMs,
    lost?: AbortSignal,
    done?: HandlerContext["done"],
  ): Promise<void> {
    if (!Object.hasOwn(handlers, job.kind)) throw new Error(`no handler for outbox kind "${job.kind}"`);
    const handler = handlers[job.kind]!;
    if (lost?.aborted) throw lost.reason as Error;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let timedOut: HandlerTimeoutError | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = new HandlerTimeoutError(timeoutMs);
        reject(timedOut);
        controller.abort(timedOut);
      }, timeoutMs);
      // Kept alive by this node and that failed: stop before another runner may start it.
      lost?.addEventListener(
        "abort",
        () => {
          reject(lost.reason as Error);
          controller.abort(lost.reason);
        },
        { once: true },
      );
    });
    try {
      await Promise.race([
        handler(job.payload, {
          jobId: job.id,
          idempotencyKey: job.idempotencyKey,
          attempt: job.attempts,
          signal: controller.signal,
          ...(done ? { done } : {}),
        }),
        deadline,
      ]);
      // A handler that returns because it was aborted did not finish its work.
      if (timedOut) throw timedOut;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Writes an attempt's outcome. The store may be unreachable for a moment (a lost connection, a restart, a failover):
   * try again until it answers, for up to half the lease, rather than leave the row to wait out its whole lease. Every
   * outcome write is fenced on (id, running, attempts): a repeat that committed, or one overtaken, changes nothing.
   */
  async function recordOutcome<T>(write: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + leaseMs / 2;
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 1_000)) {
      try {
        return await write();
      } catch (error) {
        if (!isStoreUnavailable(error) || Date.now() + delayMs > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  async function deadLetter(job: OutboxJob, lastError: string): Promise<AttemptOutcome> {
    const context: CallContext = { correlationId: `outbox:${job.id}`, sourceIp: null, userAgent: null };
    const moved = await recordOutcome(() =>
      store.transaction(async (tx) => {
        const dead = await outboxStore.markDead(tx, { id: job.id, attempt: job.attempts, now: clock.now(), lastError });
        if (!dead) return false;
        await audit.append(tx, SYSTEM, context, {
          action: "outbox.dead_lettered",
          outcome: "failed",
          subject: `outbox:${job.id}`,
          reason: lastError,
          details: { kind: job.kind, idempotencyKey: job.idempotencyKey, attempts: job.attempts },
        });
        return true;
      }),
    );
    if (!moved) return "stale";
    metrics.deadLetters.inc();
    logger.error(
      { outboxId: job.id, kind: job.kind, idempotencyKey: job.idempotencyKey, attempts: job.attempts, lastError },
      "outbox row dead-lettered",
    );
    return "dead";
  }

  async function recordFailure(job: OutboxJob, error: unknown): Promise<AttemptOutcome> {
    metrics.failures.inc({ kind: job.kind });
    const lastError = safeErrorMessage(error);
    const now = clock.now();
    const decision = decideAfterFailure({ attempts: job.attempts, maxAttempts: job.maxAttempts, now, policy, random });
    if (decision.status === "dead") return deadLetter(job, lastError);
    // The attempt lost its store connection (a terminated backend, a restart): the target is not to blame,
    // and the write below reaching the store shows it is back. Backing off as for a failing target (up to
    // 2^n s) would only hold the revocation up: retry within the first step (baseMs, jittered), whatever
    // the attempt. The attempt still counts towards maxAttempts.
    const delayMs = isStoreUnavailable(error) ? backoffMs(1, policy, random) : decision.delayMs;
    const moved = await recordOutcome(() =>
      outboxStore.markRetry(store.db, {
        id: job.id,
        attempt: job.attempts,
        nextAttemptAt: new Date(now.getTime() + delayMs),
        lastError,
      }),
    );
    if (!moved) return "stale";
    logger.warn(
      { outboxId: job.id, kind: job.kind, attempt: job.attempts, retryInMs: delayMs, lastError },
      "outbox attempt failed",
    );
    return "retry";
  }

  /**
   * Renews a job's `alive_until` once a third of each hold has passed (fenced: a row taken over is not renewed), until
   * the returned function is called. Aborts `lost` when a renewal is refused, or when none landed while a sixth of the
   * hold was still left (the store unreachable or slow): the handler stops before anyone may take the job. Half a hold
   * separates a renewal's start from that deadline.
   */
  function keepAlive(job: OutboxJob, lost: AbortController): () => void {
    let aliveUntil = job.aliveUntil?.getTime() ?? 0;
    let stopped = false;
    let renewal: NodeJS.Timeout | undefined;
    let expiry: NodeJS.Timeout | undefined;
    const lose = () => {
      if (!stopped && !lost.signal.aborted) lost.abort(new AliveLostError());
    };
    const schedule = () => {
      const left = aliveUntil - clock.now().getTime();
      clearTimeout(expiry);
      expiry = setTimeout(lose, Math.max(0, left - Math.ceil(aliveMs / 6)));
      renewal = setTimeout(() => void renew(), Math.max(0, left - Math.floor((2 * aliveMs) / 3)));
    };
    const renew = async () => {
      const until = new Date(clock.now().getTime() + aliveMs);
      try {
        if (!(await outboxStore.keepAlive(store.db, { id: job.id, attempt: job.attempts, until }))) return lose();
        aliveUntil = until.getTime();
        if (!stopped) schedule();
      } catch {
        // The store did not answer: try again soon; the expiry stops the handler if nothing lands in time.
        if (!stopped) renewal = setTimeout(() => void renew(), Math.ceil(aliveMs / 6));
      }
    };
    schedule();
    return () => {
      stopped = true;
      clearTimeout(renewal);
      clearTimeout(expiry);
    };
  }

  async function attempt(job: OutboxJob, timeoutMs?: number): Promise<AttemptOutcome> {
    if (!job.aliveUntil) return attemptHeld(job, timeoutMs);
    const lost = new AbortController();
    const stop = keepAlive(job, lost);
    try {
      return await attemptHeld(job, timeoutMs, lost.signal);
    } finally {
      stop();
    }
  }

  async function attemptHeld(job: OutboxJob, timeoutMs?: number, lost?: AbortSignal): Promise<AttemptOutcome> {
    // Claimed again after its last allowed attempt lost its lease (the worker died, perhaps
    // because of this very row): count that as the final failure instead of running it again.
    if (job.attempts > job.maxAttempts) {
      return deadLetter(job, "the worker running the last attempt stopped before finishing");
    }
    await failpoint("outbox.job.before-run");
    // Set when the handler's own transaction carried the done-mark and committed (`HandlerContext.done`).
    let completed: boolean | undefined;
    const done: HandlerContext["done"] = {
      alongside: (when) => outboxStore.doneMarkAlongside({ id: job.id, attempt: job.attempts, now: clock.now() }, when),
      completed: (marked) => void (completed = marked),
    };
    try {
      await runHandler(job, timeoutMs, lost, done);
    } catch (error) {
      if (error instanceof FailpointCrash) throw error;
      return recordFailure(job, error);
    }
    if (completed !== undefined) {
      if (!completed) return "stale";
      metrics.executed.inc();
      return "done";
    }
    await failpoint("outbox.job.before-done");
    const moved = await recordOutcome(() =>
      outboxStore.markDone(store.db, { id: job.id, attempt: job.attempts, now: clock.now() }),
    );
    if (!moved) return "stale";
    metrics.executed.inc();
    return "done";
  }

  async function attemptSafely(job: OutboxJob, timeoutMs?: number): Promise<AttemptOutcome> {
    try {
      const outcome = await attempt(job, timeoutMs);
      if (outcome === "stale")
        logger.warn({ outboxId: job.id, attempt: job.attempts }, "outbox lease lost; outcome dropped");
      return outcome;
    } catch (error) {
      // A test's simulated crash: the node "died" here, so nothing is recorded and the lease runs out.
      if (error instanceof FailpointCrash) return "crashed";
      logger.error({ outboxId: job.id, err: safeErrorMessage(error) }, "outbox outcome could not be recorded");
      return "error";
    }
  }

  const inFlight = new Set<Promise<unknown>>();
  function track<T>(promise: Promise<T>): Promise<T> {
    inFlight.add(promise);
    void promise.finally(() => inFlight.delete(promise)).catch(() => undefined);
    return promise;
  }

  /** Attempts running now (loop and runOnce alike), and how many per lane. */
  let running = 0;
  const laneLoad = new Map<string, number>();

  /** Claims up to `limit` rows that fit the free room of their lanes. */
  async function claim(limit: number): Promise<OutboxJob[]> {
    const room: Record<string, number> = {};
    for (const [lane, load] of laneLoad) room[lane] = Math.max(0, laneConcurrency - load);
    const now = clock.now();
    return outboxStore.claimDue(store.db, {
      now,
      leaseUntil: new Date(now.getTime() + leaseMs),
      limit,
      perLane: laneConcurrency,
      room,
    });
  }

  function occupy(lane: string | null): void {
    running += 1;
    if (lane !== null) laneLoad.set(lane, (laneLoad.get(lane) ?? 0) + 1);
  }

  function vacate(lane: string | null): void {
    running -= 1;
    if (lane === null) return;
    const load = (laneLoad.get(lane) ?? 1) - 1;
    if (load > 0) laneLoad.set(lane, load);
    else laneLoad.delete(lane);
  }

  /**
   * Runs one claimed row, counting it against the overall and lane limits until its outcome is recorded (`occupied`:
   * its slot was taken already, when it was reserved at enqueue).
   */
  function launch(
    job: OutboxJob,
    onSettled?: () => void,
    options: { occupied?: boolean; timeoutMs?: number } = {},
  ): Promise<AttemptOutcome> {
    if (!options.occupied) occupy(job.lane);
    return track(
      attemptSafely(job, options.timeoutMs).finally(() => {
        vacate(job.lane);
        onSettled?.();
      }),
    );
  }

  async function pass(): Promise<RunSummary> {
    const jobs = await claim(batchSize);
    const outcomes = await Promise.all(jobs.map((job) => launch(job)));
    const count = (o: AttemptOutcome) => outcomes.filter((x) => x === o).length;
    return {
      claimed: jobs.length,
      done: count("done"),
      retried: count("retry"),
      dead: count("dead"),
      stale: count("stale"),
      errors: count("error"),
    };
  }

  const runOnce = () => track(pass());

  let loop: Promise<void> | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;
  /** Something changed on this node while claiming (a job became due, a slot freed): claim again without sleeping. */
  let due = false;
  /** A wake came from the channel, one of them verified, and what ends the sleep (the gap: only a verified one). */
  let [notified, verified, wakesOn] = [false, false, "any" as "any" | "verified"];
  let foundNothingAt = Number.NEGATIVE_INFINITY;
  /** Iterations of the claim loop so far. */
  let passes = 0;
  /**
   * Set while the loop sleeps after a pass that saw every due row it had room for (a free slot, fewer rows than it
   * asked for): the pass it sleeps after. A job adopted meanwhile took room no claim has wanted yet.
   */
  let idleAfter: number | null = null;
  let unlisten: (() => Promise<void>) | undefined;
  let unregister: (() => void) | undefined;

  const sleep = (ms: number, endedBy: "any" | "verified") =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wakesOn = endedBy;
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const nudge = () => {
    due = true;
    wake?.();
  };
  /** A NOTIFY from Stint's own role (the store checked its sender) claims at once; an unverified one never ends the gap. */
  const notify = () => {
    notified = true;
    verified = true;
    wake?.();
  };
  const unverified = () => {
    notified = true;
    if (wakesOn === "any") wake?.();
  };

  async function claimLoop(): Promise<void> {
    while (!stopping) {
      passes += 1;
      due = false;
      notified = false;
      verified = false;
      let more = false;
      let sawAll = false;
      const free = concurrency - running;
      if (free > 0) {
        const limit = Math.min(batchSize, free);
        try {
          const jobs = await claim(limit);
          // A finished attempt frees its slot (and its lane's): claim again at once.
          for (const job of jobs) void launch(job, nudge);
          // As many as asked for suggests more is due.
          more = jobs.length >= limit;
          sawAll = !more;
          if (jobs.length === 0) foundNothingAt = Date.now();
        } catch (error) {
          foundNothingAt = Date.now();
          logger.error({ err: safeErrorMessage(error) }, "outbox pass failed");
        }
      }
      if (stopping) break;
      if ((more && running < concurrency) || due) continue;
      if (!notified) {
        idleAfter = sawAll ? passes : null;
        await sleep(pollMs, "any");
        idleAfter = null;
      }
      // An unverified wake (anyone may send one) soon after an empty claim waits out the gap (a flood costs one claim
      // per gap); a verified NOTIFY and this node's own nudges end it.
      const gap = foundNothingAt + wakeGapMs - Date.now();
      if (notified && !verified && !due && !stopping && gap > 0) await sleep(gap, "verified");
    }
  }

  return {
    runOnce,
    start() {
      if (loop) return;
      stopping = false;
      loop = claimLoop();
      // Jobs enqueued with runAfterCommit on this node are written claimed by this runner and handed to it at
      // commit. Their lease began at the enqueue, so the handler's deadline is what is left of it.
      unregister = registerLocalRunner(store.db, {
        leaseMs,
        aliveMs,
        reserve(lane) {
          if (stopping || running >= concurrency) return false;
          if (lane !== null && (laneLoad.get(lane) ?? 0) >= laneConcurrency) return false;
          occupy(lane);
          return true;
        },
        release(lane) {
          vacate(lane);
          nudge();
        },
        adopt(job) {
          // Stopped meanwhile: the row waits for its hold to run out and is claimed then, as a dead worker's.
          if (stopping) return this.release(job.lane);
          // The enqueuing transaction took most of the short hold: another runner may take the row any moment
          // now. Leave it to the claim (this node's included) rather than risk two runs at once.
          const now = clock.now().getTime();
          if ((job.aliveUntil?.getTime() ?? 0) - now <= Math.ceil(aliveMs / 2)) return this.release(job.lane);
          const left = (job.lockedUntil?.getTime() ?? 0) - now;
          // Its end frees a slot no claim has missed when the loop slept all along after a pass that saw every due
          // row (nothing came: a NOTIFY, a nudge or the poll would have run a pass): then no claim statement, which
          // would only run beside the next work of the caller (the dynamic login's credentials read). Time-due rows
          // wait for the poll, as they did when no job ran.
          const quiet = idleAfter;
          const settled = () => {
            if (quiet === null || passes !== quiet) nudge();
          };
          void launch(job, settled, { occupied: true, timeoutMs: Math.max(1, Math.min(handlerTimeoutMs, left)) });
        },
      });
      const listen = options.store.listen;
      if (listen)
        // After a reconnect (a store restart, a failover) claim at once: a job committed while
        // nobody listened sent a NOTIFY that is lost, and the poll may be a minute away.
        void listen(outboxStore.DUE_CHANNEL, notify, { onReconnect: nudge, onUnverified: unverified }).then(
          (stop) => {
            if (stopping) return void stop();
            unlisten = stop;
            // A job committed after the first claim but before LISTEN took hold sent a NOTIFY nobody heard: look now.
            nudge();
          },
          (error: unknown) => logger.warn({ err: safeErrorMessage(error) }, "outbox runner cannot listen; it polls"),
        );
    },
    async stop() {
      stopping = true;
      unregister?.();
      unregister = undefined;
      await unlisten?.().catch(() => undefined);
      unlisten = undefined;
      wake?.();
      await loop;
      loop = undefined;
      await Promise.allSettled([...inFlight]);
    },
  };
}
