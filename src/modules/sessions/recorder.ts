/**
 * A session's recorder: formats events (recording.rules.ts) into a blob writer. Never throws into the
 * relay; the first write failure is reported once through `onFailure`.
 */
import { StringDecoder } from "node:string_decoder";
import type { BlobWriter } from "../../lib/blob-store.js";
import type { Clock } from "../../lib/clock.js";
import {
  asciicastEvent,
  asciicastHeader,
  elapsed,
  queryLogHeader,
  queryLogLine,
  type RecordingMeta,
} from "../../contract/recording.js";
import type { QueryLogEntry, SessionKind, SessionRecorder } from "./sessions.types.js";

export interface ActiveRecorder extends SessionRecorder {
  /** Closes the blob: its key, SHA-256 and size, or null when nothing was recorded (no writer). */
  finish(): Promise<{ key: string; sha256: string; bytes: number } | null>;
}

export function createRecorder(options: {
  kind: SessionKind;
  /** null: recording is optional and the blob store could not be written to. */
  writer: BlobWriter | null;
  meta: RecordingMeta;
  clock: Clock;
  onFailure: (error: Error) => void;
}): ActiveRecorder {
  const { kind, writer, meta, clock } = options;
  writer?.onFailure(options.onFailure);
  const time = () => elapsed(meta.startedAt, clock.now());
  let headerWritten = false;
  let size = { cols: 80, rows: 24 };
  const out = new StringDecoder("utf8");
  const typed = new StringDecoder("utf8");
  const write = (line: string) => writer?.write(line);
  const ensureHeader = () => {
    if (headerWritten) return;
    headerWritten = true;
    write(asciicastHeader(meta, size));
  };
  if (kind === "postgres") {
    headerWritten = true;
    write(queryLogHeader(meta));
  }
  const text = (decoder: StringDecoder, data: Buffer | string) =>
    typeof data === "string" ? data : decoder.write(data);

  return {
    output(data) {
      if (kind !== "ssh") return;
      ensureHeader();
      const chunk = text(out, data);
      if (chunk) write(asciicastEvent(time(), "o", chunk));
    },
    input(data) {
      if (kind !== "ssh") return;
      ensureHeader();
      const chunk = text(typed, data);
      if (chunk) write(asciicastEvent(time(), "i", chunk));
    },
    resize(cols, rows) {
      if (kind !== "ssh" || !(cols > 0 && rows > 0)) return;
      if (!headerWritten) {
        // The first size the client announces is the terminal's size from the start.
        size = { cols, rows };
        ensureHeader();
        return;
      }
      write(asciicastEvent(time(), "r", `${cols}x${rows}`));
    },
    event(name, fields) {
      if (kind !== "ssh") return;
      ensureHeader();
      write(asciicastEvent(time(), "m", JSON.stringify({ event: name, ...fields })));
    },
    query(entry: QueryLogEntry) {
      if (kind !== "postgres") return;
      write(queryLogLine(time(), entry));
    },
    async finish() {
      if (!writer) return null;
      if (kind === "ssh") ensureHeader();
      return writer.finish();
    },
  };
}
