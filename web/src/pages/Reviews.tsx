/**
 * Reviewer inbox: the items waiting for this person's review, in one place. Break-glass uses (for those who
 * manage reviews) are acknowledged with a finding or escalated; access in a campaign is kept or removed, one
 * by one or in bulk (select with the checkboxes, then "Keep selected" / "Remove selected"), always with a reason.
 * Everything is a native button, checkbox or form, so the page works from the keyboard alone: Tab moves, Space
 * ticks, Ctrl+Enter (or the button) submits the dialog, Escape closes it. Those who may read campaigns see each one's progress.
 */
import {
  Badge,
  Button,
  Card,
  Checkbox,
  Group,
  Modal,
  Progress,
  Stack,
  Table,
  Text,
  Textarea,
  Title,
} from "@mantine/core";
import { useCallback, useEffect, useState, type FormEvent } from "react";
import type { CampaignDto, ReviewItemDto } from "../../../src/contract/reviews.js";
import { api, hasRole } from "../api.js";
import { PageMessages } from "../page-messages.js";
import { useSelection } from "../selection.js";

type Decision = "keep" | "remove" | "acknowledge" | "escalate";

const DECISION_WORDS: Record<Decision, { title: string; label: string; done: string }> = {
  acknowledge: { title: "Acknowledge", label: "Finding", done: "acknowledged" },
  escalate: { title: "Escalate", label: "Why it needs escalating", done: "escalated" },
  keep: { title: "Keep", label: "Reason", done: "kept" },
  remove: { title: "Remove", label: "Reason", done: "removed" },
};

const isBreakGlass = (item: ReviewItemDto) => item.kind !== "eligibility";

function describe(item: ReviewItemDto): string {
  if (item.kind === "break-glass-activation")
    return `Break-glass activation (${item.subject}) by ${item.member ?? "?"}`;
  if (item.kind === "break-glass-secret") return `Break-glass reveal of ${item.subject} by ${item.member ?? "?"}`;
  if (item.kind === "anomaly-alert")
    return `Anomaly: ${item.reason ?? item.subject} (${item.member ?? "nobody named"})`;
  return `${item.member ?? "?"} on ${item.role ?? "?"}`;
}

export default function Reviews() {
  const [items, setItems] = useState<ReviewItemDto[] | null>(null);
  const [campaigns, setCampaigns] = useState<CampaignDto[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const selected = useSelection();
  const [deciding, setDeciding] = useState<{ items: ReviewItemDto[]; decision: Decision } | null>(null);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      const list = (await api<{ items: ReviewItemDto[] }>("GET", "/v1/reviews/items")).items;
      setItems(list);
      selected.keepListed(list);
      if (hasRole("admin", "security", "auditor"))
        setCampaigns((await api<{ items: CampaignDto[] }>("GET", "/v1/reviews/campaigns")).items);
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  function open(decision: Decision, chosen: ReviewItemDto[]) {
    setReason("");
    setDeciding({ items: chosen, decision });
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!deciding || reason.trim().length === 0) return;
    setBusy(true);
    setError(null);
    const failures: string[] = [];
    for (const item of deciding.items) {
      try {
        await api("POST", `/v1/reviews/items/${item.id}/decision`, { decision: deciding.decision, reason });
      } catch (e) {
        failures.push(`${describe(item)}: ${(e as Error).message}`);
      }
    }
    setBusy(false);
    const done = deciding.items.length - failures.length;
    setNotice(done > 0 ? `${done} item${done === 1 ? "" : "s"} ${DECISION_WORDS[deciding.decision].done}.` : null);
    setError(failures.length > 0 ? failures.join(" ") : null);
    setDeciding(null);
    await load();
  }

  const breakGlass = (items ?? []).filter(isBreakGlass);
  const access = (items ?? []).filter((i) => !isBreakGlass(i));
  const chosen = access.filter((i) => selected.has(i.id));

  return (
    <Stack>
      <Title order={1} size="h2">
        Reviews
      </Title>
      <Text c="gray.7">
        Items waiting for your review. Nobody reviews their own access or their own break-glass use.
      </Text>
      <PageMessages error={error} notice={notice} onDismissNotice={() => setNotice(null)} />

      <Title order={2} size="h3">
        Break-glass uses
      </Title>
      {items && breakGlass.length === 0 && <Text>No break-glass use waits for review.</Text>}
      {breakGlass.map((item) => (
        <Card key={item.id} withBorder component="section" aria-label={describe(item)} data-testid={`item-${item.id}`}>
          <Stack gap="xs">
            <Group justify="space-between">
              <Text fw={600}>{describe(item)}</Text>
              <Badge color="red.9" variant="outline">
                {item.kind}
              </Badge>
            </Group>
            <Text size="sm">Justification: {item.reason}</Text>
            <Text size="sm" c="gray.7">
              Review due {new Date(item.dueAt).toLocaleString()}
            </Text>
            <Group>
              <Button onClick={() => open("acknowledge", [item])}>Acknowledge…</Button>
              <Button color="red.9" variant="outline" onClick={() => open("escalate", [item])}>
                Escalate…
              </Button>
            </Group>
          </Stack>
        </Card>
      ))}

      <Title order={2} size="h3">
        Access to recertify
      </Title>
      {items && access.length === 0 && <Text>No access waits for your review.</Text>}
      {access.length > 0 && (
        <>
          <Group>
            <Button disabled={chosen.length === 0} onClick={() => open("keep", chosen)}>
              Keep selected ({chosen.length})
            </Button>
            <Button
              color="red.9"
              variant="outline"
              disabled={chosen.length === 0}
              onClick={() => open("remove", chosen)}
            >
              Remove selected ({chosen.length})
            </Button>
          </Group>
          <Table striped aria-label="Access to recertify">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>
                  <Checkbox
                    aria-label="Select all"
                    checked={chosen.length === access.length}
                    indeterminate={chosen.length > 0 && chosen.length < access.length}
                    onChange={(e) => selected.set(e.currentTarget.checked ? access.map((i) => i.id) : [])}
                  />
                </Table.Th>
                <Table.Th>Member</Table.Th>
                <Table.Th>Role</Table.Th>
                <Table.Th>Evidence</Table.Th>
                <Table.Th>Due</Table.Th>
                <Table.Th>Decide</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {access.map((item) => (
                <Table.Tr key={item.id} data-testid={`item-${item.id}`}>
                  <Table.Td>
                    <Checkbox
                      aria-label={`Select ${describe(item)}`}
                      checked={selected.has(item.id)}
                      onChange={(e) => selected.toggle(item.id, e.currentTarget.checked)}
                    />
                  </Table.Td>
                  <Table.Td>{item.member}</Table.Td>
                  <Table.Td>{item.role}</Table.Td>
                  <Table.Td>{item.evidence?.recommendationText ?? ""}</Table.Td>
                  <Table.Td>
                    {new Date(item.dueAt).toLocaleDateString()} (if missed: {item.onMissed ?? "keep"})
                  </Table.Td>
                  <Table.Td>
                    <Group gap="xs" wrap="nowrap">
                      <Button size="xs" variant="default" onClick={() => open("keep", [item])}>
                        Keep…
                      </Button>
                      <Button size="xs" color="red.9" variant="outline" onClick={() => open("remove", [item])}>
                        Remove…
                      </Button>
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </>
      )}

      {campaigns && (
        <>
          <Title order={2} size="h3">
            Campaigns
          </Title>
          {campaigns.length === 0 && <Text>No review campaigns.</Text>}
          {campaigns.map((c) => (
            <Card key={c.id} withBorder aria-label={`Campaign ${c.name}`}>
              <Group justify="space-between">
                <Text fw={600}>{c.name}</Text>
                <Text size="sm">
                  {c.progress.decided} of {c.progress.total} decided · {c.status} · due{" "}
                  {new Date(c.dueAt).toLocaleDateString()}
                </Text>
              </Group>
              <Progress
                mt="xs"
                value={c.progress.total === 0 ? 100 : (100 * c.progress.decided) / c.progress.total}
                aria-label={`${c.name}: ${c.progress.decided} of ${c.progress.total} decided`}
              />
            </Card>
          ))}
        </>
      )}

      <Modal
        opened={deciding !== null}
        onClose={() => setDeciding(null)}
        title={
          deciding
            ? `${DECISION_WORDS[deciding.decision].title}: ${
                deciding.items.length === 1 ? describe(deciding.items[0]!) : `${deciding.items.length} items`
              }`
            : ""
        }
      >
        {deciding && (
          <form onSubmit={(e) => void submit(e)}>
            <Stack>
              <Textarea
                label={DECISION_WORDS[deciding.decision].label}
                description="Recorded in the audit log with your decision."
                required
                data-autofocus
                minRows={3}
                value={reason}
                onChange={(e) => setReason(e.currentTarget.value)}
                onKeyDown={(e) => {
                  // Ctrl/Cmd+Enter submits from the text area (Enter alone makes a new line).
                  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void submit(e);
                }}
              />
              <Group justify="flex-end">
                <Button variant="default" onClick={() => setDeciding(null)}>
                  Cancel
                </Button>
                <Button type="submit" loading={busy} disabled={reason.trim().length === 0}>
                  {DECISION_WORDS[deciding.decision].title}
                </Button>
              </Group>
            </Stack>
          </form>
        )}
      </Modal>
    </Stack>
  );
}
