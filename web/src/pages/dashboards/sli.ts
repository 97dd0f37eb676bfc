/**
 * The dashboards' figures, computed from the activation requests the public API lists (and the
 * eligibilities): activations per day, top roles and requesters, pending approvals and their age,
 * active elevations, break-glass use, time-to-elevate and elevation success rate. Pure: every
 * function takes the list and `now` (milliseconds) and returns plain data; days are UTC dates.
 */
import type { ActivationRequestDto } from "../../../../src/contract/requests.js";

export type Request = Pick<
  ActivationRequestDto,
  | "id"
  | "role"
  | "requester"
  | "state"
  | "breakGlass"
  | "reason"
  | "ticket"
  | "submittedAt"
  | "activatedAt"
  | "expiresAt"
  | "endedAt"
  | "endReason"
  | "endedBy"
  | "stageIndex"
  | "stages"
>;

export const DAY_MS = 86_400_000;
export const WINDOW_DAYS = 30;

/** "2026-11-20" (UTC). */
export function dayKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The last `days` UTC dates, oldest first, today last. */
export function lastDays(now: number, days = WINDOW_DAYS): string[] {
  const out: string[] = [];
  for (let i = days - 1; i >= 0; i--) out.push(dayKey(now - i * DAY_MS));
  return out;
}

/** Whether an instant falls in the window of the last `days` UTC dates (today included) and not after now. */
function inWindow(iso: string | null, now: number, days: number): boolean {
  if (!iso) return false;
  const ms = Date.parse(iso);
  if (Number.isNaN(ms) || ms > now) return false;
  return dayKey(ms) >= dayKey(now - (days - 1) * DAY_MS);
}

/** Nearest-rank percentile (q in 0..1) of the values; null when there are none. */
export function percentile(values: number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

// ---------------------------------------------------------------------------
// Executive

export interface DayCount {
  day: string;
  activations: number;
}

/** Activations (requests that became active) per UTC day over the window, every day present. */
export function activationsPerDay(requests: Request[], now: number, days = WINDOW_DAYS): DayCount[] {
  const counts = new Map(lastDays(now, days).map((d) => [d, 0]));
  for (const r of requests) {
    if (!inWindow(r.activatedAt, now, days)) continue;
    const day = dayKey(Date.parse(r.activatedAt!));
    counts.set(day, (counts.get(day) ?? 0) + 1);
  }
  return [...counts].map(([day, activations]) => ({ day, activations }));
}

/** "23 activations in the last 30 days, most on 2026-11-20 (5)." */
export function activationsCaption(perDay: DayCount[]): string {
  const total = perDay.reduce((n, d) => n + d.activations, 0);
  const days = perDay.length;
  if (total === 0) return `No activations in the last ${days} days.`;
  const busiest = perDay.reduce((best, d) => (d.activations > best.activations ? d : best));
  const noun = total === 1 ? "activation" : "activations";
  return `${total} ${noun} in the last ${days} days, most on ${busiest.day} (${busiest.activations}).`;
}

export interface NamedCount {
  name: string;
  count: number;
}

/** The roles or requesters with the most requests submitted in the window, most first (ties by name). */
export function topBy(
  requests: Request[],
  key: "role" | "requester",
  now: number,
  limit = 5,
  days = WINDOW_DAYS,
): NamedCount[] {
  const counts = new Map<string, number>();
  for (const r of requests) {
    if (!inWindow(r.submittedAt, now, days)) continue;
    counts.set(r[key], (counts.get(r[key]) ?? 0) + 1);
  }
  return [...counts]
    .map(([name, count]) => ({ name, count }))
    .sort((a, b) => b.count - a.count || a.name.localeCompare(b.name))
    .slice(0, limit);
}

export interface StandingVsEligible {
  standing: number;
  eligible: number;
  /** Share of privileged access that is standing, 0..1; null when there is none of either. */
  standingShare: number | null;
}

/**
 * Standing access (open "unexpected" drift findings: privilege found at a target without an
 * activation) against eligible assignments that are in force now.
 */
export function standingVsEligible(
  standing: number,
  eligibilities: { status: "scheduled" | "active" | "ended" }[],
): StandingVsEligible {
  const eligible = eligibilities.filter((e) => e.status === "active").length;
  const total = standing + eligible;
  return { standing, eligible, standingShare: total === 0 ? null : standing / total };
}

// ---------------------------------------------------------------------------
// On-call

export interface Pending<R extends Request = Request> {
  request: R;
  ageMs: number;
}

/** Requests waiting for an approval, oldest first. */
export function pendingApprovals<R extends Request>(requests: R[], now: number): Pending<R>[] {
  return requests
    .filter((r) => r.state === "pending")
    .map((request) => ({ request, ageMs: Math.max(0, now - Date.parse(request.submittedAt)) }))
    .sort((a, b) => b.ageMs - a.ageMs || a.request.id.localeCompare(b.request.id));
}

export interface Active<R extends Request = Request> {
  request: R;
  /** Milliseconds until it ends; null when the grant has no end. */
  leftMs: number | null;
}

/** Elevations in force now, the soonest to end first (those without an end last). */
export function activeElevations<R extends Request>(requests: R[], now: number): Active<R>[] {
  return requests
    .filter((r) => r.state === "active" && (r.expiresAt === null || Date.parse(r.expiresAt) > now))
    .map((request) => ({ request, leftMs: request.expiresAt ? Date.parse(request.expiresAt) - now : null }))
    .sort((a, b) => (a.leftMs ?? Infinity) - (b.leftMs ?? Infinity) || a.request.id.localeCompare(b.request.id));
}

/** Break-glass requests submitted in the window, newest first. */
export function breakGlassUse<R extends Request>(requests: R[], now: number, days = WINDOW_DAYS): R[] {
  return requests
    .filter((r) => r.breakGlass && inWindow(r.submittedAt, now, days))
    .sort((a, b) => Date.parse(b.submittedAt) - Date.parse(a.submittedAt));
}

// ---------------------------------------------------------------------------
// Health

export interface Latency {
  count: number;
  /** Seconds. */
  p50: number | null;
  p95: number | null;
}

function elevationSeconds(r: Request): number | null {
  if (!r.activatedAt) return null;
  const s = (Date.parse(r.activatedAt) - Date.parse(r.submittedAt)) / 1000;
  return Number.isFinite(s) && s >= 0 ? s : null;
}

/** Time-to-elevate (submitted → activated) of the requests activated in the window. */
export function timeToElevate(requests: Request[], now: number, days = WINDOW_DAYS): Latency {
  const values: number[] = [];
  for (const r of requests) {
    if (!inWindow(r.activatedAt, now, days)) continue;
    const s = elevationSeconds(r);
    if (s !== null) values.push(s);
  }
  return { count: values.length, p50: percentile(values, 0.5), p95: percentile(values, 0.95) };
}

export interface DayLatency {
  day: string;
  count: number;
  p50: number | null;
  p95: number | null;
}

/** Time-to-elevate per UTC day of activation; days without activations have null percentiles. */
export function timeToElevatePerDay(requests: Request[], now: number, days = WINDOW_DAYS): DayLatency[] {
  const byDay = new Map<string, number[]>(lastDays(now, days).map((d) => [d, []]));
  for (const r of requests) {
    if (!inWindow(r.activatedAt, now, days)) continue;
    const s = elevationSeconds(r);
    if (s !== null) byDay.get(dayKey(Date.parse(r.activatedAt!)))?.push(s);
  }
  return [...byDay].map(([day, values]) => ({
    day,
    count: values.length,
    p50: percentile(values, 0.5),
    p95: percentile(values, 0.95),
  }));
}

/** States where the outcome of a request is known. */
const DECIDED: ReadonlySet<Request["state"]> = new Set([
  "active",
  "expired",
  "deactivated",
  "revoked",
  "denied",
  "failed",
]);
/** Active, or ended by its own clock or its holder. */
const SUCCEEDED: ReadonlySet<Request["state"]> = new Set(["active", "expired", "deactivated"]);

export interface SuccessRate {
  decided: number;
  succeeded: number;
  /** 0..1; null when nothing was decided. */
  rate: number | null;
  /** Decided requests by state, for the breakdown next to the rate. */
  byState: Partial<Record<Request["state"], number>>;
}

/**
 * Elevation success rate over the requests submitted in the window: active or ended normally
 * (expired, deactivated) out of all decided ones (also revoked, denied, failed). Pending, approved,
 * provisioning and cancelled requests have no outcome yet (or never will) and are left out.
 */
export function successRate(requests: Request[], now: number, days = WINDOW_DAYS): SuccessRate {
  const byState: Partial<Record<Request["state"], number>> = {};
  let decided = 0;
  let succeeded = 0;
  for (const r of requests) {
    if (!DECIDED.has(r.state) || !inWindow(r.submittedAt, now, days)) continue;
    decided++;
    if (SUCCEEDED.has(r.state)) succeeded++;
    byState[r.state] = (byState[r.state] ?? 0) + 1;
  }
  return { decided, succeeded, rate: decided === 0 ? null : succeeded / decided, byState };
}

export interface DayOutcomes {
  day: string;
  succeeded: number;
  denied: number;
  /** Revoked or failed. */
  other: number;
}

/** Decided requests per UTC day of submission, split by outcome. */
export function outcomesPerDay(requests: Request[], now: number, days = WINDOW_DAYS): DayOutcomes[] {
  const byDay = new Map<string, DayOutcomes>(
    lastDays(now, days).map((day) => [day, { day, succeeded: 0, denied: 0, other: 0 }]),
  );
  for (const r of requests) {
    if (!DECIDED.has(r.state) || !inWindow(r.submittedAt, now, days)) continue;
    const entry = byDay.get(dayKey(Date.parse(r.submittedAt)));
    if (!entry) continue;
    if (SUCCEEDED.has(r.state)) entry.succeeded++;
    else if (r.state === "denied") entry.denied++;
    else entry.other++;
  }
  return [...byDay.values()];
}

/**
 * Whether the list reaches back over the whole window: a list cut at `limit` whose oldest request is
 * younger than the window covers only part of it (the dashboards say so).
 */
export function coversWindow(requests: Request[], limit: number, now: number, days = WINDOW_DAYS): boolean {
  if (requests.length < limit) return true;
  const oldest = Math.min(...requests.map((r) => Date.parse(r.submittedAt)));
  return dayKey(oldest) < dayKey(now - (days - 1) * DAY_MS);
}

// ---------------------------------------------------------------------------
// Words

/** "850 ms", "12 s", "3m 20s", "2h 05m", "3d 4h"; "—" for null. */
export function formatSeconds(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds < 10 ? Math.round(seconds * 10) / 10 : Math.round(seconds)} s`;
  const total = Math.round(seconds);
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
  return `${m}m ${String(s).padStart(2, "0")}s`;
}

/** "87%" (whole percent, "99.5%" just under a whole one so 99.5 is not shown as 100); "—" for null. */
export function formatPercent(share: number | null): string {
  if (share === null || !Number.isFinite(share)) return "—";
  const pct = share * 100;
  if (pct > 99 && pct < 100) return `${Math.floor(pct * 10) / 10}%`;
  return `${Math.round(pct)}%`;
}

/** The time-to-elevate chart in a sentence. */
export function timeToElevateCaption(overall: Latency, perDay: DayLatency[]): string {
  if (overall.count === 0) return `No activations in the last ${perDay.length} days, so no time-to-elevate.`;
  const slowest = perDay.reduce<DayLatency | null>(
    (worst, d) => (d.p95 !== null && (worst === null || d.p95 > (worst.p95 ?? -1)) ? d : worst),
    null,
  );
  const noun = overall.count === 1 ? "activation" : "activations";
  return (
    `${overall.count} ${noun} in the last ${perDay.length} days: median ${formatSeconds(overall.p50)}, ` +
    `95th percentile ${formatSeconds(overall.p95)}` +
    (slowest ? `; slowest day ${slowest.day} (95th percentile ${formatSeconds(slowest.p95)}).` : ".")
  );
}

/** The outcomes chart in a sentence. */
export function successCaption(rate: SuccessRate, days = WINDOW_DAYS): string {
  if (rate.decided === 0) return `No decided requests in the last ${days} days.`;
  const parts = (["revoked", "denied", "failed"] as const)
    .filter((s) => (rate.byState[s] ?? 0) > 0)
    .map((s) => `${rate.byState[s]} ${s}`);
  return (
    `${rate.succeeded} of ${rate.decided} decided requests in the last ${days} days were active or ended normally ` +
    `(${formatPercent(rate.rate)})` +
    (parts.length ? `; ${parts.join(", ")}.` : ".")
  );
}
