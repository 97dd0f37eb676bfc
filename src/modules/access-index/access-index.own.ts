/**
 * A node's own notifications. A transaction run through `tracked` applies its messages on this node right
 * after COMMIT; its notifications then come back over the channel. Those of acts and ends carry a tag, `o`:
 * `<token>.<n>` (the node's random token, a number), written right after `t`, so that the echo of one already
 * applied is skipped before it is parsed. One heard before the COMMIT returned here is applied then, from the
 * messages sent (not parsed either), and not again at commit.
 *
 * Only acts and ends: they merge the same in any order (an end is terminal, an act only moves the expiry
 * later), so applying one at commit and not again when its echo comes, after or before another node's message
 * about the same activation, leaves the state the two applies would. A principal change replaces the entry:
 * its echo (in commit order on the channel) is still read, and puts it back after a local apply that came late.
 */
import { randomBytes } from "node:crypto";
import * as indexStore from "./access-index.store.js";
import type { AccessMessage } from "./access-index.types.js";

/** Messages as services write them: `at` is added when sent. */
export type AccessMessageBody = AccessMessage extends infer M
  ? M extends AccessMessage
    ? Omit<M, "at">
    : never
  : never;

/** One notification of a tracked transaction: its messages, applied once (at commit or when heard). */
export interface OwnNotification {
  /** Its tag's number; 0 for one sent untagged (its echo is read as any other message). */
  n: number;
  messages: AccessMessage[];
  applied: boolean;
}

export function createOwnNotifications(deps: {
  apply(message: AccessMessage): void;
  /** An echo applied when heard: its lag is observed as another node's message's is. */
  heard(at: number): void;
}) {
  const pendingByTx = new WeakMap<object, OwnNotification[]>();
  /**
   * Tagged notifications whose echo has not come yet, by number. Those whose echo never comes (messages lost,
   * a caller that did not send them) are dropped by `forgetApplied` at every reload.
   */
  const awaited = new Map<number, OwnNotification>();
  const token = randomBytes(9).toString("base64url");
  const echoMark = `","o":"${token}.`;
  let lastN = 0;

  /** To be applied on this node when `tx` commits (nothing when `tx` is not tracked). */
  function register(tx: object, notification: OwnNotification) {
    const pending = pendingByTx.get(tx);
    if (!pending) return;
    pending.push(notification);
    if (notification.n > 0) awaited.set(notification.n, notification);
  }

  return {
    register,

    /**
     * `bodies` as the messages of the notifications they travel in (`notificationsOf`), tagged in a tracked
     * transaction when they are acts or ends, and registered unless `registered` is false (the caller
     * registers it once its statement sent it).
     */
    of(tx: object, bodies: readonly AccessMessageBody[], registered = true): OwnNotification[] {
      const at = Date.now();
      const tracked = pendingByTx.has(tx);
      const groups = indexStore.notificationsOf(bodies.map((body) => ({ ...body, at }) as AccessMessage));
      return groups.map((messages) => {
        const t = messages[0]!.t;
        let notification: OwnNotification = { n: 0, messages, applied: false };
        if (tracked && (t === "act" || t === "end")) {
          const n = ++lastN;
          const o = `${token}.${n}`;
          // `o` right after `t` in the payload: `t` is written first, then the tag, then the rest.
          const tagged = messages.map((m) => Object.assign({ t: m.t, o }, m) as AccessMessage);
          notification = { n, messages: tagged, applied: false };
        }
        if (registered) register(tx, notification);
        return notification;
      });
    },

    /** Whether `payload` is this node's own notification, already applied or applied now: then it is done. */
    echo(payload: string): boolean {
      // '{"t":"<type>","o":"<token>.<n>",…': the type is a short word, the tag follows it.
      const typeEnd = payload.indexOf('"', 6);
      if (typeEnd === -1 || !payload.startsWith(echoMark, typeEnd)) return false;
      const from = typeEnd + echoMark.length;
      const notification = awaited.get(Number(payload.slice(from, payload.indexOf('"', from))));
      if (!notification) return false;
      if (notification.applied) {
        awaited.delete(notification.n);
        return true;
      }
      // Heard before the COMMIT returned here: applied now; `transaction` forgets it at commit.
      notification.applied = true;
      deps.heard(notification.messages[0]!.at);
      for (const message of notification.messages) deps.apply(message);
      return true;
    },

    /** `inner`'s transaction, whose notifications are applied on this node once it committed. */
    async transaction<Tx extends object, T>(
      inner: (fn: (tx: Tx) => Promise<T>) => Promise<T>,
      fn: (tx: Tx) => Promise<T>,
    ): Promise<T> {
      const sent: OwnNotification[] = [];
      let result: T;
      try {
        result = await inner((tx) => {
          pendingByTx.set(tx, sent);
          return fn(tx);
        });
      } catch (error) {
        // Rolled back, or a COMMIT whose outcome is unknown: if it did commit, the echo is read as any other.
        for (const notification of sent)
          if (awaited.get(notification.n) === notification) awaited.delete(notification.n);
        throw error;
      }
      for (const notification of sent) {
        if (notification.applied) awaited.delete(notification.n);
        else {
          notification.applied = true;
          for (const message of notification.messages) deps.apply(message);
        }
      }
      return result;
    },

    /**
     * At a reload: forgets the echoes still awaited of notifications applied here (lost, or on their way; one
     * that comes is then parsed and merged as any other message).
     */
    forgetApplied() {
      for (const [n, notification] of awaited) if (notification.applied) awaited.delete(n);
    },

    /** Tagged notifications whose echo has not come yet (tests). */
    awaited: () => awaited.size,
  };
}
