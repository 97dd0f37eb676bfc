/**
 * Anomaly rules, one table row per rule (issue 16, acceptance 4): a synthetic history on an injected clock is
 * learned from (raising nothing), then the normal case raises nothing from that rule and the anomaly raises
 * exactly one alert of it; the anomaly evaluated again (reprocessing) raises nothing.
 */
import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../audit/audit.types.js";
import { evaluate, notificationEvent, observationsOf } from "./alerts.rules.js";
import { alertsConfigSchema, type AlertDraft, type AlertRule, type KeyState } from "./alerts.types.js";

const config = alertsConfigSchema.parse({});
const T0 = new Date("2026-03-02T09:00:00Z").getTime();
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

let seq = 0;
let ids = 0;
function event(partial: Partial<AuditEvent> & Pick<AuditEvent, "action" | "actor">, at: number): AuditEvent {
  seq++;
  return {
    seq,
    id: `00000000-0000-7000-8000-${String(++ids).padStart(12, "0")}`,
    time: new Date(at).toISOString(),
    actorId: null,
    subject: null,
    outcome: "success",
    reason: null,
    correlationId: null,
    sourceIp: null,
    userAgent: null,
    details: {},
    prevHash: "",
    hash: "",
    ...partial,
  };
}

const submitted = (user: string, role: string, at: number, ip = "10.0.0.1", req = `r${seq + 1}`) =>
  event({ action: "request.submitted", actor: user, subject: `request:${req}`, sourceIp: ip, details: { role } }, at);
const activated = (user: string, role: string, at: number, req = `r${seq + 1}`) =>
  event(
    {
      action: "request.activated",
      actor: "system:system",
      subject: `request:${req}`,
      details: { role, requester: user },
    },
    at,
  );
const approved = (approver: string, requester: string, at: number, req = `r${seq + 1}`) =>
  event(
    {
      action: "request.approved",
      actor: approver,
      subject: `request:${req}`,
      details: { role: "db-admin", requester, stage: 1 },
    },
    at,
  );
const denied = (approver: string, requester: string, at: number, req = `r${seq + 1}`) =>
  event(
    { action: "request.denied", actor: approver, subject: `request:${req}`, details: { role: "db-admin", requester } },
    at,
  );
const breakGlassUsed = (user: string, at: number, req = `r${seq + 1}`) =>
  event(
    {
      action: "breakglass.used",
      actor: user,
      subject: `request:${req}`,
      reason: "primary is down",
      details: { role: "emergency" },
    },
    at,
  );

/** Folds events through `evaluate`, keeping the states as the service does; `raise` false only learns. */
function run(events: AuditEvent[], states = new Map<string, KeyState>(), raise = true) {
  const alerts: { draft: AlertDraft; eventId: string }[] = [];
  for (const e of events) {
    const result = evaluate(e, states, config, raise);
    for (const [key, state] of result.states) states.set(key, state);
    alerts.push(...result.alerts.map((draft) => ({ draft, eventId: e.id })));
  }
  return { alerts, states };
}

interface Case {
  rule: AlertRule;
  /** Learned from (no alert) before the case. */
  history: () => AuditEvent[];
  /** The normal case's own history, when it differs. */
  normalHistory?: () => AuditEvent[];
  normal: () => AuditEvent;
  anomaly: () => AuditEvent;
}

const CASES: Case[] = [
  {
    rule: "firstActivation",
    history: () => [activated("alice", "db-read", T0)],
    normal: () => activated("alice", "db-read", T0 + DAY),
    anomaly: () => activated("alice", "db-admin", T0 + DAY),
  },
  {
    rule: "unusualHours",
    // Twelve requests between 09:00 and 11:00 UTC on twelve days.
    history: () => Array.from({ length: 12 }, (_, i) => submitted("alice", "db-read", T0 + i * DAY + (i % 3) * HOUR)),
    normal: () => submitted("alice", "db-read", T0 + 13 * DAY + 90 * MIN),
    anomaly: () => submitted("alice", "db-read", T0 + 13 * DAY - 6 * HOUR),
  },
  {
    rule: "newIp",
    history: () => Array.from({ length: 4 }, (_, i) => submitted("alice", "db-read", T0 + i * DAY, "10.0.0.1")),
    normal: () => submitted("alice", "db-read", T0 + 5 * DAY, "10.0.0.1"),
    anomaly: () => submitted("alice", "db-read", T0 + 5 * DAY, "203.0.113.9"),
  },
  {
    rule: "burst",
    // Four activations in four minutes; the threshold is five in ten minutes.
    history: () => Array.from({ length: 4 }, (_, i) => activated("alice", "db-read", T0 + i * MIN)),
    normal: () => activated("alice", "db-read", T0 + 20 * MIN),
    anomaly: () => activated("alice", "db-read", T0 + 5 * MIN),
  },
  {
    rule: "fastApproval",
    history: () => [submitted("alice", "db-admin", T0, "10.0.0.1", "req-fast")],
    normal: () => approved("bob", "alice", T0 + 5 * MIN, "req-fast"),
    anomaly: () => approved("bob", "alice", T0 + 3000, "req-fast"),
  },
  {
    rule: "rubberStamp",
    // 19 approvals: the 20th decision is an approval (20 of 20) or, normally, after a denial (19 of 20).
    history: () => Array.from({ length: 19 }, (_, i) => approved("bob", "alice", T0 + i * HOUR)),
    normalHistory: () => [
      ...Array.from({ length: 18 }, (_, i) => approved("bob", "alice", T0 + i * HOUR)),
      denied("bob", "alice", T0 + 18 * HOUR),
    ],
    normal: () => approved("bob", "alice", T0 + 20 * HOUR),
    anomaly: () => approved("bob", "alice", T0 + 20 * HOUR),
  },
  {
    rule: "dormantEligibility",
    history: () => [activated("alice", "db-read", T0)],
    normal: () => activated("alice", "db-read", T0 + 30 * DAY),
    anomaly: () => activated("alice", "db-read", T0 + 120 * DAY),
  },
  {
    rule: "breakGlass",
    history: () => [],
    normal: () => activated("alice", "db-read", T0),
    anomaly: () => breakGlassUsed("alice", T0),
  },
  {
    rule: "deniedThenBreakGlass",
    history: () => [denied("bob", "alice", T0)],
    normal: () => breakGlassUsed("alice", T0 + 2 * HOUR),
    anomaly: () => breakGlassUsed("alice", T0 + 10 * MIN),
  },
  {
    rule: "drift",
    history: () => [],
    normal: () =>
      event({ action: "drift.resolved", actor: "system:reconcile", subject: "target:pg", details: { role: "r" } }, T0),
    anomaly: () =>
      event(
        {
          action: "drift.detected",
          actor: "system:reconcile",
          subject: "target:pg",
          reason: "mallory holds db-admin at pg without an activation",
          details: { role: "db-admin", login: "mallory" },
        },
        T0,
      ),
  },
];

describe("anomaly rules: one table row per rule", () => {
  it("the table covers every rule", () => {
    expect(CASES.map((c) => c.rule).sort()).toEqual([...Object.keys(config.rules)].sort());
  });

  for (const c of CASES) {
    describe(c.rule, () => {
      it("does not fire on the normal case", () => {
        const { states } = run((c.normalHistory ?? c.history)(), new Map(), false);
        const normal = c.normal();
        const { alerts } = run([normal], states, true);
        expect(alerts.filter((a) => a.draft.rule === c.rule)).toEqual([]);
      });

      it("fires exactly once on the anomaly, and not again when the event is processed again", () => {
        const { states } = run(c.history(), new Map(), false);
        const anomaly = c.anomaly();
        const first = run([anomaly], states, true);
        const mine = first.alerts.filter((a) => a.draft.rule === c.rule);
        expect(mine).toHaveLength(1);
        expect(mine[0]!.eventId).toBe(anomaly.id);
        expect(mine[0]!.draft.title.length).toBeGreaterThan(0);
        expect(mine[0]!.draft.severity).toBe(config.rules[c.rule].severity);
        // Reprocessing (same event, the states it left): nothing at all.
        expect(run([anomaly], first.states, true).alerts).toEqual([]);
      });

      it("raises nothing when the rule is turned off", () => {
        const off = alertsConfigSchema.parse({ rules: { [c.rule]: { enabled: false } } });
        const states = new Map<string, KeyState>();
        for (const e of c.history()) for (const [k, s] of evaluate(e, states, off, false).states) states.set(k, s);
        const { alerts } = evaluate(c.anomaly(), states, off);
        expect(alerts.filter((a) => a.rule === c.rule)).toEqual([]);
      });
    });
  }
});

describe("anomaly rules: thresholds and once-only", () => {
  it("a burst alerts once per window, however many more activations follow in it", () => {
    const { alerts } = run(Array.from({ length: 9 }, (_, i) => activated("carol", "db-read", T0 + i * MIN)));
    expect(alerts.filter((a) => a.draft.rule === "burst")).toHaveLength(1);
  });

  it("a rubber stamp alerts once until the approver's rate drops below the threshold", () => {
    const events = Array.from({ length: 30 }, (_, i) => approved("dave", "alice", T0 + i * HOUR));
    expect(run(events).alerts.filter((a) => a.draft.rule === "rubberStamp")).toHaveLength(1);
  });

  it("unusual hours need a history: a new user's 03:00 request is learned, not flagged", () => {
    const { alerts } = run([submitted("erin", "db-read", T0 - 6 * HOUR)]);
    expect(alerts.filter((a) => a.draft.rule === "unusualHours" || a.draft.rule === "newIp")).toEqual([]);
  });

  it("thresholds come from the configuration", () => {
    const strict = alertsConfigSchema.parse({ rules: { burst: { count: 2, window: "1m" } } });
    const states = new Map<string, KeyState>();
    const raised: string[] = [];
    for (const e of [activated("fay", "x", T0), activated("fay", "x", T0 + 30_000)]) {
      const result = evaluate(e, states, strict);
      for (const [k, s] of result.states) states.set(k, s);
      raised.push(...result.alerts.map((a) => a.rule));
    }
    expect(raised.filter((r) => r === "burst")).toHaveLength(1);
  });

  it("automatic approvals and timeouts are no approver's decision; a system actor's events teach nothing", () => {
    const auto = event(
      {
        action: "request.approved",
        actor: "alice",
        subject: "request:r",
        details: { role: "x", requester: "alice", automatic: true },
      },
      T0,
    );
    expect(observationsOf(auto)).toEqual([]);
    const timeout = event(
      {
        action: "request.denied",
        actor: "system:system",
        subject: "request:r",
        details: { role: "x", requester: "alice", timeout: true },
      },
      T0,
    );
    expect(observationsOf(timeout).map((o) => o.kind)).toEqual(["denied"]);
    const refused = event({ action: "request.submitted", actor: "alice", outcome: "denied", subject: "request:r" }, T0);
    expect(observationsOf(refused)).toEqual([]);
  });

  it("a revoke action is refused for drift (no activation to end)", () => {
    expect(alertsConfigSchema.safeParse({ rules: { drift: { action: "revoke" } } }).success).toBe(false);
    expect(alertsConfigSchema.safeParse({ rules: { breakGlass: { action: "revoke" } } }).success).toBe(true);
    expect(alertsConfigSchema.safeParse({ rules: { burst: { window: "soon" } } }).success).toBe(false);
  });

  it("notification event names are dotted snake case", () => {
    expect(notificationEvent("deniedThenBreakGlass")).toBe("alert.denied_then_break_glass");
  });
});
