/** Messages a server (backend) sends: parsing from frames and the encoders a proxy needs. */
import { createCursor, cstring, int32, readArray, readNullableBytes, typed } from "./buffers.js";
import { PgWireError } from "./errors.js";

export interface FieldDescription {
  name: string;
  tableOid: number;
  columnAttr: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  format: number;
}

/** ErrorResponse/NoticeResponse fields by their one-letter code (S, V, C, M, D, H, P, …). */
export type NoticeFields = Record<string, string>;

export type TransactionStatus = "I" | "T" | "E";

export type BackendMessage =
  /** The one unframed byte answering SSLRequest or GSSENCRequest. */
  | { kind: "SSLResponse"; accepted: boolean }
  | { kind: "AuthenticationOk" }
  | { kind: "AuthenticationCleartextPassword" }
  | { kind: "AuthenticationMD5Password"; salt: Buffer }
  | { kind: "AuthenticationSASL"; mechanisms: string[] }
  | { kind: "AuthenticationSASLContinue"; data: Buffer }
  | { kind: "AuthenticationSASLFinal"; data: Buffer }
  /** Kerberos, SCM, GSS, SSPI: kept raw. */
  | { kind: "AuthenticationOther"; code: number; data: Buffer }
  | { kind: "ParameterStatus"; name: string; value: string }
  | { kind: "BackendKeyData"; processId: number; secretKey: Buffer }
  | { kind: "ReadyForQuery"; status: TransactionStatus }
  | { kind: "RowDescription"; fields: FieldDescription[] }
  | { kind: "DataRow"; values: (Buffer | null)[] }
  | { kind: "CommandComplete"; tag: string }
  | { kind: "ErrorResponse"; fields: NoticeFields }
  | { kind: "NoticeResponse"; fields: NoticeFields }
  | { kind: "ParseComplete" }
  | { kind: "BindComplete" }
  | { kind: "CloseComplete" }
  | { kind: "NoData" }
  | { kind: "PortalSuspended" }
  | { kind: "EmptyQueryResponse" }
  | { kind: "ParameterDescription"; typeOids: number[] }
  | { kind: "CopyInResponse" | "CopyOutResponse" | "CopyBothResponse"; format: number; columnFormats: number[] }
  | { kind: "CopyData"; data: Buffer }
  | { kind: "CopyDone" }
  | { kind: "NotificationResponse"; processId: number; channel: string; payload: string }
  | { kind: "NegotiateProtocolVersion"; newestMinor: number; unrecognizedOptions: string[] }
  | { kind: "FunctionCallResponse"; result: Buffer | null }
  | { kind: "Unknown"; type: string; body: Buffer };

const NO_BODY = {
  "1": "ParseComplete",
  "2": "BindComplete",
  "3": "CloseComplete",
  n: "NoData",
  s: "PortalSuspended",
  I: "EmptyQueryResponse",
  c: "CopyDone",
} as const;

const COPY_RESPONSES = { G: "CopyInResponse", H: "CopyOutResponse", W: "CopyBothResponse" } as const;

/** Parses one typed backend message. Unknown types come back raw so a proxy can relay them. */
export function parseBackendMessage(type: string, body: Buffer): BackendMessage {
  const c = createCursor(body, `backend '${type}'`);
  const done = <T>(message: T): T => {
    c.end();
    return message;
  };
  if (Object.hasOwn(NO_BODY, type)) return done({ kind: NO_BODY[type as keyof typeof NO_BODY] });
  if (Object.hasOwn(COPY_RESPONSES, type)) {
    const format = c.int8();
    const columnFormats = readArray(c, "copy response", () => c.int16());
    return done({ kind: COPY_RESPONSES[type as keyof typeof COPY_RESPONSES], format, columnFormats });
  }
  switch (type) {
    case "R":
      return parseAuthentication(body);
    case "S": {
      const name = c.cstring();
      return done({ kind: "ParameterStatus", name, value: c.cstring() });
    }
    case "K": {
      const processId = c.int32();
      const secretKey = c.rest();
      if (secretKey.length < 4 || secretKey.length > 256) {
        throw new PgWireError("BAD_VALUE", `BackendKeyData: secret key of ${secretKey.length} bytes`);
      }
      return { kind: "BackendKeyData", processId, secretKey };
    }
    case "Z": {
      const status = String.fromCharCode(c.int8());
      if (status !== "I" && status !== "T" && status !== "E") {
        throw new PgWireError("BAD_VALUE", `ReadyForQuery: unknown transaction status ${JSON.stringify(status)}`);
      }
      return done({ kind: "ReadyForQuery", status });
    }
    case "T": {
      const fields = readArray(c, "RowDescription", () => ({
        name: c.cstring(),
        tableOid: c.uint32(),
        columnAttr: c.int16(),
        typeOid: c.uint32(),
        typeSize: c.int16(),
        typeModifier: c.int32(),
        format: c.int16(),
      }));
      return done({ kind: "RowDescription", fields });
    }
    case "D":
      return done({ kind: "DataRow", values: readArray(c, "DataRow", () => readNullableBytes(c, "DataRow")) });
    case "C":
      return done({ kind: "CommandComplete", tag: c.cstring() });
    case "E":
    case "N": {
      const fields: [string, string][] = [];
      for (;;) {
        const code = c.int8();
        if (code === 0) break;
        fields.push([String.fromCharCode(code), c.cstring()]);
      }
      const kind = type === "E" ? "ErrorResponse" : "NoticeResponse";
      return done({ kind, fields: Object.fromEntries(fields) });
    }
    case "t":
      return done({ kind: "ParameterDescription", typeOids: readArray(c, "ParameterDescription", () => c.uint32()) });
    case "d":
      return { kind: "CopyData", data: c.rest() };
    case "A": {
      const processId = c.int32();
      const channel = c.cstring();
      return done({ kind: "NotificationResponse", processId, channel, payload: c.cstring() });
    }
    case "v": {
      const newestMinor = c.int32();
      const count = c.int32();
      if (count < 0) throw new PgWireError("BAD_COUNT", `NegotiateProtocolVersion: negative count ${count}`);
      const unrecognizedOptions: string[] = [];
      for (let i = 0; i < count; i++) unrecognizedOptions.push(c.cstring());
      return done({ kind: "NegotiateProtocolVersion", newestMinor, unrecognizedOptions });
    }
    case "V":
      return done({ kind: "FunctionCallResponse", result: readNullableBytes(c, "FunctionCallResponse") });
    default:
      return { kind: "Unknown", type, body: Buffer.from(body) };
  }
}

function parseAuthentication(body: Buffer): BackendMessage {
  const c = createCursor(body, "Authentication");
  const code = c.int32();
  switch (code) {
    case 0:
      c.end();
      return { kind: "AuthenticationOk" };
    case 3:
      c.end();
      return { kind: "AuthenticationCleartextPassword" };
    case 5: {
      const salt = c.bytes(4);
      c.end();
      return { kind: "AuthenticationMD5Password", salt };
    }
    case 10: {
      const mechanisms: string[] = [];
      for (;;) {
        const mechanism = c.cstring();
        if (mechanism === "") break;
        mechanisms.push(mechanism);
      }
      c.end();
      return { kind: "AuthenticationSASL", mechanisms };
    }
    case 11:
      return { kind: "AuthenticationSASLContinue", data: c.rest() };
    case 12:
      return { kind: "AuthenticationSASLFinal", data: c.rest() };
    default:
      return { kind: "AuthenticationOther", code, data: c.rest() };
  }
}

/** The single byte answering SSLRequest: 'S' to go on with TLS, 'N' to refuse. */
export function encodeSslResponse(accepted: boolean): Buffer {
  return Buffer.from(accepted ? "S" : "N", "latin1");
}

export function encodeAuthenticationOk(): Buffer {
  return typed("R", int32(0));
}

export function encodeAuthenticationCleartextPassword(): Buffer {
  return typed("R", int32(3));
}

export function encodeAuthenticationSasl(mechanisms: string[]): Buffer {
  // An empty name would be read back as the list's terminator.
  if (mechanisms.includes("")) throw new PgWireError("BAD_VALUE", "a SASL mechanism name cannot be empty");
  return typed("R", int32(10), ...mechanisms.map(cstring), Buffer.of(0));
}

export function encodeAuthenticationSaslContinue(data: Buffer): Buffer {
  return typed("R", int32(11), data);
}

export function encodeAuthenticationSaslFinal(data: Buffer): Buffer {
  return typed("R", int32(12), data);
}

/**
 * An ErrorResponse with the fields every client expects: severity (localized S and
 * non-localized V), SQLSTATE code and message; extra fields by one-letter code.
 */
export function encodeErrorResponse(error: {
  severity: "ERROR" | "FATAL" | "PANIC";
  code: string;
  message: string;
  extra?: NoticeFields;
}): Buffer {
  const fields: [string, string][] = [
    ["S", error.severity],
    ["V", error.severity],
    ["C", error.code],
    ["M", error.message],
    ...Object.entries(error.extra ?? {}),
  ];
  const parts = fields.map(([code, value]) => {
    // One byte on the wire: a code beyond Latin-1 would be cut to its low byte (U+0100 to the NUL
    // that ends the field list), so the client would read a different message.
    const byte = code.charCodeAt(0);
    if (code.length !== 1 || byte === 0 || byte > 0xff) {
      throw new PgWireError("BAD_VALUE", `bad error field code ${JSON.stringify(code)}`);
    }
    return Buffer.concat([Buffer.from(code, "latin1"), cstring(value)]);
  });
  return typed("E", ...parts, Buffer.of(0));
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  return typed("S", cstring(name), cstring(value));
}

export function encodeBackendKeyData(processId: number, secretKey: Buffer): Buffer {
  return typed("K", int32(processId), secretKey);
}

export function encodeReadyForQuery(status: TransactionStatus): Buffer {
  return typed("Z", Buffer.from(status, "latin1"));
}
