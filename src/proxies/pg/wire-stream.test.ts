import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  PgWireError,
  encodeErrorResponse,
  encodeQuery,
  encodeReadyForQuery,
  encodeSslRequest,
  encodeStartupMessage,
} from "../../lib/pg-wire.js";
import { cstring, int16, int32, typed } from "../../lib/pg-wire/buffers.js";
import { createFrameScanner, frameBytes, type Frame, type KeptFrame } from "./wire-stream.js";

const CLIENT_STREAM = [
  encodeSslRequest(),
  encodeStartupMessage({ user: "alice%pg-read", database: "app" }),
  typed("p", cstring("token")),
  encodeQuery("SELECT 1"),
  typed("d", Buffer.alloc(300, 7)),
  typed("c"),
];
const SERVER_STREAM = [
  typed("T", int16(0)),
  typed("D", int16(1), int32(3), Buffer.from("abc")),
  typed("C", cstring("SELECT 1")),
  encodeErrorResponse({ severity: "ERROR", code: "22012", message: "division by zero" }),
  encodeReadyForQuery("I"),
];

function scanInPieces(startup: boolean, bytes: Buffer, cuts: number[], keep?: (type: string) => boolean): Frame[] {
  const scanner = createFrameScanner({ startup });
  if (keep) scanner.keep(keep);
  const frames: Frame[] = [];
  let from = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b).concat(bytes.length)) {
    frames.push(...scanner.push(bytes.subarray(from, cut)));
    from = cut;
  }
  expect(scanner.remainingInFrame()).toBe(0);
  return frames;
}

describe("frame scanner", () => {
  it("finds the same frames and exact bytes however the stream is cut", () => {
    for (const [startup, messages] of [
      [true, CLIENT_STREAM],
      [false, SERVER_STREAM],
    ] as const) {
      const bytes = Buffer.concat(messages);
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 12 }), (cuts) => {
          const frames = scanInPieces(startup, bytes, cuts);
          expect(frames.map((f) => frameBytes(f as KeptFrame))).toEqual(messages);
        }),
      );
    }
  });

  it("skips the bodies it is told to skip, but still reports their frames", () => {
    const bytes = Buffer.concat(SERVER_STREAM);
    const frames = scanInPieces(false, bytes, [3, 9, 20], (type) => type !== "D");
    expect(frames.map((f) => [f.type, f.body === null])).toEqual([
      ["T", false],
      ["D", true],
      ["C", false],
      ["E", false],
      ["Z", false],
    ]);
  });

  it("knows how far the current frame has to go, and what arrived of it", () => {
    const scanner = createFrameScanner({ startup: false });
    const query = encodeQuery("SELECT 42");
    expect(scanner.push(query.subarray(0, 3))).toEqual([]);
    expect(scanner.remainingInFrame()).toBeNull();
    scanner.push(query.subarray(3, 8));
    expect(scanner.remainingInFrame()).toBe(query.length - 8);
    expect(scanner.pending()).toEqual(query.subarray(0, 8));
  });

  it("refuses a bad length and then the whole stream", () => {
    const scanner = createFrameScanner({ startup: false, maxMessageLength: 100 });
    expect(() => scanner.push(Buffer.concat([Buffer.from("Q"), int32(1000)]))).toThrow(PgWireError);
    expect(() => scanner.push(encodeQuery("x"))).toThrow(/already refused/);
  });
});
