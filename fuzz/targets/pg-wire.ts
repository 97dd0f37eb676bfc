/**
 * The PostgreSQL wire codec in both directions. Input layout: byte 0 is flags (bit 0: the
 * frontend reader starts after startup / the backend reader first expects the SSL answer byte),
 * byte 1 the chunk size for the chunked pass, the rest the byte stream.
 * Properties: only PgWireError escapes; reading in chunks gives what reading at once gives
 * (same messages, or the same error code); a refused reader refuses everything after; encoded
 * messages decode to what was encoded.
 */
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import {
  PgWireError,
  createBackendReader,
  createFrontendReader,
  decodePasswordMessage,
  decodeSaslInitialResponse,
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
  type BackendMessage,
  type FrontendMessage,
  type MessageReader,
} from "../../src/lib/pg-wire.js";
import { FuzzFinding, describe, expect, feature, type FuzzTarget, type ValidInput } from "../harness.js";

type Outcome<M> = { messages: M[]; buffered: number } | { code: string };

function readAll<M>(reader: MessageReader<M>, stream: Buffer, chunkSize: number): Outcome<M> {
  const messages: M[] = [];
  try {
    for (let at = 0; at < stream.length; at += chunkSize) {
      messages.push(...reader.push(stream.subarray(at, at + chunkSize)));
    }
    return { messages, buffered: reader.buffered() };
  } catch (error) {
    if (!(error instanceof PgWireError)) throw new FuzzFinding(`reader threw ${describe(error)}`);
    // A refused stream stays refused.
    try {
      reader.push(Buffer.of(0));
    } catch (again) {
      expect(again instanceof PgWireError && again.code === "READER_FAILED", `after a refusal: ${describe(again)}`);
      return { code: error.code };
    }
    throw new FuzzFinding("the reader accepted bytes after refusing the stream");
  }
}

function checkStream<M>(make: () => MessageReader<M>, input: Buffer): void {
  const chunkSize = 1 + ((input[1] ?? 0) % 64);
  const stream = input.subarray(2);
  const whole = readAll(make(), stream, Math.max(1, stream.length));
  const chunked = readAll(make(), stream, chunkSize);
  noteFeatures(whole);
  if ("code" in whole) {
    expect(
      "code" in chunked && chunked.code === whole.code,
      `chunked read differs: ${JSON.stringify(chunked)} vs ${whole.code}`,
    );
  } else {
    expect(isDeepStrictEqual(whole, chunked), `chunked read (${chunkSize}) differs from the whole read`);
  }
}

/** Which message kind followed which, and how the stream ended. */
function noteFeatures<M>(outcome: Outcome<M>): void {
  if ("code" in outcome) return feature(`refused:${outcome.code}`);
  let previous = "start";
  for (const message of outcome.messages) {
    const kind = String((message as { kind?: unknown }).kind);
    feature(`${previous}>${kind}`);
    previous = kind;
  }
  feature(`${previous}>${outcome.buffered > 0 ? "partial" : "end"}`);
}

function frontendReader(input: Buffer) {
  return () => createFrontendReader({ startupDone: ((input[0] ?? 0) & 1) === 1, maxMessageLength: 1 << 20 });
}

function backendReader(input: Buffer) {
  return () => {
    const reader = createBackendReader({ maxMessageLength: 1 << 20 });
    if (((input[0] ?? 0) & 1) === 1) reader.expectSslResponse();
    return reader;
  };
}

/** Text without NUL (the protocol's strings cannot hold one), in valid Unicode so UTF-8 round-trips. */
const text = fc.string({ unit: "grapheme", maxLength: 40 }).filter((s) => !s.includes("\0"));
const name = text.filter((s) => s.length > 0);
/** Plain objects (fast-check also makes null-prototype ones, which no decoder returns). */
const dictionary = (keys: fc.Arbitrary<string>, maxKeys: number) =>
  fc.dictionary(keys, text, { maxKeys, noNullPrototype: true });

/** The encoder's output, or null when it refuses (PgWireError) a value it cannot write faithfully. */
function attempt<T>(encode: () => T): T | null {
  try {
    return encode();
  } catch (error) {
    if (error instanceof PgWireError) return null;
    throw error;
  }
}
const present = <T>(value: T | null): value is T => value !== null;
const bytes = (max = 64) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));

/** [encoded bytes, what the reader must produce] */
type Pair<M> = [Buffer, M];

function validStream<M>(
  flags: number,
  first: fc.Arbitrary<Pair<M>[]>,
  rest: fc.Arbitrary<Pair<M>>,
  make: (input: Buffer) => () => MessageReader<M>,
  decode: (message: M, expected: M) => boolean = isDeepStrictEqual,
  maxRest = 6,
): fc.Arbitrary<ValidInput> {
  return fc
    .tuple(first, fc.array(rest, { maxLength: maxRest }), fc.integer({ min: 0, max: 255 }))
    .map(([head, tail, chunk]) => {
      const pairs = [...head, ...tail];
      const bytes = Buffer.concat([Buffer.of(flags, chunk), ...pairs.map(([b]) => b)]);
      return {
        bytes,
        verify: () => {
          const outcome = readAll(make(bytes)(), bytes.subarray(2), 1 + (chunk % 64));
          expect(!("code" in outcome), `a valid stream was refused: ${JSON.stringify(outcome)}`);
          if ("code" in outcome) return;
          expect(outcome.buffered === 0, "bytes left over after a valid stream");
          expect(outcome.messages.length === pairs.length, "message count differs");
          pairs.forEach(([, expected], i) => {
            const got = outcome.messages[i] as M;
            expect(decode(got, expected), `round trip: ${JSON.stringify(got)} vs ${JSON.stringify(expected)}`);
          });
        },
      };
    });
}

// --- frontend ----------------------------------------------------------------------------------

const startupMessage = (parameters: Record<string, string>): Pair<FrontendMessage> | null => {
  const encoded = attempt(() => encodeStartupMessage(parameters));
  return encoded && [encoded, { kind: "StartupMessage", protocolVersion: 196608, parameters }];
};

const startup: fc.Arbitrary<Pair<FrontendMessage>[]> = fc.oneof(
  dictionary(text, 5)
    .map(startupMessage)
    .filter(present)
    .map((pair) => [pair]),
  dictionary(name, 3).map((parameters): Pair<FrontendMessage>[] => [
    [encodeSslRequest(), { kind: "SSLRequest" }],
    [encodeStartupMessage(parameters), { kind: "StartupMessage", protocolVersion: 196608, parameters }],
  ]),
);

/** A CancelRequest is the whole conversation: nothing follows it. */
const cancel: fc.Arbitrary<Pair<FrontendMessage>[]> = fc
  .tuple(
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    bytes(256).filter((b) => b.length >= 4),
  )
  .map(([processId, secretKey]) => [
    [encodeCancelRequest(processId, secretKey), { kind: "CancelRequest", processId, secretKey }],
  ]);

type FrontendCheck =
  | FrontendMessage
  | { kind: "password"; password: string }
  | { kind: "sasl"; mechanism: string; response: Buffer | null };

const frontendTyped: fc.Arbitrary<Pair<FrontendCheck>> = fc.oneof(
  text.map((sql): Pair<FrontendCheck> => [encodeQuery(sql), { kind: "Query", sql }]),
  text.map((password): Pair<FrontendCheck> => [encodePasswordMessage(password), { kind: "password", password }]),
  fc
    .tuple(name, fc.option(bytes()))
    .map(([mechanism, response]): Pair<FrontendCheck> => [
      encodeSaslInitialResponse(mechanism, response),
      { kind: "sasl", mechanism, response },
    ]),
  bytes().map((data): Pair<FrontendCheck> => [encodeSaslResponse(data), { kind: "AuthenticationResponse", data }]),
  fc.constant<Pair<FrontendCheck>>([encodeSync(), { kind: "Sync" }]),
  fc.constant<Pair<FrontendCheck>>([encodeTerminate(), { kind: "Terminate" }]),
);

function frontendMatches(got: FrontendCheck, expected: FrontendCheck): boolean {
  if (got.kind === "AuthenticationResponse" && expected.kind === "password") {
    return decodePasswordMessage(got.data) === expected.password;
  }
  if (got.kind === "AuthenticationResponse" && expected.kind === "sasl") {
    return isDeepStrictEqual(decodeSaslInitialResponse(got.data), {
      mechanism: expected.mechanism,
      response: expected.response,
    });
  }
  return isDeepStrictEqual(got, expected);
}

export const pgFrontend: FuzzTarget = {
  name: "pg-frontend",
  check: (input) => checkStream(frontendReader(input), input),
  valid: fc.oneof(
    validStream<FrontendCheck>(
      0,
      cancel,
      fc.constant<Pair<FrontendCheck>>([encodeSync(), { kind: "Sync" }]),
      frontendReader as (input: Buffer) => () => MessageReader<FrontendCheck>,
      frontendMatches,
      0,
    ),
    validStream<FrontendCheck>(
      0,
      startup,
      frontendTyped,
      frontendReader as (input: Buffer) => () => MessageReader<FrontendCheck>,
      frontendMatches,
    ),
    validStream<FrontendCheck>(
      1,
      fc.constant([]),
      frontendTyped,
      frontendReader as (input: Buffer) => () => MessageReader<FrontendCheck>,
      frontendMatches,
    ),
  ),
};

// --- backend -----------------------------------------------------------------------------------

const status = fc.constantFrom("I" as const, "T" as const, "E" as const);
/** One-letter field codes, including ones beyond Latin-1 (an encoder must refuse or keep them). */
const fieldCode = fc.integer({ min: 1, max: 0x2ff }).map((c) => String.fromCharCode(c));

const backendTyped: fc.Arbitrary<Pair<BackendMessage>> = fc.oneof(
  fc.constant<Pair<BackendMessage>>([encodeAuthenticationOk(), { kind: "AuthenticationOk" }]),
  fc.constant<Pair<BackendMessage>>([
    encodeAuthenticationCleartextPassword(),
    { kind: "AuthenticationCleartextPassword" },
  ]),
  fc
    .array(text, { maxLength: 3 })
    .map((mechanisms): Pair<BackendMessage> | null => {
      const encoded = attempt(() => encodeAuthenticationSasl(mechanisms));
      return encoded && [encoded, { kind: "AuthenticationSASL", mechanisms }];
    })
    .filter(present),
  bytes().map((data): Pair<BackendMessage> => [
    encodeAuthenticationSaslContinue(data),
    { kind: "AuthenticationSASLContinue", data },
  ]),
  bytes().map((data): Pair<BackendMessage> => [
    encodeAuthenticationSaslFinal(data),
    { kind: "AuthenticationSASLFinal", data },
  ]),
  fc
    .tuple(text, text)
    .map(([n, value]): Pair<BackendMessage> => [
      encodeParameterStatus(n, value),
      { kind: "ParameterStatus", name: n, value },
    ]),
  fc
    .tuple(
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      bytes(256).filter((b) => b.length >= 4),
    )
    .map(([processId, secretKey]): Pair<BackendMessage> => [
      encodeBackendKeyData(processId, secretKey),
      { kind: "BackendKeyData", processId, secretKey },
    ]),
  status.map((s): Pair<BackendMessage> => [encodeReadyForQuery(s), { kind: "ReadyForQuery", status: s }]),
  fc
    .tuple(fc.constantFrom("ERROR" as const, "FATAL" as const, "PANIC" as const), text, text, dictionary(fieldCode, 3))
    .map(([severity, code, message, extra]): Pair<BackendMessage> | null => {
      const encoded = attempt(() => encodeErrorResponse({ severity, code, message, extra }));
      if (encoded === null) return null;
      const fields = Object.fromEntries([
        ["S", severity],
        ["V", severity],
        ["C", code],
        ["M", message],
        ...Object.entries(extra),
      ]);
      return [encoded, { kind: "ErrorResponse", fields }];
    })
    .filter(present),
);

export const pgBackend: FuzzTarget = {
  name: "pg-backend",
  check: (input) => checkStream(backendReader(input), input),
  valid: fc.oneof(
    validStream<BackendMessage>(0, fc.constant([]), backendTyped, backendReader),
    validStream<BackendMessage>(
      1,
      fc
        .boolean()
        .map((accepted): Pair<BackendMessage>[] => [[encodeSslResponse(accepted), { kind: "SSLResponse", accepted }]]),
      backendTyped,
      backendReader,
    ),
  ),
};
