/**
 * Incremental framing: push chunks as they arrive, get back every complete message.
 * A message may span chunks and a chunk may hold many messages. Lengths are checked
 * as soon as the header is in, before any body is buffered.
 */
import { parseBackendMessage, type BackendMessage } from "./backend.js";
import { PgWireError } from "./errors.js";
import { parseFrontendMessage, parseStartupBody, type FrontendMessage } from "./frontend.js";

/** PostgreSQL's own limits: 1 GiB for a message, 10 000 bytes for the startup packet. */
export const DEFAULT_MAX_MESSAGE_LENGTH = 1024 * 1024 * 1024;
export const DEFAULT_MAX_STARTUP_LENGTH = 10_000;

export interface MessageReaderOptions {
  /** Largest accepted length word of a typed message (it counts itself, not the type byte). */
  maxMessageLength?: number;
  /** Largest accepted length word of an untyped startup-phase message. */
  maxStartupLength?: number;
}

export interface MessageReader<M> {
  /** Feeds bytes; returns the messages completed by them. Throws PgWireError on a malformed stream, then refuses more. */
  push: (chunk: Buffer) => M[];
  /** Bytes held back waiting for the rest of a message. */
  buffered: () => number;
}

export interface BackendReader extends MessageReader<BackendMessage> {
  /** The next byte is the unframed 'S'/'N' answer to an SSLRequest or GSSENCRequest. */
  expectSslResponse: () => void;
}

interface Chunks {
  push: (chunk: Buffer) => void;
  total: () => number;
  peek: (n: number) => Buffer;
  take: (n: number) => Buffer;
}

function createChunks(): Chunks {
  let chunks: Buffer[] = [];
  let total = 0;
  const copy = (n: number, consume: boolean): Buffer => {
    const first = chunks[0];
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (consume) {
        if (first.length === n) chunks.shift();
        else chunks[0] = first.subarray(n);
        total -= n;
      }
      return out;
    }
    const out = Buffer.alloc(n);
    let filled = 0;
    let used = 0;
    for (const chunk of chunks) {
      const part = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, part);
      filled += part;
      if (part < chunk.length) {
        if (consume) chunks[used] = chunk.subarray(part);
        break;
      }
      used++;
      if (filled === n) break;
    }
    if (consume) {
      chunks = chunks.slice(used);
      total -= n;
    }
    return out;
  };
  return {
    push: (chunk) => {
      if (chunk.length === 0) return;
      chunks.push(chunk);
      total += chunk.length;
    },
    total: () => total,
    peek: (n) => copy(n, false),
    take: (n) => copy(n, true),
  };
}

type Framing = { kind: "startup" } | { kind: "typed" } | { kind: "sslResponse" };

interface Frame {
  type: string | null; // null: untyped startup-phase message
  body: Buffer;
}

/** The shared framing loop; `framing()` says how the next message is framed. */
function createFramer(
  options: MessageReaderOptions,
  framing: () => Framing,
  onFrame: (frame: Frame | { sslAccepted: boolean }) => void,
): { run: (chunk: Buffer) => void; buffered: () => number } {
  const maxMessageLength = options.maxMessageLength ?? DEFAULT_MAX_MESSAGE_LENGTH;
  const maxStartupLength = options.maxStartupLength ?? DEFAULT_MAX_STARTUP_LENGTH;
  const chunks = createChunks();
  let failed: PgWireError | null = null;
  let header: { type: string | null; bodyLength: number } | null = null;

  const step = (): boolean => {
    if (header === null) {
      const mode = framing();
      if (mode.kind === "sslResponse") {
        if (chunks.total() < 1) return false;
        const byte = chunks.take(1).toString("latin1");
        if (byte !== "S" && byte !== "N") {
          throw new PgWireError("BAD_VALUE", `SSL response must be 'S' or 'N', got ${JSON.stringify(byte)}`);
        }
        onFrame({ sslAccepted: byte === "S" });
        return true;
      }
      const typed = mode.kind === "typed";
      const headerLength = typed ? 5 : 4;
      if (chunks.total() < headerLength) return false;
      const head = chunks.take(headerLength);
      const length = head.readInt32BE(typed ? 1 : 0);
      const [min, max] = typed ? [4, maxMessageLength] : [8, maxStartupLength];
      if (length < min) throw new PgWireError("LENGTH_TOO_SMALL", `message length ${length} is below ${min}`);
      if (length > max) throw new PgWireError("LENGTH_TOO_LARGE", `message length ${length} exceeds ${max}`);
      header = { type: typed ? head.toString("latin1", 0, 1) : null, bodyLength: length - 4 };
    }
    if (chunks.total() < header.bodyLength) return false;
    const body = chunks.take(header.bodyLength);
    const frame = { type: header.type, body };
    header = null;
    onFrame(frame);
    return true;
  };

  return {
    run: (chunk) => {
      if (failed !== null) throw new PgWireError("READER_FAILED", `the stream was already refused: ${failed.message}`);
      chunks.push(chunk);
      try {
        while (step());
      } catch (error) {
        failed =
          error instanceof PgWireError ? error : new PgWireError("BAD_VALUE", `unparseable message: ${String(error)}`);
        throw failed;
      }
    },
    buffered: () => chunks.total(),
  };
}

/**
 * Reads what a client sends. Starts in the startup phase (untyped messages) unless
 * `startupDone`; SSLRequest and GSSENCRequest keep it there, StartupMessage ends it.
 */
export function createFrontendReader(
  options: MessageReaderOptions & { startupDone?: boolean } = {},
): MessageReader<FrontendMessage> {
  let inStartup = options.startupDone !== true;
  let out: FrontendMessage[] = [];
  const framer = createFramer(
    options,
    () => ({ kind: inStartup ? "startup" : "typed" }),
    (frame) => {
      if (!("body" in frame)) return;
      if (frame.type === null) {
        const message = parseStartupBody(frame.body);
        if (message.kind === "StartupMessage") inStartup = false;
        out.push(message);
      } else {
        out.push(parseFrontendMessage(frame.type, frame.body));
      }
    },
  );
  return {
    push: (chunk) => {
      out = [];
      framer.run(chunk);
      return out;
    },
    buffered: framer.buffered,
  };
}

/** Reads what a server sends: typed messages, and the SSL answer byte when told to expect it. */
export function createBackendReader(options: MessageReaderOptions = {}): BackendReader {
  let sslPending = false;
  let out: BackendMessage[] = [];
  const framer = createFramer(
    options,
    () => ({ kind: sslPending ? "sslResponse" : "typed" }),
    (frame) => {
      if ("body" in frame) {
        out.push(parseBackendMessage(frame.type ?? "", frame.body));
      } else {
        sslPending = false;
        out.push({ kind: "SSLResponse", accepted: frame.sslAccepted });
      }
    },
  );
  return {
    push: (chunk) => {
      out = [];
      framer.run(chunk);
      return out;
    },
    buffered: framer.buffered,
    expectSslResponse: () => {
      sslPending = true;
    },
  };
}
