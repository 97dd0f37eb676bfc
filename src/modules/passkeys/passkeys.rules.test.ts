import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { policySpec } from "../../contract/catalog.js";
import { checkMfaFreshness } from "../requests/policy.rules.js";
import { minimizeSpec } from "../catalog/catalog.config.js";
import {
  challengeProblem,
  counterWentBack,
  factorChangeNeeds,
  matchCode,
  nextCounter,
  relyingPartyFrom,
} from "./passkeys.rules.js";

const now = new Date("2026-03-01T10:00:00Z");
const minutesAgo = (m: number) => new Date(now.getTime() - m * 60_000);

describe("counterWentBack", () => {
  it.each([
    [0, 0, false], // authenticators without a counter (and synced passkeys) always send 0
    [0, 1, false],
    [5, 6, false],
    [5, 5, true], // the same counter twice: a copy signed
    [5, 4, true],
    [5, 0, true], // a counter that restarted
    [0xffffffff, 0, true],
  ])("stored %d, presented %d → %s", (stored, presented, cloned) => {
    expect(counterWentBack(stored, presented)).toBe(cloned);
  });

  it("accepts exactly the counters above the stored one (when either is non-zero)", () => {
    fc.assert(
      fc.property(fc.nat(0xffffffff), fc.nat(0xffffffff), (stored, presented) => {
        const accepted = !counterWentBack(stored, presented);
        expect(accepted).toBe(presented > stored || (stored === 0 && presented === 0));
        if (accepted) expect(nextCounter(stored, presented)).toBeGreaterThanOrEqual(stored);
      }),
    );
  });
});

describe("challengeProblem", () => {
  const row = { principal_id: "p1", purpose: "login", used_at: null, expires_at: new Date(now.getTime() + 1000) };
  const expected = { principalId: "p1", purpose: "login" as const, now };
  it("accepts an unused, unexpired challenge of the same principal and purpose", () => {
    expect(challengeProblem(row, expected)).toBeNull();
  });
  it.each([
    [undefined, "unknown challenge"],
    [{ ...row, principal_id: "p2" }, "challenge issued to someone else"],
    [{ ...row, purpose: "step_up" }, "challenge issued for step_up, not login"],
    [{ ...row, used_at: now }, "challenge already used"],
    [{ ...row, expires_at: now }, "challenge expired"],
  ])("refuses %j: %s", (candidate, reason) => {
    expect(challengeProblem(candidate, expected)).toBe(reason);
  });
});

describe("relyingPartyFrom", () => {
  it("derives the RP ID and origin from the public URL", () => {
    expect(relyingPartyFrom({ publicUrl: "https://stint.example.com:8443/base" })).toEqual({
      id: "stint.example.com",
      name: "Stint",
      origins: ["https://stint.example.com:8443"],
    });
  });
  it("keeps what the configuration names", () => {
    expect(
      relyingPartyFrom({
        publicUrl: "https://stint.example.com",
        rpId: "example.com",
        rpName: "ACME access",
        origins: ["https://a.example.com", "https://b.example.com"],
      }),
    ).toEqual({ id: "example.com", name: "ACME access", origins: ["https://a.example.com", "https://b.example.com"] });
  });
});

describe("factorChangeNeeds", () => {
  it("lets an account without a second factor add its first only from a recent sign-in", () => {
    const input = { hasFactor: false, mfaAt: null, now };
    expect(factorChangeNeeds({ ...input, signedInAt: minutesAgo(15) })).toBeNull();
    expect(factorChangeNeeds({ ...input, signedInAt: minutesAgo(16) })).toBe("sign-in");
    expect(factorChangeNeeds({ ...input, signedInAt: null })).toBe("sign-in");
  });
  it("needs an MFA check within 15 minutes once a factor exists, however recent the sign-in", () => {
    const input = { hasFactor: true, signedInAt: now, now };
    expect(factorChangeNeeds({ ...input, mfaAt: null })).toBe("step-up");
    expect(factorChangeNeeds({ ...input, mfaAt: minutesAgo(15) })).toBeNull();
    expect(factorChangeNeeds({ ...input, mfaAt: minutesAgo(16) })).toBe("step-up");
  });
});

describe("matchCode", () => {
  it("is two groups of four unambiguous characters", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 8 }), (bytes) => {
        expect(matchCode(bytes)).toMatch(/^[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}$/);
      }),
    );
  });
});

describe("policy mfa.methods", () => {
  const passkeyOnly = policySpec.parse({ mfa: { required: true, maxAge: "10m", methods: ["webauthn"] } });
  const any = policySpec.parse({ mfa: { required: true, maxAge: "10m" } });

  it("counts only the last passkey check when the methods leave out TOTP", () => {
    expect(checkMfaFreshness(passkeyOnly, minutesAgo(1), now, null)).toMatchObject({
      ok: false,
      code: "WEBAUTHN_REQUIRED",
    });
    expect(checkMfaFreshness(passkeyOnly, minutesAgo(1), now, minutesAgo(11))).toMatchObject({
      code: "WEBAUTHN_REQUIRED",
    });
    expect(checkMfaFreshness(passkeyOnly, minutesAgo(1), now, minutesAgo(10))).toEqual({ ok: true });
  });

  it("counts any second factor when the methods are absent or include TOTP", () => {
    const both = policySpec.parse({ mfa: { required: true, maxAge: "10m", methods: ["totp", "webauthn"] } });
    for (const spec of [any, both]) {
      expect(checkMfaFreshness(spec, minutesAgo(1), now, null)).toEqual({ ok: true });
      expect(checkMfaFreshness(spec, minutesAgo(11), now, null)).toMatchObject({ code: "MFA_STEP_UP_REQUIRED" });
    }
  });

  it("refuses methods without required MFA, repeated methods, unknown methods and an empty list", () => {
    for (const mfa of [
      { required: false, methods: ["webauthn"] },
      { methods: ["webauthn", "webauthn"] },
      { methods: ["sms"] },
      { methods: [] },
    ]) {
      expect(policySpec.safeParse({ mfa }).success, JSON.stringify(mfa)).toBe(false);
    }
  });

  it("survives the export round trip (minimized spec parses back to the same spec)", () => {
    const minimized = minimizeSpec(passkeyOnly);
    expect(minimized.mfa).toEqual({ maxAge: "10m", methods: ["webauthn"] });
    expect(policySpec.parse(minimized)).toEqual(passkeyOnly);
    expect(minimizeSpec(any).mfa).toEqual({ maxAge: "10m" });
  });
});
