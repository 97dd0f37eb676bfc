/**
 * The approver MFA rule (finding 82), pure: which rule an approval follows (`approval.mfa`, else critical roles
 * only), what it accepts and what the approval's event records; and how four-eyes weighs a change of it.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { policySpec } from "../../contract/catalog.js";
import { policyFieldWidens } from "../catalog/change-requests.rules.js";
import {
  approverMfaCheck,
  approverMfaHint,
  approverMfaRuleCheck,
  approverMfaRuleHint,
  changeApproverMfaRule,
} from "./approver-mfa.rules.js";
import { approverMfaRule, checkApproverMfa } from "./policy.rules.js";

const NOW = new Date("2026-03-02T10:00:00Z");
const ago = (minutes: number) => new Date(NOW.getTime() - minutes * 60_000);
const stage = { stages: [{ approvers: { groups: ["approvers"] } }] };

describe("approverMfaRule", () => {
  it("without approval.mfa asks critical roles' approvers within 15m, and nobody else", () => {
    const spec = policySpec.parse({ approval: stage });
    expect(approverMfaRule(spec, "critical")).toEqual({ required: true, maxAge: "15m" });
    for (const risk of ["low", "medium", "high"]) expect(approverMfaRule(spec, risk).required).toBe(false);
  });

  it("an explicit approval.mfa wins at every tier, either way", () => {
    const on = policySpec.parse({ approval: { ...stage, mfa: { maxAge: "5m" } } });
    expect(approverMfaRule(on, "low")).toEqual({ required: true, maxAge: "5m" });
    const off = policySpec.parse({ approval: { ...stage, mfa: { required: false } } });
    expect(approverMfaRule(off, "critical").required).toBe(false);
  });

  it("refuses methods without required, as the requester's rule does", () => {
    expect(policySpec.safeParse({ approval: { mfa: { required: false, methods: ["webauthn"] } } }).success).toBe(false);
  });
});

describe("checkApproverMfa", () => {
  const rule = { required: true, maxAge: "5m" } as const;

  it("accepts an MFA within maxAge and records when and how, never more", () => {
    expect(checkApproverMfa(rule, ago(4), NOW, null)).toEqual({
      ok: true,
      used: { at: ago(4).toISOString(), method: "otp-or-sso" },
    });
    // A passkey check at or after the last MFA of any kind was the MFA that counted.
    expect(checkApproverMfa(rule, ago(2), NOW, ago(2))).toMatchObject({ used: { method: "passkey" } });
    expect(checkApproverMfa(rule, ago(1), NOW, ago(3))).toMatchObject({ used: { method: "otp-or-sso" } });
  });

  it("refuses none, or one older than maxAge, with MFA_STEP_UP_REQUIRED naming the approval", () => {
    for (const mfaAt of [null, ago(6)]) {
      const result = checkApproverMfa(rule, mfaAt, NOW, null);
      expect(result).toMatchObject({ ok: false, code: "MFA_STEP_UP_REQUIRED" });
      expect(result.ok ? "" : result.message).toMatch(/^Approving requests for this role needs a one-time code .* 5m/);
    }
  });

  it("a passkey-only rule counts only a passkey check (WEBAUTHN_REQUIRED)", () => {
    const passkey = { required: true, maxAge: "5m", methods: ["webauthn" as const] };
    expect(checkApproverMfa(passkey, ago(1), NOW, null)).toMatchObject({ ok: false, code: "WEBAUTHN_REQUIRED" });
    expect(checkApproverMfa(passkey, ago(1), NOW, ago(3))).toEqual({
      ok: true,
      used: { at: ago(3).toISOString(), method: "passkey" },
    });
  });

  it("a rule that asks nothing accepts a session without MFA and records nothing", () => {
    expect(checkApproverMfa({ required: false, maxAge: "15m" }, null, NOW, null)).toEqual({ ok: true, used: null });
  });
});

describe("four-eyes weighs a change of approval.mfa", () => {
  const widens = (field: string, from: unknown, to: unknown) =>
    policyFieldWidens({
      field: `spec.${field}`,
      ...(from === undefined ? {} : { from }),
      ...(to === undefined ? {} : { to }),
    });

  it("writing a rule that requires MFA within 15m narrows; anything looser widens", () => {
    expect(widens("approval.mfa", undefined, { required: true, maxAge: "5m" })).toBeNull();
    expect(widens("approval.mfa", undefined, { required: false, maxAge: "15m" })).toMatch(/no longer required/);
    expect(widens("approval.mfa", undefined, { required: true, maxAge: "1h" })).toMatch(/approver MFA age longer/);
  });

  it("taking a requiring rule out widens (absent asks critical roles only)", () => {
    expect(widens("approval.mfa", { required: true, maxAge: "5m" }, undefined)).toMatch(/no longer required/);
    expect(widens("approval.mfa", { required: false, maxAge: "15m" }, undefined)).toBeNull();
  });

  it("its fields: required off, a longer maxAge, more methods widen; the reverse narrows", () => {
    expect(widens("approval.mfa.required", true, false)).toMatch(/approver MFA no longer required/);
    expect(widens("approval.mfa.required", false, true)).toBeNull();
    expect(widens("approval.mfa.maxAge", "5m", "30m")).toMatch(/approver MFA age longer/);
    expect(widens("approval.mfa.maxAge", "30m", "5m")).toBeNull();
    expect(widens("approval.mfa.methods", ["webauthn"], ["webauthn", "totp"])).toMatch(/more approver MFA methods/);
    expect(widens("approval.mfa.methods", undefined, ["webauthn"])).toBeNull();
  });
});

describe("approverMfaHint: the inbox's hint is the decision's own check at the time of the list", () => {
  const specs = [
    policySpec.parse({ approval: stage }),
    policySpec.parse({ approval: { ...stage, mfa: { maxAge: "5m" } } }),
    policySpec.parse({ approval: { ...stage, mfa: { maxAge: "10m", methods: ["webauthn"] } } }),
    policySpec.parse({ approval: { ...stage, mfa: { required: false } } }),
  ];
  const minutesAgo = fc.option(fc.integer({ min: -2, max: 30 }), { nil: null });

  it("says satisfied exactly when the decision at that moment would accept the session", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...specs),
        fc.constantFrom("low", "medium", "high", "critical"),
        minutesAgo,
        minutesAgo,
        (spec, risk, mfa, passkey) => {
          const session = { mfaAt: mfa === null ? null : ago(mfa), webauthnAt: passkey === null ? null : ago(passkey) };
          const hint = approverMfaHint(spec, risk, session, NOW);
          expect(hint.satisfied).toBe(approverMfaCheck(spec, risk, session, NOW).ok);
          expect(hint.required).toBe(approverMfaRule(spec, risk).required);
        },
      ),
    );
  });

  it("names the window in seconds and whether only a passkey counts", () => {
    expect(approverMfaHint(specs[0]!, "critical", {}, NOW)).toEqual({
      required: true,
      withinSeconds: 900,
      passkeyOnly: false,
      satisfied: false,
    });
    expect(approverMfaHint(specs[2]!, "low", { mfaAt: ago(1) }, NOW)).toMatchObject({
      withinSeconds: 600,
      passkeyOnly: true,
      satisfied: false,
    });
    expect(approverMfaHint(specs[0]!, "high", {}, NOW)).toEqual({
      required: false,
      withinSeconds: null,
      passkeyOnly: false,
      satisfied: true,
    });
  });
});

describe("changeApproverMfaRule: a change request's hint and decision are the same check", () => {
  const config = { tiers: ["high", "critical"], maxAge: 5 * 60_000 };
  const minutesAgo = fc.option(fc.integer({ min: -2, max: 30 }), { nil: null });

  it("asks within maxAge at the configured tiers only, and nothing without the setting", () => {
    expect(changeApproverMfaRule(config, "high")).toEqual({ required: true, maxAge: "300s" });
    for (const tier of ["low", "medium"]) expect(changeApproverMfaRule(config, tier).required).toBe(false);
    expect(changeApproverMfaRule(undefined, "critical").required).toBe(false);
  });

  it("the hint says satisfied exactly when the decision's check accepts the session, and names the window", () => {
    fc.assert(
      fc.property(fc.constantFrom("low", "medium", "high", "critical"), minutesAgo, minutesAgo, (tier, mfa, key) => {
        const session = { mfaAt: mfa === null ? null : ago(mfa), webauthnAt: key === null ? null : ago(key) };
        const rule = changeApproverMfaRule(config, tier);
        const hint = approverMfaRuleHint(rule, session, NOW);
        expect(hint.satisfied).toBe(approverMfaRuleCheck(rule, session, NOW).ok);
        expect(hint).toMatchObject(rule.required ? { required: true, withinSeconds: 300 } : { required: false });
      }),
    );
  });
});
