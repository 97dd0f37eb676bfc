/**
 * The audit log's own canonical JSON writers against the definition they stand in for: the `canonicalize`
 * package (RFC 8785). The MAC's text and the hash's are written from one set of parts per event; each must
 * be byte for byte what the general canonicalizer writes, and refuse what it refuses.
 */
import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  canonicalEvent,
  canonicalJson,
  canonicalOf,
  canonicalParts,
  chain,
  hashEvent,
  pendingMessage,
  pendingMessageGeneral,
  pendingMessageOf,
} from "./audit.rules.js";
import type { PendingAuditEvent } from "./audit.types.js";

const outcome = (f: () => string | undefined) => {
  try {
    return f();
  } catch (error) {
    return `throws ${(error as Error).message}`;
  }
};

/** Characters JSON escapes or may (quote, backslash, controls, lone and paired surrogates), and plain ones. */
const tricky = fc.string({
  unit: fc.constantFrom("a", "Z", "é", "😀", '"', "\\", "\n", "\u0000", "\u001f", "\u007f", "\ud800", "\udc00", "1"),
});
const anyText = fc.oneof(fc.string(), fc.string({ unit: "binary" }), tricky);
/** Keys JavaScript orders apart from the others (integer-like), and ones that sort by code unit. */
const key = fc.oneof(fc.constantFrom("0", "1", "10", "2", "a", "B", "é", "aa", "_", "toJSON"), anyText);

/** JSON values as services write them: nested objects out of order, undefined properties, odd numbers. */
const detailValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.constantFrom(0, -0, 1e21, 1e-7, 123.456, Number.MAX_SAFE_INTEGER, 5e-324),
    anyText,
    fc.constant(undefined),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(key, tie("value"), { maxKeys: 5 }),
  ),
})).value;

const details = fc.dictionary(key, detailValue, { maxKeys: 7 }) as fc.Arbitrary<Record<string, unknown>>;

const pendingEvent: fc.Arbitrary<PendingAuditEvent> = fc.record({
  id: fc.oneof(fc.uuid(), anyText),
  time: fc.oneof(
    fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map((d) => d.toISOString()),
    anyText,
  ),
  actor: anyText,
  actorId: fc.option(fc.oneof(fc.uuid(), anyText)),
  action: anyText,
  subject: fc.option(anyText),
  outcome: fc.constantFrom("success", "denied", "failed"),
  reason: fc.option(anyText),
  correlationId: fc.option(anyText),
  sourceIp: fc.option(fc.oneof(fc.ipV4(), fc.ipV6(), anyText)),
  userAgent: fc.option(anyText),
  details,
});

/** What an expiry writes: six keys not in canonical order (the case the general canonicalizer took). */
const expiredDetails = fc.record({
  role: anyText,
  requester: anyText,
  activatedAt: fc.option(fc.date({ noInvalidDate: true }).map((d) => d.toISOString())),
  expiresAt: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  endedAt: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  lateByMs: fc.option(fc.integer(), { nil: undefined }),
});

describe("audit canonical JSON", () => {
  it("canonicalJson writes what canonicalize writes, or leaves the value to it", () => {
    fc.assert(
      fc.property(detailValue, (value) => {
        const fast = outcome(() => canonicalJson(value));
        if (fast !== undefined) expect(fast).toBe(outcome(() => canonicalize(value)));
      }),
      { numRuns: 5000 },
    );
    // Plain JSON values are always its own (the canonicalizer is the exception, not the path).
    fc.assert(
      fc.property(
        fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown),
        (value) => {
          const surrogate = /[\ud800-\udfff]/.test(JSON.stringify(value));
          if (!surrogate) expect(canonicalJson(value)).toBe(canonicalize(value));
        },
      ),
      { numRuns: 2000 },
    );
    expect(canonicalJson({ b: 1, a: [undefined, { d: undefined, c: "x" }] })).toBe('{"a":[null,{"c":"x"}],"b":1}');
    expect(canonicalJson({ when: new Date(0) })).toBeUndefined();
    expect(canonicalJson({ n: Number.NaN })).toBeUndefined();
  });

  it("the MAC's text is the general canonicalizer's, for random events and expiries' details", () => {
    const check = (event: PendingAuditEvent) => {
      expect(outcome(() => pendingMessage(event))).toBe(outcome(() => pendingMessageGeneral(event)));
      const parts = outcome(() => JSON.stringify(canonicalParts(event))) ?? "";
      if (!parts.startsWith("throws") && parts !== "null")
        expect(pendingMessageOf(canonicalParts(event)!)).toBe(pendingMessageGeneral(event));
    };
    fc.assert(fc.property(pendingEvent, check), { numRuns: 3000 });
    fc.assert(
      fc.property(pendingEvent, expiredDetails, (event, d) => check({ ...event, details: d })),
      { numRuns: 2000 },
    );
  });

  it("the hash's text from the parts is canonicalEvent's, and so is the hash chain links with", () => {
    const prevHash = fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), anyText);
    fc.assert(
      fc.property(
        fc.oneof(
          pendingEvent,
          fc.tuple(pendingEvent, expiredDetails).map(([event, d]) => ({ ...event, details: d })),
        ),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 1 }),
        prevHash,
        (event, seq, prev) => {
          const linked = { ...event, seq: seq + 1, prevHash: prev };
          let parts;
          try {
            parts = canonicalParts(event);
          } catch (error) {
            // Details the canonicalizer refuses: the hash refuses them too.
            expect(() => hashEvent(linked)).toThrow((error as Error).message);
            return;
          }
          if (parts && !/[\ud800-\udfff]/.test(prev))
            expect(canonicalOf(parts, linked.seq, prev)).toBe(canonicalEvent(linked));
          const expected = outcome(() => hashEvent(linked));
          expect(outcome(() => chain(event, { seq, hash: prev }, parts).hash)).toBe(expected);
          expect(outcome(() => chain(event, { seq, hash: prev }).hash)).toBe(expected);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
