/** Building blocks of the dashboards: a figure card (a number and a line of context) and a chart card with its caption. */
import { Card, Group, Stack, Text, Title } from "@mantine/core";
import { useId, type ReactNode } from "react";
import type { EligibilityDto } from "../../../../src/contract/catalog-api.js";
import type { ActivationRequestDto } from "../../../../src/contract/requests.js";
import type { MetricFigures } from "./metrics.js";

/** Everything the dashboards read, each source on its own (one failing does not hide the others). */
export interface DashboardData {
  requests: ActivationRequestDto[] | null;
  requestsError: string | null;
  /** The list was cut at the API's limit (the newest requests only). */
  requestLimit: number;
  eligibilities: Pick<EligibilityDto, "status">[] | null;
  eligibilitiesError: string | null;
  metrics: MetricFigures | null;
  metricsError: string | null;
  loadedAt: number;
}

/** A figure: a label, the number big, a line of context; `tone` colours the number (shade ≥ 7 for contrast). */
export function Stat({
  label,
  value,
  hint,
  tone,
}: {
  label: string;
  value: ReactNode;
  hint?: ReactNode;
  tone?: "red" | "orange" | "green";
}) {
  return (
    <Card withBorder padding="md">
      <Text size="xs" tt="uppercase" fw={700} c="dimmed">
        {label}
      </Text>
      <Text fz={28} fw={700} lh={1.2} c={tone ? `${tone}.8` : undefined}>
        {value}
      </Text>
      {hint ? (
        <Text size="sm" c="dimmed">
          {hint}
        </Text>
      ) : null}
    </Card>
  );
}

/**
 * A card with an h2, a chart and the chart's text equivalent: the chart and its caption form a
 * figure named by the sentence (recharts' own keyboard layer stays usable inside it).
 */
export function ChartCard({
  title,
  caption,
  extra,
  children,
}: {
  title: string;
  caption: string;
  extra?: ReactNode;
  children: ReactNode;
}) {
  const captionId = useId();
  return (
    <Card withBorder padding="md">
      <Stack gap="xs">
        <Group justify="space-between" wrap="wrap" gap="xs">
          <Title order={2} size="h4">
            {title}
          </Title>
          {extra}
        </Group>
        <figure aria-labelledby={captionId} style={{ margin: 0 }}>
          {children}
          <Text component="figcaption" id={captionId} size="sm" mt="xs">
            {caption}
          </Text>
        </figure>
      </Stack>
    </Card>
  );
}
