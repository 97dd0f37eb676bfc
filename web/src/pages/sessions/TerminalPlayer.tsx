/**
 * Plays an SSH session's asciicast with asciinema-player. This module (and the player with its
 * stylesheet) is loaded only when a recording is opened. The recording is handed over as data, not a
 * URL: the page's CSP allows no blob: or data: fetches.
 */
import "asciinema-player/dist/bundle/asciinema-player.css";
import { create, type Player, type RecordingEvent } from "asciinema-player";
import { useEffect, useRef } from "react";
import type { ParsedRecording } from "../../../../src/contract/recording.js";

type SshRecording = Extract<ParsedRecording, { kind: "ssh" }>;

export default function TerminalPlayer({ recording }: { recording: SshRecording }) {
  const container = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const events: RecordingEvent[] = [
      ...recording.frames.map((f): RecordingEvent => [f.time, f.code, f.data]),
      ...recording.events.map((e): RecordingEvent => [e.time, "m", e.event]),
    ].sort((a, b) => a[0] - b[0]);
    const { version, width, height, timestamp, title } = recording.header;
    const player: Player = create({ data: [{ version, width, height, timestamp, title }, ...events] }, element, {
      fit: "width",
      idleTimeLimit: 2,
      terminalFontSize: "small",
    });
    return () => player.dispose();
  }, [recording]);
  return <div ref={container} aria-label="Terminal recording player" role="region" />;
}
