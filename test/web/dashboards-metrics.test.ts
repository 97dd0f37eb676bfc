/** The dashboards' reading of `/metrics`: parsing, sums and histogram quantiles. */
import { describe, expect, it } from "vitest";
import {
  bucketCounts,
  histogramQuantile,
  metricFigures,
  quantileBeyondLastBound,
  parsePrometheus,
  readHistogram,
  sumByLabel,
  sumMetric,
} from "../../web/src/pages/dashboards/metrics.js";

// The shape prom-client writes (taken from a running server), with a few label sets filled in.
const SCRAPE = `# HELP stint_revocation_latency_seconds From the end of an activation to the privilege gone at the target.
# TYPE stint_revocation_latency_seconds histogram
stint_revocation_latency_seconds_bucket{le="0.5"} 2
stint_revocation_latency_seconds_bucket{le="1"} 6
stint_revocation_latency_seconds_bucket{le="2"} 8
stint_revocation_latency_seconds_bucket{le="5"} 10
stint_revocation_latency_seconds_bucket{le="+Inf"} 10
stint_revocation_latency_seconds_sum 11.5
stint_revocation_latency_seconds_count 10
# HELP stint_grants_unsettled Grants still provisioning or revoking at their target.
# TYPE stint_grants_unsettled gauge
stint_grants_unsettled{target="prod-db",state="revoking"} 2
stint_grants_unsettled{target="bastion",state="provisioning"} 1
# TYPE stint_grants_stuck gauge
stint_grants_stuck{target="prod-db",state="revoking"} 1
# TYPE stint_privilege_drift gauge
stint_privilege_drift{target="prod-db",kind="unexpected"} 3
stint_privilege_drift{target="bastion",kind="unexpected"} 4
stint_privilege_drift{target="bastion",kind="missing"} 1
# TYPE stint_sessions_live gauge
stint_sessions_live{kind="ssh"} 2
stint_sessions_live{kind="postgres"} 1
# TYPE stint_session_kill_latency_seconds histogram
stint_session_kill_latency_seconds_bucket{le="0.01",cause="kill"} 0
stint_session_kill_latency_seconds_bucket{le="0.1",cause="kill"} 1
stint_session_kill_latency_seconds_bucket{le="+Inf",cause="kill"} 2
stint_session_kill_latency_seconds_sum{cause="kill"} 0.3
stint_session_kill_latency_seconds_count{cause="kill"} 2
stint_session_kill_latency_seconds_bucket{le="0.01",cause="expired"} 1
stint_session_kill_latency_seconds_bucket{le="0.1",cause="expired"} 2
stint_session_kill_latency_seconds_bucket{le="+Inf",cause="expired"} 2
stint_session_kill_latency_seconds_sum{cause="expired"} 0.05
stint_session_kill_latency_seconds_count{cause="expired"} 2
# TYPE stint_outbox_depth gauge
stint_outbox_depth{kind="grant.revoke"} 4
stint_outbox_depth{kind="notify.email"} 1
stint_outbox_oldest_age_seconds 12.5
stint_outbox_dead_letters_total 0
`;

describe("parsePrometheus", () => {
  const cases: { line: string; want: { name: string; labels: Record<string, string>; value: number }[] }[] = [
    { line: "up 1", want: [{ name: "up", labels: {}, value: 1 }] },
    { line: "# HELP up whether", want: [] },
    { line: "", want: [] },
    { line: 'a{x="1",y="two"} 3.5', want: [{ name: "a", labels: { x: "1", y: "two" }, value: 3.5 }] },
    {
      line: 'a{x="q\\"uote",y="back\\\\slash"} 1',
      want: [{ name: "a", labels: { x: 'q"uote', y: "back\\slash" }, value: 1 }],
    },
    { line: 'a{x="line\\nbreak"} 2', want: [{ name: "a", labels: { x: "line\nbreak" }, value: 2 }] },
    { line: 'a{x="has } and , inside"} 4', want: [{ name: "a", labels: { x: "has } and , inside" }, value: 4 }] },
    { line: 'b{le="+Inf"} 7 1700000000000', want: [{ name: "b", labels: { le: "+Inf" }, value: 7 }] },
    { line: "c 1e3", want: [{ name: "c", labels: {}, value: 1000 }] },
    { line: "d +Inf", want: [{ name: "d", labels: {}, value: Infinity }] },
    { line: 'broken{x="unterminated} 1', want: [] },
    { line: "novalue", want: [] },
  ];
  it.each(cases)("$line", ({ line, want }) => {
    expect(parsePrometheus(line)).toEqual(want);
  });

  it("reads NaN as NaN", () => {
    expect(parsePrometheus("e NaN")[0]?.value).toBeNaN();
  });
});

describe("sums", () => {
  const samples = parsePrometheus(SCRAPE);
  it("adds a metric across label sets, optionally matching labels", () => {
    expect(sumMetric(samples, "stint_sessions_live")).toBe(3);
    expect(sumMetric(samples, "stint_privilege_drift", { kind: "unexpected" })).toBe(7);
    expect(sumMetric(samples, "stint_privilege_drift", { kind: "missing", target: "bastion" })).toBe(1);
    expect(sumMetric(samples, "stint_not_there")).toBe(0);
  });
  it("groups by a label, largest first", () => {
    expect(sumByLabel(samples, "stint_privilege_drift", "target", { kind: "unexpected" })).toEqual([
      { key: "bastion", value: 4 },
      { key: "prod-db", value: 3 },
    ]);
  });
});

describe("histograms", () => {
  const samples = parsePrometheus(SCRAPE);
  it("reads cumulative buckets, merging label sets", () => {
    expect(readHistogram(samples, "stint_session_kill_latency_seconds")).toEqual({
      buckets: [
        { le: 0.01, count: 1 },
        { le: 0.1, count: 3 },
        { le: Infinity, count: 4 },
      ],
      count: 4,
      sum: 0.35,
    });
    expect(readHistogram(samples, "stint_missing_histogram")).toBeNull();
  });

  const revocation = readHistogram(samples, "stint_revocation_latency_seconds");
  const quantiles: { q: number; want: number }[] = [
    // rank 5 of 10 falls in (0.5, 1] holding ranks 3..6: 0.5 + 0.5 × (5−2)/4
    { q: 0.5, want: 0.875 },
    // rank 9.5 falls in (2, 5] holding ranks 9..10: 2 + 3 × (9.5−8)/2
    { q: 0.95, want: 4.25 },
    // rank 1 falls in the first bucket, which starts at 0: 0.5 × 1/2
    { q: 0.1, want: 0.25 },
  ];
  it.each(quantiles)("estimates the $q quantile by linear interpolation", ({ q, want }) => {
    expect(histogramQuantile(revocation, q)).toBeCloseTo(want, 10);
  });

  it("answers the highest finite bound for a rank in the +Inf bucket, and null when empty", () => {
    const kill = readHistogram(samples, "stint_session_kill_latency_seconds");
    expect(histogramQuantile(kill, 0.95)).toBe(0.1);
    expect(quantileBeyondLastBound(kill, 0.95)).toBe(true);
    expect(quantileBeyondLastBound(kill, 0.5)).toBe(false);
    expect(quantileBeyondLastBound(revocation, 0.95)).toBe(false);
    const empty = readHistogram(parsePrometheus('x_bucket{le="1"} 0\nx_bucket{le="+Inf"} 0\nx_sum 0\nx_count 0'), "x");
    expect(histogramQuantile(empty, 0.5)).toBeNull();
    expect(histogramQuantile(null, 0.5)).toBeNull();
  });
});

describe("bucketCounts", () => {
  it("turns cumulative buckets into observations per bucket", () => {
    const h = readHistogram(parsePrometheus(SCRAPE), "stint_revocation_latency_seconds");
    expect(bucketCounts(h)).toEqual([
      { upTo: 0.5, count: 2 },
      { upTo: 1, count: 4 },
      { upTo: 2, count: 2 },
      { upTo: 5, count: 2 },
      { upTo: Infinity, count: 0 },
    ]);
    expect(bucketCounts(null)).toEqual([]);
  });
});

describe("metricFigures", () => {
  it("reads every figure the dashboards show", () => {
    const f = metricFigures(parsePrometheus(SCRAPE));
    expect(f).toMatchObject({
      standing: 7,
      missing: 1,
      grantsUnsettled: 3,
      grantsStuck: 1,
      sessionsLive: 3,
      outboxDepth: 5,
      outboxOldestAgeSeconds: 12.5,
      outboxDeadLetters: 0,
    });
    expect(f.revocation?.count).toBe(10);
    expect(f.sessionKill?.count).toBe(4);
  });

  it("reads a fresh server's scrape (families declared, no label sets yet) as zeros", () => {
    const fresh = `# HELP stint_privilege_drift Open drift findings
# TYPE stint_privilege_drift gauge
# TYPE stint_sessions_live gauge
# TYPE stint_session_kill_latency_seconds histogram
stint_outbox_oldest_age_seconds 0
`;
    const f = metricFigures(parsePrometheus(fresh));
    expect(f).toMatchObject({ standing: 0, sessionsLive: 0, sessionKill: null, revocation: null });
  });
});
