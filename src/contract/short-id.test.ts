import { describe, expect, it } from "vitest";
import { newId } from "../lib/ids.js";
import { shortId } from "./short-id.js";

describe("shortId", () => {
  it("tells apart ids made in the same instant (a UUIDv7's first digits are its time)", () => {
    const ids = Array.from({ length: 200 }, () => newId());
    expect(new Set(ids.map((id) => id.slice(0, 8))).size).toBeLessThan(10);
    expect(new Set(ids.map(shortId)).size).toBe(200);
  });

  it("is the last 8 hex digits", () => {
    expect(shortId("01934b6e-0000-7000-8000-00000000abcd")).toBe("0000abcd");
  });
});
