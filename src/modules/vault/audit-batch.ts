/**
 * Group commit of audit events that change nothing else (secret reads): events of concurrent calls are
 * appended in one transaction, and each call's promise resolves only once that transaction committed, so
 * a caller still gives nothing away (a secret's value) before its event is durable.
 *
 * A call may carry what it read from memory (`checked`): the batch's transaction first asks `verify`,
 * once for the whole batch, whether those are still what the database holds; the events of calls whose
 * copy is stale (or was tampered with in the database) are not appended and their promise resolves
 * `false`: the caller reads again from the database and records that read instead.
 *
 * With no batch in flight, a call is committed at once, alone (no added latency when idle). While batches
 * are in flight, calls wait up to `windowMs` (or until `maxBatch` calls wait) and go together; at most
 * `maxInFlight` batches run at a time. If a batch fails, every call in it fails.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";

interface Waiting<C> {
  actor: Actor;
  context: CallContext;
  events: AuditInput[];
  checked: C | undefined;
  resolve: (recorded: boolean) => void;
  reject: (error: unknown) => void;
}

export interface AuditBatcherOptions {
  windowMs?: number;
  maxBatch?: number;
  maxInFlight?: number;
}

export function createAuditBatcher<C>(
  deps: {
    store: Pick<AppStore, "transaction">;
    audit: Pick<AuditLog, "appendMany">;
    /** In the batch's transaction: for each of `checked`, whether it is still what the database holds. */
    verify?: (tx: Kysely<Database>, checked: C[]) => Promise<boolean[]>;
  } & AuditBatcherOptions,
) {
  const windowMs = deps.windowMs ?? 2;
  const maxBatch = deps.maxBatch ?? 128;
  const maxInFlight = deps.maxInFlight ?? 4;
  let queue: Waiting<C>[] = [];
  let inFlight = 0;
  let timer: NodeJS.Timeout | undefined;
  let batches = 0;
  let events = 0;

  async function commit(tx: Kysely<Database>, batch: Waiting<C>[]): Promise<boolean[]> {
    const recorded = batch.map(() => true);
    const toCheck = batch.flatMap((item, i) => (item.checked === undefined ? [] : [i]));
    if (toCheck.length > 0 && deps.verify) {
      const fresh = await deps.verify(
        tx,
        toCheck.map((i) => batch[i]!.checked!),
      );
      toCheck.forEach((i, k) => (recorded[i] = fresh[k] === true));
    }
    // One multi-row INSERT for the whole batch (a MAC per row, as `append` writes them).
    await deps.audit.appendMany(
      tx,
      batch.filter((_, i) => recorded[i]),
    );
    return recorded;
  }

  function flush() {
    clearTimeout(timer);
    timer = undefined;
    if (queue.length === 0 || inFlight >= maxInFlight) return;
    const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
    queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
    inFlight += 1;
    batches += 1;
    events += batch.length;
    deps.store
      .transaction((tx) => commit(tx, batch))
      .then(
        (recorded) => batch.forEach((item, i) => item.resolve(recorded[i]!)),
        (error: unknown) => batch.forEach((item) => item.reject(error)),
      )
      .finally(() => {
        inFlight -= 1;
        if (queue.length >= maxBatch) flush();
        else if (queue.length > 0) wait();
      });
  }

  function wait() {
    if (inFlight === 0 || queue.length >= maxBatch) return flush();
    timer ??= setTimeout(flush, windowMs);
  }

  return {
    /**
     * Appends `events` with other calls' and resolves once they are committed (rejects if they are not).
     * With `checked`, resolves false, appending nothing, when `verify` finds it stale.
     */
    record(actor: Actor, context: CallContext, input: AuditInput | AuditInput[], checked?: C): Promise<boolean> {
      return new Promise<boolean>((resolve, reject) => {
        queue.push({ actor, context, events: Array.isArray(input) ? input : [input], checked, resolve, reject });
        wait();
      });
    },
    stats: () => ({ batches, events, waiting: queue.length, inFlight }),
  };
}

export type AuditBatcher<C> = ReturnType<typeof createAuditBatcher<C>>;
