/**
 * The pending rows' MACs: a row this process wrote, exactly as written (text and MAC), verifies without an HMAC;
 * any other answer is the keyring's, so the verdict is always the one an HMAC check gives.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createPendingMacs, MACS_KEPT } from "./audit.macs.js";

/** A keyring's MAC (HMAC-SHA256 under one key), counting the checks it is asked for. */
function keyring() {
  const key = randomBytes(32);
  const mac = (_purpose: string, message: string) => createHmac("sha256", key).update(message).digest("hex");
  const counted = { checks: 0 };
  return {
    counted,
    mac,
    macValid(purpose: string, message: string, given: string) {
      counted.checks += 1;
      const expected = Buffer.from(mac(purpose, message), "hex");
      const actual = Buffer.from(given, "hex");
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
  };
}

describe("pending MACs", () => {
  it("a row written here, unchanged, verifies without an HMAC; changed in its text or MAC it fails as the HMAC says", () => {
    const k = keyring();
    const macs = createPendingMacs(k);
    const a = macs.mac("a", '{"action":"x"}');
    const b = macs.mac("b", '{"action":"y"}');
    macs.mac("c", '{"action":"z"}');
    expect(a).toBe(k.mac("audit-pending", '{"action":"x"}'));
    expect(macs.valid("a", '{"action":"x"}', a)).toBe(true);
    expect(k.counted.checks).toBe(0);
    // A database writer changed the row's text (subject, details…): the HMAC decides, and refuses.
    expect(macs.valid("b", '{"action":"forged"}', b)).toBe(false);
    // Or its MAC: refused.
    expect(macs.valid("c", '{"action":"z"}', a)).toBe(false);
    expect(k.counted.checks).toBe(2);
    // Another node's row, or one already taken (a pass run again): the HMAC decides.
    expect(macs.valid("d", '{"action":"w"}', k.mac("audit-pending", '{"action":"w"}'))).toBe(true);
    expect(macs.valid("a", '{"action":"x"}', a)).toBe(true);
    expect(macs.valid("a", '{"action":"x"}', "00".repeat(32))).toBe(false);
    expect(k.counted.checks).toBe(5);
    // A row that claims a written event's id with another event's text and MAC: the HMAC decides (valid here:
    // it is a real MAC of that text, as the keyring alone would have answered).
    macs.mac("e", '{"action":"e"}');
    expect(macs.valid("e", '{"action":"x"}', a)).toBe(true);
    expect(k.counted.checks).toBe(6);
  });

  it("remembers a bounded number of events: past it, all are forgotten and checked by the HMAC", () => {
    const k = keyring();
    const macs = createPendingMacs(k);
    const first = macs.mac("id-0", "m-0");
    for (let i = 1; i < MACS_KEPT; i++) macs.mac(`id-${i}`, `m-${i}`);
    expect(macs.size()).toBe(MACS_KEPT);
    macs.mac("one-more", "m");
    expect(macs.size()).toBe(1);
    expect(macs.valid("id-0", "m-0", first)).toBe(true);
    expect(k.counted.checks).toBe(1);
  });
});
