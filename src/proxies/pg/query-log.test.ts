/**
 * The query-log tracker fed real wire bytes: each fixture is a conversation written with the codec's
 * encoders (and its field writers for the messages it has no encoder for), framed by the codec's
 * readers, with a clock moved by hand.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  createBackendReader,
  createFrontendReader,
  encodeErrorResponse,
  encodeQuery,
  encodeReadyForQuery,
  encodeSync,
} from "../../lib/pg-wire.js";
import { cstring, int16, int32, typed } from "../../lib/pg-wire/buffers.js";
import { parseRecording, queryLogHeader, queryLogLine, queryLogSentLine } from "../../contract/recording.js";
import type { QueryLogEntry, QueryLogResult, SentStatement } from "../../modules/sessions/sessions.types.js";
import { createQueryLogTracker, describeParameters, parseCommandTag } from "./query-log.js";

const fe = {
  query: encodeQuery,
  sync: encodeSync,
  parse: (name: string, query: string, types: number[] = []) =>
    typed("P", cstring(name), cstring(query), int16(types.length), ...types.map(int32)),
  bind: (portal: string, statement: string, formats: number[], params: (Buffer | string | null)[]) =>
    typed(
      "B",
      cstring(portal),
      cstring(statement),
      int16(formats.length),
      ...formats.map(int16),
      int16(params.length),
      ...params.map((p) => {
        if (p === null) return int32(-1);
        const bytes = typeof p === "string" ? Buffer.from(p, "utf8") : p;
        return Buffer.concat([int32(bytes.length), bytes]);
      }),
      int16(0),
    ),
  describe: (target: "S" | "P", name: string) => typed("D", Buffer.from(target, "latin1"), cstring(name)),
  execute: (portal: string, maxRows = 0) => typed("E", cstring(portal), int32(maxRows)),
  copyData: (text: string) => typed("d", Buffer.from(text, "utf8")),
  copyDone: () => typed("c"),
};

const be = {
  parseComplete: () => typed("1"),
  bindComplete: () => typed("2"),
  noData: () => typed("n"),
  rowDescription: () =>
    typed("T", int16(1), cstring("n"), int32(0), int16(0), int32(23), int16(4), int32(-1), int16(0)),
  dataRow: (value: string) => typed("D", int16(1), int32(Buffer.byteLength(value)), Buffer.from(value)),
  commandComplete: (tag: string) => typed("C", cstring(tag)),
  emptyQuery: () => typed("I"),
  portalSuspended: () => typed("s"),
  copyIn: () => typed("G", Buffer.of(0), int16(0)),
  copyOut: () => typed("H", Buffer.of(0), int16(0)),
  copyData: (text: string) => typed("d", Buffer.from(text, "utf8")),
  copyDone: () => typed("c"),
  error: (code: string, message: string) => encodeErrorResponse({ severity: "ERROR", code, message }),
  ready: () => encodeReadyForQuery("I"),
};

/** At time `at` (ms), the client sent `client` and/or the server sent `server`. */
interface Step {
  at: number;
  client?: Buffer[];
  server?: Buffer[];
}

function run(steps: Step[], keepParameters = true): QueryLogEntry[] {
  let time = 0;
  const tracker = createQueryLogTracker({ keepParameters, now: () => time });
  const frontend = createFrontendReader({ startupDone: true });
  const backend = createBackendReader();
  const out: QueryLogEntry[] = [];
  for (const step of steps) {
    time = step.at;
    for (const message of frontend.push(Buffer.concat(step.client ?? []))) tracker.frontend(message);
    for (const message of backend.push(Buffer.concat(step.server ?? []))) out.push(...tracker.backend(message));
  }
  expect(tracker.pending()).toBe(0);
  return out;
}

const ok = (
  statement: string,
  durationMs: number,
  command: string,
  rows: number | null,
  parameters?: (string | null)[],
): QueryLogEntry => ({
  statement,
  durationMs,
  command,
  rows,
  error: null,
  ...(parameters === undefined ? {} : { parameters }),
});

const extended = (query: string, params: string[]) => [
  fe.parse("", query),
  fe.bind("", "", [], params),
  fe.describe("P", ""),
  fe.execute(""),
];

const CASES: { name: string; steps: Step[]; keepParameters?: boolean; expected: QueryLogEntry[] }[] = [
  {
    name: "simple query",
    steps: [
      { at: 100, client: [fe.query("SELECT n FROM t")] },
      {
        at: 105,
        server: [be.rowDescription(), be.dataRow("1"), be.dataRow("2"), be.commandComplete("SELECT 2"), be.ready()],
      },
    ],
    expected: [ok("SELECT n FROM t", 5, "SELECT", 2)],
  },
  {
    name: "multi-statement simple query: one entry per result, timed from the previous one",
    steps: [
      { at: 0, client: [fe.query("INSERT INTO t VALUES (1), (2); UPDATE t SET n = n + 1; CREATE TABLE u ()")] },
      { at: 3, server: [be.commandComplete("INSERT 0 2")] },
      { at: 7, server: [be.commandComplete("UPDATE 4")] },
      { at: 8, server: [be.commandComplete("CREATE TABLE"), be.ready()] },
    ],
    expected: [
      ok("INSERT INTO t VALUES (1), (2); UPDATE t SET n = n + 1; CREATE TABLE u ()", 3, "INSERT", 2),
      ok("INSERT INTO t VALUES (1), (2); UPDATE t SET n = n + 1; CREATE TABLE u ()", 4, "UPDATE", 4),
      ok("INSERT INTO t VALUES (1), (2); UPDATE t SET n = n + 1; CREATE TABLE u ()", 1, "CREATE TABLE", null),
    ],
  },
  {
    name: "simple query error",
    steps: [
      { at: 0, client: [fe.query("SELECT 1/0")] },
      { at: 2, server: [be.error("22012", "division by zero"), be.ready()] },
    ],
    expected: [{ statement: "SELECT 1/0", durationMs: 2, rows: null, command: null, error: "22012: division by zero" }],
  },
  {
    name: "empty query",
    steps: [
      { at: 0, client: [fe.query(" ")] },
      { at: 1, server: [be.emptyQuery(), be.ready()] },
    ],
    expected: [{ statement: " ", durationMs: 1, rows: null, command: null, error: null }],
  },
  {
    name: "extended protocol with text parameters and a NULL",
    steps: [
      {
        at: 10,
        client: [
          fe.parse("", "SELECT $1::int + $2::int"),
          fe.bind("", "", [], ["1", null]),
          fe.describe("P", ""),
          fe.execute(""),
          fe.sync(),
        ],
      },
      {
        at: 14,
        server: [
          be.parseComplete(),
          be.bindComplete(),
          be.rowDescription(),
          be.dataRow("1"),
          be.commandComplete("SELECT 1"),
          be.ready(),
        ],
      },
    ],
    expected: [ok("SELECT $1::int + $2::int", 4, "SELECT", 1, ["1", null])],
  },
  {
    name: "binary and mixed parameter formats",
    steps: [
      {
        at: 0,
        client: [
          fe.parse("", "INSERT INTO t VALUES ($1, $2)"),
          fe.bind("", "", [0, 1], ["héllo", Buffer.from([0, 0, 0, 7])]),
          fe.execute(""),
          fe.sync(),
        ],
      },
      { at: 1, server: [be.parseComplete(), be.bindComplete(), be.commandComplete("INSERT 0 1"), be.ready()] },
    ],
    expected: [ok("INSERT INTO t VALUES ($1, $2)", 1, "INSERT", 1, ["héllo", "<binary 4 bytes>"])],
  },
  {
    name: "parameters dropped unless the policy keeps them",
    keepParameters: false,
    steps: [
      { at: 0, client: [...extended("SELECT $1::text", ["secret-ish"]), fe.sync()] },
      {
        at: 2,
        server: [be.parseComplete(), be.bindComplete(), be.noData(), be.commandComplete("SELECT 0"), be.ready()],
      },
    ],
    expected: [ok("SELECT $1::text", 2, "SELECT", 0)],
  },
  {
    name: "a named statement prepared once and executed twice",
    steps: [
      { at: 0, client: [fe.parse("by_id", "SELECT * FROM t WHERE id = $1"), fe.describe("S", "by_id"), fe.sync()] },
      { at: 1, server: [be.parseComplete(), typed("t", int16(1), int32(23)), be.rowDescription(), be.ready()] },
      { at: 10, client: [fe.bind("", "by_id", [], ["7"]), fe.execute(""), fe.sync()] },
      { at: 12, server: [be.bindComplete(), be.dataRow("7"), be.commandComplete("SELECT 1"), be.ready()] },
      { at: 20, client: [fe.bind("", "by_id", [], ["8"]), fe.execute(""), fe.sync()] },
      { at: 23, server: [be.bindComplete(), be.commandComplete("SELECT 0"), be.ready()] },
    ],
    expected: [
      ok("SELECT * FROM t WHERE id = $1", 2, "SELECT", 1, ["7"]),
      ok("SELECT * FROM t WHERE id = $1", 3, "SELECT", 0, ["8"]),
    ],
  },
  {
    name: "pipelining: three executes before one Sync map in order",
    steps: [
      {
        at: 0,
        client: [
          ...extended("SELECT 'a'", []),
          ...extended("UPDATE t SET n = $1", ["5"]),
          fe.parse("ins", "INSERT INTO t VALUES ($1)"),
          fe.bind("p1", "ins", [], ["9"]),
          fe.execute("p1"),
          fe.sync(),
        ],
      },
      {
        at: 2,
        server: [
          be.parseComplete(),
          be.bindComplete(),
          be.rowDescription(),
          be.dataRow("a"),
          be.commandComplete("SELECT 1"),
        ],
      },
      { at: 5, server: [be.parseComplete(), be.bindComplete(), be.noData(), be.commandComplete("UPDATE 3")] },
      { at: 9, server: [be.parseComplete(), be.bindComplete(), be.commandComplete("INSERT 0 1"), be.ready()] },
    ],
    expected: [
      ok("SELECT 'a'", 2, "SELECT", 1, []),
      ok("UPDATE t SET n = $1", 3, "UPDATE", 3, ["5"]),
      ok("INSERT INTO t VALUES ($1)", 4, "INSERT", 1, ["9"]),
    ],
  },
  {
    name: "an error in a pipeline: one error entry, the skipped rest none, the next batch fine",
    steps: [
      { at: 0, client: [...extended("SELEC 1", []), ...extended("SELECT 2", []), fe.sync()] },
      { at: 1, server: [be.error("42601", 'syntax error at or near "SELEC"'), be.ready()] },
      { at: 5, client: [...extended("SELECT 3", []), fe.sync()] },
      {
        at: 6,
        server: [
          be.parseComplete(),
          be.bindComplete(),
          be.rowDescription(),
          be.dataRow("3"),
          be.commandComplete("SELECT 1"),
          be.ready(),
        ],
      },
    ],
    expected: [
      {
        statement: "SELEC 1",
        durationMs: 1,
        rows: null,
        command: null,
        error: '42601: syntax error at or near "SELEC"',
      },
      ok("SELECT 3", 1, "SELECT", 1, []),
    ],
  },
  {
    name: "a refused re-Parse of a named statement leaves the old text in place",
    steps: [
      { at: 0, client: [fe.parse("s1", "SELECT 1"), fe.sync()] },
      { at: 1, server: [be.parseComplete(), be.ready()] },
      { at: 2, client: [fe.parse("s1", "SELECT 2"), fe.bind("", "s1", [], []), fe.execute(""), fe.sync()] },
      { at: 3, server: [be.error("42P05", 'prepared statement "s1" already exists'), be.ready()] },
      { at: 4, client: [fe.bind("", "s1", [], []), fe.execute(""), fe.sync()] },
      { at: 6, server: [be.bindComplete(), be.dataRow("1"), be.commandComplete("SELECT 1"), be.ready()] },
    ],
    expected: [
      {
        statement: "SELECT 2",
        durationMs: 1,
        rows: null,
        command: null,
        error: '42P05: prepared statement "s1" already exists',
      },
      ok("SELECT 1", 2, "SELECT", 1, []),
    ],
  },
  {
    name: "an error at Bind carries the statement and its parameters",
    steps: [
      { at: 0, client: [...extended("SELECT $1::int", ["abc"]), fe.sync()] },
      {
        at: 1,
        server: [be.parseComplete(), be.error("22P02", 'invalid input syntax for type integer: "abc"'), be.ready()],
      },
    ],
    expected: [
      {
        statement: "SELECT $1::int",
        parameters: ["abc"],
        durationMs: 1,
        rows: null,
        command: null,
        error: '22P02: invalid input syntax for type integer: "abc"',
      },
    ],
  },
  {
    name: "a portal fetched in pieces: PortalSuspended counts the rows it delivered",
    steps: [
      { at: 0, client: [fe.parse("", "SELECT * FROM t"), fe.bind("c", "", [], []), fe.execute("c", 2), fe.sync()] },
      {
        at: 1,
        server: [
          be.parseComplete(),
          be.bindComplete(),
          be.dataRow("1"),
          be.dataRow("2"),
          be.portalSuspended(),
          be.ready(),
        ],
      },
      { at: 3, client: [fe.execute("c", 2), fe.sync()] },
      { at: 4, server: [be.dataRow("3"), be.commandComplete("SELECT 1"), be.ready()] },
    ],
    expected: [
      { statement: "SELECT * FROM t", parameters: [], durationMs: 1, rows: 2, command: null, error: null },
      ok("SELECT * FROM t", 1, "SELECT", 1, []),
    ],
  },
  {
    name: "COPY FROM STDIN",
    steps: [
      { at: 0, client: [fe.query("COPY t FROM STDIN")] },
      { at: 1, server: [be.copyIn()] },
      { at: 2, client: [fe.copyData("1\n2\n"), fe.copyData("3\n"), fe.copyDone()] },
      { at: 4, server: [be.commandComplete("COPY 3"), be.ready()] },
    ],
    expected: [ok("COPY t FROM STDIN", 4, "COPY", 3)],
  },
  {
    name: "COPY TO STDOUT",
    steps: [
      { at: 0, client: [fe.query("COPY t TO STDOUT")] },
      {
        at: 3,
        server: [
          be.copyOut(),
          be.copyData("1\n"),
          be.copyData("2\n"),
          be.copyDone(),
          be.commandComplete("COPY 2"),
          be.ready(),
        ],
      },
    ],
    expected: [ok("COPY t TO STDOUT", 3, "COPY", 2)],
  },
];

describe("query log tracker", () => {
  it.each(CASES)("$name", ({ steps, keepParameters, expected }) => {
    expect(run(steps, keepParameters)).toEqual(expected);
  });

  it("a FATAL error with nothing pending is still logged", () => {
    const entries = run([
      { at: 0, server: [encodeErrorResponse({ severity: "FATAL", code: "57P01", message: "terminating" })] },
    ]);
    expect(entries).toEqual([{ statement: "", durationMs: 0, rows: null, command: null, error: "57P01: terminating" }]);
  });

  it("interrupt() logs the statements still waiting for a result, marked interrupted, once (finding 8)", () => {
    let time = 0;
    const tracker = createQueryLogTracker({ keepParameters: true, now: () => time });
    const frontend = createFrontendReader({ startupDone: true });
    const backend = createBackendReader();
    for (const m of frontend.push(
      Buffer.concat([fe.query("SELECT pg_sleep(60)"), ...extended("SELECT $1", ["7"]), fe.sync()]),
    ))
      tracker.frontend(m);
    time = 5;
    for (const m of backend.push(Buffer.concat([typed("T", int16(0)), typed("D", int16(0)), typed("D", int16(0))])))
      tracker.backend(m);
    time = 9;
    expect(tracker.interrupt("killed")).toEqual([
      {
        statement: "SELECT pg_sleep(60)",
        durationMs: 9,
        rows: 2,
        command: null,
        error: "interrupted: killed",
        interrupted: true,
      },
      {
        statement: "SELECT $1",
        parameters: ["7"],
        durationMs: 0,
        rows: null,
        command: null,
        error: "interrupted: killed",
        interrupted: true,
      },
    ]);
    expect(tracker.pending()).toBe(0);
    expect(tracker.interrupt("killed")).toEqual([]);
  });
});

describe("command tags and parameters", () => {
  it.each([
    ["SELECT 3", "SELECT", 3],
    ["INSERT 0 5", "INSERT", 5],
    ["UPDATE 0", "UPDATE", 0],
    ["COPY 12", "COPY", 12],
    ["CREATE TABLE", "CREATE TABLE", null],
    ["BEGIN", "BEGIN", null],
    ["FETCH 10", "FETCH", 10],
  ])("%s", (tag, command, rows) => {
    expect(parseCommandTag(tag)).toEqual({ command, rows });
  });

  it("reads any tag as the general rule does (words; trailing numbers are counts, the last one the rows)", () => {
    const general = (tag: string) => {
      const words = tag.trim().split(/\s+/);
      let end = words.length;
      while (end > 0 && /^\d+$/.test(words[end - 1] ?? "")) end--;
      const counts = words.slice(end);
      const command = words.slice(0, end).join(" ");
      return { command: command === "" ? tag : command, rows: counts.length > 0 ? Number(counts.at(-1)) : null };
    };
    const tagText = fc.stringMatching(/^[A-Z0-9 \t]{0,12}$/);
    fc.assert(
      fc.property(tagText, (tag) => {
        expect(parseCommandTag(tag)).toEqual(general(tag));
      }),
    );
  });

  it("a recorded line is the entry as JSON, its time first", () => {
    const entries: QueryLogEntry[] = [
      { statement: "SELECT 1", durationMs: 0.25, rows: 1, command: "SELECT", error: null },
      {
        statement: 'say "hi"\n\u2028',
        durationMs: 0,
        rows: null,
        command: null,
        error: "42P01: no",
        parameters: ["x", null],
      },
      { statement: "", durationMs: 3, rows: 2, command: null, error: "interrupted: killed", interrupted: true },
    ];
    for (const [i, entry] of entries.entries()) {
      const time = [0, 1.5, 12345.678][i]!;
      expect(queryLogLine(time, entry)).toBe(`${JSON.stringify({ t: time, ...entry })}\n`);
    }
    const text = fc.string({ unit: "grapheme-composite" });
    const number = fc.oneof(fc.double(), fc.integer());
    fc.assert(
      fc.property(
        number,
        fc.record(
          {
            statement: text,
            durationMs: number,
            rows: fc.option(number),
            command: fc.option(text),
            error: fc.option(text),
            parameters: fc.array(fc.option(text), { maxLength: 3 }),
            interrupted: fc.constant(true as const),
          },
          { requiredKeys: ["statement", "durationMs", "rows", "command", "error"] },
        ),
        (time, entry) => {
          expect(queryLogLine(time, entry)).toBe(`${JSON.stringify({ t: time, ...entry })}\n`);
        },
      ),
    );
  });

  it("decodes text, describes binary, keeps NULL", () => {
    expect(describeParameters([], [Buffer.from("x"), null])).toEqual(["x", null]);
    expect(describeParameters([1], [Buffer.alloc(8), Buffer.alloc(2)])).toEqual([
      "<binary 8 bytes>",
      "<binary 2 bytes>",
    ]);
    expect(describeParameters([1, 0], [Buffer.alloc(8), Buffer.from("y")])).toEqual(["<binary 8 bytes>", "y"]);
  });

  it("logged when sent: a statement that runs reaches `sent` as its message completes, before any answer; read back, the recording is the entries", () => {
    let time = 0;
    const meta = { session: "s1", user: "ann", role: "db", target: "db", login: "app", startedAt: new Date(0) };
    const lines = [queryLogHeader(meta, "postgres")];
    const sent: SentStatement[] = [];
    const entries: QueryLogResult[] = [];
    const tracker = createQueryLogTracker({
      keepParameters: true,
      now: () => time,
      sent: (statement) => {
        sent.push(statement);
        lines.push(queryLogSentLine(time / 1000, statement));
      },
    });
    const frontend = createFrontendReader({ startupDone: true });
    const backend = createBackendReader();
    const client = (...messages: Buffer[]) => {
      for (const message of frontend.push(Buffer.concat(messages))) tracker.frontend(message);
    };
    const server = (...messages: Buffer[]) => {
      for (const message of backend.push(Buffer.concat(messages)))
        for (const entry of tracker.backend(message)) {
          entries.push(entry);
          lines.push(queryLogLine(time / 1000, entry));
        }
    };
    client(fe.query("INSERT INTO t VALUES (1); SELECT 2"));
    expect(sent).toEqual([{ id: 1, statement: "INSERT INTO t VALUES (1); SELECT 2" }]);
    time = 4;
    server(be.commandComplete("INSERT 0 1"), be.commandComplete("SELECT 1"), be.ready());
    // Parse, Bind and Describe run nothing; the Execute is the statement, with its parameters.
    client(...extended("SELECT $1::int", ["7"]), fe.sync());
    expect(sent.slice(1)).toEqual([{ id: 2, statement: "SELECT $1::int", parameters: ["7"] }]);
    time = 9;
    server(be.parseComplete(), be.bindComplete(), be.noData(), be.commandComplete("SELECT 1"), be.ready());
    // A Parse the server refuses ran nothing: no sent line, its error one whole line.
    client(fe.parse("", "SELEC oops"), fe.sync());
    server(be.error("42601", 'syntax error at or near "SELEC"'), be.ready());
    // Sent, and the recording stopped before its result (its size limit, a crash).
    client(fe.query("SELECT pg_sleep(10)"));
    expect(sent.map((statement) => statement.id)).toEqual([1, 2, 3]);
    expect(entries.map((entry) => entry.sent)).toEqual([1, 1, 2, undefined]);
    const parsed = parseRecording(lines.join(""));
    expect(parsed.kind === "postgres" && parsed.queries.map(({ t: _t, ...entry }) => entry)).toEqual([
      ...entries.map(({ sent: _sent, ...entry }) => entry),
      { statement: "SELECT pg_sleep(10)", durationMs: 0, rows: null, command: null, error: null, interrupted: true },
    ]);
    // A result line names its statement's line instead of repeating the text.
    expect(lines[2]).toBe('{"t":0.004,"of":1,"durationMs":4,"rows":1,"command":"INSERT","error":null}\n');
    tracker.interrupt("client_closed");
  });
});
