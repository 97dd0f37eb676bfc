/**
 * Verify's worker threads hash a row's canonical text written straight from its `VERIFY_ROW` fields
 * (`canonicalOfRow`): it must be byte for byte what the decoded event's canonical JSON is, or decline and
 * leave the row to `decodeVerifyRow` (a field that needs an escape, a seq that is not a safe integer, a
 * row that does not split into its 16 fields, a NULL where none may be).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalDetails, canonicalEvent } from "./audit.rules.js";
import {
  canonicalFlatDetails,
  canonicalOfRow,
  decodeVerifyRow,
  eventTime,
  FIELD,
  verifyRowTime,
} from "./audit.rows.js";

/** Characters JSON escapes or may (quote, backslash, controls, separators, surrogates), and plain ones. */
const tricky = fc.string({
  unit: fc.constantFrom("a", "Z", "é", "😀", '"', "\\", "\n", "\u0000", "\u001e", "\u001f", "\ud800", "1", "null"),
});
/** Text that needs no escape in JSON (no surrogate either), where the shortcut applies. */
const plain = fc.string({ unit: fc.constantFrom("a", "Z", "é", "\u2028", "1", " ", ":", "-", "null") });
/** Times as a `timestamp` prints in the ISO DateStyle (no trailing zeros), and texts that are not that. */
const time = fc.constantFrom(
  "2026-12-06 07:17:54.733",
  "2026-12-06 07:17:54.733001",
  "2026-12-06 07:17:54.7",
  "2026-12-06 07:17:54",
  "12/06/2026 07:17:54.733",
  "10000-12-06 07:17:54",
  "",
);

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
        r.time,
        r.hash,
        String(mask),
        r.prevHash,
        r.id,
        r.actor,
        r.actorId ?? "",
        r.action,
        r.subject ?? "",
        r.outcome,
        r.reason ?? "",
        r.correlationId ?? "",
        r.sourceIp ?? "",
        r.userAgent ?? "",
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
      "2026-12-06 07:17:54.733",
      "cd".repeat(32),
      String(4 | 1),
      "ab".repeat(32),
      "01a24a37-67b4-73a0-b2bb-c64a32e317e7",
      "bench",
      "",
      "bench.append",
      "thing:5",
      "success",
      "",
      "bench",
      "192.0.2.1",
      "stint-bench",
      '{"n": 5, "b": [1, "é 😀"]}',
    ];
    const fast = canonicalOfRow(plain.join(FIELD));
    expect(fast?.canonical).toBe(canonicalEvent(decodeVerifyRow(plain.join(FIELD))!));
    expect(fast?.canonical).toContain('"actorId":null,');
    expect(fast?.canonical).toContain('"time":"2026-12-06T07:17:54.733Z"');
    const edited = (k: number, value: string) => plain.map((v, i) => (i === k ? value : v)).join(FIELD);
    expect(canonicalOfRow(edited(6, 'be"nch'))).toBeUndefined();
    expect(canonicalOfRow(edited(9, "thing\\5"))).toBeUndefined();
    expect(canonicalOfRow(edited(12, "a\u001eb"))).toBeUndefined();
    expect(canonicalOfRow(edited(12, "a\u001fb"))).toBeUndefined();
    expect(canonicalOfRow(edited(4, `${"ab".repeat(31)}a"`))).toBeUndefined();
    expect(canonicalOfRow(edited(5, "01a24a37\n"))).toBeUndefined();
    expect(canonicalOfRow(edited(14, "stint\ud800"))).toBeUndefined();
    expect(canonicalOfRow(edited(0, "9007199254740993"))).toBeUndefined();
    expect(canonicalOfRow(edited(3, "64"))).toBeUndefined();
    expect(canonicalOfRow(edited(1, "2026-12-06T07:17:54.733"))).toBeUndefined();
    expect(decodeVerifyRow(edited(1, "12/06/2026 07:17:54.733"))).toBeUndefined();
    // The details may hold quotes and separators of their own: they are parsed, not tested.
    expect(canonicalOfRow(edited(15, '{"a\\u001f": "\\""}'))?.canonical).toContain('"details":{"a\\u001f":"\\""}');
  });
});

describe("verifyRowTime", () => {
  it("writes the time `eventTime` writes from `TIME_TEXT` for the same instant, and refuses other texts", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253402300799999 }), fc.integer({ min: 0, max: 999 }), (ms, micros) => {
        // `TIME_TEXT` (to_char, six digits always) and a `timestamp` in the ISO style (no trailing zeros).
        const iso = new Date(ms).toISOString().slice(0, 23) + String(micros).padStart(3, "0");
        const full = iso.slice(0, 26);
        const printed = `${full.slice(0, 10)} ${full.slice(11)}`.replace(/\.?0+$/, "");
        expect(verifyRowTime(printed)).toBe(eventTime(full));
      }),
    );
    for (const text of ["2026-12-06T07:17:54", "12/06/2026 07:17:54", "2026-12-06 07:17:54.1234567", " ", ""])
      expect(verifyRowTime(text)).toBeUndefined();
  });
});

/** A value as jsonb prints it: keys by length then code unit, ", " and ": " between items. */
function jsonbText(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(", ")}]`;
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  const keys = Object.keys(value).sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${jsonbText((value as Record<string, unknown>)[k])}`).join(", ")}}`;
}

describe("canonicalFlatDetails", () => {
  it("writes what canonicalDetails writes from the parsed text, or declines", () => {
    const key = fc.oneof(fc.constantFrom("a", "b", "aa", "n", "role", "10", "2", "__proto__", "é"), tricky);
    const scalar = fc.oneof(
      tricky,
      fc.integer(),
      fc.constantFrom(0, -0, 1e15, 2 ** 53 + 2, 1.5, -7, true, false, null),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
    );
    const details = fc.oneof(
      fc.dictionary(key, scalar, { maxKeys: 4 }).map(jsonbText),
      fc
        .dictionary(key, fc.oneof(scalar, fc.array(scalar, { maxLength: 2 }), fc.dictionary(key, scalar)), {
          maxKeys: 3,
        })
        .map(jsonbText),
      // Texts jsonb would not print (a database writer may change the column's type): other spacing, repeats.
      fc.constantFrom(
        '{"a":1}',
        '{"a": 1,"b": 2}',
        '{"a": 1, "a": 2}',
        '{"a": 01}',
        '{"a": -0}',
        '{"a": 1}\n',
        "[]",
        "5",
      ),
      tricky,
    );
    let taken = 0;
    fc.assert(
      fc.property(details, (text) => {
        const fast = canonicalFlatDetails(text);
        if (fast === undefined) return;
        taken++;
        expect(fast).toBe(canonicalDetails(JSON.parse(text) as Record<string, unknown>));
      }),
      { numRuns: 5000 },
    );
    expect(taken).toBeGreaterThan(500);
    expect(canonicalFlatDetails('{"n": 12344}')).toBe('{"n":12344}');
    // jsonb's order (shorter keys first) sorted as RFC 8785 sorts; separators inside strings kept.
    expect(canonicalFlatDetails('{"to": 5, "from": "a: b, c"}')).toBe('{"from":"a: b, c","to":5}');
    expect(canonicalFlatDetails('{"b": 1, "a": 2, "b": 3}')).toBeUndefined();
    expect(canonicalFlatDetails('{"from": "a\\": 1, \\"b", "to": 5}')).toBeUndefined();
    expect(canonicalFlatDetails('{"from": "a: b, c", "to": 5}')).toBe('{"from":"a: b, c","to":5}');
  });
});
