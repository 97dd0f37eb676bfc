/**
 * What a recording took and its disk then lost (finding 88): the blob writer batches lines (64 KiB / 100 ms),
 * and a write that fails loses the lines of its batch past the last whole one and those waiting behind it.
 * A database proxy sent each of those statements once the recorder took its line, so they ran: the session's
 * end keeps them (session.ended `recording.unwritten`), bounded, as the query log holds them: without password
 * literals (the recorder writes them so, finding 91; redacted here again, as the audit log and the SIEM must
 * never get one whatever wrote the line).
 */
import { mentionsPassword, redactParameters, redactSqlSecrets } from "../../lib/sql-redact.js";
import type { SessionKind } from "./sessions.types.js";

/** Statement text kept per statement; a longer one is cut there (`cut`: its whole length). */
export const UNWRITTEN_STATEMENT_CHARS = 64 * 1024;
/** Statement lines listed in all (JSON characters); the rest are counted, with their `sent` numbers. */
export const UNWRITTEN_LISTED_CHARS = 256 * 1024;

/** A statement as the query log holds it: its `sent` line (or a result line carrying its statement). */
export interface UnwrittenStatement {
  t: number;
  sent?: number;
  statement: string;
  parameters?: (string | null)[];
  /** The statement was cut at UNWRITTEN_STATEMENT_CHARS: its whole length in characters. */
  cut?: number;
}

export interface UnwrittenLines {
  /** Lines taken (every kind: statements, results, terminal frames, events) that never reached the disk. */
  lines: number;
  bytes: number;
  /** Database sessions: the statements among them, in order (sent to the server: they ran). */
  statements?: UnwrittenStatement[];
  /** Statements past UNWRITTEN_LISTED_CHARS: how many, and the first and last `sent` number among them. */
  omitted?: { count: number; firstSent: number | null; lastSent: number | null };
}

/** The summary of the pieces a failed writer lost (one line each, as the recorder writes), or null when none. */
export function unwrittenLines(kind: SessionKind, pieces: readonly Buffer[]): UnwrittenLines | null {
  if (pieces.length === 0) return null;
  let bytes = 0;
  for (const piece of pieces) bytes += piece.length;
  const summary: UnwrittenLines = { lines: pieces.length, bytes };
  if (kind === "ssh") return summary;
  const statements: UnwrittenStatement[] = [];
  let listed = 0;
  let omitted: NonNullable<UnwrittenLines["omitted"]> | undefined;
  for (const piece of pieces) {
    const statement = statementOf(piece);
    if (!statement) continue;
    const size = JSON.stringify(statement).length + 1; // and its comma in the list
    if (!omitted && listed + size <= UNWRITTEN_LISTED_CHARS) {
      statements.push(statement);
      listed += size;
      continue;
    }
    omitted ??= { count: 0, firstSent: null, lastSent: null };
    omitted.count += 1;
    if (statement.sent === undefined) continue;
    omitted.firstSent ??= statement.sent;
    omitted.lastSent = statement.sent;
  }
  summary.statements = statements;
  if (omitted) summary.omitted = omitted;
  return summary;
}

/** The statement a query log line carries (a `sent` line, or a whole entry), cut to its bound; else null. */
function statementOf(piece: Buffer): UnwrittenStatement | null {
  let line: Partial<UnwrittenStatement>;
  try {
    line = JSON.parse(piece.toString("utf8")) as Partial<UnwrittenStatement>;
  } catch {
    return null;
  }
  if (typeof line.statement !== "string") return null;
  const { statement } = line;
  const secret = mentionsPassword(statement);
  return {
    t: typeof line.t === "number" ? line.t : 0,
    ...(typeof line.sent === "number" ? { sent: line.sent } : {}),
    // In an audit event (and so the SIEM): never a password literal, whatever wrote the line.
    statement: redactSqlSecrets(
      statement.length > UNWRITTEN_STATEMENT_CHARS ? statement.slice(0, UNWRITTEN_STATEMENT_CHARS) : statement,
      secret,
    ),
    ...(Array.isArray(line.parameters)
      ? {
          parameters: secret ? redactParameters(line.parameters) : line.parameters,
        }
      : {}),
    ...(statement.length > UNWRITTEN_STATEMENT_CHARS ? { cut: statement.length } : {}),
  };
}
