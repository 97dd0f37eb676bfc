/**
 * Recording formats, pure. SSH sessions: asciicast v2 (one JSON header line, then `[time, code, data]`
 * lines: "o" output (the target's stdout), "e" the target's stderr (SSH extended data; Stint's own code,
 * which a stock asciinema player skips), "i" input, "r" resize "COLSxROWS", "m" a marker whose data is a
 * JSON object for the non-terminal facts: exec, scp, sftp, forward). Frames of a session channel carry a
 * fourth element, the channel's number in its session (1, 2, … in the order opened; markers a `channel`
 * field): several channels of one connection share the recording. Recordings made before either have
 * neither; they read as stdout of an unnamed channel. PostgreSQL and MySQL sessions: JSON lines, a header
 * `{ version: 1, kind: "postgres" | "mysql", … }`, then a statement's line when the proxy sends it to the
 * server, before it does (`{t, sent: n, statement, parameters?}`), and one line per result of it when that
 * comes (`{t, of: n, durationMs, rows, command, error, interrupted?}`); a statement that never reaches the
 * server (a refused Parse, a refused MySQL command) and recordings made before have one whole QueryLogEntry
 * line with its time `t`. Read back (parseRecording), each result is one QueryLogEntry with its statement.
 */
export type SessionKind = "ssh" | "postgres" | "mysql";

/** The session kinds whose recording is a query log. */
export type QueryLogKind = "postgres" | "mysql";

/** One entry of a PostgreSQL or MySQL query log. */
export interface QueryLogEntry {
  statement: string;
  /** Bound parameters (text form; null for SQL NULL; "<binary n bytes>" for binary), only when the policy keeps them. */
  parameters?: (string | null)[];
  durationMs: number;
  /** From the CommandComplete tag ("SELECT 3" → 3), null when the tag has no count. */
  rows: number | null;
  /** The command tag's verb ("SELECT", "INSERT", "COPY"…), null when it failed. */
  command: string | null;
  /** The server's error message ("SQLSTATE: message"), null on success. */
  error: string | null;
  /** The session ended (killed, revoked, expired, closed) before this statement's result came. */
  interrupted?: true;
}

/** A statement as the query log takes it before the proxy sends it: `id` numbers it in its session (1, 2, …). */
export interface SentStatement {
  id: number;
  statement: string;
  parameters?: (string | null)[];
}

/**
 * An entry as a proxy hands it to the recorder: `sent` names the statement's line logged when it was
 * sent, and the entry's line then carries that number instead of the statement again.
 */
export interface QueryLogResult extends QueryLogEntry {
  sent?: number;
}

export interface RecordingMeta {
  session: string;
  user: string;
  role: string;
  target: string;
  login: string;
  startedAt: Date;
}

export interface AsciicastHeader {
  version: 2;
  width: number;
  height: number;
  timestamp: number;
  title: string;
  env?: Record<string, string>;
  stint: { session: string; user: string; role: string; target: string; login: string };
}

export function asciicastHeader(meta: RecordingMeta, size: { cols: number; rows: number }, term?: string): string {
  const header: AsciicastHeader = {
    version: 2,
    width: size.cols,
    height: size.rows,
    timestamp: Math.floor(meta.startedAt.getTime() / 1000),
    title: `${meta.user} → ${meta.target} (${meta.role})`,
    ...(term ? { env: { TERM: term } } : {}),
    stint: { session: meta.session, user: meta.user, role: meta.role, target: meta.target, login: meta.login },
  };
  return `${JSON.stringify(header)}\n`;
}

/** Seconds since the start, with microsecond precision as asciinema writes them. */
export function elapsed(startedAt: Date, now: Date): number {
  return Math.max(0, Math.round((now.getTime() - startedAt.getTime()) * 1000) / 1_000_000);
}

export function asciicastEvent(
  time: number,
  code: "o" | "e" | "i" | "r" | "m",
  data: string,
  channel?: number,
): string {
  return `${JSON.stringify(channel === undefined ? [time, code, data] : [time, code, data, channel])}\n`;
}

export function queryLogHeader(meta: RecordingMeta, kind: QueryLogKind = "postgres"): string {
  return `${JSON.stringify({
    version: 1,
    kind,
    session: meta.session,
    user: meta.user,
    role: meta.role,
    target: meta.target,
    login: meta.login,
    startedAt: meta.startedAt.toISOString(),
  })}\n`;
}

/** A statement's line, written before the proxy sends it to the server. */
export function queryLogSentLine(time: number, sent: SentStatement): string {
  const line = `{"t":${jsonNumber(time)},"sent":${sent.id},"statement":${JSON.stringify(sent.statement)}`;
  return sent.parameters === undefined ? `${line}}\n` : `${line},"parameters":${JSON.stringify(sent.parameters)}}\n`;
}

export function queryLogLine(time: number, entry: QueryLogResult): string {
  // JSON.stringify({ t: time, ...entry }) for an entry built in QueryLogEntry's field order, written
  // field by field (one line per statement of every proxied session: stringifying the object was the
  // largest part of recording a statement). Only the strings go through JSON.stringify. The result of a
  // statement logged when sent names its line (`of`) instead of repeating its text and parameters.
  const sent = entry.sent !== undefined;
  let line =
    (sent
      ? `{"t":${jsonNumber(time)},"of":${entry.sent},`
      : `{"t":${jsonNumber(time)},"statement":${JSON.stringify(entry.statement)},`) +
    `"durationMs":${jsonNumber(entry.durationMs)},"rows":${entry.rows === null ? "null" : jsonNumber(entry.rows)},` +
    `"command":${entry.command === null ? "null" : JSON.stringify(entry.command)},` +
    `"error":${entry.error === null ? "null" : JSON.stringify(entry.error)}`;
  if (entry.parameters !== undefined && !sent) line += `,"parameters":${JSON.stringify(entry.parameters)}`;
  if (entry.interrupted !== undefined) line += `,"interrupted":${JSON.stringify(entry.interrupted)}`;
  return `${line}}\n`;
}

/** A number as JSON writes it (NaN and the infinities as null). */
const jsonNumber = (value: number): string => (Number.isFinite(value) ? String(value) : "null");

/**
 * A terminal event: "o" is output from either stream (stderr's `"e"` lines read as "o" with `stream:
 * "stderr"`, so a player shows what the user's terminal showed); `channel` when the recording names it.
 */
export interface RecordingFrame {
  time: number;
  code: "o" | "i" | "r";
  data: string;
  stream?: "stderr";
  channel?: number;
}

export type ParsedRecording =
  | {
      kind: "ssh";
      header: AsciicastHeader;
      /** Terminal events in order. */
      frames: RecordingFrame[];
      /** Marker events (exec, scp, sftp, forward) in order. */
      events: ({ time: number; event: string } & Record<string, unknown>)[];
    }
  | { kind: QueryLogKind; header: Record<string, unknown>; queries: (QueryLogEntry & { t: number })[] };

/** Reads a stored recording back; throws on text that is not one. */
export function parseRecording(text: string): ParsedRecording {
  const lines = text.split("\n").filter((line) => line.length > 0);
  if (lines.length === 0) throw new Error("the recording is empty");
  const header = JSON.parse(lines[0]!) as Record<string, unknown>;
  if (header.version === 2) {
    const frames: RecordingFrame[] = [];
    const events: ({ time: number; event: string } & Record<string, unknown>)[] = [];
    for (const line of lines.slice(1)) {
      const [time, code, data, channel] = JSON.parse(line) as [number, string, string, number?];
      const on = typeof channel === "number" ? { channel } : {};
      if (code === "m") events.push({ time, ...(JSON.parse(data) as { event: string }) });
      else if (code === "e") frames.push({ time, code: "o", data, stream: "stderr", ...on });
      else if (code === "o" || code === "i" || code === "r") frames.push({ time, code, data, ...on });
    }
    return { kind: "ssh", header: header as unknown as AsciicastHeader, frames, events };
  }
  if (header.version === 1 && (header.kind === "postgres" || header.kind === "mysql"))
    return { kind: header.kind, header, queries: queryLogEntries(lines.slice(1)) };
  throw new Error("not a Stint recording");
}

type QueryLogLine = QueryLogEntry & { t: number; sent?: number; of?: number };

/**
 * A query log's lines as entries, in the order their results came: a result line (`of`) takes its
 * statement's text and parameters from the line logged when it was sent. A statement sent with no
 * result recorded (the recording stopped first: its size limit, a crash) comes last, interrupted.
 */
function queryLogEntries(lines: string[]): (QueryLogEntry & { t: number })[] {
  const sent = new Map<number, { line: QueryLogLine; answered: boolean }>();
  const out: (QueryLogEntry & { t: number })[] = [];
  for (const text of lines) {
    const line = JSON.parse(text) as QueryLogLine;
    if (typeof line.sent === "number") {
      sent.set(line.sent, { line, answered: false });
      continue;
    }
    if (typeof line.of !== "number") {
      out.push(line);
      continue;
    }
    const { of, ...result } = line;
    const statement = sent.get(of);
    if (statement) statement.answered = true;
    const parameters = statement?.line.parameters;
    out.push({
      t: result.t,
      statement: statement?.line.statement ?? `<statement ${of}, not in the recording>`,
      ...(parameters === undefined ? {} : { parameters }),
      durationMs: result.durationMs,
      rows: result.rows,
      command: result.command,
      error: result.error,
      ...(result.interrupted ? { interrupted: true as const } : {}),
    });
  }
  for (const { line, answered } of sent.values()) {
    if (answered) continue;
    const { t, statement, parameters } = line;
    out.push({
      t,
      statement,
      ...(parameters === undefined ? {} : { parameters }),
      durationMs: 0,
      rows: null,
      command: null,
      error: null,
      interrupted: true,
    });
  }
  return out;
}

/** What `stint sessions play` prints without timing: the terminal output, or the query transcript. */
export function transcript(recording: ParsedRecording): string {
  if (recording.kind === "ssh")
    return recording.frames
      .filter((frame) => frame.code === "o")
      .map((frame) => frame.data)
      .join("");
  return recording.queries
    .map((q) => {
      const outcome = q.error
        ? `ERROR ${q.error}`
        : q.interrupted && q.command === null
          ? "INTERRUPTED (no result recorded)"
          : `${q.command ?? "OK"}${q.rows !== null ? ` ${q.rows} row${q.rows === 1 ? "" : "s"}` : ""}`;
      const parameters = q.parameters ? `\n  -- parameters: ${JSON.stringify(q.parameters)}` : "";
      return `-- +${q.t.toFixed(3)}s (${q.durationMs.toFixed(1)} ms) ${outcome}\n${q.statement.trim()};${parameters}\n`;
    })
    .join("");
}

export const RECORDING_EXTENSION: Record<SessionKind, string> = { ssh: "cast", postgres: "jsonl", mysql: "jsonl" };
