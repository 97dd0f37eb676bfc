/**
 * The evidence report. Authorizes first (evidence.read: auditor, security, admin), reads the activations in scope
 * with their decisions, sessions, recordings and break-glass reviews, computes the SLIs (pure rules), renders JSON
 * or CSV, and audits the report's hash before handing it out: what an auditor holds can be matched to the log.
 */
import type { AppStore } from "../../db/index.js";
import type { EvidenceActivation, EvidenceQuery, EvidenceReportDto } from "../../contract/evidence.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { actorLabel, type AuditLog } from "../audit/audit.service.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { computeSlis, evidenceCsv, reportHash, sha256Hex } from "./evidence.rules.js";
import { activationsInScope, decisionsOf, requestsSubmitted } from "../requests/requests.reads.js";
import { sessionsOfRequests } from "../sessions/sessions.reads.js";
import { revokedGrantsOf } from "../grants/grants.reads.js";
import { breakGlassReviewsOf } from "../reviews/index.js";

export interface EvidenceServiceDeps {
  store: Pick<AppStore, "db">;
  audit: Pick<AuditLog, "record">;
  clock: Clock;
}

/** Past this many activations the caller is asked to narrow the scope (one report stays one answer). */
export const MAX_ACTIVATIONS = 10_000;

const iso = (value: Date | string) => new Date(value).toISOString();
const isoOrNull = (value: Date | string | null) => (value === null ? null : iso(value));

function groupBy<T extends { request_id: string }>(rows: readonly T[]): Map<string, T[]> {
  const map = new Map<string, T[]>();
  for (const row of rows) map.set(row.request_id, [...(map.get(row.request_id) ?? []), row]);
  return map;
}

export function createEvidenceService(deps: EvidenceServiceDeps) {
  const { store, audit, clock } = deps;

  async function build(actor: Actor, query: EvidenceQuery): Promise<EvidenceReportDto> {
    const scope = { from: new Date(query.from), to: new Date(query.to), role: query.role, target: query.target };
    const db = store.db;
    const rows = await activationsInScope(db, scope, MAX_ACTIVATIONS + 1);
    if (rows.length > MAX_ACTIVATIONS)
      throw new StintError("VALIDATION_FAILED", `More than ${MAX_ACTIVATIONS} activations: narrow the period.`, {
        issues: [{ path: "query.from", message: "the period holds too many activations" }],
      });
    const ids = rows.map((r) => r.id);
    const [decisions, sessions, reviews, revoked, requests] = await Promise.all([
      decisionsOf(db, ids),
      sessionsOfRequests(db, ids),
      breakGlassReviewsOf(db, ids),
      revokedGrantsOf(db, ids),
      requestsSubmitted(db, scope),
    ]);
    const decisionsBy = groupBy(decisions);
    const sessionsBy = groupBy(sessions);
    const reviewBy = new Map(reviews.map((r) => [r.subject.slice("request:".length), r]));
    const activations: EvidenceActivation[] = rows.map((r) => {
      const own = decisionsBy.get(r.id) ?? [];
      const review = reviewBy.get(r.id);
      return {
        requestId: r.id,
        role: r.role,
        target: r.target,
        risk: r.risk,
        requester: r.requester,
        breakGlass: r.break_glass,
        state: r.state,
        justification: r.reason,
        ticket: r.ticket,
        approval: r.break_glass ? "break-glass" : own.length > 0 ? "approved" : "automatic",
        decisions: own.map((d) => ({
          approver: d.approver,
          decision: d.decision,
          reason: d.reason,
          decidedAt: iso(d.decided_at),
          stage: d.stage_index,
        })),
        submittedAt: iso(r.submitted_at),
        activatedAt: iso(r.activated_at!),
        expiresAt: isoOrNull(r.expires_at),
        endedAt: isoOrNull(r.ended_at),
        endReason: r.end_reason,
        endedBy: r.ended_by,
        sessions: (sessionsBy.get(r.id) ?? []).map((s) => ({
          id: s.id,
          kind: s.kind,
          login: s.login,
          startedAt: iso(s.started_at),
          endedAt: isoOrNull(s.ended_at),
          endReason: s.end_reason,
          recording:
            s.recording_key && s.recording_sha256
              ? {
                  key: s.recording_key,
                  sha256: s.recording_sha256,
                  bytes: s.recording_bytes === null ? null : Number(s.recording_bytes),
                }
              : null,
        })),
        review: review
          ? {
              itemId: review.id,
              status: review.status,
              outcome: review.outcome,
              finding: review.decision_reason,
              closedBy: review.closed_by,
              closedAt: isoOrNull(review.closed_at),
            }
          : null,
      };
    });
    const endedAt = new Map(rows.map((r) => [r.id, r.ended_at]));
    const revocations = revoked
      .filter((g) => endedAt.get(g.request_id))
      .map((g) => ({ endedAt: iso(endedAt.get(g.request_id)!), revokedAt: iso(g.updated_at) }));
    const body: Omit<EvidenceReportDto, "sha256"> = {
      scope: { from: iso(query.from), to: iso(query.to), role: query.role ?? null, target: query.target ?? null },
      generatedAt: clock.now().toISOString(),
      generatedBy: actorLabel(actor).actor,
      activations,
      requests: requests.byState,
      slis: computeSlis({ activations, requests, revocations }),
    };
    return { ...body, sha256: reportHash(body) };
  }

  return {
    /**
     * The report for a scope, as JSON (the report with its own hash) or CSV (with the SHA-256 of the CSV text).
     * Either hash is audited (`evidence.report`) before the report is returned.
     */
    async report(
      actor: Actor,
      query: EvidenceQuery,
      context: CallContext,
    ): Promise<{ format: "json"; report: EvidenceReportDto } | { format: "csv"; csv: string; sha256: string }> {
      authorize(actor, "evidence.read");
      const report = await build(actor, query);
      const csv = query.format === "csv" ? evidenceCsv(report) : null;
      const sha256 = csv === null ? report.sha256 : sha256Hex(csv);
      await audit.record(actor, context, {
        action: "evidence.report",
        outcome: "success",
        subject: `evidence:${query.role ?? "*"}@${query.target ?? "*"}`,
        details: {
          format: query.format,
          sha256,
          from: report.scope.from,
          to: report.scope.to,
          role: query.role ?? null,
          target: query.target ?? null,
          activations: report.activations.length,
        },
      });
      return csv === null ? { format: "json", report } : { format: "csv", csv, sha256 };
    },
  };
}

export type EvidenceService = ReturnType<typeof createEvidenceService>;
