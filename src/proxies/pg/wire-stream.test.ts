import { EventEmitter } from "node:events";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
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
  connectTcp,
  createFrameInbox,
  createFrameScanner,
  createRelayScanner,
  frameBytes,
  messageTypes,
  type DirectReader,
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
  /** Every way of cutting the stream in two, and the stream one byte at a time. */
  const everyCut = (bytes: Buffer): Buffer[][] => [
    ...Array.from({ length: bytes.length - 1 }, (_, i) => [bytes.subarray(0, i + 1), bytes.subarray(i + 1)]),
    Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)),
  ];
  const expectedFrames = (keep: string): [string, string | null][] =>
    SERVER_STREAM.map((message) => {
      const type = String.fromCharCode(message[0]!);
      return [type, keep.includes(type) ? message.subarray(5).toString("hex") : null];
    });

  /** Scans `pieces`; returns the frames seen (bodies copied: a view is valid only during the call) and what was emitted. */
  const relay = (
    pieces: Buffer[],
    keep: string,
    hold?: { types: string; held: (type: number, body: Buffer) => Buffer | null },
  ) => {
    const seen: [string, string | null][] = [];
    const emitted: Buffer[] = [];
    const scanner = createRelayScanner({
      keep: messageTypes(keep),
      onFrame: (type, body) => seen.push([String.fromCharCode(type), body && Buffer.from(body).toString("hex")]),
      ...(hold ? { hold: messageTypes(hold.types), held: hold.held } : {}),
    });
    for (const piece of pieces) scanner.push(piece, (out) => emitted.push(out));
    return { seen, emitted, scanner };
  };

  it("reports every frame's type, and the kept bodies exactly, however the stream is cut", () => {
    const bytes = Buffer.concat(SERVER_STREAM);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 12 }), (cuts) => {
        const { seen, emitted, scanner } = relay(cutInPieces(bytes, cuts), "CE");
        expect(scanner.remainingInFrame()).toBe(0);
        expect(seen).toEqual(expectedFrames("CE"));
        expect(Buffer.concat(emitted)).toEqual(bytes);
      }),
    );
  });

  it("passes every chunk on as received, once, wherever a frame or its header is cut", () => {
    const bytes = Buffer.concat(SERVER_STREAM);
    for (const pieces of everyCut(bytes)) {
      const { seen, emitted, scanner } = relay(pieces, "CE");
      expect(scanner.remainingInFrame()).toBe(0);
      expect(seen).toEqual(expectedFrames("CE"));
      // One write per chunk, the chunk itself: no copy, no extra piece for a header split across chunks.
      expect(emitted).toHaveLength(pieces.length);
      emitted.forEach((out, i) => expect(out).toBe(pieces[i]));
    }
  });

  it("holds frames of the held types until whole and passes their replacement, wherever they are cut", () => {
    const bytes = Buffer.concat(SERVER_STREAM);
    const replacement = typed("C", cstring("SELECT 99"));
    // CommandComplete replaced, ErrorResponse dropped, the rest unchanged.
    const held = (type: number, body: Buffer): Buffer | null =>
      type === 0x43 ? (body.toString("latin1") === "SELECT 1\0" ? replacement : null) : Buffer.alloc(0);
    const expected = Buffer.concat([SERVER_STREAM[0]!, SERVER_STREAM[1]!, replacement, SERVER_STREAM[4]!]);
    for (const pieces of [[bytes], ...everyCut(bytes)]) {
      const { seen, emitted, scanner } = relay(pieces, "CE", { types: "CE", held });
      expect(scanner.remainingInFrame()).toBe(0);
      expect(Buffer.concat(emitted)).toEqual(expected);
      // Held frames are the holder's to report; the others reach onFrame as without a hold.
      expect(seen).toEqual([
        ["T", null],
        ["D", null],
        ["Z", null],
      ]);
    }
  });

  it("hands a body that lies within one chunk over as a view of it, without a copy", () => {
    const chunk = Buffer.concat(SERVER_STREAM);
    const bodies: Buffer[] = [];
    createRelayScanner({ keep: messageTypes("C"), onFrame: (_type, body) => body && bodies.push(body) }).push(
      chunk,
      () => undefined,
    );
    expect(bodies).toHaveLength(1);
    expect(bodies[0]!.buffer).toBe(chunk.buffer);
    expect(bodies[0]!.toString("latin1")).toBe("SELECT 1\0");
  });

  it("knows how far the current frame has to go", () => {
    const scanner = createRelayScanner({ keep: messageTypes(""), onFrame: () => {} });
    const query = encodeQuery("SELECT 42");
    const pass = () => undefined;
    scanner.push(query.subarray(0, 3), pass);
    expect(scanner.remainingInFrame()).toBeNull();
    scanner.push(query.subarray(3, 8), pass);
    expect(scanner.remainingInFrame()).toBe(query.length - 8);
    scanner.push(query.subarray(8), pass);
    expect(scanner.remainingInFrame()).toBe(0);
  });

  it("refuses a length below 4 or above the limit, passes nothing of that chunk on, then refuses the stream", () => {
    const emitted: Buffer[] = [];
    const emit = (out: Buffer) => emitted.push(out);
    const small = createRelayScanner({ keep: messageTypes(""), onFrame: () => {} });
    expect(() => small.push(Buffer.concat([encodeQuery("SELECT 1"), Buffer.from("Q"), int32(3)]), emit)).toThrow(
      /below 4/,
    );
    expect(() => small.push(encodeQuery("x"), emit)).toThrow(/already refused/);
    // A negative length (0xffffffff) is below 4 too, not a huge allocation.
    const negative = createRelayScanner({ keep: messageTypes("Q"), onFrame: () => {} });
    expect(() => negative.push(Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff]), emit)).toThrow(/below 4/);
    const large = createRelayScanner({ keep: messageTypes("D"), onFrame: () => {}, maxMessageLength: 100 });
    expect(() => large.push(Buffer.concat([Buffer.from("D"), int32(1000)]), emit)).toThrow(PgWireError);
    expect(emitted).toEqual([]);
  });

  it("takes any garbage without throwing anything but a protocol error, and without keeping more than a frame", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.boolean(), (chunks, holding) => {
        let longest = 0;
        const scanner = createRelayScanner({
          keep: messageTypes("QPBDECF"),
          onFrame: (_type, body) => (longest = Math.max(longest, body?.length ?? 0)),
          ...(holding ? { hold: messageTypes("QPF"), held: () => null } : {}),
          maxMessageLength: 256,
        });
        try {
          for (const chunk of chunks) scanner.push(Buffer.from(chunk), () => undefined);
        } catch (error) {
          expect(error).toBeInstanceOf(PgWireError);
        }
        expect(longest).toBeLessThanOrEqual(256 - 4);
      }),
    );
  });
});

describe("frame inbox", () => {
  /** A socket as the inbox uses it: data and close events, pause and resume. */
  function fakeSocket() {
    const socket = Object.assign(new EventEmitter(), {
      paused: false,
      pause: () => void (socket.paused = true),
      resume: () => void (socket.paused = false),
      destroy: () => undefined,
    });
    return socket;
  }

  it("pauses its socket past the bytes it may hold unread, and resumes it as frames are taken", async () => {
    const socket = fakeSocket();
    const inbox = createFrameInbox(socket as unknown as Socket, createFrameScanner({ startup: false }), 1000);
    const query = encodeQuery("x".repeat(400)); // 406 bytes
    socket.emit("data", Buffer.concat([query, query]));
    expect(socket.paused).toBe(false);
    socket.emit("data", query);
    expect(socket.paused).toBe(true); // 1,218 bytes held: nothing is refused, the client waits
    expect((await inbox.next(1000)).body.length).toBe(401);
    expect(socket.paused).toBe(false);
    // Detached with more than the bound held, the socket stays paused: the relay resumes it.
    socket.emit("data", Buffer.concat([query, query]));
    expect(socket.paused).toBe(true);
    expect(inbox.detach()).toHaveLength(4);
    expect(socket.paused).toBe(true);
  });
});

describe("direct reads (connectTcp's reader)", () => {
  /** A server that sends `pieces` one per `next()` (each arrives as its own read), on a plain socket. */
  async function pieceServer(pieces: string[]) {
    let peer: Socket | null = null;
    const server = createServer();
    const connected = new Promise<void>((resolve) => {
      server.once("connection", (socket: Socket) => {
        peer = socket;
        resolve();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    return {
      port,
      connected,
      async next(received: () => number) {
        const want = received() + 1;
        peer!.write(pieces.shift()!);
        for (let i = 0; i < 500 && received() < want; i++) await delay(2);
      },
      close: () => {
        peer?.destroy();
        server.close();
      },
    };
  }

  it("hands reads to the sink as views; a view is overwritten by the next read unless retained() says it is still used", async () => {
    for (const retainedAnswer of [false, true]) {
      const server = await pieceServer(["abc", "def", "ghi"]);
      const views: Buffer[] = [];
      const handshake: Buffer[] = [];
      const reader: DirectReader = { sink: null, retained: () => retainedAnswer };
      const socket = await connectTcp("127.0.0.1", server.port, 2_000, reader);
      await server.connected;
      // Before the sink is set (a handshake), each read is a 'data' event of its own copy.
      socket.on("data", (chunk: Buffer) => handshake.push(chunk));
      await server.next(() => handshake.length);
      reader.sink = (view) => views.push(view);
      await server.next(() => views.length);
      await server.next(() => views.length);
      expect(Buffer.concat(handshake).toString()).toBe("abc");
      expect(views).toHaveLength(2);
      // Reused: the first view now shows the second read's bytes; retained: each read kept its own.
      expect(views.map(String)).toEqual(retainedAnswer ? ["def", "ghi"] : ["ghi", "ghi"]);
      socket.destroy();
      server.close();
    }
  });
});
