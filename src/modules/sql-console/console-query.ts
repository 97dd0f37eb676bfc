/**
 * One console query as a node-postgres Submittable: the text goes as one simple-protocol Query (so a
 * multi-statement text runs as psql would send it), and the answer is kept within bounds while it
 * arrives — at most `maxRows` rows per result, `maxChars` characters of values in all, and `maxCells`
 * values, rows and column descriptions in all (a NULL or an empty value costs a cell though it has no
 * characters: one text of many statements, each of many rows of NULLs, must not fill the memory); the rest
 * is read and dropped, never held (node-postgres' own Query keeps every row). COPY FROM STDIN is answered with
 * CopyFail: the console sends no data.
 */
import { EventEmitter } from "node:events";
import type pg from "pg";

export interface ConsoleColumn {
  name: string;
  typeOid: number;
}

export interface ConsoleResult {
  command: string | null;
  rowCount: number | null;
  columns: ConsoleColumn[];
  rows: (string | null)[][];
  truncated: boolean;
}

export interface ConsoleError {
  sqlstate: string;
  message: string;
  detail: string | null;
  hint: string | null;
  position: number | null;
  /** FATAL or PANIC: the connection is over (a kill, the activation's end). */
  fatal: boolean;
}

export interface ConsoleAnswer {
  results: ConsoleResult[];
  error: ConsoleError | null;
}

/** What node-postgres hands a Submittable (the parts read here). */
interface Connection {
  query(text: string): void;
  sendCopyFail(message: string): void;
}

/** The command tag's verb and row count: "INSERT 0 3" → INSERT, 3; "SELECT 5" → SELECT, 5; "BEGIN" → BEGIN, null. */
export function parseCommandTag(tag: string): { command: string | null; rowCount: number | null } {
  const words = tag.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return { command: null, rowCount: null };
  const last = words.at(-1)!;
  const count = words.length > 1 && /^\d+$/.test(last) ? Number(last) : null;
  return { command: words[0]!.toUpperCase(), rowCount: count };
}

/** A server error (pg DatabaseError or a plain Error from a lost connection) in the console's shape. */
export function consoleErrorOf(error: unknown): ConsoleError {
  const e = error as Partial<pg.DatabaseError> & { message?: string };
  const severity = e.severity ?? "";
  const position = e.position !== undefined ? Number(e.position) : NaN;
  return {
    sqlstate: typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : "08006",
    message: String(e.message ?? error),
    detail: e.detail ?? null,
    hint: e.hint ?? null,
    position: Number.isInteger(position) ? position : null,
    // No SQLSTATE at all: the socket itself failed.
    fatal: severity === "FATAL" || severity === "PANIC" || typeof e.code !== "string",
  };
}

/** Values, rows and column descriptions kept per query at most (each is an object or a slot in memory). */
export const DEFAULT_MAX_CELLS = 500_000;

export class ConsoleQuery extends EventEmitter implements pg.Submittable {
  readonly done: Promise<ConsoleAnswer>;
  private settle!: (answer: ConsoleAnswer) => void;
  private readonly results: ConsoleResult[] = [];
  private current: ConsoleResult | null = null;
  private chars = 0;
  private cells = 0;
  private finished = false;
  private readonly limits: { maxRows: number; maxChars: number; maxCells: number };

  constructor(
    readonly text: string,
    limits: { maxRows: number; maxChars: number; maxCells?: number },
  ) {
    super();
    this.limits = { maxCells: DEFAULT_MAX_CELLS, ...limits };
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  submit(connection: pg.Connection): void {
    (connection as unknown as Connection).query(this.text);
  }

  handleRowDescription(message: { fields: { name: string; dataTypeID: number }[] }): void {
    // Past the cell budget a result keeps neither its columns nor rows, only its tag (and says it was cut).
    const fits = this.cells + message.fields.length <= this.limits.maxCells;
    if (fits) this.cells += message.fields.length;
    this.current = {
      command: null,
      rowCount: null,
      columns: fits ? message.fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID })) : [],
      rows: [],
      truncated: !fits,
    };
  }

  handleDataRow(message: { fields: (string | Buffer | null)[] }): void {
    const result = this.current;
    if (!result) return;
    if (
      result.rows.length >= this.limits.maxRows ||
      this.chars >= this.limits.maxChars ||
      this.cells >= this.limits.maxCells ||
      (result.columns.length === 0 && message.fields.length > 0)
    ) {
      result.truncated = true;
      return;
    }
    // The row and each of its values cost a cell; the row that crosses the budget is kept whole (its width is
    // at most the server's 1,664 columns).
    this.cells += 1 + message.fields.length;
    const row: (string | null)[] = [];
    for (const field of message.fields) {
      if (field === null) {
        row.push(null);
        continue;
      }
      const text = typeof field === "string" ? field : field.toString("utf8");
      const room = this.limits.maxChars - this.chars;
      if (text.length > room) {
        row.push(text.slice(0, Math.max(0, room)));
        result.truncated = true;
        this.chars = this.limits.maxChars;
      } else {
        row.push(text);
        this.chars += text.length;
      }
    }
    result.rows.push(row);
  }

  handleCommandComplete(message: { text: string }): void {
    const tag = parseCommandTag(message.text);
    const result = this.current ?? { command: null, rowCount: null, columns: [], rows: [], truncated: false };
    result.command = tag.command;
    result.rowCount = tag.rowCount;
    this.results.push(result);
    this.current = null;
  }

  handleEmptyQuery(): void {
    this.results.push({ command: null, rowCount: null, columns: [], rows: [], truncated: false });
  }

  handleError(error: Error): void {
    this.finish(consoleErrorOf(error));
  }

  handleReadyForQuery(): void {
    this.finish(null);
  }

  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail("The SQL console sends no COPY data: use COPY … FROM STDIN from psql.");
  }

  handleCopyData(): void {}

  handlePortalSuspended(): void {}

  private finish(error: ConsoleError | null): void {
    if (this.finished) return;
    this.finished = true;
    this.settle({ results: this.results, error });
  }
}
