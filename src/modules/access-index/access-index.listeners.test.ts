/**
 * The index's subscriptions in its own words, on both engines: `onActivation` wakes the listeners of that
 * principal and role only (with null when messages may have been lost), `onActivated` and `onEnded` hear
 * every activation and end; a tracked transaction's messages reach them once, at commit, and the node's own
 * echo is not read again.
 */
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.js";
import { newId } from "../../lib/ids.js";
import { ENGINES, freshStore } from "../../testing/engines.js";
import { createAccessIndex, type AccessIndex } from "./access-index.service.js";
import type { ActiveActivation } from "./access-index.types.js";
import { until } from "../../testing/until.js";

describe.each(ENGINES)("access index subscriptions on %s", (engine) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("onActivation, onActivated, onEnded: once per change, at commit; the echo is not read again", async () => {
    const fresh = await freshStore(engine);
    cleanups.push(fresh.cleanup);
    // A minute of silence allowed: this is about subscriptions, not the heartbeat (on PostgreSQL the index
    // vouches for itself only once it heard its first ping, which a loaded host can take a while to deliver).
    const index: AccessIndex = createAccessIndex({
      store: fresh.store,
      clock: systemClock,
      crossCheckMs: 600_000,
      maxSilenceMs: 60_000,
    });
    await index.start();
    cleanups.push(() => index.stop());
    await until("the index vouches for itself", () => index.current());
    const tracked = index.tracked(fresh.store);
    const alice = newId();
    const requestId = newId();
    const heard = {
      pair: [] as (ActiveActivation | null)[],
      other: 0,
      activated: 0,
      ended: [] as string[],
      messages: 0,
    };
    const stopPair = index.onActivation(alice, "db-reader", (activation) => heard.pair.push(activation));
    const stopOther = index.onActivation(alice, "db-admin", () => (heard.other += 1));
    index.onActivated(() => (heard.activated += 1));
    index.onEnded((id) => heard.ended.push(id));
    index.subscribe({ onMessage: (message) => void (message.t !== "ping" && (heard.messages += 1)) });
    const exp = Date.now() + 3_600_000;

    await tracked.transaction((tx) =>
      index.send(tx, {
        t: "act",
        id: requestId,
        pid: alice,
        pn: "alice",
        rid: newId(),
        rn: "db-reader",
        exp,
        since: 1,
      }),
    );
    // Applied at commit, before the call returned.
    expect(index.view()?.activation(requestId)?.expiresAt).toBe(exp);
    expect(heard.pair).toEqual([
      expect.objectContaining({ requestId, principalId: alice, roleName: "db-reader", expiresAt: exp }),
    ]);
    await until("the echo came back", () => index.stats().echoesAwaited === 0);

    await tracked.transaction((tx) => index.sendMany(tx, [{ t: "end", id: requestId }]));
    expect(index.view()?.activation(requestId)).toBeNull();
    await until("the echo came back", () => index.stats().echoesAwaited === 0);
    // Once each: the node's own echoes were skipped, not applied and delivered again.
    expect(heard).toMatchObject({ other: 0, activated: 1, ended: [requestId], messages: 2 });
    expect(heard.pair).toHaveLength(1);

    index.lose("test");
    expect(heard.pair.at(-1)).toBeNull();
    stopPair();
    stopOther();
    expect(index.activationListeners()).toBe(0);
  });
});
