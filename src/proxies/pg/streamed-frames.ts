/**
 * Client messages too long for the relay to keep whole, read in pieces as they pass (socket-free:
 * body pieces in, one summary out). The relay keeps whole what must be read whole: a Query's or a
 * Parse's statement text (the query log, the query policy). A Bind is read for its names and, for the
 * query log, its parameters' formats, lengths and first bytes; a FunctionCall for its function. Past
 * the relay's bound (`maxKeptLength`, wire-stream.ts) these two are read here instead: their bytes go
 * on unchanged, only that summary is kept, and never more than `maxKept` bytes of it, so a 20 MB
 * bytea parameter costs the proxy its header, not its size.
 */
import { PgWireError } from "../../lib/pg-wire.js";
import type { FrontendMessage } from "../../lib/pg-wire.js";
import { FrameTooLargeError, type FrameBodyReader } from "./wire-stream.js";

/** A bound value not kept whole: its length and its first bytes (kept only when asked, for text values). */
export interface ValueHead {
  length: number;
  head: Buffer;
}

/** What the query log reads of a Bind read in pieces (query-log.ts describes its parameters). */
export interface StreamedBind {
  kind: "StreamedBind";
  portal: string;
  statement: string;
  paramFormats: number[];
  params: (ValueHead | null)[];
}

/** Bytes kept of each text parameter of a streamed Bind (when the policy keeps parameters). */
export const VALUE_HEAD_BYTES = 64 * 1024;

/** Where a Bind reader is in the body, in wire order. */
const Step = {
  Portal: 0,
  Statement: 1,
  FormatCount: 2,
  Formats: 3,
  ParamCount: 4,
  ValueLength: 5,
  Value: 6,
  ResultCount: 7,
  Results: 8,
  Done: 9,
} as const;

const BIND = "B".charCodeAt(0);
const FUNCTION_CALL = "F".charCodeAt(0);
const EMPTY = Buffer.alloc(0);

/**
 * Reads a Bind body of `bodyLength` bytes in pieces, as the codec would (`parseFrontendMessage`:
 * negative counts and lengths below -1 refused, nothing after the result formats), keeping the
 * portal and statement names, the parameter formats, each value's length and, with `keepValues`, the
 * first VALUE_HEAD_BYTES of each text value: at most `maxKept` bytes in all (names longer than that:
 * FrameTooLargeError). `done` gets the summary when the body is complete.
 */
export function createBindReader(options: {
  bodyLength: number;
  keepValues: boolean;
  maxKept: number;
  done: (bind: StreamedBind) => void;
}): FrameBodyReader {
  const { bodyLength, keepValues, maxKept } = options;
  const bind: StreamedBind = { kind: "StreamedBind", portal: "", statement: "", paramFormats: [], params: [] };
  let step: number = Step.Portal;
  let kept = 0;
  /** A name's bytes so far (a name may span pieces). */
  let name: Buffer[] = [];
  /** An integer's bytes so far. */
  const scratch = Buffer.alloc(4);
  let fill = 0;
  /** Elements left in the current array (formats, parameters, result formats). */
  let left = 0;
  /** Bytes of the current value still to come, and how many of them are still to be kept. */
  let valueLeft = 0;
  let headWanted = 0;
  let value: ValueHead = { length: 0, head: EMPTY };
  let head: Buffer[] = [];

  const malformed = (what: string): never => {
    throw new PgWireError("BAD_VALUE", `frontend 'B': ${what}`);
  };
  const keep = (bytes: number): void => {
    kept += bytes;
    if (kept > maxKept) throw new FrameTooLargeError("B", bodyLength, maxKept);
  };
  const formatOf = (index: number): number => {
    const formats = bind.paramFormats;
    return formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[index] ?? 0);
  };
  const nextParam = (): void => {
    left -= 1;
    step = left > 0 ? Step.ValueLength : Step.ResultCount;
  };
  const endValue = (): void => {
    if (head.length > 0) value.head = head.length === 1 ? head[0]! : Buffer.concat(head);
    head = [];
    bind.params.push(value);
    nextParam();
  };
  /** The integer just read, in the step that wanted it. */
  const integer = (n: number): void => {
    switch (step) {
      case Step.FormatCount:
      case Step.ParamCount:
      case Step.ResultCount: {
        if (n < 0) malformed(`negative count ${n}`);
        left = n;
        /** The step after this array's elements. */
        const after =
          step === Step.FormatCount ? Step.ParamCount : step === Step.ParamCount ? Step.ResultCount : Step.Done;
        step = n > 0 ? step + 1 : after;
        return;
      }
      case Step.Formats:
        keep(2);
        bind.paramFormats.push(n);
        if (--left === 0) step = Step.ParamCount;
        return;
      case Step.ValueLength:
        if (n === -1) {
          bind.params.push(null);
          nextParam();
          return;
        }
        if (n < -1) malformed(`value length ${n}`);
        value = { length: n, head: EMPTY };
        valueLeft = n;
        headWanted =
          keepValues && formatOf(bind.params.length) === 0 ? Math.min(VALUE_HEAD_BYTES, n, maxKept - kept) : 0;
        keep(headWanted);
        if (n === 0) endValue();
        else step = Step.Value;
        return;
      default:
        // Results: the result formats are not kept.
        if (--left === 0) step = Step.Done;
    }
  };

  return {
    push(piece) {
      let at = 0;
      while (at < piece.length) {
        if (step === Step.Portal || step === Step.Statement) {
          const nul = piece.indexOf(0, at);
          const end = nul < 0 ? piece.length : nul;
          keep(end - at);
          if (end > at) name.push(Buffer.from(piece.subarray(at, end)));
          at = end;
          if (nul < 0) continue;
          at += 1;
          const text = Buffer.concat(name).toString("utf8");
          name = [];
          if (step === Step.Portal) bind.portal = text;
          else bind.statement = text;
          step = step === Step.Portal ? Step.Statement : Step.FormatCount;
        } else if (step === Step.Value) {
          const take = Math.min(valueLeft, piece.length - at);
          if (headWanted > 0) {
            const kept = Math.min(headWanted, take);
            head.push(Buffer.from(piece.subarray(at, at + kept)));
            headWanted -= kept;
          }
          valueLeft -= take;
          at += take;
          if (valueLeft === 0) endValue();
        } else if (step === Step.Done) {
          malformed(`${piece.length - at} bytes after the message`);
        } else {
          const size = step === Step.ValueLength ? 4 : 2;
          while (fill < size && at < piece.length) scratch[fill++] = piece[at++]!;
          if (fill < size) return;
          fill = 0;
          integer(size === 4 ? scratch.readInt32BE(0) : scratch.readInt16BE(0));
        }
      }
    },
    end() {
      if (step !== Step.Done) malformed("the message ends early");
      options.done(bind);
    },
  };
}

/** Reads a FunctionCall body in pieces for the query log: the function's OID (its first 4 bytes) only. */
export function createFunctionCallReader(
  done: (call: FrontendMessage & { kind: "FunctionCall" }) => void,
): FrameBodyReader {
  const oid = Buffer.alloc(4);
  let fill = 0;
  return {
    push(piece) {
      for (let at = 0; fill < 4 && at < piece.length;) oid[fill++] = piece[at++]!;
    },
    end() {
      if (fill < 4) throw new PgWireError("BAD_VALUE", "frontend 'F': the message ends early");
      done({ kind: "FunctionCall", functionOid: oid.readUInt32BE(0), argFormats: [], args: [], resultFormat: 0 });
    },
  };
}

/**
 * The readers the relay uses for a client message past its bound, or null: refused (FrameTooLargeError).
 * `deliver` gets what the query log reads (a StreamedBind, a FunctionCall with its OID only).
 */
export function streamedClientFrames(options: {
  keepValues: boolean;
  maxKept: number;
  deliver: (message: StreamedBind | FrontendMessage) => void;
}): (type: number, bodyLength: number) => FrameBodyReader | null {
  return (type, bodyLength) => {
    if (type === BIND)
      return createBindReader({
        bodyLength,
        keepValues: options.keepValues,
        maxKept: options.maxKept,
        done: options.deliver,
      });
    if (type === FUNCTION_CALL) return createFunctionCallReader(options.deliver);
    return null;
  };
}
