/**
 * The SQL console: a dialog over My access for an active PostgreSQL role. It opens a console session (the
 * server connects through Stint's PostgreSQL proxy, so the role's query policy, recording and kill apply),
 * runs what is typed (Run, or Ctrl+Enter), shows each statement's columns and rows (at most 1,000 shown,
 * said when cut) or the error with its SQLSTATE, and closes the console when the dialog closes. When the
 * session ends (revoked, expired, idle) the next query says why.
 */
import { Alert, Badge, Button, Group, Modal, Stack, Table, Text, Textarea } from "@mantine/core";
import { useEffect, useRef, useState } from "react";
import type { SqlConsoleQueryResultDto, SqlConsoleSessionDto } from "../../../../src/contract/sql-console.js";
import { shortId } from "../../../../src/contract/short-id.js";
import { api, ApiError } from "../../api.js";

export function SqlConsole({ role, onClose }: { role: string; onClose: () => void }) {
  const [session, setSession] = useState<SqlConsoleSessionDto | null>(null);
  const [openError, setOpenError] = useState<string | null>(null);
  const [sql, setSql] = useState("");
  const [busy, setBusy] = useState(false);
  const [answer, setAnswer] = useState<SqlConsoleQueryResultDto | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [ended, setEnded] = useState(false);
  const opened = useRef<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    api<SqlConsoleSessionDto>("POST", "/v1/sql-console/sessions", { role }).then(
      (s) => {
        opened.current = s.id;
        if (cancelled) void api("DELETE", `/v1/sql-console/sessions/${s.id}`).catch(() => undefined);
        else setSession(s);
      },
      (e: unknown) => !cancelled && setOpenError((e as Error).message),
    );
    return () => {
      cancelled = true;
      if (opened.current) void api("DELETE", `/v1/sql-console/sessions/${opened.current}`).catch(() => undefined);
      opened.current = null;
    };
  }, [role]);

  async function run() {
    if (!session || !sql.trim() || busy) return;
    setBusy(true);
    setFailure(null);
    try {
      setAnswer(await api<SqlConsoleQueryResultDto>("POST", `/v1/sql-console/sessions/${session.id}/queries`, { sql }));
    } catch (e) {
      setAnswer(null);
      if (e instanceof ApiError && (e.code === "SQL_CONSOLE_ENDED" || e.code === "NOT_FOUND")) setEnded(true);
      setFailure((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal opened onClose={onClose} title={`SQL console: ${role}`} size="xl">
      <Stack>
        {openError && (
          <Alert color="red" role="alert">
            {openError}
          </Alert>
        )}
        {!session && !openError && <Text>Connecting through the PostgreSQL proxy…</Text>}
        {session && (
          <Text size="sm" c="gray.7">
            Database <code>{session.database}</code> on {session.target}, as session{" "}
            <code title={session.sessionId}>{shortId(session.sessionId)}</code>. Every statement is recorded and the
            role&apos;s query rules apply; the console closes when the role ends or after{" "}
            {Math.round(session.idleTimeoutSeconds / 60)} idle minutes.
          </Text>
        )}
        <Textarea
          label="SQL"
          description="Ctrl+Enter runs it."
          value={sql}
          onChange={(e) => setSql(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              void run();
            }
          }}
          autosize
          minRows={3}
          maxRows={12}
          disabled={!session || ended}
          styles={{ input: { fontFamily: "monospace" } }}
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Close
          </Button>
          <Button onClick={() => void run()} loading={busy} disabled={!session || ended || !sql.trim()}>
            Run
          </Button>
        </Group>
        {failure && (
          <Alert color="red" role="alert">
            {failure}
          </Alert>
        )}
        {answer && <Answer answer={answer} />}
      </Stack>
    </Modal>
  );
}

function Answer({ answer }: { answer: SqlConsoleQueryResultDto }) {
  return (
    <Stack gap="sm" role="region" aria-label="Query results">
      {answer.results.map((result, i) => (
        <Stack key={i} gap={4}>
          <Group gap="xs">
            <Badge color="gray.8" variant="outline">
              {result.command ?? "empty"}
            </Badge>
            <Text size="sm">
              {result.rowCount === null ? "" : `${result.rowCount} row${result.rowCount === 1 ? "" : "s"}`}
              {result.truncated ? ` (showing the first ${result.rows.length}: the rest were cut)` : ""}
            </Text>
          </Group>
          {result.columns.length > 0 && (
            <Table.ScrollContainer minWidth={300} mah={400}>
              <Table striped withTableBorder aria-label={`Result ${i + 1}`}>
                <Table.Thead>
                  <Table.Tr>
                    {result.columns.map((c, j) => (
                      <Table.Th key={j}>{c.name}</Table.Th>
                    ))}
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {result.rows.map((row, r) => (
                    <Table.Tr key={r}>
                      {row.map((value, j) => (
                        <Table.Td key={j} style={{ fontFamily: "monospace", whiteSpace: "pre-wrap" }}>
                          {value === null ? <Text c="gray.7">NULL</Text> : value}
                        </Table.Td>
                      ))}
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
        </Stack>
      ))}
      {answer.error && (
        <Alert color="red" role="alert" title={`ERROR ${answer.error.sqlstate}`}>
          {answer.error.message}
          {answer.error.detail && <Text size="sm">Detail: {answer.error.detail}</Text>}
          {answer.error.hint && <Text size="sm">Hint: {answer.error.hint}</Text>}
        </Alert>
      )}
      <Text size="xs" c="gray.7">
        {answer.elapsedMs} ms
      </Text>
    </Stack>
  );
}
