/**
 * The query guard on bytes (no sockets): what goes upstream for allowed and refused messages, how the
 * server's answer to a refusal is rewritten, and that none of it depends on how the stream is cut
 * into chunks.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { queryRules } from "../../contract/query-policy.js";
import {
  encodeErrorResponse,
  encodeQuery,
  encodeReadyForQuery,
  encodeSync,
  parseBackendMessage,
  parseFrontendMessage,
} from "../../lib/pg-wire.js";
import { createQueryGuard, readParse, type QueryRefusal } from "./query-guard.js";
import { loadQueryParser } from "./query-policy.js";
import { messageTypes } from "./wire-stream.js";
import { cstring, frame } from "../../testing/pg-proxy-harness.js";

const NONCE = "feedc0de";

const parse = (name: string, sql: string) => frame("P", cstring(name), cstring(sql), Buffer.of(0, 0));
const bind = (statement: string) => frame("B", cstring(""), cstring(statement), Buffer.alloc(6));
const execute = () => frame("E", cstring(""), Buffer.alloc(4));
const copyData = (bytes: number) => frame("d", Buffer.alloc(bytes, 0x61));
const dataRow = (bytes: number) =>
  frame("D", Buffer.of(0, 1), Buffer.from([0, 0, 0, bytes]), Buffer.alloc(bytes, 0x62));

function setup() {
  const refusals: QueryRefusal[] = [];
  const clientFrames: string[] = [];
  const serverFrames: string[] = [];
  const guard = createQueryGuard({
    rules: queryRules.parse({}),
    keepClient: messageTypes("QPBDECF"),
    keepServer: messageTypes("CE"),
    onClientFrame: (type, body) => clientFrames.push(`${String.fromCharCode(type)}:${body?.length ?? "-"}`),
    onServerFrame: (type, body) =>
      serverFrames.push(
        type === 0x45 && body !== null
          ? `E:${JSON.stringify(parseBackendMessage("E", body))}`
          : `${String.fromCharCode(type)}:${body?.length ?? "-"}`,
      ),
    onRefusal: (refusal) => refusals.push(refusal),
    nonce: NONCE,
  });
  return { guard, refusals, clientFrames, serverFrames };
}

type Side = "client" | "server";

/** Runs `bytes` through one side cut at `cuts`; returns the bytes passed on and what the callbacks saw. */
function run(side: Side, bytes: Buffer, cuts: number[], prime?: (g: ReturnType<typeof setup>) => void) {
  const context = setup();
  prime?.(context);
  const out: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    context.guard[side].push(bytes.subarray(start, cut), (piece) => out.push(Buffer.from(piece)));
    start = cut;
  }
  return { out: Buffer.concat(out), ...context };
}

/** The token the guard sends for its n-th refusal. */
const token = (n: number) => `stint_refused_${NONCE}_${n}`;

beforeAll(async () => {
  await loadQueryParser();
});

describe("client → server", () => {
  const allowed = encodeQuery("SELECT * FROM t WHERE id = 1");
  const refused = encodeQuery("DELETE FROM t WHERE id = 1");
  const stream = Buffer.concat([
    allowed,
    parse("s1", "SELECT $1::int"),
    bind("s1"),
    execute(),
    encodeSync(),
    refused,
    copyData(70_000),
    parse("", "UPDATE t SET x = 1 WHERE id = 2"),
    bind(""),
    execute(),
    encodeSync(),
    frame("F", Buffer.alloc(4), Buffer.alloc(2), Buffer.alloc(2), Buffer.alloc(2)),
    encodeQuery("SELECT 2"),
  ]);
  const expected = Buffer.concat([
    allowed,
    parse("s1", "SELECT $1::int"),
    bind("s1"),
    execute(),
    encodeSync(),
    encodeQuery(token(1)),
    copyData(70_000),
    parse("", token(2)),
    bind(""),
    execute(),
    encodeSync(),
    encodeQuery(token(3)),
    encodeQuery("SELECT 2"),
  ]);

  it("allowed messages pass unchanged; a refused Query, Parse or FunctionCall goes as the token", () => {
    const { out, refusals, clientFrames } = run("client", stream, []);
    expect(out.equals(expected)).toBe(true);
    expect(refusals.map((r) => [r.rule, r.protocol, r.statement])).toEqual([
      ["statement_kind", "simple", "DELETE FROM t WHERE id = 1"],
      ["statement_kind", "extended", "UPDATE t SET x = 1 WHERE id = 2"],
      ["function_call", "function_call", ""],
    ]);
    // The query log sees the client's own messages, in order, bodies included.
    expect(clientFrames.map((f) => f[0]).join("")).toBe("QPBESQdPBESFQ");
    const substitute = parseFrontendMessage("P", parse("", token(2)).subarray(5));
    expect(substitute).toMatchObject({ kind: "Parse", name: "", query: token(2) });
  });

  it("the same output however the stream is cut (every single cut, then bytes one by one)", () => {
    const whole = run("client", stream, []);
    for (let cut = 1; cut < stream.length; cut += cut < 200 ? 1 : 997) {
      const split = run("client", stream, [cut]);
      expect(split.out.equals(expected), `cut at ${cut}`).toBe(true);
      expect(split.clientFrames, `cut at ${cut}`).toEqual(whole.clientFrames);
    }
    const small = Buffer.concat([allowed, refused, parse("", "SELECT 1"), encodeSync()]);
    const bytewise = run(
      "client",
      small,
      Array.from({ length: small.length - 1 }, (_, i) => i + 1),
    );
    expect(
      bytewise.out.equals(Buffer.concat([allowed, encodeQuery(token(1)), parse("", "SELECT 1"), encodeSync()])),
    ).toBe(true);
  });

  it("an allowed frame inside one chunk passes as that chunk (no copy)", () => {
    const { guard } = setup();
    const pieces: Buffer[] = [];
    const chunk = Buffer.concat([allowed, parse("", "SELECT 1"), encodeSync()]);
    guard.client.push(chunk, (piece) => pieces.push(piece));
    expect(pieces).toHaveLength(1);
    expect(pieces[0]).toBe(chunk);
  });

  it("a Query whose text has no NUL is refused (fail closed)", () => {
    const { out, refusals } = run("client", frame("Q", Buffer.from("SELECT 1")), []);
    expect(out.equals(encodeQuery(token(1)))).toBe(true);
    expect(refusals[0]?.rule).toBe("unparsable");
  });

  it("a malformed Parse (no NUL, a wrong type count, bytes after) is refused; a well-formed one is read as the server reads it", () => {
    expect(readParse(parse("s", "SELECT 1").subarray(5))).toEqual({ name: "s", query: "SELECT 1" });
    expect(readParse(Buffer.concat([cstring("s"), cstring("SELECT $1"), Buffer.of(0, 1, 0, 0, 0, 23)]))).toEqual({
      name: "s",
      query: "SELECT $1",
    });
    const malformed = [
      Buffer.from("s"),
      Buffer.concat([cstring("s"), Buffer.from("SELECT 1")]),
      Buffer.concat([cstring("s"), cstring("SELECT 1"), Buffer.of(0)]),
      Buffer.concat([cstring("s"), cstring("SELECT 1"), Buffer.of(0, 1)]),
      Buffer.concat([cstring("s"), cstring("SELECT 1"), Buffer.of(0, 0, 0)]),
    ];
    for (const body of malformed) {
      expect(readParse(body)).toBeNull();
      const { out, refusals } = run("client", frame("P", body), []);
      expect(refusals[0]?.rule).toBe("unparsable");
      expect(out.equals(frame("P", cstring(""), cstring(token(1)), Buffer.of(0, 0)))).toBe(true);
    }
  });

  it("EXECUTE runs only statements prepared under the policy in this session", () => {
    const sequence = Buffer.concat([
      encodeQuery("PREPARE ok AS SELECT 1"),
      encodeQuery("EXECUTE ok"),
      encodeQuery("PREPARE bad AS DELETE FROM t WHERE id = 1"),
      encodeQuery("EXECUTE bad"),
      parse("named", "SELECT 1"),
      encodeQuery("EXECUTE named"),
    ]);
    const { refusals } = run("client", sequence, []);
    expect(refusals.map((r) => `${r.rule}:${r.statement}`)).toEqual([
      "statement_kind:PREPARE bad AS DELETE FROM t WHERE id = 1",
      "prepared_unknown:EXECUTE bad",
    ]);
  });
});

describe("server → client", () => {
  const tokenError = (n: number) =>
    encodeErrorResponse({
      severity: "ERROR",
      code: "42601",
      message: `syntax error at or near "${token(n)}"`,
      extra: { P: "1" },
    });
  const otherError = encodeErrorResponse({ severity: "ERROR", code: "22012", message: "division by zero" });
  const rowsThenError = Buffer.concat([
    dataRow(60_000),
    frame("C", cstring("SELECT 1")),
    encodeReadyForQuery("I"),
    otherError,
    encodeReadyForQuery("I"),
    tokenError(1),
    encodeReadyForQuery("T"),
  ]);

  const prime = ({ guard }: ReturnType<typeof setup>) =>
    guard.client.push(encodeQuery("DELETE FROM t WHERE id = 1"), () => {});

  it("the token's error becomes the refusal (42501, the rule's sentence); everything else passes as sent", () => {
    const { out, serverFrames } = run("server", rowsThenError, [], prime);
    const refusal = encodeErrorResponse({
      severity: "ERROR",
      code: "42501",
      message:
        "refused by Stint query policy (rule statement_kind): DELETE needs dml; this role's policy allows select statements only",
    });
    const expected = Buffer.concat([
      dataRow(60_000),
      frame("C", cstring("SELECT 1")),
      encodeReadyForQuery("I"),
      otherError,
      encodeReadyForQuery("I"),
      refusal,
      encodeReadyForQuery("T"),
    ]);
    expect(out.equals(expected)).toBe(true);
    expect(serverFrames.filter((f) => f.startsWith("E:")).map((f) => JSON.parse(f.slice(2)).fields.C)).toEqual([
      "22012",
      "42501",
    ]);
    for (let cut = 1; cut < rowsThenError.length; cut += cut < 100 || cut > rowsThenError.length - 200 ? 1 : 1499) {
      expect(run("server", rowsThenError, [cut], prime).out.equals(expected), `cut at ${cut}`).toBe(true);
    }
  });

  it("an error naming another session's token (or an unknown number) is not rewritten", () => {
    const foreign = encodeErrorResponse({
      severity: "ERROR",
      code: "42601",
      message: 'syntax error at or near "stint_refused_0000000000000000_1"',
    });
    expect(
      run("server", Buffer.concat([foreign, tokenError(7)]), [], prime).out.equals(
        Buffer.concat([foreign, tokenError(7)]),
      ),
    ).toBe(true);
  });
});

describe("row limit (maxRows)", () => {
  const rowLimitError = encodeErrorResponse({
    severity: "ERROR",
    code: "54000",
    message: "result cut by Stint query policy (rule max_rows): more than 2 rows; only the first 2 were sent",
  });
  const commandComplete = (tag: string) => frame("C", cstring(tag));
  const rowDescription = frame("T", Buffer.of(0, 0));

  function limited(bytes: Buffer, cuts: number[]) {
    const refusals: QueryRefusal[] = [];
    const serverFrames: string[] = [];
    const guard = createQueryGuard({
      rules: queryRules.parse({ maxRows: 2 }),
      keepClient: messageTypes("QPBDECF"),
      keepServer: messageTypes("CE"),
      onClientFrame: () => {},
      onServerFrame: (type, body) =>
        serverFrames.push(type === 0x45 && body !== null ? "E" : `${String.fromCharCode(type)}`),
      onRefusal: (refusal) => refusals.push(refusal),
      nonce: NONCE,
    });
    const out: Buffer[] = [];
    let start = 0;
    for (const cut of [...cuts, bytes.length]) {
      guard.server.push(bytes.subarray(start, cut), (piece) => out.push(Buffer.from(piece)));
      start = cut;
    }
    return { out: Buffer.concat(out), refusals, serverFrames };
  }

  for (const size of [3, 70_000]) {
    it(`rows past the limit are dropped and the completion becomes 54000, whatever the chunks (rows of ${size} bytes)`, () => {
      const stream = Buffer.concat([
        rowDescription,
        ...Array.from({ length: 5 }, () => dataRow(size)),
        commandComplete("SELECT 5"),
        encodeReadyForQuery("I"),
        // COPY out: lines count as rows; the error replaces CopyDone, the CommandComplete after it is dropped.
        frame("H", Buffer.of(0, 0, 0)),
        copyData(size),
        copyData(size),
        copyData(size),
        frame("c"),
        commandComplete("COPY 3"),
        encodeReadyForQuery("I"),
        // Within the limit: unchanged.
        rowDescription,
        dataRow(size),
        dataRow(size),
        commandComplete("SELECT 2"),
        encodeReadyForQuery("I"),
      ]);
      const expected = Buffer.concat([
        rowDescription,
        dataRow(size),
        dataRow(size),
        rowLimitError,
        encodeReadyForQuery("I"),
        frame("H", Buffer.of(0, 0, 0)),
        copyData(size),
        copyData(size),
        rowLimitError,
        encodeReadyForQuery("I"),
        rowDescription,
        dataRow(size),
        dataRow(size),
        commandComplete("SELECT 2"),
        encodeReadyForQuery("I"),
      ]);
      const step = size === 3 ? 1 : 4_093;
      for (const cuts of [[], Array.from({ length: Math.floor(stream.length / step) }, (_, i) => (i + 1) * step)]) {
        const { out, refusals, serverFrames } = limited(stream, cuts);
        expect(out.equals(expected)).toBe(true);
        expect(refusals.map((r) => [r.rule, r.protocol])).toEqual([
          ["max_rows", "result"],
          ["max_rows", "result"],
        ]);
        // The query log sees the error in place of the first result's completion.
        expect(serverFrames.filter((f) => f === "E" || f === "C")).toEqual(["E", "E", "C"]);
      }
    });
  }
});
