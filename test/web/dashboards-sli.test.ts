/** The dashboards' figures from hand-made request lists. */
import { describe, expect, it } from "vitest";
import {
  activationsCaption,
  activationsPerDay,
  activeElevations,
  breakGlassUse,
  coversWindow,
  formatPercent,
  formatSeconds,
  outcomesPerDay,
  pendingApprovals,
  percentile,
  standingVsEligible,
  successCaption,
  successRate,
  timeToElevate,
  timeToElevateCaption,
  timeToElevatePerDay,
  topBy,
  type Request,
} from "../../web/src/pages/dashboards/sli.js";

const NOW = Date.parse("2026-11-25T12:00:00Z");
const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();

let seq = 0;
/** A request submitted `ago` before NOW; activated `wait` later when given. */
function req(over: Partial<Request> & { ago?: number; wait?: number | null } = {}): Request {
  const { ago = HOUR, wait = null, ...rest } = over;
  const submitted = NOW - ago;
  seq++;
  return {
    id: `00000000-0000-7000-8000-${String(seq).padStart(12, "0")}`,
    role: "prod-db-admin",
    requester: "alice",
    state: wait === null ? "pending" : "active",
    breakGlass: false,
    reason: "incident",
    ticket: null,
    submittedAt: iso(submitted),
    activatedAt: wait === null ? null : iso(submitted + wait),
    expiresAt: wait === null ? null : iso(submitted + wait + 2 * HOUR),
    endedAt: null,
    endReason: null,
    endedBy: null,
    stageIndex: 0,
    stages: [],
    ...rest,
  };
}

describe("percentile (nearest rank)", () => {
  const cases: { values: number[]; q: number; want: number | null }[] = [
    { values: [], q: 0.5, want: null },
    { values: [7], q: 0.5, want: 7 },
    { values: [7], q: 0.95, want: 7 },
    { values: [4, 1, 3, 2], q: 0.5, want: 2 },
    { values: [1, 2, 3, 4, 5], q: 0.5, want: 3 },
    { values: Array.from({ length: 20 }, (_, i) => i + 1), q: 0.95, want: 19 },
    { values: Array.from({ length: 100 }, (_, i) => 100 - i), q: 0.95, want: 95 },
  ];
  it.each(cases)("$q of $values.length values → $want", ({ values, q, want }) => {
    expect(percentile(values, q)).toBe(want);
  });
});

describe("activations per day", () => {
  const requests = [
    req({ ago: 2 * HOUR, wait: MIN }), // today (2026-11-25)
    req({ ago: 3 * HOUR, wait: MIN }), // today
    req({ ago: 5 * DAY, wait: 10 * MIN, state: "expired" }), // 2026-11-20
    req({ ago: 5 * DAY + HOUR, wait: MIN, state: "revoked" }), // 2026-11-20
    req({ ago: 5 * DAY + 2 * HOUR, wait: MIN, state: "deactivated" }), // 2026-11-20
    req({ ago: 29 * DAY, wait: MIN, state: "expired" }), // 2026-10-27, first day of the window
    req({ ago: 31 * DAY, wait: MIN, state: "expired" }), // outside
    req({ ago: HOUR }), // pending: not an activation
    req({ ago: HOUR, state: "denied" }),
  ];
  const perDay = activationsPerDay(requests, NOW);

  it("has every day of the window, oldest first", () => {
    expect(perDay).toHaveLength(30);
    expect(perDay[0]!.day).toBe("2026-10-27");
    expect(perDay[29]!.day).toBe("2026-11-25");
  });
  it("counts activations on the day they happened", () => {
    const byDay = Object.fromEntries(perDay.filter((d) => d.activations > 0).map((d) => [d.day, d.activations]));
    expect(byDay).toEqual({ "2026-10-27": 1, "2026-11-20": 3, "2026-11-25": 2 });
  });
  it("says it in words", () => {
    expect(activationsCaption(perDay)).toBe("6 activations in the last 30 days, most on 2026-11-20 (3).");
    expect(activationsCaption(activationsPerDay([], NOW))).toBe("No activations in the last 30 days.");
    expect(activationsCaption(activationsPerDay([req({ wait: MIN })], NOW))).toBe(
      "1 activation in the last 30 days, most on 2026-11-25 (1).",
    );
  });
});

describe("top roles and requesters", () => {
  const requests = [
    req({ role: "db", requester: "bob" }),
    req({ role: "db", requester: "alice" }),
    req({ role: "db", requester: "bob" }),
    req({ role: "ssh", requester: "carol" }),
    req({ role: "ssh", requester: "bob" }),
    req({ role: "k8s", requester: "dave" }),
    req({ role: "old", requester: "erin", ago: 40 * DAY }),
  ];
  const cases: {
    key: "role" | "requester";
    limit: number;
    want: { name: string; count: number }[];
  }[] = [
    {
      key: "role",
      limit: 5,
      want: [
        { name: "db", count: 3 },
        { name: "ssh", count: 2 },
        { name: "k8s", count: 1 },
      ],
    },
    {
      key: "requester",
      limit: 2,
      want: [
        { name: "bob", count: 3 },
        { name: "alice", count: 1 },
      ],
    },
  ];
  it.each(cases)("by $key, top $limit, ties by name, window only", ({ key, limit, want }) => {
    expect(topBy(requests, key, NOW, limit)).toEqual(want);
  });
});

describe("standing vs eligible", () => {
  const cases: {
    standing: number;
    statuses: ("scheduled" | "active" | "ended")[];
    want: { standing: number; eligible: number; standingShare: number | null };
  }[] = [
    { standing: 0, statuses: [], want: { standing: 0, eligible: 0, standingShare: null } },
    {
      standing: 1,
      statuses: ["active", "active", "active", "scheduled", "ended"],
      want: { standing: 1, eligible: 3, standingShare: 0.25 },
    },
    { standing: 2, statuses: ["ended"], want: { standing: 2, eligible: 0, standingShare: 1 } },
  ];
  it.each(cases)("$standing standing, $statuses", ({ standing, statuses, want }) => {
    expect(
      standingVsEligible(
        standing,
        statuses.map((status) => ({ status })),
      ),
    ).toEqual(want);
  });
});

describe("on-call lists", () => {
  it("lists pending approvals oldest first with their age", () => {
    const a = req({ ago: 10 * MIN });
    const b = req({ ago: 3 * HOUR });
    const c = req({ ago: 40 * MIN });
    const done = req({ ago: 5 * HOUR, state: "denied" });
    const list = pendingApprovals([a, b, c, done], NOW);
    expect(list.map((p) => [p.request.id, p.ageMs])).toEqual([
      [b.id, 3 * HOUR],
      [c.id, 40 * MIN],
      [a.id, 10 * MIN],
    ]);
  });

  it("lists active elevations soonest to end first, leaving out the ones already past their end", () => {
    const soon = req({ ago: 3 * HOUR, wait: MIN, expiresAt: iso(NOW + 5 * MIN) });
    const later = req({ ago: HOUR, wait: MIN, expiresAt: iso(NOW + 2 * HOUR) });
    const open = req({ ago: HOUR, wait: MIN, expiresAt: null });
    const past = req({ ago: 5 * HOUR, wait: MIN, expiresAt: iso(NOW - MIN) });
    const ended = req({ ago: HOUR, wait: MIN, state: "expired" });
    const list = activeElevations([open, later, past, ended, soon], NOW);
    expect(list.map((a) => [a.request.id, a.leftMs])).toEqual([
      [soon.id, 5 * MIN],
      [later.id, 2 * HOUR],
      [open.id, null],
    ]);
  });

  it("lists break-glass use of the window, newest first", () => {
    const recent = req({ ago: HOUR, breakGlass: true, wait: 0 });
    const older = req({ ago: 20 * DAY, breakGlass: true, state: "expired", wait: 0 });
    const outside = req({ ago: 35 * DAY, breakGlass: true, state: "expired", wait: 0 });
    const normal = req({ ago: HOUR });
    expect(breakGlassUse([older, outside, normal, recent], NOW).map((r) => r.id)).toEqual([recent.id, older.id]);
  });
});

describe("time-to-elevate", () => {
  const requests = [
    req({ ago: 2 * HOUR, wait: 30_000 }), // today: 30 s
    req({ ago: 3 * HOUR, wait: 90_000, state: "expired" }), // today: 90 s
    req({ ago: 2 * DAY, wait: 10 * MIN, state: "deactivated" }), // 2026-11-23: 600 s
    req({ ago: 2 * DAY + HOUR, wait: 1000, state: "revoked" }), // 2026-11-23: 1 s
    req({ ago: 40 * DAY, wait: 5 * HOUR, state: "expired" }), // outside
    req({ ago: HOUR }), // pending
    req({ ago: HOUR, state: "failed" }), // never activated
  ];
  it("takes p50 and p95 over the activations of the window", () => {
    expect(timeToElevate(requests, NOW)).toEqual({ count: 4, p50: 30, p95: 600 });
    expect(timeToElevate([], NOW)).toEqual({ count: 0, p50: null, p95: null });
  });
  it("per day, with empty days as nulls", () => {
    const perDay = timeToElevatePerDay(requests, NOW);
    expect(perDay).toHaveLength(30);
    expect(perDay.find((d) => d.day === "2026-11-25")).toEqual({ day: "2026-11-25", count: 2, p50: 30, p95: 90 });
    expect(perDay.find((d) => d.day === "2026-11-23")).toEqual({ day: "2026-11-23", count: 2, p50: 1, p95: 600 });
    expect(perDay.find((d) => d.day === "2026-11-24")).toEqual({ day: "2026-11-24", count: 0, p50: null, p95: null });
  });
  it("says it in words", () => {
    expect(timeToElevateCaption(timeToElevate(requests, NOW), timeToElevatePerDay(requests, NOW))).toBe(
      "4 activations in the last 30 days: median 30 s, 95th percentile 10m 00s; slowest day 2026-11-23 (95th percentile 10m 00s).",
    );
    expect(timeToElevateCaption(timeToElevate([], NOW), timeToElevatePerDay([], NOW))).toBe(
      "No activations in the last 30 days, so no time-to-elevate.",
    );
  });
});

describe("elevation success rate", () => {
  const states: Request["state"][] = [
    "active",
    "expired",
    "expired",
    "deactivated",
    "revoked",
    "denied",
    "failed",
    "pending",
    "approved",
    "provisioning",
    "cancelled",
  ];
  const requests = [...states.map((state) => req({ state })), req({ state: "failed", ago: 45 * DAY })];

  it("is active-or-ended-normally out of all decided requests of the window", () => {
    expect(successRate(requests, NOW)).toEqual({
      decided: 7,
      succeeded: 4,
      rate: 4 / 7,
      byState: { active: 1, expired: 2, deactivated: 1, revoked: 1, denied: 1, failed: 1 },
    });
    expect(successRate([req()], NOW)).toEqual({ decided: 0, succeeded: 0, rate: null, byState: {} });
  });
  it("splits outcomes per day of submission", () => {
    const today = outcomesPerDay(requests, NOW).find((d) => d.day === "2026-11-25");
    expect(today).toEqual({ day: "2026-11-25", succeeded: 4, denied: 1, other: 2 });
  });
  it("says it in words", () => {
    expect(successCaption(successRate(requests, NOW))).toBe(
      "4 of 7 decided requests in the last 30 days were active or ended normally (57%); 1 revoked, 1 denied, 1 failed.",
    );
    expect(successCaption(successRate([], NOW))).toBe("No decided requests in the last 30 days.");
  });
});

describe("coverage of the window by a cut list", () => {
  const young = [req({ ago: HOUR }), req({ ago: 2 * DAY })];
  const reachesBack = [req({ ago: HOUR }), req({ ago: 31 * DAY })];
  const cases: { name: string; list: Request[]; limit: number; want: boolean }[] = [
    { name: "shorter than the limit", list: young, limit: 500, want: true },
    { name: "cut, oldest within the window", list: young, limit: 2, want: false },
    { name: "cut, oldest before the window", list: reachesBack, limit: 2, want: true },
  ];
  it.each(cases)("$name → $want", ({ list, limit, want }) => {
    expect(coversWindow(list, limit, NOW)).toBe(want);
  });
});

describe("words", () => {
  const seconds: [number | null, string][] = [
    [null, "—"],
    [0.85, "850 ms"],
    [2.34, "2.3 s"],
    [12.4, "12 s"],
    [200, "3m 20s"],
    [7500, "2h 05m"],
    [3 * 86400 + 4 * 3600, "3d 4h"],
  ];
  it.each(seconds)("%s s → %s", (value, want) => {
    expect(formatSeconds(value)).toBe(want);
  });
  const shares: [number | null, string][] = [
    [null, "—"],
    [0, "0%"],
    [4 / 7, "57%"],
    [0.995, "99.5%"],
    [0.9999, "99.9%"],
    [1, "100%"],
  ];
  it.each(shares)("%s → %s", (value, want) => {
    expect(formatPercent(value)).toBe(want);
  });
});
