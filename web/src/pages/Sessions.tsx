/**
 * Sessions (admin, auditor): brokered SSH and PostgreSQL sessions live now (refreshed every 3 s,
 * killable by admin and security), all sessions, and one session's detail with its recording.
 */
import { Alert, Badge, Button, Group, Modal, Stack, Table, Text, Title } from "@mantine/core";
import { useState } from "react";
import { usePolledList } from "../polling.js";
import { killBody, type SessionView } from "../../../src/contract/sessions.js";
import { api, ApiError, hasRole } from "../api.js";
import { formatAge, shortTime, useNow, zodFieldErrors } from "../ui.js";
import { ReasonField } from "../reason-field.js";
import { toneProps } from "./requests/shared.js";
import { formatBytes, SessionDetail } from "./sessions/SessionDetail.js";
import { shortId } from "../../../src/contract/short-id.js";

const kindLabel = (kind: SessionView["kind"]) => (kind === "ssh" ? "SSH" : "PostgreSQL");
const short = shortId;

const useSessions = (query: string, everyMs: number | null) =>
  usePolledList<SessionView>(`/v1/sessions${query}`, everyMs);

export default function Sessions() {
  const live = useSessions("?live=true", 3000);
  const all = useSessions("?limit=500", 15_000);
  const [open, setOpen] = useState<SessionView | null>(null);
  const [killing, setKilling] = useState<SessionView | null>(null);
  const canKill = hasRole("admin", "security");
  const now = useNow(1000);

  return (
    <Stack>
      <Title order={1} size="h2">
        Sessions
      </Title>
      <Title order={2} size="h4">
        Live sessions
      </Title>
      {live.error && (
        <Alert color="red" role="alert">
          {live.error}
        </Alert>
      )}
      {live.items?.length === 0 && <Text c="dimmed">Nobody is connected through Stint right now.</Text>}
      {live.items && live.items.length > 0 && (
        <Table.ScrollContainer minWidth={760}>
          <Table striped aria-label="Live sessions">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Session</Table.Th>
                <Table.Th>Kind</Table.Th>
                <Table.Th>User</Table.Th>
                <Table.Th>Role</Table.Th>
                <Table.Th>Target</Table.Th>
                <Table.Th>For</Table.Th>
                <Table.Th>Traffic</Table.Th>
                <Table.Th>Actions</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {live.items.map((s) => (
                <Table.Tr key={s.id}>
                  <Table.Td>
                    <code>{short(s.id)}</code>
                  </Table.Td>
                  <Table.Td>{kindLabel(s.kind)}</Table.Td>
                  <Table.Td>{s.user}</Table.Td>
                  <Table.Td>{s.role}</Table.Td>
                  <Table.Td>
                    {s.target} ({s.login})
                  </Table.Td>
                  <Table.Td>{formatAge(s.startedAt, now)}</Table.Td>
                  <Table.Td>
                    {formatBytes(s.bytesUp)} / {formatBytes(s.bytesDown)}
                  </Table.Td>
                  <Table.Td>
                    <Group gap="xs" wrap="nowrap">
                      <Button
                        size="xs"
                        variant="default"
                        onClick={() => setOpen(s)}
                        aria-label={`Details of session ${short(s.id)}`}
                      >
                        Details
                      </Button>
                      {canKill && (
                        <Button
                          size="xs"
                          color="red.9"
                          onClick={() => setKilling(s)}
                          aria-label={`Kill session ${short(s.id)} of ${s.user}`}
                        >
                          Kill
                        </Button>
                      )}
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}

      <Title order={2} size="h4">
        All sessions
      </Title>
      {all.error && (
        <Alert color="red" role="alert">
          {all.error}
        </Alert>
      )}
      {all.items?.length === 0 && <Text c="dimmed">No sessions yet.</Text>}
      {all.items && all.items.length > 0 && (
        <Table.ScrollContainer minWidth={960}>
          <Table striped highlightOnHover aria-label="All sessions">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Session</Table.Th>
                <Table.Th>Kind</Table.Th>
                <Table.Th>User</Table.Th>
                <Table.Th>Role</Table.Th>
                <Table.Th>Target</Table.Th>
                <Table.Th>Started</Table.Th>
                <Table.Th>Ended</Table.Th>
                <Table.Th>End reason</Table.Th>
                <Table.Th>Detail</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {all.items.map((s) => (
                <Table.Tr key={s.id}>
                  <Table.Td>
                    <code>{short(s.id)}</code>
                  </Table.Td>
                  <Table.Td>{kindLabel(s.kind)}</Table.Td>
                  <Table.Td>{s.user}</Table.Td>
                  <Table.Td>{s.role}</Table.Td>
                  <Table.Td>{s.target}</Table.Td>
                  <Table.Td>{shortTime(s.startedAt)}</Table.Td>
                  <Table.Td>{s.live ? <Badge {...toneProps("green")}>live</Badge> : shortTime(s.endedAt)}</Table.Td>
                  <Table.Td>
                    {s.endReason ?? "—"}
                    {s.endedBy ? ` (by ${s.endedBy})` : ""}
                  </Table.Td>
                  <Table.Td>
                    <Button
                      size="xs"
                      variant="default"
                      onClick={() => setOpen(s)}
                      aria-label={`Open session ${short(s.id)}`}
                    >
                      Open
                    </Button>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}

      {open && <SessionDetail session={open} onClose={() => setOpen(null)} />}
      {killing && (
        <KillDialog
          session={killing}
          onClose={() => setKilling(null)}
          onKilled={() => {
            setKilling(null);
            void live.load();
            void all.load();
          }}
        />
      )}
    </Stack>
  );
}

function KillDialog({
  session,
  onClose,
  onKilled,
}: {
  session: SessionView;
  onClose: () => void;
  onKilled: () => void;
}) {
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit() {
    setError(null);
    const parsed = killBody.safeParse({ reason: reason.trim() });
    if (!parsed.success) return setErrors(reason.trim() ? zodFieldErrors(parsed.error) : { reason: "Give a reason." });
    setErrors({});
    setBusy(true);
    try {
      await api("POST", `/v1/sessions/${session.id}/kill`, parsed.data);
      onKilled();
    } catch (e) {
      const fields = e instanceof ApiError ? e.fieldErrors() : {};
      setErrors(fields);
      if (!fields.reason) setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal
      opened
      closeButtonProps={{ "aria-label": "Close" }}
      onClose={onClose}
      title={`Kill session ${short(session.id)}`}
    >
      <Stack>
        <Text size="sm">
          {session.user} on {session.target} as {session.login} ({kindLabel(session.kind)}), connected since{" "}
          {shortTime(session.startedAt)}. The connection is closed at once.
        </Text>
        {error && (
          <Alert color="red" role="alert">
            {error}
          </Alert>
        )}
        <ReasonField value={reason} onChange={setReason} error={errors.reason} autoFocus />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button color="red.9" onClick={() => void submit()} loading={busy}>
            Kill session
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
