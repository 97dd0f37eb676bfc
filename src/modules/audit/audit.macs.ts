/**
 * The MACs of pending events (`audit_pending.mac`: proof that a Stint node wrote the row), made and checked. A
 * process remembers the MAC texts and MACs of the events it wrote, by id, until a chaining pass of its own takes
 * them: a pending row whose MAC text and MAC are exactly those verifies without an HMAC, since its MAC is the
 * HMAC of that text. Anything else (another node's row, a row changed in the database, one forgotten) is
 * checked by the keyring in constant time, as always.
 */
import type { Keyring } from "../keys/keys.service.js";
import { pendingMessageGeneral, pendingMessageOf, type CanonicalParts } from "./audit.rules.js";
import type { PendingAuditEvent } from "./audit.types.js";

/** The text a pending event's MAC covers (`pendingMessage`), from its parts when it has them. */
export function macMessage(event: PendingAuditEvent, parts: CanonicalParts | null): string {
  return parts ? pendingMessageOf(parts) : pendingMessageGeneral(event);
}

/** At most this many written events remembered: all forgotten at once past it (e.g. on a node that does not chain). */
export const MACS_KEPT = 20_000;

export function createPendingMacs(keyring: Pick<Keyring, "mac" | "macValid">) {
  const written = new Map<string, { message: string; mac: string }>();
  return {
    /** The MAC of an event this process writes (`message`: its MAC text), remembered under its id. */
    mac(id: string, message: string): string {
      const mac = keyring.mac("audit-pending", message);
      if (written.size >= MACS_KEPT) written.clear();
      written.set(id, { message, mac });
      return mac;
    },
    /**
     * Whether `mac` is the MAC of `message` (a pending row's, id `id`): without an HMAC when this process wrote
     * that very text under that very MAC (the text compared first: the MAC of a text this process wrote is in
     * the database already, nothing to learn from the comparison), else checked by the keyring. Forgets `id`.
     */
    valid(id: string, message: string, mac: string): boolean {
      const own = written.get(id);
      if (own === undefined) return keyring.macValid("audit-pending", message, mac);
      written.delete(id);
      if (own.message === message && own.mac === mac) return true;
      return keyring.macValid("audit-pending", message, mac);
    },
    /** Events remembered now (tests). */
    size: () => written.size,
  };
}
