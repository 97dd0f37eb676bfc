/** On-call view: pending approvals and their age, elevations in force now, break-glass use. */
import type { ReactNode } from "react";
import { Badge, Card, Group, Stack, Table, Text, Title } from "@mantine/core";
import { formatCountdown, shortTime, useNow } from "../../ui.js";
import type { ActivationRequestDto } from "../../../../src/contract/requests.js";
import { StateBadge, stageInWords, toneProps, type Tone } from "../requests/shared.js";
import { activeElevations, breakGlassUse, pendingApprovals, WINDOW_DAYS } from "./sli.js";
import type { DashboardData } from "./shared.js";

function Section({ title, count, tone, children }: { title: string; count: number; tone: Tone; children: ReactNode }) {
  return (
    <Card withBorder padding="md">
      <Stack gap="xs">
        <Group gap="xs">
          <Title order={2} size="h4">
            {title}
          </Title>
          <Badge {...toneProps(count > 0 ? tone : "gray")}>{count}</Badge>
        </Group>
        {children}
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

export function OnCallTab({ data }: { data: DashboardData }) {
  // Ages and countdowns move with the clock; the lists themselves come from the last load.
  const now = useNow(1000);
  const requests = data.requests ?? [];
  const pending = pendingApprovals(requests, now);
  const active = activeElevations(requests, now);
  const glass = breakGlassUse(requests, now);
  const oldest = pending[0];

  return (
    <Stack>
      <Section title="Pending approvals" count={pending.length} tone="orange">
        <Text size="sm">
          {oldest
            ? `${pending.length} waiting; the oldest has waited ${ageInWords(oldest.ageMs)} (${oldest.request.role} for ${oldest.request.requester}).`
            : "Nothing is waiting for an approval."}
        </Text>
        {pending.length ? (
          <Table.ScrollContainer minWidth={560}>
            <Table striped>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Role</Table.Th>
                  <Table.Th>Requester</Table.Th>
                  <Table.Th>Waiting</Table.Th>
                  <Table.Th>Stage</Table.Th>
                  <Table.Th>Submitted</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {pending.map(({ request, ageMs }) => (
                  <Table.Tr key={request.id}>
                    <Table.Td>
                      <RoleCell request={request} />
                    </Table.Td>
                    <Table.Td>{request.requester}</Table.Td>
                    <Table.Td>{ageInWords(ageMs)}</Table.Td>
                    <Table.Td>{stageInWords(request)}</Table.Td>
                    <Table.Td>{shortTime(request.submittedAt)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        ) : null}
      </Section>

      <Section title="Active elevations" count={active.length} tone="blue">
        <Text size="sm">
          {active.length
            ? `${active.length} in force now; the next ends in ${active[0]!.leftMs === null ? "no set time" : formatCountdown(active[0]!.leftMs)}.`
            : "No elevation is in force."}
        </Text>
        {active.length ? (
          <Table.ScrollContainer minWidth={520}>
            <Table striped>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Role</Table.Th>
                  <Table.Th>Holder</Table.Th>
                  <Table.Th>Time left</Table.Th>
                  <Table.Th>Ends</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {active.map(({ request, leftMs }) => (
                  <Table.Tr key={request.id}>
                    <Table.Td>
                      <RoleCell request={request} />
                    </Table.Td>
                    <Table.Td>{request.requester}</Table.Td>
                    <Table.Td>{leftMs === null ? "no end" : formatCountdown(leftMs)}</Table.Td>
                    <Table.Td>{shortTime(request.expiresAt)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        ) : null}
      </Section>

      <Section title="Break-glass use" count={glass.length} tone="red">
        <Text size="sm">
          {glass.length
            ? `${glass.length} break-glass ${glass.length === 1 ? "activation" : "activations"} requested in the last ${WINDOW_DAYS} days; each needs a review.`
            : `No break-glass use in the last ${WINDOW_DAYS} days.`}
        </Text>
        {glass.length ? (
          <Table.ScrollContainer minWidth={640}>
            <Table striped>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Role</Table.Th>
                  <Table.Th>Requester</Table.Th>
                  <Table.Th>State</Table.Th>
                  <Table.Th>Submitted</Table.Th>
                  <Table.Th>Reason</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {glass.map((request) => (
                  <Table.Tr key={request.id}>
                    <Table.Td>{request.role}</Table.Td>
                    <Table.Td>{request.requester}</Table.Td>
                    <Table.Td>
                      <StateBadge state={request.state} />
                    </Table.Td>
                    <Table.Td>{shortTime(request.submittedAt)}</Table.Td>
                    <Table.Td>
                      <Text size="sm" lineClamp={2}>
                        {request.reason}
                      </Text>
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        ) : null}
      </Section>
    </Stack>
  );
}
