/** Pure rules of the outbox: retry backoff, the decision after a failure, safe error text. */
import type { BackoffPolicy, FailureDecision, RandomSource } from "./outbox.types.js";

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1_000, capMs: 10 * 60_000 };

export const MAX_ERROR_LENGTH = 200;

/** Throws when a policy could produce nonsense delays (checked once, at wiring time). */
export function assertBackoffPolicy(policy: BackoffPolicy): void {
  const { baseMs, capMs } = policy;
  if (!Number.isFinite(baseMs) || baseMs <= 0)
    throw new RangeError(`backoff baseMs must be a positive number, got ${baseMs}`);
  if (!Number.isFinite(capMs) || capMs < baseMs)
    throw new RangeError(`backoff capMs must be at least baseMs, got ${capMs}`);
}

/** The upper bound of the jittered delay before retry number `attempt` (1-based). */
export function backoffCeilingMs(attempt: number, policy: BackoffPolicy): number {
  const n = Number.isFinite(attempt) && attempt >= 1 ? Math.floor(attempt) : 1;
  // 2^52 already dwarfs any cap; limiting the exponent keeps the product finite.
  const growth = 2 ** Math.min(n - 1, 52);
  return Math.max(0, Math.min(policy.capMs, policy.baseMs * growth));
}

/**
 * Full jitter (uniform over [0, ceiling]): spreads retries of many failed rows so a
 * target that comes back is not hit by all of them at once. Whole milliseconds.
 */
export function backoffMs(attempt: number, policy: BackoffPolicy, random: RandomSource): number {
  const r = random();
  const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
  return Math.floor(unit * backoffCeilingMs(attempt, policy));
}

/** After attempt number `attempts` failed: retry later, or give up when attempts are used up. */
export function decideAfterFailure(input: {
  attempts: number;
  maxAttempts: number;
  now: Date;
  policy: BackoffPolicy;
  random: RandomSource;
}): FailureDecision {
  if (input.attempts >= input.maxAttempts) return { status: "dead" };
  const delayMs = backoffMs(input.attempts, input.policy, input.random);
  return { status: "pending", delayMs, nextAttemptAt: new Date(input.now.getTime() + delayMs) };
}

// eslint-disable-next-line no-control-regex -- stripping control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]+/g;

const REDACTIONS: readonly [RegExp, string][] = [
  // PEM blocks (keys, certificates), even when cut off.
  [/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|$)/g, "[redacted pem]"],
  // user:password@ in URLs and connection strings.
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi, "$1[redacted]@"],
  // JWTs.
  [/\beyJ[\w-]+\.[\w-]+\.[\w-]*/g, "[redacted jwt]"],
  [/\b(bearer|basic)\s+[\w~+/.=-]+/gi, "$1 [redacted]"],
  // password=…, "token": "…", api_key: …
  [
    /\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)("?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)/gi,
    "$1$2[redacted]",
  ],
];

/**
 * The text stored in `last_error` and audit reasons: a short, single-line message
 * with credential-shaped fragments removed. Handlers should not put secrets in
 * errors at all; this is the safety net for library errors that echo their input.
 */
export function safeErrorMessage(error: unknown, maxLength = MAX_ERROR_LENGTH): string {
  let text: string;
  if (error instanceof Error)
    text = error.name && error.name !== "Error" ? `${error.name}: ${error.message}` : error.message;
  else if (typeof error === "string") text = error;
  else text = "a non-error value was thrown";
  for (const [pattern, replacement] of REDACTIONS) text = text.replace(pattern, replacement);
  text = text.replace(CONTROL_CHARACTERS, " ").replace(/\s+/g, " ").trim();
  if (text === "") text = "failed without a message";
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}
