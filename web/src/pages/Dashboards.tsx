/**
 * Dashboards for admin, security and auditors: the SLIs of DESIGN.md §4 in three views — Executive
 * (standing vs eligible access, activations, top roles and requesters), On-call (pending approvals,
 * active elevations, break-glass) and Health (time-to-elevate, success rate, revocation and kill
 * latency, live sessions, grants and outbox). Data comes from the public API only: the newest 500
 * activation requests, the eligibilities, and /metrics; the figures are computed by the pure
 * functions of ./dashboards/sli.ts and ./dashboards/metrics.ts.
 */
import "@mantine/charts/styles.css";
import { Alert, Button, Group, Stack, Tabs, Text, Title } from "@mantine/core";
import { useCallback, useEffect, useState } from "react";
import type { EligibilityDto } from "../../../src/contract/catalog-api.js";
import type { ActivationRequestDto } from "../../../src/contract/requests.js";
import { api, ApiError } from "../api.js";
import { ExecutiveTab } from "./dashboards/ExecutiveTab.js";
import { HealthTab } from "./dashboards/HealthTab.js";
import { metricFigures, parsePrometheus } from "./dashboards/metrics.js";
import { OnCallTab } from "./dashboards/OnCallTab.js";
import type { DashboardData } from "./dashboards/shared.js";
import { coversWindow, dayKey, WINDOW_DAYS } from "./dashboards/sli.js";

const REQUEST_LIMIT = 500;
const REFRESH_MS = 60_000;

function message(reason: unknown): string {
  if (reason instanceof ApiError) return reason.message;
  return "The server could not be reached.";
}

async function loadAll(): Promise<DashboardData> {
  const [requests, eligibilities, metrics] = await Promise.allSettled([
    api<{ items: ActivationRequestDto[] }>("GET", `/v1/activation-requests?scope=all&limit=${REQUEST_LIMIT}`),
    api<{ items: EligibilityDto[] }>("GET", "/v1/eligibilities"),
    api<string>("GET", "/metrics"),
  ]);
  return {
    requests: requests.status === "fulfilled" ? requests.value.items : null,
    requestsError: requests.status === "rejected" ? message(requests.reason) : null,
    requestLimit: REQUEST_LIMIT,
    eligibilities: eligibilities.status === "fulfilled" ? eligibilities.value.items : null,
    eligibilitiesError: eligibilities.status === "rejected" ? message(eligibilities.reason) : null,
    metrics:
      metrics.status === "fulfilled" && typeof metrics.value === "string"
        ? metricFigures(parsePrometheus(metrics.value))
        : null,
    metricsError:
      metrics.status === "rejected"
        ? message(metrics.reason)
        : typeof metrics.value === "string"
          ? null
          : "The metrics endpoint did not answer in the Prometheus text format.",
    loadedAt: Date.now(),
  };
}

export default function Dashboards() {
  const [data, setData] = useState<DashboardData | null>(null);
  const [loading, setLoading] = useState(false);
  const [tab, setTab] = useState<string | null>("executive");

  const load = useCallback(async () => {
    setLoading(true);
    try {
      setData(await loadAll());
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [load]);

  const partial =
    data?.requests && !coversWindow(data.requests, data.requestLimit, data.loadedAt)
      ? dayKey(Math.min(...data.requests.map((r) => Date.parse(r.submittedAt))))
      : null;

  return (
    <Stack>
      <Group justify="space-between" wrap="wrap">
        <Title order={1} size="h2">
          Dashboards
        </Title>
        <Group gap="sm">
          {data ? (
            <Text size="sm" c="dimmed" aria-live="polite">
              Updated {new Date(data.loadedAt).toLocaleTimeString()}
            </Text>
          ) : null}
          <Button variant="default" size="xs" onClick={() => void load()} loading={loading}>
            Refresh
          </Button>
        </Group>
      </Group>

      {data?.requestsError ? (
        <Alert color="red" title="Activation requests could not be loaded">
          {data.requestsError}
        </Alert>
      ) : null}
      {data?.eligibilitiesError ? (
        <Alert color="yellow" title="Eligibilities could not be loaded">
          {data.eligibilitiesError}
        </Alert>
      ) : null}
      {partial ? (
        <Alert color="yellow" title={`Less than ${WINDOW_DAYS} days`}>
          The figures use the newest {data!.requestLimit} requests, which reach back to {partial} only.
        </Alert>
      ) : null}

      {!data ? (
        <Text c="dimmed">Loading…</Text>
      ) : (
        <Tabs value={tab} onChange={setTab} keepMounted={false}>
          <Tabs.List>
            <Tabs.Tab value="executive">Executive</Tabs.Tab>
            <Tabs.Tab value="oncall">On-call</Tabs.Tab>
            <Tabs.Tab value="health">Health</Tabs.Tab>
          </Tabs.List>
          <Tabs.Panel value="executive" pt="md">
            <ExecutiveTab data={data} />
          </Tabs.Panel>
          <Tabs.Panel value="oncall" pt="md">
            <OnCallTab data={data} />
          </Tabs.Panel>
          <Tabs.Panel value="health" pt="md">
            <HealthTab data={data} />
          </Tabs.Panel>
        </Tabs>
      )}
      <Text size="xs" c="dimmed">
        Days are UTC dates. Latencies, live sessions, grants and outbox come from the metrics of the node that answered;
        request figures from the newest {REQUEST_LIMIT} requests.
      </Text>
    </Stack>
  );
}
