/**
 * The file-transfer policy on an SFTP channel (also OpenSSH's default scp): fed the client's bytes and
 * the server's bytes as the SSH proxy relays them, it returns what to pass on, refuses what the role's
 * `session.files` policy does not allow, and reports each file that crossed with its size and SHA-256.
 * Socket-free: buffers in, buffers and transfers out. SFTP version 3 (draft-ietf-secsh-filexfer-02).
 *
 * Choices:
 * - An OPEN is a download unless it is write-only (OpenSSH's sftp-server opens O_RDONLY when neither
 *   READ nor WRITE is set), and an upload when it writes, appends, creates or truncates. A refused
 *   OPEN never reaches the server: the client gets SSH_FX_PERMISSION_DENIED with a message naming the
 *   policy (and the same sentence on the channel's stderr, which ssh prints).
 * - maxBytes: a DATA reply that would take a file past it is replaced by SSH_FX_FAILURE (its bytes never
 *   reach the client); a WRITE that would is dropped and answered SSH_FX_FAILURE. What passed before stays
 *   passed, and the transfer is reported refused (rule maxBytes).
 * - Hashes: the bytes of DATA replies (READ) and WRITE requests, per handle and direction, in file order.
 *   Data that comes ahead of a gap (parallel requests answered out of order) waits, copied, up to
 *   REORDER_LIMIT per file; data for an offset already passed (a re-read, a seek back), or more waiting
 *   than that, makes the hash null ("not sequential"), and the size still counts every byte that crossed.
 * - Only packet heads are copied (and only when cut by a chunk boundary); file data passes as views of
 *   the chunks it came in, hashed as it streams.
 * - Fail closed: under a restrictive policy (a denied direction or maxBytes), a stream that is not SFTP
 *   version 3 or cannot be followed (a length beyond maxPacket) gets no OPEN through, and a broken stream
 *   stops the channel (`onBroken`).
 */
import type { FileRules } from "../../contract/file-policy.js";
import type { FileTransferEvent } from "../../modules/sessions/sessions.types.js";
import { CHANNEL_REORDER_LIMIT, FileStream } from "./file-stream.js";
import { SFTP, SFTP_OPEN, SftpReader } from "./sftp-log.js";

export const SSH_FX = { OK: 0, EOF: 1, FAILURE: 4, PERMISSION_DENIED: 3, OP_UNSUPPORTED: 8 } as const;

const DEFAULT_MAX_PACKET = 1024 * 1024;
const MAX_HANDLES = 1024;
const MAX_PENDING = 8192;
/** Handles are at most 256 bytes (draft §6.2); a WRITE's head is read up to its data. */
const MAX_HANDLE = 256;

export interface SftpFilterOptions {
  rules: FileRules | undefined;
  role: string;
  /** A reply the proxy makes itself, written to the client between two of the server's packets. */
  toClient(packet: Buffer): void;
  /** A sentence for the client's stderr. */
  notify(message: string): void;
  /** A file crossed or was refused (once per file handle and direction, at CLOSE or at the end). */
  onTransfer(event: FileTransferEvent): void;
  /** The stream cannot be followed under a restrictive policy: the channel must stop. */
  onBroken(reason: string): void;
  maxPacket?: number;
}

export interface SftpFilter {
  /** The client's bytes: what to pass on to the server. */
  fromClient(chunk: Buffer): Buffer[];
  /** The server's bytes: what to pass on to the client (with the proxy's own replies in between). */
  fromServer(chunk: Buffer): Buffer[];
  /** The channel closed: files still open are reported as failed. */
  end(): void;
}

/** Whether a policy restricts anything (a denied direction or a size cap). */
export function restrictive(rules: FileRules | undefined): boolean {
  return rules !== undefined && (rules.download === "deny" || rules.upload === "deny" || rules.maxBytes !== undefined);
}

export function deniedMessage(role: string, direction: "upload" | "download", path: string): string {
  const what = direction === "download" ? "Downloads" : "Uploads";
  return `Stint: ${what} are not allowed for role ${role} (policy session.files.${direction}: deny): ${path}`;
}

export function tooLargeMessage(role: string, maxBytes: number, path: string): string {
  return `Stint: ${path} is larger than the ${maxBytes} bytes role ${role} may transfer (policy session.files.maxBytes)`;
}

interface OpenFile {
  path: string;
  primary: "upload" | "download";
  streams: Partial<Record<"upload" | "download", FileStream>>;
}

type Pending =
  | { kind: "open"; path: string; writing: boolean }
  | { kind: "read"; handle: string; offset: number }
  | { kind: "write"; handle: string }
  | { kind: "close"; handle: string };

/** What to do with a packet once its head was read. */
interface Decision {
  /** Drop the packet (it never reaches the other side); `replace` goes in its place. */
  drop?: boolean;
  replace?: Buffer;
  /** Sink for the packet's bytes after its head (file data); called as a method. */
  body?(data: Buffer): void;
  /** The packet ended (after its body); called as a method. */
  done?(): void;
}

const PASS: Decision = {};

/**
 * Splits a byte stream into SFTP packets and applies a decision to each, made from its head (the
 * first `keep(type)` bytes from the type byte on, type included). Passed packets go on as views of the
 * chunks they came in; the only copies are of a packet's length and head cut by a chunk boundary.
 */
class PacketGate {
  private lengthBytes = Buffer.alloc(4);
  private lengthHave = 0;
  private length = -1;
  private want = -1;
  private headPieces: Buffer[] = [];
  private headHave = 0;
  /** This packet's bytes from earlier chunks, not yet passed on (length field and head, copied). */
  private held: Buffer[] = [];
  private remaining = 0;
  private decision: Decision = PASS;
  private queue: Buffer[] = [];
  broken = false;

  constructor(
    private readonly maxPacket: number,
    private readonly keep: (type: number, length: number) => number,
    private readonly decide: (head: Buffer) => Decision,
    private readonly onBroken: () => void,
  ) {}

  /** Between two packets: nothing of a packet started and not yet passed on. */
  atBoundary(): boolean {
    return this.length < 0 && this.lengthHave === 0 && this.remaining === 0;
  }

  /** A packet of our own, passed on at the next boundary. */
  enqueue(packet: Buffer): void {
    this.queue.push(packet);
  }

  feed(chunk: Buffer): Buffer[] {
    if (this.broken) return [chunk];
    // The common case: the whole chunk is file data of a packet passing through.
    if (this.remaining > chunk.length && !this.decision.drop) {
      this.remaining -= chunk.length;
      this.decision.body?.(chunk);
      return [chunk];
    }
    const out: Buffer[] = [];
    let segment = 0;
    let offset = 0;
    let packetStart = 0;
    while (offset < chunk.length) {
      const left = chunk.length - offset;
      if (this.remaining > 0) {
        const step = Math.min(this.remaining, left);
        if (this.decision.drop) {
          if (offset > segment) out.push(chunk.subarray(segment, offset));
          segment = offset + step;
        } else {
          this.decision.body?.(chunk.subarray(offset, offset + step));
        }
        this.remaining -= step;
        offset += step;
        if (this.remaining === 0) segment = this.packetEnd(out, chunk, offset, segment);
        continue;
      }
      if (this.length < 0) {
        if (this.lengthHave === 0) packetStart = offset;
        const step = Math.min(4 - this.lengthHave, left);
        chunk.copy(this.lengthBytes, this.lengthHave, offset, offset + step);
        this.lengthHave += step;
        offset += step;
        if (this.lengthHave < 4) continue;
        this.length = this.lengthBytes.readUInt32BE(0);
        this.lengthHave = 0;
        if (this.length === 0 || this.length > this.maxPacket) {
          this.broken = true;
          this.onBroken();
          if (offset > segment || this.held.length > 0) out.push(...this.held, chunk.subarray(segment));
          this.held = [];
          return out;
        }
        this.want = -1;
        this.headHave = 0;
        this.headPieces = [];
        continue;
      }
      if (this.want < 0) this.want = Math.max(1, Math.min(this.length, this.keep(chunk[offset]!, this.length)));
      const step = Math.min(this.want - this.headHave, left);
      this.headPieces.push(chunk.subarray(offset, offset + step));
      this.headHave += step;
      offset += step;
      if (this.headHave < this.want) continue;
      const head = this.headPieces.length === 1 ? this.headPieces[0]! : Buffer.concat(this.headPieces, this.headHave);
      this.headPieces = [];
      let decision: Decision;
      try {
        decision = this.decide(head);
      } catch {
        decision = PASS;
      }
      this.decision = decision;
      this.remaining = this.length - this.want;
      if (decision.drop) {
        if (packetStart > segment) out.push(chunk.subarray(segment, packetStart));
        this.held = [];
        if (decision.replace) out.push(decision.replace);
        segment = offset;
      } else if (this.held.length > 0) {
        // The packet began in an earlier chunk: its first bytes go out first (segment is 0 here).
        out.push(...this.held);
        this.held = [];
      }
      this.length = -1;
      if (this.remaining === 0) segment = this.packetEnd(out, chunk, offset, segment);
    }
    // A packet whose head is not complete yet: its bytes so far are held (copied) until it is decided.
    if (this.length >= 0 || this.lengthHave > 0) {
      const start = Math.max(packetStart, segment);
      if (start > segment) out.push(chunk.subarray(segment, start));
      this.held.push(Buffer.from(chunk.subarray(start)));
      this.headPieces = this.headPieces.map((piece) => Buffer.from(piece));
      return out;
    }
    if (chunk.length > segment) out.push(segment === 0 ? chunk : chunk.subarray(segment));
    return out;
  }

  /** The current packet ended at `offset`: its `done`, then the proxy's own packets; returns the new segment start. */
  private packetEnd(out: Buffer[], chunk: Buffer, offset: number, segment: number): number {
    const decision = this.decision;
    this.decision = PASS;
    decision.done?.();
    if (this.queue.length === 0) return segment;
    if (offset > segment) out.push(chunk.subarray(segment, offset));
    out.push(...this.queue);
    this.queue = [];
    return offset;
  }
}

export function createSftpFilter(options: SftpFilterOptions): SftpFilter {
  const { rules, role } = options;
  const strict = restrictive(rules);
  const maxPacket = options.maxPacket ?? DEFAULT_MAX_PACKET;
  const pending = new Map<number, Pending>();
  const handles = new Map<string, OpenFile>();
  /** The version the server answered; fail closed until it is known to be 3. */
  let version: number | undefined;
  let brokenReported = false;

  const broken = (reason: string) => {
    if (brokenReported) return;
    brokenReported = true;
    if (strict) options.onBroken(reason);
  };

  const server = new PacketGate(maxPacket, responseKeep, response, () => broken("the SFTP stream cannot be followed"));
  const client = new PacketGate(maxPacket, requestKeep, request, () => broken("the SFTP stream cannot be followed"));

  /** A reply of the proxy's own: at once between two server packets after VERSION, else at the next boundary. */
  const reply = (packet: Buffer) => {
    // Never ahead of the server's VERSION (a client may send requests before it came).
    if (version !== undefined && server.atBoundary()) options.toClient(packet);
    else server.enqueue(packet);
  };

  const report = (file: OpenFile, direction: "upload" | "download", stream: FileStream, closeError?: string) => {
    const sha256 = stream.digest();
    const base = { protocol: "sftp" as const, direction, path: file.path, bytes: stream.bytes, sha256 };
    if (stream.denied) {
      options.onTransfer({ ...base, outcome: "denied", rule: stream.denied.rule, reason: stream.denied.reason });
    } else if (stream.failed ?? closeError) {
      options.onTransfer({ ...base, outcome: "failed", reason: (stream.failed ?? closeError)! });
    } else {
      options.onTransfer({ ...base, outcome: "success" });
    }
  };

  const closeFile = (handle: string, closeError?: string) => {
    const file = handles.get(handle);
    if (!file) return;
    handles.delete(handle);
    for (const direction of ["download", "upload"] as const) {
      const stream = file.streams[direction];
      if (stream && (direction === file.primary || stream.bytes > 0)) report(file, direction, stream, closeError);
    }
  };

  const budget = { left: CHANNEL_REORDER_LIMIT };
  const stream = (file: OpenFile, direction: "upload" | "download") =>
    (file.streams[direction] ??= new FileStream(budget));

  function refuseOpen(
    id: number,
    path: string,
    direction: "upload" | "download",
    message: string,
    rule?: "download" | "upload",
  ) {
    reply(statusPacket(id, SSH_FX.PERMISSION_DENIED, message));
    options.notify(message);
    options.onTransfer({
      protocol: "sftp",
      direction,
      path,
      bytes: 0,
      sha256: null,
      outcome: "denied",
      reason: message,
      ...(rule ? { rule } : {}),
    });
  }

  /**
   * Not when the id is still waiting: the server answers both requests, in order, and the first answer
   * (an OPEN's handle) must not be taken for the second's (a bogus READ), or the file goes unfollowed.
   */
  const remember = (id: number, entry: Pending): boolean => {
    if (pending.size >= MAX_PENDING || pending.has(id)) return false;
    pending.set(id, entry);
    return true;
  };
  /** Under a restrictive policy a read or write the filter cannot follow does not pass. */
  const untracked = (id: number): Decision => {
    if (!strict) return PASS;
    const why = pending.has(id) ? "its request id is still in use" : "too many SFTP requests are waiting";
    reply(statusPacket(id, SSH_FX.FAILURE, `Stint: this request cannot be followed (${why}); try again`));
    return { drop: true };
  };

  // Called for every packet (a transfer has thousands a second): no closure is made per packet.
  function request(head: Buffer): Decision {
    const read = new SftpReader(head);
    const type = read.byte();
    if (type === SFTP.INIT) return PASS;
    const id = read.uint32();
    switch (type) {
      case SFTP.OPEN: {
        let path: string;
        let flags: number;
        try {
          path = read.text();
          flags = read.uint32();
        } catch {
          if (!strict) return PASS;
          refuseOpen(id, "(unreadable)", "download", "Stint: this SFTP request cannot be read, so it is refused");
          return { drop: true };
        }
        const reading = (flags & SFTP_OPEN.READ) !== 0 || (flags & SFTP_OPEN.WRITE) === 0;
        const writing = (flags & (SFTP_OPEN.WRITE | SFTP_OPEN.APPEND | SFTP_OPEN.CREAT | SFTP_OPEN.TRUNC)) !== 0;
        const direction = writing ? "upload" : "download";
        if (reading && rules?.download === "deny") {
          refuseOpen(id, path, "download", deniedMessage(role, "download", path), "download");
          return { drop: true };
        }
        if (writing && rules?.upload === "deny") {
          refuseOpen(id, path, "upload", deniedMessage(role, "upload", path), "upload");
          return { drop: true };
        }
        const reused = pending.has(id);
        if (strict && (version !== 3 || handles.size >= MAX_HANDLES || pending.size >= MAX_PENDING || reused)) {
          const why =
            version !== 3
              ? "the server does not speak SFTP version 3"
              : reused
                ? "its request id is still in use"
                : "too many files are open";
          refuseOpen(
            id,
            path,
            direction,
            `Stint: ${path} cannot be checked against the file policy (${why}), so it is refused`,
          );
          return { drop: true };
        }
        remember(id, { kind: "open", path, writing });
        return PASS;
      }
      case SFTP.READ: {
        const handle = read.handle();
        return remember(id, { kind: "read", handle, offset: read.uint64() }) ? PASS : untracked(id);
      }
      case SFTP.CLOSE:
        return remember(id, { kind: "close", handle: read.handle() }) ? PASS : untracked(id);
      case SFTP.WRITE: {
        const handle = read.handle();
        const offset = read.uint64();
        const size = read.uint32();
        const file = handles.get(handle);
        if (!file) return PASS; // not a file the server opened for us: it refuses the WRITE itself
        const sink = stream(file, "upload");
        if (rules?.maxBytes !== undefined && offset + size > rules.maxBytes) {
          const message = tooLargeMessage(role, rules.maxBytes, file.path);
          if (!sink.denied) options.notify(message);
          sink.denied ??= { rule: "maxBytes", reason: message };
          reply(statusPacket(id, SSH_FX.FAILURE, message));
          return { drop: true };
        }
        if (!remember(id, { kind: "write", handle })) return untracked(id);
        const piece = sink.begin(offset, size);
        // The head may hold the first bytes of the data (it is read up to MAX_HANDLE's worth).
        const inHead = head.subarray(read.at(), Math.min(head.length, read.at() + size));
        if (inHead.length > 0) piece.body(inHead);
        return piece;
      }
      default:
        return PASS;
    }
  }

  function response(head: Buffer): Decision {
    const read = new SftpReader(head);
    const type = read.byte();
    if (type === SFTP.VERSION) {
      version = read.uint32();
      return PASS;
    }
    const id = read.uint32();
    const asked = pending.get(id);
    if (!asked) return PASS;
    pending.delete(id);
    switch (asked.kind) {
      case "open": {
        if (type !== SFTP.HANDLE) {
          const status = type === SFTP.STATUS ? readStatus(read) : undefined;
          options.onTransfer({
            protocol: "sftp",
            direction: asked.writing ? "upload" : "download",
            path: asked.path,
            bytes: 0,
            sha256: null,
            outcome: "failed",
            reason: status?.message || "the server refused to open the file",
          });
          return PASS;
        }
        const handle = read.handle();
        const primary = asked.writing ? "upload" : "download";
        const file: OpenFile = { path: asked.path, primary, streams: {} };
        stream(file, primary);
        handles.set(handle, file);
        return PASS;
      }
      case "read": {
        const file = handles.get(asked.handle);
        if (!file || type !== SFTP.DATA) return PASS;
        const size = read.uint32();
        const sink = stream(file, "download");
        if (rules?.maxBytes !== undefined && asked.offset + size > rules.maxBytes) {
          const message = tooLargeMessage(role, rules.maxBytes, file.path);
          if (!sink.denied) options.notify(message);
          sink.denied ??= { rule: "maxBytes", reason: message };
          return { drop: true, replace: statusPacket(id, SSH_FX.FAILURE, message) };
        }
        return sink.begin(asked.offset, size);
      }
      case "write": {
        const file = handles.get(asked.handle);
        const status = type === SFTP.STATUS ? readStatus(read) : undefined;
        if (file && (!status || status.code !== SSH_FX.OK)) {
          stream(file, "upload").failed ??= status?.message || "the server refused a write";
        }
        return PASS;
      }
      case "close": {
        const status = type === SFTP.STATUS ? readStatus(read) : undefined;
        closeFile(asked.handle, status && status.code !== SSH_FX.OK ? status.message || "close failed" : undefined);
        return PASS;
      }
    }
  }

  return {
    fromClient: (chunk) => {
      const out = client.feed(chunk);
      return strict && client.broken ? [] : out;
    },
    fromServer: (chunk) => {
      const out = server.feed(chunk);
      return strict && server.broken ? [] : out;
    },
    end: () => {
      for (const handle of [...handles.keys()]) closeFile(handle, "not closed");
      pending.clear();
    },
  };
}

/** Heads read of requests: a WRITE up to MAX_HANDLE's worth past its data's length field, others whole. */
function requestKeep(type: number, length: number): number {
  return type === SFTP.WRITE ? 1 + 4 + 4 + MAX_HANDLE + 8 + 4 : length;
}

/** Heads read of responses: DATA up to its data's length field; NAME, ATTRS, EXTENDED_REPLY up to the id. */
function responseKeep(type: number, length: number): number {
  if (type === SFTP.DATA) return 1 + 4 + 4;
  if (type === SFTP.NAME || type === SFTP.ATTRS || type === SFTP.EXTENDED_REPLY) return 1 + 4;
  return length;
}

/** SSH_FXP_STATUS: id, code, message, language tag. */
export function statusPacket(id: number, code: number, message: string): Buffer {
  const text = Buffer.from(message, "utf8");
  const language = Buffer.from("en", "latin1");
  const packet = Buffer.alloc(4 + 1 + 4 + 4 + 4 + text.length + 4 + language.length);
  let at = packet.writeUInt32BE(packet.length - 4, 0);
  at = packet.writeUInt8(SFTP.STATUS, at);
  at = packet.writeUInt32BE(id, at);
  at = packet.writeUInt32BE(code, at);
  at = packet.writeUInt32BE(text.length, at);
  at += text.copy(packet, at);
  at = packet.writeUInt32BE(language.length, at);
  language.copy(packet, at);
  return packet;
}

function readStatus(read: SftpReader): { code: number; message: string } {
  const code = read.uint32();
  let message = "";
  try {
    message = read.text();
  } catch {
    // Old servers leave the message out.
  }
  return { code, message };
}
