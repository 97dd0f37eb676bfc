/**
 * The MySQL relay, socket-free: packet framing at every chunk boundary, the answers of each command
 * followed to their end (multi-statement results, prepared statements, a cursor), refused commands,
 * LOAD DATA LOCAL refused, and the query log entries that come out.
 */
import { describe, expect, it } from "vitest";
import type { QueryLogEntry } from "../../modules/sessions/sessions.types.js";
import { createMysqlSession, statementVerb } from "./mysql-session.js";
import {
  COM,
  MAX_PAYLOAD,
  SERVER_STATUS,
  createPacketRelay,
  encodeErr,
  encodeGreeting,
  encodeHandshakeResponse,
  lenencInt,
  packet,
  parseErr,
  parseGreeting,
  parseHandshakeResponse,
  CLIENT,
  PROXY_CAPABILITIES,
} from "./mysql-wire.js";
import { cachingSha2Scramble, nativePasswordScramble } from "./mysql-scramble.js";

const ok = (seq: number, affected = 0, status: number = SERVER_STATUS.AUTOCOMMIT) =>
  packet(seq, Buffer.concat([Buffer.from([0]), lenencInt(affected), lenencInt(0), u16(status), u16(0)]));
const eof = (seq: number, status: number = SERVER_STATUS.AUTOCOMMIT) =>
  packet(seq, Buffer.concat([Buffer.from([0xfe]), u16(0), u16(status)]));
const err = (seq: number, message: string) => packet(seq, encodeErr(1146, "42S02", message));
const column = (seq: number, name: string) =>
  packet(
    seq,
    Buffer.concat([
      lenencStr("def"),
      lenencStr(""),
      lenencStr(""),
      lenencStr(""),
      lenencStr(name),
      lenencStr(name),
      Buffer.from([0x0c, 0x21, 0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]),
    ]),
  );
const textRow = (seq: number, ...values: string[]) => packet(seq, Buffer.concat(values.map(lenencStr)));
const command = (code: number, text = "") => packet(0, Buffer.concat([Buffer.from([code]), Buffer.from(text, "utf8")]));

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}
function lenencStr(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([lenencInt(b.length), b]);
}

/** A result set of one column with `rows` rows, the last EOF carrying `status`. */
function resultSet(rows: string[], status: number = SERVER_STATUS.AUTOCOMMIT, from = 1): Buffer[] {
  let seq = from;
  return [
    packet(seq++, lenencInt(1)),
    column(seq++, "v"),
    eof(seq++),
    ...rows.map((r) => textRow(seq++, r)),
    eof(seq++, status),
  ];
}

function harness(options: { allowLocalInfile?: boolean } = {}) {
  const logged: QueryLogEntry[] = [];
  const toServerExtra: Buffer[] = [];
  const toClientExtra: Buffer[] = [];
  const refusals: string[] = [];
  let t = 0;
  const session = createMysqlSession({
    allowLocalInfile: options.allowLocalInfile ?? false,
    record: (e) => logged.push(e),
    toServer: (b) => toServerExtra.push(b),
    toClient: (b) => toClientExtra.push(b),
    onRefused: (r) => refusals.push(r.command),
    now: () => (t += 1),
  });
  const client = createPacketRelay({
    keep: 1 << 20,
    decide: (h) => session.decideClient(h),
    complete: (h, b, e) => session.completeClient(h, b, e),
  });
  const server = createPacketRelay({
    keep: 64 * 1024,
    decide: (h) => session.decideServer(h),
    complete: (h, b, e) => session.completeServer(h, b, e),
  });
  const up = (...packets: Buffer[]) => Buffer.concat(client.push(Buffer.concat(packets)));
  const down = (...packets: Buffer[]) => Buffer.concat(server.push(Buffer.concat(packets)));
  return { session, client, server, up, down, logged, toServerExtra, toClientExtra, refusals };
}

describe("packet relay", () => {
  it("passes bytes unchanged and finds every boundary, whatever the chunking", () => {
    const stream = Buffer.concat([
      ...resultSet(["a", "bb", "c".repeat(300)]),
      packet(9, Buffer.alloc(0)),
      packet(10, Buffer.from([0xfe, 1, 2])),
    ]);
    for (const size of [1, 2, 3, 4, 5, 7, 64, stream.length]) {
      const seen: number[] = [];
      const relay = createPacketRelay({
        keep: 16,
        decide: () => "pass",
        complete: (head, body) => {
          seen.push(head.seq);
          expect(body.length).toBe(Math.min(head.length, 16));
        },
      });
      const out: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) out.push(...relay.push(stream.subarray(i, i + size)));
      expect(Buffer.concat(out).equals(stream)).toBe(true);
      expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 9, 10]);
      expect(relay.remainingInPacket()).toBe(0);
    }
  });

  it("a chunk of whole passed packets goes out as one slice of the chunk (no copy)", () => {
    const relay = createPacketRelay({ keep: 8, decide: () => "pass", complete: () => {} });
    const chunk = Buffer.concat(resultSet(["x", "y"]));
    const out = relay.push(chunk);
    expect(out).toHaveLength(1);
    expect(out[0]!.buffer).toBe(chunk.buffer);
  });

  it("drops a packet's bytes, even split across chunks, and keeps only `keep` bytes of a long body", () => {
    const long = packet(0, Buffer.alloc(100_000, 0x41));
    const kept: number[] = [];
    const relay = createPacketRelay({
      keep: 10,
      decide: (h) => (h.first === 0x41 ? "drop" : "pass"),
      complete: (_h, body) => kept.push(body.length),
    });
    const after = packet(1, Buffer.from("ok"));
    const out = [
      ...relay.push(long.subarray(0, 3)),
      ...relay.push(long.subarray(3, 5000)),
      ...relay.push(Buffer.concat([long.subarray(5000), after])),
    ];
    expect(Buffer.concat(out).equals(after)).toBe(true);
    expect(kept).toEqual([10, 2]);
  });

  it("marks the packet after a 16 MiB − 1 one as a continuation", () => {
    const heads: boolean[] = [];
    const relay = createPacketRelay({
      keep: 4,
      decide: (h) => (heads.push(h.continuation), "pass"),
      complete: () => {},
    });
    const big = Buffer.alloc(4 + MAX_PAYLOAD);
    big.writeUIntLE(MAX_PAYLOAD, 0, 3);
    relay.push(Buffer.concat([big, packet(1, Buffer.from([0xfe])), packet(0, Buffer.from([3]))]));
    expect(heads).toEqual([false, true, false]);
  });
});

describe("the session's commands and answers", () => {
  it("a multi-statement query: one log entry per result, each with its rows; bytes unchanged", () => {
    const h = harness();
    const q = command(COM.QUERY, "select v from t; update t set v = 1; select 2");
    expect(h.up(q).equals(q)).toBe(true);
    const answer = [
      ...resultSet(["a", "b"], SERVER_STATUS.MORE_RESULTS_EXISTS),
      ok(7, 5, SERVER_STATUS.MORE_RESULTS_EXISTS),
      ...resultSet(["2"], SERVER_STATUS.AUTOCOMMIT, 8),
    ];
    expect(h.down(...answer).equals(Buffer.concat(answer))).toBe(true);
    expect(h.logged.map((e) => [e.rows, e.command, e.error])).toEqual([
      [2, "SELECT", null],
      [5, "UPDATE", null],
      [1, "SELECT", null],
    ]);
    expect(h.logged.every((e) => e.statement === "select v from t; update t set v = 1; select 2")).toBe(true);
    expect(h.session.pending()).toBe(0);
  });

  it("an error ends the command; the next one is followed from its start", () => {
    const h = harness();
    h.up(command(COM.QUERY, "select * from nosuch"));
    h.down(err(1, "Table 'nosuch' doesn't exist"));
    h.up(command(COM.QUERY, "select 1"));
    h.down(...resultSet(["1"]));
    expect(h.logged.map((e) => e.error)).toEqual(["42S02: Table 'nosuch' doesn't exist", null]);
  });

  it("prepared statements: each execution is logged with the prepared text; a failed prepare too", () => {
    const h = harness();
    h.up(command(COM.STMT_PREPARE, "select ? + 1"));
    const prepareOk = Buffer.concat([
      Buffer.from([0]),
      Buffer.from([7, 0, 0, 0]),
      u16(1),
      u16(1),
      Buffer.from([0]),
      u16(0),
    ]);
    h.down(packet(1, prepareOk), column(2, "?"), eof(3), column(4, "x"), eof(5));
    expect(h.session.pending()).toBe(0);
    const execute = packet(0, Buffer.from([COM.STMT_EXECUTE, 7, 0, 0, 0, 0, 1, 0, 0, 0]));
    h.up(execute);
    // Binary rows start with 0x00: the state, not the byte, says it is a row.
    h.down(
      packet(1, lenencInt(1)),
      column(2, "x"),
      eof(3),
      packet(4, Buffer.from([0, 0, 2, 0, 0, 0, 0, 0, 0, 0])),
      eof(5),
    );
    h.up(command(COM.STMT_PREPARE, "selec oops"));
    h.down(err(1, "You have an error in your SQL syntax"));
    h.up(packet(0, Buffer.from([COM.STMT_CLOSE, 7, 0, 0, 0])));
    expect(h.logged.map((e) => [e.statement, e.rows, e.error])).toEqual([
      ["select ? + 1", 1, null],
      ["selec oops", null, "42S02: You have an error in your SQL syntax"],
    ]);
  });

  it("a prepare's answer ends after its parameter and column definitions, each run with its EOF, or at once without", () => {
    const prepareOk = (columns: number, params: number) =>
      packet(1, Buffer.concat([Buffer.from([0, 5, 0, 0, 0]), u16(columns), u16(params), Buffer.from([0]), u16(0)]));
    for (const [params, columns] of [
      [0, 0],
      [0, 2],
      [2, 0],
      [2, 1],
    ] as const) {
      const h = harness();
      // A query sent with the prepare: its answer is followed only if the prepare's ended exactly at its last packet.
      h.up(command(COM.STMT_PREPARE, "select ?, ?"), command(COM.QUERY, "select 1"));
      let seq = 2;
      const definitions = (n: number) =>
        n === 0 ? [] : [...Array.from({ length: n }, () => column(seq++, "?")), eof(seq++)];
      const answer = [prepareOk(columns, params), ...definitions(params), ...definitions(columns)];
      for (const [i, part] of answer.entries()) {
        h.down(part);
        const open = i < answer.length - 1 ? 2 : 1;
        expect(h.session.pending(), `${params} parameters, ${columns} columns, packet ${i}`).toBe(open);
      }
      h.down(...resultSet(["1", "2"]));
      expect(h.session.pending()).toBe(0);
      expect(h.logged.map((e) => [e.statement, e.rows, e.error])).toEqual([["select 1", 2, null]]);
    }
  });

  it("MariaDB's prepare-and-execute together: statement id 0xFFFFFFFF is logged with the text just prepared", () => {
    const h = harness();
    h.up(
      command(COM.STMT_PREPARE, "select 42"),
      packet(0, Buffer.from([COM.STMT_EXECUTE, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0])),
    );
    h.down(
      packet(1, Buffer.concat([Buffer.from([0, 9, 0, 0, 0]), u16(1), u16(0), Buffer.from([0]), u16(0)])),
      column(2, "42"),
      eof(3),
    );
    h.down(
      packet(1, lenencInt(1)),
      column(2, "42"),
      eof(3),
      packet(4, Buffer.from([0, 0, 42, 0, 0, 0, 0, 0, 0, 0])),
      eof(5),
    );
    expect(h.logged.map((e) => [e.statement, e.rows])).toEqual([["select 42", 1]]);
  });

  it("an execution with a cursor ends at the column definitions; fetches follow", () => {
    const h = harness();
    h.up(command(COM.STMT_PREPARE, "select v from t"));
    h.down(
      packet(1, Buffer.concat([Buffer.from([0, 1, 0, 0, 0]), u16(1), u16(0), Buffer.from([0]), u16(0)])),
      column(2, "v"),
      eof(3),
    );
    h.up(packet(0, Buffer.from([COM.STMT_EXECUTE, 1, 0, 0, 0, 1, 1, 0, 0, 0])));
    h.down(packet(1, lenencInt(1)), column(2, "v"), eof(3, SERVER_STATUS.CURSOR_EXISTS));
    expect(h.session.pending()).toBe(0);
    h.up(packet(0, Buffer.from([COM.STMT_FETCH, 1, 0, 0, 0, 10, 0, 0, 0])));
    h.down(packet(1, Buffer.from([0, 0, 1, 0x61])), eof(2));
    expect(h.session.pending()).toBe(0);
    expect(h.logged).toHaveLength(1);
  });

  it("COM_CHANGE_USER and replication are refused with an error in their place, never sent on", () => {
    const h = harness();
    expect(h.up(command(COM.CHANGE_USER, "root\0")).length).toBe(0);
    expect(h.toClientExtra).toHaveLength(1);
    const refusal = h.toClientExtra[0]!;
    expect(refusal[3]).toBe(1);
    expect(parseErr(refusal.subarray(4)).message).toMatch(/COM_CHANGE_USER/);
    // Refused while an answer is pending: its error comes after that answer, in order.
    h.up(command(COM.QUERY, "select 1"));
    expect(h.up(command(COM.BINLOG_DUMP))).toHaveLength(0);
    const answer = Buffer.concat(resultSet(["1"]));
    const out = h.down(answer);
    expect(out.subarray(0, answer.length).equals(answer)).toBe(true);
    expect(out[answer.length + 3]).toBe(1);
    expect(parseErr(out.subarray(answer.length + 4)).message).toMatch(/replication/);
    expect(h.refusals).toEqual(["COM_CHANGE_USER", "COM_BINLOG_DUMP"]);
    expect(h.logged.filter((e) => e.statement.startsWith("/*")).map((e) => e.statement)).toEqual([
      "/* COM_CHANGE_USER */",
      "/* COM_BINLOG_DUMP */",
    ]);
  });

  it("garbage: an unknown command byte is refused; an empty command packet ends the session", () => {
    const h = harness();
    expect(h.up(packet(0, Buffer.from([0x99, 1, 2, 3])))).toHaveLength(0);
    expect(parseErr(h.toClientExtra[0]!.subarray(4)).message).toMatch(/0x99 is not supported/);
    expect(() => h.up(packet(0, Buffer.alloc(0)))).toThrow(/empty command/);
  });

  it("LOAD DATA LOCAL: the file request never reaches the client; the server gets an empty file; the client an error", () => {
    const h = harness();
    h.up(command(COM.QUERY, "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t"));
    const request = packet(1, Buffer.concat([Buffer.from([0xfb]), Buffer.from("/etc/passwd")]));
    const out = h.down(request);
    expect(out.includes(Buffer.from("/etc/passwd"))).toBe(false);
    expect(out[3]).toBe(1);
    expect(parseErr(out.subarray(4)).message).toMatch(/LOAD DATA LOCAL is refused/);
    expect(h.toServerExtra).toEqual([packet(2, Buffer.alloc(0))]);
    // The server's answer to the empty file is the proxy's, not the client's.
    expect(h.down(ok(3, 0))).toHaveLength(0);
    h.up(command(COM.QUERY, "select 1"));
    expect(h.down(...resultSet(["1"])).length).toBeGreaterThan(0);
    expect(h.logged.map((e) => e.error === null)).toEqual([false, true]);
    expect(h.refusals).toEqual(["LOAD DATA LOCAL"]);
  });

  it("LOAD DATA LOCAL refused: the server's error after the empty file is neither passed on nor logged", () => {
    const h = harness();
    h.up(command(COM.QUERY, "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t"));
    h.down(packet(1, Buffer.concat([Buffer.from([0xfb]), Buffer.from("/etc/passwd")])));
    expect(h.down(err(3, "Incorrect file"))).toHaveLength(0);
    expect(h.session.pending()).toBe(0);
    expect(h.logged.map((e) => e.error)).toEqual([expect.stringMatching(/LOAD DATA LOCAL is refused/)]);
  });

  it("LOAD DATA LOCAL allowed by policy: the request, the file and the answer pass", () => {
    const h = harness({ allowLocalInfile: true });
    h.up(command(COM.QUERY, "LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t"));
    const request = packet(1, Buffer.concat([Buffer.from([0xfb]), Buffer.from("x.csv")]));
    expect(h.down(request).equals(request)).toBe(true);
    const file = packet(2, Buffer.from("1,a\n"));
    expect(h.up(file, packet(3, Buffer.alloc(0))).length).toBe(file.length + 4);
    h.down(ok(4, 1));
    expect(h.logged.map((e) => [e.rows, e.error])).toEqual([[1, null]]);
  });

  it("statements still waiting when the session ends are logged as interrupted, once", () => {
    const h = harness();
    h.up(command(COM.QUERY, "select sleep(60)"));
    expect(h.session.nextClientSeq()).toBe(1);
    expect(h.session.interrupt()).toEqual([
      expect.objectContaining({ statement: "select sleep(60)", interrupted: true }),
    ]);
    expect(h.session.interrupt()).toEqual([]);
  });

  it("the verb of a statement skips comments and parentheses", () => {
    expect(statementVerb("  /* hi */ -- x\n# y\n(select 1)")).toBe("SELECT");
    expect(statementVerb("/* unterminated")).toBeNull();
    expect(statementVerb("")).toBeNull();
  });
});

describe("handshake packets and scrambles", () => {
  it("a greeting and a handshake response read back as written", () => {
    const scramble = Buffer.from("abcdefghijklmnopqrst");
    const greeting = parseGreeting(
      encodeGreeting({
        serverVersion: "8.0.99-test",
        connectionId: 42,
        scramble,
        capabilities: PROXY_CAPABILITIES,
        charset: 45,
        status: 2,
        authPlugin: "mysql_native_password",
      }),
    );
    expect(greeting).toMatchObject({
      serverVersion: "8.0.99-test",
      connectionId: 42,
      capabilities: PROXY_CAPABILITIES,
    });
    expect(greeting.scramble.equals(scramble)).toBe(true);
    const response = parseHandshakeResponse(
      encodeHandshakeResponse({
        capabilities: PROXY_CAPABILITIES | CLIENT.CONNECT_WITH_DB,
        maxPacketSize: 1 << 24,
        charset: 45,
        user: "alice%maria-rw",
        authResponse: Buffer.alloc(20, 7),
        database: "shop",
        authPlugin: "mysql_native_password",
      }),
    );
    expect(response).toMatchObject({ user: "alice%maria-rw", database: "shop", authPlugin: "mysql_native_password" });
    expect(() => parseHandshakeResponse(Buffer.from([1, 2, 3]))).toThrow();
  });

  it("mysql_native_password and caching_sha2_password scrambles match known answers", () => {
    const scramble = Buffer.from("01234567890123456789");
    // Computed independently: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
    expect(nativePasswordScramble("secret", scramble).toString("hex")).toBe("7abe1a8776b59e931059451f81e596a60dbbf7a8");
    expect(nativePasswordScramble("", scramble).length).toBe(0);
    expect(cachingSha2Scramble("secret", scramble).toString("hex")).toBe(
      "1a2da2573c2faa367e2afddb54cdfd11a95ed22eef0167151196a6fc8e3d3813",
    );
  });
});
