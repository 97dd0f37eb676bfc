/**
 * Targets, roles, policies and eligibility: the shapes shared by the API, the
 * CLI and the configuration file (configuration as code uses the same names).
 */
import { z } from "zod";
import { durationText, isoTime, name, reason } from "./common.js";
import { fileRules } from "./file-policy.js";
import { moderatorRule } from "./live.js";
import { queryRules } from "./query-policy.js";

export const weekday = z.enum(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]);
const clockTime = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "must be a time like 08:00");

export const timeZone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, "must be an IANA time zone such as Europe/London");

export const activationWindow = z.strictObject({
  days: z.array(weekday).min(1),
  from: clockTime,
  to: clockTime,
  timeZone,
});

export const approverSet = z
  .strictObject({
    groups: z.array(name).default([]),
    users: z.array(name).default([]),
    /** The requester's manager (from the directory). */
    manager: z.boolean().default(false),
  })
  .refine(
    (a) => a.manager || a.groups.length + a.users.length > 0,
    "must name at least one approver (groups, users or manager)",
  );

export const approvalStage = z
  .strictObject({
    name: z.string().max(100).optional(),
    approvers: approverSet,
    /** Distinct approvals this stage needs. */
    count: z.number().int().min(1).max(10).default(1),
    timeout: durationText.optional(),
    onTimeout: z.enum(["deny", "escalate", "approve"]).default("deny"),
    escalateTo: approverSet.optional(),
  })
  .refine((s) => s.onTimeout !== "escalate" || s.escalateTo !== undefined, {
    message: "onTimeout: escalate needs escalateTo",
    path: ["escalateTo"],
  })
  .refine((s) => s.onTimeout === "deny" || s.timeout !== undefined, {
    message: "a timeout action needs a timeout",
    path: ["timeout"],
  });

/** Second factors a policy may insist on: a TOTP code (recovery codes count as TOTP), or a passkey. */
export const mfaMethod = z.enum(["totp", "webauthn"]);

const DAY_MS = 86_400_000;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS } as const;

/** A duration text (`30m`, `1d`) whose length lies between `minMs` and `maxMs`. */
function durationBetween(minMs: number, maxMs: number, words: string) {
  return durationText.refine((text) => {
    const ms = Number(text.slice(0, -1)) * UNIT_MS[text.slice(-1) as keyof typeof UNIT_MS];
    return ms >= minMs && ms <= maxMs;
  }, `must be ${words}`);
}

/** How recent a second factor must be: the requester's at activation (`mfa`), an approver's (`approval.mfa`). */
const mfaRule = z
  .strictObject({
    required: z.boolean().default(true),
    maxAge: durationText.default("15m"),
    /**
     * Which second factors count for this policy's freshness check; absent = any (TOTP, recovery code or
     * passkey). `[webauthn]` accepts only a passkey check with user verification.
     */
    methods: z
      .array(mfaMethod)
      .min(1)
      .max(2)
      .refine((m) => new Set(m).size === m.length, "must not repeat a method")
      .optional(),
  })
  .refine((m) => m.required || m.methods === undefined, {
    message: "methods only apply when MFA is required",
    path: ["methods"],
  });
export type MfaRule = z.output<typeof mfaRule>;

export const policySpec = z.strictObject({
  defaultDuration: durationText.default("1h"),
  maxDuration: durationText.default("8h"),
  mfa: mfaRule.default({ required: true, maxAge: "15m" }),
  justification: z
    .strictObject({
      minLength: z.number().int().min(0).max(1000).default(10),
      ticketRequired: z.boolean().default(false),
      ticketPattern: z
        .string()
        .max(200)
        .refine((p) => {
          try {
            new RegExp(p);
            return true;
          } catch {
            return false;
          }
        }, "must be a valid regular expression")
        .optional(),
      /** Words that alone do not count as a reason. */
      rejectWords: z
        .array(z.string().min(1).max(50))
        .default(["work", "fix", "access", "needed", "test", "debug", "admin"]),
    })
    .default({
      minLength: 10,
      ticketRequired: false,
      rejectWords: ["work", "fix", "access", "needed", "test", "debug", "admin"],
    }),
  approval: z
    .strictObject({
      stages: z.array(approvalStage).max(5).default([]),
      /**
       * Whether one person may approve more than one stage of a request. Off: each stage is approved by
       * people who approved no earlier stage, so two stages always mean at least two people.
       */
      sameApproverAcrossStages: z.boolean().default(false),
      /**
       * How recent the approver's own second factor must be for an approval to count (a denial needs none).
       * Absent: required within 15m for roles at risk `critical`, not asked otherwise (`approverMfaRule`).
       */
      mfa: mfaRule.optional(),
    })
    .default({ stages: [], sameApproverAcrossStages: false }),
  windows: z.array(activationWindow).max(20).default([]),
  outsideWindow: z.enum(["deny", "require-approval"]).default("deny"),
  /** Approvers of the extra stage added outside the windows (outsideWindow: require-approval). */
  outsideWindowApprovers: approverSet.optional(),
  maxExtensions: z.number().int().min(0).max(100).default(0),
  breakGlass: z.boolean().default(false),
  notify: z.array(name).max(20).default([]),
  /**
   * What a reconcile does with privilege found at the target without an activation behind it:
   * `report` (audit, alert, count) or `remove` it as well.
   */
  drift: z.enum(["report", "remove"]).default("report"),
  /**
   * How long a request may wait for its decision, counted from submission (also for a request with a
   * later start): then it is `expired` and takes no decision. Absent: 24h. Between 1m and 30d.
   */
  requestTtl: durationBetween(60_000, 30 * DAY_MS, "between 1m and 30d").optional(),
  /** How far ahead a request may ask to start (`--start`, `startAt`). Absent: 30d. Between 1m and 365d. */
  maxStartDelay: durationBetween(60_000, 365 * DAY_MS, "between 1m and 365d").optional(),
  /** Brokered sessions (SSH and PostgreSQL proxies) of roles under this policy. */
  session: z
    .strictObject({
      /** required: a session that cannot be recorded is refused, and ended if its recording fails. */
      recording: z.enum(["required", "optional"]).default("optional"),
      /** SSH port forwarding through the proxy (recorded); refused unless true. */
      portForwarding: z.boolean().default(false),
      /** Keep the bound parameters of PostgreSQL queries in the query log. */
      queryParameters: z.boolean().default(false),
      /**
       * PostgreSQL proxy: which statements pass (see query-policy.ts); absent, all do. Without `dml`
       * the upstream login is also opened with default_transaction_read_only=on.
       */
      queries: queryRules.optional(),
      /** MySQL proxy: LOAD DATA LOCAL (the server reading a file from the client's machine); refused unless true. */
      loadDataLocal: z.boolean().optional(),
      /** SSH proxy: file transfers (SFTP, scp, rsync) by direction and size (see file-policy.ts); absent, all pass. */
      files: fileRules.optional(),
      /**
       * A moderator must be present: the session waits until a member of one of these groups (never the
       * session's own user) joins it in the web UI, and ends when they terminate it or the last one leaves.
       * SSH only: a PostgreSQL session under such a policy is refused.
       */
      moderator: moderatorRule.optional(),
    })
    .default({ recording: "optional", portForwarding: false, queryParameters: false }),
});
export type PolicySpec = z.output<typeof policySpec>;

export const riskTier = z.enum(["low", "medium", "high", "critical"]);

export const targetKind = z.enum(["internal", "postgres", "mysql", "ldap", "ssh-host", "webhook"]);

export const activationRequestState = z.enum([
  "pending",
  "approved",
  "provisioning",
  "active",
  "denied",
  "cancelled",
  "expired",
  "revoked",
  "deactivated",
  "failed",
]);
export type ActivationRequestState = z.infer<typeof activationRequestState>;

export const submitRequest = z.strictObject({
  role: name,
  duration: durationText.optional(),
  reason: reason,
  ticket: z.string().trim().min(1).max(100).optional(),
});

export const decisionRequest = z.strictObject({ reason: reason.optional() });
export const denyRequest = z.strictObject({ reason });
export const extendRequest = z.strictObject({ by: durationText, reason });

export { isoTime };
