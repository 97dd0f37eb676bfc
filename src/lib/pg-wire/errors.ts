/** Why a byte stream or a SCRAM exchange was refused. Stable codes so a proxy can map them. */
export type PgWireErrorCode =
  | "LENGTH_TOO_SMALL" // a length word below the minimum for its message
  | "LENGTH_TOO_LARGE" // a length word above the configured maximum
  | "TRUNCATED" // the body ended before a field it promised
  | "MISSING_NUL" // a string field without its terminating NUL
  | "BAD_COUNT" // a negative or impossible element count
  | "BAD_VALUE" // a field whose value the protocol does not allow
  | "TRAILING_BYTES" // the body is longer than its fields
  | "UNKNOWN_STARTUP_CODE" // an untyped first message with an unknown request code
  | "READER_FAILED" // push() after the reader already refused the stream
  | "SCRAM_INVALID"; // a malformed or dishonest SCRAM message

export class PgWireError extends Error {
  override readonly name = "PgWireError";
  constructor(
    readonly code: PgWireErrorCode,
    message: string,
  ) {
    super(message);
  }
}
