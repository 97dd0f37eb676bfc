/** The evidence report's pure rules: each SLI over a table of synthetic activations, the hash, the CSV. */
import { describe, expect, it } from "vitest";
import canonicalize from "canonicalize";
import { createHash } from "node:crypto";
import type { EvidenceActivation } from "../../contract/evidence.js";
import {
  computeSlis,
  csvCell,
  evidenceCsv,
  justificationApproved,
  latencyOf,
  percentile,
  reportHash,
} from "./evidence.rules.js";

const T0 = Date.parse("2027-03-01T10:00:00Z");
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

function activation(overrides: Partial<EvidenceActivation> = {}): EvidenceActivation {
  return {
    requestId: "0192f000-0000-7000-8000-000000000001",
    role: "db-admin",
    target: "app-db",
    risk: "high",
    requester: "ann",
    breakGlass: false,
    state: "expired",
    justification: "rotate the replica certificate, CHG-1",
    ticket: null,
    approval: "approved",
    decisions: [{ approver: "olive", decision: "approve", reason: "ok", decidedAt: at(30), stage: 0 }],
    submittedAt: at(0),
    activatedAt: at(40),
    expiresAt: at(3640),
    endedAt: at(3640),
    endReason: "expired",
    endedBy: "system",
    sessions: [],
    review: null,
    ...overrides,
  };
}

const session = (recorded: boolean, ended = true) => ({
  id: "0192f000-0000-7000-8000-0000000000aa",
  kind: "postgres",
  login: "stint_ann_1",
  startedAt: at(50),
  endedAt: ended ? at(60) : null,
  endReason: ended ? "client_closed" : null,
  recording: recorded ? { key: "sessions/x.rec", sha256: "ab".repeat(32), bytes: 10 } : null,
});

describe("percentiles and latencies", () => {
  it.each([
    [[], 50, null],
    [[5], 50, 5],
    [[1, 2, 3, 4], 50, 2],
    [[4, 1, 3, 2], 95, 4],
    [[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 95, 100],
    [[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 50, 50],
  ])("percentile(%j, %i) = %j", (values, p, expected) => {
    expect(percentile(values, p)).toBe(expected);
  });

  it("a latency of nothing is all null but its count", () => {
    expect(latencyOf([])).toEqual({ count: 0, medianMs: null, p95Ms: null, maxMs: null });
    expect(latencyOf([3, 1, 2])).toEqual({ count: 3, medianMs: 2, p95Ms: 3, maxMs: 3 });
  });
});

describe("approved justification", () => {
  it.each([
    ["approved by another person", activation(), true],
    [
      "approved only by the requester (never counts)",
      activation({ decisions: [{ approver: "ann", decision: "approve", reason: null, decidedAt: at(1), stage: 0 }] }),
      false,
    ],
    [
      "denied at one stage, approved at none",
      activation({ decisions: [{ approver: "olive", decision: "deny", reason: null, decidedAt: at(1), stage: 0 }] }),
      false,
    ],
    ["the policy needed no approval", activation({ approval: "automatic", decisions: [] }), false],
    ["an empty justification", activation({ justification: "  " }), false],
    ["break-glass, not yet reviewed", activation({ approval: "break-glass", breakGlass: true, decisions: [] }), false],
    [
      "break-glass, acknowledged after the fact",
      activation({
        approval: "break-glass",
        breakGlass: true,
        decisions: [],
        review: {
          itemId: "0192f000-0000-7000-8000-0000000000bb",
          status: "closed",
          outcome: "acknowledged",
          finding: "as logged",
          closedBy: "sue",
          closedAt: at(9000),
        },
      }),
      true,
    ],
    [
      "break-glass, escalated",
      activation({
        approval: "break-glass",
        breakGlass: true,
        decisions: [],
        review: {
          itemId: "0192f000-0000-7000-8000-0000000000bb",
          status: "closed",
          outcome: "escalated",
          finding: "no incident open",
          closedBy: "sue",
          closedAt: at(9000),
        },
      }),
      false,
    ],
  ])("%s → %s", (_name, a, expected) => {
    expect(justificationApproved(a)).toBe(expected);
  });
});

describe("computeSlis", () => {
  it("computes each SLI from its own facts", () => {
    const slis = computeSlis({
      activations: [
        activation({ sessions: [session(true), session(false)] }),
        activation({
          submittedAt: at(100),
          activatedAt: at(400),
          decisions: [
            { approver: "olive", decision: "approve", reason: null, decidedAt: at(200), stage: 0 },
            { approver: "max", decision: "approve", reason: null, decidedAt: at(390), stage: 1 },
          ],
          sessions: [session(true, false)],
        }),
        activation({ approval: "automatic", decisions: [], submittedAt: at(0), activatedAt: at(2) }),
      ],
      requests: { activated: 3, failed: 1 },
      revocations: [
        { endedAt: at(1000), revokedAt: at(1002) },
        { endedAt: at(2000), revokedAt: at(2000.5) },
      ],
    });
    expect(slis.timeToElevate).toEqual({ count: 3, medianMs: 40_000, p95Ms: 300_000, maxMs: 300_000 });
    // The last approving decision of each activation approved by people: 30 s and 290 s after submission.
    expect(slis.approvalLatency).toEqual({ count: 2, medianMs: 30_000, p95Ms: 290_000, maxMs: 290_000 });
    expect(slis.elevationSuccessRate).toEqual({ numerator: 3, denominator: 4, value: 0.75 });
    expect(slis.approvedJustification).toEqual({ numerator: 2, denominator: 3, value: 2 / 3 });
    // A live session is not counted yet; of the two ended ones, one has a recording.
    expect(slis.recordingCoverage).toEqual({ numerator: 1, denominator: 2, value: 0.5 });
    expect(slis.revocationLatency).toEqual({ count: 2, medianMs: 500, p95Ms: 2000, maxMs: 2000 });
  });

  it("no activations: counts 0 and values null, never NaN", () => {
    const slis = computeSlis({ activations: [], requests: { activated: 0, failed: 0 }, revocations: [] });
    expect(slis.approvedJustification.value).toBeNull();
    expect(slis.elevationSuccessRate.value).toBeNull();
    expect(slis.recordingCoverage.value).toBeNull();
    expect(slis.timeToElevate.medianMs).toBeNull();
  });
});

describe("the report's hash and CSV", () => {
  const body = {
    scope: { from: at(0), to: at(86400), role: null, target: null },
    generatedAt: at(90000),
    generatedBy: "audrey",
    activations: [activation()],
    requests: { expired: 1 },
    slis: computeSlis({ activations: [activation()], requests: { activated: 1, failed: 0 }, revocations: [] }),
  };

  it("is the SHA-256 of the RFC 8785 canonical JSON, whatever the key order", () => {
    const expected = createHash("sha256").update(canonicalize(body)!).digest("hex");
    expect(reportHash(body)).toBe(expected);
    const reordered = Object.fromEntries(Object.entries(body).reverse()) as typeof body;
    expect(reportHash(reordered)).toBe(expected);
    expect(reportHash({ ...body, generatedBy: "mallory" })).not.toBe(expected);
  });

  it.each([
    ['=HYPERLINK("http://evil")', `"'=HYPERLINK(""http://evil"")"`],
    ["+1", `"'+1"`],
    ["-2", `"'-2"`],
    ["@SUM(A1)", `"'@SUM(A1)"`],
    ["\tcmd", `"'\tcmd"`],
    ["plain, with comma", `"plain, with comma"`],
    [null, `""`],
  ])("csvCell(%j) = %s", (value, expected) => {
    expect(csvCell(value)).toBe(expected);
  });

  it("one row per activation with approvers and recording hashes, then one row per SLI", () => {
    const csv = evidenceCsv({
      activations: [activation({ sessions: [session(true)] })],
      slis: body.slis,
    });
    const lines = csv.split("\r\n");
    expect(lines[0]).toMatch(/^request_id,role,target,risk,requester,justification,/);
    expect(lines[1]).toContain(`"olive"`);
    expect(lines[1]).toContain(`"rotate the replica certificate, CHG-1"`);
    expect(lines[1]).toContain(`"${"ab".repeat(32)}"`);
    expect(lines[2]).toBe("");
    expect(lines.slice(4, 10).map((l) => l.split(",")[0])).toEqual([
      `"timeToElevate"`,
      `"elevationSuccessRate"`,
      `"approvalLatency"`,
      `"approvedJustification"`,
      `"recordingCoverage"`,
      `"revocationLatency"`,
    ]);
    expect(csv.endsWith("\r\n")).toBe(true);
  });
});
