/**
 * Four-eyes rules without a database: every kind of planned change classified as widening or not, with the
 * risk tier it reaches; whole plans held (a widening change in a mixed plan holds all of it); the lifecycle.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "./catalog.config.js";
import { planConfig } from "./catalog.plan.rules.js";
import type { CatalogState, DesiredCatalog, RiskTier } from "./catalog.types.js";
import {
  assessPlan,
  catalogFingerprint,
  decisionRefusal,
  effectiveStatus,
  maxTier,
  policyFieldWidens,
} from "./change-requests.rules.js";

const SECTIONS = {
  groups: `groups:
  - name: ops
    members: [alice]
  - name: approvers
    members: [carol]
  - name: idle
    members: [bob]`,
  policies: `policies:
  - name: strict
    maxDuration: 2h
    defaultDuration: 1h
    mfa: { required: true, maxAge: 10m }
    justification: { minLength: 20, ticketRequired: true }
    approval:
      stages:
        - approvers: { groups: [approvers] }
          count: 2
    maxExtensions: 1
    session: { recording: required }`,
  targets: `targets:
  - name: db
    kind: internal
    labels: { env: prod }
  - name: spare
    kind: internal`,
  roles: `roles:
  - name: crit
    target: db
    policy: strict
    risk: critical
    owners: [approvers]
  - name: minor
    target: db
    policy: strict
    risk: low`,
  eligibility: `eligibility:
  - role: crit
    groups: [ops]
  - role: crit
    users: [bob]
    from: 2026-06-01
    until: 2027-01-01`,
};
type Sections = typeof SECTIONS;

function fileOf(overrides: Partial<Sections> = {}, prune = false): string {
  const s = { ...SECTIONS, ...overrides };
  return `apiVersion: stint/v1\n${prune ? "prune: true\n" : ""}${Object.values(s).join("\n")}\n`;
}

function desiredOf(text: string): DesiredCatalog {
  const parsed = parseConfig(text);
  expect(parsed.problems).toEqual([]);
  return parsed.desired;
}

/** The catalog the base file makes, as the store would load it. */
function current(): CatalogState {
  const d = desiredOf(fileOf());
  const strip = <T extends object>(items: T[] | undefined) =>
    (items ?? []).map((item) => {
      const { at: _a, refsAt: _r, ...rest } = item as T & { at?: unknown; refsAt?: unknown };
      return rest as T;
    });
  return {
    groups: strip(d.groups),
    policies: strip(d.policies),
    targets: strip(d.targets),
    roles: strip(d.roles),
    eligibility: strip(d.eligibility).map((e) => ({
      ...e,
      from: e.from ?? "2026-01-01T00:00:00.000Z",
      fromChosen: e.from !== undefined,
    })),
  };
}

const HIGH: RiskTier[] = ["high", "critical"];

function assess(overrides: Partial<Sections>, tiers: RiskTier[] = HIGH, prune = false) {
  const now = current();
  const desired = desiredOf(fileOf(overrides, prune));
  const plan = planConfig(now, desired);
  expect(plan.changes.length).toBeGreaterThan(0); // every case changes something
  return assessPlan(now, desired, plan.changes, tiers);
}

const replace = (section: keyof Sections, from: string, to: string): Partial<Sections> => {
  expect(SECTIONS[section]).toContain(from);
  return { [section]: SECTIONS[section].replace(from, to) };
};

describe("assessPlan: each kind of change", () => {
  const cases: {
    name: string;
    overrides: Partial<Sections>;
    prune?: boolean;
    held: boolean;
    effect: "widens" | "narrows" | "neutral";
    tier: RiskTier | null;
    reason?: RegExp;
  }[] = [
    // Eligibility
    {
      name: "eligibility added to a critical role",
      overrides: { eligibility: `${SECTIONS.eligibility}\n  - role: crit\n    users: [carol]` },
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /new eligibility/,
    },
    {
      name: "eligibility added to a low role",
      overrides: { eligibility: `${SECTIONS.eligibility}\n  - role: minor\n    users: [carol]` },
      held: false,
      effect: "widens",
      tier: "low",
    },
    {
      name: "eligibility ends later",
      overrides: replace("eligibility", "until: 2027-01-01", "until: 2028-01-01"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /ends later/,
    },
    {
      name: "eligibility no longer ends",
      overrides: replace("eligibility", "    until: 2027-01-01", ""),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /no longer ends/,
    },
    {
      name: "eligibility starts earlier",
      overrides: replace("eligibility", "from: 2026-06-01", "from: 2026-03-01"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /starts earlier/,
    },
    {
      name: "eligibility ends sooner",
      overrides: replace("eligibility", "until: 2027-01-01", "until: 2026-09-01"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "eligibility starts later",
      overrides: replace("eligibility", "from: 2026-06-01", "from: 2026-07-01"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "eligibility reason only",
      overrides: replace("eligibility", "until: 2027-01-01", "until: 2027-01-01\n    reason: on call"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "eligibility removed (prune)",
      overrides: { eligibility: `eligibility:\n  - role: crit\n    groups: [ops]` },
      prune: true,
      held: false,
      effect: "narrows",
      tier: null,
    },
    // Groups
    {
      name: "member added to a group eligible for a critical role",
      overrides: replace("groups", "members: [alice]", "members: [alice, carol]"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /members added: carol/,
    },
    {
      name: "member added to a group that approves for a critical role",
      overrides: replace("groups", "members: [carol]", "members: [bob, carol]"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /members added: bob/,
    },
    {
      name: "member added to a group that reaches no role",
      overrides: replace("groups", "members: [bob]", "members: [alice, bob]"),
      held: false,
      effect: "widens",
      tier: null,
    },
    {
      name: "member removed from a group",
      overrides: replace("groups", "members: [alice]", "members: []"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    // Roles
    {
      name: "critical role lowered to low risk",
      overrides: replace("roles", "risk: critical", "risk: low"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /risk lowered \(critical → low\)/,
    },
    {
      name: "low role raised to high risk",
      overrides: replace("roles", "risk: low", "risk: high"),
      held: false,
      effect: "neutral",
      tier: "high",
    },
    {
      name: "critical role moved to another target",
      overrides: replace(
        "roles",
        "target: db\n    policy: strict\n    risk: critical",
        "target: spare\n    policy: strict\n    risk: critical",
      ),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /target changed/,
    },
    {
      name: "critical role's entitlement changed",
      overrides: replace("roles", "owners: [approvers]", "owners: [approvers]\n    entitlement: { extra: true }"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /entitlement changed/,
    },
    {
      name: "critical role's owners added",
      overrides: replace("roles", "owners: [approvers]", "owners: [approvers, idle]"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /owners added: idle/,
    },
    {
      name: "critical role's description",
      overrides: replace("roles", "risk: critical", "risk: critical\n    description: the crown jewels"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "critical role switched to a looser policy",
      overrides: {
        policies: `${SECTIONS.policies}\n  - name: loose\n    mfa: { required: false }`,
        roles: SECTIONS.roles.replace("policy: strict\n    risk: critical", "policy: loose\n    risk: critical"),
      },
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /policy loose is looser: .*MFA no longer required/,
    },
    {
      name: "a role created (nobody eligible yet)",
      overrides: {
        roles: `${SECTIONS.roles}\n  - name: newcrit\n    target: db\n    policy: strict\n    risk: critical`,
      },
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    // Policies
    {
      name: "policy: longer maximum duration",
      overrides: replace("policies", "maxDuration: 2h", "maxDuration: 8h"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /maximum duration longer \(2h → 8h\)/,
    },
    {
      name: "policy: shorter maximum duration",
      overrides: replace("policies", "maxDuration: 2h", "maxDuration: 1h"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "policy: no MFA",
      overrides: replace("policies", "required: true, maxAge: 10m", "required: false"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /MFA no longer required/,
    },
    {
      name: "policy: fewer approvals in a stage",
      overrides: replace("policies", "count: 2", "count: 1"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /needs fewer approvals/,
    },
    {
      name: "policy: more approvals in a stage",
      overrides: replace("policies", "count: 2", "count: 3"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "policy: no approval stages",
      overrides: replace(
        "policies",
        "    approval:\n      stages:\n        - approvers: { groups: [approvers] }\n          count: 2\n",
        "",
      ),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /fewer approval stages \(1 → 0\)/,
    },
    {
      name: "policy: a second stage added",
      overrides: replace("policies", "count: 2", "count: 2\n        - approvers: { users: [carol] }"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "policy: other approvers",
      overrides: replace("policies", "groups: [approvers]", "groups: [idle]"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /approval stage 1 changed/,
    },
    {
      name: "policy: break-glass allowed",
      overrides: replace("policies", "maxExtensions: 1", "maxExtensions: 1\n    breakGlass: true"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /break-glass allowed/,
    },
    {
      name: "policy: recording optional",
      overrides: replace("policies", "recording: required", "recording: optional"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /session recording optional/,
    },
    {
      name: "policy: more extensions",
      overrides: replace("policies", "maxExtensions: 1", "maxExtensions: 3"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /more extensions/,
    },
    {
      name: "policy: shorter justification",
      overrides: replace("policies", "minLength: 20", "minLength: 5"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /shorter justification/,
    },
    {
      name: "policy: ticket no longer required",
      overrides: replace("policies", "ticketRequired: true", "ticketRequired: false"),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /ticket no longer required/,
    },
    {
      name: "policy created (no role uses it)",
      overrides: { policies: `${SECTIONS.policies}\n  - name: loose\n    mfa: { required: false }` },
      held: false,
      effect: "neutral",
      tier: null,
    },
    // Targets
    {
      name: "target's credential set",
      overrides: replace(
        "targets",
        "labels: { env: prod }",
        "labels: { env: prod }\n    credential: { secret: targets/db/admin }",
      ),
      held: true,
      effect: "widens",
      tier: "critical",
      reason: /credential touched/,
    },
    {
      name: "target's labels only",
      overrides: replace("targets", "env: prod", "env: production"),
      held: false,
      effect: "neutral",
      tier: "critical",
    },
    {
      name: "credential of a target no role uses (lowest tier)",
      overrides: replace(
        "targets",
        "name: spare\n    kind: internal",
        "name: spare\n    kind: internal\n    credential: { secret: targets/spare/admin }",
      ),
      held: false,
      effect: "widens",
      tier: "low",
    },
  ];

  it.each(cases)("$name", ({ overrides, prune, held, effect, tier, reason }) => {
    const result = assess(overrides, HIGH, prune ?? false);
    const change = result.changes.find((c) => c.effect === "widens") ?? result.changes[0]!;
    expect(result.held).toBe(held);
    expect(change.effect).toBe(effect);
    expect(change.tier).toBe(tier);
    if (reason) expect(change.reasons.join("; ")).toMatch(reason);
    // Every widening change with a reason; no reason on the others.
    for (const c of result.changes) expect(c.reasons.length > 0).toBe(c.effect === "widens");
  });
});

describe("assessPlan: tiers and mixed plans", () => {
  const addLow = { eligibility: `${SECTIONS.eligibility}\n  - role: minor\n    users: [carol]` };

  it("follows the configured tiers: low held when low is listed, nothing held with none", () => {
    expect(assess(addLow, ["low"]).held).toBe(true);
    expect(assess(addLow, ["low"]).tier).toBe("low");
    const critical = { eligibility: `${SECTIONS.eligibility}\n  - role: crit\n    users: [carol]` };
    expect(assess(critical, []).held).toBe(false);
    expect(assess(critical, ["critical"]).tier).toBe("critical");
  });

  it("holds the whole plan when one widening change hides among narrowing ones", () => {
    const result = assess(
      {
        groups: SECTIONS.groups.replace("members: [alice]", "members: []"), // narrows
        policies: SECTIONS.policies.replace("maxDuration: 2h", "maxDuration: 1h"), // narrows
        eligibility: `eligibility:\n  - role: crit\n    groups: [ops]\n  - role: crit\n    users: [carol]`, // widens
      },
      HIGH,
      true,
    );
    expect(result.changes.map((c) => c.effect).sort()).toEqual(["narrows", "neutral", "neutral", "widens"]);
    expect(result.held).toBe(true);
    expect(result.tier).toBe("critical");
  });

  it("takes the highest tier among the holding changes", () => {
    const result = assess({
      roles: SECTIONS.roles.replace("risk: low", "risk: high"),
      eligibility: `${SECTIONS.eligibility}\n  - role: minor\n    users: [carol]\n  - role: crit\n    users: [carol]`,
    });
    expect(result.tier).toBe("critical");
  });
});

describe("policyFieldWidens: unknown fields widen", () => {
  it.each([
    [{ field: "spec.someday", from: 1, to: 2 }, "someday changed"],
    [{ field: "spec.description", from: "a", to: "b" }, null],
    [{ field: "spec.mfa.methods", from: ["webauthn"], to: undefined }, "any MFA method accepted"],
    [{ field: "spec.mfa.methods", from: undefined, to: ["webauthn"] }, null],
    [{ field: "spec.windows", from: [], to: [{ days: ["mon"] }] }, null],
    [{ field: "spec.windows", from: [{ days: ["mon"] }], to: [] }, "activation windows changed"],
    [{ field: "spec.outsideWindow", from: "deny", to: "require-approval" }, /outside the windows/],
    [{ field: "spec.approval.sameApproverAcrossStages", from: false, to: true }, /several stages/],
    [{ field: "spec.drift", from: "remove", to: "report" }, "drift only reported"],
    [{ field: "spec.session.portForwarding", from: false, to: true }, "port forwarding allowed"],
    [{ field: "spec.session.files", to: { download: "deny" } }, null],
    [{ field: "spec.session.files", from: { download: "deny" } }, "file downloads allowed"],
    [{ field: "spec.session.files.upload", from: "deny", to: "allow" }, "file uploads allowed"],
    [{ field: "spec.session.files.download", from: "allow", to: "deny" }, null],
    [{ field: "spec.session.files.maxBytes", from: 10, to: 20 }, "larger file transfers allowed"],
    [{ field: "spec.session.files.maxBytes", to: 20 }, null],
    [{ field: "spec.session.files.maxBytes", from: 20 }, "larger file transfers allowed"],
    [{ field: "spec.session.moderator", to: { groups: ["sec"] } }, null],
    [{ field: "spec.session.moderator", from: { groups: ["sec"] } }, "moderator no longer required"],
    [{ field: "spec.session.moderator.groups", from: ["sec"], to: ["sec", "ops"] }, "more moderator groups"],
    [{ field: "spec.session.moderator.groups", from: ["sec", "ops"], to: ["sec"] }, null],
    [{ field: "spec.justification.ticketPattern", from: "^A", to: "^B" }, "ticket pattern changed"],
    [{ field: "spec.justification.rejectWords", from: ["a", "b"], to: ["a"] }, "fewer rejected words"],
    [
      {
        field: "spec.approval.stages",
        from: [{ approvers: {}, count: 1 }],
        to: [{ approvers: {}, count: 1, onTimeout: "approve" }],
      },
      /approves on timeout/,
    ],
  ])("%j", (change, expected) => {
    const result = policyFieldWidens(change);
    if (expected instanceof RegExp) expect(result).toMatch(expected);
    else expect(result).toBe(expected);
  });
});

describe("lifecycle", () => {
  const now = new Date("2026-12-06T12:00:00Z");
  const facts = { status: "pending" as const, authorId: "a", expiresAt: new Date("2026-12-07T00:00:00Z") };
  it.each([
    ["a second admin approves", facts, "b", "approve", null],
    ["the author approves", facts, "a", "approve", "CHANGE_REQUEST_SELF_APPROVAL"],
    ["the author withdraws", facts, "a", "deny", null],
    [
      "already applied (replay)",
      { ...facts, status: "applied" as const },
      "b",
      "approve",
      "CHANGE_REQUEST_NOT_PENDING",
    ],
    ["denied", { ...facts, status: "denied" as const }, "b", "deny", "CHANGE_REQUEST_NOT_PENDING"],
    ["past its expiry", { ...facts, expiresAt: now }, "b", "approve", "CHANGE_REQUEST_EXPIRED"],
  ] as const)("%s", (_name, f, decider, decision, expected) => {
    expect(decisionRefusal(f, decider, decision, now)).toBe(expected);
  });

  it("shows a pending request past its expiry as expired", () => {
    expect(effectiveStatus("pending", now, now)).toBe("expired");
    expect(effectiveStatus("pending", new Date(now.getTime() + 1), now)).toBe("pending");
    expect(effectiveStatus("applied", now, now)).toBe("applied");
  });

  it("orders tiers", () => {
    expect(maxTier("low", null, "high", "medium")).toBe("high");
    expect(maxTier()).toBe(null);
  });
});

describe("catalogFingerprint", () => {
  it("ignores order, sees every change", () => {
    const state = current();
    const shuffled: CatalogState = {
      ...state,
      roles: [...state.roles].reverse(),
      eligibility: [...state.eligibility].reverse(),
      policies: state.policies.map((p) => ({ spec: p.spec, description: p.description, name: p.name })),
    };
    expect(catalogFingerprint(shuffled)).toBe(catalogFingerprint(state));
    const changed = {
      ...state,
      roles: state.roles.map((r) => (r.name === "crit" ? { ...r, risk: "high" as const } : r)),
    };
    expect(catalogFingerprint(changed)).not.toBe(catalogFingerprint(state));
    const until = {
      ...state,
      eligibility: state.eligibility.map((e, i) => (i === 0 ? { ...e, until: "2030-01-01T00:00:00.000Z" } : e)),
    };
    expect(catalogFingerprint(until)).not.toBe(catalogFingerprint(state));
    expect(catalogFingerprint(state)).toMatch(/^[0-9a-f]{64}$/);
  });
});
