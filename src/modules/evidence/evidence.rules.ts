/**
 * Pure computations of the evidence report: the seeds' SLIs over the activations in scope, the report's hash
 * (SHA-256 of its RFC 8785 canonical JSON) and its CSV rendering. No IO, no clock.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { EvidenceActivation, EvidenceReportDto, EvidenceSlis } from "../../contract/evidence.js";

export interface Latency {
  count: number;
  medianMs: number | null;
  p95Ms: number | null;
  maxMs: number | null;
}

export interface Ratio {
  numerator: number;
  denominator: number;
  value: number | null;
}

/** Nearest-rank percentile (p in 0..100) of values; null for none. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

export function latencyOf(values: readonly number[]): Latency {
  return {
    count: values.length,
    medianMs: percentile(values, 50),
    p95Ms: percentile(values, 95),
    maxMs: values.length === 0 ? null : Math.max(...values),
  };
}

export function ratioOf(numerator: number, denominator: number): Ratio {
  return { numerator, denominator, value: denominator === 0 ? null : numerator / denominator };
}

const ms = (iso: string) => Date.parse(iso);

/**
 * Whether an activation's justification was approved: a person other than the requester approved it, or (for
 * break-glass, which nobody approves before) a reviewer acknowledged it after the fact. A policy that needs no
 * approval approves nothing.
 */
export function justificationApproved(activation: EvidenceActivation): boolean {
  if (activation.justification.trim().length === 0) return false;
  if (activation.approval === "break-glass") return activation.review?.outcome === "acknowledged";
  return activation.decisions.some((d) => d.decision === "approve" && d.approver !== activation.requester);
}

export interface SliInput {
  activations: readonly EvidenceActivation[];
  /** Requests submitted in the period (scope): how many became active, how many failed at the target. */
  requests: { activated: number; failed: number };
  /** For ended activations whose grant was removed at the target: when the activation ended, when access went. */
  revocations: readonly { endedAt: string; revokedAt: string }[];
}

/**
 * The seeds' SLIs (see the module README for each definition):
 * - time to elevate: submitted → active, per activation;
 * - elevation success rate: requests that became active / those that were approved (active or failed at the target);
 * - approval latency: submitted → last approving decision, for activations approved by people;
 * - approved justification: share of activations whose justification someone else approved (or acknowledged);
 * - recording coverage: ended sessions with a recording in the blob store / ended sessions;
 * - revocation latency: activation ended → grant removed at the target.
 */
export function computeSlis(input: SliInput): EvidenceSlis {
  const { activations } = input;
  const approvalDelays = activations
    .filter((a) => a.approval === "approved")
    .map((a) => {
      const approvals = a.decisions.filter((d) => d.decision === "approve").map((d) => ms(d.decidedAt));
      return approvals.length === 0 ? null : Math.max(...approvals) - ms(a.submittedAt);
    })
    .filter((d): d is number => d !== null);
  const ended = activations.flatMap((a) => a.sessions).filter((s) => s.endedAt !== null);
  const { activated, failed } = input.requests;
  return {
    timeToElevate: latencyOf(activations.map((a) => Math.max(0, ms(a.activatedAt) - ms(a.submittedAt)))),
    elevationSuccessRate: ratioOf(activated, activated + failed),
    approvalLatency: latencyOf(approvalDelays.map((d) => Math.max(0, d))),
    approvedJustification: ratioOf(activations.filter(justificationApproved).length, activations.length),
    recordingCoverage: ratioOf(ended.filter((s) => s.recording !== null).length, ended.length),
    revocationLatency: latencyOf(input.revocations.map((r) => Math.max(0, ms(r.revokedAt) - ms(r.endedAt)))),
  };
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** The report's hash: SHA-256 of the canonical JSON (RFC 8785) of everything but the hash itself. */
export function reportHash(report: Omit<EvidenceReportDto, "sha256">): string {
  return sha256Hex(canonicalize(report) ?? "");
}

/** A CSV cell: always quoted; a leading = + - @ (or tab, CR) is prefixed with ' so a spreadsheet never runs it. */
export function csvCell(value: unknown): string {
  const text = value === null || value === undefined ? "" : String(value);
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return `"${safe.replace(/"/g, '""')}"`;
}

export const CSV_COLUMNS = [
  "request_id",
  "role",
  "target",
  "risk",
  "requester",
  "justification",
  "ticket",
  "approval",
  "approvers",
  "approval_reasons",
  "submitted_at",
  "activated_at",
  "ended_at",
  "end_reason",
  "sessions",
  "recording_sha256",
  "review_outcome",
  "review_finding",
  "reviewed_by",
] as const;

/**
 * The report as CSV: one row per activation (approvers, sessions and recording hashes joined by spaces), then
 * a blank line and one row per SLI. Lines end with CRLF (RFC 4180).
 */
export function evidenceCsv(report: Pick<EvidenceReportDto, "activations" | "slis">): string {
  const rows: string[] = [CSV_COLUMNS.join(",")];
  for (const a of report.activations) {
    const approvals = a.decisions.filter((d) => d.decision === "approve");
    rows.push(
      [
        a.requestId,
        a.role,
        a.target,
        a.risk,
        a.requester,
        a.justification,
        a.ticket,
        a.approval,
        approvals.map((d) => d.approver).join(" "),
        approvals.map((d) => d.reason ?? "").join(" | "),
        a.submittedAt,
        a.activatedAt,
        a.endedAt,
        a.endReason,
        a.sessions.map((s) => s.id).join(" "),
        a.sessions.map((s) => s.recording?.sha256 ?? "none").join(" "),
        a.review?.outcome ?? (a.review ? "open" : null),
        a.review?.finding,
        a.review?.closedBy,
      ]
        .map(csvCell)
        .join(","),
    );
  }
  rows.push("", ["sli", "count_or_numerator", "denominator", "value", "median_ms", "p95_ms", "max_ms"].join(","));
  for (const [sli, value] of Object.entries(report.slis)) {
    const cells =
      "numerator" in value
        ? [sli, value.numerator, value.denominator, value.value, null, null, null]
        : [sli, value.count, null, null, value.medianMs, value.p95Ms, value.maxMs];
    rows.push(cells.map(csvCell).join(","));
  }
  return `${rows.join("\r\n")}\r\n`;
}
