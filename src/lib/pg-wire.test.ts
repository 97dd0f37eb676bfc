/**
 * Byte fixtures are written by hand from the protocol documentation
 * (https://www.postgresql.org/docs/current/protocol-message-formats.html), never
 * produced by the encoders they check.
 */
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  PgWireError,
  createBackendReader,
  createFrontendReader,
  decodePasswordMessage,
  decodeSaslInitialResponse,
  decodeSaslResponse,
  encodeAuthenticationCleartextPassword,
  encodeAuthenticationOk,
  encodeAuthenticationSasl,
  encodeAuthenticationSaslContinue,
  encodeAuthenticationSaslFinal,
  encodeBackendKeyData,
  encodeCancelRequest,
  encodeErrorResponse,
  encodeParameterStatus,
  encodePasswordMessage,
  encodeQuery,
  encodeReadyForQuery,
  encodeSaslInitialResponse,
  encodeSaslResponse,
  encodeSslRequest,
  encodeSslResponse,
  encodeStartupMessage,
  encodeSync,
  encodeTerminate,
  parseBackendMessage,
  parseScramServerFirst,
  scramClientFinal,
  scramClientFirst,
  tlsServerEndPoint,
  verifyScramServerFinal,
  type BackendMessage,
  type FrontendMessage,
  type PgWireErrorCode,
} from "./pg-wire.js";

/** Strings are literal ASCII text, arrays are raw bytes. */
function b(...parts: (string | number[])[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))));
}
const NULL_LENGTH = [0xff, 0xff, 0xff, 0xff];
const SECRET = Buffer.from([0xde, 0xad, 0xbe, 0xef]);

interface Fixture<M> {
  name: string;
  bytes: Buffer;
  message: M;
  encode?: () => Buffer;
}

const STARTUP_FIXTURES: Fixture<FrontendMessage>[] = [
  {
    name: "SSLRequest",
    bytes: b([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]),
    message: { kind: "SSLRequest" },
    encode: encodeSslRequest,
  },
  { name: "GSSENCRequest", bytes: b([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]), message: { kind: "GSSENCRequest" } },
  {
    name: "CancelRequest",
    bytes: b([0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]),
    message: { kind: "CancelRequest", processId: 12345, secretKey: SECRET },
    encode: () => encodeCancelRequest(12345, SECRET),
  },
  {
    name: "StartupMessage",
    bytes: b([0, 0, 0, 41, 0, 3, 0, 0], "user", [0], "postgres", [0], "database", [0], "postgres", [0, 0]),
    message: {
      kind: "StartupMessage",
      protocolVersion: 196608,
      parameters: { user: "postgres", database: "postgres" },
    },
    encode: () => encodeStartupMessage({ user: "postgres", database: "postgres" }),
  },
];

const FRONTEND_FIXTURES: Fixture<FrontendMessage>[] = [
  {
    name: "Query",
    bytes: b("Q", [0, 0, 0, 13], "select 1", [0]),
    message: { kind: "Query", sql: "select 1" },
    encode: () => encodeQuery("select 1"),
  },
  {
    name: "Parse",
    bytes: b("P", [0, 0, 0, 23], "s1", [0], "select $1", [0], [0, 1], [0, 0, 0, 23]),
    message: { kind: "Parse", name: "s1", query: "select $1", paramTypes: [23] },
  },
  {
    name: "Bind",
    bytes: b("B", [0, 0, 0, 28], [0], "s1", [0], [0, 1, 0, 0], [0, 2, 0, 0, 0, 2], "42", NULL_LENGTH, [0, 1, 0, 1]),
    message: {
      kind: "Bind",
      portal: "",
      statement: "s1",
      paramFormats: [0],
      params: [Buffer.from("42"), null],
      resultFormats: [1],
    },
  },
  {
    name: "Describe",
    bytes: b("D", [0, 0, 0, 8], "S", "s1", [0]),
    message: { kind: "Describe", target: "S", name: "s1" },
  },
  {
    name: "Execute",
    bytes: b("E", [0, 0, 0, 9], [0], [0, 0, 0, 0]),
    message: { kind: "Execute", portal: "", maxRows: 0 },
  },
  { name: "Sync", bytes: b("S", [0, 0, 0, 4]), message: { kind: "Sync" }, encode: encodeSync },
  { name: "Flush", bytes: b("H", [0, 0, 0, 4]), message: { kind: "Flush" } },
  { name: "Close", bytes: b("C", [0, 0, 0, 8], "P", "p1", [0]), message: { kind: "Close", target: "P", name: "p1" } },
  { name: "Terminate", bytes: b("X", [0, 0, 0, 4]), message: { kind: "Terminate" }, encode: encodeTerminate },
  {
    name: "PasswordMessage",
    bytes: b("p", [0, 0, 0, 11], "secret", [0]),
    message: { kind: "AuthenticationResponse", data: b("secret", [0]) },
    encode: () => encodePasswordMessage("secret"),
  },
  {
    name: "SASLInitialResponse",
    bytes: b("p", [0, 0, 0, 26], "SCRAM-SHA-256", [0], [0, 0, 0, 4], "abcd"),
    message: { kind: "AuthenticationResponse", data: b("SCRAM-SHA-256", [0], [0, 0, 0, 4], "abcd") },
    encode: () => encodeSaslInitialResponse("SCRAM-SHA-256", Buffer.from("abcd")),
  },
  {
    name: "SASLInitialResponse without data",
    bytes: b("p", [0, 0, 0, 22], "SCRAM-SHA-256", [0], NULL_LENGTH),
    message: { kind: "AuthenticationResponse", data: b("SCRAM-SHA-256", [0], NULL_LENGTH) },
    encode: () => encodeSaslInitialResponse("SCRAM-SHA-256", null),
  },
  {
    name: "SASLResponse",
    bytes: b("p", [0, 0, 0, 10], "c=biws"),
    message: { kind: "AuthenticationResponse", data: b("c=biws") },
    encode: () => encodeSaslResponse(Buffer.from("c=biws")),
  },
  { name: "CopyData", bytes: b("d", [0, 0, 0, 8], "a\tb\n"), message: { kind: "CopyData", data: b("a\tb\n") } },
  { name: "CopyDone", bytes: b("c", [0, 0, 0, 4]), message: { kind: "CopyDone" } },
  { name: "CopyFail", bytes: b("f", [0, 0, 0, 9], "oops", [0]), message: { kind: "CopyFail", message: "oops" } },
  {
    name: "FunctionCall",
    bytes: b("F", [0, 0, 0, 19], [0, 0, 0x06, 0x3e], [0, 0], [0, 1, 0, 0, 0, 1], "x", [0, 0]),
    message: { kind: "FunctionCall", functionOid: 1598, argFormats: [], args: [b("x")], resultFormat: 0 },
  },
  { name: "unknown type", bytes: b("z", [0, 0, 0, 6, 1, 2]), message: { kind: "Unknown", type: "z", body: b([1, 2]) } },
];

const BACKEND_FIXTURES: Fixture<BackendMessage>[] = [
  {
    name: "AuthenticationOk",
    bytes: b("R", [0, 0, 0, 8, 0, 0, 0, 0]),
    message: { kind: "AuthenticationOk" },
    encode: encodeAuthenticationOk,
  },
  {
    name: "AuthenticationCleartextPassword",
    bytes: b("R", [0, 0, 0, 8, 0, 0, 0, 3]),
    message: { kind: "AuthenticationCleartextPassword" },
    encode: encodeAuthenticationCleartextPassword,
  },
  {
    name: "AuthenticationMD5Password",
    bytes: b("R", [0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]),
    message: { kind: "AuthenticationMD5Password", salt: b([1, 2, 3, 4]) },
  },
  {
    name: "AuthenticationSASL",
    bytes: b("R", [0, 0, 0, 42, 0, 0, 0, 10], "SCRAM-SHA-256-PLUS", [0], "SCRAM-SHA-256", [0, 0]),
    message: { kind: "AuthenticationSASL", mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"] },
    encode: () => encodeAuthenticationSasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
  },
  {
    name: "AuthenticationSASLContinue",
    bytes: b("R", [0, 0, 0, 13, 0, 0, 0, 11], "r=abc"),
    message: { kind: "AuthenticationSASLContinue", data: b("r=abc") },
    encode: () => encodeAuthenticationSaslContinue(b("r=abc")),
  },
  {
    name: "AuthenticationSASLFinal",
    bytes: b("R", [0, 0, 0, 13, 0, 0, 0, 12], "v=xyz"),
    message: { kind: "AuthenticationSASLFinal", data: b("v=xyz") },
    encode: () => encodeAuthenticationSaslFinal(b("v=xyz")),
  },
  {
    name: "AuthenticationGSS (kept raw)",
    bytes: b("R", [0, 0, 0, 8, 0, 0, 0, 7]),
    message: { kind: "AuthenticationOther", code: 7, data: b([]) },
  },
  {
    name: "ParameterStatus",
    bytes: b("S", [0, 0, 0, 24], "server_version", [0], "15.4", [0]),
    message: { kind: "ParameterStatus", name: "server_version", value: "15.4" },
    encode: () => encodeParameterStatus("server_version", "15.4"),
  },
  {
    name: "BackendKeyData",
    bytes: b("K", [0, 0, 0, 12, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]),
    message: { kind: "BackendKeyData", processId: 12345, secretKey: SECRET },
    encode: () => encodeBackendKeyData(12345, SECRET),
  },
  {
    name: "ReadyForQuery idle",
    bytes: b("Z", [0, 0, 0, 5], "I"),
    message: { kind: "ReadyForQuery", status: "I" },
    encode: () => encodeReadyForQuery("I"),
  },
  {
    name: "ReadyForQuery failed transaction",
    bytes: b("Z", [0, 0, 0, 5], "E"),
    message: { kind: "ReadyForQuery", status: "E" },
    encode: () => encodeReadyForQuery("E"),
  },
  {
    name: "RowDescription",
    bytes: b("T", [0, 0, 0, 28, 0, 1], "one", [0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    message: {
      kind: "RowDescription",
      fields: [{ name: "one", tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }],
    },
  },
  {
    name: "DataRow",
    bytes: b("D", [0, 0, 0, 15, 0, 2, 0, 0, 0, 1], "1", NULL_LENGTH),
    message: { kind: "DataRow", values: [b("1"), null] },
  },
  {
    name: "CommandComplete",
    bytes: b("C", [0, 0, 0, 13], "SELECT 1", [0]),
    message: { kind: "CommandComplete", tag: "SELECT 1" },
  },
  {
    name: "ErrorResponse",
    bytes: b("E", [0, 0, 0, 40], "SERROR", [0], "VERROR", [0], "C28P01", [0], "Mbad password", [0, 0]),
    message: { kind: "ErrorResponse", fields: { S: "ERROR", V: "ERROR", C: "28P01", M: "bad password" } },
    encode: () => encodeErrorResponse({ severity: "ERROR", code: "28P01", message: "bad password" }),
  },
  {
    name: "NoticeResponse",
    bytes: b("N", [0, 0, 0, 18], "SWARNING", [0], "Mhi", [0, 0]),
    message: { kind: "NoticeResponse", fields: { S: "WARNING", M: "hi" } },
  },
  { name: "ParseComplete", bytes: b("1", [0, 0, 0, 4]), message: { kind: "ParseComplete" } },
  { name: "BindComplete", bytes: b("2", [0, 0, 0, 4]), message: { kind: "BindComplete" } },
  { name: "CloseComplete", bytes: b("3", [0, 0, 0, 4]), message: { kind: "CloseComplete" } },
  { name: "NoData", bytes: b("n", [0, 0, 0, 4]), message: { kind: "NoData" } },
  { name: "PortalSuspended", bytes: b("s", [0, 0, 0, 4]), message: { kind: "PortalSuspended" } },
  { name: "EmptyQueryResponse", bytes: b("I", [0, 0, 0, 4]), message: { kind: "EmptyQueryResponse" } },
  {
    name: "ParameterDescription",
    bytes: b("t", [0, 0, 0, 14, 0, 2, 0, 0, 0, 23, 0, 0, 0, 25]),
    message: { kind: "ParameterDescription", typeOids: [23, 25] },
  },
  {
    name: "CopyInResponse",
    bytes: b("G", [0, 0, 0, 11, 0, 0, 2, 0, 0, 0, 0]),
    message: { kind: "CopyInResponse", format: 0, columnFormats: [0, 0] },
  },
  {
    name: "CopyOutResponse",
    bytes: b("H", [0, 0, 0, 9, 1, 0, 1, 0, 1]),
    message: { kind: "CopyOutResponse", format: 1, columnFormats: [1] },
  },
  {
    name: "CopyBothResponse",
    bytes: b("W", [0, 0, 0, 7, 0, 0, 0]),
    message: { kind: "CopyBothResponse", format: 0, columnFormats: [] },
  },
  { name: "CopyData", bytes: b("d", [0, 0, 0, 8], "1\t2\n"), message: { kind: "CopyData", data: b("1\t2\n") } },
  { name: "CopyDone", bytes: b("c", [0, 0, 0, 4]), message: { kind: "CopyDone" } },
  {
    name: "NotificationResponse",
    bytes: b("A", [0, 0, 0, 21, 0, 0, 0x30, 0x39], "chan", [0], "payload", [0]),
    message: { kind: "NotificationResponse", processId: 12345, channel: "chan", payload: "payload" },
  },
  {
    name: "NegotiateProtocolVersion",
    bytes: b("v", [0, 0, 0, 19, 0, 0, 0, 0, 0, 0, 0, 1], "_pq_.x", [0]),
    message: { kind: "NegotiateProtocolVersion", newestMinor: 0, unrecognizedOptions: ["_pq_.x"] },
  },
  {
    name: "FunctionCallResponse",
    bytes: b("V", [0, 0, 0, 9, 0, 0, 0, 1], "x"),
    message: { kind: "FunctionCallResponse", result: b("x") },
  },
  {
    name: "FunctionCallResponse NULL",
    bytes: b("V", [0, 0, 0, 8], NULL_LENGTH),
    message: { kind: "FunctionCallResponse", result: null },
  },
  { name: "unknown type", bytes: b("?", [0, 0, 0, 5, 9]), message: { kind: "Unknown", type: "?", body: b([9]) } },
];

const typedFrontend = () => createFrontendReader({ startupDone: true });

describe("frontend messages", () => {
  it.each(STARTUP_FIXTURES)("startup phase: $name", ({ bytes, message, encode }) => {
    expect(createFrontendReader().push(bytes)).toEqual([message]);
    if (encode) {
      expect(encode()).toEqual(bytes);
      expect(createFrontendReader().push(encode())).toEqual([message]);
    }
  });

  it.each(FRONTEND_FIXTURES)("$name", ({ bytes, message, encode }) => {
    expect(typedFrontend().push(bytes)).toEqual([message]);
    if (encode) {
      expect(encode()).toEqual(bytes);
      expect(typedFrontend().push(encode())).toEqual([message]);
    }
  });

  it("stays untyped after SSLRequest and turns typed after StartupMessage", () => {
    const reader = createFrontendReader();
    const stream = Buffer.concat([encodeSslRequest(), STARTUP_FIXTURES[3]!.bytes, b("Q", [0, 0, 0, 5, 0])]);
    expect(reader.push(stream).map((m) => m.kind)).toEqual(["SSLRequest", "StartupMessage", "Query"]);
  });

  it("decodes 'p' as password, SASL initial response or SASL response", () => {
    expect(decodePasswordMessage(b("secret", [0]))).toBe("secret");
    expect(decodeSaslInitialResponse(b("SCRAM-SHA-256", [0], [0, 0, 0, 4], "abcd"))).toEqual({
      mechanism: "SCRAM-SHA-256",
      response: b("abcd"),
    });
    expect(decodeSaslInitialResponse(b("SCRAM-SHA-256", [0], NULL_LENGTH))).toEqual({
      mechanism: "SCRAM-SHA-256",
      response: null,
    });
    expect(decodeSaslResponse(b("c=biws"))).toEqual(b("c=biws"));
    expectCode(() => decodePasswordMessage(b("secret")), "MISSING_NUL");
    expectCode(() => decodeSaslInitialResponse(b("SCRAM-SHA-256", [0], [0, 0, 0, 9], "ab")), "TRUNCATED");
  });
});

describe("backend messages", () => {
  it.each(BACKEND_FIXTURES)("$name", ({ bytes, message, encode }) => {
    expect(createBackendReader().push(bytes)).toEqual([message]);
    if (encode) {
      expect(encode()).toEqual(bytes);
      expect(createBackendReader().push(encode())).toEqual([message]);
    }
  });

  it("reads the unframed SSL answer byte when told to, then typed messages", () => {
    expect(encodeSslResponse(true)).toEqual(b("S"));
    expect(encodeSslResponse(false)).toEqual(b("N"));
    const reader = createBackendReader();
    reader.expectSslResponse();
    expect(reader.push(b("N", "Z", [0, 0, 0, 5], "I"))).toEqual([
      { kind: "SSLResponse", accepted: false },
      { kind: "ReadyForQuery", status: "I" },
    ]);
  });

  it("writes extra ErrorResponse fields after the four required ones", () => {
    const bytes = encodeErrorResponse({ severity: "FATAL", code: "42501", message: "no", extra: { D: "why" } });
    expect(bytes).toEqual(
      b("E", [0, 0, 0, 35], "SFATAL", [0], "VFATAL", [0], "C42501", [0], "Mno", [0], "Dwhy", [0, 0]),
    );
  });
});

describe("framing", () => {
  const backendStream = Buffer.concat(BACKEND_FIXTURES.map((f) => f.bytes));
  const backendMessages = BACKEND_FIXTURES.map((f) => f.message);
  // Untyped requests (SSL, GSSENC, cancel) keep the reader in the startup phase; StartupMessage ends it.
  const frontendFixtures = [...STARTUP_FIXTURES, ...FRONTEND_FIXTURES];
  const frontendStream = Buffer.concat(frontendFixtures.map((f) => f.bytes));
  const frontendMessages = frontendFixtures.map((f) => f.message);

  function readInChunks<M>(reader: { push: (c: Buffer) => M[] }, stream: Buffer, cuts: number[]): M[] {
    const points = [0, ...[...new Set(cuts)].sort((x, y) => x - y), stream.length];
    return points.slice(1).flatMap((end, i) => reader.push(stream.subarray(points[i], end)));
  }

  it("yields the same messages for a split at every byte offset", () => {
    for (let cut = 0; cut <= backendStream.length; cut++) {
      expect(readInChunks(createBackendReader(), backendStream, [cut])).toEqual(backendMessages);
    }
    for (let cut = 0; cut <= frontendStream.length; cut++) {
      expect(readInChunks(createFrontendReader(), frontendStream, [cut])).toEqual(frontendMessages);
    }
  });

  it("yields the same messages for any chunking (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: backendStream.length }), { maxLength: 40 }), (cuts) => {
        const reader = createBackendReader();
        expect(readInChunks(reader, backendStream, cuts)).toEqual(backendMessages);
        expect(reader.buffered()).toBe(0);
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.nat({ max: frontendStream.length }), { maxLength: 40 }), (cuts) => {
        expect(readInChunks(createFrontendReader(), frontendStream, cuts)).toEqual(frontendMessages);
      }),
    );
  });

  it("feeds byte by byte", () => {
    const reader = createBackendReader();
    const out: BackendMessage[] = [];
    for (const byte of backendStream) out.push(...reader.push(Buffer.of(byte)));
    expect(out).toEqual(backendMessages);
  });
});

function expectCode(run: () => unknown, code: PgWireErrorCode): void {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(PgWireError);
    expect((error as PgWireError).code).toBe(code);
    return;
  }
  throw new Error(`expected PgWireError ${code}, nothing was thrown`);
}

describe("malformed input", () => {
  const cases: { name: string; side: "startup" | "frontend" | "backend"; bytes: Buffer; code: PgWireErrorCode }[] = [
    { name: "typed length below 4", side: "frontend", bytes: b("Q", [0, 0, 0, 3]), code: "LENGTH_TOO_SMALL" },
    { name: "negative length", side: "backend", bytes: b("D", [0xff, 0xff, 0xff, 0xfe]), code: "LENGTH_TOO_SMALL" },
    { name: "length above 1 GiB", side: "backend", bytes: b("D", [0x40, 0, 0, 1]), code: "LENGTH_TOO_LARGE" },
    { name: "startup length below 8", side: "startup", bytes: b([0, 0, 0, 4]), code: "LENGTH_TOO_SMALL" },
    { name: "startup above 10 000", side: "startup", bytes: b([0, 0, 0x27, 0x11]), code: "LENGTH_TOO_LARGE" },
    { name: "unknown startup code", side: "startup", bytes: b([0, 0, 0, 8, 0, 0, 0, 1]), code: "UNKNOWN_STARTUP_CODE" },
    {
      name: "startup without final NUL",
      side: "startup",
      bytes: b([0, 0, 0, 14, 0, 3, 0, 0], "user", [0], "x"),
      code: "MISSING_NUL",
    },
    {
      name: "CancelRequest without a secret key",
      side: "startup",
      bytes: b([0, 0, 0, 12, 4, 210, 22, 46, 0, 0, 0, 1]),
      code: "BAD_VALUE",
    },
    {
      name: "CancelRequest with half a process id",
      side: "startup",
      bytes: b([0, 0, 0, 10, 4, 210, 22, 46, 0, 0]),
      code: "TRUNCATED",
    },
    { name: "Query without NUL", side: "frontend", bytes: b("Q", [0, 0, 0, 7], "abc"), code: "MISSING_NUL" },
    {
      name: "Parse negative count",
      side: "frontend",
      bytes: b("P", [0, 0, 0, 8, 0, 0, 0xff, 0xff]),
      code: "BAD_COUNT",
    },
    {
      name: "Parse count too high",
      side: "frontend",
      bytes: b("P", [0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 23]),
      code: "TRUNCATED",
    },
    { name: "Describe bad target", side: "frontend", bytes: b("D", [0, 0, 0, 6], "X", [0]), code: "BAD_VALUE" },
    { name: "Sync with a body", side: "frontend", bytes: b("S", [0, 0, 0, 5, 0]), code: "TRAILING_BYTES" },
    { name: "Authentication truncated", side: "backend", bytes: b("R", [0, 0, 0, 6, 0, 0]), code: "TRUNCATED" },
    { name: "MD5 salt short", side: "backend", bytes: b("R", [0, 0, 0, 10, 0, 0, 0, 5, 1, 2]), code: "TRUNCATED" },
    {
      name: "SASL list unterminated",
      side: "backend",
      bytes: b("R", [0, 0, 0, 12, 0, 0, 0, 10], "SCRA"),
      code: "MISSING_NUL",
    },
    {
      name: "DataRow length -2",
      side: "backend",
      bytes: b("D", [0, 0, 0, 10, 0, 1, 0xff, 0xff, 0xff, 0xfe]),
      code: "BAD_COUNT",
    },
    {
      name: "DataRow value overrun",
      side: "backend",
      bytes: b("D", [0, 0, 0, 12, 0, 1, 0, 0, 0, 9, 1, 2]),
      code: "TRUNCATED",
    },
    { name: "DataRow negative count", side: "backend", bytes: b("D", [0, 0, 0, 6, 0x80, 0]), code: "BAD_COUNT" },
    {
      name: "RowDescription truncated",
      side: "backend",
      bytes: b("T", [0, 0, 0, 10, 0, 1], "one", [0]),
      code: "TRUNCATED",
    },
    { name: "ReadyForQuery bad status", side: "backend", bytes: b("Z", [0, 0, 0, 5], "Q"), code: "BAD_VALUE" },
    {
      name: "ErrorResponse unterminated",
      side: "backend",
      bytes: b("E", [0, 0, 0, 11], "SERROR", [0]),
      code: "TRUNCATED",
    },
    { name: "ParameterStatus one string", side: "backend", bytes: b("S", [0, 0, 0, 6], "a", [0]), code: "MISSING_NUL" },
    {
      name: "NegotiateProtocolVersion bad count",
      side: "backend",
      bytes: b("v", [0, 0, 0, 12, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
      code: "BAD_COUNT",
    },
  ];

  const readerFor = (side: "startup" | "frontend" | "backend") =>
    side === "backend" ? createBackendReader() : createFrontendReader({ startupDone: side === "frontend" });

  it.each(cases)("$name → $code", ({ side, bytes, code }) => {
    const reader = readerFor(side);
    expectCode(() => reader.push(bytes), code);
    expectCode(() => reader.push(b("S", [0, 0, 0, 4])), "READER_FAILED");
  });

  it("refuses an oversized length as soon as the header arrives, with a configurable limit", () => {
    const reader = createBackendReader({ maxMessageLength: 100 });
    expect(reader.push(b("D", [0, 0, 0, 100]))).toEqual([]);
    expectCode(() => createBackendReader({ maxMessageLength: 100 }).push(b("D", [0, 0, 0, 101])), "LENGTH_TOO_LARGE");
    expectCode(() => createFrontendReader({ maxStartupLength: 20 }).push(b([0, 0, 0, 21])), "LENGTH_TOO_LARGE");
  });

  it("rejects a bad SSL answer byte", () => {
    const reader = createBackendReader();
    reader.expectSslResponse();
    expectCode(() => reader.push(b("X")), "BAD_VALUE");
  });

  it("never crashes on arbitrary bytes: messages or a PgWireError", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.constantFrom("startup", "frontend", "backend"),
        (bytes, side) => {
          try {
            readerFor(side as "startup" | "frontend" | "backend").push(Buffer.from(bytes));
          } catch (error) {
            expect(error).toBeInstanceOf(PgWireError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("SCRAM-SHA-256 client", () => {
  // RFC 7677 section 3.
  const clientNonce = "rOprNGfwEbeRWgbNEkqO";
  const serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

  // RFC 7677 section 3 (also checked against ongres/scram's RfcExampleSha256 constants).
  it("matches the RFC 7677 test vector", () => {
    const first = scramClientFirst("user", clientNonce);
    expect(first.message).toBe("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    const parsed = parseScramServerFirst(serverFirst, clientNonce);
    expect(parsed.iterations).toBe(4096);
    const final = scramClientFinal("pencil", first, parsed);
    expect(final.message).toBe(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    );
    expect(() =>
      verifyScramServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", final.expectedServerSignature),
    ).not.toThrow();
  });

  it("refuses a wrong server signature, a server error, a foreign nonce and bad parameters", () => {
    const first = scramClientFirst("user", clientNonce);
    const final = scramClientFinal("pencil", first, parseScramServerFirst(serverFirst, clientNonce));
    expectCode(
      () => verifyScramServerFinal("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", final.expectedServerSignature),
      "SCRAM_INVALID",
    );
    expectCode(() => verifyScramServerFinal("e=invalid-proof", final.expectedServerSignature), "SCRAM_INVALID");
    expectCode(() => verifyScramServerFinal("x=1", final.expectedServerSignature), "SCRAM_INVALID");
    expectCode(() => parseScramServerFirst("r=someoneelse,s=QUJD,i=4096", clientNonce), "SCRAM_INVALID");
    expectCode(() => parseScramServerFirst(`r=${clientNonce},s=QUJD,i=4096`, clientNonce), "SCRAM_INVALID");
    expectCode(() => parseScramServerFirst(`r=${clientNonce}x,s=QUJD,i=0`, clientNonce), "SCRAM_INVALID");
    expectCode(() => parseScramServerFirst(`r=${clientNonce}x,s=!!,i=1`, clientNonce), "SCRAM_INVALID");
    expectCode(() => parseScramServerFirst(`m=ext,r=${clientNonce}x,s=QUJD,i=1`, clientNonce), "SCRAM_INVALID");
    expectCode(() => scramClientFirst("user", "has,comma"), "SCRAM_INVALID");
  });

  it("binds to the channel: p=tls-server-end-point with the certificate hash in c=", () => {
    const hash = Buffer.alloc(32, 7);
    const first = scramClientFirst("", clientNonce, { kind: "tls-server-end-point", certificateHash: hash });
    expect(first.mechanism).toBe("SCRAM-SHA-256-PLUS");
    expect(first.message).toBe(`p=tls-server-end-point,,n=,r=${clientNonce}`);
    const final = scramClientFinal("pencil", first, parseScramServerFirst(serverFirst, clientNonce));
    const c = /^c=([^,]+),/.exec(final.message)?.[1] ?? "";
    expect(Buffer.from(c, "base64")).toEqual(Buffer.concat([Buffer.from("p=tls-server-end-point,,"), hash]));
    // Over TLS without binding the client says it could have bound ("y"), so a server that offers it sees a downgrade.
    const unbound = scramClientFirst("", clientNonce, { kind: "unused" });
    expect(unbound.message.startsWith("y,,")).toBe(true);
    expect(unbound.mechanism).toBe("SCRAM-SHA-256");
  });

  it("tls-server-end-point hashes the certificate with its signature's hash (RFC 5929)", () => {
    // A minimal DER skeleton: Certificate { tbs { }, AlgorithmIdentifier { ecdsa-with-SHA384 }, signature }.
    const oid = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
    const body = Buffer.concat([Buffer.from([0x30, 0x00, 0x30, oid.length]), oid, Buffer.from([0x03, 0x01, 0x00])]);
    const cert = Buffer.concat([Buffer.from([0x30, body.length]), body]);
    expect(tlsServerEndPoint(cert)).toEqual(createHash("sha384").update(cert).digest());
    expectCode(() => tlsServerEndPoint(Buffer.from([0x31, 0x00])), "SCRAM_INVALID");
  });

  it("escapes = and , in the user name", () => {
    expect(scramClientFirst("a=b,c", "nonce").bare).toBe("n=a=3Db=2Cc,r=nonce");
  });
});

describe("against a real PostgreSQL server (127.0.0.1:5432, trust)", () => {
  it("reads startup and a simple query as the server sends them", async () => {
    const socket = connect({ host: "127.0.0.1", port: 5432 });
    const reader = createBackendReader();
    const received: BackendMessage[] = [];
    let waiter: (() => void) | null = null;
    let failure: unknown = null;
    socket.on("data", (chunk) => {
      try {
        received.push(...reader.push(chunk));
      } catch (error) {
        failure = error;
      }
      waiter?.();
    });
    socket.on("error", (error) => {
      failure = error;
      waiter?.();
    });
    const untilReady = async (): Promise<BackendMessage[]> => {
      while (!received.some((m) => m.kind === "ReadyForQuery")) {
        if (failure !== null) throw failure;
        await new Promise<void>((resolve) => (waiter = resolve));
      }
      return received.splice(0);
    };
    try {
      await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      socket.write(encodeStartupMessage({ user: "postgres", database: "postgres" }));
      const startup = await untilReady();
      expect(startup[0]).toEqual({ kind: "AuthenticationOk" });
      const serverVersion = startup.find((m) => m.kind === "ParameterStatus" && m.name === "server_version");
      expect(serverVersion).toMatchObject({ value: expect.stringMatching(/^\d+/) });
      const key = startup.find((m) => m.kind === "BackendKeyData");
      expect(key).toMatchObject({ processId: expect.any(Number) });
      expect(startup.at(-1)).toEqual({ kind: "ReadyForQuery", status: "I" });

      socket.write(encodeQuery("select 1 as one"));
      const result = await untilReady();
      expect(result).toEqual([
        {
          kind: "RowDescription",
          fields: [{ name: "one", tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }],
        },
        { kind: "DataRow", values: [b("1")] },
        { kind: "CommandComplete", tag: "SELECT 1" },
        { kind: "ReadyForQuery", status: "I" },
      ]);
      socket.end(encodeTerminate());
      await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    } finally {
      socket.destroy();
    }
  });
});

// Found by `npm run fuzz` (fuzz/README.md); the inputs are also in fuzz/corpus/.
describe("fuzz findings", () => {
  const clientNonce = "rOprNGfwEbeRWgbNEkqO";

  it("refuses a server's iteration count the client cannot compute (RangeError from pbkdf2, or hours of work)", () => {
    const first = scramClientFirst("", clientNonce);
    for (const iterations of ["9999999999", "2147483647", "1000001"]) {
      expectCode(() => parseScramServerFirst(`r=${clientNonce}x,s=QUJD,i=${iterations}`, clientNonce), "SCRAM_INVALID");
    }
    const parsed = parseScramServerFirst(`r=${clientNonce}x,s=QUJD,i=1000000`, clientNonce);
    expect(parsed.iterations).toBe(1_000_000);
    expect(() => scramClientFinal("pencil", first, { ...parsed, iterations: 1 })).not.toThrow();
  });

  it("refuses to encode what would be read back as another message", () => {
    // U+0100 was written as its low byte, the NUL that ends the field list: the client read TRAILING_BYTES.
    expectCode(
      () => encodeErrorResponse({ severity: "ERROR", code: "XX000", message: "m", extra: { "\u0100": "x" } }),
      "BAD_VALUE",
    );
    expect(
      parseBackendMessage(
        "E",
        encodeErrorResponse({ severity: "ERROR", code: "XX000", message: "m", extra: { "\u00ff": "x" } }).subarray(5),
      ),
    ).toMatchObject({
      fields: { "\u00ff": "x" },
    });
    // An empty name is the terminator of both lists.
    expectCode(() => encodeAuthenticationSasl(["SCRAM-SHA-256", ""]), "BAD_VALUE");
    expectCode(() => encodeStartupMessage({ "": "x", user: "alice" }), "BAD_VALUE");
  });
});
