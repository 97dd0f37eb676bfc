/**
 * The access index's pure rules: whatever order, repetition or replay its messages arrive in, it ends where
 * the database is (what ended stays ended, the expiry is the latest one); a reload never loses what arrived
 * during its read; the heartbeat notices a skipped ping; junk from the channel is ignored.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applyMessage,
  drift,
  emptyHeartbeat,
  emptyState,
  heardPing,
  heartbeatFresh,
  liveActivationOf,
  liveActivationsOf,
  mergeSnapshot,
  parseMessage,
  renamedRoles,
  type IndexState,
  type Touched,
  type TxSnapshot,
} from "./access-index.rules.js";
import type { AccessMessage, ActiveActivation } from "./access-index.types.js";

const uuid = (n: number) => `00000000-0000-7000-8000-${n.toString(16).padStart(12, "0")}`;
const PRINCIPAL = uuid(900);
const ROLE = uuid(901);
const NOW = 1_000_000;

const act = (id: number, exp: number): AccessMessage => ({
  t: "act",
  at: 0,
  id: uuid(id),
  pid: PRINCIPAL,
  pn: "alice",
  rid: ROLE,
  rn: `role-${id}`,
  exp,
  since: NOW - 1,
});
const end = (id: number): AccessMessage => ({ t: "end", at: 0, id: uuid(id) });
/** A snapshot that saw every transaction below `xmin` and those in [xmin, xmax) not listed as running. */
const snap = (xmin: number, xmax: number, running: number[] = []): TxSnapshot => ({
  xmin,
  xmax,
  xip: new Set(running),
});

/** One activation's true history as the database commits it: activated, maybe extended, maybe ended. */
const history = fc
  .record({
    id: fc.integer({ min: 1, max: 6 }),
    exp: fc.integer({ min: NOW - 500, max: NOW + 5000 }),
    extensions: fc.array(fc.integer({ min: 1, max: 1000 }), { maxLength: 3 }),
    ended: fc.boolean(),
  })
  .map(({ id, exp, extensions, ended }) => {
    const messages: AccessMessage[] = [act(id, exp)];
    let current = exp;
    for (const by of extensions) messages.push(act(id, (current += by)));
    if (ended) messages.push(end(id));
    return { id, messages, finalExp: current, ended };
  });

/** Histories with distinct ids. */
const histories = fc.uniqueArray(history, { selector: (h) => h.id, maxLength: 6 });

function finalLive(hs: { id: number; finalExp: number; ended: boolean }[], now: number) {
  return hs
    .filter((h) => !h.ended && h.finalExp > now)
    .map((h) => h.id)
    .sort();
}

function liveIds(state: ReturnType<typeof emptyState>, now: number) {
  return liveActivationsOf(state, PRINCIPAL, now)
    .map((a) => Number.parseInt(a.requestId.slice(-12), 16))
    .sort();
}

describe("access index rules", () => {
  it("ends where the database is, whatever order messages arrive in, even repeated", () => {
    fc.assert(
      fc.property(histories, fc.func(fc.integer()), fc.array(fc.nat(), { maxLength: 10 }), (hs, order, repeats) => {
        const all = hs.flatMap((h) => h.messages);
        // Any interleaving and any duplicates (a replay after a reload, a message heard twice).
        const delivered = [...all, ...repeats.map((r) => all[r % Math.max(1, all.length)]!).filter(Boolean)];
        const shuffled = delivered
          .map((m, i) => ({ m, k: order(i) }))
          .sort((a, b) => a.k - b.k)
          .map((x) => x.m);
        const state = emptyState();
        for (const message of shuffled) applyMessage(state, message, NOW);
        expect(liveIds(state, NOW)).toEqual(finalLive(hs, NOW));
        for (const h of hs.filter((x) => !x.ended))
          expect(state.activations.get(uuid(h.id))?.expiresAt).toBe(h.finalExp);
      }),
    );
  });

  it("an ended activation never comes back: an act after its end is ignored", () => {
    const state = emptyState();
    applyMessage(state, act(1, NOW + 60_000), NOW);
    applyMessage(state, end(1), NOW);
    applyMessage(state, act(1, NOW + 120_000), NOW);
    expect(liveActivationsOf(state, PRINCIPAL, NOW)).toEqual([]);
  });

  it("an expiry needs no message: past expiresAt the activation is not live", () => {
    const state = emptyState();
    applyMessage(state, act(1, NOW + 1000), NOW);
    expect(liveActivationsOf(state, PRINCIPAL, NOW + 999)).toHaveLength(1);
    expect(liveActivationsOf(state, PRINCIPAL, NOW + 1000)).toEqual([]);
  });

  it("a reload drops an activation whose end never arrived, and counts it as drift", () => {
    const live = emptyState();
    applyMessage(live, act(1, NOW + 60_000), NOW);
    applyMessage(live, act(2, NOW + 60_000), NOW);
    const snapshot = { tx: snap(100, 100), activations: [live.activations.get(uuid(2))!], principals: [] };
    const touched: Touched = { activations: new Set(), principals: new Set(), roles: new Set() };
    const next = mergeSnapshot(snapshot, live, [], NOW);
    expect(liveIds(next, NOW)).toEqual([2]);
    expect(drift(live, next, touched, NOW)).toEqual({ extra: 1, missing: 0 });
  });

  it("the heartbeat is fresh only while a recent ping was heard, and a skipped ping means lost messages", () => {
    const hb = emptyHeartbeat();
    expect(heartbeatFresh(hb, 0, 1000)).toBe(false);
    hb.outstanding.set(1, 100);
    expect(heardPing(hb, 1)).toEqual({ lost: false });
    expect(heartbeatFresh(hb, 1100, 1000)).toBe(true);
    expect(heartbeatFresh(hb, 1101, 1000)).toBe(false);
    hb.outstanding.set(2, 200);
    hb.outstanding.set(3, 300);
    expect(heardPing(hb, 3)).toEqual({ lost: true }); // 2 was committed and never heard
    expect(hb.heardSentAt).toBe(300);
    expect(heardPing(hb, 2)).toEqual({ lost: false }); // forgotten: heard late or twice changes nothing
  });

  it("ignores anything on the channel that is not a well-formed message", () => {
    const junk = ["", "null", "42", "[]", "{", '{"t":"act","id":"x"}', '{"t":"nope"}', '{"t":"end","id":7}'];
    for (const payload of junk) expect(parseMessage(payload)).toBeNull();
    fc.assert(
      fc.property(fc.string(), (payload) => {
        expect(() => parseMessage(payload)).not.toThrow();
      }),
    );
    const message = act(1, NOW);
    expect(parseMessage(JSON.stringify(message))).toEqual(message);
    expect(parseMessage(JSON.stringify({ ...message, x: 4_294_967_396 }))).toEqual({ ...message, x: 4_294_967_396 });
    for (const x of [-1, 1.5, "7", 2 ** 60]) expect(parseMessage(JSON.stringify({ ...message, x }))).toEqual(message);
    const principal: AccessMessage = {
      t: "prn",
      at: 5,
      p: { id: PRINCIPAL, name: "alice", kind: "user", status: "active", platformRoles: ["user"] },
    };
    expect(parseMessage(JSON.stringify(principal))).toEqual(principal);
    expect(parseMessage(JSON.stringify({ ...principal, p: { ...principal.p, status: "root" } }))).toBeNull();
  });

  it("lists a principal's live activations by role name", () => {
    const state = emptyState();
    const activations: ActiveActivation[] = [3, 1, 2].map((n) => ({
      requestId: uuid(n),
      principalId: PRINCIPAL,
      principalName: "alice",
      roleId: ROLE,
      roleName: `role-${n}`,
      expiresAt: NOW + n,
      activatedAt: NOW,
    }));
    for (const a of activations)
      applyMessage(
        state,
        {
          t: "act",
          at: 0,
          id: a.requestId,
          pid: a.principalId,
          pn: a.principalName,
          rid: a.roleId,
          rn: a.roleName,
          exp: a.expiresAt,
          since: a.activatedAt,
        },
        NOW,
      );
    expect(liveActivationsOf(state, PRINCIPAL, NOW).map((a) => a.roleName)).toEqual(["role-1", "role-2", "role-3"]);
    expect(liveActivationsOf(state, PRINCIPAL, NOW + 2).map((a) => a.roleName)).toEqual(["role-3"]);
  });

  it("finds a principal's live activation of one role as the list does (the check API's one lookup)", () => {
    // Role names shared between activations (role-0, role-1): the one found is the one the sorted list finds.
    const sharedName = (m: AccessMessage): AccessMessage =>
      m.t === "act" ? { ...m, rn: `role-${Number.parseInt(m.id.slice(-12), 16) % 2}` } : m;
    fc.assert(
      fc.property(
        histories.chain((hs) =>
          fc.shuffledSubarray(
            hs.flatMap((h) => h.messages),
            { minLength: 0 },
          ),
        ),
        fc.integer({ min: NOW - 600, max: NOW + 6000 }),
        (messages, now) => {
          const state = emptyState();
          for (const m of messages) applyMessage(state, sharedName(m), NOW);
          for (const roleName of ["role-0", "role-1", "role-2"]) {
            const listed = liveActivationsOf(state, PRINCIPAL, now).find((a) => a.roleName === roleName) ?? null;
            expect(liveActivationOf(state, PRINCIPAL, roleName, now)).toBe(listed);
          }
          expect(liveActivationOf(state, uuid(999), "role-0", now)).toBeNull();
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("the role-name check, per role", () => {
  /** The check as it was: every activation whose role name differs from the database's. */
  function walk(state: IndexState, names: ReadonlyMap<string, string>) {
    const renamed = new Map<string, string>();
    for (const a of state.activations.values()) {
      const name = names.get(a.roleId);
      if (name !== undefined && name !== a.roleName) renamed.set(a.roleId, name);
    }
    return renamed;
  }
  const roles = [uuid(801), uuid(802)];
  const op = fc.oneof(
    fc.record({
      kind: fc.constant("act" as const),
      id: fc.integer({ min: 1, max: 6 }),
      role: fc.integer({ min: 0, max: 1 }),
      name: fc.constantFrom("a", "b", "c"),
      exp: fc.integer({ min: NOW + 1, max: NOW + 5000 }),
    }),
    fc.record({ kind: fc.constant("end" as const), id: fc.integer({ min: 1, max: 6 }) }),
    fc.record({
      kind: fc.constant("role" as const),
      role: fc.integer({ min: 0, max: 1 }),
      name: fc.constantFrom("a", "b", "c"),
    }),
  );

  it("finds every role the walk over activations found; its renames leave every activation with the database's name", () => {
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 30 }),
        fc.constantFrom("a", "b", "c"),
        fc.constantFrom("a", "b", "c"),
        (ops, n0, n1) => {
          const state = emptyState();
          for (const o of ops) {
            const message: AccessMessage =
              o.kind === "act"
                ? { ...(act(o.id, o.exp) as AccessMessage & { t: "act" }), rid: roles[o.role]!, rn: o.name }
                : o.kind === "end"
                  ? end(o.id)
                  : { t: "role", at: 0, id: roles[o.role]!, name: o.name };
            applyMessage(state, message, NOW);
          }
          for (const [roleId, role] of state.byRole) {
            const held = [...state.activations.values()].filter((a) => a.roleId === roleId);
            expect(role.count).toBe(held.length);
            if (!role.mixed) for (const a of held) expect(a.roleName).toBe(role.name);
          }
          expect(state.byRole.size).toBe(new Set([...state.activations.values()].map((a) => a.roleId)).size);
          const names = new Map([
            [roles[0]!, n0],
            [roles[1]!, n1],
          ]);
          const found = renamedRoles(state, names);
          for (const [roleId, name] of walk(state, names)) expect(found.get(roleId)).toBe(name);
          for (const [roleId, name] of found) applyMessage(state, { t: "role", at: 0, id: roleId, name }, NOW);
          expect(walk(state, names).size).toBe(0);
          expect(renamedRoles(state, names).size).toBe(0);
        },
      ),
    );
  });
});
