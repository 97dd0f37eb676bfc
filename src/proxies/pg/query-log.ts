/**
 * The query log of one PostgreSQL session, from the messages the proxy relays: fed every frontend
 * and backend message of an established session in wire order, it returns QueryLogEntry values in
 * completion order. Socket-free; time comes from an injected clock.
 *
 * Choices:
 * - Simple Query: one entry per statement result (CommandComplete, ErrorResponse, EmptyQueryResponse).
 *   A multi-statement string gives several entries that all carry the whole string (the proxy does
 *   not split SQL), each with its own tag and duration.
 * - Extended protocol: one entry per Execute (CommandComplete, EmptyQueryResponse, PortalSuspended or
 *   ErrorResponse), with the statement text of its Parse and, when kept, the parameters of its Bind.
 *   A Parse, Bind or Describe that fails gives one error entry too; the messages PostgreSQL then
 *   skips until Sync give none, and their effect on named statements and portals is undone.
 * - Entries without a command tag (an empty query, a suspended portal) have command null and error null.
 * - Logged when sent: a statement that runs (a Query, an Execute, a FunctionCall) goes to `sent` as the
 *   client's message completes, before the relay passes its last byte on, numbered in the session; its
 *   entries name that number (`sent`), so the recording holds every statement the server could run even
 *   when its result never comes. Parse, Bind, Describe, Close and Sync run nothing and are not sent lines.
 * - Durations are seen from the proxy: from when the request arrived, or when the previous result
 *   arrived if later, to when its result arrived. PostgreSQL buffers extended-protocol results until
 *   Sync or Flush, so statements pipelined in one batch cannot be timed apart.
 */
import {
  PgWireError,
  parseBackendMessage,
  parseFrontendMessage,
  type BackendMessage,
  type FrontendMessage,
  type NoticeFields,
} from "../../lib/pg-wire.js";
import type { QueryLogResult, SentStatement } from "../../modules/sessions/sessions.types.js";
import type { StreamedBind, ValueHead } from "./streamed-frames.js";
import { messageTypes } from "./wire-stream.js";

/**
 * What the tracker reads of a backend message: the kind, a CommandComplete's tag and an
 * ErrorResponse's fields. A relay passes these (constants for the bodiless kinds) instead of parsing
 * every message it forwards; a whole BackendMessage does as well.
 */
export type TrackedBackendMessage =
  | {
      kind:
        | "ParseComplete"
        | "BindComplete"
        | "CloseComplete"
        | "RowDescription"
        | "NoData"
        | "DataRow"
        | "EmptyQueryResponse"
        | "PortalSuspended"
        | "FunctionCallResponse"
        | "ReadyForQuery";
    }
  | { kind: "CommandComplete"; tag: string }
  | { kind: "ErrorResponse"; fields: NoticeFields };

/** The backend messages the tracker follows by kind alone, by type byte (a relay passes these, not parsing them). */
export const TRACKED_BY_TYPE: (TrackedBackendMessage | undefined)[] = (() => {
  const table: (TrackedBackendMessage | undefined)[] = new Array(256);
  const kinds: [string, TrackedBackendMessage["kind"]][] = [
    ["1", "ParseComplete"],
    ["2", "BindComplete"],
    ["3", "CloseComplete"],
    ["T", "RowDescription"],
    ["n", "NoData"],
    ["D", "DataRow"],
    ["I", "EmptyQueryResponse"],
    ["s", "PortalSuspended"],
    ["V", "FunctionCallResponse"],
    ["Z", "ReadyForQuery"],
  ];
  for (const [type, kind] of kinds) table[type.charCodeAt(0)] = Object.freeze({ kind }) as TrackedBackendMessage;
  return table;
})();

/**
 * In session, the relay reads the bodies of these client messages only (what the query log needs:
 * Query, Parse, Bind, Describe, Execute, Close, FunctionCall), and of these server messages only
 * (CommandComplete, ErrorResponse); every other message is relayed on its header alone.
 */
export const FRONTEND_READ = messageTypes("QPBDECF");
export const BACKEND_READ = messageTypes("CE");
const QUERY = 0x51; // 'Q'
const COMMAND_COMPLETE = 0x43; // 'C'

/** A client message the query log reads, from its type byte and body; the codec's checks apply. */
export function frontendMessage(type: number, body: Buffer): FrontendMessage {
  // The common case, read directly: one NUL-terminated string and nothing after it.
  if (type === QUERY && body.length > 0 && body.indexOf(0) === body.length - 1)
    return { kind: "Query", sql: body.toString("utf8", 0, body.length - 1) };
  return parseFrontendMessage(String.fromCharCode(type), body);
}

/** A server message the query log reads (CommandComplete, ErrorResponse); the codec's checks apply. */
export function backendMessage(type: number, body: Buffer): TrackedBackendMessage {
  if (type === COMMAND_COMPLETE && body.length > 0 && body.indexOf(0) === body.length - 1)
    return { kind: "CommandComplete", tag: body.toString("utf8", 0, body.length - 1) };
  const message = parseBackendMessage(String.fromCharCode(type), body);
  if (message.kind === "CommandComplete" || message.kind === "ErrorResponse") return message;
  throw new PgWireError("BAD_VALUE", `unexpected '${String.fromCharCode(type)}' message`);
}

/** Most backend messages complete no entry: one shared empty answer, not an array each. */
const NO_ENTRIES: readonly QueryLogResult[] = Object.freeze([]);

export interface QueryLogTracker {
  /** A message the client sent (after the startup phase); a Bind too long to keep whole, as the relay read it. */
  frontend(message: FrontendMessage | StreamedBind): void;
  /**
   * A message the server sent; returns the entries it completes. Only the kind of most messages is
   * read (a DataRow's, to count rows of a suspended portal), the tag of a CommandComplete and the
   * fields of an ErrorResponse: see TrackedBackendMessage.
   */
  backend(message: TrackedBackendMessage | BackendMessage): readonly QueryLogResult[];
  /** Requests sent and not yet answered by ReadyForQuery. */
  pending(): number;
  /**
   * The session is ending: one entry, marked interrupted, for each statement still waiting for its
   * result (the one running, and any queued behind it), so that a kill never hides what ran.
   */
  interrupt(reason: string): QueryLogResult[];
}

type OpKind = "simple" | "parse" | "bind" | "describe" | "execute" | "close" | "sync" | "function";

/** One request waiting for its answer. Every Op has every field (one object shape: the hot path stays fast). */
interface Op {
  kind: OpKind;
  statement: string;
  parameters: (string | null)[] | undefined;
  receivedAt: number;
  dataRows: number;
  /** The number of its line logged when sent (a Query, Execute or FunctionCall), else 0. */
  sent: number;
  /** Reverts this message's effect on named statements/portals when PostgreSQL skips or refuses it. */
  undo: (() => void) | undefined;
}

interface Portal {
  statement: string;
  parameters?: (string | null)[];
}

/** "INSERT 0 5" → INSERT, 5; "SELECT 3" → SELECT, 3; "CREATE TABLE" → CREATE TABLE, null. */
export function parseCommandTag(tag: string): { command: string; rows: number | null } {
  // The usual tag, read directly: capital letters, one space, digits ("SELECT 1", "UPDATE 10").
  const space = tag.indexOf(" ");
  if (space > 0 && space < tag.length - 1) {
    let plain = true;
    for (let i = 0; i < tag.length && plain; i++) {
      const code = tag.charCodeAt(i);
      plain = i < space ? code >= 65 && code <= 90 : i === space || (code >= 48 && code <= 57);
    }
    if (plain) return { command: tag.slice(0, space), rows: Number(tag.slice(space + 1)) };
  }
  const words = tag.trim().split(/\s+/);
  let end = words.length;
  while (end > 0 && /^\d+$/.test(words[end - 1] ?? "")) end--;
  const counts = words.slice(end);
  const command = words.slice(0, end).join(" ");
  return { command: command === "" ? tag : command, rows: counts.length > 0 ? Number(counts.at(-1)) : null };
}

/** Bound parameter values as text: text-format values decoded, binary ones described, NULL as null. */
export function describeParameters(formats: number[], values: (Buffer | null)[]): (string | null)[] {
  return values.map((value, i) => {
    if (value === null) return null;
    const format = formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i];
    return format === 1 ? `<binary ${value.length} bytes>` : value.toString("utf8");
  });
}

/**
 * Bound parameters of a Bind read in pieces (streamed-frames.ts): as describeParameters, except that a
 * text value kept only in part is shown with its length and the bytes kept.
 */
export function describeValueHeads(formats: number[], values: (ValueHead | null)[]): (string | null)[] {
  return values.map((value, i) => {
    if (value === null) return null;
    const format = formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i];
    if (format === 1) return `<binary ${value.length} bytes>`;
    const text = value.head.toString("utf8");
    return value.head.length === value.length
      ? text
      : `<text ${value.length} bytes, first ${value.head.length}: ${text}>`;
  });
}

const round = (ms: number): number => Math.max(0, Math.round(ms * 1000) / 1000);

export function createQueryLogTracker(options: {
  keepParameters: boolean;
  now?: () => number;
  /** A statement that runs, as its message completes and before it is passed on (see the choices above). */
  sent?: (statement: SentStatement) => void;
}): QueryLogTracker {
  const now = options.now ?? (() => performance.now());
  const onSent = options.sent;
  const statements = new Map<string, string>();
  const portals = new Map<string, Portal>();
  const queue: Op[] = [];
  let lastResultAt = Number.NEGATIVE_INFINITY;
  let sentCount = 0;

  const push = (kind: OpKind, statement: string, parameters?: (string | null)[], undo?: () => void): void => {
    let sent = 0;
    if (onSent !== undefined && (kind === "simple" || kind === "execute" || kind === "function")) {
      sent = ++sentCount;
      onSent(parameters === undefined ? { id: sent, statement } : { id: sent, statement, parameters });
    }
    const op: Op = { kind, statement, parameters, receivedAt: now(), dataRows: 0, sent, undo };
    queue.push(op);
  };

  /** Sets a map entry and returns how to put the old value back. */
  const setWithUndo = <V>(map: Map<string, V>, key: string, value: V | undefined): (() => void) => {
    const had = map.has(key);
    const old = map.get(key);
    if (value === undefined) map.delete(key);
    else map.set(key, value);
    return () => {
      if (had) map.set(key, old as V);
      else map.delete(key);
    };
  };

  const entry = (
    op: Op | undefined,
    rows: number | null,
    command: string | null,
    error: string | null,
  ): QueryLogResult => {
    const at = now();
    const startedAt = Math.max(op?.receivedAt ?? at, lastResultAt);
    lastResultAt = at;
    const out: QueryLogResult = {
      statement: op?.statement ?? "",
      durationMs: round(at - startedAt),
      rows,
      command,
      error,
    };
    if (options.keepParameters && op?.parameters !== undefined) out.parameters = op.parameters;
    if (op !== undefined && op.sent !== 0) out.sent = op.sent;
    return out;
  };

  const unknownStatement = (name: string): string => `<unknown prepared statement ${JSON.stringify(name)}>`;

  /** After an extended-protocol error PostgreSQL discards every message until Sync. */
  const skipUntilSync = (): void => {
    const skipped: Op[] = [];
    while (queue.length > 0 && queue[0]?.kind !== "sync") skipped.push(queue.shift() as Op);
    for (const op of skipped.reverse()) op.undo?.();
  };

  const shiftIf = (kind: OpKind): void => {
    if (queue[0]?.kind === kind) queue.shift();
  };

  return {
    frontend(message) {
      switch (message.kind) {
        case "Query":
          push("simple", message.sql);
          return;
        case "Parse":
          push("parse", message.query, undefined, setWithUndo(statements, message.name, message.query));
          return;
        case "Bind":
        case "StreamedBind": {
          const statement = statements.get(message.statement) ?? unknownStatement(message.statement);
          const parameters = !options.keepParameters
            ? undefined
            : message.kind === "Bind"
              ? describeParameters(message.paramFormats, message.params)
              : describeValueHeads(message.paramFormats, message.params);
          const portal: Portal = parameters === undefined ? { statement } : { statement, parameters };
          push("bind", statement, parameters, setWithUndo(portals, message.portal, portal));
          return;
        }
        case "Describe": {
          const statement =
            message.target === "S"
              ? (statements.get(message.name) ?? unknownStatement(message.name))
              : (portals.get(message.name)?.statement ?? unknownStatement(message.name));
          push("describe", statement);
          return;
        }
        case "Execute": {
          const portal = portals.get(message.portal);
          if (portal === undefined) push("execute", `<unknown portal ${JSON.stringify(message.portal)}>`);
          else push("execute", portal.statement, portal.parameters);
          return;
        }
        case "Close": {
          const map: Map<string, unknown> = message.target === "S" ? statements : portals;
          push("close", "", undefined, setWithUndo(map, message.name, undefined));
          return;
        }
        case "Sync":
          push("sync", "");
          return;
        case "FunctionCall":
          push("function", `<function call ${message.functionOid}>`);
          return;
        default:
          // Flush, Terminate, COPY data, password messages: no response to wait for.
          return;
      }
    },

    backend(message) {
      const head = queue[0];
      switch (message.kind) {
        case "ParseComplete":
          shiftIf("parse");
          return NO_ENTRIES;
        case "BindComplete":
          shiftIf("bind");
          return NO_ENTRIES;
        case "CloseComplete":
          shiftIf("close");
          return NO_ENTRIES;
        case "RowDescription":
        case "NoData":
          shiftIf("describe");
          return NO_ENTRIES;
        case "DataRow":
          if (head !== undefined) head.dataRows += 1;
          return NO_ENTRIES;
        case "CommandComplete": {
          const tag = parseCommandTag(message.tag);
          const out = [entry(head, tag.rows, tag.command, null)];
          if (head?.kind === "execute") queue.shift();
          return out;
        }
        case "EmptyQueryResponse":
        case "PortalSuspended": {
          const rows = message.kind === "PortalSuspended" ? (head?.dataRows ?? 0) : null;
          const out = [entry(head, rows, null, null)];
          if (head?.kind === "execute") queue.shift();
          return out;
        }
        case "FunctionCallResponse":
          return [entry(head, null, "FUNCTION CALL", null)];
        case "ErrorResponse": {
          const code = message.fields.C ?? "XX000";
          const out = [entry(head, null, null, `${code}: ${message.fields.M ?? ""}`)];
          if (head !== undefined && head.kind !== "simple" && head.kind !== "sync" && head.kind !== "function") {
            queue.shift();
            skipUntilSync();
            head.undo?.();
          }
          return out;
        }
        case "ReadyForQuery": {
          while (queue.length > 0) {
            const op = queue.shift() as Op;
            if (op.kind === "sync" || op.kind === "simple" || op.kind === "function") break;
          }
          return NO_ENTRIES;
        }
        default:
          return NO_ENTRIES;
      }
    },

    pending: () => queue.length,

    interrupt(reason) {
      const out: QueryLogResult[] = [];
      for (const op of queue.splice(0)) {
        if (op.kind !== "simple" && op.kind !== "execute" && op.kind !== "function") continue;
        const rows = op.dataRows > 0 ? op.dataRows : null;
        const logged = entry(op, rows, null, `interrupted: ${reason}`);
        logged.interrupted = true;
        out.push(logged);
      }
      return out;
    },
  };
}
