/**
 * Verify's worker threads hash a row's canonical text written straight from its `VERIFY_ROW` fields
 * (`canonicalOfRow`): it must be byte for byte what the decoded event's canonical JSON is, or decline and
 * leave the row to `decodeVerifyRow` (a field that needs an escape, a seq that is not a safe integer, a
 * row that does not split into its 16 fields, a NULL where none may be).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalEvent } from "./audit.rules.js";
import { canonicalOfRow, decodeVerifyRow, FIELD } from "./audit.rows.js";

/** Characters JSON escapes or may (quote, backslash, controls, separators, surrogates), and plain ones. */
const tricky = fc.string({
  unit: fc.constantFrom("a", "Z", "é", "😀", '"', "\\", "\n", "\u0000", "\u001e", "\u001f", "\ud800", "1", "null"),
});
/** Text that needs no escape in JSON (no surrogate either), where the shortcut applies. */
const plain = fc.string({ unit: fc.constantFrom("a", "Z", "é", "\u2028", "1", " ", ":", "-", "null") });
const time = fc.constantFrom("2026-12-06T07:17:54.733000", "2026-12-06T07:17:54.733001", "2026-12-06T07:17:54", "");

/** A row as `VERIFY_ROW` writes it: NULL as empty with its bit in the mask, the details as the database prints them. */
const rowOf = (text: fc.Arbitrary<string>) => {
  const nullable = fc.option(text, { nil: null });
  return fc
    .record({
      seq: fc.oneof(fc.integer({ min: 1, max: 1e9 }).map(String), fc.constantFrom("9007199254740993", "1e3", "x", "")),
      id: text,
      time,
      actor: text,
      actorId: nullable,
      action: text,
      subject: nullable,
      outcome: fc.constantFrom("success", "denied", "failed", 'fa"iled'),
      reason: nullable,
      correlationId: nullable,
      sourceIp: nullable,
      userAgent: nullable,
      prevHash: fc.oneof(fc.constant("ab".repeat(32)), text),
      hash: fc.oneof(fc.constant("cd".repeat(32)), text),
      extraMask: fc.constantFrom(0, 0, 0, 64),
      details: fc.oneof(
        fc.dictionary(text, fc.oneof(text, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }))),
        fc.constant({ b: [1, "x"], a: { d: null, c: true } }),
      ),
    })
    .map((r) => {
      const nullables = [r.actorId, r.subject, r.reason, r.correlationId, r.sourceIp, r.userAgent];
      const mask = nullables.reduce<number>((m, v, k) => (v === null ? m | (1 << k) : m), r.extraMask);
      // jsonb prints ", " and ": " between items; JSON.parse reads either.
      const details = JSON.stringify(r.details).replace(/,"/g, ', "');
      return [
        r.seq,
        r.id,
        r.time,
        r.actor,
        r.actorId ?? "",
        r.action,
        r.subject ?? "",
        r.outcome,
        r.reason ?? "",
        r.correlationId ?? "",
        r.sourceIp ?? "",
        r.userAgent ?? "",
        r.prevHash,
        r.hash,
        String(mask),
        details,
      ].join(FIELD);
    });
};
/** Rows of plain text throughout (most take the shortcut), and rows of any text. */
const row = fc.oneof(rowOf(plain), rowOf(fc.oneof(plain, fc.string(), tricky)));

describe("canonicalOfRow", () => {
  it("writes what the decoded event's canonical JSON is, or declines", () => {
    let taken = 0;
    fc.assert(
      fc.property(row, (text) => {
        let fast: ReturnType<typeof canonicalOfRow>;
        try {
          fast = canonicalOfRow(text);
        } catch {
          // Details the canonicalizer refuses (a lone surrogate): refused through the decoded event too.
          expect(() => canonicalEvent(decodeVerifyRow(text)!)).toThrow();
          return;
        }
        if (!fast) return;
        taken++;
        const event = decodeVerifyRow(text);
        expect(event).toBeDefined();
        expect(fast).toEqual({
          canonical: canonicalEvent(event!),
          seq: event!.seq,
          prevHash: event!.prevHash,
          hash: event!.hash,
        });
      }),
      { numRuns: 3000 },
    );
    // Not declined throughout: the shortcut was checked on many rows.
    expect(taken).toBeGreaterThan(300);
  });

  it("takes the shortcut for plain rows and declines what needs an escape or does not split", () => {
    const plain = [
      "42",
      "01a24a37-67b4-73a0-b2bb-c64a32e317e7",
      "2026-12-06T07:17:54.733000",
      "bench",
      "",
      "bench.append",
      "thing:5",
      "success",
      "",
      "bench",
      "192.0.2.1",
      "stint-bench",
      "ab".repeat(32),
      "cd".repeat(32),
      String(4 | 1),
      '{"n": 5, "b": [1, "é 😀"]}',
    ];
    const fast = canonicalOfRow(plain.join(FIELD));
    expect(fast?.canonical).toBe(canonicalEvent(decodeVerifyRow(plain.join(FIELD))!));
    expect(fast?.canonical).toContain('"actorId":null,');
    expect(fast?.canonical).toContain('"time":"2026-12-06T07:17:54.733Z"');
    const edited = (k: number, value: string) => plain.map((v, i) => (i === k ? value : v)).join(FIELD);
    expect(canonicalOfRow(edited(3, 'be"nch'))).toBeUndefined();
    expect(canonicalOfRow(edited(6, "thing\\5"))).toBeUndefined();
    expect(canonicalOfRow(edited(9, "a\u001eb"))).toBeUndefined();
    expect(canonicalOfRow(edited(9, "a\u001fb"))).toBeUndefined();
    expect(canonicalOfRow(edited(0, "9007199254740993"))).toBeUndefined();
    expect(canonicalOfRow(edited(14, "64"))).toBeUndefined();
    // The details may hold quotes and separators of their own: they are parsed, not tested.
    expect(canonicalOfRow(edited(15, '{"a\\u001f": "\\""}'))?.canonical).toContain('"details":{"a\\u001f":"\\""}');
  });
});
