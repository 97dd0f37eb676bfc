/**
 * Group commit of audit events that change nothing else (secret reads): events of concurrent calls are
 * appended together, and each call's promise resolves only once they are committed, so a caller still
 * gives nothing away (a secret's value) before its event is durable. If a batch fails, every call in it
 * fails.
 *
 * A call may carry what it read from memory (`checked`): the batch's INSERT then writes the events of a
 * call only if `allowed`'s condition (checked inside that INSERT, `AuditLog.appendManyWhere`) finds that copy
 * still what the database holds; a call whose copy is stale (or was tampered with in the database) gets no event
 * and its promise resolves `false`: the caller reads again from the database and records that read instead.
 *
 * On PostgreSQL a batch is that one statement, sent on its own without BEGIN and COMMIT: a statement is
 * atomic by itself, and at READ COMMITTED the check sees what was committed when it ran either way. Only
 * where appending also chains the events (inline sequencing, PGlite) does the batch run in a transaction,
 * so that the chaining commits with them.
 *
 * When fewer than `maxInFlight` batches run, everything waiting goes at the end of the event loop's
 * current turn (`setImmediate`: requests read from sockets in the same turn go together, and an idle call
 * waits for no timer); otherwise calls queue until a batch ends, then go together (up to `maxBatch` a
 * batch): the classic group commit. With one batch in flight (the default) a call waits at most for the
 * batch being committed and its own; more in flight means smaller batches, more statements per call.
 *
 * Sent at once after a batch ends, the next batch would hold only the calls that queued meanwhile: the
 * callers just answered come back a moment later and wait for the batch after, so steady readers split in
 * two halves that take turns (16 readers: ~8 a batch, each read waiting for two commits). So a batch that
 * ends leaves a short hold (`holdMs`, at most half the time that batch took to commit, since holding longer
 * than a commit costs more than it saves): the next batch goes as soon as as many calls wait as were in
 * the system when the batch ended (those it answered and those queued), or when the hold is over, whichever
 * comes first. A call arriving after the hold, or with no batch ended before, goes at the end of the turn as
 * before. Calls are only ever held waiting, never answered sooner: a value still leaves after its event
 * committed.
 */
import { performance } from "node:perf_hooks";
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";

interface Waiting {
  actor: Actor;
  context: CallContext;
  events: AuditInput[];
  /** What the call read from memory, as `allowed.copy` gives it to the INSERT's check. */
  copy: unknown;
  resolve: (recorded: boolean) => void;
  reject: (error: unknown) => void;
}

export interface AuditBatcherOptions {
  /** At most this many calls a batch (default 256). */
  maxBatch?: number;
  /** At most this many batches being committed at a time (default 1). */
  maxInFlight?: number;
  /**
   * After a batch ends, wait at most this long (ms; default 1, 0: never) for the calls it answered to come
   * back before the next batch goes, and never longer than half the time the batch took to commit.
   */
  holdMs?: number;
}

export function createAuditBatcher<C>(
  deps: {
    store: Pick<AppStore, "db" | "transaction">;
    audit: Pick<AuditLog, "appendMany" | "appendManyWhere"> & Partial<Pick<AuditLog, "sequencing">>;
    /**
     * When a call carries what it read from memory (`checked`): the copy the batch's INSERT checks
     * (`copy`, a JSON value) and the condition (SQL over `c.copy`) under which that call is recorded.
     */
    allowed?: { copy: (checked: C) => unknown; condition: { readonly sql: string } };
  } & AuditBatcherOptions,
) {
  const maxBatch = deps.maxBatch ?? 256;
  const maxInFlight = deps.maxInFlight ?? 1;
  const holdMs = deps.holdMs ?? 1;
  // Background sequencing: the append is the INSERT alone, so it needs no transaction around it.
  const alone = deps.audit.sequencing === "background";
  let queue: Waiting[] = [];
  let inFlight = 0;
  let batches = 0;
  let events = 0;
  let stale = 0;
  let commitMs = 0;

  async function commitIn(db: Kysely<Database>, batch: Waiting[]): Promise<boolean[]> {
    if (deps.allowed && batch.some((item) => item.copy !== undefined))
      return deps.audit.appendManyWhere(db, batch, deps.allowed.condition);
    await deps.audit.appendMany(db, batch);
    return batch.map(() => true);
  }

  function commit(batch: Waiting[]): Promise<boolean[]> {
    if (alone) return commitIn(deps.store.db, batch);
    return deps.store.transaction((tx) => commitIn(tx, batch));
  }

  // The hold after a batch ends: until `holdUntil` (performance.now() ms), the next batch waits for
  // `expected` calls.
  let expected = 0;
  let holdUntil = 0;
  let immediate = false;
  let timer: NodeJS.Timeout | undefined;
  function schedule() {
    if (immediate || inFlight >= maxInFlight || queue.length === 0) return;
    const wait = queue.length >= expected ? 0 : holdUntil - performance.now();
    if (wait <= 0) {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      immediate = true;
      setImmediate(() => {
        immediate = false;
        flush();
      });
    } else
      timer ??= setTimeout(() => {
        timer = undefined;
        if (!immediate) flush();
      }, wait);
  }

  function flush() {
    while (queue.length > 0 && inFlight < maxInFlight) {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
      inFlight += 1;
      batches += 1;
      events += batch.length;
      const started = performance.now();
      commit(batch)
        .then(
          (recorded) =>
            batch.forEach((item, i) => {
              if (!recorded[i]) stale += 1;
              item.resolve(recorded[i]!);
            }),
          (error: unknown) => batch.forEach((item) => item.reject(error)),
        )
        .finally(() => {
          inFlight -= 1;
          const ended = performance.now();
          commitMs += ended - started;
          expected = Math.min(maxBatch, batch.length + queue.length);
          holdUntil = ended + Math.min(holdMs, (ended - started) / 2);
          schedule();
        });
    }
  }

  return {
    /**
     * Appends `events` with other calls' and resolves once they are committed (rejects if they are not).
     * With `checked`, resolves false, appending nothing, when `allowed` finds it stale.
     */
    record(actor: Actor, context: CallContext, input: AuditInput | AuditInput[], checked?: C): Promise<boolean> {
      return new Promise<boolean>((resolve, reject) => {
        const copy = checked === undefined || !deps.allowed ? undefined : deps.allowed.copy(checked);
        queue.push({ actor, context, events: Array.isArray(input) ? input : [input], copy, resolve, reject });
        schedule();
      });
    },
    /** Batches and events so far, how many were stale, and the time spent committing batches (ms, summed). */
    stats: () => ({ batches, events, stale, commitMs, waiting: queue.length, inFlight }),
  };
}

export type AuditBatcher<C> = ReturnType<typeof createAuditBatcher<C>>;
