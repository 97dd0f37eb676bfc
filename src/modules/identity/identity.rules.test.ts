import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  REFRESH_HISTORY,
  canonicalUsername,
  classifyRefreshSecret,
  formatApiToken,
  isLocked,
  isTotpReplay,
  parseApiToken,
  parseRefreshToken,
  passwordProblem,
  recordFailure,
  rememberRotated,
  totpStep,
  type ThrottleState,
} from "./identity.rules.js";

const policy = { maxFailures: 3, windowMs: 60_000, lockoutMs: 300_000 };
const t0 = new Date("2026-01-01T00:00:00Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

describe("sign-in throttling", () => {
  it("locks at the limit within the window, for the lockout time", () => {
    let s: ThrottleState | undefined;
    s = recordFailure(s, at(0), policy);
    s = recordFailure(s, at(1000), policy);
    expect(isLocked(s, at(1000))).toBe(false);
    const third = recordFailure(s, at(2000), policy);
    expect(third.justLocked).toBe(true);
    expect(isLocked(third, at(2000 + 299_999))).toBe(true);
    expect(isLocked(third, at(2000 + 300_000))).toBe(false);
  });

  it("failures spread wider than the window never lock", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), (n) => {
        let s: ThrottleState | undefined;
        for (let i = 0; i < n; i++) s = recordFailure(s, at(i * 61_000), policy);
        expect(isLocked(s, at(n * 61_000))).toBe(false);
      }),
    );
  });
});

describe("one-time codes and tokens", () => {
  it("a TOTP step is used once", () => {
    const step = totpStep(t0.getTime(), 0);
    expect(totpStep(t0.getTime() + 30_000, 0)).toBe(step + 1);
    expect(isTotpReplay(step, step)).toBe(true);
    expect(isTotpReplay(step + 1, step)).toBe(false);
    expect(isTotpReplay(step - 1, step)).toBe(true);
  });

  it("API tokens round-trip and reject anything else", () => {
    const id = "0190d0a1-2b3c-7d4e-8f50-123456789abc";
    const secret = "A".repeat(43);
    expect(parseApiToken(formatApiToken(id, secret))).toEqual({ tokenId: id, secret });
    expect(parseApiToken(`stint_${"g".repeat(32)}_${secret}`)).toBeNull();
    expect(parseApiToken("Bearer x")).toBeNull();
    expect(parseRefreshToken(`${id}.${secret}`)).toEqual({ sessionId: id, secret });
    expect(parseRefreshToken(`${id}.${secret}x`)).toBeNull();
  });

  it("passwords: length, not the user name, not trivially repetitive", () => {
    expect(passwordProblem("short", "alice")).toMatch(/12/);
    expect(passwordProblem("alice-is-great-123", "alice")).toMatch(/user name/);
    expect(passwordProblem("aaaaaaaaaaaaaaaa", "bob")).toMatch(/distinct/);
    expect(passwordProblem("correct horse battery", "bob")).toBeNull();
  });
});

describe("refresh secrets (issue 12 finding 12)", () => {
  const equal = (a: string, b: string) => a === b;
  it("is current, reused only when it was a previous secret of the session, otherwise unknown", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.stringMatching(/^[0-9a-f]{8}$/), { minLength: 2, maxLength: 20 }), (hashes) => {
        const [current, ...previous] = hashes as [string, ...string[]];
        const stranger = "z".repeat(8);
        expect(classifyRefreshSecret(current, { currentHash: current, previousHashes: previous }, equal)).toBe(
          "current",
        );
        for (const old of previous)
          expect(classifyRefreshSecret(old, { currentHash: current, previousHashes: previous }, equal)).toBe("reused");
        expect(classifyRefreshSecret(stranger, { currentHash: current, previousHashes: previous }, equal)).toBe(
          "unknown",
        );
      }),
    );
  });

  it("remembers the newest rotated secrets, a bounded number", () => {
    let remembered: string[] = [];
    for (let i = 0; i < REFRESH_HISTORY + 10; i++) remembered = rememberRotated(remembered, `h${i}`);
    expect(remembered).toHaveLength(REFRESH_HISTORY);
    expect(remembered.at(-1)).toBe(`h${REFRESH_HISTORY + 9}`);
    expect(remembered[0]).toBe("h10");
  });
});

describe("canonicalUsername (lockout bypass by username case)", () => {
  it.each([
    ["alice", "alice"],
    ["ALICE", "alice"],
    ["  Alice\t", "alice"],
    ["\uff41\uff4c\uff49\uff43\uff45", "alice"], // full-width
    ["\uff21\uff2c\uff29\uff23\uff25", "alice"],
    ["\u212Aate", "kate"], // Kelvin sign
    ["\ufb01nance", "finance"], // the fi ligature
  ])("%j is %j", (input, expected) => {
    expect(canonicalUsername(input)).toBe(expected);
  });

  it("is idempotent", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        expect(canonicalUsername(canonicalUsername(s))).toBe(canonicalUsername(s));
      }),
    );
  });
});
