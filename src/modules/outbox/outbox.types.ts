/** Entities and value types of the transactional outbox. */
import type { Expression, QueryCreator, SqlBool } from "kysely";
import type { Database } from "../../db/index.js";

export type OutboxStatus = "pending" | "running" | "done" | "dead";

export type OutboxPayload = Record<string, unknown>;

/** One side effect waiting to happen (or that happened, or gave up). */
export interface OutboxJob {
  id: string;
  kind: string;
  /** Deterministic, e.g. `revoke:${grantId}`: the same effect is enqueued at most once. */
  idempotencyKey: string;
  payload: OutboxPayload;
  status: OutboxStatus;
  /** Attempts started so far; the claim increments it, so it also fences stale workers. */
  attempts: number;
  maxAttempts: number;
  nextAttemptAt: Date;
  lockedUntil: Date | null;
  lastError: string | null;
  createdAt: Date;
  /** When the row reached a final state (done or dead). */
  doneAt: Date | null;
  /** What it talks to (`target:<id>`, `channel:<name>`), or null: runners cap how many of one lane run at once. */
  lane: string | null;
  /**
   * A row written claimed for its enqueuing node (`runAfterCommit`): that node renews this while it runs;
   * past it any runner may take the row over. Absent for an ordinary claim.
   */
  aliveUntil?: Date;
}

export interface EnqueueInput {
  kind: string;
  idempotencyKey: string;
  payload: OutboxPayload;
  /** Defaults to the column default (10). */
  maxAttempts?: number | undefined;
  /** Do not run before this time (defaults to now). */
  notBefore?: Date | undefined;
  /**
   * What the job talks to, e.g. `target:${targetId}`: a runner runs only a few jobs of one lane at a
   * time, so a slow or dead target holds up its own jobs and never another's. Omit for none.
   */
  lane?: string | undefined;
  /**
   * Due now and enqueued on a node whose runner is started with room for it (its lane included): the row is
   * written already claimed by that runner, which runs it as soon as the transaction commits — no NOTIFY
   * round to a runner, no claim statement. Otherwise (or in a transaction no store began) it is enqueued
   * as usual. A crash before it finishes leaves the lease to run out, as for any claimed row.
   */
  runAfterCommit?: boolean | undefined;
  /**
   * A write of the caller's (an UPDATE, INSERT or DELETE builder) that the job's INSERT carries as a
   * data-modifying CTE: one statement, one round trip, in the same transaction (e.g. the grant's login set with
   * its provisioning job). It runs whether or not the job's idempotency key existed. Several: CTEs `alongside`,
   * `alongside_1`, … in this order, each able to read the ones before by name (one statement still).
   */
  alongside?: Alongside | readonly Alongside[] | undefined;
}

/** A data-modifying statement the job's INSERT carries (`EnqueueInput.alongside`). */
export type Alongside = Parameters<QueryCreator<Database>["with"]>[1];

export interface HandlerContext {
  jobId: string;
  idempotencyKey: string;
  /** 1 on the first attempt. */
  attempt: number;
  /** Aborted when the handler overruns its lease: stop work, another worker may take over. */
  signal: AbortSignal;
  /**
   * For a handler whose work ends with a transaction of its own (the provisioning's activation): this attempt's
   * done-mark, fenced as the runner's own, as a write that transaction's last statement carries (`alongside`),
   * written only when `when` holds there. Once that transaction has committed, the handler tells whether the mark
   * was written (`completed`, then return at once); the runner then writes no outcome of its own: one statement
   * and one commit fewer. A handler that does not call `completed` is marked done by the runner as usual.
   */
  done?: { alongside(when: Expression<SqlBool>): Alongside; completed(marked: boolean): void };
}

/**
 * Runs one side effect. It must be idempotent: delivery is at least once (a worker
 * that loses its lease may finish after another worker has started the same row).
 * Throw to fail the attempt; the error message is stored, so never put secrets in it.
 */
export type OutboxHandler = (payload: OutboxPayload, context: HandlerContext) => Promise<void>;

export type OutboxHandlers = Readonly<Record<string, OutboxHandler>>;

/** Exponential backoff with full jitter: delay ∈ [0, min(capMs, baseMs · 2^(attempt−1))]. */
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

/** A source of uniform numbers in [0, 1), like Math.random. */
export type RandomSource = () => number;

export type FailureDecision = { status: "pending"; delayMs: number; nextAttemptAt: Date } | { status: "dead" };
