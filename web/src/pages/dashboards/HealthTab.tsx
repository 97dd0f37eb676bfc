/**
 * Health view: time-to-elevate and elevation success from the requests; revocation latency, session
 * kill latency, live sessions, unsettled grants and the outbox from the answering node's /metrics.
 */
import { AreaChart, BarChart, LineChart } from "./svg-charts.js";
import { Alert, SimpleGrid, Stack, Text } from "@mantine/core";
import { bucketCounts, histogramQuantile, quantileBeyondLastBound, type Histogram } from "./metrics.js";
import {
  formatPercent,
  formatSeconds,
  outcomesPerDay,
  successCaption,
  successRate,
  timeToElevate,
  timeToElevateCaption,
  timeToElevatePerDay,
  WINDOW_DAYS,
} from "./sli.js";
import { ChartCard, Stat, type DashboardData } from "./shared.js";

/** "≈ 875 ms", or "over 100 ms" when the quantile lies in the +Inf bucket. */
function estimate(histogram: Histogram | null, q: number): string {
  const value = formatSeconds(histogramQuantile(histogram, q));
  return quantileBeyondLastBound(histogram, q) ? `over ${value}` : `≈ ${value}`;
}

function median(histogram: Histogram | null): string {
  const value = formatSeconds(histogramQuantile(histogram, 0.5));
  return quantileBeyondLastBound(histogram, 0.5) ? `> ${value}` : value;
}

function latencyHint(histogram: Histogram | null, what: string): string {
  if (!histogram || histogram.count === 0) return `no ${what} measured since this node started`;
  return `95th percentile ${estimate(histogram, 0.95)}; ${histogram.count} ${what} since this node started`;
}

function latencyCaption(histogram: Histogram | null, what: string): string {
  if (!histogram || histogram.count === 0) return `No ${what} measured since this node started.`;
  const most = bucketCounts(histogram).reduce((a, b) => (b.count > a.count ? b : a));
  return (
    `${histogram.count} ${what} since this node started: median ${estimate(histogram, 0.5)}, ` +
    `95th percentile ${estimate(histogram, 0.95)} (estimated from buckets); ` +
    `most took ${bucketLabel(most.upTo)}.`
  );
}

function bucketLabel(upTo: number): string {
  return upTo === Infinity ? "longer than the last bound" : `up to ${formatSeconds(upTo)}`;
}

export function HealthTab({ data }: { data: DashboardData }) {
  const now = data.loadedAt;
  const requests = data.requests ?? [];
  const tte = timeToElevate(requests, now);
  const ttePerDay = timeToElevatePerDay(requests, now);
  const success = successRate(requests, now);
  const outcomes = outcomesPerDay(requests, now);
  const m = data.metrics;
  const revocation = m?.revocation ?? null;
  const kill = m?.sessionKill ?? null;

  return (
    <Stack>
      <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
        <Stat
          label="Time-to-elevate"
          value={formatSeconds(tte.p50)}
          hint={`median; 95th percentile ${formatSeconds(tte.p95)} (${tte.count} in ${WINDOW_DAYS} days)`}
        />
        <Stat
          label="Elevation success"
          value={formatPercent(success.rate)}
          tone={success.rate !== null && success.rate < 0.9 ? "orange" : undefined}
          hint={`${success.succeeded} of ${success.decided} decided requests`}
        />
        <Stat
          label="Revocation latency"
          value={m ? median(revocation) : "—"}
          hint={m ? `median; ${latencyHint(revocation, "revocations")}` : undefined}
        />
        <Stat
          label="Session kill latency"
          value={m ? median(kill) : "—"}
          hint={m ? `median; ${latencyHint(kill, "kills")}` : undefined}
        />
        <Stat label="Live sessions" value={m ? m.sessionsLive : "—"} hint="brokered sessions open on this node" />
        <Stat
          label="Grants unsettled"
          value={m ? m.grantsUnsettled : "—"}
          tone={m && m.grantsStuck > 0 ? "red" : undefined}
          hint={m ? `provisioning or revoking; ${m.grantsStuck} retrying after a failure` : undefined}
        />
        <Stat
          label="Outbox"
          value={m ? m.outboxDepth : "—"}
          tone={m && m.outboxOldestAgeSeconds > 300 ? "orange" : undefined}
          hint={
            m
              ? `jobs to do; ${m.outboxOldestAgeSeconds > 0 ? `oldest waiting ${formatSeconds(m.outboxOldestAgeSeconds)}` : "none waiting"}; ${m.outboxDeadLetters} dead letters`
              : undefined
          }
        />
        <Stat
          label="Missing privileges"
          value={m ? m.missing : "—"}
          tone={m && m.missing > 0 ? "orange" : undefined}
          hint="activations whose privilege is absent at the target"
        />
      </SimpleGrid>

      {data.metricsError ? (
        <Alert color="yellow" title="Metrics unavailable">
          {data.metricsError}
        </Alert>
      ) : null}

      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <ChartCard title="Time-to-elevate per day" caption={timeToElevateCaption(tte, ttePerDay)}>
          <LineChart
            h={220}
            data={ttePerDay.map((d) => ({ label: d.day.slice(5), p50: d.p50, p95: d.p95 }))}
            dataKey="label"
            series={[
              { name: "p50", label: "Median", color: "indigo.7" },
              { name: "p95", label: "95th percentile", color: "orange.8" },
            ]}
            connectNulls
            withLegend
            valueFormatter={(v) => formatSeconds(v)}
            yAxisProps={{ width: 56 }}
            xAxisProps={{ interval: "preserveStartEnd", minTickGap: 16 }}
          />
        </ChartCard>

        <ChartCard title="Outcomes per day" caption={successCaption(success)}>
          <AreaChart
            h={220}
            type="stacked"
            data={outcomes.map((d) => ({ ...d, label: d.day.slice(5) }))}
            dataKey="label"
            series={[
              { name: "succeeded", label: "Active or ended normally", color: "teal.8" },
              { name: "denied", label: "Denied", color: "orange.7" },
              { name: "other", label: "Revoked or failed", color: "red.8" },
            ]}
            withLegend
            withDots={false}
            yAxisProps={{ allowDecimals: false, width: 32 }}
            xAxisProps={{ interval: "preserveStartEnd", minTickGap: 16 }}
          />
        </ChartCard>

        <ChartCard title="Revocation latency" caption={latencyCaption(revocation, "revocations")}>
          <LatencyBars histogram={revocation} />
        </ChartCard>

        <ChartCard title="Session kill latency" caption={latencyCaption(kill, "kills")}>
          <LatencyBars histogram={kill} />
        </ChartCard>
      </SimpleGrid>
    </Stack>
  );
}

function LatencyBars({ histogram }: { histogram: Histogram | null }) {
  if (!histogram || histogram.count === 0) return <Text c="dimmed">Nothing measured yet.</Text>;
  const bars = bucketCounts(histogram).map((b) => ({
    bucket: b.upTo === Infinity ? "more" : `≤ ${formatSeconds(b.upTo)}`,
    count: b.count,
  }));
  return (
    <BarChart
      h={200}
      data={bars}
      dataKey="bucket"
      series={[{ name: "count", label: "Observations", color: "indigo.7" }]}
      yAxisProps={{ allowDecimals: false, width: 32 }}
      xAxisProps={{ interval: "preserveStartEnd" }}
    />
  );
}
