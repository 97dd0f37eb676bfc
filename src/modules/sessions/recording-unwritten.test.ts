import { describe, expect, it } from "vitest";
import { queryLogLine, queryLogSentLine } from "../../contract/recording.js";
import { UNWRITTEN_LISTED_CHARS, UNWRITTEN_STATEMENT_CHARS, unwrittenLines } from "./recording-unwritten.js";

const sent = (id: number, statement: string) => Buffer.from(queryLogSentLine(1.5, { id, statement }));
const result = (of: number) =>
  Buffer.from(queryLogLine(2, { sent: of, statement: "", durationMs: 1, rows: 1, command: "INSERT", error: null }));

describe("unwrittenLines: what a failed recording took and lost", () => {
  it("nothing lost: null", () => {
    expect(unwrittenLines("postgres", [])).toBeNull();
  });

  it("a database session's statements as the query log holds them, results counted as lines only", () => {
    const pieces = [sent(7, "INSERT INTO t VALUES (7)"), result(7), sent(8, "DROP TABLE t")];
    expect(unwrittenLines("mysql", pieces)).toEqual({
      lines: 3,
      bytes: pieces.reduce((sum, piece) => sum + piece.length, 0),
      statements: [
        { t: 1.5, sent: 7, statement: "INSERT INTO t VALUES (7)" },
        { t: 1.5, sent: 8, statement: "DROP TABLE t" },
      ],
    });
  });

  it("bounded: a long statement is cut (its length kept), and past the listed budget statements are counted with their numbers", () => {
    const long = "x".repeat(UNWRITTEN_STATEMENT_CHARS + 10);
    const many = Math.ceil(UNWRITTEN_LISTED_CHARS / 1000) + 5;
    const pieces = [sent(1, long), ...Array.from({ length: many }, (_, i) => sent(i + 2, "y".repeat(1000)))];
    const summary = unwrittenLines("postgres", pieces)!;
    expect(summary.statements![0]).toMatchObject({ sent: 1, cut: long.length });
    expect(summary.statements![0]!.statement).toHaveLength(UNWRITTEN_STATEMENT_CHARS);
    expect(JSON.stringify(summary.statements).length).toBeLessThanOrEqual(UNWRITTEN_LISTED_CHARS + 1);
    const listed = summary.statements!.length;
    expect(summary.omitted).toEqual({ count: many + 1 - listed, firstSent: listed + 1, lastSent: many + 1 });
  });

  it("a lost statement carrying a password goes to the audit event without it, and so do its bound values", () => {
    const pieces = [
      sent(3, "ALTER ROLE app PASSWORD 'Hunter2-s3cret'"),
      Buffer.from(
        queryLogSentLine(1.5, {
          id: 4,
          statement: "UPDATE users SET password = $1 WHERE id = $2",
          parameters: ["Hunter2-s3cret", "7"],
        }),
      ),
      Buffer.from(queryLogSentLine(1.5, { id: 5, statement: "UPDATE t SET v = $1", parameters: ["kept", null] })),
    ];
    const summary = unwrittenLines("postgres", pieces)!;
    expect(JSON.stringify(summary)).not.toContain("Hunter2-s3cret");
    expect(summary.statements).toEqual([
      { t: 1.5, sent: 3, statement: "ALTER ROLE app PASSWORD '<redacted>'" },
      {
        t: 1.5,
        sent: 4,
        statement: "UPDATE users SET password = $1 WHERE id = $2",
        parameters: ["<redacted>", "<redacted>"],
      },
      { t: 1.5, sent: 5, statement: "UPDATE t SET v = $1", parameters: ["kept", null] },
    ]);
  });

  it("an SSH recording's lost frames are counted, not listed", () => {
    const pieces = [Buffer.from('[0.5,"i","rm -rf /tmp/x\\r"]\n')];
    expect(unwrittenLines("ssh", pieces)).toEqual({ lines: 1, bytes: pieces[0]!.length });
  });
});
