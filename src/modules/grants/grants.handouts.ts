/**
 * What this node's provisioning knew of a minted login when it activated it (`HandedOut`): the grant, the login,
 * its sealed password and where to connect, kept in memory by request id for a moment, so the holder's
 * credentials read that waits (`?wait=`), woken by that activation, answers with one statement: its audit
 * event's INSERT, which the database writes only if the copy is still what it holds (`HANDED_OUT_IS_CURRENT`,
 * checked in the INSERT: the grant and its activation active and unexpired, the caller's, with that password). A
 * read without a copy (another node's activation, an entry gone) reads the database as before. Only sealed
 * passwords are kept, as the database holds them.
 */

/** A minted login as its provisioning handed it out. */
export interface HandedOut {
  requestId: string;
  grantId: string;
  roleName: string;
  login: string;
  sealed: { ciphertext: string; wrapped_key: string; kek_version: number; pool_id?: string | null };
  target: { kind: string; address: string | null; name: string };
}

/** How long a copy waits for its read: the holder asks right after its submit, or reads the database later. */
const KEEP_MS = 30_000;
/** At most this many copies are kept (the oldest go first): a burst of activations nobody reads stays bounded. */
const MAX_KEPT = 1_000;

export function createHandouts(now: () => number = Date.now) {
  const kept = new Map<string, { copy: HandedOut; at: number }>();

  return {
    /** Keeps the copy of an activation about to commit (before it does: its read may be woken at once). */
    remember(copy: HandedOut): void {
      const at = now();
      for (const [id, entry] of kept) {
        if (at - entry.at < KEEP_MS && kept.size < MAX_KEPT) break;
        kept.delete(id);
      }
      kept.set(copy.requestId, { copy, at });
    },
    /** The copy of this activation, once: a read that cannot use it reads the database. */
    take(requestId: string): HandedOut | undefined {
      const entry = kept.get(requestId);
      kept.delete(requestId);
      return entry && now() - entry.at < KEEP_MS ? entry.copy : undefined;
    },
    /** Copies kept now (tests). */
    size: () => kept.size,
  };
}

export type Handouts = ReturnType<typeof createHandouts>;
