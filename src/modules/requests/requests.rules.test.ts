/**
 * Pure decision rules: who may decide, and that a multi-stage policy always needs as many people as it has
 * stages (issue 12 finding 13) unless the policy explicitly lets one person approve several stages.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { alreadyOpenMessage, applyDecision, basisProblem, widenedEligibility } from "./requests.rules.js";
import type { Approver, Decision, RequestFacts, Stage } from "./requests.types.js";

const everyone = { groups: ["approvers"], users: [], manager: false };
const stage = (count = 1): Stage => ({
  name: `stage x${count}`,
  approvers: everyone,
  count,
  timeoutMs: null,
  onTimeout: "deny",
  escalateTo: null,
});
const person = (n: number): Approver => ({ id: `p${n}`, name: `person${n}`, groups: ["approvers"] });
const requester = { id: "requester", name: "requester", groups: ["approvers"] };

function facts(stages: Stage[], overrides: Partial<RequestFacts> = {}): RequestFacts {
  return {
    state: "pending",
    requesterId: requester.id,
    requesterManagerId: null,
    stages,
    stageIndex: 0,
    stageDeadline: null,
    decisions: [],
    risk: "high",
    sameApproverAcrossStages: false,
    ...overrides,
  };
}

/** Runs approvals in order through the rules, as the service does; returns the final facts and what each answered. */
function run(start: RequestFacts, approvers: Approver[]) {
  const request = { ...start, decisions: [...start.decisions] };
  const answers: string[] = [];
  for (const approver of approvers) {
    if (request.state !== "pending") break;
    const outcome = applyDecision(request, approver, "approve");
    answers.push(outcome.ok ? outcome.result : outcome.code);
    if (!outcome.ok) continue;
    request.decisions.push({ stageIndex: request.stageIndex, approverId: approver.id, decision: "approve" });
    if (outcome.result === "next_stage") request.stageIndex = outcome.stageIndex;
    if (outcome.result === "approved") request.state = "approved";
  }
  return { request, answers };
}

describe("applyDecision: distinct approvers across stages (finding 13)", () => {
  it.each([
    // [stages (counts), approvers in order, sameApproverAcrossStages, final state, answers]
    [[1, 1], [1, 1], false, "pending", ["next_stage", "DISTINCT_APPROVERS_REQUIRED"]],
    [[1, 1], [1, 2], false, "approved", ["next_stage", "approved"]],
    [[1, 1], [1, 1], true, "approved", ["next_stage", "approved"]],
    [[2, 1], [1, 2, 1], false, "pending", ["recorded", "next_stage", "DISTINCT_APPROVERS_REQUIRED"]],
    [[2, 1], [1, 2, 2, 3], false, "approved", ["recorded", "next_stage", "DISTINCT_APPROVERS_REQUIRED", "approved"]],
    [
      [1, 1, 1],
      [1, 2, 1, 3],
      false,
      "approved",
      ["next_stage", "next_stage", "DISTINCT_APPROVERS_REQUIRED", "approved"],
    ],
    [[1], [1], false, "approved", ["approved"]],
  ] as const)("stages %j approved by %j (same allowed: %s) ends %s", (counts, order, same, state, answers) => {
    const result = run(
      facts(
        counts.map((c) => stage(c)),
        { sameApproverAcrossStages: same },
      ),
      order.map(person),
    );
    expect(result.request.state).toBe(state);
    expect(result.answers).toEqual(answers);
  });

  it("someone who approved an earlier stage may still deny a later one", () => {
    const decisions: Decision[] = [{ stageIndex: 0, approverId: "p1", decision: "approve" }];
    const outcome = applyDecision(facts([stage(), stage()], { stageIndex: 1, decisions }), person(1), "deny");
    expect(outcome).toEqual({ ok: true, result: "denied" });
  });

  it("the requester never approves, whatever the option says", () => {
    const outcome = applyDecision(facts([stage()], { sameApproverAcrossStages: true }), requester, "approve");
    expect(outcome.ok ? outcome.result : outcome.code).toBe("SELF_APPROVAL");
  });

  it("property: by default an approved request had disjoint approvers per stage, at least the sum of the counts", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 40 }),
        fc.boolean(),
        (counts, order, same) => {
          const { request } = run(
            facts(
              counts.map((c) => stage(c)),
              { sameApproverAcrossStages: same },
            ),
            order.map(person),
          );
          if (request.state !== "approved") return;
          const byStage = counts.map(
            (_, index) => new Set(request.decisions.filter((d) => d.stageIndex === index).map((d) => d.approverId)),
          );
          // Within a stage approvals are always distinct people.
          byStage.forEach((people, index) => expect(people.size).toBeGreaterThanOrEqual(counts[index]!));
          if (same) return;
          const all = new Set(request.decisions.map((d) => d.approverId));
          expect(all.size).toBe(request.decisions.length);
          expect(all.size).toBeGreaterThanOrEqual(counts.reduce((a, b) => a + b, 0));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("basisProblem", () => {
  it.each([
    [true, true, null],
    [false, true, "the requester's account is disabled"],
    [false, false, "the requester's account is disabled"],
    [true, false, "the requester is no longer eligible for the role"],
  ] as const)("active %s, eligible %s: %s", (requesterActive, eligible, problem) => {
    expect(basisProblem({ requesterActive, eligible })).toBe(problem);
  });
});

describe("widenedEligibility (owners granting themselves roles, Teleport GHSA-76cc-p55w-63g3)", () => {
  const w = (role: string, startsAt: number, endsAt = Number.POSITIVE_INFINITY) => ({ role, startsAt, endsAt });
  it.each([
    ["nothing changes", [w("a", 0, 100)], [w("a", 0, 100)], []],
    ["a new role", [], [w("a", 0)], ["a"]],
    ["a later end", [w("a", 0, 100)], [w("a", 0, 200)], ["a"]],
    ["no end instead of an end", [w("a", 0, 100)], [w("a", 0)], ["a"]],
    ["an earlier start still ahead", [w("a", 50, 100)], [w("a", 20, 100)], ["a"]],
    ["an earlier start in the past is nothing new", [w("a", 5, 100)], [w("a", 0, 100)], []],
    ["a narrower window", [w("a", 0, 100)], [w("a", 20, 50)], []],
    ["removed", [w("a", 0, 100)], [], []],
    ["an ended window granted again", [w("a", 0, 5)], [w("a", 0, 5)], []],
    ["direct and group windows merge", [w("a", 0, 60), w("a", 50, 100)], [w("a", 10, 100)], []],
    ["a gap is not covered", [w("a", 0, 40), w("a", 60, 100)], [w("a", 10, 100)], ["a"]],
    ["another role does not cover", [w("b", 0)], [w("a", 10, 20)], ["a"]],
  ] as const)("%s", (_, before, after, widened) => {
    expect(widenedEligibility([...before], [...after], 10)).toEqual(widened);
  });

  it("property: the same windows, or any narrowing of them, never widen", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            role: fc.constantFrom("a", "b", "c"),
            startsAt: fc.integer({ min: 0, max: 100 }),
            length: fc.integer({ min: 1, max: 100 }),
            shrinkStart: fc.integer({ min: 0, max: 50 }),
            shrinkEnd: fc.integer({ min: 0, max: 50 }),
          }),
          { maxLength: 6 },
        ),
        fc.integer({ min: 0, max: 200 }),
        (windows, now) => {
          const before = windows.map((x) => w(x.role, x.startsAt, x.startsAt + x.length));
          const after = windows.map((x) =>
            w(
              x.role,
              x.startsAt + Math.min(x.shrinkStart, x.length),
              x.startsAt + x.length - Math.min(x.shrinkEnd, x.length),
            ),
          );
          expect(widenedEligibility(before, before, now)).toEqual([]);
          expect(widenedEligibility(before, after, now)).toEqual([]);
        },
      ),
    );
  });
});

describe("a second request for a role that has an open one", () => {
  const id = "01934b6e-0000-7000-8000-00000000abcd";
  it.each([
    ["active", 2, "You already have an active request for db; extend it instead (stint extend db)."],
    [
      "active",
      0,
      "You already have an active request for db; its policy allows no extensions: deactivate it first (stint deactivate db) or wait until it ends.",
    ],
    [
      "pending",
      0,
      `You already have a pending request for db; wait for its decision, or cancel it (stint cancel ${id}).`,
    ],
    ["provisioning", 1, "You already have a provisioning request for db."],
  ])("%s (extensions %d) says so in words, with what to do", (state, maxExtensions, message) => {
    expect(alreadyOpenMessage("db", { id, state }, maxExtensions)).toBe(message);
  });
});
