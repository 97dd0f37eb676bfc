/**
 * A reload ordered against its snapshot: every interleaving of a transaction's commit (before or after the
 * reload's snapshot) with when its message is heard (before, during or after the reload), for activations
 * and revocations and for principals disabled and enabled again; and a property over random histories,
 * transaction ids handed out in any order, snapshots with transactions still running, and any split of what
 * was heard before, during and after the reload: the state right after the reload is the database's as of
 * the newest change applied, and in the end it is the database's.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applyMessage,
  emptyState,
  liveActivationsOf,
  mergeSnapshot,
  parseTxSnapshot,
  reflectedIn,
  visibleTo,
  type IndexState,
  type TxSnapshot,
} from "./access-index.rules.js";
import type { AccessMessage, PrincipalEntry } from "./access-index.types.js";

const uuid = (n: number) => `00000000-0000-7000-8000-${n.toString(16).padStart(12, "0")}`;
const ALICE = uuid(900);
const ROLE = uuid(901);
const NOW = 1_000_000;
const HOUR = 3_600_000;

const act = (id: number, x: number, exp = NOW + HOUR): AccessMessage => ({
  t: "act",
  at: 0,
  x,
  id: uuid(id),
  pid: ALICE,
  pn: "alice",
  rid: ROLE,
  rn: `role-${id}`,
  exp,
  since: NOW - 1,
});
const end = (id: number): AccessMessage => ({ t: "end", at: 0, id: uuid(id) });
const principal = (status: "active" | "disabled", id = ALICE): PrincipalEntry => ({
  id,
  name: id === ALICE ? "alice" : `user-${id.slice(-4)}`,
  kind: "user",
  status,
  platformRoles: ["user"],
});
const prn = (status: "active" | "disabled", x: number): AccessMessage => ({ t: "prn", at: 0, x, p: principal(status) });
const snap = (xmin: number, xmax: number, running: number[] = []): TxSnapshot => ({
  xmin,
  xmax,
  xip: new Set(running),
});

/** The state the database's truth gives after applying `messages` (commit order) to nothing. */
function truth(messages: readonly AccessMessage[]): IndexState {
  const state = emptyState();
  for (const m of messages) applyMessage(state, m, NOW);
  return state;
}

/** What a reload reads: the truth after the commits its snapshot saw (ended activations are not read). */
function read(seen: readonly AccessMessage[], tx: TxSnapshot) {
  const t = truth(seen);
  return { tx, activations: [...t.activations.values()], principals: [...t.principals.values()] };
}

/** A node: the live state, a reload's journal, and the snapshot filter, as the service keeps them. */
function node() {
  let state = emptyState();
  let seenTx: TxSnapshot | null = null;
  let journal: AccessMessage[] | null = null;
  return {
    hear(m: AccessMessage) {
      if (reflectedIn(seenTx, m)) return;
      applyMessage(state, m, NOW);
      journal?.push(m);
    },
    beginReload: () => (journal = []),
    finishReload(snapshot: ReturnType<typeof read>) {
      state = mergeSnapshot(snapshot, state, journal!, NOW);
      seenTx = snapshot.tx;
      journal = null;
    },
    get state() {
      return state;
    },
  };
}

const liveIds = (state: IndexState) => liveActivationsOf(state, ALICE, NOW).map((a) => a.requestId);
const status = (state: IndexState) => state.principals.get(ALICE)?.status;

describe("a reload ordered against its snapshot", () => {
  it("reads pg_current_snapshot()'s text and tells which transactions it saw", () => {
    const s = parseTxSnapshot("100:105:101,103")!;
    expect([99, 100, 102, 104].map((x) => visibleTo(s, x))).toEqual([true, true, true, true]);
    expect([101, 103, 105, 900].map((x) => visibleTo(s, x))).toEqual([false, false, false, false]);
    expect(parseTxSnapshot("7:7:")).toEqual(snap(7, 7));
    for (const junk of ["", "1:2", "1:2:3:4", "a:2:", "1:2:x", "-1:2:", "1:2:3,,4"])
      expect(parseTxSnapshot(junk)).toBeNull();
    // A message without a transaction id (an end, a role rename, an older node's) is never taken as read.
    expect(reflectedIn(s, end(1))).toBe(false);
    expect(reflectedIn(null, act(1, 1))).toBe(false);
  });

  it("an activation committed before the snapshot, heard during the reload, does not undo its revocation", () => {
    const n = node();
    n.beginReload();
    // Activated (tx 10) and revoked (the end's tx, 11) before the snapshot; the revocation's message lags.
    n.hear(act(1, 10));
    n.finishReload(read([act(1, 10), end(1)], snap(12, 12)));
    expect(liveIds(n.state)).toEqual([]);
    n.hear(end(1));
    expect(liveIds(n.state)).toEqual([]);
  });

  it("an activation committed before the snapshot, heard only after the reload, does not undo its revocation", () => {
    const n = node();
    n.beginReload();
    n.finishReload(read([act(1, 10), end(1)], snap(12, 12)));
    n.hear(act(1, 10));
    expect(liveIds(n.state)).toEqual([]);
  });

  it("an activation committed after the snapshot is applied, heard before the read, during or after the reload", () => {
    // A reload's journal starts when it begins, before its read: a message heard before that was sent by a
    // transaction the snapshot sees (a notification is delivered only once its transaction is visible).
    for (const when of ["before", "during", "after"] as const) {
      const n = node();
      n.beginReload();
      if (when === "before") n.hear(act(1, 20));
      if (when === "during") n.hear(act(1, 20));
      n.finishReload(read([], snap(15, 15)));
      if (when === "after") n.hear(act(1, 20));
      expect(liveIds(n.state), when).toEqual([uuid(1)]);
    }
  });

  it("a transaction still running at the snapshot, below its xmax, is applied when heard", () => {
    const n = node();
    n.beginReload();
    n.hear(act(1, 12)); // tx 12 was running when the snapshot was taken (xip), it committed afterwards
    n.finishReload(read([act(2, 13)], snap(12, 14, [12])));
    expect(liveIds(n.state).sort()).toEqual([uuid(1), uuid(2)]);
    n.hear(act(2, 13)); // seen: a no-op
    n.hear(act(3, 14)); // at xmax: not seen, applied
    expect(liveIds(n.state).sort()).toEqual([uuid(1), uuid(2), uuid(3)]);
  });

  it("a revocation after the snapshot ends an activation the snapshot saw, heard during or after the reload", () => {
    for (const when of ["during", "after"] as const) {
      const n = node();
      n.beginReload();
      if (when === "during") n.hear(end(1));
      n.finishReload(read([act(1, 10)], snap(11, 11)));
      if (when === "after") n.hear(end(1));
      expect(liveIds(n.state), when).toEqual([]);
      n.hear(act(1, 10)); // its activation's message, heard late: nothing comes back
      expect(liveIds(n.state), when).toEqual([]);
    }
  });

  it("a revocation before the snapshot, heard before it, keeps an activation ended whatever arrives late", () => {
    const n = node();
    n.hear(act(1, 10));
    n.hear(end(1));
    n.beginReload();
    n.hear(act(1, 10)); // a duplicate of the activation's message (its own node applied it already)
    n.finishReload(read([act(1, 10), end(1)], snap(12, 12)));
    expect(liveIds(n.state)).toEqual([]);
  });

  it("an enable committed before a disable, heard during or after the reload, leaves the user disabled", () => {
    for (const when of ["during", "after"] as const) {
      const n = node();
      n.beginReload();
      if (when === "during") n.hear(prn("active", 30));
      n.finishReload(read([prn("active", 30), prn("disabled", 31)], snap(32, 32)));
      if (when === "after") n.hear(prn("active", 30));
      expect(status(n.state), when).toBe("disabled");
      n.hear(prn("disabled", 31));
      expect(status(n.state), when).toBe("disabled");
    }
  });

  it("a disable committed after the snapshot wins over the snapshot's active user", () => {
    const n = node();
    n.beginReload();
    n.hear(prn("disabled", 41));
    n.finishReload(read([prn("active", 40)], snap(41, 42, [41])));
    expect(status(n.state)).toBe("disabled");
  });

  it("right after the reload it is the database as of the newest change applied; in the end, the database", () => {
    // Histories of activations (activated, extended, maybe ended) and of the principal (status flips).
    const activation = fc
      .record({
        exp: fc.integer({ min: NOW - 500, max: NOW + 5000 }),
        extensions: fc.array(fc.integer({ min: 1, max: 1000 }), { maxLength: 2 }),
        ended: fc.boolean(),
      })
      .map(({ exp, extensions, ended }) => {
        const steps: ("act" | "end")[] = ["act", ...extensions.map(() => "act" as const)];
        if (ended) steps.push("end");
        return { exp, extensions, steps };
      });
    fc.assert(
      fc.property(
        fc.array(activation, { maxLength: 4 }),
        fc.array(fc.boolean(), { maxLength: 4 }),
        fc.func(fc.integer()),
        fc.func(fc.integer()),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        (activations, flips, interleave, xidOrder, cutSeed, heardSeed, afterSeed, startedSeed) => {
          // Each entity's changes in its own order (row locks), interleaved at random into one commit order.
          const queues: AccessMessage[][] = activations.map((a, i) => {
            let exp = a.exp;
            return a.steps.map((step, k) =>
              step === "end" ? end(i + 1) : act(i + 1, 0, k === 0 ? exp : (exp += a.extensions[k - 1]!)),
            );
          });
          queues.push(flips.map((disabled) => prn(disabled ? "disabled" : "active", 0)));
          const commits: AccessMessage[] = [];
          for (let k = 0; queues.some((q) => q.length > 0); k++) {
            const open = queues.filter((q) => q.length > 0);
            commits.push(open[Math.abs(interleave(k)) % open.length]!.shift()!);
          }
          // Transaction ids in any order relative to commits (a transaction takes its id at its first write).
          const xids = commits.map((_, i) => ({ i, k: xidOrder(i) })).sort((a, b) => a.k - b.k || a.i - b.i);
          const ordered = commits.map((m) => ({ ...m }));
          for (const [rank, { i }] of xids.entries()) if (ordered[i]!.t !== "end") ordered[i]!.x = 100 + rank; // ends carry none
          const xOf = (i: number) => 100 + xids.findIndex((e) => e.i === i);
          // The snapshot saw the first `cut` commits; those after it that had started (below xmax) were running.
          const n = ordered.length;
          const cut = cutSeed % (n + 1);
          const seenX = ordered.slice(0, cut).map((_, i) => xOf(i));
          const unseenX = ordered.slice(cut).map((_, i) => xOf(cut + i));
          const started = unseenX.filter((x) => (x + startedSeed) % 2 === 0);
          const xmax = Math.max(100, ...seenX, ...started) + 1;
          const running = unseenX.filter((x) => x < xmax);
          const tx = snap(Math.min(xmax, ...running), xmax, running);
          for (const [i, m] of ordered.entries()) if (m.x !== undefined) expect(visibleTo(tx, m.x)).toBe(i < cut);
          // Heard in commit order: before the reload began (only what the snapshot saw), during it, after it.
          const heardBefore = heardSeed % (cut + 1);
          const heardBy = heardBefore + (afterSeed % (n - heardBefore + 1));
          const node_ = node();
          for (const m of ordered.slice(0, heardBefore)) node_.hear(m);
          node_.beginReload();
          for (const m of ordered.slice(heardBefore, heardBy)) node_.hear(m);
          node_.finishReload(read(ordered.slice(0, cut), tx));
          const asOf = truth(ordered.slice(0, Math.max(cut, heardBy)));
          expect(liveIds(node_.state).sort()).toEqual(liveIds(asOf).sort());
          expect(status(node_.state)).toBe(status(asOf));
          for (const m of ordered.slice(heardBy)) node_.hear(m);
          const final = truth(ordered);
          expect(liveIds(node_.state).sort()).toEqual(liveIds(final).sort());
          for (const id of liveIds(final))
            expect(node_.state.activations.get(id)?.expiresAt).toBe(final.activations.get(id)?.expiresAt);
          expect(status(node_.state)).toBe(status(final));
        },
      ),
      { numRuns: 300 },
    );
  });
});
