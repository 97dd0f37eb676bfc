/**
 * Four-eyes change requests: configuration files that widen access, waiting for a second admin. Each shows who
 * wrote it, why it is held (the widening changes and their risk) and its diff; another admin approves (it is applied
 * then, or not at all) or denies it, and its author may withdraw it. Decided ones are listed below. Where approving
 * asks for a fresh MFA check of the approver's own (`fourEyes.approverMfa`), the card says so (the list's
 * `approverMfa`) and Approve offers the step-up before any refusal.
 */
import { Alert, Badge, Button, Card, Group, SegmentedControl, Stack, Text, TextInput, Title } from "@mantine/core";
import { useState } from "react";
import type { ChangeRequestDto } from "../../../../src/contract/change-requests.js";
import { api, currentSession } from "../../api.js";
import { needAhead, useStepUpRetry } from "../passkeys/StepUpPrompt.js";
import { ApproverMfaBadge, toneProps, type Tone } from "../requests/shared.js";
import { PlanView } from "./ConfigTab.js";
import { canWriteCatalog, FormAlert, useList } from "./shared.js";
import { YamlView } from "./YamlEditor.js";

const STATUS_TONE: Record<string, Tone> = {
  pending: "yellow",
  applied: "green",
  denied: "red",
  expired: "gray",
  stale: "gray",
};

export function ChangeRequestsTab() {
  const [status, setStatus] = useState("pending");
  const { items, error, reload } = useList<ChangeRequestDto>(`/v1/change-requests?status=${status}`);
  const [notice, setNotice] = useState<string | null>(null);
  return (
    <Stack>
      <Text c="dimmed" size="sm">
        A configuration file that widens access at a four-eyes risk tier waits here for a second admin, who is never its
        author. Approving applies the whole file at once, if the catalog has not changed since; otherwise its author
        applies it again.
      </Text>
      <SegmentedControl
        value={status}
        onChange={(v) => {
          setStatus(v);
          setNotice(null);
        }}
        data={["pending", "applied", "denied", "expired", "stale", "all"].map((v) => ({ value: v, label: v }))}
        aria-label="Which change requests"
      />
      <FormAlert message={error} />
      {notice && (
        <Alert color="teal" aria-live="polite">
          {notice}
        </Alert>
      )}
      {items === null ? (
        <Text c="dimmed">Loading…</Text>
      ) : items.length === 0 ? (
        <Text c="dimmed">No {status === "all" ? "" : `${status} `}change requests.</Text>
      ) : (
        items.map((item) => (
          <ChangeRequestCard
            key={item.id}
            item={item}
            onDecided={(text) => {
              setNotice(text);
              void reload();
            }}
          />
        ))
      )}
    </Stack>
  );
}

function ChangeRequestCard(props: { item: ChangeRequestDto; onDecided: (notice: string) => void }) {
  const { item } = props;
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState<"approve" | "deny" | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [showFile, setShowFile] = useState(false);
  // Once stepped up, the approval goes at once: the list's hint (as of its answer) is not asked again.
  const [steppedUp, setSteppedUp] = useState(false);
  const stepUp = useStepUpRetry("apply", () => {
    setSteppedUp(true);
    void decide("approve");
  });
  const mine = currentSession()?.user.name === item.author;
  const canDeny = item.status === "pending" && canWriteCatalog();
  const widening = item.assessment.filter((a) => a.effect === "widens");

  async function decide(verb: "approve" | "deny") {
    setBusy(verb);
    setError(null);
    try {
      const result = await api<ChangeRequestDto>("POST", `/v1/change-requests/${item.id}/${verb}`, {
        ...(reason.trim() ? { reason: reason.trim() } : {}),
      });
      props.onDecided(
        result.status === "applied"
          ? `Approved and applied: ${result.plan.changes.length} change(s) by ${result.author}.`
          : `Change request by ${result.author} ${mine ? "withdrawn" : "denied"}.`,
      );
    } catch (e) {
      // fourEyes.approverMfa asks the approving admin for a recent MFA check: step up, then approve again.
      if (!(verb === "approve" && stepUp.caught(e))) setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  }

  /**
   * Approve: where the list said approving needs a fresh MFA check of this admin's (fourEyes.approverMfa), the step-up
   * is offered first, before the server has to refuse; the server checks again either way.
   */
  function approve() {
    const ahead = steppedUp ? null : needAhead(item.approverMfa, "this change request");
    if (ahead) stepUp.ask(ahead);
    else void decide("approve");
  }

  return (
    <Card withBorder component="article" aria-label={`Change request by ${item.author}`}>
      <Stack gap="sm">
        <Group justify="space-between" wrap="wrap">
          <Group gap="xs">
            <Badge {...toneProps(STATUS_TONE[item.status] ?? "gray")}>{item.status}</Badge>
            <Badge {...toneProps(item.tier === "critical" || item.tier === "high" ? "red" : "gray")}>
              {item.tier} risk
            </Badge>
            <Text fw={600}>by {item.author}</Text>
            <ApproverMfaBadge hint={item.approverMfa} />
          </Group>
          <Text size="sm" c="dimmed">
            {new Date(item.createdAt).toLocaleString()} · expires {new Date(item.expiresAt).toLocaleString()} ·{" "}
            <code>{item.id}</code>
          </Text>
        </Group>
        {item.decidedBy && (
          <Text size="sm">
            Decided by {item.decidedBy}
            {item.decidedAt ? ` at ${new Date(item.decidedAt).toLocaleString()}` : ""}
            {item.reason ? `: ${item.reason}` : ""}
          </Text>
        )}
        {widening.length > 0 && (
          <div>
            <Title order={3} size="h5">
              Why it is held
            </Title>
            {widening.map((a) => (
              <Text key={`${a.kind}:${a.name}`} size="sm">
                {a.kind} <code>{a.name}</code> ({a.tier ?? "no role"}): {a.reasons.join("; ")}
              </Text>
            ))}
          </div>
        )}
        <PlanView plan={item.plan} applied={null} title="Diff" />
        <Button variant="subtle" size="xs" w="fit-content" onClick={() => setShowFile((v) => !v)}>
          {showFile ? "Hide the file" : "Show the file"}
        </Button>
        {showFile && <YamlView label={`File of the change request by ${item.author}`} value={item.document} />}
        <FormAlert message={error} />
        {(item.canApprove || (canDeny && (mine || canWriteCatalog()))) && item.status === "pending" && (
          <Group align="flex-end" wrap="wrap">
            <TextInput
              label="Reason (optional, audited)"
              value={reason}
              onChange={(e) => setReason(e.currentTarget.value)}
              maxLength={500}
              style={{ flex: 1, minWidth: 220 }}
            />
            {item.canApprove && (
              <Button loading={busy === "approve"} disabled={busy !== null} onClick={approve}>
                Approve and apply
              </Button>
            )}
            <Button
              color="red"
              variant="light"
              loading={busy === "deny"}
              disabled={busy !== null}
              onClick={() => void decide("deny")}
            >
              {mine ? "Withdraw" : "Deny"}
            </Button>
          </Group>
        )}
        {stepUp.prompt}
        {mine && item.status === "pending" && (
          <Text size="sm" c="dimmed">
            You wrote this change: another admin must approve it.
          </Text>
        )}
      </Stack>
    </Card>
  );
}
