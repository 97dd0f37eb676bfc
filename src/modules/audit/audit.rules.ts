/** Pure rules of the audit chain: canonical encoding, hashing, verification. */
import canonicalize from "canonicalize";
import { hash as digestOnce } from "node:crypto";
import type { AuditEvent, PendingAuditEvent, VerifyResult } from "./audit.types.js";

export const GENESIS_HASH = "0".repeat(64);

/** SHA-256 over the RFC 8785 canonical JSON of every field but the hash itself. */
export function hashEvent(event: Omit<AuditEvent, "hash">): string {
  // One-shot: no Hash object per event (verify hashes every event).
  return digestOnce("sha256", canonicalEvent(event), "hex");
}

const nullableString = (value: unknown) => value === null || typeof value === "string";

/** A character JSON.stringify escapes (or a surrogate, which it may): elsewhere it writes a string as is. */
// eslint-disable-next-line no-control-regex -- control characters are what JSON escapes
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * A string or null as RFC 8785 writes it (JSON.stringify's text). Most strings need no escape, and one
 * regular-expression test costs less than JSON.stringify's own scan and copy (verify's hot loop).
 */
const str = (value: string | null) =>
  value === null ? "null" : NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;

const SURROGATE = /[\ud800-\udfff]/;

/**
 * True when JSON.stringify writes `value` exactly as the canonicalizer does: every object's keys already
 * in sorted order (an integer-like key out of place fails: JavaScript lists those first), only finite
 * numbers, no surrogate in a string (the canonicalizer refuses a lone one; JSON.stringify escapes it),
 * and nothing but plain JSON values (what JSON.parse returns).
 */
function writtenInOrder(value: unknown): boolean {
  if (value === null) return true;
  switch (typeof value) {
    case "string":
      return !SURROGATE.test(value);
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value);
    case "object":
      break;
    default:
      return false;
  }
  if (Array.isArray(value)) {
    for (const item of value) if (!writtenInOrder(item)) return false;
    return true;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return false;
  let previous: string | undefined;
  for (const key in value) {
    if ((previous !== undefined && !(previous < key)) || SURROGATE.test(key)) return false;
    previous = key;
    if (!writtenInOrder((value as Record<string, unknown>)[key])) return false;
  }
  return true;
}

/** Nesting past which `canonicalJson` leaves a value to the canonicalizer (which reports a cycle as such). */
const MAX_DEPTH = 64;

/**
 * RFC 8785 canonical JSON of a plain JSON value, as `canonicalize` writes it, or undefined for anything
 * this does not write itself (a string with a surrogate, a non-finite number, an object with `toJSON` or
 * another prototype, a function, a symbol, a bigint, nesting past `MAX_DEPTH`): the caller then takes
 * the canonicalizer, which also decides what to refuse. Objects' keys are sorted the way it sorts them
 * (`Array.prototype.sort`, UTF-16 code units); properties holding undefined are left out and undefined
 * array items written as null, as it does. Expired activations' details (six keys, not in order) went
 * through the canonicalizer, ~10% of the process ending them (bench/README.md).
 */
export function canonicalJson(value: unknown, depth = 0): string | undefined {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return SURROGATE.test(value) ? undefined : str(value);
    case "number":
      return Number.isFinite(value) ? JSON.stringify(value) : undefined;
    case "boolean":
      return value ? "true" : "false";
    case "object":
      break;
    default:
      return undefined;
  }
  if (depth > MAX_DEPTH || typeof (value as { toJSON?: unknown }).toJSON === "function") return undefined;
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype) return undefined;
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const text = item === undefined ? "null" : canonicalJson(item, depth + 1);
      if (text === undefined) return undefined;
      out += i === 0 ? text : `,${text}`;
    }
    return `${out}]`;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return undefined;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  let sorted = true;
  for (let i = 1; i < keys.length; i++)
    if (!(keys[i - 1]! < keys[i]!)) {
      sorted = false;
      break;
    }
  if (!sorted) keys.sort();
  let out = "{";
  let first = true;
  for (const key of keys) {
    const item = record[key];
    if (item === undefined) continue;
    if (SURROGATE.test(key)) return undefined;
    const text = canonicalJson(item, depth + 1);
    if (text === undefined) return undefined;
    out += `${first ? "" : ","}${str(key)}:${text}`;
    first = false;
  }
  return `${out}}`;
}

/**
 * RFC 8785 canonical JSON of an event's details. Most details are small objects whose keys are in order
 * already: JSON.stringify writes them as the general canonicalizer would, at a fraction of its cost.
 * Others are written by `canonicalJson`; what it leaves goes through the canonicalizer.
 */
export function canonicalDetails(details: Record<string, unknown>): string {
  const canonical = writtenInOrder(details)
    ? JSON.stringify(details)
    : (canonicalJson(details) ?? canonicalize(details));
  if (canonical === undefined) throw new Error("audit event cannot be encoded");
  return canonical;
}

/**
 * The RFC 8785 canonical JSON of an event without its hash. The top-level keys are fixed, so they are
 * written in their sorted order directly (verify hashes every event: this is its hot loop); strings and
 * numbers serialize as JSON.stringify does, which is what RFC 8785 prescribes; `details` goes through
 * `canonicalDetails`. An event with a field of another type takes the general path throughout.
 */
export function canonicalEvent(event: Omit<AuditEvent, "hash">): string {
  const e = event;
  if (!Number.isSafeInteger(e.seq) || typeof e.prevHash !== "string" || !typedStrings(e)) return canonicalGeneral(e);
  return `${canonicalHead(e)}"prevHash":${str(e.prevHash)},"reason":${str(e.reason)},"seq":${e.seq},${canonicalTail(e)}}`;
}

/**
 * Every string field of a pending event is the string (or null) its type says. Field by field, no arrays:
 * this runs once per event in verify's loop.
 */
function typedStrings(e: PendingAuditEvent): boolean {
  return (
    typeof e.action === "string" &&
    typeof e.actor === "string" &&
    typeof e.id === "string" &&
    typeof e.outcome === "string" &&
    typeof e.time === "string" &&
    nullableString(e.actorId) &&
    nullableString(e.correlationId) &&
    nullableString(e.reason) &&
    nullableString(e.sourceIp) &&
    nullableString(e.subject) &&
    nullableString(e.userAgent)
  );
}

/** The canonical JSON's keys up to `outcome`, from the opening brace: `{"action":…,…,"outcome":…,`. */
const canonicalHead = (e: PendingAuditEvent) =>
  `{"action":${str(e.action)},"actor":${str(e.actor)},"actorId":${str(e.actorId)},` +
  `"correlationId":${str(e.correlationId)},"details":${canonicalDetails(e.details)},"id":${str(e.id)},` +
  `"outcome":${str(e.outcome)},`;

/** The canonical JSON's keys from `sourceIp` on, without the closing brace. */
const canonicalTail = (e: PendingAuditEvent) =>
  `"sourceIp":${str(e.sourceIp)},"subject":${str(e.subject)},"time":${str(e.time)},"userAgent":${str(e.userAgent)}`;

/**
 * The event's fields linked at `seq` after `prevHash`, in `AuditEvent`'s declaration order (the JSON lines
 * export's): only its fields, whatever else the object holds. Field by field, not spread: the sequencer
 * links every event (two spreads of fifteen fields cost more than writing its canonical JSON from the parts).
 */
export function linkedEvent(event: PendingAuditEvent, seq: number, prevHash: string, hash: string): AuditEvent {
  return {
    seq,
    id: event.id,
    time: event.time,
    actor: event.actor,
    actorId: event.actorId,
    action: event.action,
    subject: event.subject,
    outcome: event.outcome,
    reason: event.reason,
    correlationId: event.correlationId,
    sourceIp: event.sourceIp,
    userAgent: event.userAgent,
    details: event.details,
    prevHash,
    hash,
  };
}

/** The same through the general canonicalizer (the definition the fast path must match). */
export function canonicalGeneral(event: Omit<AuditEvent, "hash">): string {
  const { hash: _hash, ...fields } = linkedEvent(event, event.seq, event.prevHash, "");
  return canonicalOrThrow(fields);
}

function canonicalOrThrow(value: unknown): string {
  const canonical = canonicalize(value);
  if (canonical === undefined) throw new Error("audit event cannot be encoded");
  return canonical;
}

/**
 * The text a pending event's MAC covers: the RFC 8785 canonical JSON of every field it has before it is
 * chained. The sequencer chains a pending event only when its MAC verifies.
 */
export function pendingMessage(event: PendingAuditEvent): string {
  const parts = canonicalParts(event);
  return parts ? pendingMessageOf(parts) : pendingMessageGeneral(event);
}

/** The same through the general canonicalizer (the definition `pendingMessageOf` must match). */
export function pendingMessageGeneral(event: PendingAuditEvent): string {
  const { seq: _seq, prevHash: _prevHash, hash: _hash, ...fields } = linkedEvent(event, 0, "", "");
  return canonicalOrThrow({ v: "stint-audit-pending:v1", ...fields });
}

/**
 * A pending event's canonical JSON, written once and shared by the two texts made of it: the MAC's
 * (`pendingMessageOf`) and the hash's (`canonicalOf`, with seq and prevHash). Both sort the same keys, and
 * the hash's two extra keys fall between them (`prevHash` after `outcome`, `seq` after `reason`), so each
 * text is these three pieces with its own keys between. The sequencer writes them once per event, where
 * it used to write both texts (the MAC's through the general canonicalizer).
 */
export interface CanonicalParts {
  /** `{"action":…,…,"outcome":…,` */
  head: string;
  /** `"reason":…,` */
  reason: string;
  /** `"sourceIp":…,…,"userAgent":…` (no closing brace) */
  tail: string;
}

/** A top-level string with no surrogate, or null / a string with one (the general paths decide those). */
const plain = (value: string | null) => value === null || !SURROGATE.test(value);

/**
 * The parts of a pending event, or null when a field is not the plain string (or null) its type says or
 * holds a surrogate: those take `canonicalEvent` and `pendingMessageGeneral`, which decide as before
 * (the one escapes lone surrogates at the top level, the other refuses them). Throws as they do when the
 * details cannot be encoded.
 */
export function canonicalParts(e: PendingAuditEvent): CanonicalParts | null {
  if (
    !typedStrings(e) ||
    !plain(e.action) ||
    !plain(e.actor) ||
    !plain(e.actorId) ||
    !plain(e.correlationId) ||
    !plain(e.id) ||
    !plain(e.outcome) ||
    !plain(e.reason) ||
    !plain(e.sourceIp) ||
    !plain(e.subject) ||
    !plain(e.time) ||
    !plain(e.userAgent)
  )
    return null;
  return { head: canonicalHead(e), reason: `"reason":${str(e.reason)},`, tail: canonicalTail(e) };
}

/** `pendingMessage` from the parts. */
export function pendingMessageOf(parts: CanonicalParts): string {
  return `${parts.head}${parts.reason}${parts.tail},"v":"stint-audit-pending:v1"}`;
}

/** `canonicalEvent` from the parts, linked at `seq` after `prevHash`. */
export function canonicalOf(parts: CanonicalParts, seq: number, prevHash: string): string {
  return `${parts.head}"prevHash":${str(prevHash)},${parts.reason}"seq":${seq},${parts.tail}}`;
}

/**
 * Links `event` after `prev` (seq and hash) and computes its hash; from `parts` (the event's
 * `canonicalParts`) when given, so its canonical JSON is not written again.
 */
export function chain(
  event: Omit<AuditEvent, "seq" | "prevHash" | "hash">,
  prev: { seq: number; hash: string },
  parts?: CanonicalParts | null,
): AuditEvent {
  const seq = prev.seq + 1;
  const prevHash = prev.hash;
  const linked = linkedEvent(event, seq, prevHash, "");
  // The hash covers every field but itself (`canonicalEvent` never reads it).
  linked.hash =
    parts && Number.isSafeInteger(seq) && typeof prevHash === "string" && plain(prevHash)
      ? digestOnce("sha256", canonicalOf(parts, seq, prevHash), "hex")
      : hashEvent(linked);
  return linked;
}

/** A checkpoint as its signature covers it; `every` and `signedAt` are null for checkpoints signed before v2. */
export interface CheckpointFields {
  seq: number;
  hash: string;
  /** The checkpoint interval in force after this checkpoint. */
  every: number | null;
  signedAt: string;
}

/**
 * The text an audit checkpoint signature covers. v2 signs the interval and the time too, so a database
 * writer can change neither; v1 (seq and hash only) is still read for checkpoints signed before it.
 */
export function checkpointMessage(cp: CheckpointFields): string {
  if (cp.every === null) return `stint-audit-checkpoint:v1:${cp.seq}:${cp.hash}`;
  return `stint-audit-checkpoint:v2:${cp.seq}:${cp.hash}:${cp.every}:${cp.signedAt}`;
}

/** The seqs of the checkpoints an append from `fromSeq` (exclusive) to `toSeq` must sign: every multiple of `every`. */
export function boundariesCrossed(fromSeq: number, toSeq: number, every: number): number[] {
  const seqs: number[] = [];
  for (let seq = (Math.floor(fromSeq / every) + 1) * every; seq <= toSeq; seq += every) seqs.push(seq);
  return seqs;
}

export interface CheckpointCheck {
  seq: number;
  hash: string;
  every: number | null;
  signatureValid: boolean;
}

/**
 * The first seq at which a required checkpoint is missing, or undefined. The signer writes one at every
 * multiple of its interval, and each checkpoint states the interval it was signed under. The interval
 * changes only when a node starts, and a starting node first signs a checkpoint that states its interval
 * (see `AuditLog.anchor`); so the events after a checkpoint, up to the next one, were written under the
 * interval the earlier one states, and no multiple of it may fall strictly between them. After the last
 * checkpoint, none may fall up to the head. Before the first checkpoint its own interval applies (the
 * configured `every` with none): the one false report left is a first node that crashes before the log's
 * first checkpoint (the anchor writer signs within its interval) and restarts with another interval.
 * A v1 checkpoint (signed before intervals were) states none: the next one's, or `every`, stands in.
 */
export function firstMissingCheckpoint(
  checkpoints: readonly Pick<CheckpointCheck, "seq" | "every">[],
  /** null: only between checkpoints. */
  headSeq: number | null,
  every: number,
): number | undefined {
  const sorted = [...checkpoints].sort((a, b) => a.seq - b.seq);
  const nextMultiple = (after: number, interval: number) => (Math.floor(after / interval) + 1) * interval;
  let previous: { seq: number; every: number | null } = { seq: 0, every: null };
  for (const cp of sorted) {
    const interval = previous.every ?? cp.every;
    if (interval !== null && nextMultiple(previous.seq, interval) < cp.seq) return nextMultiple(previous.seq, interval);
    previous = cp;
  }
  if (headSeq === null) return undefined;
  const due = nextMultiple(previous.seq, previous.every ?? every);
  return due <= headSeq ? due : undefined;
}

/** An anchor held outside the database: a signed head the chain must still contain. */
export interface AnchorCheck {
  seq: number;
  hash: string;
  signatureValid: boolean;
}

/**
 * Incremental verifier: give it the checkpoints, feed events in seq order,
 * then the head row. The first problem found names its seq.
 * With `every`, a checkpoint missing where the signer must have written one breaks the chain; with
 * `anchor`, so does a chain that no longer holds the anchored head (edited, re-chained or truncated).
 */
export function createChainVerifier(
  checkpoints: readonly CheckpointCheck[] = [],
  options: { every?: number; anchor?: AnchorCheck } = {},
) {
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let count = 0;
  let broken: { seq: number; problem: string } | undefined;
  const bySeq = new Map(checkpoints.map((cp) => [cp.seq, cp]));
  const { anchor } = options;

  const fail = (seq: number, problem: string) => {
    broken ??= { seq, problem };
  };
  if (anchor && !anchor.signatureValid)
    fail(anchor.seq, `the anchor at seq ${anchor.seq} was not signed by this Stint's audit key`);
  // Between checkpoints the list alone tells; after the last one it takes the head (in finish).
  const missingBetween =
    options.every === undefined ? undefined : firstMissingCheckpoint(checkpoints, null, options.every);

  return {
    /** Returns false once the chain is broken (callers may stop reading). */
    push(event: AuditEvent): boolean {
      if (broken) return false;
      if (event.seq > expectedSeq) {
        fail(expectedSeq, `event ${expectedSeq} is missing`);
        return false;
      }
      // Events come in seq order and every seq below the expected one was taken once: a second row of it.
      if (event.seq < expectedSeq) {
        fail(event.seq, `event ${event.seq} is duplicated: a second row has seq ${event.seq}`);
        return false;
      }
      if (event.prevHash !== prevHash) {
        fail(event.seq, `event ${event.seq} does not point at the hash of event ${event.seq - 1}`);
        return false;
      }
      if (hashEvent(event) !== event.hash) {
        fail(event.seq, `event ${event.seq} was altered: its content does not match its hash`);
        return false;
      }
      const cp = bySeq.get(event.seq);
      if (cp && !cp.signatureValid) fail(cp.seq, `the checkpoint at ${cp.seq} has an invalid signature`);
      else if (cp && cp.hash !== event.hash) fail(cp.seq, `event ${cp.seq} differs from its signed checkpoint`);
      else if (event.seq === missingBetween)
        fail(event.seq, `the signed checkpoint required at seq ${event.seq} is missing`);
      else if (anchor && event.seq === anchor.seq && anchor.hash !== event.hash)
        fail(event.seq, `event ${event.seq} differs from the anchored head: the log was rewritten since the anchor`);
      if (broken) return false;
      prevHash = event.hash;
      expectedSeq += 1;
      count += 1;
      return true;
    },
    /** The seqs whose hashes `pushVerified` needs: checkpoints, the anchor, a missing checkpoint's; ascending. */
    seqsOfInterest(): number[] {
      const seqs = new Set(bySeq.keys());
      if (anchor) seqs.add(anchor.seq);
      if (missingBetween !== undefined) seqs.add(missingBetween);
      return [...seqs].sort((a, b) => a - b);
    },
    /**
     * A run of events checked elsewhere (each one's hash recomputed from its fields, each linked to the one
     * before it, `count` of them from `firstSeq` to `lastSeq`), with the hashes at the `wanted` seqs of
     * `seqsOfInterest` in it: joined to the chain when `push` would have taken every one of them. False
     * (nothing changed) otherwise: the caller then pushes them one by one, which names the problem.
     */
    pushVerified(run: {
      firstSeq: number;
      firstPrevHash: string;
      lastSeq: number;
      lastHash: string;
      count: number;
      wanted: readonly number[];
      hashes: readonly string[];
    }): boolean {
      if (broken || run.firstSeq !== expectedSeq || run.firstPrevHash !== prevHash) return false;
      if (run.lastSeq - run.firstSeq + 1 !== run.count || run.wanted.length !== run.hashes.length) return false;
      for (let i = 0; i < run.wanted.length; i++) {
        const seq = run.wanted[i]!;
        const hash = run.hashes[i]!;
        if (seq < run.firstSeq || seq > run.lastSeq) return false;
        const cp = bySeq.get(seq);
        if (cp && (!cp.signatureValid || cp.hash !== hash)) return false;
        if (seq === missingBetween) return false;
        if (anchor && seq === anchor.seq && anchor.hash !== hash) return false;
      }
      prevHash = run.lastHash;
      expectedSeq = run.lastSeq + 1;
      count += run.count;
      return true;
    },
    isBroken: () => broken !== undefined,
    finish(head: { seq: number; hash: string }): VerifyResult {
      const lastSeq = expectedSeq - 1;
      if (!broken) {
        if (head.seq > lastSeq)
          fail(lastSeq + 1, `events ${lastSeq + 1}..${head.seq} are missing from the end of the log`);
        else if (head.seq < lastSeq) fail(head.seq + 1, `event ${head.seq + 1} was appended outside the chain head`);
        else if (head.hash !== prevHash) fail(head.seq, `event ${head.seq} does not match the chain head`);
        const beyond = checkpoints.find((cp) => cp.seq > lastSeq);
        if (beyond) fail(lastSeq + 1, `a signed checkpoint covers event ${beyond.seq}, which is missing`);
        if (anchor && anchor.seq > lastSeq)
          fail(
            lastSeq + 1,
            `the log ends at seq ${lastSeq} but the anchor covers seq ${anchor.seq}: events were removed since the anchor`,
          );
        const missingTail =
          options.every === undefined ? undefined : firstMissingCheckpoint(checkpoints, lastSeq, options.every);
        if (missingTail !== undefined)
          fail(missingTail, `the signed checkpoint required at seq ${missingTail} is missing`);
      }
      if (broken) return { ok: false, count, brokenSeq: broken.seq, problem: broken.problem };
      return {
        ok: true,
        count,
        headSeq: lastSeq,
        checkpoints: checkpoints.length,
        ...(anchor && { anchorSeq: anchor.seq }),
      };
    },
  };
}
