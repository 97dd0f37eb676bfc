/**
 * One session: who, where, how it ended, and its recording — a terminal player for SSH, a query
 * transcript for PostgreSQL.
 */
import { Alert, Button, Code, Group, Loader, Modal, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { lazy, Suspense, useEffect, useState } from "react";
import type { SessionView } from "../../../../src/contract/sessions.js";
import { parseRecording, transcript, type ParsedRecording } from "../../../../src/contract/recording.js";
import { api, ApiError, currentSession } from "../../api.js";
import { shortTime } from "../../ui.js";
import { shortId } from "../../../../src/contract/short-id.js";

const TerminalPlayer = lazy(() => import("./TerminalPlayer.js"));

/**
 * The recording's text. Not through api(): it parses any "json" content type as one JSON value, and a
 * query log is JSON lines (application/x-ndjson). The session is read through api() first, which
 * refreshes an expiring token and says "not found" the usual way.
 */
async function fetchRecording(id: string): Promise<string> {
  await api("GET", `/v1/sessions/${id}`);
  const token = currentSession()?.accessToken;
  const res = await fetch(`/v1/sessions/${id}/recording`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (!res.ok) {
    const message = `The server answered with HTTP status ${res.status}.`;
    try {
      const body = (await res.json()) as { error?: { code: string; message: string } };
      if (body.error) throw new ApiError(res.status, body.error.code, body.error.message);
    } catch (e) {
      if (e instanceof ApiError) throw e;
    }
    throw new Error(message);
  }
  return res.text();
}

/** WebAssembly may be refused by the page's CSP (no 'wasm-unsafe-eval'); the player needs it. */
async function webAssemblyAllowed(): Promise<boolean> {
  try {
    await WebAssembly.compile(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    return true;
  } catch {
    return false;
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function SessionDetail({ session, onClose }: { session: SessionView; onClose: () => void }) {
  const [recording, setRecording] = useState<ParsedRecording | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);

  async function open() {
    setLoading(true);
    setError(null);
    try {
      setRecording(parseRecording(await fetchRecording(session.id)));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setLoading(false);
    }
  }

  const facts: [string, string][] = [
    ["Kind", session.kind === "ssh" ? "SSH" : session.kind === "mysql" ? "MySQL" : "PostgreSQL"],
    ["User", session.user],
    ["Role", session.role],
    ["Target", `${session.target} (login ${session.login})`],
    ["Client", session.clientAddress ?? "—"],
    ["Node", session.node],
    ["Started", shortTime(session.startedAt)],
    ["Ended", session.live ? "live" : shortTime(session.endedAt)],
    [
      "End reason",
      session.endReason ? `${session.endReason}${session.endDetail ? `: ${session.endDetail}` : ""}` : "—",
    ],
    ["Ended by", session.endedBy ?? "—"],
    ["Traffic", `${formatBytes(session.bytesUp)} up, ${formatBytes(session.bytesDown)} down`],
  ];
  return (
    <Modal
      opened
      closeButtonProps={{ "aria-label": "Close" }}
      onClose={onClose}
      title={`Session ${shortId(session.id)}`}
      size="xl"
    >
      <Stack>
        <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="xs">
          {facts.map(([label, value]) => (
            <Text key={label} size="sm">
              <Text span fw={600}>
                {label}:
              </Text>{" "}
              {value}
            </Text>
          ))}
        </SimpleGrid>
        <Title order={2} size="h4">
          Recording
        </Title>
        {!session.recording?.available ? (
          <Text c="dimmed">{session.live ? "The recording is available when the session ends." : "No recording."}</Text>
        ) : recording === null ? (
          <Group>
            <Button onClick={() => void open()} loading={loading}>
              Open recording
            </Button>
            {session.recording.bytes !== null && (
              <Text size="sm" c="dimmed">
                {formatBytes(session.recording.bytes)}
              </Text>
            )}
          </Group>
        ) : recording.kind === "ssh" ? (
          <SshRecordingView recording={recording} />
        ) : (
          <QueryTranscript recording={recording} />
        )}
        {error && (
          <Alert color="red" role="alert">
            {error}
          </Alert>
        )}
        {session.recording?.sha256 && (
          <Text size="xs" c="dimmed" style={{ wordBreak: "break-all" }}>
            SHA-256 {session.recording.sha256}
          </Text>
        )}
      </Stack>
    </Modal>
  );
}

function SshRecordingView({ recording }: { recording: Extract<ParsedRecording, { kind: "ssh" }> }) {
  const [player, setPlayer] = useState<"checking" | "yes" | "no">("checking");
  useEffect(() => {
    void webAssemblyAllowed().then((ok) => setPlayer(ok ? "yes" : "no"));
  }, []);
  return (
    <Stack>
      {player === "yes" && (
        <Suspense fallback={<Loader aria-label="Loading the player" />}>
          <TerminalPlayer recording={recording} />
        </Suspense>
      )}
      {player === "no" && (
        <Alert color="yellow" variant="light">
          This browser page may not run the terminal player (WebAssembly is not allowed here); the output is shown as
          text.
        </Alert>
      )}
      {recording.events.length > 0 && (
        <>
          <Title order={3} size="h5">
            Commands and transfers
          </Title>
          <Table.ScrollContainer minWidth={480}>
            <Table aria-label="Commands and transfers">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Time</Table.Th>
                  <Table.Th>Event</Table.Th>
                  <Table.Th>Detail</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {recording.events.map(({ time, event, ...rest }, i) => (
                  <Table.Tr key={i}>
                    <Table.Td>+{time.toFixed(1)}s</Table.Td>
                    <Table.Td>{event}</Table.Td>
                    <Table.Td style={{ wordBreak: "break-word" }}>{JSON.stringify(rest)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </>
      )}
      {player !== "checking" && (
        <details open={player === "no"}>
          <summary>Output as text</summary>
          <Code block mah={360} style={{ overflow: "auto", whiteSpace: "pre-wrap" }}>
            {/* Escape sequences are dropped: this is a reading aid, not a terminal. */}
            {/* eslint-disable-next-line no-control-regex */}
            {transcript(recording).replace(/\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b[()][0-9A-Za-z]|\u001b[=>]|\r/g, "")}
          </Code>
        </details>
      )}
    </Stack>
  );
}

function QueryTranscript({ recording }: { recording: Exclude<ParsedRecording, { kind: "ssh" }> }) {
  if (recording.queries.length === 0) return <Text c="dimmed">No queries were run.</Text>;
  return (
    <Table.ScrollContainer minWidth={720}>
      <Table striped aria-label="Query transcript">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Time</Table.Th>
            <Table.Th>Statement</Table.Th>
            <Table.Th>Duration (ms)</Table.Th>
            <Table.Th>Rows</Table.Th>
            <Table.Th>Error</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {recording.queries.map((q, i) => (
            <Table.Tr key={i}>
              <Table.Td>+{q.t.toFixed(3)}s</Table.Td>
              <Table.Td>
                <Code style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }}>{q.statement.trim()}</Code>
                {q.parameters && (
                  <Text size="xs" c="dimmed">
                    parameters: {JSON.stringify(q.parameters)}
                  </Text>
                )}
              </Table.Td>
              <Table.Td>{q.durationMs.toFixed(1)}</Table.Td>
              <Table.Td>{q.rows ?? "—"}</Table.Td>
              <Table.Td>
                {q.error ? (
                  <Text size="sm" c="red.9">
                    {q.error}
                  </Text>
                ) : (
                  "—"
                )}
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}
