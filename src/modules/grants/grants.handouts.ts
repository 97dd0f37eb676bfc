/**
 * What this node's provisioning knew of a minted login when it activated it (`HandedOut`): the grant, the login,
 * its sealed password and where to connect, kept in memory by request id for a moment, so the holder's
 * credentials read that waits (`?wait=`), woken by that activation, answers with one statement: its audit
 * event's INSERT, which the database writes only if the copy is still what it holds (`HANDED_OUT_IS_CURRENT`,
 * checked in the INSERT: the grant and its activation active and unexpired, the caller's, with that password). A
 * read without a copy (another node's activation, an entry gone) reads the database as before. Only sealed
 * passwords are kept, as the database holds them.
 *
 * It also knows which (principal, role) pairs this node is provisioning a minted login for now, so a read that
 * arrives meanwhile (the holder asks right after its submit) waits for the activation without reading the
 * database first: the job says so before its activation may commit, so a wait armed before that cannot miss
 * its wake-up. A job that fails sends no wake-up: the read looks at the database after its usual recheck
 * interval.
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

const pairKey = (principalName: string, roleName: string) => `${principalName}\n${roleName}`;

export function createHandouts(now: () => number = Date.now) {
  const kept = new Map<string, { copy: HandedOut; at: number }>();
  /** Provisioning jobs running on this node, by principal and role name; the pairs whose activation may commit. */
  const running = new Map<string, number>();
  const activating = new Set<string>();

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
    /**
     * A provisioning job of a minted login for this pair starts on this node: `activating` before its activation
     * may commit (after its copy is kept), `end` when it is over.
     */
    provisioning(principalName: string, roleName: string): { activating(): void; end(): void } {
      const key = pairKey(principalName, roleName);
      running.set(key, (running.get(key) ?? 0) + 1);
      let ended = false;
      return {
        activating: () => activating.add(key),
        end() {
          if (ended) return;
          ended = true;
          const left = (running.get(key) ?? 1) - 1;
          if (left > 0) running.set(key, left);
          else {
            running.delete(key);
            activating.delete(key);
          }
        },
      };
    },
    /**
     * Whether a read may wait without looking at the database first: this node is provisioning the pair and no
     * job of it has reached its activation yet (so none of it can have committed and been missed).
     */
    onlyComing(principalName: string, roleName: string): boolean {
      const key = pairKey(principalName, roleName);
      return running.has(key) && !activating.has(key);
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
