/**
 * A session's recorder: formats events (recording.rules.ts) into a blob writer. Never throws into the
 * relay; the first write failure is reported once through `onFailure`. Once finish() is called it takes
 * nothing more and every call answers false, so a relay that checks the answer never passes bytes the
 * recording does not hold, and a late write can never spoil a blob being closed. A database session's
 * statements are written without password literals (`withoutPasswords`, finding 91): every line, and so
 * what live watchers and `unwritten` see, holds that a password was set, never which.
 */
import { StringDecoder } from "node:string_decoder";
import type { BlobWriter, FinishedBlob } from "../../lib/blob-store.js";
import type { Clock } from "../../lib/clock.js";
import { withoutPasswords } from "../../lib/sql-redact.js";
import {
  asciicastEvent,
  asciicastHeader,
  elapsed,
  queryLogHeader,
  queryLogLine,
  queryLogSentLine,
  type QueryLogResult,
  type RecordingMeta,
  type SentStatement,
} from "../../contract/recording.js";
import { unwrittenLines, type UnwrittenLines } from "./recording-unwritten.js";
import type { SessionKind, SessionRecorder } from "./sessions.types.js";

/** A closed recording, and what it took that its disk lost (a write failure: `partial`). */
export interface RecordedBlob extends FinishedBlob {
  unwritten?: UnwrittenLines;
}

export interface ActiveRecorder extends SessionRecorder {
  /** False once the recording takes nothing more (finish() called, or a write failed). */
  readonly open: boolean;
  /**
   * Closes the blob: its key, SHA-256 and size (`partial` when a write failed: what reached the disk
   * before, and `unwritten`: the lines taken that it lost, statements as the query log holds them), or
   * null when nothing was recorded (no writer).
   */
  finish(): Promise<RecordedBlob | null>;
}

export function createRecorder(options: {
  kind: SessionKind;
  /** null: recording is optional and the blob store could not be written to. */
  writer: BlobWriter | null;
  meta: RecordingMeta;
  clock: Clock;
  onFailure: (error: Error) => void;
  /** Sees every line as it is written (live watchers, live-hub.ts); never stops the recording. */
  tap?: (line: string) => void;
}): ActiveRecorder {
  const { kind, writer, meta, clock } = options;
  writer?.onFailure(options.onFailure);
  const time = () => elapsed(meta.startedAt, clock.now());
  let headerWritten = false;
  let size = { cols: 80, rows: 24 };
  /** One UTF-8 decoder per stream and channel: a character split across two reads stays whole. */
  const decoders = new Map<string, StringDecoder>();
  let finished = false;
  // Without a writer (optional recording, store unavailable) there is nothing to keep, and nothing to refuse.
  const tap = options.tap;
  const write = (line: string): boolean => {
    const taken = writer ? writer.write(line) : !finished;
    // Watchers see what the recording holds: not a line it refused (a statement then never sent).
    if (tap && taken)
      try {
        tap(line);
      } catch {
        // Watchers never disturb the recording.
      }
    return taken;
  };
  const ensureHeader = () => {
    if (headerWritten) return;
    headerWritten = true;
    write(asciicastHeader(meta, size));
  };
  if (kind === "postgres" || kind === "mysql") {
    headerWritten = true;
    write(queryLogHeader(meta, kind));
  }
  const text = (code: "o" | "e" | "i", channel: number | undefined, data: Buffer | string) => {
    if (typeof data === "string") return data;
    const key = channel === undefined ? code : `${code}${channel}`;
    let decoder = decoders.get(key);
    if (!decoder) decoders.set(key, (decoder = new StringDecoder("utf8")));
    return decoder.write(data);
  };
  const frame = (code: "o" | "e" | "i", data: Buffer | string, channel: number | undefined) => {
    if (kind !== "ssh" || finished) return !finished;
    ensureHeader();
    const chunk = text(code, channel, data);
    return chunk ? write(asciicastEvent(time(), code, chunk, channel)) : true;
  };

  return {
    get open() {
      return !finished && (writer === null || writer.open);
    },
    get backlogged() {
      return writer?.backlogged ?? false;
    },
    onDrain(listener) {
      if (writer) writer.onDrain(listener);
      else listener();
    },
    output: (data, channel) => frame("o", data, channel),
    errorOutput: (data, channel) => frame("e", data, channel),
    input: (data, channel) => frame("i", data, channel),
    resize(cols, rows, channel) {
      if (kind !== "ssh" || finished || !(cols > 0 && rows > 0)) return !finished;
      if (!headerWritten) {
        // The first size the client announces is the terminal's size from the start.
        size = { cols, rows };
        ensureHeader();
        return true;
      }
      return write(asciicastEvent(time(), "r", `${cols}x${rows}`, channel));
    },
    event(name, fields) {
      if (kind !== "ssh" || finished) return !finished;
      ensureHeader();
      return write(asciicastEvent(time(), "m", JSON.stringify({ event: name, ...fields })));
    },
    sent(statement: SentStatement) {
      if (kind === "ssh" || finished) return !finished;
      return write(queryLogSentLine(time(), withoutPasswords(statement)));
    },
    query(entry: QueryLogResult) {
      if (kind === "ssh" || finished) return !finished;
      // A result naming its statement's line (`sent`) carries none of its text, only the server's error.
      return write(
        queryLogLine(time(), entry.sent !== undefined && entry.error === null ? entry : withoutPasswords(entry)),
      );
    },
    async finish() {
      if (kind === "ssh" && !finished) ensureHeader();
      // From here on every call answers false: the relay must not pass what is no longer recorded.
      finished = true;
      if (!writer) return null;
      const blob: RecordedBlob = await writer.finish();
      const unwritten = unwrittenLines(kind, writer.unwritten());
      return unwritten ? { ...blob, unwritten } : blob;
    },
  };
}
