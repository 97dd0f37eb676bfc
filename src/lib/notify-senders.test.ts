import { describe, expect, it } from "vitest";
import { createSenderGate, OTHERS_TTL_MS, OURS_TTL_MS } from "./notify-senders.js";

/** A gate over a fake pg_stat_activity: `roles` maps a pid to whether it is ours; a missing pid has exited. */
function gate(roles: Map<number, boolean>) {
  let clock = 0;
  const lookups: number[] = [];
  const heard: string[] = [];
  const counts = { rejected: 0, unverified: 0 };
  let release: (() => void) | undefined;
  let hold = false;
  const g = createSenderGate({
    now: () => clock,
    lookup: async (pid) => {
      lookups.push(pid);
      if (hold) await new Promise<void>((r) => (release = r));
      return roles.has(pid) ? roles.get(pid)! : null;
    },
    deliver: (payload) => heard.push(payload),
    onRejected: () => (counts.rejected += 1),
    onUnverified: () => (counts.unverified += 1),
  });
  const settle = () => new Promise((r) => setTimeout(r, 0));
  return {
    g,
    lookups,
    heard,
    counts,
    settle,
    advance: (ms: number) => (clock += ms),
    holdLookups: () => (hold = true),
    releaseLookup: () => {
      hold = false;
      release?.();
    },
  };
}

describe("sender gate", () => {
  it("delivers Stint's own notifications and drops another role's, counted", async () => {
    const t = gate(
      new Map([
        [10, true],
        [66, false],
      ]),
    );
    t.g.heard(10, "ours");
    t.g.heard(66, "forged");
    await t.settle();
    expect(t.heard).toEqual(["ours"]);
    expect(t.counts).toEqual({ rejected: 1, unverified: 0 });
  });

  it("looks a sender up once while its verdict holds: the hot path is a map lookup", async () => {
    const t = gate(
      new Map([
        [10, true],
        [66, false],
      ]),
    );
    t.g.heard(10, "a");
    await t.settle();
    for (let i = 0; i < 100; i++) t.g.heard(10, "b");
    for (let i = 0; i < 100; i++) t.g.heard(66, "x"); // a flood from one foreign backend
    await t.settle();
    expect(t.lookups).toEqual([10, 66]);
    expect(t.heard).toHaveLength(101);
    expect(t.counts.rejected).toBe(100);
    t.advance(OTHERS_TTL_MS);
    t.g.heard(66, "x");
    await t.settle();
    expect(t.lookups).toEqual([10, 66, 66]);
    t.advance(OURS_TTL_MS);
    t.g.heard(10, "c");
    await t.settle();
    expect(t.lookups).toEqual([10, 66, 66, 10]);
  });

  it("keeps the order heard: a message behind a lookup waits for it", async () => {
    const t = gate(
      new Map([
        [10, true],
        [11, true],
      ]),
    );
    t.g.heard(10, "1");
    await t.settle();
    t.holdLookups();
    t.g.heard(11, "2"); // unknown sender: waits for its lookup
    t.g.heard(10, "3"); // known, but behind it
    await t.settle();
    expect(t.heard).toEqual(["1"]);
    t.releaseLookup();
    await t.settle();
    expect(t.heard).toEqual(["1", "2", "3"]);
  });

  it("a sender that exited before the check is dropped and reported unverified", async () => {
    const t = gate(new Map([[10, true]]));
    t.g.heard(77, "from a backend gone");
    t.g.heard(10, "after it");
    await t.settle();
    expect(t.heard).toEqual(["after it"]);
    expect(t.counts).toEqual({ rejected: 0, unverified: 1 });
  });
});
