/**
 * Anomaly alerts (auditor, security, admin): the newest first, open ones by default, with what fired and on
 * whom; a row opens the alert, which can be acknowledged with a note (audited).
 */
import {
  Alert,
  Badge,
  Button,
  Group,
  Modal,
  SegmentedControl,
  Stack,
  Table,
  Text,
  Textarea,
  Title,
} from "@mantine/core";
import { useCallback, useEffect, useState } from "react";
import type { AlertDto } from "../../../src/contract/alerts.js";
import { api, ApiError } from "../api.js";
import { shortTime } from "../ui.js";
import { toneProps, type Tone } from "./requests/shared.js";

const SEVERITY_TONE: Record<AlertDto["severity"], Tone> = { info: "blue", warning: "orange", critical: "red" };
type Show = "open" | "acknowledged" | "all";

function SeverityBadge({ severity }: { severity: AlertDto["severity"] }) {
  return (
    <Badge variant="light" {...toneProps(SEVERITY_TONE[severity])}>
      {severity}
    </Badge>
  );
}

export default function Alerts() {
  const [show, setShow] = useState<Show>("open");
  const [items, setItems] = useState<AlertDto[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<AlertDto | null>(null);
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [ackError, setAckError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const query = show === "all" ? "" : `?status=${show}`;
      setItems((await api<{ items: AlertDto[] }>("GET", `/v1/alerts${query}`)).items);
      setError(null);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, [show]);

  useEffect(() => {
    void load();
  }, [load]);

  async function acknowledge(alert: AlertDto) {
    setBusy(true);
    setAckError(null);
    try {
      const body = note.trim() ? { note: note.trim() } : {};
      const updated = await api<AlertDto>("POST", `/v1/alerts/${alert.id}/ack`, body);
      setOpen(updated);
      setNote("");
      await load();
    } catch (e) {
      setAckError(e instanceof ApiError || e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">
          Alerts
        </Title>
        <SegmentedControl
          aria-label="Which alerts"
          value={show}
          onChange={(value) => setShow(value as Show)}
          data={[
            { label: "Open", value: "open" },
            { label: "Acknowledged", value: "acknowledged" },
            { label: "All", value: "all" },
          ]}
        />
      </Group>
      <Text size="sm" c="gray.7">
        Raised by the anomaly rules over the audit log: first activations, unusual hours or addresses, bursts, fast or
        rubber-stamp approvals, dormant eligibility used, break-glass, drift.
      </Text>
      {error && (
        <Alert color="red" title="Alerts could not be loaded">
          {error}
        </Alert>
      )}
      {items && items.length === 0 && <Text>No {show === "all" ? "" : `${show} `}alerts.</Text>}
      {items && items.length > 0 && (
        <Table striped highlightOnHover aria-label="Alerts">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Raised</Table.Th>
              <Table.Th>Severity</Table.Th>
              <Table.Th>Alert</Table.Th>
              <Table.Th>Who</Table.Th>
              <Table.Th>Status</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {items.map((a) => (
              <Table.Tr key={a.id} data-testid={`alert-${a.id}`}>
                <Table.Td>{shortTime(a.raisedAt)}</Table.Td>
                <Table.Td>
                  <SeverityBadge severity={a.severity} />
                </Table.Td>
                <Table.Td>
                  <Button variant="subtle" size="compact-sm" onClick={() => setOpen(a)}>
                    {a.title}
                  </Button>
                </Table.Td>
                <Table.Td>{a.principal ?? "—"}</Table.Td>
                <Table.Td>{a.status === "open" ? "open" : `acknowledged by ${a.acknowledgedBy ?? "?"}`}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      <Modal opened={open !== null} onClose={() => setOpen(null)} title={open?.title ?? ""} size="lg">
        {open && (
          <Stack gap="xs">
            <Group gap="xs">
              <SeverityBadge severity={open.severity} />
              <Badge variant="outline">{open.rule}</Badge>
            </Group>
            <Text>{open.text}</Text>
            <Text size="sm">Who: {open.principal ?? "—"}</Text>
            <Text size="sm">About: {open.subject ?? "—"}</Text>
            <Text size="sm">
              Raised {shortTime(open.raisedAt)} on audit event {open.eventSeq} ({shortTime(open.eventTime)})
            </Text>
            <Text size="sm">
              Action: {open.action}
              {open.reviewItemId ? ` (review item ${open.reviewItemId})` : ""}
            </Text>
            {open.status === "acknowledged" ? (
              <Text size="sm">
                Acknowledged by {open.acknowledgedBy ?? "?"} {shortTime(open.acknowledgedAt)}
                {open.ackNote ? `: ${open.ackNote}` : ""}
              </Text>
            ) : (
              <>
                <Textarea
                  label="Note (optional)"
                  description="What you found or did; kept in the audit log."
                  value={note}
                  maxLength={1000}
                  onChange={(event) => setNote(event.currentTarget.value)}
                />
                {ackError && <Alert color="red">{ackError}</Alert>}
                <Group justify="flex-end">
                  <Button loading={busy} onClick={() => void acknowledge(open)}>
                    Acknowledge
                  </Button>
                </Group>
              </>
            )}
          </Stack>
        )}
      </Modal>
    </Stack>
  );
}
