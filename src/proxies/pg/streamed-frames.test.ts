/**
 * Client messages read in pieces (streamed-frames.ts), byte fixtures cut everywhere: a Bind read this
 * way says what the codec's whole-message parser says of it, keeps only its head, and refuses what
 * the codec refuses; through the relay scanner its bytes go on unchanged and only Query/Parse stay
 * refused past the bound.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PgWireError, parseFrontendMessage } from "../../lib/pg-wire.js";
import { bindBody, cstring, frame as typed, int16, int32 } from "../../testing/pg-proxy-harness.js";
import { createQueryGuard } from "./query-guard.js";
import { describeValueHeads } from "./query-log.js";
import { VALUE_HEAD_BYTES, createBindReader, streamedClientFrames, type StreamedBind } from "./streamed-frames.js";
import { FrameTooLargeError, createRelayScanner, messageTypes } from "./wire-stream.js";

const KiB = 1024;

const FIXTURES: Buffer[] = [
  bindBody("", "", [], [], []),
  bindBody("p1", "s1", [0], [Buffer.from("42"), null, Buffer.from("")], [1]),
  bindBody("", "insert_doc", [0, 1], [Buffer.from("héllo"), Buffer.alloc(300, 7)], [0, 1, 0]),
  bindBody("portal", "", [1], [Buffer.alloc(5, 1)], []),
];

/** Feeds `body` to a Bind reader in the pieces `cuts` make; returns its summary. */
function readInPieces(body: Buffer, cuts: number[], keepValues = true, maxKept = 1024 * KiB): StreamedBind {
  let out: StreamedBind | null = null;
  const reader = createBindReader({ bodyLength: body.length, keepValues, maxKept, done: (bind) => (out = bind) });
  let from = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b).concat(body.length)) {
    reader.push(body.subarray(from, cut));
    from = cut;
  }
  reader.end();
  return out!;
}

describe("a Bind read in pieces", () => {
  it("says what the codec says of the whole message, however it is cut", () => {
    for (const body of FIXTURES) {
      const whole = parseFrontendMessage("B", body);
      if (whole.kind !== "Bind") throw new Error("fixture");
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: body.length }), { maxLength: 10 }), (cuts) => {
          const read = readInPieces(body, cuts);
          expect(read.portal).toBe(whole.portal);
          expect(read.statement).toBe(whole.statement);
          expect(read.paramFormats).toEqual(whole.paramFormats);
          expect(read.params.map((p) => p?.length ?? null)).toEqual(whole.params.map((p) => p?.length ?? null));
          // The query log's description is the same as of the whole message (values under the head size).
          expect(describeValueHeads(read.paramFormats, read.params)).toEqual(
            whole.params.map((p, i) =>
              p === null
                ? null
                : (whole.paramFormats[i] ?? whole.paramFormats[0]) === 1
                  ? `<binary ${p.length} bytes>`
                  : p.toString(),
            ),
          );
        }),
      );
      // One byte at a time too.
      expect(readInPieces(body, [...Array(body.length).keys()]).params.length).toBe(
        (whole as { params: unknown[] }).params.length,
      );
    }
  });

  it("keeps only the head of a text value, nothing of a binary one, and at most maxKept in all", () => {
    const big = Buffer.alloc(3 * VALUE_HEAD_BYTES, 0x61);
    const body = bindBody("", "s", [0, 1, 0], [big, big, big], []);
    const read = readInPieces(body, [1000, 70_000, 300_000]);
    expect(read.params.map((p) => p!.head.length)).toEqual([VALUE_HEAD_BYTES, 0, VALUE_HEAD_BYTES]);
    expect(describeValueHeads(read.paramFormats, read.params)[0]).toMatch(
      new RegExp(`^<text ${big.length} bytes, first ${VALUE_HEAD_BYTES}: a+>$`),
    );
    expect(describeValueHeads(read.paramFormats, read.params)[1]).toBe(`<binary ${big.length} bytes>`);
    // Without parameters in the log, nothing of any value.
    expect(readInPieces(body, [], false).params.map((p) => p!.head.length)).toEqual([0, 0, 0]);
    // A small bound: the heads stop at it.
    const bounded = readInPieces(body, [], true, 100 * KiB);
    expect(bounded.params.reduce((n, p) => n + p!.head.length, 0)).toBeLessThanOrEqual(100 * KiB);
  });

  it("refuses what the codec refuses, and names longer than the bound", () => {
    const bad = [
      Buffer.concat([cstring(""), cstring(""), int16(-1)]), // negative count
      Buffer.concat([cstring(""), cstring(""), int16(0), int16(1), int32(-2), int16(0)]), // length below -1
      Buffer.concat([bindBody("", "", [], [], []), Buffer.of(0)]), // bytes after the message
      Buffer.concat([cstring(""), cstring(""), int16(0), int16(1), int32(10), Buffer.alloc(3)]), // ends early
    ];
    for (const body of bad) {
      expect(() => parseFrontendMessage("B", body)).toThrow(PgWireError);
      expect(() => readInPieces(body, [2, 5])).toThrow(PgWireError);
    }
    const longName = bindBody("x".repeat(2 * KiB), "", [], [], []);
    expect(() => readInPieces(longName, [], true, KiB)).toThrow(FrameTooLargeError);
    // A name with no NUL at all, however long the body says it is: refused at the bound, not kept whole.
    const noNul = Buffer.alloc(64 * KiB, 0x78);
    expect(() => readInPieces(noNul, [KiB, 2 * KiB], true, KiB)).toThrow(FrameTooLargeError);
  });

  it("a count is at most 32,767 (past it the codec's int16 is negative: refused), empty values kept as lengths", () => {
    const empty = Array.from({ length: 32_767 }, () => Buffer.alloc(0));
    const body = bindBody("", "s", [0], empty, []);
    // Empty text values keep nothing: a tiny bound holds them all, one summary entry each.
    const read = readInPieces(body, [3, 1000, 70_000], true, 16);
    expect(read.params).toHaveLength(32_767);
    expect(read.params.every((p) => p !== null && p.length === 0 && p.head.length === 0)).toBe(true);
    const tooMany = Buffer.concat([cstring(""), cstring(""), int16(0), Buffer.of(0x80, 0x00)]);
    expect(() => parseFrontendMessage("B", tooMany)).toThrow(PgWireError);
    expect(() => readInPieces(tooMany, [])).toThrow(PgWireError);
  });
});

describe("the relay scanner with streamed client messages", () => {
  const bound = 64 * KiB;
  const scanner = (log: (StreamedBind | { kind: string })[], frames: string[]) =>
    createRelayScanner({
      keep: messageTypes("QPBF"),
      onFrame: (type) => frames.push(String.fromCharCode(type)),
      maxKeptLength: bound,
      stream: streamedClientFrames({ keepValues: true, maxKept: bound, deliver: (m) => log.push(m) }),
    });

  it("a Bind past the bound goes on unchanged in pieces; the query log gets its summary", () => {
    const value = Buffer.alloc(4 * bound, 0x62);
    const stream = Buffer.concat([
      typed("P", cstring(""), cstring("SELECT length($1::bytea)"), int16(0)),
      typed("B", bindBody("", "", [1], [value], [0])),
      typed("E", cstring(""), int32(0)),
      typed("F", int32(1234), int16(0), int16(1), int32(2 * bound), Buffer.alloc(2 * bound), int16(0)),
      typed("S"),
    ]);
    const log: (StreamedBind | { kind: string })[] = [];
    const frames: string[] = [];
    const relay = scanner(log, frames);
    const out: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 16 * KiB)
      relay.push(stream.subarray(at, at + 16 * KiB), (p) => out.push(p));
    expect(Buffer.concat(out).equals(stream)).toBe(true);
    // Parse, Execute and Sync are read whole as before; the Bind and the FunctionCall through their readers.
    expect(frames).toEqual(["P", "E", "S"]);
    expect(log).toMatchObject([
      { kind: "StreamedBind", portal: "", statement: "", paramFormats: [1], params: [{ length: value.length }] },
      { kind: "FunctionCall", functionOid: 1234 },
    ]);
    expect((log[0] as StreamedBind).params[0]!.head.length).toBe(0);
  });

  it("under a query policy a Bind passes in pieces too; a FunctionCall, held for the policy, does not", () => {
    const guard = () =>
      createQueryGuard({
        rules: { allow: ["select"] } as never,
        keepClient: messageTypes("QPBDECF"),
        keepServer: messageTypes("CE"),
        onClientFrame: () => undefined,
        onServerFrame: () => undefined,
        onRefusal: () => undefined,
        maxClientFrame: bound,
        streamClient: streamedClientFrames({ keepValues: false, maxKept: bound, deliver: () => undefined }),
      });
    const bind = typed("B", bindBody("", "", [1], [Buffer.alloc(2 * bound)], []));
    const out: Buffer[] = [];
    guard().client.push(bind, (piece) => out.push(piece));
    expect(Buffer.concat(out).equals(bind)).toBe(true);
    const call = typed("F", int32(1234), int16(0), int16(1), int32(2 * bound), Buffer.alloc(2 * bound), int16(0));
    expect(() => guard().client.push(call, () => undefined)).toThrow(FrameTooLargeError);
  });

  it("a Query or Parse past the bound is still refused at its header", () => {
    for (const type of ["Q", "P"]) {
      const head = Buffer.concat([Buffer.from(type), int32(bound + 100)]);
      expect(() => scanner([], []).push(head, () => undefined)).toThrow(FrameTooLargeError);
    }
  });
});
