/**
 * docs/errors.md and the error registry stay in sync: every code in
 * ERROR_CODES has a row with its HTTP status, a meaning and what to do, and
 * the table lists no code that does not exist.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, type ErrorCode } from "../../src/lib/errors.js";

const DOC = new URL("../../docs/errors.md", import.meta.url);
const COLUMNS = ["code", "status", "meaning", "what to do"];

interface DocRow {
  code: string;
  status: number;
  meaning: string;
  action: string;
}

/** The one table of the page whose header is Code | Status | Meaning | What to do. */
function parseErrorTable(markdown: string): DocRow[] {
  const lines = markdown.split("\n");
  const cells = (line: string) =>
    line
      .trim()
      .replace(/^\|/, "")
      .replace(/\|$/, "")
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim());
  const start = lines.findIndex(
    (line) =>
      line.trim().startsWith("|") &&
      cells(line)
        .map((c) => c.toLowerCase())
        .join("|") === COLUMNS.join("|"),
  );
  if (start < 0) throw new Error(`docs/errors.md has no table with the columns ${COLUMNS.join(" | ")}`);
  if (!/^\|(\s*:?-+:?\s*\|)+$/.test(lines[start + 1]?.trim() ?? "")) throw new Error("the table has no delimiter row");
  const rows: DocRow[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.trim().startsWith("|")) break;
    const [code, status, meaning, action, ...extra] = cells(line);
    if (extra.length > 0 || action === undefined) throw new Error(`malformed row: ${line}`);
    rows.push({ code: code!.replace(/^`|`$/g, ""), status: Number(status), meaning: meaning!, action });
  }
  return rows;
}

describe("docs/errors.md", () => {
  const rows = parseErrorTable(readFileSync(DOC, "utf8"));
  const documented = rows.map((r) => r.code);

  it("parses a table of codes", () => {
    expect(rows.length).toBeGreaterThan(0);
    const twice = documented.filter((code, i) => documented.indexOf(code) !== i);
    expect(twice, "codes documented twice").toEqual([]);
  });

  it("documents every code in the registry", () => {
    expect(Object.keys(ERROR_CODES).filter((code) => !documented.includes(code))).toEqual([]);
  });

  it("documents no code that does not exist", () => {
    expect(documented.filter((code) => !Object.hasOwn(ERROR_CODES, code))).toEqual([]);
  });

  it.each(Object.entries(ERROR_CODES) as [ErrorCode, { status: number }][])(
    "%s has its HTTP status, a meaning and what to do",
    (code, { status }) => {
      const row = rows.find((r) => r.code === code);
      expect(row, `${code} is not in docs/errors.md`).toBeDefined();
      expect(row!.status, `${code}: status in docs/errors.md`).toBe(status);
      expect(row!.meaning.length, `${code}: meaning`).toBeGreaterThan(10);
      expect(row!.action.length, `${code}: what to do`).toBeGreaterThan(10);
    },
  );
});
