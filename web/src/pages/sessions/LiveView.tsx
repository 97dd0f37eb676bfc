/**
 * One live session as it happens, over the WebSocket of /v1/sessions/:id/live (src/contract/live.ts): the
 * access token goes in the first message, never the URL. SSH output is drawn on an xterm.js terminal from
 * the same asciicast lines a recording holds; a database session's statements are listed as they are sent,
 * each with its result once it comes.
 * A moderator sees who moderates and may terminate the session; closing the view is leaving it.
 * Loaded only when a live session is opened.
 */
import "@xterm/xterm/css/xterm.css";
import { Terminal } from "@xterm/xterm";
import { Alert, Badge, Button, Code, Group, Stack, Text } from "@mantine/core";
import { useEffect, useRef, useState } from "react";
import type { LiveMode, LiveModerationView, WatchableSession } from "../../../../src/contract/live.js";
import { api, currentSession } from "../../api.js";

interface QueryLine {
  t: number;
  /** Its line logged when sent: its results name it (`of`). */
  sent?: number;
  statement: string;
  durationMs?: number;
  rows?: number | null;
  error?: string | null;
}

type Result = Omit<QueryLine, "statement" | "sent"> & { of: number };

/**
 * A result shown with its statement: on the statement's row when it is the first, as a row of its own when
 * one statement text gave several; dropped when the statement was sent before this watcher joined.
 */
function withResult(queries: QueryLine[], result: Result): QueryLine[] {
  let at = -1;
  for (let i = queries.length - 1; i >= 0 && at < 0; i--) if (queries[i]!.sent === result.of) at = i;
  if (at < 0) return queries;
  const sent = queries[at]!;
  const answered: QueryLine = { ...sent, durationMs: result.durationMs, rows: result.rows, error: result.error };
  if (sent.durationMs !== undefined) return [...queries.slice(-499), answered];
  return queries.map((line, i) => (i === at ? answered : line));
}

export default function LiveView({
  session,
  mode,
  onClose,
}: {
  session: WatchableSession;
  mode: LiveMode;
  onClose: () => void;
}) {
  const screen = useRef<HTMLDivElement>(null);
  const socketRef = useRef<WebSocket | null>(null);
  const [status, setStatus] = useState<"connecting" | "live" | "ended">("connecting");
  const [ended, setEnded] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [moderation, setModeration] = useState<LiveModerationView | null>(session.moderation);
  const [queries, setQueries] = useState<QueryLine[]>([]);

  useEffect(() => {
    const element = screen.current;
    const terminal =
      session.kind === "ssh" && element
        ? new Terminal({ cols: 80, rows: 24, disableStdin: true, convertEol: false, fontSize: 13 })
        : null;
    if (terminal && element) terminal.open(element);
    let socket: WebSocket | null = null;
    let closed = false;
    let renewal: ReturnType<typeof setInterval> | undefined;
    // Renewals are sent once the server said hello (before, a second message would be taken for input).
    let joined = false;

    const onLine = (line: string) => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return;
      }
      if (Array.isArray(value)) {
        const [, code, data] = value as [number, string, string];
        // "e": the target's stderr, shown as the user's terminal showed it.
        if (code === "o" || code === "e") terminal?.write(data);
        else if (code === "r") {
          const [cols, rows] = data.split("x").map(Number);
          if (cols && rows) terminal?.resize(cols, rows);
        }
        return;
      }
      const object = value as Record<string, unknown>;
      if (typeof object.version === "number" && typeof object.width === "number" && typeof object.height === "number")
        terminal?.resize(object.width, object.height);
      else if (typeof object.statement === "string")
        setQueries((q) => [...q.slice(-499), object as unknown as QueryLine]);
      else if (typeof object.of === "number") setQueries((q) => withResult(q, object as unknown as Result));
    };

    void (async () => {
      // Refreshes an expiring access token the usual way before it is handed to the socket.
      await api("GET", "/v1/sessions/live");
      const token = currentSession()?.accessToken;
      if (closed || !token) return;
      const url = new URL(`/v1/sessions/${session.id}/live`, window.location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(url);
      socketRef.current = socket;
      socket.onopen = () => socket?.send(JSON.stringify({ type: "auth", token, mode }));
      // The server lets a socket watch only while its latest token is valid: each token refreshed (api() does
      // when 30 s or less remain) goes to the socket, which keeps it open past the first token's expiry.
      let sent = token;
      renewal = setInterval(() => {
        void api("GET", "/v1/sessions/live")
          .then(() => {
            const fresh = currentSession()?.accessToken;
            if (!joined || !fresh || fresh === sent || socket?.readyState !== WebSocket.OPEN) return;
            sent = fresh;
            socket.send(JSON.stringify({ type: "auth", token: fresh, mode }));
          })
          .catch(() => undefined);
      }, 20_000);
      socket.onmessage = (event: MessageEvent<string>) => {
        const text = event.data;
        // Recording lines come whole, each ending with a newline; a control message is one JSON object without.
        if (text.endsWith("\n")) {
          for (const line of text.split("\n")) if (line) onLine(line);
          return;
        }
        let message: { type?: string } & Record<string, unknown>;
        try {
          message = JSON.parse(text) as typeof message;
        } catch {
          return;
        }
        if (message.type === "hello") {
          joined = true;
          setStatus("live");
          setModeration((message.moderation as LiveModerationView | null) ?? null);
        } else if (message.type === "moderation") {
          setModeration(message.moderation as LiveModerationView);
        } else if (message.type === "ended") {
          setStatus("ended");
          setEnded(String(message.reason));
        } else if (message.type === "error") {
          const body = message.error as { message?: string } | undefined;
          setError(body?.message ?? "The session cannot be opened.");
        }
      };
      socket.onclose = (event) => {
        setStatus("ended");
        if (event.code !== 1000 && event.reason) setError((e) => e ?? `Closed: ${event.reason}`);
      };
    })().catch((e: unknown) => setError((e as Error).message));

    return () => {
      closed = true;
      clearInterval(renewal);
      socket?.close(1000, "left");
      socketRef.current = null;
      terminal?.dispose();
    };
  }, [session.id, session.kind, mode]);

  const terminate = () => socketRef.current?.send(JSON.stringify({ type: "terminate" }));

  return (
    <Stack>
      <Group justify="space-between">
        <Text size="sm">
          {session.user} on {session.target} ({session.role}) —{" "}
          {mode === "moderate" ? "you are moderating" : "watching, read-only"}
        </Text>
        <Badge color={status === "live" ? "green" : "gray"} aria-live="polite">
          {status}
        </Badge>
      </Group>
      {moderation && (
        <Text size="sm" aria-live="polite" data-testid="moderation">
          {moderation.admitted ? "Moderated by" : "Waiting for a moderator"}
          {moderation.moderators.length > 0 ? `: ${moderation.moderators.join(", ")}` : ""}
        </Text>
      )}
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {ended && <Alert color="gray">The session ended: {ended}</Alert>}
      {session.kind === "ssh" ? (
        <div ref={screen} aria-label="Live terminal" role="region" data-testid="live-terminal" />
      ) : (
        <Stack gap={4} aria-label="Live queries" role="region">
          {queries.length === 0 && <Text c="dimmed">No queries yet.</Text>}
          {queries.map((q, i) => (
            <Code key={i} block>
              {q.statement}
              {q.error ? `\n→ ${q.error}` : q.rows !== undefined && q.rows !== null ? `\n→ ${q.rows} rows` : ""}
            </Code>
          ))}
        </Stack>
      )}
      <Group justify="flex-end">
        {mode === "moderate" && status === "live" && (
          <Button color="red.9" onClick={terminate}>
            Terminate session
          </Button>
        )}
        <Button variant="default" onClick={onClose}>
          {mode === "moderate" ? "Leave" : "Close"}
        </Button>
      </Group>
    </Stack>
  );
}
