/** On-call view: pending approvals and their age, elevations in force now, break-glass use. */
import type { ReactNode } from "react";
import { Badge, Card, Group, Stack, Table, Text, Title } from "@mantine/core";
import { formatCountdown, shortTime, useNow } from "../../ui.js";
import type { ActivationRequestDto } from "../../../../src/contract/requests.js";
import { StateBadge, stageInWords, toneProps, type Tone } from "../requests/shared.js";
import { activeElevations, breakGlassUse, pendingApprovals, WINDOW_DAYS, type Active, type Pending } from "./sli.js";
import type { DashboardData } from "./shared.js";

/** One column of a section's table: its header and what a row shows under it. */
interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
}

/** A card: the title with its count, a sentence, and the rows as a table when there are any. */
function Section<T extends { request: { id: string } }>(props: {
  title: string;
  tone: Tone;
  summary: string;
  rows: T[];
  columns: Column<T>[];
  minWidth: number;
}) {
  const { rows, columns } = props;
  return (
    <Card withBorder padding="md">
      <Stack gap="xs">
        <Group gap="xs">
          <Title order={2} size="h4">
            {props.title}
          </Title>
          <Badge {...toneProps(rows.length > 0 ? props.tone : "gray")}>{rows.length}</Badge>
        </Group>
        <Text size="sm">{props.summary}</Text>
        {rows.length ? (
          <Table.ScrollContainer minWidth={props.minWidth}>
            <Table striped>
              <Table.Thead>
                <Table.Tr>
                  {columns.map((c) => (
                    <Table.Th key={c.header}>{c.header}</Table.Th>
                  ))}
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {rows.map((row) => (
                  <Table.Tr key={row.request.id}>
                    {columns.map((c) => (
                      <Table.Td key={c.header}>{c.cell(row)}</Table.Td>
                    ))}
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        ) : null}
      </Stack>
    </Card>
  );
}

/** "3h 05m", "2d 4h"; for waiting times (whole minutes). */
function ageInWords(ms: number): string {
  const m = Math.floor(ms / 60_000);
  if (m < 1) return "under a minute";
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function RoleCell({ request }: { request: ActivationRequestDto }) {
  return (
    <Group gap={6} wrap="nowrap">
      <Text size="sm" fw={500}>
        {request.role}
      </Text>
      {request.breakGlass ? (
        <Badge {...toneProps("red")} size="xs">
          break-glass
        </Badge>
      ) : null}
    </Group>
  );
}

type Row = { request: ActivationRequestDto };
const ROLE: Column<Row> = { header: "Role", cell: ({ request }) => <RoleCell request={request} /> };
const REQUESTER: Column<Row> = { header: "Requester", cell: ({ request }) => request.requester };
const SUBMITTED: Column<Row> = { header: "Submitted", cell: ({ request }) => shortTime(request.submittedAt) };

const PENDING_COLUMNS: Column<Pending<ActivationRequestDto>>[] = [
  ROLE,
  REQUESTER,
  { header: "Waiting", cell: ({ ageMs }) => ageInWords(ageMs) },
  { header: "Stage", cell: ({ request }) => stageInWords(request) },
  SUBMITTED,
];

const ACTIVE_COLUMNS: Column<Active<ActivationRequestDto>>[] = [
  ROLE,
  { header: "Holder", cell: ({ request }) => request.requester },
  { header: "Time left", cell: ({ leftMs }) => (leftMs === null ? "no end" : formatCountdown(leftMs)) },
  { header: "Ends", cell: ({ request }) => shortTime(request.expiresAt) },
];

const GLASS_COLUMNS: Column<Row>[] = [
  { header: "Role", cell: ({ request }) => request.role },
  REQUESTER,
  { header: "State", cell: ({ request }) => <StateBadge state={request.state} /> },
  SUBMITTED,
  {
    header: "Reason",
    cell: ({ request }) => (
      <Text size="sm" lineClamp={2}>
        {request.reason}
      </Text>
    ),
  },
];

export function OnCallTab({ data }: { data: DashboardData }) {
  // Ages and countdowns move with the clock; the lists themselves come from the last load.
  const now = useNow(1000);
  const requests = data.requests ?? [];
  const pending = pendingApprovals(requests, now);
  const active = activeElevations(requests, now);
  const glass = breakGlassUse(requests, now);
  const oldest = pending[0];
  const next = active[0];

  return (
    <Stack>
      <Section
        title="Pending approvals"
        tone="orange"
        summary={
          oldest
            ? `${pending.length} waiting; the oldest has waited ${ageInWords(oldest.ageMs)} (${oldest.request.role} for ${oldest.request.requester}).`
            : "Nothing is waiting for an approval."
        }
        rows={pending}
        columns={PENDING_COLUMNS}
        minWidth={560}
      />
      <Section
        title="Active elevations"
        tone="blue"
        summary={
          next
            ? `${active.length} in force now; the next ends in ${next.leftMs === null ? "no set time" : formatCountdown(next.leftMs)}.`
            : "No elevation is in force."
        }
        rows={active}
        columns={ACTIVE_COLUMNS}
        minWidth={520}
      />
      <Section
        title="Break-glass use"
        tone="red"
        summary={
          glass.length
            ? `${glass.length} break-glass ${glass.length === 1 ? "activation" : "activations"} requested in the last ${WINDOW_DAYS} days; each needs a review.`
            : `No break-glass use in the last ${WINDOW_DAYS} days.`
        }
        rows={glass.map((request) => ({ request }))}
        columns={GLASS_COLUMNS}
        minWidth={640}
      />
    </Stack>
  );
}
