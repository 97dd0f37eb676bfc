/**
 * Who hears what the access index applies: caches built on top of it (`subscribe`: every message, and
 * `onReset` when some may have been lost) and, in the index's own words rather than its message shapes,
 * callers waiting for an activation (`onActivation`), the scheduler's wake-up (`onActivated`) and benchmarks
 * (`onEnded`).
 */
import { activationOf } from "./access-index.rules.js";
import type { AccessMessage, AccessMessageOf, ActiveActivation } from "./access-index.types.js";

/** Hears the same messages as the index (caches built on top of it) and when it lost some. */
export interface AccessSubscriber {
  onMessage?(message: AccessMessage): void;
  /** Messages may have been lost: drop everything cached. */
  onReset?(): void;
}

/**
 * Told when an activation of a principal and role (by name) became active or was extended, and, with null,
 * when messages may have been lost (look again at the database).
 */
export type ActivationListener = (activation: ActiveActivation | null) => void;

export function createIndexListeners() {
  const subscribers = new Set<AccessSubscriber>();
  /** `onActivation`'s listeners by principal and role name; `onActivated`'s and `onEnded`'s. */
  const byPair = new Map<string, Set<ActivationListener>>();
  const activated = new Set<(activation: ActiveActivation) => void>();
  const ended = new Set<(requestId: string) => void>();
  const pairKey = (principalId: string, roleName: string) => `${principalId}\n${roleName}`;

  function activation(message: AccessMessageOf<"act">) {
    const pair = byPair.size === 0 ? undefined : byPair.get(pairKey(message.pid, message.rn));
    if (!pair && activated.size === 0) return;
    const news = activationOf(message);
    for (const listener of [...(pair ?? [])]) listener(news);
    for (const listener of activated) listener(news);
  }

  return {
    /** A message the index applied (or heard and found already applied by its last reload). */
    deliver(message: AccessMessage) {
      for (const subscriber of subscribers) subscriber.onMessage?.(message);
      if (message.t === "act") activation(message);
      else if (message.t === "end") for (const listener of ended) listener(message.id);
    },

    /** Messages may have been lost: caches drop what they hold, waiters look again. */
    reset() {
      for (const subscriber of subscribers) subscriber.onReset?.();
      for (const pair of [...byPair.values()]) for (const listener of [...pair]) listener(null);
    },

    subscribe(subscriber: AccessSubscriber): () => void {
      subscribers.add(subscriber);
      return () => subscribers.delete(subscriber);
    },

    /**
     * Calls `listener` whenever an activation of this principal and role (by name) becomes active or is
     * extended, here or on any node, and with null when messages may have been lost. Returns the unsubscribe.
     */
    onActivation(principalId: string, roleName: string, listener: ActivationListener): () => void {
      const key = pairKey(principalId, roleName);
      let pair = byPair.get(key);
      if (!pair) byPair.set(key, (pair = new Set()));
      pair.add(listener);
      return () => {
        pair.delete(listener);
        if (pair.size === 0 && byPair.get(key) === pair) byPair.delete(key);
      };
    },

    /** Calls `listener` whenever any activation becomes active or is extended. Returns the unsubscribe. */
    onActivated(listener: (activation: ActiveActivation) => void): () => void {
      activated.add(listener);
      return () => activated.delete(listener);
    },

    /** Calls `listener` with the request id of every activation heard to end. Returns the unsubscribe. */
    onEnded(listener: (requestId: string) => void): () => void {
      ended.add(listener);
      return () => ended.delete(listener);
    },

    /** `onActivation`'s listeners now (tests). */
    activationListeners: () => [...byPair.values()].reduce((sum, pair) => sum + pair.size, 0),
  };
}
