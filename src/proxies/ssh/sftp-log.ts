/**
 * What happened in one SFTP session, from the raw bytes the SSH proxy relays: fed the client's bytes
 * (requests) and the server's bytes (responses) as they pass, in any chunking, it returns the facts a
 * recording keeps. Socket-free: buffers in, events out. SFTP version 3 (draft-ietf-secsh-filexfer-02),
 * what OpenSSH speaks, plus OpenSSH's posix-rename, hardlink and lsetstat extensions.
 *
 * Choices:
 * - A file handle gives one `open` event when it is closed (or when the session ends with it still
 *   open), with its byte totals: `upload` when anything was written to it or it was opened for
 *   writing, else `download`; `bytes` counts the data that crossed (WRITE requests the server
 *   acknowledged, DATA replies to READ). An OPEN the server refuses gives an `open` event with ok false.
 * - remove, rename, mkdir, rmdir, setstat (and fsetstat, lsetstat), symlink and link give one event
 *   each when the server answers, with ok and the server's message on failure.
 * - Reads of metadata (stat, lstat, fstat, realpath, readlink, opendir/readdir) are not events.
 * - What the tracker cannot follow is still an event: a request that comes while MAX_PENDING requests
 *   wait for their answers (a client can pipeline them behind one the server is slow to answer), or
 *   with the id of one still waiting, is an event when it passes, `ok: null` (the answer not followed); a file opened while MAX_HANDLES are
 *   open is an `open` event when the server hands out its handle, without byte totals.
 * - Only headers are read: the data of WRITE requests and DATA replies is stepped over, never copied
 *   nor kept (`packetHeads`), so a transfer costs the tracker a few bytes per packet.
 * - Never throws: a packet that cannot be parsed is skipped; a length beyond `maxPacket` means the
 *   stream is not SFTP (or is desynchronised), and the tracker stops reporting.
 */

export type SftpOperation = "open" | "remove" | "rename" | "mkdir" | "rmdir" | "setstat" | "symlink" | "link";

export interface SftpEvent {
  operation: SftpOperation;
  path: string;
  /** File handles only: `upload` for writes, `download` for reads. */
  direction?: "upload" | "download";
  /** File handles only: bytes written (upload) or read (download). */
  bytes?: number;
  /** rename and link: the new name; symlink: what the link points to. */
  newPath?: string;
  /**
   * Whether the server reported success (for a file handle: its OPEN and CLOSE); null when the proxy
   * did not follow the answer (more requests waiting than it remembers).
   */
  ok: boolean | null;
  /** The server's status message when ok is false. */
  error?: string;
}

export interface SftpTracker {
  /** Bytes the client sent (requests). Returns events for requests whose answers cannot be followed. */
  fromClient(chunk: Buffer): SftpEvent[];
  /** Bytes the server sent (responses). Returns the events they complete. */
  fromServer(chunk: Buffer): SftpEvent[];
  /** The session ended: events for file handles still open. */
  end(): SftpEvent[];
}

/** Packet types (draft-ietf-secsh-filexfer-02 §3). */
export const SFTP = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const;

/** OPEN pflags. */
export const SFTP_OPEN = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const;

const STATUS_OK = 0;
/** OpenSSH's sftp-server allows 256 KiB packets; anything far larger is not SFTP. */
const DEFAULT_MAX_PACKET = 1024 * 1024;
/** Outstanding requests remembered; a client cannot grow the proxy's memory without bound. */
const MAX_PENDING = 4096;
const MAX_HANDLES = 1024;
/** Handles are at most 256 bytes (draft-ietf-secsh-filexfer-02 §6.2; OpenSSH's are 4); a longer one is not read. */
const MAX_HANDLE = 1024;

/**
 * What the tracker reads of a request: a WRITE up to its data's length field (type, id, handle, offset,
 * length), never the data; any other request whole (paths, flags: small).
 */
function requestHead(type: number): number {
  return type === SFTP.WRITE ? 1 + 4 + 4 + MAX_HANDLE + 8 + 4 : Number.MAX_SAFE_INTEGER;
}

/**
 * What the tracker reads of a response: a DATA reply up to its data's length field (type, id, length),
 * NAME, ATTRS and EXTENDED_REPLY up to their id (nothing else of them is used), any other whole
 * (STATUS, HANDLE: small).
 */
function responseHead(type: number): number {
  if (type === SFTP.DATA) return 1 + 4 + 4;
  if (type === SFTP.NAME || type === SFTP.ATTRS || type === SFTP.EXTENDED_REPLY) return 1 + 4;
  return Number.MAX_SAFE_INTEGER;
}

interface OpenFile {
  path: string;
  writing: boolean;
  read: number;
  written: number;
}

type Pending =
  | { kind: "open"; path: string; writing: boolean }
  | { kind: "close"; handle: string }
  | { kind: "read"; handle: string }
  | { kind: "write"; handle: string; bytes: number }
  | { kind: "simple"; operation: Exclude<SftpOperation, "open">; path: string; newPath?: string };

export function createSftpTracker(options: { maxPacket?: number } = {}): SftpTracker {
  const maxPacket = options.maxPacket ?? DEFAULT_MAX_PACKET;
  const pending = new Map<number, Pending>();
  const handles = new Map<string, OpenFile>();
  let stopped = false;
  const clientPackets = packetHeads(maxPacket, requestHead, () => (stopped = true));
  const serverPackets = packetHeads(maxPacket, responseHead, () => (stopped = true));

  /**
   * Remembered for its answer; one that cannot be is an event now (open and path operations): beyond
   * MAX_PENDING, or with the id of a request still waiting (the server answers both, in order: the
   * first answer is the earlier request's).
   */
  const remember = (id: number, request: Pending): SftpEvent | undefined => {
    if (pending.size < MAX_PENDING && !pending.has(id)) {
      pending.set(id, request);
      return undefined;
    }
    if (request.kind === "open")
      return { operation: "open", path: request.path, direction: request.writing ? "upload" : "download", ok: null };
    if (request.kind !== "simple") return undefined;
    const { operation, path, newPath } = request;
    return { operation, path, ...(newPath !== undefined ? { newPath } : {}), ok: null };
  };

  function request(packet: Buffer): SftpEvent | undefined {
    const read = new SftpReader(packet);
    const type = read.byte();
    if (type === SFTP.INIT) return;
    const id = read.uint32();
    switch (type) {
      case SFTP.OPEN: {
        const path = read.text();
        const flags = read.uint32();
        return remember(id, { kind: "open", path, writing: (flags & (SFTP_OPEN.WRITE | SFTP_OPEN.APPEND)) !== 0 });
      }
      case SFTP.CLOSE:
        return remember(id, { kind: "close", handle: read.handle() });
      case SFTP.READ:
        return remember(id, { kind: "read", handle: read.handle() });
      case SFTP.WRITE: {
        const handle = read.handle();
        read.uint64(); // offset
        return remember(id, { kind: "write", handle, bytes: read.uint32() });
      }
      case SFTP.REMOVE:
        return remember(id, { kind: "simple", operation: "remove", path: read.text() });
      case SFTP.MKDIR:
        return remember(id, { kind: "simple", operation: "mkdir", path: read.text() });
      case SFTP.RMDIR:
        return remember(id, { kind: "simple", operation: "rmdir", path: read.text() });
      case SFTP.SETSTAT:
        return remember(id, { kind: "simple", operation: "setstat", path: read.text() });
      case SFTP.FSETSTAT: {
        const file = handles.get(read.handle());
        return file ? remember(id, { kind: "simple", operation: "setstat", path: file.path }) : undefined;
      }
      case SFTP.RENAME: {
        const path = read.text();
        return remember(id, { kind: "simple", operation: "rename", path, newPath: read.text() });
      }
      case SFTP.SYMLINK: {
        // OpenSSH sends the target first and the link second (the draft's order reversed).
        const target = read.text();
        return remember(id, { kind: "simple", operation: "symlink", path: read.text(), newPath: target });
      }
      case SFTP.EXTENDED: {
        const name = read.text();
        if (name === "posix-rename@openssh.com" || name === "hardlink@openssh.com") {
          const path = read.text();
          const operation = name === "hardlink@openssh.com" ? "link" : "rename";
          return remember(id, { kind: "simple", operation, path, newPath: read.text() });
        }
        if (name === "lsetstat@openssh.com")
          return remember(id, { kind: "simple", operation: "setstat", path: read.text() });
        return undefined;
      }
      default:
        return undefined;
    }
  }

  function response(packet: Buffer): SftpEvent[] {
    const read = new SftpReader(packet);
    const type = read.byte();
    if (type === SFTP.VERSION) return NO_EVENTS;
    const id = read.uint32();
    const asked = pending.get(id);
    if (!asked) return NO_EVENTS;
    pending.delete(id);
    const status = type === SFTP.STATUS ? { code: read.uint32(), message: read.textOrEmpty() } : undefined;
    const failed = status !== undefined && status.code !== STATUS_OK;
    switch (asked.kind) {
      case "open":
        if (type === SFTP.HANDLE) {
          if (handles.size < MAX_HANDLES) {
            handles.set(read.handle(), { path: asked.path, writing: asked.writing, read: 0, written: 0 });
            return NO_EVENTS;
          }
          // Not followed (too many open): the opening is recorded now, without byte totals.
          return [{ operation: "open", path: asked.path, direction: asked.writing ? "upload" : "download", ok: true }];
        }
        return [
          {
            operation: "open",
            path: asked.path,
            direction: asked.writing ? "upload" : "download",
            bytes: 0,
            ok: false,
            ...(status?.message ? { error: status.message } : {}),
          },
        ];
      case "read": {
        const file = handles.get(asked.handle);
        if (file && type === SFTP.DATA) file.read += read.uint32();
        return NO_EVENTS;
      }
      case "write": {
        const file = handles.get(asked.handle);
        if (file && status && !failed) file.written += asked.bytes;
        return NO_EVENTS;
      }
      case "close": {
        const file = handles.get(asked.handle);
        if (!file) return NO_EVENTS;
        handles.delete(asked.handle);
        return [fileEvent(file, !failed, failed ? status.message : undefined)];
      }
      case "simple":
        return [
          {
            operation: asked.operation,
            path: asked.path,
            ...(asked.newPath !== undefined ? { newPath: asked.newPath } : {}),
            ok: status !== undefined && !failed,
            ...(failed && status.message ? { error: status.message } : {}),
          },
        ];
    }
  }

  // Called for every chunk relayed (tens of thousands a second in a transfer): no closure nor array is made
  // for a chunk that completes nothing, the common case (file data stepped over).
  return {
    fromClient(chunk) {
      if (stopped) return NO_EVENTS;
      let events: SftpEvent[] = NO_EVENTS;
      try {
        for (const packet of clientPackets(chunk)) {
          const event = skipMalformed(request, packet.head);
          if (event) events = events === NO_EVENTS ? [event] : [...events, event];
        }
      } catch {
        // Never throws (see above).
      }
      return events;
    },
    fromServer(chunk) {
      if (stopped) return NO_EVENTS;
      let events: SftpEvent[] = NO_EVENTS;
      try {
        for (const packet of serverPackets(chunk)) {
          const found = skipMalformed(response, packet.head);
          if (found !== undefined && found.length > 0) events = events === NO_EVENTS ? found : events.concat(found);
        }
      } catch {
        // Never throws (see above).
      }
      return events;
    },
    end: () => {
      const events = [...handles.values()].map((file) => fileEvent(file, false, "not closed"));
      handles.clear();
      pending.clear();
      return events;
    },
  };
}

/** What a chunk that completes nothing returns (shared: callers only read it). */
const NO_EVENTS: SftpEvent[] = [];
const NO_HEADS: PacketHead[] = [];

function fileEvent(file: OpenFile, ok: boolean, error: string | undefined): SftpEvent {
  const upload = file.writing || file.written > 0;
  return {
    operation: "open",
    path: file.path,
    direction: upload ? "upload" : "download",
    bytes: upload ? file.written : file.read,
    ok,
    ...(error ? { error } : {}),
  };
}

function skipMalformed<T>(work: (packet: Buffer) => T, packet: Buffer): T | undefined {
  try {
    return work(packet);
  } catch (error) {
    if (error instanceof TruncatedPacketError) return undefined;
    throw error;
  }
}

/** The start of one SFTP packet: as much of it as the tracker reads. */
export interface PacketHead {
  /** The packet's length after its length field (type byte and payload), as the field says. */
  length: number;
  /** The packet's first bytes from its type byte on: all of them, or the first `keep(type)`. */
  head: Buffer;
}

/**
 * Splits a byte stream into SFTP packets (uint32 length, then that many bytes: type and payload) and
 * returns the start of each packet a chunk reaches: `keep(type)` bytes of it at most (type included),
 * the rest is stepped over, never copied nor held, so the file data a DATA reply or a WRITE request
 * carries costs nothing but the arithmetic. A head inside one chunk is a view of it; only a head cut
 * by a chunk boundary is copied (a few bytes, or one small packet). A packet is reported once its head
 * has arrived, possibly before its last bytes. A length of 0 or beyond `maxPacket` is not SFTP: the
 * splitter stops for good and calls `onOversize`.
 */
export function packetHeads(
  maxPacket: number,
  keep: (type: number) => number,
  onOversize: () => void,
): (chunk: Buffer) => PacketHead[] {
  const lengthBytes = Buffer.alloc(4);
  let lengthHave = 0;
  /** The current packet's length, or -1 while its length field is being read. */
  let length = -1;
  /** Head bytes wanted of the current packet (-1 until its type byte is seen), and those collected. */
  let want = -1;
  let pieces: Buffer[] = [];
  let have = 0;
  /** Bytes of the current packet left to step over after its head. */
  let skip = 0;
  let broken = false;
  return (chunk) => {
    // File data: the whole chunk lies inside the packet being stepped over.
    if (skip >= chunk.length && !broken) {
      skip -= chunk.length;
      return NO_HEADS;
    }
    let heads = NO_HEADS;
    let offset = 0;
    while (!broken && offset < chunk.length) {
      const left = chunk.length - offset;
      if (skip > 0) {
        const step = Math.min(skip, left);
        skip -= step;
        offset += step;
        continue;
      }
      if (length < 0) {
        if (lengthHave === 0 && left >= 4) {
          length = chunk.readUInt32BE(offset);
          offset += 4;
        } else {
          const step = Math.min(4 - lengthHave, left);
          chunk.copy(lengthBytes, lengthHave, offset, offset + step);
          lengthHave += step;
          offset += step;
          if (lengthHave < 4) continue;
          length = lengthBytes.readUInt32BE(0);
          lengthHave = 0;
        }
        if (length === 0 || length > maxPacket) {
          broken = true;
          pieces = [];
          onOversize();
          break;
        }
        want = -1;
        have = 0;
        continue;
      }
      if (want < 0) want = Math.max(1, Math.min(length, keep(chunk[offset]!)));
      const step = Math.min(want - have, left);
      pieces.push(chunk.subarray(offset, offset + step));
      have += step;
      offset += step;
      if (have < want) continue;
      if (heads === NO_HEADS) heads = [];
      heads.push({ length, head: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, have) });
      pieces = [];
      skip = length - want;
      length = -1;
    }
    return heads;
  };
}

/** A field past the packet's end (a RangeError, as Buffer's own reads throw). */
class TruncatedPacketError extends RangeError {}

/**
 * Reads an SFTP packet's fields in order; a field past the packet's end throws TruncatedPacketError. A class,
 * not closures: one is made per packet (thousands a second in a transfer).
 */
export class SftpReader {
  private offset = 0;
  constructor(private readonly packet: Buffer) {}

  private take(length: number): number {
    const at = this.offset;
    if (length > this.packet.length - at) throw new TruncatedPacketError("truncated SFTP packet");
    this.offset = at + length;
    return at;
  }

  /** Where the next field starts. */
  at(): number {
    return this.offset;
  }
  byte(): number {
    return this.packet[this.take(1)]!;
  }
  uint32(): number {
    return this.packet.readUInt32BE(this.take(4));
  }
  /** A uint64 as a number (exact up to 2^53, as Number(bigint) would round past it). */
  uint64(): number {
    const at = this.take(8);
    return this.packet.readUInt32BE(at) * 0x1_0000_0000 + this.packet.readUInt32BE(at + 4);
  }
  string(): Buffer {
    const length = this.uint32();
    const at = this.take(length);
    return this.packet.subarray(at, at + length);
  }
  text(): string {
    const length = this.uint32();
    const at = this.take(length);
    return this.packet.toString("utf8", at, at + length);
  }
  /** A trailing string that old servers may leave out. */
  textOrEmpty(): string {
    return this.offset < this.packet.length ? this.text() : "";
  }
  /** A handle, as a map key. */
  handle(): string {
    const length = this.uint32();
    const at = this.take(length);
    return this.packet.toString("hex", at, at + length);
  }
}
