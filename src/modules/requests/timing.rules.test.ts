import { describe, expect, it } from "vitest";
import { policySpec } from "../../contract/catalog.js";
import {
  checkStart,
  earliest,
  expiredUndecided,
  isPendingPastTtl,
  pendingExpiresAt,
  pendingExpiryReason,
  requestTtlMs,
  waitsForStart,
} from "./timing.rules.js";

const NOW = new Date("2026-03-02T10:00:00Z");
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs);
const MIN = 60_000;
const DAY = 86_400_000;

describe("requestTtl", () => {
  it.each([
    [{}, DAY],
    [{ requestTtl: "10m" }, 10 * MIN],
    [{ requestTtl: "3d" }, 3 * DAY],
  ])("policy %j lets a request wait %d ms, counted from submission", (policy, ttl) => {
    const spec = policySpec.parse(policy);
    expect(requestTtlMs(spec)).toBe(ttl);
    expect(pendingExpiresAt(spec, NOW).getTime()).toBe(NOW.getTime() + ttl);
  });

  it.each(["30s", "31d", "0m", "soon"])("a policy refuses requestTtl %s", (requestTtl) => {
    expect(policySpec.safeParse({ requestTtl }).success).toBe(false);
  });

  it.each([
    ["pending", 10 * MIN, 0, true], // exactly at its time to live
    ["pending", 10 * MIN, -1, false], // a millisecond before
    ["pending", 10 * MIN, 5 * MIN, true],
    ["pending", null, DAY * 365, false], // no time to live recorded: never
    ["approved", 10 * MIN, 5 * MIN, false], // decided: the TTL no longer applies
    ["denied", 10 * MIN, 5 * MIN, false],
  ] as const)("a %s request whose TTL ends at +%s is past it at +TTL%+d: %s", (state, ttl, offset, past) => {
    const row = { state, pending_expires_at: ttl === null ? null : at(ttl) };
    expect(isPendingPastTtl(row, at((ttl ?? 0) + offset))).toBe(past);
  });

  it.each([
    ["expired", null, true],
    ["expired", NOW.toISOString(), false], // an activation that ran out, not an undecided request
    ["cancelled", null, false],
  ] as const)("%s with activated_at %s is expired undecided: %s", (state, activatedAt, undecided) => {
    expect(expiredUndecided({ state, activated_at: activatedAt })).toBe(undecided);
  });

  it("says why in words, with the policy's TTL", () => {
    expect(pendingExpiryReason(policySpec.parse({ requestTtl: "10m" }))).toBe(
      "no decision within the policy's requestTtl (10m)",
    );
    expect(pendingExpiryReason(policySpec.parse({}))).toContain("(1d)");
  });
});

describe("start time", () => {
  const plain = policySpec.parse({});
  it.each([
    ["none asked", plain, undefined, { ok: true, startAt: null }],
    ["now", plain, at(0), { ok: true, startAt: null }],
    ["30 s ago (clock skew)", plain, at(-30_000), { ok: true, startAt: null }],
    ["exactly the skew ago", plain, at(-MIN), { ok: true, startAt: null }],
    ["30 s ahead", plain, at(30_000), { ok: true, startAt: at(30_000) }],
    ["30 days ahead (default maximum)", plain, at(30 * DAY), { ok: true, startAt: at(30 * DAY) }],
  ] as const)("%s: accepted", (_label, spec, requested, expected) => {
    expect(checkStart(spec, requested, NOW)).toEqual(expected);
  });

  it.each([
    ["a minute and a millisecond ago", plain, at(-MIN - 1), "START_IN_PAST"],
    ["a year ago", plain, at(-365 * DAY), "START_IN_PAST"],
    ["not a time", plain, new Date("tomorrow"), "START_IN_PAST"],
    ["30 days and a millisecond ahead", plain, at(30 * DAY + 1), "START_TOO_FAR"],
    ["ten years ahead", plain, at(3650 * DAY), "START_TOO_FAR"],
    ["2h ahead under maxStartDelay 1h", policySpec.parse({ maxStartDelay: "1h" }), at(2 * 3600_000), "START_TOO_FAR"],
    ["any start on a break-glass role", policySpec.parse({ breakGlass: true }), at(MIN), "START_NOT_ALLOWED"],
  ] as const)("%s: refused with %s", (_label, spec, requested, code) => {
    const result = checkStart(spec, requested, NOW);
    expect(result).toMatchObject({ ok: false, code });
    expect(result.ok ? "" : result.message.length).toBeGreaterThan(10);
  });

  it("says how far ahead the policy allows", () => {
    expect(checkStart(policySpec.parse({ maxStartDelay: "2d" }), at(3 * DAY), NOW)).toMatchObject({
      maxStartDelay: "2d",
    });
  });

  it.each(["0m", "366d", "later"])("a policy refuses maxStartDelay %s", (maxStartDelay) => {
    expect(policySpec.safeParse({ maxStartDelay }).success).toBe(false);
  });

  it.each([
    [null, false],
    [at(1), true],
    [at(0), false], // due: it starts in this pass
    [at(-1), false],
  ] as const)("start_at %s waits at now: %s", (startAt, waits) => {
    expect(waitsForStart({ start_at: startAt }, NOW)).toBe(waits);
  });

  it("the scheduler wakes at the earliest due time", () => {
    expect(earliest(null, undefined)).toBeNull();
    expect(earliest(at(5), null, at(2), at(9))).toEqual(at(2));
  });
});
