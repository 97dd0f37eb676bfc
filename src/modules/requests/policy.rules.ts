/**
 * Pure policy rules for activation requests: duration, justification, activation
 * windows, MFA freshness and extensions. No IO and no clock reads: callers pass `now`.
 */
import type { MfaRule, PolicySpec } from "../../contract/catalog.js";
import { formatDuration, parseDuration } from "../../lib/duration.js";

export type ActivationWindow = PolicySpec["windows"][number];
type Weekday = ActivationWindow["days"][number];

/** The shortest activation or extension worth provisioning and revoking at a target. */
export const MIN_DURATION_MS = 5_000;

/** How far a recorded MFA time may sit in the future: server nodes' clocks differ slightly. */
export const MFA_CLOCK_SKEW_MS = 60_000;

const WEEKDAYS: readonly Weekday[] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY = 1440;
const MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY;

// ---------------------------------------------------------------------------
// Duration

export type DurationResult =
  { ok: true; durationMs: number } | { ok: false; code: "DURATION_TOO_LONG" | "DURATION_INVALID"; message: string };

/**
 * The activation length for a request: the policy default when none is asked for,
 * otherwise the requested one if it is between 5s and the policy maximum.
 * A default longer than the maximum (a policy written inconsistently) is cut to the
 * maximum rather than refusing a user who asked for nothing in particular.
 */
export function resolveDuration(
  spec: Pick<PolicySpec, "defaultDuration" | "maxDuration">,
  requested?: string,
): DurationResult {
  const maxMs = parseDuration(spec.maxDuration);
  if (requested === undefined) {
    const durationMs = Math.min(parseDuration(spec.defaultDuration), maxMs);
    if (durationMs < MIN_DURATION_MS) {
      return {
        ok: false,
        code: "DURATION_INVALID",
        message: `The role's policy allows no duration of at least ${formatDuration(MIN_DURATION_MS)}; ask its owners to fix it.`,
      };
    }
    return { ok: true, durationMs };
  }
  let durationMs: number;
  try {
    durationMs = parseDuration(requested);
  } catch {
    return {
      ok: false,
      code: "DURATION_INVALID",
      message: `"${requested}" is not a duration; write it like 30m, 2h or 1d.`,
    };
  }
  if (durationMs < MIN_DURATION_MS) {
    return {
      ok: false,
      code: "DURATION_INVALID",
      message: `An activation must last at least ${formatDuration(MIN_DURATION_MS)}.`,
    };
  }
  if (durationMs > maxMs) {
    return {
      ok: false,
      code: "DURATION_TOO_LONG",
      message: `${requested} is longer than this role allows; ask for at most ${formatDuration(maxMs)}.`,
    };
  }
  return { ok: true, durationMs };
}

// ---------------------------------------------------------------------------
// Justification

/** `fields` puts each problem under the input it is about (forms show it next to that field). */
export type JustificationResult =
  { ok: true } | { ok: false; problems: string[]; fields: { reason?: string; ticket?: string } };

/** Words of a text, lower-cased, with punctuation and spacing dropped (any script). */
function words(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((word) => word.length > 0);
}

/** A policy's reject words as a set of words, made once per list (a parsed policy is shared and frozen). */
const rejectedSets = new WeakMap<readonly string[], ReadonlySet<string>>();
function rejectedWords(list: readonly string[]): ReadonlySet<string> {
  let set = rejectedSets.get(list);
  if (set === undefined) {
    set = new Set(list.flatMap(words));
    // A list that can still change (not frozen) is not kept: its set would go stale.
    if (Object.isFrozen(list)) rejectedSets.set(list, set);
  }
  return set;
}

/**
 * A pattern as the policy author wrote it when it carries its own anchors; otherwise
 * the whole ticket must match, so `ABC-\d+` does not accept `xABC-1y`.
 */
function ticketRegExp(pattern: string): RegExp {
  const trailingBackslashes = /\\*(?=\$$)/.exec(pattern)?.[0].length ?? 0;
  const anchored = pattern.startsWith("^") || (pattern.endsWith("$") && trailingBackslashes % 2 === 0);
  return new RegExp(anchored ? pattern : `^(?:${pattern})$`);
}

/**
 * Checks the reason and ticket against the policy and lists every problem at once, so
 * a requester fixes them in one go. A reason whose words are all reject words ("fix",
 * "needed access") says nothing, whatever its length; so does one with no words at all.
 */
export function checkJustification(
  spec: Pick<PolicySpec, "justification">,
  reason: string,
  ticket?: string,
): JustificationResult {
  const rules = spec.justification;
  const problems: string[] = [];
  const trimmed = reason.trim();

  if (trimmed.length < rules.minLength) {
    problems.push(`The reason must be at least ${rules.minLength} characters long; say what you will do and why.`);
  }
  const reasonWords = words(trimmed);
  const rejected = rejectedWords(rules.rejectWords);
  if (reasonWords.length === 0) {
    problems.push("The reason must say in words what you will do and why.");
  } else if (reasonWords.every((word) => rejected.has(word))) {
    problems.push(
      `"${trimmed}" is too vague to be a reason; say what you will do and why (for example, the incident or change).`,
    );
  }

  const reasonProblems = problems.length;
  const givenTicket = ticket?.trim() || undefined;
  if (givenTicket === undefined) {
    if (rules.ticketRequired)
      problems.push(
        `This role needs a ticket reference with every request (--ticket${rules.ticketPattern !== undefined ? `, matching ${rules.ticketPattern}` : ""}).`,
      );
  } else if (rules.ticketPattern !== undefined && !ticketRegExp(rules.ticketPattern).test(givenTicket)) {
    problems.push(
      `The ticket "${givenTicket}" does not look like a ticket reference this role accepts (the whole ticket must match ${rules.ticketPattern}).`,
    );
  }

  if (problems.length === 0) return { ok: true };
  const fields: { reason?: string; ticket?: string } = {};
  if (reasonProblems > 0) fields.reason = problems.slice(0, reasonProblems).join(" ");
  if (problems.length > reasonProblems) fields.ticket = problems.slice(reasonProblems).join(" ");
  return { ok: false, problems, fields };
}

// ---------------------------------------------------------------------------
// Activation windows
//
// A window is a range of wall-clock times in its time zone: 08:00-18:00 means while
// the clock there reads 08:00 to 17:59, whatever the UTC offset that day. The local
// time is found from the zone's UTC offset at `now` (Intl, no dependency) and the
// window is compared as minutes of the local week, which handles overnight windows
// and the sun->mon wrap with one modulo. Consequences at DST changes, by design:
// a window starting in the skipped hour starts when the clock jumps past it, and in
// the repeated hour each reading of the clock is judged on its own.

const offsetFormatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's offset from UTC at an instant, in milliseconds (east positive). */
function utcOffsetMs(timeZone: string, instant: Date): number {
  let formatter = offsetFormatters.get(timeZone);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat("en-US", { timeZone, timeZoneName: "longOffset" });
    offsetFormatters.set(timeZone, formatter);
  }
  const label = formatter.formatToParts(instant).find((part) => part.type === "timeZoneName")?.value ?? "";
  // "GMT", "GMT+01:00", "GMT-03:30", and for old local mean times "GMT+05:21:10".
  const match = /^GMT(?:([+-])(\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(label);
  if (match === null) throw new RangeError(`cannot read the UTC offset of ${timeZone} from "${label}"`);
  const [, sign, hours = "0", minutes = "0", seconds = "0"] = match;
  const magnitude = ((Number(hours) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000;
  return sign === "-" ? -magnitude : magnitude;
}

/** Minutes since local Monday 00:00 in the zone, at an instant. */
function localMinuteOfWeek(timeZone: string, now: Date): number {
  const local = new Date(now.getTime() + utcOffsetMs(timeZone, now));
  const mondayBasedDay = (local.getUTCDay() + 6) % 7;
  return mondayBasedDay * MINUTES_PER_DAY + local.getUTCHours() * 60 + local.getUTCMinutes();
}

function minutesOf(clockTime: string): number {
  const [hours = "0", minutes = "0"] = clockTime.split(":");
  return Number(hours) * 60 + Number(minutes);
}

/** Whether a local minute of the week falls inside one window. */
function windowContains(window: ActivationWindow, minuteOfWeek: number): boolean {
  const from = minutesOf(window.from);
  const to = minutesOf(window.to);
  // from == to: the whole of each listed day; to < from: overnight, ending the next day.
  const startInDay = from === to ? 0 : from;
  const length = from === to ? MINUTES_PER_DAY : (to - from + MINUTES_PER_DAY) % MINUTES_PER_DAY;
  return window.days.some((day) => {
    const start = WEEKDAYS.indexOf(day) * MINUTES_PER_DAY + startInDay;
    return (((minuteOfWeek - start) % MINUTES_PER_WEEK) + MINUTES_PER_WEEK) % MINUTES_PER_WEEK < length;
  });
}

/**
 * Whether `now` is inside any of the windows (no windows: always). `days` name the day
 * a window starts on, so fri 22:00-06:00 covers Friday night into Saturday morning.
 */
export function isWithinWindows(windows: readonly ActivationWindow[], now: Date): boolean {
  if (windows.length === 0) return true;
  return windows.some((window) => windowContains(window, localMinuteOfWeek(window.timeZone, now)));
}

function describeDays(days: readonly Weekday[]): string {
  const indexes = [...new Set(days.map((day) => WEEKDAYS.indexOf(day)))].sort((a, b) => a - b);
  const runs: string[] = [];
  for (let i = 0; i < indexes.length;) {
    let j = i;
    while (j + 1 < indexes.length && indexes[j + 1] === indexes[j]! + 1) j++;
    const first = WEEKDAYS[indexes[i]!]!;
    const last = WEEKDAYS[indexes[j]!]!;
    if (j - i >= 2) runs.push(`${first}-${last}`);
    else for (let k = i; k <= j; k++) runs.push(WEEKDAYS[indexes[k]!]!);
    i = j + 1;
  }
  return runs.join(",");
}

/** A window as people read it: "mon-fri 08:00-18:00 Europe/London". */
export function describeWindow(window: ActivationWindow): string {
  const hours = window.from === window.to ? "all day" : `${window.from}-${window.to}`;
  return `${describeDays(window.days)} ${hours} ${window.timeZone}`;
}

export type WindowDecision = { allowed: true; extraStage: boolean } | { allowed: false; reason: string };

/**
 * Inside the windows: allowed as usual. Outside: refused, or (outsideWindow:
 * require-approval) allowed with one more approval stage, by outsideWindowApprovers.
 */
export function evaluateWindow(spec: Pick<PolicySpec, "windows" | "outsideWindow">, now: Date): WindowDecision {
  if (isWithinWindows(spec.windows, now)) return { allowed: true, extraStage: false };
  if (spec.outsideWindow === "require-approval") return { allowed: true, extraStage: true };
  return {
    allowed: false,
    reason: `This role can be activated only during ${spec.windows.map(describeWindow).join("; ")}, and it is outside those hours now.`,
  };
}

/**
 * Why an activation may not start at `now` under the policy's windows, or null. Checked when a request is
 * made and again when it would become active (a person's final approval, a stage approving on timeout), so
 * `outsideWindow: deny` holds however long the approval took. Break-glass roles are exempt by design; under
 * `require-approval` the extra stage is decided when the request is made.
 */
export function windowProblemAtActivation(
  spec: Pick<PolicySpec, "windows" | "outsideWindow" | "breakGlass">,
  now: Date,
): string | null {
  if (spec.breakGlass || spec.outsideWindow !== "deny") return null;
  const window = evaluateWindow(spec, now);
  return window.allowed ? null : window.reason;
}

// ---------------------------------------------------------------------------
// MFA

export type MfaResult =
  { ok: true } | { ok: false; code: "MFA_STEP_UP_REQUIRED" | "WEBAUTHN_REQUIRED"; message: string };

/**
 * When the policy requires MFA, the last MFA must be at most maxAge old (inclusive).
 * A time slightly in the future is clock skew between nodes; further ahead is not trusted.
 * A policy whose `methods` leave out TOTP counts only the session's last passkey check (`webauthnAt`):
 * a fresh one-time code then answers WEBAUTHN_REQUIRED, not MFA_STEP_UP_REQUIRED.
 */
export function checkMfaFreshness(
  spec: { mfa: MfaRule },
  mfaAt: Date | null,
  now: Date,
  webauthnAt: Date | null = null,
  /** Who needs it, for the message: the role (activation) or the approval. */
  needs = "This role needs",
): MfaResult {
  if (!spec.mfa.required) return { ok: true };
  const maxAgeMs = parseDuration(spec.mfa.maxAge);
  const passkeyOnly = spec.mfa.methods !== undefined && !spec.mfa.methods.includes("totp");
  const at = passkeyOnly ? webauthnAt : mfaAt;
  const ageMs = at === null ? Number.NaN : now.getTime() - at.getTime();
  if (ageMs >= -MFA_CLOCK_SKEW_MS && ageMs <= maxAgeMs) return { ok: true };
  if (passkeyOnly)
    return {
      ok: false,
      code: "WEBAUTHN_REQUIRED",
      message: `${needs} a passkey check (with user verification) within the last ${formatDuration(maxAgeMs)}; a one-time code does not count. Step up with your passkey and try again.`,
    };
  return {
    ok: false,
    code: "MFA_STEP_UP_REQUIRED",
    message: `${needs} a one-time code entered within the last ${formatDuration(maxAgeMs)}; confirm with your authenticator and try again.`,
  };
}

/** What an approval's audit event records of the approver's second factor: when, and whether a passkey. */
export interface ApproverMfa {
  at: string;
  method: "passkey" | "otp-or-sso";
}

/** How recent an approver's MFA must be where the policy does not say (`approval.mfa` absent) and asks for it. */
export const DEFAULT_APPROVER_MFA_MAX_AGE = "15m";

/**
 * The rule an approval follows: the policy's `approval.mfa`, else (absent: every policy written before it existed)
 * required within 15m for roles at risk `critical` and not asked otherwise, so existing lower-tier approvals keep
 * working and the approvals that hand out the most privilege need a second factor of the approver's own.
 */
export function approverMfaRule(spec: Pick<PolicySpec, "approval">, risk: string): MfaRule {
  return spec.approval.mfa ?? { required: risk === "critical", maxAge: DEFAULT_APPROVER_MFA_MAX_AGE };
}

/**
 * An approver's second factor under `rule`: refused as an activation would be (MFA_STEP_UP_REQUIRED or
 * WEBAUTHN_REQUIRED), or accepted with what the approval's audit event records of it: the time of the check that
 * counted and whether it was a passkey (a session's passkey check at or after its last MFA of any kind, as the
 * access token's `amr` says `hwk`) or something else (a one-time code, or the identity provider's MFA at sign-in).
 * Nothing is recorded when the rule asks for no MFA.
 */
export function checkApproverMfa(
  rule: MfaRule,
  mfaAt: Date | null,
  now: Date,
  webauthnAt: Date | null,
  needs = "Approving requests for this role needs",
): { ok: true; used: ApproverMfa | null } | Extract<MfaResult, { ok: false }> {
  const checked = checkMfaFreshness({ mfa: rule }, mfaAt, now, webauthnAt, needs);
  if (!checked.ok || !rule.required) return checked.ok ? { ok: true, used: null } : checked;
  const passkeyOnly = rule.methods !== undefined && !rule.methods.includes("totp");
  const passkey = webauthnAt !== null && (passkeyOnly || (mfaAt !== null && webauthnAt.getTime() >= mfaAt.getTime()));
  const at = passkeyOnly ? webauthnAt! : mfaAt!;
  return { ok: true, used: { at: at.toISOString(), method: passkey ? "passkey" : "otp-or-sso" } };
}

// ---------------------------------------------------------------------------
// Extensions

export type ExtensionResult =
  | { ok: true; expiresAt: Date }
  | { ok: false; code: "EXTENSION_LIMIT_REACHED" | "DURATION_TOO_LONG" | "DURATION_INVALID"; reason: string };

/**
 * The rule: an activation may be extended at most maxExtensions times; each extension
 * moves the current expiry by `by`, which must be between 5s and maxDuration (an
 * extension is never longer than an activation could be). So the whole activation
 * never exceeds maxDuration x (1 + maxExtensions) from its start; that bound is also
 * checked directly, so a policy tightened since activation still caps it.
 */
export function checkExtension(
  spec: Pick<PolicySpec, "maxDuration" | "maxExtensions">,
  extensionsSoFar: number,
  byMs: number,
  currentExpiresAt: Date,
  activatedAt: Date,
): ExtensionResult {
  if (spec.maxExtensions === 0) {
    return { ok: false, code: "EXTENSION_LIMIT_REACHED", reason: "This role's policy does not allow extensions." };
  }
  if (extensionsSoFar >= spec.maxExtensions) {
    const times = spec.maxExtensions === 1 ? "once" : `${spec.maxExtensions} times`;
    return {
      ok: false,
      code: "EXTENSION_LIMIT_REACHED",
      reason: `This activation was already extended ${times}, the most the role's policy allows; request a new activation.`,
    };
  }
  const maxMs = parseDuration(spec.maxDuration);
  if (!Number.isFinite(byMs) || byMs < MIN_DURATION_MS) {
    return {
      ok: false,
      code: "DURATION_INVALID",
      reason: `An extension must add at least ${formatDuration(MIN_DURATION_MS)}.`,
    };
  }
  if (byMs > maxMs) {
    return {
      ok: false,
      code: "DURATION_TOO_LONG",
      reason: `An extension may add at most ${formatDuration(maxMs)} at a time.`,
    };
  }
  const expiresAt = new Date(currentExpiresAt.getTime() + byMs);
  const totalCapMs = maxMs * (1 + spec.maxExtensions);
  if (expiresAt.getTime() - activatedAt.getTime() > totalCapMs) {
    return {
      ok: false,
      code: "DURATION_TOO_LONG",
      reason: `With this extension the activation would last longer than ${formatDuration(totalCapMs)} in total, the most this role allows.`,
    };
  }
  return { ok: true, expiresAt };
}
