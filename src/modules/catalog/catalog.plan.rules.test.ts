/**
 * Configuration as code without a database: planning (create/update/delete,
 * field-level diffs, prune only for listed sections, order), the checks a file
 * must pass, problems located at line and column, and export round trips.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { policySpec, type PolicySpec } from "../../contract/catalog.js";
import { minimizeSpec, parseConfig, renderConfig } from "./catalog.config.js";
import { checkConfig, deepEqual, diffValues, formatPath, planConfig } from "./catalog.plan.rules.js";
import { configTimeToIso, isoToConfigTime, riskProblem } from "./catalog.rules.js";
import type { CatalogFacts, CatalogState, CurrentEligibility, DesiredCatalog } from "./catalog.types.js";
import { SEED_CATALOG_YAML } from "../../testing/seed-catalog.js";

const spec = (input: unknown = {}): PolicySpec => policySpec.parse(input);

const EMPTY: CatalogState = { groups: [], policies: [], targets: [], roles: [], eligibility: [] };

function state(overrides: Partial<CatalogState> = {}): CatalogState {
  return { ...EMPTY, ...overrides };
}

const FACTS: CatalogFacts = {
  principals: new Set(["alice", "bob", "carol"]),
  rolesWithHistory: new Set(),
};

const stint = {
  name: "stint",
  kind: "internal" as const,
  address: null,
  labels: {},
  credential: null,
  identity: { template: "{{name}}", map: {} },
  options: {},
};
const standard = { name: "standard", description: null, spec: spec() };
const reader = {
  name: "reader",
  description: null,
  target: "stint",
  policy: "standard",
  risk: "medium" as const,
  owners: [],
  entitlement: {},
};
const eligible = (subject: string, overrides: Partial<CurrentEligibility> = {}): CurrentEligibility => ({
  role: "reader",
  subjectKind: "user",
  subject,
  from: "2026-01-01T00:00:00.000Z",
  fromChosen: false,
  until: null,
  reason: null,
  ...overrides,
});

/** The desired state a YAML text asks for; fails the test on any problem. */
function desiredOf(text: string): DesiredCatalog {
  const parsed = parseConfig(text);
  expect(parsed.problems).toEqual([]);
  return parsed.desired;
}

const FILE = SEED_CATALOG_YAML;

/** The state after applying a desired catalog to an empty one, as the store would load it. */
function applied(desired: DesiredCatalog): CatalogState {
  const strip = <T extends object>(items: T[] | undefined) =>
    (items ?? []).map((item) => {
      const { at: _at, refsAt: _refsAt, ...rest } = item as T & { at?: unknown; refsAt?: unknown };
      return rest;
    });
  return {
    groups: strip(desired.groups),
    policies: strip(desired.policies),
    targets: strip(desired.targets),
    roles: strip(desired.roles),
    eligibility: strip(desired.eligibility).map((e) => ({
      ...e,
      from: e.from ?? "2026-06-01T12:00:00.000Z",
      fromChosen: e.from !== undefined,
    })),
  } as CatalogState;
}

describe("planConfig", () => {
  it("creates everything a file lists on an empty catalog, in dependency order", () => {
    const plan = planConfig(EMPTY, desiredOf(FILE));
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}`)).toEqual([
      "create group sre",
      "create group sre-leads",
      "create policy high-risk",
      "create target stint",
      "create role prod-db-reader",
      "create eligibility prod-db-reader/group:sre",
    ]);
    const role = plan.changes.find((c) => c.kind === "role")!;
    expect(role.fields).toEqual([
      { field: "target", to: "stint" },
      { field: "policy", to: "high-risk" },
      { field: "risk", to: "high" },
      { field: "owners", to: ["sre-leads"] },
    ]);
    const eligibility = plan.changes.at(-1)!;
    expect(eligibility.fields).toEqual([{ field: "until", to: "2027-11-25T00:00:00.000Z" }]);
  });

  it("plans nothing once the file has been applied", () => {
    const desired = desiredOf(FILE);
    expect(planConfig(applied(desired), desired)).toEqual({ changes: [], notes: [] });
  });

  it("reports field-level changes, walking into the policy spec", () => {
    const desired = desiredOf(FILE);
    const current = applied(desired);
    const changed = desiredOf(
      FILE.replace("maxAge: 10m", "maxAge: 5m")
        .replace("risk: high", "risk: critical")
        .replace("members: [alice, bob]", "members: [bob, carol]"),
    );
    const plan = planConfig(current, changed);
    expect(plan.changes).toEqual([
      {
        action: "update",
        kind: "group",
        name: "sre",
        fields: [{ field: "members", from: ["alice", "bob"], to: ["bob", "carol"] }],
      },
      {
        action: "update",
        kind: "policy",
        name: "high-risk",
        fields: [{ field: "spec.mfa.maxAge", from: "10m", to: "5m" }],
      },
      {
        action: "update",
        kind: "role",
        name: "prod-db-reader",
        fields: [{ field: "risk", from: "high", to: "critical" }],
      },
    ]);
  });

  it("never deletes without prune, and says what it keeps", () => {
    const current = state({ targets: [stint, { ...stint, name: "other" }], policies: [standard] });
    const plan = planConfig(
      current,
      desiredOf("apiVersion: stint/v1\ntargets:\n  - { name: stint, kind: internal }\n"),
    );
    expect(plan.changes).toEqual([]);
    expect(plan.notes).toEqual(["1 target not in the file is kept (prune: true would delete it)."]);
  });

  it("with prune deletes only in the sections the file lists, in reverse dependency order", () => {
    const current = state({
      targets: [stint, { ...stint, name: "old-target" }],
      policies: [standard, { ...standard, name: "unlisted-section" }],
      roles: [reader, { ...reader, name: "old-role" }],
      eligibility: [eligible("alice"), eligible("bob", { role: "old-role" })],
    });
    const plan = planConfig(
      current,
      desiredOf(`apiVersion: stint/v1
prune: true
targets: [{ name: stint, kind: internal }]
roles:
  - { name: reader, target: stint, policy: standard, risk: medium }
eligibility:
  - { role: reader, users: [alice] }
`),
    );
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.name}`)).toEqual([
      "delete eligibility old-role/user:bob",
      "delete role old-role",
      "delete target old-target",
    ]);
  });

  it("compares an eligibility's start only when the file gives one", () => {
    const current = state({ roles: [reader], eligibility: [eligible("alice")] });
    expect(
      planConfig(current, desiredOf("apiVersion: stint/v1\neligibility:\n  - { role: reader, users: [alice] }\n"))
        .changes,
    ).toEqual([]);
    const plan = planConfig(
      current,
      desiredOf(
        "apiVersion: stint/v1\neligibility:\n  - { role: reader, users: [alice], from: 2026-02-01, reason: on call }\n",
      ),
    );
    expect(plan.changes).toEqual([
      {
        action: "update",
        kind: "eligibility",
        name: "reader/user:alice",
        fields: [
          { field: "from", from: "2026-01-01T00:00:00.000Z", to: "2026-02-01T00:00:00.000Z" },
          { field: "reason", from: null, to: "on call" },
        ],
      },
    ]);
  });
});

describe("checkConfig", () => {
  const check = (text: string, current: CatalogState = EMPTY, facts: CatalogFacts = FACTS) => {
    const parsed = parseConfig(text);
    return [
      ...parsed.problems,
      ...checkConfig(current, parsed.desired, facts, parsed.invalidNames).map(parsed.locate),
    ].map((p) => `${p.line}:${p.column}: ${p.path}: ${p.message}`);
  };

  it("accepts the example of the issue", () => {
    expect(check(FILE)).toEqual([]);
  });

  it("lists each unknown reference at its line and column", () => {
    const text = FILE.replace("policy: high-risk", "policy: hgh-risk")
      .replace("members: [carol]", "members: [carol, zed]")
      .replace("groups: [sre-leads] }", "groups: [sre-lead] }")
      .replace("    groups: [sre]\n", "    groups: [sre]\n    users: [nobody]\n");
    expect(check(text)).toEqual([
      '6:22: groups[1].members[1]: unknown user "zed"',
      '19:34: policies[0].approval.stages[0].escalateTo.groups[0]: unknown group "sre-lead"',
      '31:13: roles[0].policy: unknown policy "hgh-risk"',
      '36:13: eligibility[0].users[0]: unknown user "nobody"',
    ]);
  });

  it("finds duplicate names and duplicate eligibility", () => {
    const text = `apiVersion: stint/v1
targets:
  - name: stint
    kind: internal
  - name: stint
    kind: postgres
eligibility:
  - { role: reader, users: [alice] }
  - { role: reader, users: [bob, alice] }
`;
    expect(check(text, state({ roles: [reader], policies: [standard] }))).toEqual([
      '5:11: targets[1].name: duplicate target name "stint" (first at targets[0])',
      '9:34: eligibility[1].users[1]: user "alice" is eligible for role "reader" twice (first at eligibility[0])',
    ]);
  });

  it("maps schema errors to their nodes: wrong values, unknown and missing fields", () => {
    const text = `apiVersion: stint/v1
policies:
  - name: p
    maxDuration: forever
    colour: blue
roles:
  - name: r
    target: stint
    risk: extreme
`;
    expect(check(text, state({ targets: [stint] }))).toEqual([
      "4:18: policies[0].maxDuration: must be a duration like 30s, 15m, 2h or 1d",
      "5:5: policies[0].colour: unknown field",
      "7:5: roles[0].policy: is required",
      '9:11: roles[0].risk: invalid option: expected one of "low"|"medium"|"high"|"critical"',
    ]);
  });

  it("does not call an entry that has schema errors unknown as well", () => {
    const text = `apiVersion: stint/v1
policies:
  - name: p
    maxDuration: forever
roles:
  - { name: r, target: stint, policy: p, risk: low }
`;
    expect(check(text, state({ targets: [stint] }))).toEqual([
      "4:18: policies[0].maxDuration: must be a duration like 30s, 15m, 2h or 1d",
    ]);
  });

  it("reports YAML syntax errors with their position and nothing else", () => {
    expect(check("apiVersion: stint/v1\nroles:\n  - name: r\n    name: again\n")).toEqual([
      "4:5: : map keys must be unique",
    ]);
    expect(check("apiVersion: stint/v1\n---\napiVersion: stint/v1\n")).toEqual([
      "2:1: : a configuration file is a single YAML document (no second ---)",
    ]);
    expect(check("roles:\n")).toEqual([
      "1:1: apiVersion: is required",
      "1:1: roles: invalid input: expected array, received null",
    ]);
    expect(check("- just\n- a list\n")).toEqual([
      "1:1: : the file must be a mapping that starts with apiVersion: stint/v1",
    ]);
    expect(check("apiVersion: stint/v2\nprune: yes\nextra: 1\n")).toEqual([
      '1:13: apiVersion: invalid input: expected "stint/v1"',
      "2:8: prune: invalid input: expected boolean, received string",
      "3:1: extra: unknown field",
    ]);
  });

  it("lets only low-risk roles use a policy that approves on timeout", () => {
    const autoApprove = `apiVersion: stint/v1
policies:
  - name: lenient
    approval:
      stages:
        - approvers: { groups: [sre] }
          timeout: 1h
          onTimeout: approve
`;
    const sre = { name: "sre", description: null, members: [] };
    expect(
      check(
        `${autoApprove}roles:\n  - { name: r, target: stint, policy: lenient, risk: high }\n`,
        state({ targets: [stint], groups: [sre] }),
      ),
    ).toEqual([
      '10:54: roles[0].risk: role "r" uses policy "lenient": a policy that approves on timeout (approval.stages[0].onTimeout: approve) may only be used by low-risk roles, not high',
    ]);
    expect(
      check(
        `${autoApprove}roles:\n  - { name: r, target: stint, policy: lenient, risk: low }\n`,
        state({ targets: [stint], groups: [sre] }),
      ),
    ).toEqual([]);
    // The role is not in the file: the policy's onTimeout is at fault.
    const current = state({ targets: [stint], groups: [sre], roles: [{ ...reader, policy: "lenient", risk: "high" }] });
    expect(check(autoApprove, current)).toEqual([
      '8:22: policies[0].approval.stages[0].onTimeout: approve on timeout is only for low-risk roles, but role "reader" (not in this file) has risk high and uses this policy',
    ]);
  });

  it("points at prune when it would break what the file does not list, or lose history", () => {
    const current = state({
      targets: [stint],
      policies: [standard],
      roles: [reader],
      eligibility: [eligible("alice")],
    });
    const problems = check("apiVersion: stint/v1\nprune: true\npolicies: []\nroles: []\n", current, {
      ...FACTS,
      rolesWithHistory: new Set(["reader"]),
    });
    expect(problems).toEqual([
      '2:8: prune: eligibility "reader/user:alice" (not in this file) is for role "reader", which prune would delete',
      '2:8: prune: role "reader" has activation requests on record and cannot be deleted; keep it in the file',
    ]);
  });

  it("checks a policy's durations", () => {
    expect(check("apiVersion: stint/v1\npolicies:\n  - { name: p, defaultDuration: 4h, maxDuration: 1h }\n")).toEqual([
      "3:33: policies[0].defaultDuration: defaultDuration 4h is longer than maxDuration 1h",
    ]);
  });
});

describe("export", () => {
  it("writes YAML that plans no change when applied to what it came from", () => {
    const current = applied(desiredOf(FILE));
    const text = renderConfig(current);
    expect(planConfig(current, desiredOf(text))).toEqual({ changes: [], notes: [] });
    expect(renderConfig(applied(desiredOf(text)))).toBe(text);
  });

  it("groups eligibility by role, dates and reason, and writes whole days as dates", () => {
    const text = renderConfig(
      state({
        eligibility: [
          eligible("bob", { until: "2027-11-25T00:00:00.000Z", reason: "on call" }),
          eligible("alice", { until: "2027-11-25T00:00:00.000Z", reason: "on call" }),
          eligible("sre", { subjectKind: "group", until: "2027-11-25T00:00:00.000Z", reason: "on call" }),
          eligible("carol", { from: "2026-03-01T09:30:00.000Z", fromChosen: true }),
        ],
      }),
    );
    expect(text).toContain(`eligibility:
  - role: reader
    users: [alice, bob]
    groups: [sre]
    until: 2027-11-24
    reason: on call
  - role: reader
    users: [carol]
    from: 2026-03-01T09:30:00Z
`);
  });

  it("leaves policy defaults out and gets them back when parsed", () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            defaultDuration: fc.constantFrom("30m", "1h"),
            maxDuration: fc.constantFrom("1h", "8h"),
            mfa: fc.record({ required: fc.boolean(), maxAge: fc.constantFrom("5m", "15m") }, { requiredKeys: [] }),
            justification: fc.record(
              { minLength: fc.nat(50), ticketRequired: fc.boolean(), ticketPattern: fc.constantFrom("^INC-\\d+$") },
              { requiredKeys: [] },
            ),
            approval: fc.record({
              stages: fc.array(
                fc.record({
                  approvers: fc.record({
                    groups: fc.constantFrom([], ["sre"]),
                    users: fc.constantFrom([], ["carol"]),
                    manager: fc.constant(true),
                  }),
                  count: fc.integer({ min: 1, max: 3 }),
                  timeout: fc.constantFrom("30m", "2h"),
                  onTimeout: fc.constantFrom("deny", "approve"),
                }),
                { maxLength: 2 },
              ),
            }),
            maxExtensions: fc.nat(3),
            breakGlass: fc.boolean(),
          },
          { requiredKeys: [] },
        ),
        (input) => {
          const full = spec(input);
          expect(deepEqual(spec(minimizeSpec(full)), full)).toBe(true);
        },
      ),
    );
    expect(minimizeSpec(spec())).toEqual({});
  });
});

describe("small rules", () => {
  it("diffs nested objects by leaf and arrays whole", () => {
    expect(diffValues("labels", { env: "prod", team: "a" }, { env: "dev", team: "a", new: "x" })).toEqual([
      { field: "labels.env", from: "prod", to: "dev" },
      { field: "labels.new", to: "x" },
    ]);
    expect(diffValues("owners", ["a"], ["a", "b"])).toEqual([{ field: "owners", from: ["a"], to: ["a", "b"] }]);
    expect(deepEqual({ a: 1, b: undefined }, { a: 1 })).toBe(true);
  });

  it("reads and writes dates as whole UTC days", () => {
    expect(configTimeToIso("2027-11-24", "until")).toBe("2027-11-25T00:00:00.000Z");
    expect(configTimeToIso("2027-11-24", "from")).toBe("2027-11-24T00:00:00.000Z");
    expect(configTimeToIso("2027-11-24T18:00:00+01:00", "until")).toBe("2027-11-24T17:00:00.000Z");
    expect(isoToConfigTime("2027-11-25T00:00:00.000Z", "until")).toBe("2027-11-24");
    expect(isoToConfigTime("2027-11-25T00:00:00.000Z", "from")).toBe("2027-11-25");
    expect(isoToConfigTime("2027-11-24T17:00:00.000Z", "until")).toBe("2027-11-24T17:00:00Z");
  });

  it("formats paths like the file reads", () => {
    expect(formatPath(["policies", 1, "approval", "stages", 0, "onTimeout"])).toBe(
      "policies[1].approval.stages[0].onTimeout",
    );
  });

  it("allows approve on timeout only for low risk", () => {
    const lenient = spec({
      approval: { stages: [{ approvers: { manager: true }, timeout: "1h", onTimeout: "approve" }] },
    });
    expect(riskProblem(lenient, "low")).toBeNull();
    expect(riskProblem(lenient, "medium")).toMatch(/only be used by low-risk roles/);
    expect(riskProblem(spec(), "critical")).toBeNull();
  });
});

// Found by fuzzing (fuzz/README.md): the YAML library stringified these keys and printed a process warning.
describe("parseConfig: keys that are mappings or lists", () => {
  it("reports them as problems at their line, without a process warning", () => {
    const warnings: unknown[] = [];
    const emitWarning = process.emitWarning;
    process.emitWarning = ((warning: unknown) => void warnings.push(warning)) as typeof process.emitWarning;
    let parsed;
    try {
      parsed = parseConfig("apiVersion: stint/v1\n? [a, b]\n: 1\nroles:\n  - ? {name: r}\n    : x\n");
    } finally {
      process.emitWarning = emitWarning;
    }
    expect(warnings).toEqual([]);
    expect(parsed.fatal).toBe(true);
    expect(parsed.problems.map((p) => [p.line, p.message])).toEqual([
      [2, "a key must be a plain value, not a mapping or a list"],
      [5, "a key must be a plain value, not a mapping or a list"],
    ]);
  });
});
