/**
 * The SQL console: PostgreSQL queries typed in the web page, run through Stint's PostgreSQL proxy as a
 * session of the caller's active role. Shared by server and web.
 */
import { z } from "zod";
import { isoTime, name } from "./common.js";

/** Query text longer than this (UTF-8 bytes) is refused with SQL_QUERY_TOO_LARGE. */
export const SQL_CONSOLE_MAX_QUERY_BYTES = 64 * 1024;
/** Rows shown per result at most; the rest are read and dropped, and the result says `truncated`. */
export const SQL_CONSOLE_MAX_ROWS = 1000;

export const sqlConsoleOpenBody = z.strictObject({
  role: name,
  /** One of the databases the role's target allows; the target's own when absent. */
  database: z.string().min(1).max(63).optional(),
});

export const sqlConsoleSession = z.object({
  id: z.uuid(),
  role: z.string(),
  target: z.string(),
  database: z.string(),
  /** The brokered session (GET /v1/sessions/{id}): its query log is where the console's statements are recorded. */
  sessionId: z.uuid(),
  openedAt: isoTime,
  /** Closed after this long without a query. */
  idleTimeoutSeconds: z.number().int(),
  /** When the activation behind it ends (the console ends with it). */
  expiresAt: isoTime,
});
export type SqlConsoleSessionDto = z.infer<typeof sqlConsoleSession>;
export const sqlConsoleSessionList = z.object({ items: z.array(sqlConsoleSession) });

export const sqlConsoleParams = z.strictObject({ id: z.uuid() });

/** The length is checked by the service (SQL_QUERY_TOO_LARGE), not here, so the error says what to do. */
export const sqlConsoleQueryBody = z.strictObject({ sql: z.string().min(1) });

export const sqlConsoleColumn = z.object({ name: z.string(), typeOid: z.number().int() });

export const sqlConsoleResult = z.object({
  /** The command tag's verb (SELECT, INSERT, …), null for an empty query. */
  command: z.string().nullable(),
  /** Rows the command returned or changed (from its tag), null when it says none. */
  rowCount: z.number().int().nullable(),
  columns: z.array(sqlConsoleColumn),
  /** Values as PostgreSQL's text output, null for NULL; at most SQL_CONSOLE_MAX_ROWS rows. */
  rows: z.array(z.array(z.string().nullable())),
  /** Rows (or long values) were left out. */
  truncated: z.boolean(),
});

export const sqlConsoleError = z.object({
  /** SQLSTATE (42501: refused by Stint's query policy or by the database's privileges). */
  sqlstate: z.string(),
  message: z.string(),
  detail: z.string().nullable(),
  hint: z.string().nullable(),
  /** 1-based character position in the query text, when the server gave one. */
  position: z.number().int().nullable(),
});

export const sqlConsoleQueryResult = z.object({
  /** One per statement that completed, in order (a multi-statement text gives several). */
  results: z.array(sqlConsoleResult),
  /** The statement that failed (the ones after it did not run), or null. */
  error: sqlConsoleError.nullable(),
  /** Time from sending the query to its last answer, as the server saw it. */
  elapsedMs: z.number(),
});
export type SqlConsoleQueryResultDto = z.infer<typeof sqlConsoleQueryResult>;
