/**
 * A node's own notifications (`access-index.own.ts`): applied once, at commit or when the echo comes first,
 * never parsed again; in every order of the commit returning, the echo and another node's message about the
 * same activation, the state is the one applying the echo too would give; a principal change's echo is still
 * read (its order matters); a transaction whose COMMIT failed has its echo read as any other message.
 */
import { describe, expect, it } from "vitest";
import { applyMessage, emptyState, parseMessages, type IndexState } from "./access-index.rules.js";
import { createOwnNotifications, type AccessMessageBody } from "./access-index.own.js";
import { payloadsOfNotification } from "./access-index.store.js";
import type { AccessMessage } from "./access-index.types.js";

const uuid = (n: number) => `00000000-0000-7000-8000-${n.toString(16).padStart(12, "0")}`;
const NOW = Date.now();
const HOUR = 3_600_000;
const R = uuid(1);
const ALICE = uuid(900);
const act = (exp: number) =>
  ({ t: "act", id: R, pid: ALICE, pn: "alice", rid: uuid(901), rn: "db", exp, since: NOW }) as const;
const end = { t: "end", id: R } as const;
const prn = (status: "active" | "disabled"): AccessMessageBody => ({
  t: "prn",
  p: { id: ALICE, name: "alice", kind: "user", status, platformRoles: [] },
});

type Step = "commit" | "echo" | "theirs";
const ORDERS: Step[][] = [
  ["commit", "echo", "theirs"],
  ["commit", "theirs", "echo"],
  ["echo", "commit", "theirs"],
  ["echo", "theirs", "commit"],
  ["theirs", "commit", "echo"],
  ["theirs", "echo", "commit"],
];

/** What the state says about the activation and the principal. */
const summary = (state: IndexState) => ({
  expiresAt: state.activations.get(R)?.expiresAt ?? null,
  ended: state.ended.has(R),
  status: state.principals.get(ALICE)?.status ?? null,
});

/** A payload heard from another node: parsed and applied, as `receive` does. */
const hear = (state: IndexState, payload: string) => {
  for (const message of parseMessages(payload)) applyMessage(state, message, NOW);
};
const payloadOf = (body: AccessMessageBody) => JSON.stringify({ ...body, at: NOW });

/**
 * One node: `ours` sent in a tracked transaction, `theirs` heard from another node, the steps in `order`.
 * Returns the state and how often each of our messages was applied.
 */
async function run(initial: AccessMessageBody[], ours: AccessMessageBody, theirs: AccessMessageBody, order: Step[]) {
  const state = emptyState();
  for (const body of initial) hear(state, payloadOf(body));
  const applied: AccessMessage[] = [];
  const own = createOwnNotifications({
    apply(message) {
      applied.push(message);
      applyMessage(state, message, NOW);
    },
    heard: () => undefined,
  });
  let commit = () => {};
  const committed = new Promise<void>((resolve) => (commit = resolve));
  let payloads: string[] = [];
  const tx = {};
  const transaction = own.transaction(
    async (fn: (tx: object) => Promise<void>) => {
      await fn(tx);
      await committed;
    },
    async (t) => {
      payloads = own.of(t, [ours]).flatMap((n) => payloadsOfNotification(n.messages));
    },
  );
  await Promise.resolve();
  let parsedEchoes = 0;
  for (const step of order) {
    if (step === "commit") {
      commit();
      await transaction;
    } else if (step === "echo") {
      for (const payload of payloads)
        if (!own.echo(payload)) {
          parsedEchoes += 1;
          hear(state, payload);
        }
    } else hear(state, payloadOf(theirs));
  }
  return { state, applied: applied.length, parsedEchoes, awaited: own.awaited() };
}

/** The node as it was before: our messages applied at commit and, parsed, again when their echo comes. */
function before(initial: AccessMessageBody[], ours: AccessMessageBody, theirs: AccessMessageBody, order: Step[]) {
  const state = emptyState();
  for (const body of initial) hear(state, payloadOf(body));
  for (const step of order)
    if (step === "commit") applyMessage(state, { ...ours, at: NOW } as AccessMessage, NOW);
    else hear(state, payloadOf(step === "echo" ? ours : theirs));
  return state;
}

describe("a node's own acts and ends", () => {
  const cases: [string, AccessMessageBody, AccessMessageBody][] = [
    ["our extension, their later extension", act(NOW + 2 * HOUR), act(NOW + 3 * HOUR)],
    ["our extension, their earlier extension", act(NOW + 2 * HOUR), act(NOW + 1.5 * HOUR)],
    ["our extension, their end", act(NOW + 2 * HOUR), end],
    ["our end, their extension", end, act(NOW + 3 * HOUR)],
    ["our end, their end", end, end],
  ];
  for (const [name, ours, theirs] of cases)
    it(`${name}: applied once, the echo unread, the state as applying it again gives, in every order`, async () => {
      for (const order of ORDERS) {
        const initial = [act(NOW + HOUR)];
        const result = await run(initial, ours, theirs, order);
        const when = order.join(" → ");
        expect(result.applied, when).toBe(1);
        expect(result.parsedEchoes, when).toBe(0);
        expect(result.awaited, when).toBe(0);
        expect(summary(result.state), when).toEqual(summary(before(initial, ours, theirs, order)));
      }
    });

  it("a batch of ends is one tagged notification, skipped as a whole", async () => {
    const ids = [uuid(11), uuid(12), uuid(13)];
    const initial = ids.map((id) => ({ ...act(NOW + HOUR), id }));
    const ends = ids.map((id) => ({ t: "end" as const, id }));
    const state = emptyState();
    for (const body of initial) hear(state, payloadOf(body));
    let applied = 0;
    const own = createOwnNotifications({
      apply: (message) => {
        applied += 1;
        applyMessage(state, message, NOW);
      },
      heard: () => undefined,
    });
    let payloads: string[] = [];
    await own.transaction(
      (fn: (tx: object) => Promise<void>) => fn({}),
      async (tx) => {
        payloads = own.of(tx, ends).flatMap((n) => payloadsOfNotification(n.messages));
      },
    );
    expect(payloads).toHaveLength(1);
    expect(payloads[0]).toMatch(/^\{"t":"ends","o":"[\w-]+\.\d+",/);
    expect(own.echo(payloads[0]!)).toBe(true);
    expect(applied).toBe(3);
    expect(ids.map((id) => state.activations.has(id))).toEqual([false, false, false]);
  });
});

describe("what is still read", () => {
  it("a principal change's echo: it puts our change back after their earlier one heard late", async () => {
    // Theirs committed first (enabled), ours after (disabled): the channel delivers theirs before our echo.
    const inOrder = ORDERS.filter((o) => o.indexOf("theirs") < o.indexOf("echo"));
    for (const order of inOrder) {
      const result = await run([prn("active")], prn("disabled"), prn("active"), order);
      expect(result.parsedEchoes, order.join(" → ")).toBe(1);
      expect(summary(result.state).status, order.join(" → ")).toBe("disabled");
    }
  });

  it("the echo of a transaction whose COMMIT failed (its outcome unknown; it did commit) is read and applied", async () => {
    const state = emptyState();
    hear(state, payloadOf(act(NOW + HOUR)));
    const own = createOwnNotifications({
      apply: (message) => applyMessage(state, message, NOW),
      heard: () => undefined,
    });
    let payloads: string[] = [];
    const failed = own.transaction(
      async (fn: (tx: object) => Promise<void>) => {
        await fn({});
        throw new Error("connection lost during COMMIT");
      },
      async (tx) => {
        payloads = own.of(tx, [end]).flatMap((n) => payloadsOfNotification(n.messages));
      },
    );
    await expect(failed).rejects.toThrow("connection lost");
    expect(state.activations.has(R)).toBe(true);
    // Not ours to skip any more: `receive` parses it as another node's.
    expect(own.echo(payloads[0]!)).toBe(false);
    hear(state, payloads[0]!);
    expect(state.activations.has(R)).toBe(false);
    expect(own.awaited()).toBe(0);
  });

  it("an untracked transaction's messages carry no tag; a tag of another node is not ours", () => {
    const own = createOwnNotifications({ apply: () => undefined, heard: () => undefined });
    const [untracked] = own.of({}, [end]);
    expect(payloadsOfNotification(untracked!.messages)[0]).toMatch(/^\{"t":"end","id":/);
    const other = createOwnNotifications({ apply: () => undefined, heard: () => undefined });
    let payload = "";
    void other.transaction(
      (fn: (tx: object) => Promise<void>) => fn({}),
      async (tx) => {
        payload = payloadsOfNotification(other.of(tx, [end])[0]!.messages)[0]!;
      },
    );
    expect(payload).toMatch(/^\{"t":"end","o":/);
    expect(own.echo(payload)).toBe(false);
  });

  it("echoes that never came are forgotten at a reload", async () => {
    const own = createOwnNotifications({ apply: () => undefined, heard: () => undefined });
    await own.transaction(
      (fn: (tx: object) => Promise<void>) => fn({}),
      async (tx) => void own.of(tx, [end, act(NOW + HOUR)]),
    );
    expect(own.awaited()).toBe(2);
    own.forgetApplied();
    expect(own.awaited()).toBe(0);
  });
});
