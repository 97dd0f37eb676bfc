/**
 * A batch of activations ended in one transaction (the scheduler's expiry) travels as a few `ends`
 * notifications of packed ids, not one per activation: another node's index must still hear every one
 * of them as an `end`, in order, and stop answering for each.
 */
import { afterEach, describe, expect, it } from "vitest";
import { openAppStore, type AppStore } from "../../db/index.js";
import { systemClock } from "../../lib/clock.js";
import { newId } from "../../lib/ids.js";
import { MAX_PACKED_IDS } from "../../lib/packed-ids.js";
import { ENGINES, freshStore, type TestStore } from "../../testing/engines.js";
import { createAccessIndex } from "./access-index.service.js";
import { ACCESS_CHANNEL, payloadsOf } from "./access-index.store.js";
import { parseMessages } from "./access-index.rules.js";
import type { AccessMessage } from "./access-index.types.js";
import { until } from "../../testing/until.js";

describe("ended activations in one message per batch", () => {
  it("payloads: a run of ends is packed, other messages stay as they are, order kept", () => {
    const ends = Array.from({ length: 2 * MAX_PACKED_IDS + 5 }, () => ({ t: "end" as const, at: 7, id: newId() }));
    const prn: AccessMessage = {
      t: "prn",
      at: 7,
      p: { id: newId(), name: "ann", kind: "user", status: "disabled", platformRoles: [] },
    };
    const messages: AccessMessage[] = [...ends.slice(0, 3), prn, ...ends.slice(3)];
    const payloads = payloadsOf(messages);
    expect(payloads).toHaveLength(1 + 1 + 3);
    for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThan(8000);
    expect(payloads.flatMap(parseMessages)).toEqual(messages);
    // An id that is not a UUID as the index writes them goes as its own message.
    const odd = [{ t: "end" as const, at: 1, id: "0190D000-0000-7000-8000-00000000000A" }, ...ends.slice(0, 2)];
    expect(payloadsOf(odd).flatMap(parseMessages)).toEqual(odd);
  });

  it("junk batches are ignored, not half applied", () => {
    for (const payload of [
      '{"t":"ends","at":1,"ids":"abc"}',
      '{"t":"ends","at":1}',
      '{"t":"ends",',
      '{"t":"ends","ids":7}',
    ])
      expect(parseMessages(payload)).toEqual([]);
  });
});

describe.each(ENGINES)("ended activations across nodes on %s", (engine) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("a batch of N ends sent in one transaction reaches another node's index as N ends", async () => {
    const fresh: TestStore = await freshStore(engine);
    cleanups.push(fresh.cleanup);
    const storeA: AppStore = fresh.store;
    // PostgreSQL: the other node has its own pool and listening connection; PGlite has one process.
    let storeB: AppStore = storeA;
    if (engine === "postgres") {
      storeB = await openAppStore({ databaseUrl: fresh.url! });
      cleanups.push(() => storeB.close());
    }
    const a = createAccessIndex({ store: storeA, clock: systemClock, node: "a", crossCheckMs: 600_000 });
    const b = createAccessIndex({ store: storeB, clock: systemClock, node: "b", crossCheckMs: 600_000 });
    await a.start();
    cleanups.push(() => a.stop());
    await b.start();
    cleanups.push(() => b.stop());

    const N = 2 * MAX_PACKED_IDS + 100;
    const ids = Array.from({ length: N }, newId);
    const principalId = newId();
    const roleId = newId();
    const now = Date.now();
    await storeA.transaction((tx) =>
      a.sendMany(
        tx,
        ids.map((id) => ({
          t: "act",
          id,
          pid: principalId,
          pn: "alice",
          rid: roleId,
          rn: "db-reader",
          exp: now + 3_600_000,
          since: now,
        })),
      ),
    );
    await until("node b holds every activation", () => ids.every((id) => b.view()?.activation(id) != null));

    const heard: string[] = [];
    b.subscribe({ onMessage: (message) => void (message.t === "end" && heard.push(message.id)) });
    let notifications = 0;
    const stopCounting = await storeB.listen(ACCESS_CHANNEL, (payload) => {
      if (!payload.includes('"t":"ping"')) notifications++;
    });
    cleanups.push(stopCounting);

    await storeA.transaction((tx) =>
      a.sendMany(
        tx,
        ids.map((id) => ({ t: "end", id })),
      ),
    );
    await until("node b heard every end", () => heard.length >= N);
    expect(heard).toEqual(ids);
    for (const id of ids) expect(b.view()!.activation(id)).toBeNull();
    expect(b.view()!.activeFor(principalId)).toEqual([]);
    // Three notifications for the batch (at most MAX_PACKED_IDS ids each), where it used to be N.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(notifications).toBe(Math.ceil(N / MAX_PACKED_IDS));
  });
});
