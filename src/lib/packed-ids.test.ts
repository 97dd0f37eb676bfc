import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newId } from "./ids.js";
import { MAX_PACKED_IDS, packIds, unpackIds } from "./packed-ids.js";

describe("packed ids", () => {
  it("unpacks what it packed, in order, for any list of UUIDs", () => {
    fc.assert(
      fc.property(fc.array(fc.uuid(), { maxLength: 50 }), (ids) => {
        const packed = packIds(ids);
        expect(packed).not.toBeNull();
        expect(unpackIds(packed)).toEqual(ids);
      }),
    );
  });

  it("a full batch fits a NOTIFY payload with room to spare", () => {
    const packed = packIds(Array.from({ length: MAX_PACKED_IDS }, newId))!;
    expect(Buffer.byteLength(packed)).toBeLessThanOrEqual(6400);
    expect(unpackIds(packed)).toHaveLength(MAX_PACKED_IDS);
  });

  it("refuses to pack what it would not give back as it was", () => {
    expect(packIds(["0190D000-0000-7000-8000-000000000001"])).toBeNull();
    expect(packIds(["not-an-id"])).toBeNull();
    expect(packIds([newId(), "0190d000-0000-7000-8000-00000000001"])).toBeNull();
  });

  it("refuses a text that is not whole packed ids", () => {
    const packed = packIds([newId(), newId()])!;
    for (const text of [packed.slice(1), `${packed}A`, `${packed.slice(0, -1)}=`, packed.replace(/./, "+"), 42, null])
      expect(unpackIds(text)).toBeNull();
    expect(unpackIds("")).toEqual([]);
  });
});
