/**
 * The browser terminal: a shell on an active SSH role's target, in a dialog, over the WebSocket of
 * /v1/ssh/terminals (src/contract/terminal.ts). The access token goes in the first message, never the URL.
 * The server opens the session through its SSH proxy, so it is recorded and ended on revoke or expiry like
 * any `ssh` session; the dialog then says the session ended. Closing the dialog ends the session. Loaded only
 * when a terminal is opened.
 */
import "@xterm/xterm/css/xterm.css";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { Alert, Badge, Group, Modal, Stack, Text } from "@mantine/core";
import { useEffect, useState } from "react";
import { TERMINAL_INPUT_CHUNK, type TerminalServerMessage } from "../../../../src/contract/terminal.js";
import { api, currentSession } from "../../api.js";

type Status = "connecting" | "open" | "ended";

export function WebTerminal({ role, onClose }: { role: string; onClose: () => void }) {
  // A callback ref: the dialog's content mounts in a portal after the first render.
  const [element, setElement] = useState<HTMLDivElement | null>(null);
  const [status, setStatus] = useState<Status>("connecting");
  const [login, setLogin] = useState<string | null>(null);
  const [ended, setEnded] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!element) return;
    const terminal = new Terminal({ cols: 100, rows: 30, fontSize: 13, convertEol: false, cursorBlink: true });
    const fit = new FitAddon();
    terminal.loadAddon(fit);
    terminal.open(element);
    safely(() => fit.fit());
    let socket: WebSocket | null = null;
    let closed = false;
    let open = false;
    const send = (message: object) => {
      if (open && socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    };
    const typed = terminal.onData((data) => {
      // A long paste goes as several messages, each within the server's limit.
      for (let at = 0; at < data.length; at += TERMINAL_INPUT_CHUNK)
        send({ type: "input", data: data.slice(at, at + TERMINAL_INPUT_CHUNK) });
    });
    const resized = terminal.onResize(({ cols, rows }) => send({ type: "resize", cols, rows }));
    const observer = new ResizeObserver(() => safely(() => fit.fit()));
    observer.observe(element);

    void (async () => {
      // Refreshes an expiring access token the usual way before it is handed to the socket.
      await api("GET", "/v1/me");
      const token = currentSession()?.accessToken;
      if (closed || !token) return;
      const url = new URL("/v1/ssh/terminals", window.location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      socket.onopen = () =>
        socket?.send(JSON.stringify({ type: "auth", token, role, cols: terminal.cols, rows: terminal.rows }));
      socket.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
        if (typeof event.data !== "string") {
          terminal.write(new Uint8Array(event.data));
          return;
        }
        let message: TerminalServerMessage;
        try {
          message = JSON.parse(event.data) as TerminalServerMessage;
        } catch {
          return;
        }
        if (message.type === "ready") {
          open = true;
          setLogin(`${message.login} (${message.target})`);
          setStatus("open");
          terminal.focus();
        } else if (message.type === "ended") {
          setEnded(message.message);
        } else if (message.type === "error") {
          setError(message.error.message);
        }
      };
      socket.onclose = (event) => {
        open = false;
        setStatus("ended");
        setEnded((said) => said ?? (event.code === 1000 ? "The session ended." : null));
        if (event.code !== 1000) setError((said) => said ?? "The terminal was disconnected.");
      };
    })().catch((e: unknown) => {
      setStatus("ended");
      setError((e as Error).message);
    });

    return () => {
      closed = true;
      typed.dispose();
      resized.dispose();
      observer.disconnect();
      socket?.close(1000, "closed");
      terminal.dispose();
    };
  }, [element, role]);

  return (
    <Modal opened onClose={onClose} title={`Terminal: ${role}`} size="min(1100px, 96vw)">
      <Stack gap="xs">
        <Group justify="space-between">
          <Text size="sm">{login ?? "Opening a session through the SSH proxy…"}</Text>
          <Badge color={status === "open" ? "green.9" : "gray.8"} aria-live="polite" data-testid="terminal-status">
            {status === "open" ? "connected" : status === "connecting" ? "connecting" : "session ended"}
          </Badge>
        </Group>
        <Text size="xs" c="gray.7">
          Everything shown and typed here is recorded. The session ends when the role&apos;s activation ends.
        </Text>
        {error && (
          <Alert color="red" role="alert">
            {error}
          </Alert>
        )}
        {ended && !error && (
          <Alert color="gray" role="status">
            {ended}
          </Alert>
        )}
        <div
          ref={setElement}
          role="region"
          aria-label={`Terminal on ${role}`}
          data-testid="web-terminal"
          style={{ height: "min(60vh, 560px)", background: "#000" }}
        />
      </Stack>
    </Modal>
  );
}

function safely(work: () => void): void {
  try {
    work();
  } catch {
    // Fitting a hidden or detached terminal: nothing to measure yet.
  }
}
