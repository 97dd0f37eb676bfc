/**
 * Pure rules of request timing: how long a request may wait for its decision (the policy's `requestTtl`),
 * and a start time asked for ahead (`--start`, `startAt`): when it is accepted, and when a request approved
 * ahead may start. No IO and no clock reads: callers pass `now`.
 */
import type { PolicySpec } from "../../contract/catalog.js";
import { formatDuration, parseDuration } from "../../lib/duration.js";

/** How long a request waits for its decision when its policy says nothing (Entra PIM's fixed 24 hours). */
export const DEFAULT_REQUEST_TTL = "24h";
/** How far ahead a request may ask to start when its policy says nothing. */
export const DEFAULT_MAX_START_DELAY = "30d";
/** How far a start time may lie in the past and still mean "now": clocks of clients and nodes differ a little. */
export const START_CLOCK_SKEW_MS = 60_000;

type Instant = Date | string | null;
const ms = (value: Instant) => (value === null ? null : new Date(value).getTime());

/** The request's time to live, in ms (the policy's `requestTtl`, else 24h). */
export function requestTtlMs(spec: Pick<PolicySpec, "requestTtl">): number {
  return parseDuration(spec.requestTtl ?? DEFAULT_REQUEST_TTL);
}

/**
 * When a request submitted at `submittedAt` expires if still pending. Counted from submission whatever its
 * start time: a request that asks to start in a week still needs its decision within the TTL.
 */
export function pendingExpiresAt(spec: Pick<PolicySpec, "requestTtl">, submittedAt: Date): Date {
  return new Date(submittedAt.getTime() + requestTtlMs(spec));
}

/** A pending request whose time to live has passed: it takes no decision, whoever notices first expires it. */
export function isPendingPastTtl(row: { state: string; pending_expires_at: Instant }, now: Date): boolean {
  const at = ms(row.pending_expires_at);
  return row.state === "pending" && at !== null && at <= now.getTime();
}

/** A request that expired while pending (never started): `expired` with no activation behind it. */
export function expiredUndecided(row: { state: string; activated_at: Instant }): boolean {
  return row.state === "expired" && row.activated_at === null;
}

/** The end reason of a request that expired undecided. */
export function pendingExpiryReason(spec: Pick<PolicySpec, "requestTtl">): string {
  return `no decision within the policy's requestTtl (${formatDuration(requestTtlMs(spec))})`;
}

export type StartResult =
  | { ok: true; startAt: Date | null }
  | {
      ok: false;
      code: "START_IN_PAST" | "START_TOO_FAR" | "START_NOT_ALLOWED";
      message: string;
      maxStartDelay?: string;
    };

/**
 * Whether a request may ask to start at `requested`. Nothing asked, or a time up to a minute in the past
 * (clock skew), or now: it starts at once (null). Later: it starts then, if within the policy's
 * `maxStartDelay` (default 30d). Break-glass roles always start at once.
 */
export function checkStart(
  spec: Pick<PolicySpec, "maxStartDelay" | "breakGlass">,
  requested: Date | undefined,
  now: Date,
): StartResult {
  if (requested === undefined) return { ok: true, startAt: null };
  if (Number.isNaN(requested.getTime()))
    return { ok: false, code: "START_IN_PAST", message: "The start time is not a time." };
  if (spec.breakGlass)
    return {
      ok: false,
      code: "START_NOT_ALLOWED",
      message: "A break-glass role activates at once; it takes no start time.",
    };
  const ahead = requested.getTime() - now.getTime();
  if (ahead < -START_CLOCK_SKEW_MS)
    return {
      ok: false,
      code: "START_IN_PAST",
      message: `The start time ${requested.toISOString()} is in the past; give a later one, or none to start at once.`,
    };
  if (ahead <= 0) return { ok: true, startAt: null };
  const maxText = spec.maxStartDelay ?? DEFAULT_MAX_START_DELAY;
  const maxMs = parseDuration(maxText);
  if (ahead > maxMs)
    return {
      ok: false,
      code: "START_TOO_FAR",
      message: `The start time ${requested.toISOString()} is more than ${formatDuration(maxMs)} ahead; this role allows starting at most ${formatDuration(maxMs)} from now.`,
      maxStartDelay: formatDuration(maxMs),
    };
  return { ok: true, startAt: requested };
}

/** An approved request that must wait for its start time (it starts when `now` reaches `start_at`). */
export function waitsForStart(row: { start_at: Instant }, now: Date): boolean {
  const at = ms(row.start_at);
  return at !== null && at > now.getTime();
}

/** The earliest of several due times (null when none): what the scheduler wakes for next. */
export function earliest(...times: (Date | null | undefined)[]): Date | null {
  let best: Date | null = null;
  for (const t of times) if (t && (best === null || t.getTime() < best.getTime())) best = t;
  return best;
}
