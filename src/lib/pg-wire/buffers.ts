/** Bounds-checked reading and simple writing of PostgreSQL wire fields. */
import { PgWireError } from "./errors.js";

export interface Cursor {
  readonly remaining: () => number;
  readonly int8: () => number;
  readonly int16: () => number;
  readonly int32: () => number;
  readonly uint32: () => number;
  readonly bytes: (n: number) => Buffer;
  readonly rest: () => Buffer;
  readonly cstring: () => string;
  /** Fails unless every byte was consumed: a fixed-layout message never carries extra bytes. */
  readonly end: () => void;
}

export function createCursor(body: Buffer, what: string): Cursor {
  let offset = 0;
  const need = (n: number, field: string): void => {
    if (offset + n > body.length) {
      throw new PgWireError("TRUNCATED", `${what}: body ends before ${field}`);
    }
  };
  return {
    remaining: () => body.length - offset,
    int8: () => {
      need(1, "a byte");
      return body.readUInt8(offset++);
    },
    int16: () => {
      need(2, "an Int16");
      const v = body.readInt16BE(offset);
      offset += 2;
      return v;
    },
    int32: () => {
      need(4, "an Int32");
      const v = body.readInt32BE(offset);
      offset += 4;
      return v;
    },
    uint32: () => {
      need(4, "an Int32");
      const v = body.readUInt32BE(offset);
      offset += 4;
      return v;
    },
    bytes: (n: number) => {
      if (n < 0) throw new PgWireError("BAD_COUNT", `${what}: negative byte count ${n}`);
      need(n, `${n} bytes`);
      const v = body.subarray(offset, offset + n);
      offset += n;
      return Buffer.from(v);
    },
    rest: () => {
      const v = Buffer.from(body.subarray(offset));
      offset = body.length;
      return v;
    },
    cstring: () => {
      const nul = body.indexOf(0, offset);
      if (nul < 0) throw new PgWireError("MISSING_NUL", `${what}: string without terminating NUL`);
      const v = body.toString("utf8", offset, nul);
      offset = nul + 1;
      return v;
    },
    end: () => {
      if (offset !== body.length) {
        throw new PgWireError("TRAILING_BYTES", `${what}: ${body.length - offset} unexpected trailing bytes`);
      }
    },
  };
}

/** Reads an Int16 count and refuses negatives, then reads that many elements. */
export function readArray<T>(cursor: Cursor, what: string, readOne: () => T): T[] {
  const count = cursor.int16();
  if (count < 0) throw new PgWireError("BAD_COUNT", `${what}: negative count ${count}`);
  const out: T[] = [];
  for (let i = 0; i < count; i++) out.push(readOne());
  return out;
}

/** A value with an Int32 length prefix, -1 meaning NULL. */
export function readNullableBytes(cursor: Cursor, what: string): Buffer | null {
  const length = cursor.int32();
  if (length === -1) return null;
  if (length < -1) throw new PgWireError("BAD_COUNT", `${what}: value length ${length}`);
  return cursor.bytes(length);
}

export function int16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(v);
  return b;
}

export function int32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
}

export function cstring(s: string): Buffer {
  if (s.includes("\0")) throw new PgWireError("BAD_VALUE", "a protocol string cannot contain NUL");
  return Buffer.concat([Buffer.from(s, "utf8"), Buffer.of(0)]);
}

/** A typed message: type byte, Int32 length counting itself, body. */
export function typed(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from(type, "latin1"), int32(body.length + 4), body]);
}

/** An untyped (startup-phase) message: Int32 length counting itself, body. */
export function untyped(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([int32(body.length + 4), body]);
}
