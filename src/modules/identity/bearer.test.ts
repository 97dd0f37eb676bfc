import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { isBearerHeader } from "./identity.service.js";

/** The rule as it was written before the hot path lost its regex. */
const RULE = /^Bearer ([\x21-\x7e]{1,4096})$/;

describe("isBearerHeader", () => {
  it("accepts exactly what `Bearer <1–4096 printable ASCII>` matches", () => {
    const printable = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)) });
    const header = fc.oneof(
      printable.map((t) => `Bearer ${t}`),
      fc.string().map((t) => `Bearer ${t}`),
      fc.string(),
      fc.constantFrom("Bearer", "Bearer ", "bearer abc", "Bearer  abc", "Bearer abc ", "Basic abc", "Bearer a\u00e9"),
      fc.integer({ min: 4090, max: 4100 }).map((n) => `Bearer ${"a".repeat(n)}`),
    );
    fc.assert(
      fc.property(header, (h) => {
        expect(isBearerHeader(h)).toBe(RULE.test(h));
      }),
      { numRuns: 2000 },
    );
  });
});
