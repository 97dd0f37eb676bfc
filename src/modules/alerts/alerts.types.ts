/**
 * Anomaly alerts: the `alerts:` section of the configuration file (per rule: on or off, its thresholds, its
 * severity and what happens besides the notification), and what the rules see and say. The zod schema is the
 * edge: it runs when the configuration is loaded.
 */
import { z } from "zod";
import { parseDuration } from "../../lib/duration.js";

export const ALERT_RULES = [
  "firstActivation",
  "unusualHours",
  "newIp",
  "burst",
  "fastApproval",
  "rubberStamp",
  "dormantEligibility",
  "breakGlass",
  "deniedThenBreakGlass",
  "drift",
] as const;
export type AlertRule = (typeof ALERT_RULES)[number];

export const ALERT_SEVERITIES = ["info", "warning", "critical"] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

/** What happens besides the alert row, its audit event and its notification. */
export const ALERT_ACTIONS = ["none", "review", "revoke"] as const;
export type AlertAction = (typeof ALERT_ACTIONS)[number];

const duration = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

const channelName = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,63}$/, "must start with a letter and use only a-z, 0-9, '.', '_' or '-' (at most 64)");

/** What every rule has; `action: revoke` ends the activation the alert is about (rules about a request only). */
function rule<S extends z.ZodRawShape>(
  defaults: { severity: AlertSeverity; action?: AlertAction; revocable?: boolean },
  thresholds: S,
) {
  const actions = defaults.revocable === false ? (["none", "review"] as const) : ALERT_ACTIONS;
  return (
    z
      .strictObject({
        enabled: z.boolean().default(true),
        severity: z.enum(ALERT_SEVERITIES).default(defaults.severity),
        action: z.enum(actions).default(defaults.action ?? "none"),
        ...thresholds,
      })
      // Every threshold has a default: a rule left out of the file is on with its defaults.
      .prefault({} as never)
  );
}

export const alertsConfigSchema = z.strictObject({
  /** Off: no consumer runs, nothing is learned. */
  enabled: z.boolean().default(true),
  /** Notification channels (names from `notifications.channels`) alerts go to; all of them when left out. */
  channels: z.array(channelName).max(100).optional(),
  /** Where a new consumer starts: the first event of the chain (learns the history), or the head. */
  startAt: z.enum(["beginning", "head"]).default("beginning"),
  /**
   * Events older than this when the consumer reaches them (a first start over a long history, a long outage)
   * are learned from but raise nothing.
   */
  learnOnlyOlderThan: duration.default(86_400_000),
  /** Events read per transaction. */
  batchSize: z.number().int().min(1).max(5000).default(200),
  rules: z
    .strictObject({
      /** A user activates a role for the first time. */
      firstActivation: rule({ severity: "info" }, {}),
      /** A request submitted at an hour of day the user rarely uses (±1 hour, UTC), once they have a history. */
      unusualHours: rule(
        { severity: "warning" },
        {
          /** Requests the user must have made before their hours count as known. */
          minHistory: z.number().int().min(1).max(100_000).default(10),
          /** Unusual: this hour and its neighbours hold less than this share of the user's requests. */
          maxShare: z.number().min(0).max(1).default(0.05),
        },
      ),
      /** A request from an address the user has not used before, once they have a history. */
      newIp: rule({ severity: "warning" }, { minHistory: z.number().int().min(1).max(100_000).default(3) }),
      /** Many activations by one user in a short time. */
      burst: rule(
        { severity: "warning" },
        {
          count: z.number().int().min(2).max(10_000).default(5),
          window: duration.default(600_000),
        },
      ),
      /** An approver approves a request within this long of its submission. */
      fastApproval: rule({ severity: "warning" }, { within: duration.default(10_000) }),
      /** An approver who approves nearly everything (once they decided `minDecisions` times). */
      rubberStamp: rule(
        { severity: "warning" },
        {
          minDecisions: z.number().int().min(1).max(1_000_000).default(20),
          approveRate: z.number().min(0).max(1).default(0.98),
        },
      ),
      /** A user activates a role they had not used for this long. */
      dormantEligibility: rule({ severity: "warning" }, { after: duration.default(90 * 86_400_000) }),
      /** Any break-glass activation. */
      breakGlass: rule({ severity: "critical" }, {}),
      /** A break-glass activation by a user whose request was denied within `within` before. */
      deniedThenBreakGlass: rule({ severity: "critical", action: "review" }, { within: duration.default(3_600_000) }),
      /** A target holds privilege Stint did not grant (or lost one it did). */
      drift: rule({ severity: "warning", revocable: false }, {}),
    })
    .prefault({}),
});

export type AlertsConfig = z.output<typeof alertsConfigSchema>;
export type RulesConfig = AlertsConfig["rules"];

/** What a rule says: the service turns it into an alert row, an audit event and a notification. */
export interface AlertDraft {
  rule: AlertRule;
  severity: AlertSeverity;
  action: AlertAction;
  /** Who the alert is about (a user, an approver); null for a target's drift. */
  principal: string | null;
  /** `request:<id>` or `target:<name>`. */
  subject: string | null;
  /** The activation request a revoke ends (and a review item names). */
  requestId: string | null;
  title: string;
  text: string;
  details: Record<string, string | number | boolean | null>;
}

/** What the rules have learned about one key (a principal, or a target for drift). */
export interface LearnedState {
  /** Requests submitted per hour of day (UTC). */
  hours: number[];
  /** Requests submitted (the history the hours and addresses are learned from). */
  submissions: number;
  /** Addresses requests came from, most recent last (bounded). */
  ips: string[];
  /** Per role: activations and the last one's time (ISO). */
  roles: Record<string, { count: number; lastAt: string }>;
  /** Times (ISO) of this user's activations inside the burst window. */
  recent: string[];
  /** The last burst alert's time (ISO): one alert per window. */
  burstAlertAt: string | null;
  /** The last time a request of this user was denied (ISO). */
  lastDeniedAt: string | null;
  /** This user's latest requests and when they were submitted (bounded), for the speed of decisions on them. */
  requests: { id: string; at: string }[];
  /** As an approver: decisions taken, and whether the rubber-stamp alert stands (raised once until the rate drops). */
  approvals: number;
  denials: number;
  rubberStampRaised: boolean;
}

/** One key's state and the seq of the last audit event it learned from (an event is learned from once). */
export interface KeyState {
  seq: number;
  state: LearnedState;
}
