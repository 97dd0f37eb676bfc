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
import {
  createFrameScanner,
  createRelayScanner,
  frameBytes,
  messageTypes,
  type Frame,
  type KeptFrame,
} from "./wire-stream.js";

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

describe("relay scanner", () => {
  const cutInPieces = (bytes: Buffer, cuts: number[]): Buffer[] => {
    const pieces: Buffer[] = [];
    let from = 0;
    for (const cut of [...new Set(cuts)].sort((a, b) => a - b).concat(bytes.length)) {
      pieces.push(bytes.subarray(from, cut));
      from = cut;
    }
    return pieces;
  };

  it("reports every frame's type, and the kept bodies exactly, however the stream is cut", () => {
    const bytes = Buffer.concat(SERVER_STREAM);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 12 }), (cuts) => {
        const seen: [string, string | null][] = [];
        const scanner = createRelayScanner({
          keep: messageTypes("CE"),
          // A body is only valid during the call: copy it, as a caller that keeps one must.
          onFrame: (type, body) => seen.push([String.fromCharCode(type), body && Buffer.from(body).toString("hex")]),
        });
        for (const piece of cutInPieces(bytes, cuts)) scanner.push(piece);
        expect(scanner.remainingInFrame()).toBe(0);
        expect(seen).toEqual(
          SERVER_STREAM.map((message) => {
            const type = String.fromCharCode(message[0]!);
            return [type, "CE".includes(type) ? message.subarray(5).toString("hex") : null];
          }),
        );
      }),
    );
  });

  it("hands a body that lies within one chunk over as a view of it, without a copy", () => {
    const chunk = Buffer.concat(SERVER_STREAM);
    const bodies: Buffer[] = [];
    createRelayScanner({ keep: messageTypes("C"), onFrame: (_type, body) => body && bodies.push(body) }).push(chunk);
    expect(bodies).toHaveLength(1);
    expect(bodies[0]!.buffer).toBe(chunk.buffer);
    expect(bodies[0]!.toString("latin1")).toBe("SELECT 1\0");
  });

  it("knows how far the current frame has to go", () => {
    const scanner = createRelayScanner({ keep: messageTypes(""), onFrame: () => {} });
    const query = encodeQuery("SELECT 42");
    scanner.push(query.subarray(0, 3));
    expect(scanner.remainingInFrame()).toBeNull();
    scanner.push(query.subarray(3, 8));
    expect(scanner.remainingInFrame()).toBe(query.length - 8);
    scanner.push(query.subarray(8));
    expect(scanner.remainingInFrame()).toBe(0);
  });

  it("refuses a length below 4 or above the limit, and then the whole stream", () => {
    const small = createRelayScanner({ keep: messageTypes(""), onFrame: () => {} });
    expect(() => small.push(Buffer.concat([Buffer.from("Q"), int32(3)]))).toThrow(/below 4/);
    expect(() => small.push(encodeQuery("x"))).toThrow(/already refused/);
    const large = createRelayScanner({ keep: messageTypes(""), onFrame: () => {}, maxMessageLength: 100 });
    expect(() => large.push(Buffer.concat([Buffer.from("D"), int32(1000)]))).toThrow(PgWireError);
  });
});
