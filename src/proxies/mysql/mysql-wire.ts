/**
 * The MySQL/MariaDB client/server protocol as the proxy needs it, pure: packet framing (a relay that
 * finds packet boundaries in a byte stream without copying rows), the handshake packets of both
 * sides, OK/ERR/EOF, and the sign-in scrambles (mysql_native_password, caching_sha2_password).
 * Reference: the MySQL "Client/Server Protocol" pages and MariaDB's "Clients & Communication Protocol".
 */

export class MysqlWireError extends Error {
  override readonly name = "MysqlWireError";
}

// ---------------------------------------------------------------- constants

export const CLIENT = {
  LONG_PASSWORD: 1,
  FOUND_ROWS: 2,
  LONG_FLAG: 4,
  CONNECT_WITH_DB: 8,
  NO_SCHEMA: 16,
  COMPRESS: 32,
  ODBC: 64,
  LOCAL_FILES: 128,
  IGNORE_SPACE: 256,
  PROTOCOL_41: 512,
  INTERACTIVE: 1024,
  SSL: 2048,
  IGNORE_SIGPIPE: 4096,
  TRANSACTIONS: 8192,
  RESERVED: 16384,
  SECURE_CONNECTION: 32768,
  MULTI_STATEMENTS: 1 << 16,
  MULTI_RESULTS: 1 << 17,
  PS_MULTI_RESULTS: 1 << 18,
  PLUGIN_AUTH: 1 << 19,
  CONNECT_ATTRS: 1 << 20,
  PLUGIN_AUTH_LENENC_CLIENT_DATA: 1 << 21,
  CAN_HANDLE_EXPIRED_PASSWORDS: 1 << 22,
  SESSION_TRACK: 1 << 23,
  DEPRECATE_EOF: 1 << 24,
} as const;

/**
 * What the proxy offers clients. Left out on purpose: COMPRESS (the relay reads packets), SSL (added
 * when a certificate is configured), DEPRECATE_EOF (the relay reads result sets in their classic form,
 * with EOF packets; SESSION_TRACK only appends to OK packets), QUERY_ATTRIBUTES (COM_QUERY stays plain text), and MariaDB's extended capabilities
 * (the LONG_PASSWORD bit says "not MariaDB-extended" to MariaDB clients: no bulk or metadata caching).
 */
export const PROXY_CAPABILITIES =
  CLIENT.LONG_PASSWORD |
  CLIENT.FOUND_ROWS |
  CLIENT.LONG_FLAG |
  CLIENT.CONNECT_WITH_DB |
  CLIENT.LOCAL_FILES |
  CLIENT.IGNORE_SPACE |
  CLIENT.PROTOCOL_41 |
  CLIENT.INTERACTIVE |
  CLIENT.IGNORE_SIGPIPE |
  CLIENT.TRANSACTIONS |
  CLIENT.SECURE_CONNECTION |
  CLIENT.MULTI_STATEMENTS |
  CLIENT.MULTI_RESULTS |
  CLIENT.PS_MULTI_RESULTS |
  CLIENT.PLUGIN_AUTH |
  CLIENT.CONNECT_ATTRS |
  CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CLIENT.SESSION_TRACK;

export const SERVER_STATUS = {
  AUTOCOMMIT: 0x0002,
  MORE_RESULTS_EXISTS: 0x0008,
  CURSOR_EXISTS: 0x0040,
} as const;

export const COM = {
  QUIT: 0x01,
  INIT_DB: 0x02,
  QUERY: 0x03,
  FIELD_LIST: 0x04,
  CREATE_DB: 0x05,
  DROP_DB: 0x06,
  REFRESH: 0x07,
  SHUTDOWN: 0x08,
  STATISTICS: 0x09,
  PROCESS_INFO: 0x0a,
  PROCESS_KILL: 0x0c,
  DEBUG: 0x0d,
  PING: 0x0e,
  CHANGE_USER: 0x11,
  BINLOG_DUMP: 0x12,
  REGISTER_SLAVE: 0x15,
  STMT_PREPARE: 0x16,
  STMT_EXECUTE: 0x17,
  STMT_SEND_LONG_DATA: 0x18,
  STMT_CLOSE: 0x19,
  STMT_RESET: 0x1a,
  SET_OPTION: 0x1b,
  STMT_FETCH: 0x1c,
  BINLOG_DUMP_GTID: 0x1e,
  RESET_CONNECTION: 0x1f,
} as const;

export const MAX_PAYLOAD = 0xffffff;
export const NATIVE_PASSWORD = "mysql_native_password";
export const CACHING_SHA2_PASSWORD = "caching_sha2_password";
export const CLEAR_PASSWORD = "mysql_clear_password";

// ---------------------------------------------------------------- bytes

/** A packet: 3-byte little-endian length, sequence id, payload (one physical packet, ≤ 16 MiB − 1). */
export function packet(seq: number, payload: Buffer): Buffer {
  if (payload.length >= MAX_PAYLOAD) throw new MysqlWireError("payload too large for one packet");
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq & 0xff;
  return Buffer.concat([head, payload]);
}

export function lenencInt(value: number): Buffer {
  if (value < 251) return Buffer.from([value]);
  if (value < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = 0xfc;
    b.writeUInt16LE(value, 1);
    return b;
  }
  if (value < 0x1000000) {
    const b = Buffer.alloc(4);
    b[0] = 0xfd;
    b.writeUIntLE(value, 1, 3);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = 0xfe;
  b.writeBigUInt64LE(BigInt(value), 1);
  return b;
}

/** A reader over one payload; every read checks bounds (MysqlWireError when the payload is short). */
export class Reader {
  offset = 0;
  constructor(readonly buffer: Buffer) {}
  private need(n: number): void {
    if (this.offset + n > this.buffer.length) throw new MysqlWireError("packet too short");
  }
  remaining(): number {
    return this.buffer.length - this.offset;
  }
  u8(): number {
    this.need(1);
    return this.buffer[this.offset++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buffer.readUInt16LE(this.offset);
    this.offset += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buffer.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  rest(): Buffer {
    return this.bytes(this.remaining());
  }
  /** A NUL-terminated string (or the rest of the payload when there is no NUL and `toEnd`). */
  nulString(toEnd = false): Buffer {
    const end = this.buffer.indexOf(0, this.offset);
    if (end < 0) {
      if (toEnd) return this.rest();
      throw new MysqlWireError("unterminated string");
    }
    const v = this.buffer.subarray(this.offset, end);
    this.offset = end + 1;
    return v;
  }
  lenencInt(): number {
    const first = this.u8();
    if (first < 0xfb) return first;
    if (first === 0xfc) return this.u16();
    if (first === 0xfd) {
      this.need(3);
      const v = this.buffer.readUIntLE(this.offset, 3);
      this.offset += 3;
      return v;
    }
    if (first === 0xfe) {
      this.need(8);
      const v = this.buffer.readBigUInt64LE(this.offset);
      this.offset += 8;
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
    throw new MysqlWireError(`bad length-encoded integer 0x${first.toString(16)}`);
  }
  lenencBytes(): Buffer {
    return this.bytes(this.lenencInt());
  }
}

// ---------------------------------------------------------------- handshake: the proxy towards clients

export interface Greeting {
  serverVersion: string;
  connectionId: number;
  /** The 20-byte nonce. */
  scramble: Buffer;
  capabilities: number;
  charset: number;
  status: number;
  authPlugin: string;
}

export function encodeGreeting(g: Greeting): Buffer {
  const caps = Buffer.alloc(4);
  caps.writeUInt32LE(g.capabilities >>> 0);
  const plugin = Buffer.from(g.authPlugin, "latin1");
  return Buffer.concat([
    Buffer.from([10]),
    Buffer.from(`${g.serverVersion}\0`, "latin1"),
    u32(g.connectionId),
    g.scramble.subarray(0, 8),
    Buffer.from([0]),
    caps.subarray(0, 2),
    Buffer.from([g.charset]),
    u16(g.status),
    caps.subarray(2, 4),
    Buffer.from([g.scramble.length + 1]),
    Buffer.alloc(10),
    g.scramble.subarray(8),
    Buffer.from([0]),
    plugin,
    Buffer.from([0]),
  ]);
}

export function parseGreeting(payload: Buffer): Greeting {
  if (payload[0] === 0xff) throw new MysqlWireError(`the server refused the connection: ${parseErr(payload).message}`);
  const r = new Reader(payload);
  const protocol = r.u8();
  if (protocol !== 10) throw new MysqlWireError(`unsupported protocol version ${protocol}`);
  const serverVersion = r.nulString().toString("latin1");
  const connectionId = r.u32();
  const part1 = r.bytes(8);
  r.u8();
  let capabilities = r.u16();
  const charset = r.u8();
  const status = r.u16();
  capabilities |= r.u16() << 16;
  const dataLength = r.u8();
  r.bytes(10);
  let part2: Buffer = Buffer.alloc(0);
  if (capabilities & CLIENT.SECURE_CONNECTION) {
    part2 = r.bytes(Math.max(13, dataLength - 8));
    if (part2[part2.length - 1] === 0) part2 = part2.subarray(0, part2.length - 1);
  }
  const authPlugin = capabilities & CLIENT.PLUGIN_AUTH ? r.nulString(true).toString("latin1") : NATIVE_PASSWORD;
  return {
    serverVersion,
    connectionId,
    scramble: Buffer.concat([part1, part2]),
    capabilities: capabilities >>> 0,
    charset,
    status,
    authPlugin,
  };
}

export interface HandshakeResponse {
  capabilities: number;
  maxPacketSize: number;
  charset: number;
  user: string;
  authResponse: Buffer;
  database: string | null;
  authPlugin: string | null;
  /** Connection attributes, when sent (not passed upstream; kept for the logs). */
  attributes: Record<string, string>;
}

/** A client's first answer of 32 bytes with CLIENT_SSL is an SSLRequest: TLS starts after it. */
export function isSslRequest(payload: Buffer): boolean {
  return payload.length === 32 && (payload.readUInt32LE(0) & CLIENT.SSL) !== 0;
}

export function parseHandshakeResponse(payload: Buffer): HandshakeResponse {
  const r = new Reader(payload);
  const capabilities = r.u32();
  if (!(capabilities & CLIENT.PROTOCOL_41)) throw new MysqlWireError("the client does not speak protocol 4.1");
  const maxPacketSize = r.u32();
  const charset = r.u8();
  r.bytes(23);
  const user = r.nulString().toString("utf8");
  let authResponse: Buffer;
  if (capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA) authResponse = r.lenencBytes();
  else if (capabilities & CLIENT.SECURE_CONNECTION) authResponse = r.bytes(r.u8());
  else authResponse = r.nulString();
  let database: string | null = null;
  if (capabilities & CLIENT.CONNECT_WITH_DB && r.remaining() > 0) database = r.nulString(true).toString("utf8");
  let authPlugin: string | null = null;
  if (capabilities & CLIENT.PLUGIN_AUTH && r.remaining() > 0) authPlugin = r.nulString(true).toString("latin1");
  const attributes: Record<string, string> = {};
  if (capabilities & CLIENT.CONNECT_ATTRS && r.remaining() > 0) {
    const block = new Reader(r.lenencBytes());
    while (block.remaining() > 0 && Object.keys(attributes).length < 64) {
      const key = block.lenencBytes().toString("utf8");
      attributes[key.slice(0, 64)] = block.lenencBytes().toString("utf8").slice(0, 256);
    }
  }
  return {
    capabilities: capabilities >>> 0,
    maxPacketSize,
    charset,
    user,
    authResponse,
    database: database === "" ? null : database,
    authPlugin,
    attributes,
  };
}

export function encodeHandshakeResponse(h: Omit<HandshakeResponse, "attributes">): Buffer {
  const parts = [
    u32(h.capabilities >>> 0),
    u32(h.maxPacketSize),
    Buffer.from([h.charset]),
    Buffer.alloc(23),
    Buffer.from(`${h.user}\0`, "utf8"),
  ];
  if (h.capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA) parts.push(lenencInt(h.authResponse.length));
  else parts.push(Buffer.from([h.authResponse.length]));
  parts.push(h.authResponse);
  if (h.capabilities & CLIENT.CONNECT_WITH_DB) parts.push(Buffer.from(`${h.database ?? ""}\0`, "utf8"));
  if (h.capabilities & CLIENT.PLUGIN_AUTH) parts.push(Buffer.from(`${h.authPlugin ?? ""}\0`, "latin1"));
  return Buffer.concat(parts);
}

/** The SSLRequest a client sends before TLS: the first 32 bytes of its handshake response. */
export function encodeSslRequest(capabilities: number, charset: number): Buffer {
  return Buffer.concat([
    u32((capabilities | CLIENT.SSL) >>> 0),
    u32(MAX_PAYLOAD),
    Buffer.from([charset]),
    Buffer.alloc(23),
  ]);
}

export function encodeAuthSwitch(plugin: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xfe]), Buffer.from(`${plugin}\0`, "latin1"), data]);
}

export function parseAuthSwitch(payload: Buffer): { plugin: string; data: Buffer } {
  const r = new Reader(payload);
  r.u8();
  const plugin = r.nulString(true).toString("latin1");
  let data = r.rest();
  if (data.length > 0 && data[data.length - 1] === 0) data = data.subarray(0, data.length - 1);
  return { plugin, data };
}

// ---------------------------------------------------------------- OK / ERR / EOF

export interface OkPacket {
  affectedRows: number;
  lastInsertId: number;
  status: number;
  warnings: number;
}

export function parseOk(payload: Buffer): OkPacket {
  const r = new Reader(payload);
  r.u8();
  const affectedRows = r.lenencInt();
  const lastInsertId = r.lenencInt();
  const status = r.remaining() >= 2 ? r.u16() : 0;
  const warnings = r.remaining() >= 2 ? r.u16() : 0;
  return { affectedRows, lastInsertId, status, warnings };
}

export function encodeOk(status = SERVER_STATUS.AUTOCOMMIT): Buffer {
  return Buffer.concat([Buffer.from([0, 0, 0]), u16(status), u16(0)]);
}

/** EOF: 0xfe and fewer than 9 bytes (a row starting 0xfe has an 8-byte length after it). */
export function isEof(payload: Buffer | number, length: number): boolean {
  const first = typeof payload === "number" ? payload : payload[0];
  return first === 0xfe && length < 9;
}

export function eofStatus(payload: Buffer): number {
  return payload.length >= 5 ? payload.readUInt16LE(3) : 0;
}

export interface ErrPacket {
  code: number;
  sqlstate: string;
  message: string;
}

export function parseErr(payload: Buffer): ErrPacket {
  const r = new Reader(payload);
  r.u8();
  const code = r.remaining() >= 2 ? r.u16() : 0;
  let sqlstate = "HY000";
  if (r.remaining() >= 6 && payload[r.offset] === 0x23) {
    r.u8();
    sqlstate = r.bytes(5).toString("latin1");
  }
  return { code, sqlstate, message: r.rest().toString("utf8") };
}

export function encodeErr(code: number, sqlstate: string, message: string): Buffer {
  return Buffer.concat([
    Buffer.from([0xff]),
    u16(code),
    Buffer.from(`#${sqlstate.slice(0, 5).padEnd(5, "0")}`, "latin1"),
    Buffer.from(message, "utf8"),
  ]);
}

// ---------------------------------------------------------------- framing

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v & 0xffff);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** What a relay callback decides for a packet once its header and first byte are known. */
export type Verdict = "pass" | "drop";

export interface PacketHead {
  seq: number;
  length: number;
  /** The payload's first byte; -1 for an empty payload. */
  first: number;
  /** The packet continues a logical packet (the one before was 16 MiB − 1 long). */
  continuation: boolean;
}

export interface PacketRelayOptions {
  /** Payloads up to this many bytes reach `complete` whole; longer ones as their first `keep` bytes only. */
  keep: number;
  /**
   * How much of this packet's payload `complete` needs (at most `keep`); 0: none (a row, whose end
   * is all that matters). Asked right after `decide`. Absent: `keep`.
   */
  need?(head: PacketHead): number;
  /** `head` is reused for the next packet: copy what must outlive the call. */
  decide(head: PacketHead): Verdict;
  /** The packet is complete; `body` is the payload (or its first `keep` bytes). */
  complete(head: PacketHead, body: Buffer, emit: (bytes: Buffer) => void): void;
}

export interface PacketRelay {
  /** Feeds bytes; returns what to write on, in order (slices of `chunk` where nothing changed). */
  push(chunk: Buffer): Buffer[];
  /** 0 at a packet boundary, otherwise the bytes still due in the current packet (null: in its header). */
  remainingInPacket(): number | null;
}

/**
 * Follows a stream of packets. Each packet is decided (pass or drop) as soon as its header and first
 * payload byte are in; passed bytes go out as slices of the input chunk (no copy), dropped ones not at
 * all; `complete` may emit packets of its own after the one it completes. Bodies are kept only up to
 * `keep` bytes, so a row of any size is never buffered.
 */
const EMPTY = Buffer.alloc(0);

export function createPacketRelay(options: PacketRelayOptions): PacketRelay {
  let header: Buffer = Buffer.alloc(0);
  let head: PacketHead | null = null;
  /** One head object, filled in for each packet (a row costs no allocation). */
  const current: PacketHead = { seq: 0, length: 0, first: -1, continuation: false };
  let verdict: Verdict = "pass";
  let received = 0;
  let parts: Buffer[] = [];
  let kept = 0;
  let limit = options.keep;
  let previousFull = false;

  const push = (chunk: Buffer): Buffer[] => {
    const out: Buffer[] = [];
    let runStart = 0; // start of the run of passed bytes in `chunk` not yet put out
    let offset = 0;
    const flushRun = (end: number) => {
      if (end > runStart) out.push(chunk.subarray(runStart, end));
      runStart = end;
    };
    const emit = (bytes: Buffer) => {
      flushRun(offset);
      out.push(bytes);
    };
    while (offset < chunk.length || (head !== null && head.length === 0)) {
      if (head === null) {
        const headerStart = offset;
        const fresh = header.length === 0;
        const take = Math.min(4 - header.length, chunk.length - offset);
        header =
          fresh && take === 4
            ? chunk.subarray(offset, offset + 4)
            : Buffer.concat([header, chunk.subarray(offset, offset + take)]);
        offset += take;
        const length = header.length === 4 ? header.readUIntLE(0, 3) : 0;
        if (header.length < 4 || (length > 0 && offset >= chunk.length)) {
          // Held back until the packet can be decided (its first byte is in a later chunk).
          flushRun(headerStart);
          runStart = offset;
          break;
        }
        current.seq = header[3]!;
        current.length = length;
        current.first = length > 0 ? chunk[offset]! : -1;
        current.continuation = previousFull;
        head = current;
        verdict = options.decide(head);
        limit = options.need ? Math.min(options.keep, options.need(head)) : options.keep;
        if (verdict === "drop" || !(fresh && take === 4)) {
          flushRun(headerStart);
          // A passed header split across chunks goes as a copy; one wholly in this chunk stays in the run.
          if (verdict === "pass") out.push(Buffer.from(header));
          runStart = offset;
        }
        header = EMPTY;
        received = 0;
        if (parts.length > 0) parts = [];
        kept = 0;
      }
      const take = Math.min(head.length - received, chunk.length - offset);
      if (take > 0 && kept < limit) {
        const piece = chunk.subarray(offset, offset + Math.min(take, limit - kept));
        parts.push(piece);
        kept += piece.length;
      }
      if (verdict === "drop") runStart = offset + take;
      offset += take;
      received += take;
      if (received < head.length) break;
      const done = head;
      head = null;
      previousFull = done.length === MAX_PAYLOAD;
      const body = parts.length === 1 ? parts[0]! : parts.length === 0 ? EMPTY : Buffer.concat(parts);
      options.complete(done, body, emit);
    }
    flushRun(offset);
    return out;
  };

  return {
    push,
    remainingInPacket: () => (head !== null ? head.length - received : header.length > 0 ? null : 0),
  };
}
