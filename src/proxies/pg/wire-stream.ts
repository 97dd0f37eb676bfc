/**
 * Socket-side helpers shared by the proxy and the local tunnel. The codec's readers parse whole
 * messages; a relay also needs message boundaries and the exact bytes, and must not buffer large
 * DataRow/CopyData bodies it has no use for. So: a frame scanner that keeps only the bodies asked
 * for, an inbox to await frames during a handshake, and forwarding with backpressure.
 */
import { connect, type Socket } from "node:net";
import { DEFAULT_MAX_MESSAGE_LENGTH, DEFAULT_MAX_STARTUP_LENGTH, PgWireError } from "../../lib/pg-wire.js";
import type { SessionRecorder } from "../../modules/sessions/sessions.types.js";

export interface Frame {
  /** The type byte; null for an untyped startup-phase message. */
  type: string | null;
  /** The body after the length word; null when this type's bodies are skipped. */
  body: Buffer | null;
  bodyLength: number;
}

export type KeptFrame = Frame & { body: Buffer };

/** The exact wire bytes of a frame whose body was kept. */
export function frameBytes(frame: KeptFrame): Buffer {
  const head = Buffer.alloc(frame.type === null ? 4 : 5);
  if (frame.type === null) {
    head.writeInt32BE(frame.body.length + 4, 0);
  } else {
    head.write(frame.type, 0, "latin1");
    head.writeInt32BE(frame.body.length + 4, 1);
  }
  return Buffer.concat([head, frame.body]);
}

export interface FrameScanner {
  /** Feeds bytes; returns the frames they complete. Throws PgWireError on a malformed stream, then refuses more. */
  push(chunk: Buffer): Frame[];
  /** Which typed frames keep their bodies from the next frame on (untyped ones always do). */
  keep(predicate: (type: string) => boolean): void;
  /** The bytes received of the unfinished frame (its body must be kept). */
  pending(): Buffer;
  /** Bytes still needed to finish the current frame: 0 at a boundary, null while a header is incomplete. */
  remainingInFrame(): number | null;
}

interface Current {
  type: string | null;
  header: Buffer;
  bodyLength: number;
  keep: boolean;
  parts: Buffer[];
  received: number;
}

/**
 * `startup`: the stream starts with untyped messages (a client's), and turns typed after a
 * StartupMessage (protocol major 3), as the codec's frontend reader does.
 */
export function createFrameScanner(options: { startup: boolean; maxMessageLength?: number }): FrameScanner {
  const maxMessageLength = options.maxMessageLength ?? DEFAULT_MAX_MESSAGE_LENGTH;
  let inStartup = options.startup;
  let keep: (type: string) => boolean = () => true;
  let header = Buffer.alloc(0);
  let current: Current | null = null;
  let failed: PgWireError | null = null;

  const startFrame = (): void => {
    const type = inStartup ? null : header.toString("latin1", 0, 1);
    const length = header.readInt32BE(inStartup ? 0 : 1);
    const [min, max] = inStartup ? [8, DEFAULT_MAX_STARTUP_LENGTH] : [4, maxMessageLength];
    if (length < min) throw new PgWireError("LENGTH_TOO_SMALL", `message length ${length} is below ${min}`);
    if (length > max) throw new PgWireError("LENGTH_TOO_LARGE", `message length ${length} exceeds ${max}`);
    current = { type, header, bodyLength: length - 4, keep: type === null || keep(type), parts: [], received: 0 };
    header = Buffer.alloc(0);
  };

  const scan = (chunk: Buffer): Frame[] => {
    const out: Frame[] = [];
    let offset = 0;
    for (;;) {
      if (current === null) {
        const headerLength = inStartup ? 4 : 5;
        const take = Math.min(headerLength - header.length, chunk.length - offset);
        if (take > 0) header = Buffer.concat([header, chunk.subarray(offset, offset + take)]);
        offset += take;
        if (header.length < headerLength) return out;
        startFrame();
      }
      const frame = current as unknown as Current;
      const take = Math.min(frame.bodyLength - frame.received, chunk.length - offset);
      if (frame.keep && take > 0) frame.parts.push(chunk.subarray(offset, offset + take));
      frame.received += take;
      offset += take;
      if (frame.received < frame.bodyLength) return out;
      const body = frame.keep ? Buffer.concat(frame.parts) : null;
      out.push({ type: frame.type, body, bodyLength: frame.bodyLength });
      if (frame.type === null && body !== null && body.length >= 4 && body.readInt32BE(0) >>> 16 === 3) {
        inStartup = false;
      }
      current = null;
      if (offset >= chunk.length) return out;
    }
  };

  return {
    push(chunk) {
      if (failed !== null) throw new PgWireError("READER_FAILED", `the stream was already refused: ${failed.message}`);
      try {
        return scan(chunk);
      } catch (error) {
        failed =
          error instanceof PgWireError ? error : new PgWireError("BAD_VALUE", `unparseable message: ${String(error)}`);
        throw failed;
      }
    },
    keep(predicate) {
      keep = predicate;
    },
    pending() {
      const frame = current as Current | null;
      if (frame === null) return Buffer.from(header);
      if (!frame.keep) throw new Error("pending(): the current frame's body is not kept");
      return Buffer.concat([frame.header, ...frame.parts]);
    },
    remainingInFrame() {
      const frame = current as Current | null;
      if (frame !== null) return frame.bodyLength - frame.received;
      return header.length === 0 ? 0 : null;
    },
  };
}

/**
 * What a relay scans an established session with: typed frames only, reported one by one to a
 * callback fixed at creation (no arrays, no frame objects), the bytes passed on through `emit`.
 *
 * - A frame's body is handed to `onFrame` only when its type is kept, and then without a copy when
 *   the frame lies within one chunk (a view of the chunk, valid until the callback returns unless the
 *   callback keeps it); only a kept body split across chunks is assembled. Skipped bodies are never
 *   buffered, so DataRow and CopyData cost nothing but their headers.
 * - Without `hold` every chunk goes to `emit` as received, whole, once (headers split across chunks
 *   included). Frames of `hold` types are kept back until whole and given to `held`, which returns
 *   their replacement (a whole frame; an empty buffer drops the frame) or null to pass them unchanged
 *   (a frame within one chunk stays in the chunk's run: no copy). The query policy (query-guard.ts)
 *   holds; the plain relay does not.
 */
/**
 * A frame the relay would have to hold whole (its body kept for the query log, or held for the query
 * policy) is longer than the relay's limit: thrown at its header, before any of its body is buffered.
 */
export class FrameTooLargeError extends PgWireError {
  constructor(
    /** The frame's type byte, as a character. */
    readonly frameType: string,
    /** The frame's body length, as its header claims. */
    readonly claimed: number,
    readonly limit: number,
  ) {
    super("LENGTH_TOO_LARGE", `a '${frameType}' message of ${claimed} bytes exceeds the limit of ${limit} bytes`);
  }
}

/** Default bound on a client frame the relay holds whole (Query, Parse, Bind, … under the query log/policy). */
export const DEFAULT_MAX_CLIENT_FRAME = 16 * 1024 * 1024;
/** Default bound on a server frame the relay holds whole (ErrorResponse; rows only under a row limit). */
export const DEFAULT_MAX_SERVER_FRAME = 64 * 1024 * 1024;

/** Reads a frame's body in pieces as it passes (streamed-frames.ts): it copies what it keeps of them. */
export interface FrameBodyReader {
  /** The next bytes of the body: a view of the chunk, valid only during the call. */
  push(piece: Buffer): void;
  /** The body is complete. */
  end(): void;
}

export interface RelayScanner {
  /** Feeds bytes; `emit` receives the bytes to pass on, in order. Throws PgWireError on a bad length, then refuses more. */
  push(chunk: Buffer, emit: (piece: Buffer) => void): void;
  /** Bytes still needed to finish the current frame: 0 at a boundary, null while a header is incomplete. */
  remainingInFrame(): number | null;
}

/** The type codes (bytes) of the message types listed. */
export function messageTypes(types: string): Uint8Array {
  const table = new Uint8Array(256);
  for (let i = 0; i < types.length; i++) table[types.charCodeAt(i)] = 1;
  return table;
}

const HEADER_LENGTH = 5;
const NO_BODY = Buffer.alloc(0);
const HOLD_NONE = messageTypes("");

export function createRelayScanner(options: {
  /** Types whose bodies `onFrame` receives (see messageTypes); others get null. Held types never reach it. */
  keep: Uint8Array;
  onFrame: (type: number, body: Buffer | null) => void;
  /** Types kept back until whole and given to `held` (none by default). */
  hold?: Uint8Array;
  /** A held frame's body → its replacement (a whole frame, or empty to drop it), or null: unchanged. */
  held?: (type: number, body: Buffer) => Buffer | null;
  maxMessageLength?: number;
  /** Bound on the body of a kept or held frame (its whole body may be buffered); longer: FrameTooLargeError. */
  maxKeptLength?: number;
  /**
   * A kept (not held) frame longer than `maxKeptLength`: a reader for its body, which then goes on in
   * pieces as received and reaches the reader instead of `onFrame`; null: FrameTooLargeError.
   */
  stream?: (type: number, bodyLength: number) => FrameBodyReader | null;
}): RelayScanner {
  const { keep, onFrame } = options;
  const hold = options.hold ?? HOLD_NONE;
  const held = options.held ?? (() => null);
  const maxMessageLength = options.maxMessageLength ?? DEFAULT_MAX_MESSAGE_LENGTH;
  const maxKeptLength = options.maxKeptLength ?? maxMessageLength;
  const header = Buffer.alloc(HEADER_LENGTH);
  let headerFill = 0;
  /** Body bytes still to come of the current frame; -1 between frames (reading a header). */
  let remaining = -1;
  let type = 0;
  let keeping = false;
  let holding = false;
  let parts: Buffer[] = [];
  let heldParts: Buffer[] = [];
  /** The reader of the current frame's body, when it is too long to keep whole. */
  let reading: FrameBodyReader | null = null;
  let failed: PgWireError | null = null;

  const fail = (length: number): never => {
    failed =
      length < 4
        ? new PgWireError("LENGTH_TOO_SMALL", `message length ${length} is below 4`)
        : new PgWireError("LENGTH_TOO_LARGE", `message length ${length} exceeds ${maxMessageLength}`);
    throw failed;
  };

  return {
    push(chunk, emit) {
      if (failed !== null) throw new PgWireError("READER_FAILED", `the stream was already refused: ${failed.message}`);
      const end = chunk.length;
      let offset = 0;
      /** Start of the bytes of this chunk not yet emitted that pass unchanged. */
      let runStart = 0;
      while (offset < end) {
        if (remaining < 0) {
          /** Where this frame starts in the chunk; -1 when its header began in an earlier chunk. */
          let frameStart = -1;
          let length: number;
          if (headerFill === 0 && end - offset >= HEADER_LENGTH) {
            frameStart = offset;
            type = chunk[offset]!;
            length = chunk.readInt32BE(offset + 1);
            offset += HEADER_LENGTH;
          } else {
            const headerBegin = offset;
            while (headerFill < HEADER_LENGTH && offset < end) header[headerFill++] = chunk[offset++]!;
            if (headerFill < HEADER_LENGTH) {
              // The header goes on in the next chunk. Its first byte is the type: a held frame's bytes
              // wait for the rest of it, any other's go on with the chunk.
              if (hold[header[0]!] !== 1) emit(runStart === 0 ? chunk : chunk.subarray(runStart));
              else if (headerBegin > runStart) emit(chunk.subarray(runStart, headerBegin));
              return;
            }
            headerFill = 0;
            type = header[0]!;
            length = header.readInt32BE(1);
          }
          if (length < 4 || length > maxMessageLength) fail(length);
          remaining = length - 4;
          keeping = keep[type] === 1;
          holding = hold[type] === 1;
          if ((keeping || holding) && remaining > maxKeptLength) {
            // Too long to keep whole: read in pieces where the type allows it (a Bind), else refused.
            reading = holding ? null : (options.stream?.(type, remaining) ?? null);
            if (reading === null) {
              failed = new FrameTooLargeError(String.fromCharCode(type), remaining, maxKeptLength);
              throw failed;
            }
            keeping = false;
          }
          if (frameStart < 0) {
            // The header began in an earlier chunk (its bytes there went on unless held); its tail is at [0, offset).
            if (holding) {
              heldParts = [Buffer.from(header)];
              runStart = offset;
            }
          } else if (holding) {
            if (end - offset >= remaining) {
              // The whole frame is in this chunk: unchanged, it stays in the run (no copy).
              const body = chunk.subarray(offset, offset + remaining);
              offset += remaining;
              remaining = -1;
              const replacement = held(type, body);
              if (replacement !== null) {
                if (frameStart > runStart) emit(chunk.subarray(runStart, frameStart));
                if (replacement.length > 0) emit(replacement);
                runStart = offset;
              }
              continue;
            }
            if (frameStart > runStart) emit(chunk.subarray(runStart, frameStart));
            heldParts = [chunk.subarray(frameStart, offset)];
            runStart = offset;
          }
          if (remaining === 0 && !holding) {
            remaining = -1;
            onFrame(type, keeping ? NO_BODY : null);
            continue;
          }
          if (!holding && keeping && end - offset >= remaining) {
            // The whole body is in this chunk: a view, no copy.
            const body = chunk.subarray(offset, offset + remaining);
            offset += remaining;
            remaining = -1;
            onFrame(type, body);
            continue;
          }
        }
        const take = Math.min(remaining, end - offset);
        if (holding) heldParts.push(chunk.subarray(offset, offset + take));
        else if (keeping) parts.push(chunk.subarray(offset, offset + take));
        else if (reading !== null) reading.push(chunk.subarray(offset, offset + take));
        offset += take;
        remaining -= take;
        if (holding) runStart = offset;
        if (remaining === 0) {
          remaining = -1;
          if (holding) {
            const frame = Buffer.concat(heldParts);
            heldParts = [];
            const out = held(type, frame.subarray(HEADER_LENGTH)) ?? frame;
            if (out.length > 0) emit(out);
          } else if (reading !== null) {
            const reader = reading;
            reading = null;
            reader.end();
          } else {
            let body: Buffer | null = null;
            if (keeping) {
              body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
              parts = [];
            }
            onFrame(type, body);
          }
        }
      }
      if (end > runStart) emit(runStart === 0 ? chunk : chunk.subarray(runStart));
    },
    remainingInFrame() {
      if (remaining >= 0) return remaining;
      return headerFill === 0 ? 0 : null;
    },
  };
}

export class StreamClosedError extends Error {
  override readonly name = "StreamClosedError";
}

export interface FrameInbox {
  /** The next frame (body kept); rejects when the socket closes, the stream is malformed or time runs out. */
  next(timeoutMs: number): Promise<KeptFrame>;
  /**
   * Stops listening and returns the frames scanned but not taken. Attach the next 'data' listener at
   * once; the socket may be paused (more than the bound held): resume it once its bytes are read again.
   */
  detach(): KeptFrame[];
}

/**
 * Buffers a handshake's frames so it can be written as sequential awaits. Bytes received and not yet
 * taken (frames waiting, the unfinished one) are held up to `maxBytes`; past that the socket is paused
 * (TCP backpressure: a client pipelining its first queries waits) until `next` takes enough of them.
 */
export function createFrameInbox(socket: Socket, scanner: FrameScanner, maxBytes = 1024 * 1024): FrameInbox {
  const frames: KeptFrame[] = [];
  let failure: Error | null = null;
  /** Bytes received and not yet taken by `next`. */
  let held = 0;
  let paused = false;
  let waiter: { resolve: (frame: KeptFrame) => void; reject: (error: Error) => void } | null = null;

  const wake = (): void => {
    if (waiter === null) return;
    const current = waiter;
    const frame = frames.shift();
    if (frame !== undefined) {
      waiter = null;
      held -= (frame.type === null ? 4 : 5) + frame.bodyLength;
      if (paused && held <= maxBytes) {
        paused = false;
        socket.resume();
      }
      current.resolve(frame);
    } else if (failure !== null) {
      waiter = null;
      current.reject(failure);
    }
  };
  const fail = (error: Error): void => {
    failure ??= error;
    wake();
  };
  const onData = (chunk: Buffer): void => {
    held += chunk.length;
    if (held > maxBytes && !paused) {
      paused = true;
      socket.pause();
    }
    try {
      for (const frame of scanner.push(chunk)) frames.push(frame as KeptFrame);
    } catch (error) {
      fail(error as Error);
    }
    wake();
  };
  const onClose = (): void => fail(new StreamClosedError("the connection closed"));
  socket.on("data", onData);
  socket.on("close", onClose);
  socket.on("end", onClose);

  return {
    next(timeoutMs) {
      return new Promise<KeptFrame>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = {
          resolve: (frame) => {
            clearTimeout(timer);
            resolve(frame);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        };
        wake();
      });
    },
    detach() {
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("end", onClose);
      return frames.splice(0);
    },
  };
}

const waitingForDrain = new WeakSet<Socket>();
/** Sockets `forward` paused until their destination drains. */
const pausedForDrain = new WeakSet<Socket>();
/** Sockets paused until their session's recording drained (holdForRecording). */
const pausedForRecording = new WeakSet<Socket>();

/** Writes `chunk` to `to`; when its buffer is full, pauses `from` until it drains. */
export function forward(from: Socket, to: Socket, chunk: Buffer): void {
  if (to.destroyed || !to.writable) return;
  if (!to.write(chunk) && !waitingForDrain.has(to)) {
    waitingForDrain.add(to);
    pausedForDrain.add(from);
    from.pause();
    to.once("drain", () => {
      waitingForDrain.delete(to);
      pausedForDrain.delete(from);
      if (!pausedForRecording.has(from)) from.resume();
    });
  }
}

/**
 * While the session's recording is behind its disk (more than the blob writer's backlog bound waits to
 * be written), `client` is not read: its next statements wait in its own socket (TCP backpressure), not
 * in the proxy's memory, and nothing is dropped. Read again once the recording drained (unless `forward`
 * still waits for the upstream to drain). Cheap when not backlogged: one property read.
 */
export function holdForRecording(client: Socket, recording: Pick<SessionRecorder, "backlogged" | "onDrain">): void {
  if (!recording.backlogged || !recording.onDrain || pausedForRecording.has(client)) return;
  pausedForRecording.add(client);
  client.pause();
  recording.onDrain(() => {
    pausedForRecording.delete(client);
    if (!pausedForDrain.has(client) && !client.destroyed) client.resume();
  });
}

/** Size of a buffer the socket reads into directly (connectTcp's `reader`). */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Reads of a socket straight into a buffer of ours (net's `onread`): no stream machinery per read
 * (no push, 'data' event or read-more tick) and no new buffer per read. With `sink` null (a
 * handshake) each read is emitted as a 'data' event of its own copy, as without a reader.
 */
export interface DirectReader {
  /** Gets each read's bytes: a view of the read buffer, valid only during the call unless `retained()` after it. */
  sink: ((chunk: Buffer) => void) | null;
  /** Asked after each read: something may still refer to its bytes (a queued write, part of a frame), so the next read needs a new buffer. */
  retained: () => boolean;
}

/**
 * Connects a TCP socket, or rejects after `timeoutMs`. With `reader` the socket's reads go to it
 * (see DirectReader); never on a socket TLS will be started over.
 */
export async function connectTcp(
  host: string,
  port: number,
  timeoutMs: number,
  reader?: DirectReader,
): Promise<Socket> {
  let readBuffer: Buffer | null = null;
  const onread =
    reader === undefined
      ? undefined
      : {
          buffer: (): Buffer =>
            readBuffer === null || reader.retained()
              ? (readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES))
              : readBuffer,
          callback: (length: number, buffer: Uint8Array): boolean => {
            const view = (buffer as Buffer).subarray(0, length);
            if (reader.sink !== null) reader.sink(view);
            else socket.emit("data", Buffer.from(view));
            return true; // keep reading (pause() stops reads as without a reader)
          },
        };
  const socket = connect({ host, port, onread });
  return new Promise<Socket>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
