import { describe, expect, it } from "vitest";
import { ConsoleQuery, consoleErrorOf, parseCommandTag } from "./console-query.js";

function feed(query: ConsoleQuery, rows: number, columns = ["g"]) {
  query.handleRowDescription({ fields: columns.map((name) => ({ name, dataTypeID: 23 })) });
  for (let i = 1; i <= rows; i++) query.handleDataRow({ fields: columns.map(() => String(i)) });
  query.handleCommandComplete({ text: `SELECT ${rows}` });
}

describe("console query", () => {
  it("reads command tags", () => {
    expect(parseCommandTag("SELECT 5")).toEqual({ command: "SELECT", rowCount: 5 });
    expect(parseCommandTag("INSERT 0 3")).toEqual({ command: "INSERT", rowCount: 3 });
    expect(parseCommandTag("BEGIN")).toEqual({ command: "BEGIN", rowCount: null });
    expect(parseCommandTag("CREATE TABLE")).toEqual({ command: "CREATE", rowCount: null });
    expect(parseCommandTag("")).toEqual({ command: null, rowCount: null });
  });

  it("keeps at most maxRows rows per result and says it cut them; the tag's count stays true", async () => {
    const query = new ConsoleQuery("x", { maxRows: 10, maxChars: 1_000_000 });
    feed(query, 25);
    feed(query, 3);
    query.handleReadyForQuery();
    const answer = await query.done;
    expect(answer.error).toBeNull();
    expect(answer.results.map((r) => [r.rows.length, r.truncated, r.rowCount])).toEqual([
      [10, true, 25],
      [3, false, 3],
    ]);
  });

  it("keeps at most maxChars characters of values across results, cutting the value that crosses it", async () => {
    const query = new ConsoleQuery("x", { maxRows: 1000, maxChars: 10 });
    query.handleRowDescription({ fields: [{ name: "s", dataTypeID: 25 }] });
    query.handleDataRow({ fields: ["abcdef"] });
    query.handleDataRow({ fields: ["ghijklmnop"] });
    query.handleDataRow({ fields: ["never"] });
    query.handleDataRow({ fields: [null] });
    query.handleCommandComplete({ text: "SELECT 4" });
    query.handleReadyForQuery();
    const [result] = (await query.done).results;
    expect(result!.rows).toEqual([["abcdef"], ["ghij"]]);
    expect(result!.truncated).toBe(true);
  });

  it("keeps at most maxCells values, rows and columns in all, NULL and empty ones too (a flood of empty rows is bounded)", async () => {
    // Found by review: only characters of values were counted, so NULLs, empty strings, rows without columns and
    // column descriptions were kept for free: a 64 KiB text of statements, each 1,000 rows of 1,600 NULLs, held
    // billions of cells in the server's memory (the limit of 1,000 rows is per result, not per query).
    const query = new ConsoleQuery("x", { maxRows: 1000, maxChars: 1_000_000, maxCells: 5000 });
    const wide = Array.from({ length: 20 }, (_, i) => `c${i}`);
    for (let statement = 0; statement < 50; statement++) {
      query.handleRowDescription({ fields: wide.map((name) => ({ name, dataTypeID: 25 })) });
      for (let i = 0; i < 10; i++) query.handleDataRow({ fields: wide.map((_, c) => (c % 2 ? null : "")) });
      query.handleCommandComplete({ text: "SELECT 10" });
      query.handleRowDescription({ fields: [] });
      for (let i = 0; i < 1000; i++) query.handleDataRow({ fields: [] });
      query.handleCommandComplete({ text: "SELECT 1000" });
    }
    query.handleReadyForQuery();
    const answer = await query.done;
    const kept = answer.results.reduce(
      (sum, r) => sum + r.columns.length + r.rows.length + r.rows.reduce((n, row) => n + row.length, 0),
      0,
    );
    // The bound, give or take the one row that crosses it.
    expect(kept).toBeLessThanOrEqual(5000 + wide.length);
    expect(answer.results).toHaveLength(100);
    expect(answer.results[0]).toMatchObject({ rowCount: 10, truncated: false });
    expect(answer.results[1]!.rows).toHaveLength(1000);
    expect(answer.results[0]!.rows[0]!.slice(0, 2)).toEqual(["", null]);
    expect(answer.results.at(-1)).toMatchObject({ rowCount: 1000, truncated: true, rows: [] });
  });

  it("an error ends the answer with the results before it; a FATAL one or a lost socket is fatal", async () => {
    const query = new ConsoleQuery("x", { maxRows: 10, maxChars: 100 });
    feed(query, 1);
    query.handleError(Object.assign(new Error("division by zero"), { code: "22012", severity: "ERROR" }));
    query.handleReadyForQuery();
    const answer = await query.done;
    expect(answer.results).toHaveLength(1);
    expect(answer.error).toMatchObject({ sqlstate: "22012", message: "division by zero", fatal: false });
    expect(consoleErrorOf(Object.assign(new Error("revoked"), { code: "57P01", severity: "FATAL" })).fatal).toBe(true);
    expect(consoleErrorOf(new Error("Connection terminated unexpectedly"))).toMatchObject({
      sqlstate: "08006",
      fatal: true,
    });
  });

  it("answers COPY FROM STDIN with CopyFail", () => {
    const query = new ConsoleQuery("COPY t FROM STDIN", { maxRows: 10, maxChars: 100 });
    const sent: string[] = [];
    query.handleCopyInResponse({ query: () => undefined, sendCopyFail: (m: string) => sent.push(m) });
    expect(sent).toHaveLength(1);
  });
});
