/**
 * Anomaly rules, pure: an audit event becomes observations (a request submitted, an activation, a decision, a
 * denial, a break-glass use, a drift finding), each about one key (a principal, or a target). Each rule is a
 * function of one observation, what was learned about its key before it, the rule's configuration and the
 * submission time of the request a decision is about (from its requester's state) → an alert draft or null. `learn` then folds the
 * observation into the key's state. `evaluate` does both for a whole event and skips a key that already
 * learned from it (its seq), so reprocessing an event raises nothing twice.
 */
import type { AuditEvent } from "../audit/audit.types.js";
import type { AlertDraft, AlertRule, AlertsConfig, KeyState, LearnedState, RulesConfig } from "./alerts.types.js";

/** At most this many known addresses per user (the oldest are forgotten). */
export const MAX_KNOWN_IPS = 50;

export type Observation =
  | {
      kind: "submitted";
      principal: string;
      at: Date;
      ip: string | null;
      role: string;
      requestId: string;
    }
  | { kind: "activated"; principal: string; at: Date; role: string; requestId: string }
  /** A person's decision on someone's request (the approver's observation). */
  | {
      kind: "decided";
      approver: string;
      requester: string;
      at: Date;
      role: string;
      requestId: string;
      approved: boolean;
    }
  /** A request of `principal` was denied (by a person or a timeout). */
  | { kind: "denied"; principal: string; at: Date; role: string; requestId: string }
  | { kind: "breakGlass"; principal: string; at: Date; role: string; requestId: string; reason: string | null }
  | { kind: "drift"; target: string; at: Date; role: string | null; login: string | null; reason: string | null };

/** At most this many recent requests per user are remembered with their submission time (for decisions on them). */
export const MAX_REMEMBERED_REQUESTS = 20;

/** What a rule may know beyond its key's state: other keys' states, as `evaluate` hands them over. */
export interface Lookups {
  /** When a request was submitted (from its requester's state), if remembered. */
  submittedAt(requester: string, requestId: string): Date | null;
}

const requestIdOf = (subject: string | null): string | null =>
  subject?.startsWith("request:") ? subject.slice("request:".length) : null;
const text = (value: unknown): string | null => (typeof value === "string" && value.length > 0 ? value : null);
/** An audit actor that is a person (system actors are written `system:<name>`). */
const person = (actor: string): string | null => (actor.startsWith("system:") || actor === "anonymous" ? null : actor);

/** What an audit event tells the rules; most events tell nothing. */
export function observationsOf(event: AuditEvent): Observation[] {
  if (event.outcome !== "success") return [];
  const at = new Date(event.time);
  const details = event.details ?? {};
  const role = text(details.role);
  const requestId = requestIdOf(event.subject);
  switch (event.action) {
    case "request.submitted": {
      const principal = person(event.actor);
      if (!principal || !role || !requestId) return [];
      return [{ kind: "submitted", principal, at, ip: event.sourceIp, role, requestId }];
    }
    case "request.activated": {
      const principal = text(details.requester);
      if (!principal || !role || !requestId) return [];
      return [{ kind: "activated", principal, at, role, requestId }];
    }
    case "request.approved":
    case "request.approval_recorded":
    case "request.stage_approved":
    case "request.denied": {
      const requester = text(details.requester);
      if (!requester || !role || !requestId) return [];
      const approved = event.action !== "request.denied";
      const out: Observation[] = [];
      const approver = details.automatic === true || details.timeout === true ? null : person(event.actor);
      if (approver) out.push({ kind: "decided", approver, requester, at, role, requestId, approved });
      if (!approved) out.push({ kind: "denied", principal: requester, at, role, requestId });
      return out;
    }
    case "breakglass.used": {
      const principal = person(event.actor);
      if (!principal || !role || !requestId) return [];
      return [{ kind: "breakGlass", principal, at, role, requestId, reason: event.reason }];
    }
    case "drift.detected": {
      const target = event.subject?.startsWith("target:") ? event.subject.slice("target:".length) : null;
      if (!target) return [];
      return [{ kind: "drift", target, at, role, login: text(details.login), reason: event.reason }];
    }
    default:
      return [];
  }
}

/** The state key an observation learns into. */
export function keyOf(observation: Observation): string {
  switch (observation.kind) {
    case "decided":
      return `principal:${observation.approver}`;
    case "drift":
      return `target:${observation.target}`;
    default:
      return `principal:${observation.principal}`;
  }
}

export function emptyState(): LearnedState {
  return {
    hours: Array.from({ length: 24 }, () => 0),
    submissions: 0,
    ips: [],
    roles: {},
    recent: [],
    burstAlertAt: null,
    lastDeniedAt: null,
    requests: [],
    approvals: 0,
    denials: 0,
    rubberStampRaised: false,
  };
}

type Draft = Omit<AlertDraft, "severity" | "action">;
type RuleFn<R extends AlertRule> = (
  observation: Observation,
  state: LearnedState,
  config: RulesConfig[R],
  lookups: Lookups,
) => Draft | null;

const minutes = (ms: number) => (ms % 60_000 === 0 ? `${ms / 60_000} min` : `${Math.round(ms / 1000)} s`);

export const firstActivation: RuleFn<"firstActivation"> = (o, state) => {
  if (o.kind !== "activated" || state.roles[o.role]) return null;
  return {
    rule: "firstActivation",
    principal: o.principal,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.principal} activated ${o.role} for the first time`,
    text: `${o.principal} has never activated ${o.role} before.`,
    details: { role: o.role },
  };
};

/** The share of the user's requests in this hour of day and its two neighbours (UTC). */
export function hourShare(state: LearnedState, at: Date): number {
  if (state.submissions === 0) return 0;
  const h = at.getUTCHours();
  const around = state.hours[(h + 23) % 24]! + state.hours[h]! + state.hours[(h + 1) % 24]!;
  return around / state.submissions;
}

export const unusualHours: RuleFn<"unusualHours"> = (o, state, config) => {
  if (o.kind !== "submitted" || state.submissions < config.minHistory) return null;
  const share = hourShare(state, o.at);
  if (share >= config.maxShare) return null;
  const hour = `${String(o.at.getUTCHours()).padStart(2, "0")}:00 UTC`;
  return {
    rule: "unusualHours",
    principal: o.principal,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.principal} asked for ${o.role} at an unusual hour (${hour})`,
    text: `${Math.round(share * 100)}% of ${o.principal}'s ${state.submissions} earlier requests were made around ${hour}.`,
    details: { role: o.role, hourUtc: o.at.getUTCHours(), share: Math.round(share * 1000) / 1000 },
  };
};

export const newIp: RuleFn<"newIp"> = (o, state, config) => {
  if (o.kind !== "submitted" || !o.ip || state.submissions < config.minHistory || state.ips.includes(o.ip)) return null;
  return {
    rule: "newIp",
    principal: o.principal,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.principal} asked for ${o.role} from a new address`,
    text: `${o.ip} is not among the addresses of ${o.principal}'s ${state.submissions} earlier requests.`,
    details: { role: o.role, ip: o.ip },
  };
};

/** Activation times inside the window ending at `at` (this one included). */
function inWindow(recent: readonly string[], at: Date, windowMs: number): string[] {
  return recent.filter((t) => at.getTime() - new Date(t).getTime() < windowMs);
}

export const burst: RuleFn<"burst"> = (o, state, config) => {
  if (o.kind !== "activated") return null;
  const count = inWindow(state.recent, o.at, config.window).length + 1;
  if (count < config.count) return null;
  if (state.burstAlertAt && o.at.getTime() - new Date(state.burstAlertAt).getTime() < config.window) return null;
  return {
    rule: "burst",
    principal: o.principal,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.principal} activated ${count} times in ${minutes(config.window)}`,
    text: `${o.principal} made ${count} activations within ${minutes(config.window)} (threshold ${config.count}); the last was ${o.role}.`,
    details: { role: o.role, count, windowMs: config.window },
  };
};

export const fastApproval: RuleFn<"fastApproval"> = (o, _state, config, lookups) => {
  if (o.kind !== "decided" || !o.approved) return null;
  const submitted = lookups.submittedAt(o.requester, o.requestId);
  if (!submitted) return null;
  const tookMs = o.at.getTime() - submitted.getTime();
  if (tookMs >= config.within) return null;
  return {
    rule: "fastApproval",
    principal: o.approver,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.approver} approved ${o.requester}'s ${o.role} in ${Math.max(0, Math.round(tookMs / 1000))} s`,
    text: `${o.approver} approved ${o.requester}'s request for ${o.role} ${Math.max(0, Math.round(tookMs / 100) / 10)} s after it was submitted (threshold ${Math.round(config.within / 1000)} s).`,
    details: { role: o.role, requester: o.requester, tookMs: Math.max(0, tookMs) },
  };
};

export const rubberStamp: RuleFn<"rubberStamp"> = (o, state, config) => {
  if (o.kind !== "decided" || state.rubberStampRaised) return null;
  const approvals = state.approvals + (o.approved ? 1 : 0);
  const total = state.approvals + state.denials + 1;
  if (total < config.minDecisions || approvals / total < config.approveRate) return null;
  return {
    rule: "rubberStamp",
    principal: o.approver,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.approver} approves nearly every request (${approvals} of ${total})`,
    text: `${o.approver} approved ${approvals} of the ${total} requests they decided (threshold ${Math.round(config.approveRate * 100)}% over at least ${config.minDecisions}).`,
    details: { approvals, decisions: total },
  };
};

export const dormantEligibility: RuleFn<"dormantEligibility"> = (o, state, config) => {
  if (o.kind !== "activated") return null;
  const last = state.roles[o.role];
  if (!last) return null;
  const idleMs = o.at.getTime() - new Date(last.lastAt).getTime();
  if (idleMs < config.after) return null;
  const days = Math.floor(idleMs / 86_400_000);
  return {
    rule: "dormantEligibility",
    principal: o.principal,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.principal} activated ${o.role} after ${days} days unused`,
    text: `${o.principal} last activated ${o.role} on ${last.lastAt.slice(0, 10)}, ${days} days ago.`,
    details: { role: o.role, lastAt: last.lastAt, idleDays: days },
  };
};

export const breakGlass: RuleFn<"breakGlass"> = (o) => {
  if (o.kind !== "breakGlass") return null;
  return {
    rule: "breakGlass",
    principal: o.principal,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `BREAK-GLASS: ${o.principal} activated ${o.role}`,
    text: `${o.principal} used break-glass for ${o.role}${o.reason ? `: ${o.reason}` : "."}`.slice(0, 2000),
    details: { role: o.role },
  };
};

export const deniedThenBreakGlass: RuleFn<"deniedThenBreakGlass"> = (o, state, config) => {
  if (o.kind !== "breakGlass" || !state.lastDeniedAt) return null;
  const sinceMs = o.at.getTime() - new Date(state.lastDeniedAt).getTime();
  if (sinceMs < 0 || sinceMs >= config.within) return null;
  return {
    rule: "deniedThenBreakGlass",
    principal: o.principal,
    subject: `request:${o.requestId}`,
    requestId: o.requestId,
    title: `${o.principal} used break-glass ${minutes(Math.floor(sinceMs / 60_000) * 60_000 || 60_000)} after a denial`,
    text: `A request of ${o.principal} was denied at ${state.lastDeniedAt}; ${Math.round(sinceMs / 60_000)} min later they activated ${o.role} by break-glass.`,
    details: { role: o.role, deniedAt: state.lastDeniedAt, sinceMs },
  };
};

export const drift: RuleFn<"drift"> = (o) => {
  if (o.kind !== "drift") return null;
  return {
    rule: "drift",
    principal: o.login,
    subject: `target:${o.target}`,
    requestId: null,
    title: `Drift at ${o.target}${o.role ? ` (${o.role})` : ""}`,
    text: (o.reason ?? `${o.target} does not match what Stint granted.`).slice(0, 2000),
    details: { target: o.target, role: o.role, login: o.login },
  };
};

export const RULES: { readonly [R in AlertRule]: RuleFn<R> } = {
  firstActivation,
  unusualHours,
  newIp,
  burst,
  fastApproval,
  rubberStamp,
  dormantEligibility,
  breakGlass,
  deniedThenBreakGlass,
  drift,
};

/** Folds an observation into what was learned (a new object; the input is not changed). */
export function learn(state: LearnedState, o: Observation, config: RulesConfig): LearnedState {
  const next: LearnedState = { ...state, hours: [...state.hours], ips: [...state.ips], roles: { ...state.roles } };
  switch (o.kind) {
    case "submitted":
      next.hours[o.at.getUTCHours()]!++;
      next.submissions++;
      if (o.ip) next.ips = [...next.ips.filter((ip) => ip !== o.ip), o.ip].slice(-MAX_KNOWN_IPS);
      next.requests = [...(state.requests ?? []), { id: o.requestId, at: o.at.toISOString() }].slice(
        -MAX_REMEMBERED_REQUESTS,
      );
      break;
    case "activated": {
      const before = state.roles[o.role];
      next.roles[o.role] = { count: (before?.count ?? 0) + 1, lastAt: o.at.toISOString() };
      next.recent = [...inWindow(state.recent, o.at, config.burst.window), o.at.toISOString()].slice(
        -config.burst.count,
      );
      break;
    }
    case "decided": {
      next.approvals = state.approvals + (o.approved ? 1 : 0);
      next.denials = state.denials + (o.approved ? 0 : 1);
      const total = next.approvals + next.denials;
      // Raised once; the rule may fire again only after the rate fell below the threshold.
      if (state.rubberStampRaised && next.approvals / total < config.rubberStamp.approveRate)
        next.rubberStampRaised = false;
      break;
    }
    case "denied":
      next.lastDeniedAt = o.at.toISOString();
      break;
    case "breakGlass":
    case "drift":
      break;
  }
  return next;
}

export interface Evaluation {
  alerts: AlertDraft[];
  /** The keys this event changed, with their new state (seq = the event's). */
  states: Map<string, KeyState>;
}

/** The state keys an event reads: those its observations learn into, and a decided request's requester. */
export function keysOf(event: AuditEvent): string[] {
  const keys = new Set<string>();
  for (const observation of observationsOf(event)) {
    keys.add(keyOf(observation));
    if (observation.kind === "decided") keys.add(`principal:${observation.requester}`);
  }
  return [...keys];
}

/**
 * One event through every enabled rule. `states` holds what is known of the event's keys (`keysOf`; absent:
 * nothing yet). A key whose seq is at or past the event's has learned from it already and is skipped: an event
 * is judged at most once per key. `raise`: false learns without alerting (an old event).
 */
export function evaluate(
  event: AuditEvent,
  states: ReadonlyMap<string, KeyState>,
  config: Pick<AlertsConfig, "rules">,
  raise = true,
): Evaluation {
  const lookups: Lookups = {
    submittedAt(requester, requestId) {
      const remembered = states.get(`principal:${requester}`)?.state.requests?.find((r) => r.id === requestId);
      return remembered ? new Date(remembered.at) : null;
    },
  };
  const alerts: AlertDraft[] = [];
  const changed = new Map<string, KeyState>();
  for (const observation of observationsOf(event)) {
    const key = keyOf(observation);
    const known = changed.get(key) ?? states.get(key);
    if (!changed.has(key) && known && known.seq >= event.seq) continue;
    const before = known?.state ?? emptyState();
    if (raise)
      for (const name of Object.keys(RULES) as AlertRule[]) {
        const ruleConfig = config.rules[name];
        if (!ruleConfig.enabled) continue;
        const draft = (RULES[name] as RuleFn<AlertRule>)(observation, before, ruleConfig as never, lookups);
        if (!draft) continue;
        alerts.push({ ...draft, severity: ruleConfig.severity, action: ruleConfig.action });
      }
    let after = learn(before, observation, config.rules);
    if (alerts.some((a) => a.rule === "rubberStamp" && a.principal === keyPrincipal(key)))
      after = { ...after, rubberStampRaised: true };
    if (alerts.some((a) => a.rule === "burst" && a.principal === keyPrincipal(key)))
      after = { ...after, burstAlertAt: observation.at.toISOString() };
    changed.set(key, { seq: event.seq, state: after });
  }
  return { alerts, states: changed };
}

function keyPrincipal(key: string): string | null {
  return key.startsWith("principal:") ? key.slice("principal:".length) : null;
}

/** The notification event name of a rule's alert (`alert.first_activation`, …). */
export function notificationEvent(rule: AlertRule): string {
  return `alert.${rule.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
}
