/**
 * The messages of the `stint_sessions` channel, as text: an activation's end (every node aborts its
 * sessions), a session killed by an administrator, and a batch of activations ended in one transaction
 * (the scheduler's expiries): one `activations` message for up to `MAX_PACKED_IDS` of them, their ids packed
 * and their role names listed once, where each used to be a notification of its own (a batch of 500 was
 * 500 notifications for the database to queue and every node to read). Socket-free: payloads in, messages
 * out.
 */
import { MAX_PACKED_IDS, packIds, unpackIds } from "../../lib/packed-ids.js";

/** An activation ended: its sessions end everywhere. */
export interface ActivationEnded {
  type: "activation";
  requestId: string;
  role: string;
  state: string;
  by: string;
  reason: string;
  at: number;
}

export type BusMessage = ActivationEnded | { type: "kill"; sessionId: string; by: string; reason: string; at: number };

/** NOTIFY takes payloads under 8,000 bytes: a batch message stays below this. */
const MAX_PAYLOAD_BYTES = 7500;

/**
 * The payloads for activations ended in one transaction, in order. Consecutive ones with the same state,
 * `by` and reason share an `activations` message while it stays under `MAX_PAYLOAD_BYTES`; one that fits
 * no batch (a very long reason or role name, an id that is not a UUID) goes as its own `activation`.
 */
export function endedPayloads(ended: readonly Omit<ActivationEnded, "type">[]): string[] {
  const payloads: string[] = [];
  let i = 0;
  while (i < ended.length) {
    const first = ended[i]!;
    const header = { type: "activations", state: first.state, by: first.by, reason: first.reason, at: first.at };
    let bytes = Buffer.byteLength(JSON.stringify(header)) + 32; // `"roles":[],"r":[],"ids":""` and commas
    const roles: string[] = [];
    const roleIndex = new Map<string, number>();
    const r: number[] = [];
    const ids: string[] = [];
    while (i < ended.length && ids.length < MAX_PACKED_IDS) {
      const e = ended[i]!;
      if (e.state !== first.state || e.by !== first.by || e.reason !== first.reason) break;
      let index = roleIndex.get(e.role);
      const roleBytes = index === undefined ? Buffer.byteLength(JSON.stringify(e.role)) + 1 : 0;
      const grow = 22 + String(index ?? roles.length).length + 1 + roleBytes;
      if (bytes + grow > MAX_PAYLOAD_BYTES) break;
      if (index === undefined) {
        index = roles.length;
        roles.push(e.role);
        roleIndex.set(e.role, index);
      }
      bytes += grow;
      r.push(index);
      ids.push(e.requestId);
      i++;
    }
    const packed = ids.length > 1 ? packIds(ids) : null;
    if (packed !== null) {
      payloads.push(JSON.stringify({ ...header, roles, r, ids: packed }));
      continue;
    }
    // Not a batch (one alone, or an id that is not a UUID): each as its own message.
    if (ids.length === 0) ids.push(ended[i++]!.requestId);
    for (let k = i - ids.length; k < i; k++)
      payloads.push(JSON.stringify({ ...ended[k]!, type: "activation" } satisfies ActivationEnded));
  }
  return payloads;
}

const isString = (v: unknown): v is string => typeof v === "string";

/** A payload as the messages it carries (an `activations` batch as one `activation` each); empty when junk. */
export function parseBus(payload: string): BusMessage[] {
  let m: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(payload);
    if (typeof parsed !== "object" || parsed === null) return [];
    m = parsed as Record<string, unknown>;
  } catch {
    return [];
  }
  const at = typeof m.at === "number" && Number.isFinite(m.at) ? m.at : Date.now();
  switch (m.type) {
    case "kill":
      return isString(m.sessionId) && isString(m.by) && isString(m.reason)
        ? [{ type: "kill", sessionId: m.sessionId, by: m.by, reason: m.reason, at }]
        : [];
    case "activation":
      return isString(m.requestId) && isString(m.role) && isString(m.state) && isString(m.by) && isString(m.reason)
        ? [{ type: "activation", requestId: m.requestId, role: m.role, state: m.state, by: m.by, reason: m.reason, at }]
        : [];
    case "activations": {
      const ids = unpackIds(m.ids);
      const { roles, r, state, by, reason } = m;
      if (ids === null || !isString(state) || !isString(by) || !isString(reason)) return [];
      if (!Array.isArray(roles) || !roles.every(isString) || !Array.isArray(r) || r.length !== ids.length) return [];
      const out: BusMessage[] = [];
      for (let k = 0; k < ids.length; k++) {
        const role: unknown = roles[r[k] as number];
        if (!isString(role)) return [];
        out.push({ type: "activation", requestId: ids[k]!, role, state, by, reason, at });
      }
      return out;
    }
    default:
      return [];
  }
}
