/**
 * Appends and chaining write events as one JSON parameter (an array of rows), of one row or many, and the
 * chaining pass moves pending rows into the chain inside the database. Whichever way, what is read back and
 * verified is exactly what was appended: texts that JSON or an array literal must escape (quotes, backslashes,
 * braces, commas, "NULL", empty, control characters), NULLs, unicode outside the BMP, very long values and
 * details of every shape. PostgreSQL text holds no NUL (U+0000): an event with one is refused, nothing written.
 */
import fc from "fast-check";
import { sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { ENGINES } from "../../testing/engines.js";
import { auditHarness } from "../../testing/harness.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import * as auditStore from "./audit.store.js";
import type { AuditLog } from "./audit.service.js";
import type { AuditInput, PendingAuditEvent } from "./audit.types.js";

/** A batch this large went as `unnest` arrays before, a smaller one as a VALUES list. */
const MANY = 40;

const bob: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-000000000002",
  name: 'bob "the, {builder}" \\ NULL',
  principalKind: "user",
  roles: ["user"],
};

const AWKWARD = ["", "NULL", "null", '"', "\\", "{a,b}", "a,b", "é ünïcode 😀", "line\nbreak\ttab", " spaced ", "()"];

function inputs(count: number): AuditInput[] {
  return Array.from({ length: count }, (_, i) => {
    const text = AWKWARD[i % AWKWARD.length]!;
    return {
      action: `test.${text}`,
      outcome: (["success", "denied", "failed"] as const)[i % 3]!,
      subject: i % 4 === 0 ? null : `thing:${text}`,
      reason: i % 5 === 0 ? null : text,
      details: {
        text,
        n: i,
        nested: { z: [1, "NULL", null, { b: text, a: true }], a: -0.5 },
        ...(i % 2 === 0 ? { b: 1, a: 2 } : {}),
      },
    };
  });
}

/** The chain verifies, holds exactly `written` and reads each event back as it was appended. */
async function expectChainedAsWritten(audit: AuditLog, written: readonly PendingAuditEvent[]) {
  expect(await audit.verify()).toMatchObject({ ok: true, count: written.length });
  const read = await audit.read({ limit: 1000 });
  expect(read.map(({ seq: _seq, prevHash: _prev, hash: _hash, ...event }) => event)).toEqual(
    written.map((event) => ({ ...event, details: JSON.parse(JSON.stringify(event.details)) as unknown })),
  );
}

describe.each(ENGINES)("audit writes on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  for (const sequencing of ["inline", "background"] as const)
    it(`batches of one event and of many write the events appended, verified (${sequencing} chaining)`, async () => {
      h = await auditHarness(engine, { checkpointEvery: 25, sequencing });
      const { audit, store } = h;
      const context: CallContext = { correlationId: 'c,"1"', sourceIp: null, userAgent: "ua {x} \\ NULL" };
      const few = inputs(3);
      const many = inputs(MANY);
      const written = [
        ...(await audit.record(bob, context, few)),
        ...(await store.transaction((tx) => audit.append(tx, bob, context, many))),
        ...(
          await store.transaction((tx) =>
            audit.appendMany(
              tx,
              Array.from({ length: MANY / 2 }, (_, i) => ({
                actor: bob,
                context: { ...context, sourceIp: i % 2 ? "192.0.2.7" : null },
                events: inputs(1),
              })),
            ),
          )
        ).flat(),
      ];
      expect(await audit.catchUp()).toBeGreaterThanOrEqual(sequencing === "inline" ? 0 : written.length);
      await expectChainedAsWritten(audit, written);
    });
});

/** Any text PostgreSQL can hold: no NUL, no unpaired surrogate (the MAC refuses those before any SQL). */
const storable = (text: string) => !text.includes("\u0000") && !/\p{Cs}/u.test(text);
const awkward = fc
  .oneof(
    fc.string({
      unit: fc.constantFrom(
        '"',
        "\\",
        "\n",
        "\u0001",
        "\u001f",
        "\u007f",
        "\u2028",
        "😀",
        "é",
        "{",
        "}",
        ",",
        "NULL",
        " ",
      ),
      maxLength: 30,
    }),
    fc.string({ unit: "binary", maxLength: 30 }),
  )
  .filter(storable);
/** A JSON value whose strings are storable (JSON.stringify escapes a NUL or an unpaired surrogate). */
const storableJson = (value: unknown) => !/\\u0000|\\ud[89a-f]/i.test(JSON.stringify(value));
const awkwardInput: fc.Arbitrary<AuditInput> = fc.record(
  {
    action: awkward,
    outcome: fc.constantFrom("success" as const, "denied" as const, "failed" as const),
    subject: awkward,
    reason: awkward,
    details: fc.dictionary(awkward, fc.oneof(awkward, fc.jsonValue({ maxDepth: 2 }).filter(storableJson))),
  },
  { requiredKeys: ["action", "outcome", "details"] },
);

describe.each(ENGINES)("audit writes of awkward values on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  it("texts JSON escapes, unicode outside the BMP and very long values read back as appended, verified", async () => {
    h = await auditHarness(engine, { sequencing: "background" });
    const { audit, store } = h;
    const long = `${'é😀\\"'.repeat(25_000)}end`;
    const events = [
      ...fc.sample(awkwardInput, { numRuns: 60, seed: 14 }),
      { action: long, outcome: "success" as const, subject: long, reason: long, details: { [long]: long, n: 1 } },
    ];
    const context: CallContext = { correlationId: long, sourceIp: "\u2028 ::1 😀", userAgent: '"\\\u0001' };
    const actor: Actor = { ...bob, name: long };
    const written = [
      ...(await store.transaction((tx) => audit.append(tx, actor, context, events.slice(0, 1)))),
      ...(await audit.record(actor, context, events.slice(1, 30))),
      ...(
        await store.transaction((tx) =>
          audit.appendMany(
            tx,
            events.slice(30).map((event) => ({ actor, context, events: event })),
          ),
        )
      ).flat(),
    ];
    expect(await audit.catchUp()).toBe(written.length);
    await expectChainedAsWritten(audit, written);
  });

  it("only the calls the database allows are written (appendManyWhere), in their order", async () => {
    h = await auditHarness(engine, { sequencing: "background" });
    const { audit, store } = h;
    const inputsOf = fc.sample(awkwardInput, { numRuns: 6, seed: 7 });
    const calls = inputsOf.map((events, i) => ({ actor: bob, context: contextOf(i), events, copy: [i] }));
    const allowed = await store.transaction((tx) =>
      audit.appendManyWhere(tx, calls, { sql: "(c.copy->>0)::int in (1, 4, 5)" }),
    );
    expect(allowed).toEqual([false, true, false, false, true, true]);
    await audit.catchUp();
    const read = await audit.read({ limit: 100 });
    expect(read.map((e) => [e.action, e.correlationId])).toEqual(
      [1, 4, 5].map((i) => [inputsOf[i]!.action, `call ${i}`]),
    );
    expect(await audit.verify()).toMatchObject({ ok: true, count: 3 });
  });

  it("a note for a pending row no node wrote carries the row's awkward texts into the chain", async () => {
    h = await auditHarness(engine, { sequencing: "background" });
    const { audit, store } = h;
    const action = `forged "\\ 😀 ${"{,}".repeat(2000)} \u2028`;
    const [event] = await audit.record(bob, contextOf(0), { action, outcome: "success" });
    await sql`update audit_pending set mac = 'forged'`.execute(store.db);
    await audit.catchUp();
    const [note] = await audit.read({ limit: 10 });
    expect(note).toMatchObject({
      action: "audit.pending_rejected",
      details: { claimedId: event!.id, claimedAction: action },
    });
    expect(await audit.verify()).toMatchObject({ ok: true, count: 1 });
  });

  it("an event's time keeps its microseconds, a chained seq past 2^53 - 1 is exact", async () => {
    h = await auditHarness(engine);
    const { store } = h;
    const event = {
      id: "0190d000-0000-7000-8000-0000000000aa",
      time: "2026-03-01T09:00:00.123456Z",
      actor: "a",
      actorId: null,
      action: "x",
      subject: null,
      outcome: "success" as const,
      reason: null,
      correlationId: null,
      sourceIp: null,
      userAgent: null,
      details: {},
    };
    await store.transaction((tx) => auditStore.insertPending(tx, [{ event, mac: "m" }]));
    expect((await auditStore.readPending(store.db, 10)).map((row) => row.time)).toEqual(["2026-03-01T09:00:00.123456"]);
    const seq = Number.MAX_SAFE_INTEGER;
    await auditStore.insertEvents(store.db, [{ ...event, seq, prevHash: "p", hash: "h" }]);
    const { rows } = await sql<{ seq: string }>`select seq::text as seq from audit_events`.execute(store.db);
    expect(rows).toEqual([{ seq: String(seq) }]);
  });

  // PostgreSQL text holds no NUL: such an event was refused by the database before (a text parameter at bind,
  // the escape `\u0000` in jsonb) and still is, whatever the batch's size; nothing of it is written.
  const nulIn: [string, (input: AuditInput) => { actor: Actor; context: CallContext; input: AuditInput }][] = [
    ["the actor's name", (input) => ({ actor: { ...bob, name: "b\u0000b" }, context: contextOf(0), input })],
    ["the subject", (input) => ({ actor: bob, context: contextOf(0), input: { ...input, subject: "s\u0000" } })],
    ["the reason", (input) => ({ actor: bob, context: contextOf(0), input: { ...input, reason: "\u0000" } })],
    ["the user agent", (input) => ({ actor: bob, context: { ...contextOf(0), userAgent: "u\u0000a" }, input })],
    [
      "a details value",
      (input) => ({ actor: bob, context: contextOf(0), input: { ...input, details: { a: "\u0000" } } }),
    ],
    [
      "a details key",
      (input) => ({ actor: bob, context: contextOf(0), input: { ...input, details: { "\u0000": 1 } } }),
    ],
  ];
  it.each(nulIn)(
    "an event with a NUL in %s is refused, alone or in a batch, and nothing is written",
    async (_, withNul) => {
      h = await auditHarness(engine, { sequencing: "background" });
      const { audit, store } = h;
      const plain: AuditInput = { action: "test.plain", outcome: "success" };
      for (const size of [1, MANY]) {
        const { actor, context, input } = withNul(plain);
        const batch = [...Array.from({ length: size - 1 }, () => plain), input];
        const refused = store.transaction((tx) => audit.append(tx, actor, context, batch));
        await expect(refused).rejects.toMatchObject({ code: expect.stringMatching(/^22/) as unknown });
        await expect(audit.record(actor, context, batch)).rejects.toMatchObject({
          code: expect.stringMatching(/^22/) as unknown,
        });
      }
      expect(await audit.pendingStats()).toMatchObject({ count: 0 });
      expect(await audit.verify()).toMatchObject({ ok: true, count: 0 });
    },
  );
});

function contextOf(call: number): CallContext {
  return { correlationId: `call ${call}`, sourceIp: null, userAgent: null };
}
