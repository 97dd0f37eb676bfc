/**
 * The audit log. `append` runs inside the caller's transaction: the change and its events commit
 * together or not at all. The events are written unchained (`audit_pending`, with a MAC) and take no
 * lock; `chainPending` links committed ones into the hash chain in batches under the head lock, from the
 * background sequencer (`audit.sequencer.ts`, one per cluster) or, in `inline` mode, in the appending
 * transaction itself (PGlite, where transactions run one at a time anyway).
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { whenSettled } from "../../lib/db.js";
import { failpoint } from "../../lib/failpoints.js";
import { newId } from "../../lib/ids.js";
import { NO_CONTEXT, type Actor, type CallContext } from "../authz/authz.types.js";
import type { Keyring } from "../keys/keys.service.js";
import {
  boundariesCrossed,
  canonicalParts,
  chain,
  checkpointMessage,
  createChainVerifier,
  type CanonicalParts,
} from "./audit.rules.js";
import {
  insertUniform,
  notifyAll,
  uniformRows,
  uniformTemplate,
  type AppendUniform,
  type SharedColumns,
} from "./audit.uniform.js";
import { createPendingMacs, macMessage } from "./audit.macs.js";
import * as auditStore from "./audit.store.js";
import { PARALLEL_FROM, visitInParallel } from "./audit.verify.js";
import { visitForVerify } from "./audit.verify.store.js";
import type {
  AuditAnchor,
  AuditEvent,
  AuditInput,
  CheckpointValues,
  PendingAuditEvent,
  VerifyResult,
} from "./audit.types.js";

/** What one chaining pass did. */
export interface ChainResult {
  chained: number;
  /** Pending rows whose MAC did not verify (written by someone without the master key): not chained. */
  rejected: number;
  /** The time of each chained event, for the lag (chained at - event time). */
  times: string[];
  /** The id of each chained event, in `times` order (a benchmark's lag from each one's commit). */
  ids?: string[];
}

export type AuditSequencing = "inline" | "background";

export interface AuditLog {
  /**
   * Writes the events in the caller's transaction (no row of the chain is locked): they are chained
   * once the transaction committed, in `inline` mode before it commits.
   */
  append(
    tx: Kysely<Database>,
    actor: Actor,
    context: CallContext,
    events: AuditInput | AuditInput[],
  ): Promise<PendingAuditEvent[]>;
  /**
   * `append` for the events of many calls at once (group commit): one INSERT for all of them, in the order
   * given, each with its own actor and context. Returns each call's events.
   */
  appendMany(
    tx: Kysely<Database>,
    calls: readonly { actor: Actor; context: CallContext; events: AuditInput | AuditInput[] }[],
  ): Promise<PendingAuditEvent[][]>;
  /**
   * `appendMany` where the database decides, in the same INSERT statement, which calls are recorded: a call's
   * events are written only if it gives no `copy` or `condition` holds for its copy (the vault's reads from
   * memory: the copies they used are still what the database holds). Returns, for each call, whether its
   * events were written.
   */
  appendManyWhere(
    tx: Kysely<Database>,
    calls: readonly { actor: Actor; context: CallContext; events: AuditInput | AuditInput[]; copy?: unknown }[],
    condition: auditStore.PendingCondition,
  ): Promise<boolean[]>;
  /**
   * Many events of one kind (the scheduler's expiries): one action, outcome and reason, each event with its own
   * subject and details, the details given as their canonical JSON (`canonicalDetailsText`, built by the caller
   * from a template). The MAC texts are written from a template made once per call (`uniformTemplate`) and the
   * events go in one INSERT whose shared columns travel once, with `notify`'s payloads sent in the same
   * statement. The same rows and MACs as `append`; a batch the template cannot write takes `append`.
   */
  appendUniform: AppendUniform;
  /** Records an event in its own transaction (for denials and failures that change nothing else). */
  record(actor: Actor, context: CallContext, events: AuditInput | AuditInput[]): Promise<PendingAuditEvent[]>;
  readonly sequencing: AuditSequencing;
  /**
   * Chains up to `limit` committed pending events, in `pos` order, under the head lock, signing the
   * checkpoints they cross: in `tx` when given, else in a transaction of its own. `fresh`: read the pending
   * rows now, not the ones the last pass's move read with it (a wake came since: commits it may not have seen).
   */
  chainPending(tx?: Kysely<Database>, limit?: number, fresh?: boolean): Promise<ChainResult>;
  /** Chains until nothing committed is pending (or `maxPasses` passes ran); the events chained. */
  catchUp(maxPasses?: number): Promise<number>;
  /** Events committed and not chained yet, and the time of the oldest. */
  pendingStats(): Promise<{ count: number; oldest: Date | null }>;
  /** Whether any committed event waits to be chained (one cheap read). */
  anyPending(): Promise<boolean>;
  /**
   * Called after each append that leaves chaining to the sequencer, once its transaction committed where the
   * store can tell (it wakes sooner than its poll); never for one rolled back.
   */
  onPending(listener: () => void): void;
  /** Signs a checkpoint over the current head (besides the required one every N events: at shutdown). */
  checkpoint(): Promise<{ seq: number } | null>;
  /**
   * The signed head to ship outside the database: signs one over the current head first when the head has
   * moved past the newest checkpoint, so events after the last N-boundary are covered too. Null when empty.
   * `starting`: a node coming up states its checkpoint interval before it writes anything (verify reads
   * each stretch of the log with the interval its first checkpoint states); when the head's checkpoint
   * states another, the change is recorded as an `audit.checkpoint_interval` event and signed.
   */
  anchor(options?: { starting?: boolean }): Promise<AuditAnchor | null>;
  /** The newest checkpoint whose signature verifies, as an anchor (read only). */
  latestAnchor(): Promise<AuditAnchor | null>;
  /** Signed checkpoints with fromSeq <= seq <= toSeq whose signature verifies, oldest first (for the export stream). */
  anchorsBetween(fromSeq: number, toSeq: number): Promise<AuditAnchor[]>;
  /**
   * Re-hashes the chain, checks every checkpoint signature, that no required checkpoint is missing and,
   * given an anchor held outside the database, that the chain still holds that signed head.
   */
  verify(options?: { anchor?: AuditAnchor; onProgress?: (count: number) => void }): Promise<VerifyResult>;
  /** Events after `afterSeq`, oldest first, in pages. */
  read(
    options: { afterSeq?: number; limit?: number; order?: "asc" | "desc"; beforeSeq?: number } & auditStore.EventFilter,
  ): Promise<AuditEvent[]>;
  /** How many chained events match `filter`, counting no further than `cap`. */
  count(filter: auditStore.EventFilter, cap: number): Promise<number>;
}

const AUDIT_ACTOR: Actor = { kind: "system", name: "audit" };
/** A background pass yields to the event loop every this many rows it checks (`prepare`'s `slice`). */
const PREPARE_SLICE = 32;

export function actorLabel(actor: Actor): { actor: string; actorId: string | null } {
  switch (actor.kind) {
    case "principal":
      return { actor: actor.name, actorId: actor.id };
    case "system":
      return { actor: `system:${actor.name}`, actorId: null };
    case "anonymous":
      return { actor: "anonymous", actorId: null };
  }
}

export function createAuditLog(deps: {
  store: Pick<AppStore, "db" | "transaction" | "engine">;
  keyring: Pick<Keyring, "signDetached" | "verifyDetached" | "mac" | "macValid">;
  clock: Clock;
  checkpointEvery?: number;
  /** Default: `inline` on PGlite (one connection: transactions are serial already), `background` on PostgreSQL. */
  sequencing?: AuditSequencing;
  /** From this many events `verify` re-hashes on worker threads (default `PARALLEL_FROM`). */
  verifyInParallelFrom?: number;
  /** Called with what a pass rejected (the sequencer logs it and counts it). */
  onRejected?: (rows: { pos: number; id: string; action: string }[]) => void;
}): AuditLog {
  const { store, keyring, clock } = deps;
  const every = deps.checkpointEvery ?? 1000;
  const sequencing: AuditSequencing = deps.sequencing ?? (store.engine === "postgres" ? "background" : "inline");
  const pendingListeners: (() => void)[] = [];
  const parallelFrom = deps.verifyInParallelFrom ?? PARALLEL_FROM;

  async function signCheckpoint(tx: Kysely<Database>, head: { seq: number; hash: string }): Promise<AuditAnchor> {
    const { row, anchor } = signed(head);
    await auditStore.insertCheckpoint(tx, row);
    return anchor;
  }

  /** A stored checkpoint as an anchor, if it is v2 and its signature verifies (a database writer may have added it). */
  function asAnchor(row: auditStore.CheckpointRow): AuditAnchor | null {
    if (row.every === null) return null;
    const anchor: AuditAnchor = {
      format: "stint-audit-anchor/v1",
      seq: Number(row.seq),
      hash: row.hash,
      every: row.every,
      time: new Date(row.signed_at).toISOString(),
      keyId: row.key_id,
      signature: row.signature,
    };
    return anchorSignatureValid(anchor) ? anchor : null;
  }

  function anchorSignatureValid(anchor: Pick<AuditAnchor, "seq" | "hash" | "every" | "time" | "keyId" | "signature">) {
    const message = checkpointMessage({
      seq: anchor.seq,
      hash: anchor.hash,
      every: anchor.every,
      signedAt: anchor.time,
    });
    return keyring.verifyDetached("audit", anchor.keyId, message, anchor.signature);
  }

  async function latestAnchor(db: Kysely<Database>): Promise<AuditAnchor | null> {
    for (const row of await auditStore.latestCheckpoints(db, 20)) {
      const anchor = asAnchor(row);
      if (anchor) return anchor;
    }
    return null;
  }

  /**
   * Tells the sequencer that `tx` wrote pending events, once they can be seen: after its COMMIT when the store
   * began it (never after a rollback), at once for a statement of its own (committed already) or a
   * transaction the store cannot follow (the sequencer waits a moment before it looks).
   */
  function pendingWritten(tx: Kysely<Database>) {
    const fire = () => {
      for (const listener of pendingListeners) listener();
    };
    const hooked =
      tx.isTransaction &&
      whenSettled(tx, (committed) => {
        if (committed) fire();
      });
    if (!hooked) fire();
  }

  /** The pending events of one call: one id each, the call's time, actor and context. */
  function pendingEvents(actor: Actor, context: CallContext, inputs: AuditInput[], time: string) {
    const who = actorLabel(actor);
    return inputs.map((item): PendingAuditEvent => ({
      id: newId(),
      time,
      ...who,
      action: item.action,
      subject: item.subject ?? null,
      outcome: item.outcome,
      reason: item.reason ?? null,
      correlationId: context.correlationId,
      sourceIp: context.sourceIp,
      userAgent: context.userAgent,
      details: item.details ?? {},
    }));
  }

  /** The MAC a pending row carries: proof that a Stint node wrote it (`audit.macs.ts`). */
  const pendingMacs = createPendingMacs(keyring);
  const macOf = (event: PendingAuditEvent) => pendingMacs.mac(event.id, macMessage(event, canonicalParts(event)));

  /** Writes `events` (one multi-row INSERT, a MAC per row) and chains them inline or wakes the sequencer. */
  async function writePending(tx: Kysely<Database>, events: PendingAuditEvent[]) {
    if (events.length === 0) return;
    await auditStore.insertPending(
      tx,
      events.map((event) => ({ event, mac: macOf(event) })),
    );
    if (sequencing === "inline") await chainPending(tx);
    else pendingWritten(tx);
  }

  const append: AuditLog["append"] = async (tx, actor, context, input) => {
    const events = pendingEvents(actor, context, Array.isArray(input) ? input : [input], clock.now().toISOString());
    await writePending(tx, events);
    return events;
  };

  const appendMany: AuditLog["appendMany"] = async (tx, calls) => {
    const time = clock.now().toISOString();
    const perCall = calls.map((call) =>
      pendingEvents(call.actor, call.context, Array.isArray(call.events) ? call.events : [call.events], time),
    );
    await writePending(tx, perCall.flat());
    return perCall;
  };

  const appendManyWhere: AuditLog["appendManyWhere"] = async (tx, calls, condition) => {
    const time = clock.now().toISOString();
    const perCall = calls.map((call) =>
      pendingEvents(call.actor, call.context, Array.isArray(call.events) ? call.events : [call.events], time),
    );
    const inserted = await auditStore.insertPendingWhere(
      tx,
      perCall.flatMap((events, call) => events.map((event) => ({ event, copy: calls[call]!.copy, mac: macOf(event) }))),
      condition,
    );
    if (inserted.size > 0) {
      if (sequencing === "inline") await chainPending(tx);
      else pendingWritten(tx);
    }
    return perCall.map((events) => events.every((event) => inserted.has(event.id)));
  };

  const appendUniform: AuditLog["appendUniform"] = async (tx, actor, context, batch) => {
    const { subjects, details } = batch;
    const n = subjects.length;
    if (n !== details.length) throw new Error("appendUniform: one details text per subject");
    const notify = batch.notify ?? [];
    const shared: SharedColumns = {
      time: batch.time ?? clock.now().toISOString(),
      ...actorLabel(actor),
      action: batch.action,
      outcome: batch.outcome,
      reason: batch.reason,
      correlationId: context.correlationId,
      sourceIp: context.sourceIp,
      userAgent: context.userAgent,
    };
    const template = uniformTemplate(shared);
    const rows = template && uniformRows(template, subjects, details, (text) => keyring.mac("audit-pending", text));
    if (!rows) {
      // Not plain text somewhere: the general path decides (it escapes or refuses as it always did).
      const inputs = subjects.map((subject, i) => ({
        action: batch.action,
        outcome: batch.outcome,
        subject,
        ...(batch.reason === null ? {} : { reason: batch.reason }),
        details: JSON.parse(details[i]!) as Record<string, unknown>,
      }));
      await writePending(tx, pendingEvents(actor, context, inputs, shared.time));
      await notifyAll(tx, notify);
      return n;
    }
    if (n === 0) {
      await notifyAll(tx, notify);
      return 0;
    }
    const inserted = await insertUniform(tx, shared, rows, notify);
    if (inserted !== n) throw new Error(`audit: ${inserted} of ${n} events inserted`);
    if (sequencing === "inline") await chainPending(tx);
    else pendingWritten(tx);
    return n;
  };

  /** A checkpoint over `head`, signed now: the row to store and the anchor it makes. */
  function signed(head: { seq: number; hash: string }): { row: CheckpointValues; anchor: AuditAnchor } {
    const signedAt = clock.now();
    const time = signedAt.toISOString();
    const { keyId, signature } = keyring.signDetached(
      "audit",
      checkpointMessage({ seq: head.seq, hash: head.hash, every, signedAt: time }),
    );
    return {
      row: { ...head, every, keyId, signature, signedAt },
      anchor: { format: "stint-audit-anchor/v1", seq: head.seq, hash: head.hash, every, time, keyId, signature },
    };
  }

  /**
   * One pass over the pending rows read after `head`: checks each MAC, links those that verify and, after
   * them, an `audit.pending_rejected` note for each that does not, and signs the checkpoints they cross (a
   * checkpoint at exactly every multiple of N, written by the statement that chains that event: verify treats a
   * missing one as tampering, so none may depend on a later step that could be skipped). Pure but for the clock
   * and the keys: nothing is written.
   */
  async function prepare(head: { seq: number; hash: string }, rows: readonly auditStore.PendingRow[], slice = 0) {
    const genuine: { pos: string; event: PendingAuditEvent; parts: CanonicalParts | null }[] = [];
    const rejected: { pos: number; id: string; action: string }[] = [];
    for (const [i, row] of rows.entries()) {
      if (slice > 0 && i > 0 && i % slice === 0) await new Promise(setImmediate);
      const event = auditStore.pendingToEvent(row);
      // Written once: the MAC's text and the hash's are made of the same parts.
      const parts = canonicalParts(event);
      if (pendingMacs.valid(row.id, macMessage(event, parts), row.mac)) genuine.push({ pos: row.pos, event, parts });
      else rejected.push({ pos: Number(row.pos), id: row.id, action: row.action });
    }
    // A row no node wrote is not chained as what it claims; the chain records that it was there.
    const notes: PendingAuditEvent[] = rejected.map((row) => ({
      id: newId(),
      time: clock.now().toISOString(),
      ...actorLabel(AUDIT_ACTOR),
      action: "audit.pending_rejected",
      subject: null,
      outcome: "failed",
      reason: "an unchained audit event failed its integrity check (written outside Stint?)",
      correlationId: null,
      sourceIp: null,
      userAgent: null,
      details: { pos: row.pos, claimedId: row.id, claimedAction: row.action },
    }));
    let prev: { seq: number; hash: string } = head;
    const linked = [...genuine, ...notes.map((event) => ({ event, parts: canonicalParts(event) }))];
    const events = linked.map((item) => (prev = chain(item.event, prev, item.parts)));
    const checkpoints = boundariesCrossed(head.seq, prev.seq, every).map(
      (seq) => signed(events[seq - head.seq - 1]!).row,
    );
    const taken = rows.map(({ pos, version }) => ({ pos, version }));
    const chained = genuine.map((item, i) => ({
      pos: item.pos,
      seq: events[i]!.seq,
      prevHash: events[i]!.prevHash,
      hash: events[i]!.hash,
    }));
    return {
      /**
       * Writes the pass: the pending rows moved, the head moved from `head` if it is still there, the notes. The
       * failpoint fires first, in both kinds of pass: linked and signed, nothing written (in `chainIn`'s
       * transaction, or before the own pass's one statement).
       */
      write: async (db: Kysely<Database>, next = 0): Promise<auditStore.HeadAndPending> => {
        await failpoint("audit.sequence.before-commit");
        const to = { seq: prev.seq, hash: prev.hash };
        const rows = await auditStore.chainMove(db, head, taken, chained, to, checkpoints, next);
        await auditStore.insertEvents(db, events.slice(genuine.length));
        return { head: to, rows };
      },
      rejected,
      result: {
        chained: genuine.length,
        rejected: rejected.length,
        times: genuine.map((item) => item.event.time),
        ids: genuine.map((item) => item.event.id),
      } satisfies ChainResult,
    };
  }

  const nothing = (): ChainResult => ({ chained: 0, rejected: 0, times: [], ids: [] });

  /** A pass in `tx`, under the head lock (taken by its first statement). */
  async function chainIn(tx: Kysely<Database>, limit: number): Promise<ChainResult> {
    const { head, rows } = await auditStore.lockHeadAndReadPending(tx, limit);
    if (rows.length === 0) return nothing();
    const pass = await prepare(head, rows);
    await pass.write(tx);
    if (pass.rejected.length > 0) deps.onRejected?.(pass.rejected);
    return pass.result;
  }

  /** What this process's last pass of its own read with its move: the head it left and the rows pending then. */
  let ahead: auditStore.HeadAndPending | undefined;

  /**
   * A pass of its own, without a transaction: the head and the pending rows as one snapshot saw them (read by
   * the previous pass's move when it found any, else in a statement of their own, no lock taken), then one
   * statement that moves them only if the head is still the one read (`chainMove`) and, when the pass is full,
   * reads the rows for the next: under a backlog, one round trip a pass. Another pass that chained meanwhile (a reader catching up, a
   * second node that believes it sequences) moved the head: the statement writes nothing and this pass runs
   * again under the head lock. A pass that must write notes (rows that failed their MAC: the statement and the
   * notes' INSERT) runs under the lock too.
   */
  async function chainOwn(limit: number, fresh: boolean): Promise<ChainResult> {
    const locked = () => store.transaction((tx) => chainIn(tx, limit));
    const read = !fresh && ahead?.rows.length ? ahead : undefined;
    ahead = undefined;
    const { head, rows } = read ?? (await auditStore.readHeadAndPending(store.db, limit));
    if (rows.length === 0) return nothing();
    const pass = await prepare(head, rows.slice(0, limit), PREPARE_SLICE);
    if (pass.rejected.length > 0) return locked();
    try {
      // Only a full pass reads the next rows with its move: the loop goes on at once and uses them. After any
      // other the loop waits for a wake, and a woken pass reads afresh (`fresh`): rows read here went unused.
      ahead = await pass.write(store.db, rows.length >= limit ? limit : 0);
    } catch (error) {
      if (!auditStore.headMoved(error)) throw error;
      return locked();
    }
    return pass.result;
  }

  const chainPending: AuditLog["chainPending"] = (tx, limit = 2000, fresh = false) =>
    tx ? chainIn(tx, limit) : chainOwn(limit, fresh);

  async function catchUp(maxPasses = 50): Promise<number> {
    let total = 0;
    for (let pass = 0; pass < maxPasses; pass++) {
      if (!(await auditStore.anyPending(store.db))) break;
      const result = await chainPending();
      total += result.chained;
      if (result.chained + result.rejected === 0) break;
    }
    return total;
  }

  /** Chains everything committed in `tx` (holding the head lock: nothing else chains meanwhile). */
  async function chainAll(tx: Kysely<Database>): Promise<void> {
    // Bounded: under load others keep committing; what commits after this pass is the sequencer's.
    for (let pass = 0; pass < 10; pass++) {
      const result = await chainIn(tx, 5000);
      if (result.chained + result.rejected === 0) return;
    }
  }

  return {
    append,
    appendMany,
    appendManyWhere,
    appendUniform,
    // Nothing else to commit with: in the background mode the events' INSERT is its own transaction (one
    // statement, all rows or none; BEGIN and COMMIT would be two more round trips); inline, the
    // transaction chains them too.
    record: (actor, context, events) =>
      sequencing === "inline"
        ? store.transaction((tx) => append(tx, actor, context, events))
        : append(store.db, actor, context, events),
    sequencing,
    chainPending,
    catchUp,
    pendingStats: () => auditStore.pendingStats(store.db),
    anyPending: () => auditStore.anyPending(store.db),
    onPending(listener) {
      pendingListeners.push(listener);
    },

    async checkpoint() {
      return store.transaction(async (tx) => {
        await chainAll(tx);
        const head = await auditStore.lockHead(tx);
        if (head.seq === 0) return null;
        await signCheckpoint(tx, head);
        return { seq: head.seq };
      });
    },

    async anchor({ starting = false } = {}) {
      return store.transaction(async (tx) => {
        await chainAll(tx);
        const head = await auditStore.lockHead(tx);
        if (head.seq === 0) return null;
        const latest = await latestAnchor(tx);
        if (latest && latest.seq === head.seq && latest.hash === head.hash) {
          if (!starting || latest.every === every) return latest;
          await append(tx, AUDIT_ACTOR, NO_CONTEXT, {
            action: "audit.checkpoint_interval",
            outcome: "success",
            details: { from: latest.every, to: every },
          });
          await chainAll(tx);
          const changed = await auditStore.lockHead(tx);
          // The event may itself fall on a boundary, already signed when it was chained.
          if (changed.seq % every === 0) return (await latestAnchor(tx))!;
          return signCheckpoint(tx, changed);
        }
        return signCheckpoint(tx, head);
      });
    },

    latestAnchor: () => latestAnchor(store.db),

    async anchorsBetween(fromSeq, toSeq) {
      const rows = await auditStore.checkpointsBetween(store.db, fromSeq, toSeq);
      return rows.map(asAnchor).filter((anchor): anchor is AuditAnchor => anchor !== null);
    },

    async verify({ anchor, onProgress } = {}) {
      // What committed before the call is chained first (a pass of our own under the head lock), so a
      // verify right after a change covers it; what commits meanwhile is counted as pending.
      await catchUp();
      // Checkpoints first, then the head: a checkpoint commits with the head it covers, so every
      // checkpoint read here is at or below the head. Events appended later are left for the next run.
      const signed = await auditStore.listCheckpoints(store.db);
      const head = await auditStore.readHead(store.db);
      const checkpoints = signed.map((cp) => {
        const fields = {
          seq: Number(cp.seq),
          hash: cp.hash,
          every: cp.every,
          signedAt: new Date(cp.signed_at).toISOString(),
        };
        return {
          seq: fields.seq,
          hash: fields.hash,
          every: fields.every,
          signatureValid: keyring.verifyDetached("audit", cp.key_id, checkpointMessage(fields), cp.signature),
        };
      });
      const verifier = createChainVerifier(checkpoints, {
        every,
        ...(anchor && { anchor: { seq: anchor.seq, hash: anchor.hash, signatureValid: anchorSignatureValid(anchor) } }),
      });
      // Workers reading their own pages (`connectionUrl`) measured dearer in CPU per event: off (README).
      if (head.seq >= parallelFrom) await visitInParallel(store.db, head.seq, verifier, onProgress);
      else await visitForVerify(store.db, head.seq, verifier.push, onProgress);
      const result = verifier.finish(head);
      if (!result.ok) return result;
      const { count } = await auditStore.pendingStats(store.db);
      return count > 0 ? { ...result, pending: count } : result;
    },

    async read({ afterSeq = 0, limit = 1000, order = "asc", beforeSeq, ...filter }) {
      // Read-your-writes: what committed before this read is chained before it is read.
      await catchUp(5);
      const size = Math.min(limit, 10_000);
      const rows =
        order === "desc"
          ? await auditStore.pageBefore(store.db, beforeSeq, size, filter)
          : await auditStore.pageFrom(store.db, afterSeq, size, filter);
      return rows.map(auditStore.toEvent);
    },

    async count(filter, cap) {
      return auditStore.countEvents(store.db, filter, cap);
    },
  };
}
