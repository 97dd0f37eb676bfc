/**
 * Pieces shared by the Approvals and Requests pages: badges whose colours pass WCAG AA on white
 * (Mantine's default greens and oranges are too light for white text), stage progress, and the
 * detail of one activation request.
 */
import { Badge, Group, Stack, Stepper, Table, Text } from "@mantine/core";
import type { ActivationRequestDto, ApproverMfaHintDto } from "../../../../src/contract/requests.js";
import { formatWindow, shortTime } from "../../ui.js";

export type Risk = "low" | "medium" | "high" | "critical";
export type Tone = "gray" | "blue" | "cyan" | "green" | "yellow" | "orange" | "red";

/** Filled badge colours with at least 4.5:1 contrast between text and background. */
export function toneProps(tone: Tone): { color: string; c: string } {
  switch (tone) {
    case "gray":
      return { color: "gray.7", c: "white" };
    case "blue":
      return { color: "blue.9", c: "white" };
    case "cyan":
      return { color: "cyan.9", c: "white" };
    case "green":
      return { color: "teal.9", c: "white" };
    case "yellow":
      return { color: "yellow.4", c: "black" };
    case "orange":
      return { color: "orange.6", c: "black" };
    case "red":
      return { color: "red.9", c: "white" };
  }
}

export const STATE_TONE: Record<ActivationRequestDto["state"], Tone> = {
  pending: "blue",
  approved: "cyan",
  provisioning: "cyan",
  active: "green",
  denied: "red",
  failed: "red",
  revoked: "red",
  cancelled: "gray",
  expired: "gray",
  deactivated: "gray",
};

const RISK_TONE: Record<Risk, Tone> = { low: "gray", medium: "yellow", high: "orange", critical: "red" };

export function StateBadge({ state }: { state: ActivationRequestDto["state"] }) {
  return (
    <Badge {...toneProps(STATE_TONE[state])} miw="max-content">
      {state}
    </Badge>
  );
}

export function RiskBadge({ risk }: { risk: Risk }) {
  return (
    <Badge {...toneProps(RISK_TONE[risk])} miw="max-content">
      {risk} risk
    </Badge>
  );
}

/**
 * What approving asks of the approver's own MFA, from the inbox's hint: nothing shown when not asked; "Step up to
 * approve" when the session's MFA is too old (or not a passkey where only one counts); "Your MFA counts" while it is
 * recent enough. A hint as of the list: the approval checks again.
 */
export function ApproverMfaBadge({ hint }: { hint: ApproverMfaHintDto | undefined }) {
  if (!hint?.required) return null;
  const within = formatWindow(hint.withinSeconds ?? 0);
  const label = hint.satisfied
    ? `Your MFA counts (${within})`
    : hint.passkeyOnly
      ? `Passkey to approve (within ${within})`
      : `Step up to approve (MFA within ${within})`;
  return (
    <Badge
      {...toneProps(hint.satisfied ? "green" : "yellow")}
      miw="max-content"
      data-testid="approver-mfa"
      title={`Approving asks for your own ${hint.passkeyOnly ? "passkey check" : "MFA check"} within the last ${within}`}
    >
      {label}
    </Badge>
  );
}

/** "Stage 1 of 2 (security): 0/1 approvals" — or nothing for a request without approval stages. */
export function stageInWords(request: ActivationRequestDto): string {
  const stage = request.stages[request.stageIndex];
  if (!stage) return request.stages.length === 0 ? "No approval needed" : "All stages approved";
  const label = /^(stage )?\d+$/i.test(stage.name) || !stage.name ? "" : ` (${stage.name})`;
  return (
    `Stage ${request.stageIndex + 1} of ${request.stages.length}${label}: ` +
    `${stage.approvals.length}/${stage.count} approval${stage.count === 1 ? "" : "s"}` +
    (stage.escalated ? ", escalated" : "")
  );
}

/** The stage a denial ended the request at, with who denied it and why; null when it was not denied. */
export function denialOf(request: ActivationRequestDto): ActivationRequestDto["decisions"][number] | null {
  if (request.state !== "denied") return null;
  return request.decisions.findLast((d) => d.decision === "deny") ?? null;
}

/** "Denied by carol: not during the freeze" — or the end reason when nobody denied it by hand (a timeout). */
export function denialInWords(request: ActivationRequestDto): string {
  const denial = denialOf(request);
  if (!denial) return `Denied${request.endReason ? `: ${request.endReason}` : "."}`;
  return `Denied by ${denial.approver}${denial.reason ? `: ${denial.reason}` : "."}`;
}

/**
 * Stage progress: approved stages with a check, the stage a denial stopped at with a cross (and who
 * denied it, and why), stages never reached left open.
 */
export function StageSteps({ request }: { request: ActivationRequestDto }) {
  const denial = denialOf(request);
  const deniedAt = denial ? denial.stage : request.state === "denied" ? request.stageIndex : -1;
  const active =
    deniedAt >= 0
      ? deniedAt + 1
      : ["pending", "denied", "cancelled"].includes(request.state)
        ? request.stageIndex
        : request.stages.length;
  return (
    <Stepper
      active={active}
      orientation="vertical"
      size="sm"
      styles={{ stepDescription: { color: "var(--mantine-color-gray-7)" } }}
    >
      {request.stages.map((s, i) => {
        const denied = i === deniedAt;
        const name = s.name || `Stage ${i + 1}`;
        return (
          <Stepper.Step
            key={`${s.name}-${i}`}
            label={denied ? `${name}: denied` : name}
            color={denied ? "red.9" : undefined}
            completedIcon={denied ? <span aria-label="denied">✕</span> : undefined}
            description={
              denied && denial
                ? `Denied by ${denial.approver}${denial.reason ? `: ${denial.reason}` : ""}`
                : `${s.approvals.length}/${s.count} approval${s.count === 1 ? "" : "s"}` +
                  (s.approvals.length ? ` (${s.approvals.join(", ")})` : "") +
                  (s.escalated ? ", escalated" : "")
            }
          />
        );
      })}
    </Stepper>
  );
}

/** When the grant ends or ended, in words. */
export function endsInWords(request: ActivationRequestDto): string {
  if (request.endedAt) return `ended ${shortTime(request.endedAt)}`;
  if (request.expiresAt) return `ends ${shortTime(request.expiresAt)}`;
  return "—";
}

/** Everything about one request: its fields, stages, decisions and how it ended. */
export function RequestDetail({ request }: { request: ActivationRequestDto }) {
  const rows: [string, string][] = [
    ["Role", request.role],
    ["Requester", request.requester],
    ["Duration", request.duration],
    ["Reason", request.reason],
    ["Ticket", request.ticket ?? "—"],
    ["Break-glass", request.breakGlass ? "yes" : "no"],
    ["Submitted", shortTime(request.submittedAt)],
    // A start asked for ahead: approved before it, the access begins then (its duration counted from then).
    ["Starts", request.startAt ? `${shortTime(request.startAt)} (scheduled)` : "as soon as approved"],
    ...(request.state === "pending" && request.pendingExpiresAt
      ? ([["Decide by", `${shortTime(request.pendingExpiresAt)} (then it expires undecided)`]] as [string, string][])
      : []),
    ["Decided", shortTime(request.decidedAt)],
    ["Activated", shortTime(request.activatedAt)],
    ["Expires", shortTime(request.expiresAt)],
    ["Ended", shortTime(request.endedAt)],
    ["End reason", request.endReason ?? "—"],
    ["Ended by", request.endedBy ?? "—"],
    ["Extensions", String(request.extensions)],
    ["Request id", request.id],
  ];
  if (request.extendsRequestId) rows.push(["Extends request", request.extendsRequestId]);
  return (
    <Stack>
      <Group>
        <StateBadge state={request.state} />
        {request.stageDeadline && request.state === "pending" && (
          <Text size="sm">Stage deadline {shortTime(request.stageDeadline)}</Text>
        )}
      </Group>
      <Table variant="vertical" layout="fixed" withTableBorder>
        <Table.Tbody>
          {rows.map(([label, value]) => (
            <Table.Tr key={label}>
              <Table.Th w={130}>{label}</Table.Th>
              <Table.Td style={{ overflowWrap: "anywhere" }}>{value}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      <Text fw={600} component="h3" size="md">
        Approval stages
      </Text>
      {request.stages.length === 0 ? (
        <Text size="sm" c="gray.7">
          This request needed no approval.
        </Text>
      ) : (
        <StageSteps request={request} />
      )}
      <Text fw={600} component="h3" size="md">
        Decisions
      </Text>
      {request.decisions.length === 0 ? (
        <Text size="sm" c="gray.7">
          No decisions yet.
        </Text>
      ) : (
        <Stack gap="xs">
          {request.decisions.map((d, i) => (
            <Text size="sm" key={i}>
              <strong>{d.approver}</strong> {d.decision === "approve" ? "approved" : "denied"} stage {d.stage + 1} at{" "}
              {shortTime(d.decidedAt)}
              {d.reason ? `: ${d.reason}` : ""}
            </Text>
          ))}
        </Stack>
      )}
    </Stack>
  );
}
