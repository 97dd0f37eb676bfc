/**
 * The outbox service: `enqueue` writes a side effect into the caller's
 * transaction, so it commits with the change that causes it or not at all.
 * Operators list and retry dead letters; a retry is audited in its own transaction.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { whenSettled } from "../../lib/db.js";
import { localRunner } from "./outbox.local.js";
import * as outboxStore from "./outbox.store.js";
import type { EnqueueInput, OutboxJob } from "./outbox.types.js";

export interface OutboxService {
  /** Adds a row in `tx`. Returns false (and changes nothing) when the idempotency key exists. */
  enqueue(tx: Kysely<Database>, input: EnqueueInput): Promise<boolean>;
  /**
   * `enqueue` for many rows in one statement (and one wake-up of the runners): per input, whether it was
   * written (false when its idempotency key exists, or an earlier input has it).
   */
  enqueueMany(tx: Kysely<Database>, inputs: EnqueueInput[]): Promise<boolean[]>;
  /** Dead rows, newest first; page with `beforeId` = the last id of the previous page. */
  listDeadLetters(actor: Actor, options?: { limit?: number; beforeId?: string }): Promise<OutboxJob[]>;
  /** Puts a dead row back to pending with a fresh budget of attempts; audited with the change. */
  retryDeadLetter(actor: Actor, context: CallContext, id: string): Promise<OutboxJob>;
}

const KIND_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;
const MAX_KEY_LENGTH = 200;

/** Programmer errors in what a service enqueues: a bug, not a client mistake. */
function checkInput(input: EnqueueInput): void {
  if (!KIND_PATTERN.test(input.kind)) throw new Error(`outbox kind ${JSON.stringify(input.kind)} is not a valid name`);
  if (input.idempotencyKey.length === 0 || input.idempotencyKey.length > MAX_KEY_LENGTH)
    throw new Error(`outbox idempotency key must be 1..${MAX_KEY_LENGTH} characters`);
  const max = input.maxAttempts;
  if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > 1000))
    throw new Error(`outbox maxAttempts must be an integer in 1..1000, got ${max}`);
}

/** The row of an enqueued input, with a new id. */
function newJob(input: EnqueueInput, nextAttemptAt: Date, now: Date): outboxStore.NewJob {
  const { kind, idempotencyKey, payload, maxAttempts, lane } = input;
  return { id: newId(), kind, idempotencyKey, payload, maxAttempts, nextAttemptAt, createdAt: now, lane };
}

// Until the authz module decides these, the outbox keeps its two checks here.
function mayReadOutbox(actor: Actor): boolean {
  if (actor.kind === "system") return true;
  return actor.kind === "principal" && actor.roles.some((r) => r === "admin" || r === "security" || r === "auditor");
}

function mayOperateOutbox(actor: Actor): boolean {
  if (actor.kind === "system") return true;
  return actor.kind === "principal" && actor.roles.includes("admin");
}

export function createOutboxService(deps: {
  store: Pick<AppStore, "db" | "transaction">;
  clock: Clock;
  audit: Pick<AuditLog, "append">;
}): OutboxService {
  const { store, clock, audit } = deps;

  return {
    async enqueue(tx, input) {
      checkInput(input);
      const now = clock.now();
      const due = !input.notBefore || input.notBefore.getTime() <= now.getTime();
      const runner = input.runAfterCommit && due ? localRunner(store.db) : undefined;
      const lane = input.lane ?? null;
      if (runner?.reserve(lane)) {
        let job: OutboxJob | undefined;
        // Committed: this node's runner runs it at once. Rolled back (or the key existed): the slot goes back.
        const hooked = whenSettled(tx, (committed) => {
          if (committed && job) runner.adopt(job);
          else runner.release(lane);
        });
        if (hooked) {
          job = await outboxStore.insertClaimedJob(tx, {
            ...newJob(input, now, now),
            leaseUntil: new Date(now.getTime() + runner.leaseMs),
            aliveUntil: new Date(now.getTime() + runner.aliveMs),
            alongside: input.alongside,
          });
          return job !== undefined;
        }
        runner.release(lane);
      }
      // Due now: the same statement wakes the runners when this commits instead of their next poll.
      return outboxStore.insertJob(tx, newJob(input, input.notBefore ?? now, now), {
        alongside: input.alongside,
        notify: due,
      });
    },

    async enqueueMany(tx, inputs) {
      for (const input of inputs) checkInput(input);
      if (inputs.length === 0) return [];
      const now = clock.now();
      const written = await outboxStore.insertJobs(
        tx,
        inputs.map((input) => newJob(input, input.notBefore ?? now, now)),
      );
      // Each key counts once: the first input that has it.
      const claimed = new Set<string>();
      const result = inputs.map((input) => {
        const first = written.has(input.idempotencyKey) && !claimed.has(input.idempotencyKey);
        claimed.add(input.idempotencyKey);
        return first;
      });
      if (inputs.some((input, i) => result[i] && (!input.notBefore || input.notBefore.getTime() <= now.getTime())))
        await outboxStore.notifyDue(tx);
      return result;
    },

    async listDeadLetters(actor, options = {}) {
      if (!mayReadOutbox(actor)) throw new StintError("FORBIDDEN");
      const limit = Math.min(Math.max(Math.floor(options.limit ?? 100), 1), 1000);
      return outboxStore.listDead(store.db, { limit, beforeId: options.beforeId });
    },

    async retryDeadLetter(actor, context, id) {
      if (!mayOperateOutbox(actor)) {
        await store.transaction((tx) =>
          audit.append(tx, actor, context, { action: "outbox.retried", outcome: "denied", subject: `outbox:${id}` }),
        );
        throw new StintError("FORBIDDEN");
      }
      return store.transaction(async (tx) => {
        const job = await outboxStore.findForUpdate(tx, id);
        if (!job) throw new StintError("NOT_FOUND");
        if (job.status !== "dead") throw new StintError("CONFLICT", "Only a dead-lettered outbox row can be retried.");
        const retried = await outboxStore.resurrect(tx, { id, now: clock.now() });
        await audit.append(tx, actor, context, {
          action: "outbox.retried",
          outcome: "success",
          subject: `outbox:${id}`,
          details: { kind: job.kind, idempotencyKey: job.idempotencyKey, previousAttempts: job.attempts },
        });
        return retried;
      });
    },
  };
}
