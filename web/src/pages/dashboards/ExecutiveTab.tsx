/** Executive view: standing vs eligible access, activations over time, top roles and requesters. */
import { BarsList } from "@mantine/charts";
import { BarChart, DonutChart } from "./svg-charts.js";
import { Alert, SimpleGrid, Stack, Text } from "@mantine/core";
import { activationsCaption, activationsPerDay, formatPercent, standingVsEligible, topBy, WINDOW_DAYS } from "./sli.js";
import { ChartCard, Stat, type DashboardData } from "./shared.js";

function listCaption(what: string, top: { name: string; count: number }[]): string {
  if (top.length === 0) return `No requests in the last ${WINDOW_DAYS} days.`;
  return (
    `Top ${what} by requests in the last ${WINDOW_DAYS} days: ` +
    top.map((t) => `${t.name} (${t.count})`).join(", ") +
    "."
  );
}

export function ExecutiveTab({ data }: { data: DashboardData }) {
  const now = data.loadedAt;
  const requests = data.requests ?? [];
  const split =
    data.metrics && data.eligibilities ? standingVsEligible(data.metrics.standing, data.eligibilities) : null;
  const perDay = activationsPerDay(requests, now);
  const total = perDay.reduce((n, d) => n + d.activations, 0);
  const topRoles = topBy(requests, "role", now);
  const topRequesters = topBy(requests, "requester", now);
  const standingTargets = data.metrics?.standingByTarget ?? [];

  return (
    <Stack>
      <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
        <Stat
          label="Standing access"
          value={data.metrics ? data.metrics.standing : "—"}
          tone={data.metrics && data.metrics.standing > 0 ? "red" : "green"}
          hint="privileges found at targets without an activation"
        />
        <Stat
          label="Eligible assignments"
          value={split ? split.eligible : "—"}
          hint="in force now, activated on demand"
        />
        <Stat label="Activations" value={data.requests ? total : "—"} hint={`last ${WINDOW_DAYS} days`} />
        <Stat
          label="Standing share"
          value={split ? formatPercent(split.standingShare) : "—"}
          tone={split && split.standing > 0 ? "red" : undefined}
          hint="of privileged access (goal: 0%)"
        />
      </SimpleGrid>

      <SimpleGrid cols={{ base: 1, md: 2 }}>
        {split ? (
          <ChartCard
            title="Standing vs eligible"
            caption={
              split.standingShare === null
                ? "No standing privileges found and no eligible assignments in force."
                : `${split.standing} standing ${split.standing === 1 ? "privilege" : "privileges"} found at targets against ` +
                  `${split.eligible} eligible ${split.eligible === 1 ? "assignment" : "assignments"}: ` +
                  `${formatPercent(split.standingShare)} of privileged access is standing` +
                  (standingTargets.length
                    ? ` (${standingTargets.map((t) => `${t.key}: ${t.value}`).join(", ")}).`
                    : ".")
            }
          >
            <DonutChart
              mx="auto"
              size={180}
              thickness={28}
              withLabels
              labelsType="value"
              chartLabel={formatPercent(split.standingShare)}
              data={[
                { name: "Standing", value: split.standing, color: "red.8" },
                { name: "Eligible", value: split.eligible, color: "indigo.7" },
              ]}
            />
          </ChartCard>
        ) : (
          <Alert color="yellow" title="Standing vs eligible unavailable">
            {data.metricsError ?? data.eligibilitiesError ?? "Not loaded."}
          </Alert>
        )}

        <ChartCard title="Activations per day" caption={activationsCaption(perDay)}>
          <BarChart
            h={200}
            data={perDay.map((d) => ({ ...d, label: d.day.slice(5) }))}
            dataKey="label"
            series={[{ name: "activations", label: "Activations", color: "indigo.7" }]}
            tickLine="y"
            yAxisProps={{ allowDecimals: false, width: 32 }}
            xAxisProps={{ interval: "preserveStartEnd", minTickGap: 16 }}
          />
        </ChartCard>

        <ChartCard title="Top roles" caption={listCaption("roles", topRoles)}>
          {topRoles.length ? (
            <BarsList
              data={topRoles.map((t) => ({ name: t.name, value: t.count }))}
              barsLabel="Role"
              valueLabel="Requests"
              barColor="indigo.0"
              barTextColor="indigo.9"
            />
          ) : (
            <Text c="dimmed">Nothing yet.</Text>
          )}
        </ChartCard>

        <ChartCard title="Top requesters" caption={listCaption("requesters", topRequesters)}>
          {topRequesters.length ? (
            <BarsList
              data={topRequesters.map((t) => ({ name: t.name, value: t.count }))}
              barsLabel="Requester"
              valueLabel="Requests"
              barColor="teal.0"
              barTextColor="teal.9"
            />
          ) : (
            <Text c="dimmed">Nothing yet.</Text>
          )}
        </ChartCard>
      </SimpleGrid>
    </Stack>
  );
}
