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
 * - Durations are seen from the proxy: from when the request arrived, or when the previous result
 *   arrived if later, to when its result arrived. PostgreSQL buffers extended-protocol results until
 *   Sync or Flush, so statements pipelined in one batch cannot be timed apart.
 */
import type { BackendMessage, FrontendMessage } from "../../lib/pg-wire.js";
import type { QueryLogEntry } from "../../modules/sessions/sessions.types.js";

export interface QueryLogTracker {
  /** A message the client sent (after the startup phase). */
  frontend(message: FrontendMessage): void;
  /**
   * A message the server sent; returns the entries it completes. Only the kind of a DataRow is read
   * (to count rows of a suspended portal), so a proxy may pass `{ kind: "DataRow", values: [] }`.
   */
  backend(message: BackendMessage): QueryLogEntry[];
  /** Requests sent and not yet answered by ReadyForQuery. */
  pending(): number;
  /**
   * The session is ending: one entry, marked interrupted, for each statement still waiting for its
   * result (the one running, and any queued behind it), so that a kill never hides what ran.
   */
  interrupt(reason: string): QueryLogEntry[];
}

type OpKind = "simple" | "parse" | "bind" | "describe" | "execute" | "close" | "sync" | "function";

interface Op {
  kind: OpKind;
  statement: string;
  parameters?: (string | null)[];
  receivedAt: number;
  dataRows: number;
  /** Reverts this message's effect on named statements/portals when PostgreSQL skips or refuses it. */
  undo?: () => void;
}

interface Portal {
  statement: string;
  parameters?: (string | null)[];
}

/** "INSERT 0 5" → INSERT, 5; "SELECT 3" → SELECT, 3; "CREATE TABLE" → CREATE TABLE, null. */
export function parseCommandTag(tag: string): { command: string; rows: number | null } {
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

const round = (ms: number): number => Math.max(0, Math.round(ms * 1000) / 1000);

export function createQueryLogTracker(options: { keepParameters: boolean; now?: () => number }): QueryLogTracker {
  const now = options.now ?? (() => performance.now());
  const statements = new Map<string, string>();
  const portals = new Map<string, Portal>();
  const queue: Op[] = [];
  let lastResultAt = Number.NEGATIVE_INFINITY;

  const push = (op: Omit<Op, "receivedAt" | "dataRows">): void => {
    queue.push({ ...op, receivedAt: now(), dataRows: 0 });
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

  const entry = (op: Op | undefined, result: Pick<QueryLogEntry, "rows" | "command" | "error">): QueryLogEntry => {
    const at = now();
    const startedAt = Math.max(op?.receivedAt ?? at, lastResultAt);
    lastResultAt = at;
    const out: QueryLogEntry = { statement: op?.statement ?? "", durationMs: round(at - startedAt), ...result };
    if (options.keepParameters && op?.parameters !== undefined) out.parameters = op.parameters;
    return out;
  };

  const unknownStatement = (name: string): string => `<unknown prepared statement ${JSON.stringify(name)}>`;

  /** After an extended-protocol error PostgreSQL discards every message until Sync. */
  const skipUntilSync = (): void => {
    const skipped: Op[] = [];
    while (queue.length > 0 && queue[0]?.kind !== "sync") skipped.push(queue.shift() as Op);
    for (const op of skipped.reverse()) op.undo?.();
  };

  const shiftIf = (...kinds: OpKind[]): void => {
    if (queue[0] !== undefined && kinds.includes(queue[0].kind)) queue.shift();
  };

  return {
    frontend(message) {
      switch (message.kind) {
        case "Query":
          push({ kind: "simple", statement: message.sql });
          return;
        case "Parse":
          push({
            kind: "parse",
            statement: message.query,
            undo: setWithUndo(statements, message.name, message.query),
          });
          return;
        case "Bind": {
          const statement = statements.get(message.statement) ?? unknownStatement(message.statement);
          const parameters = options.keepParameters
            ? describeParameters(message.paramFormats, message.params)
            : undefined;
          const portal: Portal = parameters === undefined ? { statement } : { statement, parameters };
          push({ kind: "bind", ...portal, undo: setWithUndo(portals, message.portal, portal) });
          return;
        }
        case "Describe": {
          const statement =
            message.target === "S"
              ? (statements.get(message.name) ?? unknownStatement(message.name))
              : (portals.get(message.name)?.statement ?? unknownStatement(message.name));
          push({ kind: "describe", statement });
          return;
        }
        case "Execute": {
          const portal = portals.get(message.portal);
          push({ kind: "execute", ...(portal ?? { statement: `<unknown portal ${JSON.stringify(message.portal)}>` }) });
          return;
        }
        case "Close": {
          const map: Map<string, unknown> = message.target === "S" ? statements : portals;
          push({ kind: "close", statement: "", undo: setWithUndo(map, message.name, undefined) });
          return;
        }
        case "Sync":
          push({ kind: "sync", statement: "" });
          return;
        case "FunctionCall":
          push({ kind: "function", statement: `<function call ${message.functionOid}>` });
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
          return [];
        case "BindComplete":
          shiftIf("bind");
          return [];
        case "CloseComplete":
          shiftIf("close");
          return [];
        case "RowDescription":
        case "NoData":
          shiftIf("describe");
          return [];
        case "DataRow":
          if (head !== undefined) head.dataRows += 1;
          return [];
        case "CommandComplete": {
          const out = [entry(head, { ...parseCommandTag(message.tag), error: null })];
          if (head?.kind === "execute") queue.shift();
          return out;
        }
        case "EmptyQueryResponse":
        case "PortalSuspended": {
          const rows = message.kind === "PortalSuspended" ? (head?.dataRows ?? 0) : null;
          const out = [entry(head, { rows, command: null, error: null })];
          if (head?.kind === "execute") queue.shift();
          return out;
        }
        case "FunctionCallResponse":
          return [entry(head, { rows: null, command: "FUNCTION CALL", error: null })];
        case "ErrorResponse": {
          const code = message.fields.C ?? "XX000";
          const out = [entry(head, { rows: null, command: null, error: `${code}: ${message.fields.M ?? ""}` })];
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
          return [];
        }
        default:
          return [];
      }
    },

    pending: () => queue.length,

    interrupt(reason) {
      const out: QueryLogEntry[] = [];
      for (const op of queue.splice(0)) {
        if (op.kind !== "simple" && op.kind !== "execute" && op.kind !== "function") continue;
        const rows = op.dataRows > 0 ? op.dataRows : null;
        out.push({ ...entry(op, { rows, command: null, error: `interrupted: ${reason}` }), interrupted: true });
      }
      return out;
    },
  };
}
