/**
 * The query policy on the wire (socket-free: chunks in, pieces out). When a role's policy has
 * `queries:` rules the relay runs both directions through these editing scanners instead of the
 * plain relay scanners:
 *
 * - client → server: Query, Parse and FunctionCall frames are held until whole and checked. An
 *   allowed one goes on unchanged (a frame inside one chunk costs no copy); a refused one is replaced
 *   by the same message carrying a per-session token that PostgreSQL's raw parser rejects
 *   (`stint_refused_<nonce>_<n>`). So the server itself answers in order, with its own state
 *   machine: a syntax error aborts the transaction block like any error, the extended protocol
 *   skips to Sync, a refused named statement never exists, ReadyForQuery carries the true status.
 * - server → client: ErrorResponse frames are held until whole; the one the token caused is replaced
 *   by the refusal (SQLSTATE 42501, the rule's sentence). Everything else passes as received.
 *
 * The query log sees the client's original statement and the refusal as its result.
 */
import { randomBytes } from "node:crypto";
import type { QueryRules } from "../../contract/query-policy.js";
import { encodeErrorResponse, parseBackendMessage } from "../../lib/pg-wire.js";
import { parseQuery } from "./query-policy.js";
import { decide, type ParsedQuery, type QueryDecision, type QueryRule } from "./query-policy.rules.js";
import { createRelayScanner, messageTypes, type FrameBodyReader, type RelayScanner } from "./wire-stream.js";

/** The SQLSTATE of every refusal: insufficient_privilege. */
export const REFUSAL_SQLSTATE = "42501";
/** The SQLSTATE of a result cut at `maxRows`: program_limit_exceeded. */
export const ROW_LIMIT_SQLSTATE = "54000";
/** Names of allowed prepared statements remembered per session (EXECUTE runs only these). */
const PREPARED_NAMES_KEPT = 10_000;

export interface QueryRefusal {
  rule: QueryRule | "function_call" | "max_rows";
  message: string;
  /** The refused text (a Query's whole string, a Parse's statement; "" for a FunctionCall). */
  statement: string;
  /** `result`: a result cut at `maxRows` (its statement is in the query log, not here). */
  protocol: "simple" | "extended" | "function_call" | "result";
}

const HEADER_LENGTH = 5;

function typedFrame(type: string, ...parts: Buffer[]): Buffer {
  const length = parts.reduce((sum, part) => sum + part.length, 4);
  const head = Buffer.alloc(HEADER_LENGTH);
  head.write(type, 0, "latin1");
  head.writeInt32BE(length, 1);
  return Buffer.concat([head, ...parts]);
}

function cstring(text: string): Buffer {
  return Buffer.concat([Buffer.from(text, "utf8"), Buffer.of(0)]);
}

const QUERY = 0x51; // 'Q'
const PARSE = 0x50; // 'P'
const ERROR_RESPONSE = 0x45; // 'E'
const COMMAND_COMPLETE = 0x43; // 'C'
const DATA_ROW = 0x44; // 'D'
const COPY_DATA = 0x64; // 'd'
const READY_FOR_QUERY = 0x5a; // 'Z'
const DROP = Buffer.alloc(0);

export interface QueryGuard {
  client: RelayScanner;
  server: RelayScanner;
}

/**
 * Both directions of one session under `rules`. `onClientFrame`/`onServerFrame` are the query log's
 * (they see the client's original messages and the refusal in place of the token's error);
 * `onRefusal` is told each refusal when it is decided (audit, logs).
 */
export function createQueryGuard(options: {
  rules: QueryRules;
  keepClient: Uint8Array;
  keepServer: Uint8Array;
  onClientFrame: (type: number, body: Buffer | null) => void;
  onServerFrame: (type: number, body: Buffer | null) => void;
  onRefusal: (refusal: QueryRefusal) => void;
  /** Bounds on a frame held whole, each way (wire-stream.ts `maxKeptLength`). */
  maxClientFrame?: number;
  maxServerFrame?: number;
  /** A kept client frame past maxClientFrame (a Bind): read in pieces (wire-stream.ts `stream`); held ones never are. */
  streamClient?: (type: number, bodyLength: number) => FrameBodyReader | null;
  /** Test hook; random per session otherwise. */
  nonce?: string;
}): QueryGuard {
  const { rules, onClientFrame, onServerFrame, onRefusal } = options;
  const nonce = options.nonce ?? randomBytes(8).toString("hex");
  const tokenPrefix = `stint_refused_${nonce}_`;
  const tokenPattern = new RegExp(`${tokenPrefix}(\\d+)`);
  /** Refusals sent upstream as tokens, by number, until their error comes back. */
  const pending = new Map<number, QueryRefusal>();
  let sequence = 0;
  /** Statement names prepared and allowed (PREPARE, named Parse); the oldest go first past the cap. */
  const preparedNames = new Set<string>();

  const rememberPrepared = (name: string): void => {
    preparedNames.delete(name);
    preparedNames.add(name);
    if (preparedNames.size > PREPARED_NAMES_KEPT) preparedNames.delete(preparedNames.values().next().value!);
  };

  const refuse = (refusal: QueryRefusal): string => {
    sequence += 1;
    pending.set(sequence, refusal);
    onRefusal(refusal);
    return `${tokenPrefix}${sequence}`;
  };

  const refusalOf = (
    decision: Extract<QueryDecision, { allowed: false }>,
    statement: string,
    protocol: QueryRefusal["protocol"],
  ): QueryRefusal => ({
    rule: decision.rule,
    message: decision.message,
    statement,
    protocol,
  });

  const checkClient = (type: number, body: Buffer): Buffer | null => {
    if (type === QUERY) {
      onClientFrame(type, body);
      const nul = body.indexOf(0);
      // What the server would run is the text up to its first NUL.
      const sql = nul < 0 ? "" : body.toString("utf8", 0, nul);
      const parsed: ParsedQuery = nul < 0 ? { ok: false, error: "malformed Query message" } : parseQuery(sql);
      const decision = decide(parsed, rules, { preparedNames });
      const names = parsed.ok ? namesPreparedBy(parsed) : [];
      if (decision.allowed) {
        for (const name of names) rememberPrepared(name);
        return null;
      }
      // Refused: EXECUTE of that name is refused from now on (fail closed), whatever the server holds.
      for (const name of names) preparedNames.delete(name);
      return typedFrame("Q", cstring(refuse(refusalOf(decision, sql, "simple"))));
    }
    if (type === PARSE) {
      onClientFrame(type, body);
      let name = "";
      let decision: QueryDecision;
      let sql = "";
      const message = readParse(body);
      if (message === null) {
        decision = { allowed: false, rule: "unparsable", message: "malformed Parse message", statement: 0 };
      } else {
        name = message.name;
        sql = message.query;
        decision = decide(parseQuery(sql), rules, { preparedNames });
      }
      if (decision.allowed) {
        if (name !== "") rememberPrepared(name);
        return null;
      }
      if (name !== "") preparedNames.delete(name);
      const token = refuse(refusalOf(decision, sql, "extended"));
      return typedFrame("P", cstring(name), cstring(token), Buffer.of(0, 0));
    }
    // FunctionCall ('F'): calls any function by its OID, outside SQL; never under a query policy.
    onClientFrame(type, body);
    const token = refuse({
      rule: "function_call",
      message: "the fast-path function call interface is not allowed under a query policy",
      statement: "",
      protocol: "function_call",
    });
    return typedFrame("Q", cstring(token));
  };

  /**
   * `maxRows`: rows (DataRow, CopyData) of the current result so far; past the limit the rest of the
   * result is dropped and its end (CommandComplete, CopyDone, or PortalSuspended) becomes one
   * ErrorResponse. A result ends at CommandComplete or ErrorResponse; ReadyForQuery resets too.
   */
  const maxRows = rules.maxRows;
  let rows = 0;
  /** Past the limit in this result; `cutSent` once its ErrorResponse went to the client. */
  let cutting = false;
  let cutSent = false;
  const endResult = (): void => {
    rows = 0;
    cutting = false;
    cutSent = false;
  };
  const cutError = (): Buffer => {
    cutSent = true;
    const replacement = encodeErrorResponse({
      severity: "ERROR",
      code: ROW_LIMIT_SQLSTATE,
      message: `result cut by Stint query policy (rule max_rows): more than ${maxRows} rows; only the first ${maxRows} were sent`,
    });
    onServerFrame(ERROR_RESPONSE, replacement.subarray(HEADER_LENGTH));
    return replacement;
  };
  const limitRows = (type: number, body: Buffer): Buffer | null => {
    if (type === ERROR_RESPONSE) {
      endResult();
      return checkServer(type, body);
    }
    if (type === COMMAND_COMPLETE) {
      const wasCutting = cutting;
      const sent = cutSent;
      endResult();
      if (!wasCutting) {
        onServerFrame(type, body);
        return null;
      }
      return sent ? DROP : cutError();
    }
    if (type === READY_FOR_QUERY) {
      endResult();
      onServerFrame(type, options.keepServer[type] === 1 ? body : null);
      return null;
    }
    if (cutting) {
      // The rest of a cut result: dropped; the end of this part of it (CopyDone, PortalSuspended) is the error.
      if (type === DATA_ROW || type === COPY_DATA || cutSent) return DROP;
      return cutError();
    }
    if ((type === DATA_ROW || type === COPY_DATA) && ++rows > maxRows!) {
      cutting = true;
      onRefusal({
        rule: "max_rows",
        message: `the result has more than ${maxRows} rows`,
        statement: "",
        protocol: "result",
      });
      return DROP;
    }
    onServerFrame(type, options.keepServer[type] === 1 ? body : null);
    return null;
  };

  const checkServer = (type: number, body: Buffer): Buffer | null => {
    let replacement: Buffer | null = null;
    try {
      const message = parseBackendMessage("E", body);
      const text = message.kind === "ErrorResponse" ? (message.fields.M ?? "") : "";
      const match = text.includes(tokenPrefix) ? tokenPattern.exec(text) : null;
      if (match !== null) {
        const number = Number(match[1]);
        const refusal = pending.get(number);
        // Answers come in order: a token sent earlier whose error never came (skipped until Sync) never will.
        for (const key of pending.keys()) if (key <= number) pending.delete(key);
        if (refusal !== undefined)
          replacement = encodeErrorResponse({
            severity: "ERROR",
            code: REFUSAL_SQLSTATE,
            message: `refused by Stint query policy (rule ${refusal.rule}): ${refusal.message}`,
          });
      }
    } catch {
      // Not ours to judge: a malformed error passes as it came (the query log's scanner reports it).
    }
    onServerFrame(type, replacement === null ? body : replacement.subarray(HEADER_LENGTH));
    return replacement;
  };

  return {
    client: createRelayScanner({
      keep: options.keepClient,
      hold: messageTypes("QPF"),
      maxKeptLength: options.maxClientFrame,
      stream: options.streamClient,
      onFrame: onClientFrame,
      held: checkClient,
    }),
    server:
      maxRows === undefined
        ? createRelayScanner({
            keep: options.keepServer,
            hold: messageTypes("E"),
            maxKeptLength: options.maxServerFrame,
            onFrame: onServerFrame,
            held: (type, body) => (type === ERROR_RESPONSE ? checkServer(type, body) : null),
          })
        : // Under a row limit rows and result ends are held too (a frame within one chunk is not copied).
          createRelayScanner({
            keep: options.keepServer,
            hold: messageTypes("EDdcCsZ"),
            maxKeptLength: options.maxServerFrame,
            onFrame: onServerFrame,
            held: limitRows,
          }),
  };
}

/**
 * A Parse body's statement name and text, as the server reads them (two NUL-terminated strings, an
 * int16 count and that many int32 type OIDs, nothing after), or null when it is malformed.
 */
export function readParse(body: Buffer): { name: string; query: string } | null {
  const nameEnd = body.indexOf(0);
  if (nameEnd < 0) return null;
  const queryEnd = body.indexOf(0, nameEnd + 1);
  if (queryEnd < 0 || queryEnd + 3 > body.length) return null;
  if (queryEnd + 3 + body.readUInt16BE(queryEnd + 1) * 4 !== body.length) return null;
  return { name: body.toString("utf8", 0, nameEnd), query: body.toString("utf8", nameEnd + 1, queryEnd) };
}

const NO_NAMES: readonly string[] = Object.freeze([]);

/** Names of statements PREPAREd by a parsed query string. */
function namesPreparedBy(parsed: Extract<ParsedQuery, { ok: true }>): readonly string[] {
  let names: string[] | null = null;
  for (const statement of parsed.statements) if (statement.prepares !== null) (names ??= []).push(statement.prepares);
  return names ?? NO_NAMES;
}
