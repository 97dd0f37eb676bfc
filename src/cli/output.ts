/**
 * Human output (aligned tables, key/value blocks) and machine output (`--json`: the API's JSON).
 * Text that came from the server is stripped of control characters before it reaches a terminal,
 * so a crafted name or reason cannot move the cursor or rewrite earlier lines.
 */
import type { CliContext } from "./context.js";
import { CliError, type ExitCode, isCliError } from "./exit-codes.js";

// C0 and C1 control characters; tab and newline become spaces, the rest a question mark.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export function sanitize(text: string): string {
  return text.replace(CONTROL, (char) => (char === "\t" || char === "\n" ? " " : "?"));
}

// What a terminal acts on in text of several lines: every C0 control but tab and newline (CR rewrites a line),
// DEL and C1 (ESC and CSI start every escape sequence: cursor moves, titles, OSC 52 clipboard writes, OSC 8 links).
// eslint-disable-next-line no-control-regex
const TERMINAL_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Human output of several lines, safe for a terminal: lines stay lines, every other control becomes "?". */
export function terminalText(text: string): string {
  return text.replace(TERMINAL_CONTROL, "?");
}

/** Empty or missing values show as "-". */
export function cell(value: unknown): string {
  if (value === null || value === undefined || value === "") return "-";
  if (Array.isArray(value)) return value.length === 0 ? "-" : sanitize(value.map(String).join(","));
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") return sanitize(JSON.stringify(value));
  return sanitize(String(value));
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => unknown;
}

export function renderTable<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): string {
  const cells = rows.map((row) => columns.map((column) => cell(column.value(row))));
  const widths = columns.map((column, index) =>
    Math.max(column.header.length, ...cells.map((line) => (line[index] ?? "").length)),
  );
  const format = (line: readonly string[]) =>
    line
      .map((text, index) => (index === line.length - 1 ? text : text.padEnd(widths[index] ?? 0)))
      .join("  ")
      .trimEnd();
  return [format(columns.map((column) => column.header)), ...cells.map(format)].join("\n") + "\n";
}

export function renderKeyValues(pairs: readonly (readonly [string, unknown])[]): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length + 1));
  return pairs.map(([key, value]) => `${`${key}:`.padEnd(width)}  ${cell(value)}`).join("\n") + "\n";
}

export function renderJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Writes a result: the raw API JSON with `--json`, else the human rendering. */
export function emit(ctx: CliContext, json: boolean, raw: unknown, human: () => string): void {
  ctx.stdout.write(json ? renderJson(raw ?? { ok: true }) : terminalText(human()));
}

/**
 * A stored value (a secret, a token) as it is, for a pipe or a file; on a terminal its controls show as "?"
 * (someone else may have written the value).
 */
export function emitValue(ctx: CliContext, json: boolean, raw: unknown, value: string): void {
  if (json || ctx.stdout.isTTY === true) emit(ctx, json, raw, () => `${value}\n`);
  else ctx.stdout.write(`${value}\n`);
}

/** A line for the human on stderr (notes, warnings), kept off stdout so pipes stay clean. */
export function note(ctx: CliContext, message: string): void {
  ctx.stderr.write(`${terminalText(message)}\n`);
}

export function warn(ctx: CliContext, message: string): void {
  ctx.stderr.write(`warning: ${terminalText(message)}\n`);
}

/** Turns any thrown value into a CliError; unknown errors become UNEXPECTED (exit 1). */
export function toCliError(error: unknown): CliError {
  if (isCliError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new CliError("UNEXPECTED", message || "unexpected error");
}

/** `error: CODE: message`, one line, safe for a terminal. Never a stack trace. */
export function formatError(error: CliError): string {
  return `error: ${sanitize(error.code)}: ${sanitize(error.message)}\n`;
}

/** The error envelope printed on stdout with `--json`, in the shape the API uses. */
export function errorEnvelope(error: CliError): { error: { code: string; message: string; details?: unknown } } {
  return {
    error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) },
  };
}

/** Reports an error on the streams and returns the exit code to use. */
export function reportError(ctx: CliContext, json: boolean, thrown: unknown): ExitCode {
  const error = toCliError(thrown);
  if (error.reported) return error.exitCode;
  if (json) ctx.stdout.write(renderJson(errorEnvelope(error)));
  ctx.stderr.write(formatError(error));
  return error.exitCode;
}
