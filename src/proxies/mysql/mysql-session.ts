/**
 * One MySQL session after sign-in, socket-free: follows every client command and the server's answer
 * to it (text and binary result sets, multi-statement results, prepared statements, LOAD DATA LOCAL),
 * decides per packet whether it goes on, and turns each finished result into a query log entry. The
 * proxy feeds it both byte streams through `createPacketRelay`; see README.md for the invariants.
 */
import type { QueryLogResult, SentStatement } from "../../modules/sessions/sessions.types.js";
import {
  COM,
  MAX_PAYLOAD,
  MysqlWireError,
  SERVER_STATUS,
  encodeErr,
  eofStatus,
  isEof,
  packet,
  parseErr,
  parseOk,
  type PacketHead,
  type Verdict,
} from "./mysql-wire.js";

/** Statement text kept for the query log, whole; a statement this long or longer is refused. */
export const MAX_LOGGED_STATEMENT = 1 << 20;
/** Server payloads kept whole up to this size (OK/ERR/EOF are far smaller; rows are never needed). */
export const SERVER_KEEP = 64 * 1024;
const LAST_PREPARED = 0xffffffff;
/** Prepared statements remembered per session (their text, for the query log of each execution). */
const MAX_PREPARED = 10_000;

type Expect =
  | "result" // text or binary result(s): OK, ERR, LOCAL INFILE, or a result set
  | "columns"
  | "columns-eof"
  | "rows"
  | "infile-data" // the client is sending a file (LOAD DATA LOCAL allowed)
  | "prepare"
  | "params"
  | "params-eof"
  | "prepare-columns"
  | "prepare-columns-eof"
  | "fieldlist"
  | "fetch"
  | "single";

interface Pending {
  command: number;
  expect: Expect;
  /** The client's command text (COM_QUERY, COM_STMT_PREPARE) or the prepared text (COM_STMT_EXECUTE). */
  statement: string | null;
  parts: Buffer[];
  kept: number;
  startedAt: number;
  binary: boolean;
  remaining: number;
  columns: number;
  rows: number;
  /** The client's last sequence id of this command, and the server's last of its answer. */
  clientSeq: number;
  serverSeq: number | null;
  /** Answer packets the client must not see (after a refused LOCAL INFILE request). */
  swallow: boolean;
  /** A refused command: the error the client gets in its place, when its turn comes. */
  synthetic: Buffer | null;
  stmtId: number | null;
  /** Still taking the client's packets (a command longer than one packet). */
  open: boolean;
  /** Results logged so far (the nth result of a multi-statement text takes the nth statement's verb). */
  results: number;
  starts: number[] | null;
  /** The number of its line logged when sent, else 0. */
  sent: number;
}

export interface MysqlSessionOptions {
  /** LOAD DATA LOCAL: the server's request for a client file goes to the client only when true. */
  allowLocalInfile: boolean;
  record(entry: QueryLogResult): void;
  /**
   * A command whose result the query log keeps (a statement, a prepare, a USE), as its last packet
   * completes and before the relay passes it on; its entries name the number (`sent`).
   */
  sent?(statement: SentStatement): void;
  /** Bytes for the server that are not the client's (the empty file answering a refused LOCAL INFILE). */
  toServer(bytes: Buffer): void;
  /** Bytes for the client outside the server's stream (a refused command's error when nothing is pending). */
  toClient(bytes: Buffer): void;
  /** A refused command or a refused LOCAL INFILE, for the logs and the audit trail. */
  onRefused?(what: { command: string; reason: string; statement: string }): void;
  now?: () => number;
}

export interface MysqlSession {
  decideClient(head: PacketHead): Verdict;
  /** How much of a server packet's payload the session reads: none of a row's. */
  needServer(head: PacketHead): number;
  completeClient(head: PacketHead, body: Buffer, emit: (bytes: Buffer) => void): void;
  decideServer(head: PacketHead): Verdict;
  completeServer(head: PacketHead, body: Buffer, emit: (bytes: Buffer) => void): void;
  /** Commands sent and not yet answered in full. */
  pending(): number;
  /** The client sent COM_QUIT. */
  quit(): boolean;
  /** The sequence id an error sent to the client now must carry (a kill). */
  nextClientSeq(): number;
  /** Commands still waiting for their answer, logged as interrupted (once). */
  interrupt(): QueryLogResult[];
}

/** Commands whose results the query log keeps: each is logged when sent. */
const LOGGED_COMMANDS = new Set<number>([COM.QUERY, COM.STMT_PREPARE, COM.INIT_DB, COM.STMT_EXECUTE]);

/** Commands whose text the query log keeps. */
const TEXT_COMMANDS = new Set<number>([COM.QUERY, COM.STMT_PREPARE, COM.INIT_DB]);

const COMMAND_NAMES: Record<number, string> = {
  [COM.QUERY]: "COM_QUERY",
  [COM.INIT_DB]: "COM_INIT_DB",
  [COM.STMT_PREPARE]: "COM_STMT_PREPARE",
  [COM.CHANGE_USER]: "COM_CHANGE_USER",
  [COM.BINLOG_DUMP]: "COM_BINLOG_DUMP",
  [COM.BINLOG_DUMP_GTID]: "COM_BINLOG_DUMP_GTID",
  [COM.REGISTER_SLAVE]: "COM_REGISTER_SLAVE",
};

const REFUSED: Record<number, string> = {
  [COM.CHANGE_USER]: "COM_CHANGE_USER (signing in again as another user) is not possible through the Stint proxy",
  [COM.BINLOG_DUMP]: "replication (COM_BINLOG_DUMP) is not possible through the Stint proxy",
  [COM.BINLOG_DUMP_GTID]: "replication (COM_BINLOG_DUMP_GTID) is not possible through the Stint proxy",
  [COM.REGISTER_SLAVE]: "replication (COM_REGISTER_SLAVE) is not possible through the Stint proxy",
};

/** What each allowed command's answer looks like; a command not listed here is refused. */
const ANSWER: Partial<Record<number, Expect | null>> = {
  [COM.QUIT]: null,
  [COM.INIT_DB]: "single",
  [COM.QUERY]: "result",
  [COM.FIELD_LIST]: "fieldlist",
  [COM.REFRESH]: "single",
  [COM.STATISTICS]: "single",
  [COM.PROCESS_INFO]: "result",
  [COM.PROCESS_KILL]: "single",
  [COM.DEBUG]: "single",
  [COM.PING]: "single",
  [COM.STMT_PREPARE]: "prepare",
  [COM.STMT_EXECUTE]: "result",
  [COM.STMT_SEND_LONG_DATA]: null,
  [COM.STMT_CLOSE]: null,
  [COM.STMT_RESET]: "single",
  [COM.SET_OPTION]: "single",
  [COM.STMT_FETCH]: "fetch",
  [COM.RESET_CONNECTION]: "single",
};

/**
 * Where each statement of a multi-statement text starts: after a `;` outside quotes ('…', "…", `…`,
 * with backslash escapes) and comments (/* … *\/, -- …, # …). For the query log's verbs only: the
 * server's own parser decides what runs.
 */
export function statementStarts(sql: string): number[] {
  const starts = [0];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"' || c === "`") {
      i++;
      while (i < sql.length && sql[i] !== c) i += sql[i] === "\\" && c !== "`" ? 2 : 1;
      i++;
    } else if (sql.startsWith("/*", i)) {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (sql.startsWith("--", i) || c === "#") {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? sql.length : end + 1;
    } else {
      if (c === ";" && sql.slice(i + 1).trim() !== "") starts.push(i + 1);
      i++;
    }
  }
  return starts;
}

/** The statement's first keyword ("SELECT", "INSERT"…), past comments, spaces and parentheses. */
export function statementVerb(sql: string): string | null {
  let i = 0;
  for (;;) {
    while (i < sql.length && /[\s(]/.test(sql[i]!)) i++;
    if (sql.startsWith("/*", i)) {
      const end = sql.indexOf("*/", i + 2);
      if (end < 0) return null;
      i = end + 2;
    } else if (sql.startsWith("--", i) || sql[i] === "#") {
      const end = sql.indexOf("\n", i);
      if (end < 0) return null;
      i = end + 1;
    } else break;
  }
  const match = /^[A-Za-z]+/.exec(sql.slice(i, i + 32));
  return match ? match[0].toUpperCase() : null;
}

export function createMysqlSession(options: MysqlSessionOptions): MysqlSession {
  const now = options.now ?? (() => performance.now());
  const queue: Pending[] = [];
  const prepared = new Map<number, string>();
  let quit = false;
  /** The logical client packet in progress spans physical packets. */
  let clientCurrent: { pending: Pending | null; verdict: Verdict } | null = null;
  let interrupted = false;
  /** The text of the last COM_STMT_PREPARE the client sent (for MariaDB's statement id 0xFFFFFFFF). */
  let lastPrepared: string | null = null;

  const text = (p: Pending): string => {
    if (p.statement !== null) return p.statement;
    const body = p.parts.length === 1 ? p.parts[0]! : Buffer.concat(p.parts);
    const full = body.toString("utf8");
    p.statement = full;
    p.parts = [];
    return p.statement;
  };

  let sentCount = 0;
  const statementOf = (p: Pending): string =>
    p.command === COM.INIT_DB ? `USE \`${text(p)}\`` : p.command === COM.STMT_EXECUTE ? (p.statement ?? "") : text(p);
  const log = (p: Pending, result: Pick<QueryLogResult, "rows" | "command" | "error">): void => {
    p.results += 1;
    const entry: QueryLogResult = {
      statement: statementOf(p),
      durationMs: Math.max(0, now() - p.startedAt),
      ...result,
    };
    if (p.sent !== 0) entry.sent = p.sent;
    options.record(entry);
  };
  const logError = (p: Pending, body: Buffer): void => {
    const err = parseErr(body);
    log(p, { rows: null, command: null, error: `${err.sqlstate}: ${err.message}` });
  };
  const verbOf = (p: Pending): string | null => {
    const sql = p.statement ?? (p.parts.length > 0 ? text(p) : "");
    if (p.command !== COM.QUERY) return statementVerb(sql);
    p.starts ??= statementStarts(sql);
    return statementVerb(sql.slice(p.starts[Math.min(p.results, p.starts.length - 1)]));
  };

  /** Refused commands at the head of the queue, complete, get their error now, in order. */
  const flushRefused = (emit: (bytes: Buffer) => void): void => {
    while (queue.length > 0 && queue[0]!.synthetic !== null && !queue[0]!.open) emit(queue.shift()!.synthetic!);
  };
  /** The command at the head is answered in full. */
  const finish = (emit: (bytes: Buffer) => void): void => {
    queue.shift();
    flushRefused(emit);
  };
  /** The command's ERR packet: its answer ends there, logged unless the client does not see it. */
  const failed = (p: Pending, body: Buffer, emit: (bytes: Buffer) => void): void => {
    if (!p.swallow) logError(p, body);
    finish(emit);
  };
  /** After a prepared statement's parameter definitions (or none): its column definitions, if any, else the end. */
  const prepareColumns = (p: Pending, emit: (bytes: Buffer) => void): void => {
    if (p.columns > 0) {
      p.remaining = p.columns;
      p.expect = "prepare-columns";
    } else finish(emit);
  };

  /** A command just sent, waiting for its `expect` answer; `synthetic`: the error a refused one gets instead. */
  const begin = (head: PacketHead, expect: Expect, synthetic: Buffer | null): Pending => ({
    command: head.first,
    expect,
    statement: null,
    parts: [],
    kept: 0,
    startedAt: now(),
    binary: synthetic === null && head.first === COM.STMT_EXECUTE,
    remaining: 0,
    columns: 0,
    rows: 0,
    clientSeq: head.seq,
    serverSeq: null,
    swallow: false,
    synthetic,
    stmtId: null,
    open: true,
    results: 0,
    starts: null,
    sent: 0,
  });

  const refuse = (head: PacketHead, reason: string, command: string): Pending => {
    const statement = `/* ${command} */`;
    options.onRefused?.({ command, reason, statement });
    // The query log keeps the attempt too (a command has no text worth keeping beyond its name).
    options.record({ statement, durationMs: 0, rows: null, command: null, error: `42000: ${reason}` });
    return begin(head, "single", packet(head.seq + 1, encodeErr(1227, "42000", reason)));
  };

  const session: MysqlSession = {
    decideClient(head) {
      const top = queue[0];
      if (top !== undefined && top.expect === "infile-data") return "pass";
      if (head.continuation && clientCurrent !== null) return clientCurrent.verdict;
      if (head.length === 0) throw new MysqlWireError("an empty command packet");
      const command = head.first;
      const answer = ANSWER[command];
      // A statement prepared beyond the bound would run with its text nowhere in the query log.
      const unrecorded =
        command === COM.STMT_PREPARE &&
        prepared.size + queue.filter((q) => q.command === COM.STMT_PREPARE).length >= MAX_PREPARED;
      // A statement longer than the log keeps would run with its end unrecorded.
      const tooLong = TEXT_COMMANDS.has(command) && head.length > MAX_LOGGED_STATEMENT;
      if (answer === undefined || unrecorded || tooLong) {
        const reason = tooLong
          ? "a statement of 1 MiB or more is not relayed by the Stint proxy (its query log keeps statements whole)"
          : unrecorded
            ? `more than ${MAX_PREPARED.toLocaleString("en")} prepared statements open in one session through the Stint proxy: close some first`
            : (REFUSED[command] ??
              `command 0x${command.toString(16).padStart(2, "0")} is not supported through the Stint proxy`);
        const pending = refuse(head, reason, COMMAND_NAMES[command] ?? `0x${command.toString(16).padStart(2, "0")}`);
        queue.push(pending);
        clientCurrent = { pending, verdict: "drop" };
        return "drop";
      }
      if (command === COM.QUIT) quit = true;
      if (answer === null) {
        clientCurrent = { pending: null, verdict: "pass" };
        return "pass";
      }
      const pending = begin(head, answer, null);
      queue.push(pending);
      clientCurrent = { pending, verdict: "pass" };
      return "pass";
    },

    completeClient(head, body, emit) {
      const top = queue[0];
      if (top !== undefined && top.expect === "infile-data" && !(clientCurrent?.pending?.open ?? false)) {
        // The file's end is an empty packet; the server's answer follows.
        if (head.length === 0) top.expect = "result";
        top.clientSeq = head.seq;
        return;
      }
      const current = clientCurrent;
      if (current === null) return;
      const p = current.pending;
      const first = !head.continuation;
      if (p !== null) {
        p.clientSeq = head.seq;
        // The command byte is not part of the text; for a statement id, only its 4 bytes are read.
        const from = first ? 1 : 0;
        if (p.command === COM.QUERY || p.command === COM.STMT_PREPARE || p.command === COM.INIT_DB) {
          const room = MAX_LOGGED_STATEMENT - p.kept;
          if (room > 0 && body.length > from) {
            const piece = body.subarray(from, from + room);
            p.parts.push(piece);
            p.kept += piece.length;
          }
        } else if (first && (p.command === COM.STMT_EXECUTE || p.command === COM.STMT_FETCH) && body.length >= 5) {
          p.stmtId = body.readUInt32LE(1);
          // 0xFFFFFFFF: MariaDB's "the statement just prepared" (a prepare and its execution sent together).
          const known = p.stmtId === LAST_PREPARED ? lastPrepared : prepared.get(p.stmtId);
          p.statement = known ?? `/* statement ${p.stmtId}, prepared before it was logged */`;
        }
      } else if (first && head.first === COM.STMT_CLOSE && body.length >= 5) {
        prepared.delete(body.readUInt32LE(1));
      }
      if (head.length === MAX_PAYLOAD) return; // more of this command follows
      clientCurrent = null;
      if (p === null) return;
      p.open = false;
      if (p.synthetic !== null) {
        p.synthetic = packet(head.seq + 1, p.synthetic.subarray(4));
        // Nothing before it: the client gets its error now (with any refused after it); otherwise when its turn comes.
        if (queue[0] === p) flushRefused(options.toClient);
        return;
      }
      if (p.command === COM.QUERY || p.command === COM.STMT_PREPARE || p.command === COM.INIT_DB) text(p);
      if (p.command === COM.STMT_PREPARE) lastPrepared = p.statement;
      if (options.sent !== undefined && LOGGED_COMMANDS.has(p.command)) {
        p.sent = ++sentCount;
        options.sent({ id: p.sent, statement: statementOf(p) });
      }
      void emit;
    },

    needServer(head) {
      const p = queue[0];
      const row =
        p !== undefined && (p.expect === "rows" || p.expect === "fetch") && head.first !== 0xfe && head.first !== 0xff;
      return row || head.continuation ? 0 : SERVER_KEEP;
    },

    decideServer(head) {
      const p = queue[0];
      // A file request with no statement waiting would be read by the client's next command as its answer.
      if (p === undefined && !head.continuation && head.first === 0xfb)
        throw new MysqlWireError("a request for a client file from the server while no command was waiting");
      if (p === undefined || head.continuation) return p?.swallow ? "drop" : "pass";
      p.serverSeq = head.seq;
      if (p.expect === "result" && head.first === 0xfb) {
        if (options.allowLocalInfile) return "pass";
        return "drop";
      }
      return p.swallow ? "drop" : "pass";
    },

    completeServer(head, body, emit) {
      const p = queue[0];
      if (p === undefined || head.continuation) return;
      const first = head.first;
      switch (p.expect) {
        case "result": {
          if (first === 0xfb && head.length > 0) {
            if (options.allowLocalInfile) {
              p.expect = "infile-data";
              return;
            }
            // Refused: the server gets an empty file (it loads nothing) and the client an error in its place.
            options.toServer(packet(head.seq + 1, Buffer.alloc(0)));
            const reason =
              "LOAD DATA LOCAL is refused by the Stint proxy: the role's session policy does not allow sending client files";
            if (!p.swallow) emit(packet(head.seq, encodeErr(1148, "42000", reason)));
            options.onRefused?.({ command: "LOAD DATA LOCAL", reason, statement: text(p) });
            if (!p.swallow) log(p, { rows: null, command: null, error: `42000: ${reason}` });
            p.swallow = true;
            return;
          }
          if (first === 0x00) {
            const ok = parseOk(body);
            if (!p.swallow) log(p, { rows: ok.affectedRows, command: verbOf(p), error: null });
            if (!(ok.status & SERVER_STATUS.MORE_RESULTS_EXISTS)) finish(emit);
            return;
          }
          if (first === 0xff) {
            failed(p, body, emit);
            return;
          }
          const columns = parseColumnCount(body);
          p.columns = columns;
          p.remaining = columns;
          p.rows = 0;
          p.expect = columns > 0 ? "columns" : "columns-eof";
          return;
        }
        case "columns":
          if (first === 0xff) {
            failed(p, body, emit);
            return;
          }
          countDefinition(p);
          return;
        case "columns-eof": {
          if (first === 0xff) {
            failed(p, body, emit);
            return;
          }
          if (!isEof(first, head.length)) throw new MysqlWireError("expected EOF after the column definitions");
          const status = eofStatus(body);
          if (p.binary && status & SERVER_STATUS.CURSOR_EXISTS) {
            // Rows come by COM_STMT_FETCH; the execution is logged now.
            if (!p.swallow) log(p, { rows: null, command: verbOf(p), error: null });
            finish(emit);
            return;
          }
          p.expect = "rows";
          return;
        }
        case "rows": {
          if (first === 0xff) {
            failed(p, body, emit);
            return;
          }
          if (isEof(first, head.length)) {
            const status = eofStatus(body);
            if (!p.swallow) log(p, { rows: p.rows, command: verbOf(p), error: null });
            if (status & SERVER_STATUS.MORE_RESULTS_EXISTS) {
              p.expect = "result";
              p.startedAt = now();
            } else finish(emit);
            return;
          }
          p.rows += 1;
          return;
        }
        case "infile-data":
          // The server does not speak while the client sends its file; if it does (an error), the file is over.
          if (first === 0xff) failed(p, body, emit);
          return;
        case "prepare": {
          // Never swallowed: only a result's LOCAL INFILE request is.
          if (first === 0xff) {
            failed(p, body, emit);
            return;
          }
          if (first !== 0x00 || body.length < 9) throw new MysqlWireError("malformed COM_STMT_PREPARE answer");
          const id = body.readUInt32LE(1);
          const columns = body.readUInt16LE(5);
          const params = body.readUInt16LE(7);
          if (prepared.size < MAX_PREPARED || prepared.has(id)) prepared.set(id, text(p));
          p.columns = columns;
          if (params > 0) {
            p.remaining = params;
            p.expect = "params";
          } else prepareColumns(p, emit);
          return;
        }
        case "params":
        case "prepare-columns":
          countDefinition(p);
          return;
        case "params-eof":
          prepareColumns(p, emit);
          return;
        case "prepare-columns-eof":
          finish(emit);
          return;
        case "fieldlist":
        case "fetch":
          if (first === 0xff || isEof(first, head.length)) finish(emit);
          return;
        case "single":
          if (p.command === COM.INIT_DB) {
            if (first === 0xff) logError(p, body);
            else log(p, { rows: null, command: "USE", error: null });
          }
          if (p.command === COM.RESET_CONNECTION && first === 0x00) prepared.clear();
          finish(emit);
          return;
      }
    },

    pending: () => queue.filter((p) => p.synthetic === null).length,
    quit: () => quit,
    nextClientSeq() {
      const p = queue[0];
      if (p === undefined) return 0;
      return ((p.serverSeq ?? p.clientSeq) + 1) & 0xff;
    },
    interrupt() {
      if (interrupted) return [];
      interrupted = true;
      const entries: QueryLogResult[] = [];
      for (const p of queue) {
        if (p.synthetic !== null || p.swallow) continue;
        if (p.command !== COM.QUERY && p.command !== COM.STMT_EXECUTE && p.command !== COM.STMT_PREPARE) continue;
        const statement = p.command === COM.STMT_EXECUTE ? (p.statement ?? "") : text(p);
        const durationMs = Math.max(0, now() - p.startedAt);
        const sent = p.sent !== 0 ? { sent: p.sent } : {};
        entries.push({ statement, durationMs, rows: null, command: null, error: null, interrupted: true, ...sent });
      }
      return entries;
    },
  };
  return session;
}

/** The definitions a column or parameter count announced: the EOF after them follows the last. */
const AFTER_DEFINITIONS: Partial<Record<Expect, Expect>> = {
  columns: "columns-eof",
  params: "params-eof",
  "prepare-columns": "prepare-columns-eof",
};

function countDefinition(p: Pending): void {
  p.remaining -= 1;
  if (p.remaining <= 0) p.expect = AFTER_DEFINITIONS[p.expect] ?? p.expect;
}

function parseColumnCount(body: Buffer): number {
  const first = body[0];
  if (first === undefined) throw new MysqlWireError("an empty result packet");
  if (first < 0xfb) return first;
  if (first === 0xfc && body.length >= 3) return body.readUInt16LE(1);
  if (first === 0xfd && body.length >= 4) return body.readUIntLE(1, 3);
  throw new MysqlWireError("malformed column count");
}
