/** Messages a client (frontend) sends: parsing from frames and the encoders a proxy needs. */
import { createCursor, cstring, int32, readArray, readNullableBytes, typed, untyped } from "./buffers.js";
import { PgWireError } from "./errors.js";

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** Protocol 3.0: major 3 in the high 16 bits, minor 0 in the low 16. */
export const PROTOCOL_3_0 = 196608;

export type FrontendMessage =
  | { kind: "SSLRequest" }
  | { kind: "GSSENCRequest" }
  | { kind: "CancelRequest"; processId: number; secretKey: Buffer }
  | { kind: "StartupMessage"; protocolVersion: number; parameters: Record<string, string> }
  | { kind: "Query"; sql: string }
  | { kind: "Parse"; name: string; query: string; paramTypes: number[] }
  | {
      kind: "Bind";
      portal: string;
      statement: string;
      paramFormats: number[];
      params: (Buffer | null)[];
      resultFormats: number[];
    }
  | { kind: "Describe"; target: "S" | "P"; name: string }
  | { kind: "Execute"; portal: string; maxRows: number }
  | { kind: "Sync" }
  | { kind: "Flush" }
  | { kind: "Close"; target: "S" | "P"; name: string }
  | { kind: "Terminate" }
  /** 'p': a password, a SASL initial response or a SASL response; only the auth state knows which. */
  | { kind: "AuthenticationResponse"; data: Buffer }
  | { kind: "CopyData"; data: Buffer }
  | { kind: "CopyDone" }
  | { kind: "CopyFail"; message: string }
  | { kind: "FunctionCall"; functionOid: number; argFormats: number[]; args: (Buffer | null)[]; resultFormat: number }
  | { kind: "Unknown"; type: string; body: Buffer };

/** Parses the body of an untyped first message (after its length word). */
export function parseStartupBody(body: Buffer): FrontendMessage {
  const c = createCursor(body, "startup packet");
  const code = c.int32();
  if (code === SSL_REQUEST_CODE) {
    c.end();
    return { kind: "SSLRequest" };
  }
  if (code === GSSENC_REQUEST_CODE) {
    c.end();
    return { kind: "GSSENCRequest" };
  }
  if (code === CANCEL_REQUEST_CODE) {
    const processId = c.int32();
    // 4 bytes in protocol 3.0; up to 256 from 3.2 on, so kept as bytes.
    const secretKey = c.rest();
    if (secretKey.length < 4 || secretKey.length > 256) {
      throw new PgWireError("BAD_VALUE", `CancelRequest: secret key of ${secretKey.length} bytes`);
    }
    return { kind: "CancelRequest", processId, secretKey };
  }
  if (code >>> 16 !== 3) {
    throw new PgWireError("UNKNOWN_STARTUP_CODE", `startup packet: unknown request code ${code}`);
  }
  const entries: [string, string][] = [];
  for (;;) {
    const name = c.cstring();
    if (name === "") break;
    entries.push([name, c.cstring()]);
  }
  c.end();
  return { kind: "StartupMessage", protocolVersion: code, parameters: Object.fromEntries(entries) };
}

function target(value: number, what: string): "S" | "P" {
  if (value === 0x53) return "S";
  if (value === 0x50) return "P";
  throw new PgWireError("BAD_VALUE", `${what}: target must be 'S' or 'P'`);
}

/** Parses one typed frontend message. Unknown types come back raw so a proxy can relay them. */
export function parseFrontendMessage(type: string, body: Buffer): FrontendMessage {
  const c = createCursor(body, `frontend '${type}'`);
  const done = <T>(message: T): T => {
    c.end();
    return message;
  };
  switch (type) {
    case "Q":
      return done({ kind: "Query", sql: c.cstring() });
    case "P": {
      const name = c.cstring();
      const query = c.cstring();
      return done({ kind: "Parse", name, query, paramTypes: readArray(c, "Parse", () => c.uint32()) });
    }
    case "B": {
      const portal = c.cstring();
      const statement = c.cstring();
      const paramFormats = readArray(c, "Bind formats", () => c.int16());
      const params = readArray(c, "Bind parameters", () => readNullableBytes(c, "Bind"));
      const resultFormats = readArray(c, "Bind result formats", () => c.int16());
      return done({ kind: "Bind", portal, statement, paramFormats, params, resultFormats });
    }
    case "D":
      return done({ kind: "Describe", target: target(c.int8(), "Describe"), name: c.cstring() });
    case "E":
      return done({ kind: "Execute", portal: c.cstring(), maxRows: c.int32() });
    case "S":
      return done({ kind: "Sync" });
    case "H":
      return done({ kind: "Flush" });
    case "C":
      return done({ kind: "Close", target: target(c.int8(), "Close"), name: c.cstring() });
    case "X":
      return done({ kind: "Terminate" });
    case "p":
      return { kind: "AuthenticationResponse", data: c.rest() };
    case "d":
      return { kind: "CopyData", data: c.rest() };
    case "c":
      return done({ kind: "CopyDone" });
    case "f":
      return done({ kind: "CopyFail", message: c.cstring() });
    case "F": {
      const functionOid = c.uint32();
      const argFormats = readArray(c, "FunctionCall formats", () => c.int16());
      const args = readArray(c, "FunctionCall arguments", () => readNullableBytes(c, "FunctionCall"));
      return done({ kind: "FunctionCall", functionOid, argFormats, args, resultFormat: c.int16() });
    }
    default:
      return { kind: "Unknown", type, body: Buffer.from(body) };
  }
}

/** 'p' as a PasswordMessage: the password (cleartext or "md5…" hash). */
export function decodePasswordMessage(data: Buffer): string {
  const c = createCursor(data, "PasswordMessage");
  const password = c.cstring();
  c.end();
  return password;
}

/** 'p' as a SASLInitialResponse: the chosen mechanism and the initial client response, if any. */
export function decodeSaslInitialResponse(data: Buffer): { mechanism: string; response: Buffer | null } {
  const c = createCursor(data, "SASLInitialResponse");
  const mechanism = c.cstring();
  const response = readNullableBytes(c, "SASLInitialResponse");
  c.end();
  return { mechanism, response };
}

/** 'p' as a SASLResponse: mechanism-specific bytes. */
export function decodeSaslResponse(data: Buffer): Buffer {
  return Buffer.from(data);
}

export function encodeStartupMessage(parameters: Record<string, string>, protocolVersion = PROTOCOL_3_0): Buffer {
  // An empty name would be read back as the end of the parameter list.
  if (Object.hasOwn(parameters, "")) throw new PgWireError("BAD_VALUE", "a startup parameter name cannot be empty");
  const pairs = Object.entries(parameters).flatMap(([k, v]) => [cstring(k), cstring(v)]);
  return untyped(int32(protocolVersion), ...pairs, Buffer.of(0));
}

export function encodeSslRequest(): Buffer {
  return untyped(int32(SSL_REQUEST_CODE));
}

export function encodeCancelRequest(processId: number, secretKey: Buffer): Buffer {
  return untyped(int32(CANCEL_REQUEST_CODE), int32(processId), secretKey);
}

export function encodeQuery(sql: string): Buffer {
  return typed("Q", cstring(sql));
}

export function encodePasswordMessage(password: string): Buffer {
  return typed("p", cstring(password));
}

export function encodeSaslInitialResponse(mechanism: string, response: Buffer | null): Buffer {
  const value = response === null ? int32(-1) : Buffer.concat([int32(response.length), response]);
  return typed("p", cstring(mechanism), value);
}

export function encodeSaslResponse(response: Buffer): Buffer {
  return typed("p", response);
}

export function encodeTerminate(): Buffer {
  return typed("X");
}

export function encodeSync(): Buffer {
  return typed("S");
}
