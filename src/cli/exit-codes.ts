/**
 * Exit codes of the `stint` CLI and the one mapping from error codes to them.
 * docs/cli.md documents the same table; scripts rely on it, so the numbers never change meaning.
 */
export const EXIT_CODES = {
  /** The command did what was asked. */
  ok: 0,
  /** Something unexpected: a server fault, a malformed answer, a bug. */
  unexpected: 1,
  /** Usage or bad input: unknown flag, missing argument, invalid value, configuration problem. */
  usage: 2,
  /** `stint audit verify` found the audit chain broken. */
  auditBroken: 3,
  /** Not signed in, sign-in failed, or the session expired and could not be refreshed. */
  unauthenticated: 4,
  /** Signed in, but not allowed to do that. */
  forbidden: 5,
  /** The thing named does not exist. */
  notFound: 6,
  /** It already exists, or conflicts with the current state. */
  conflict: 7,
  /**
   * The server could not be reached (refused, DNS, timeout) or is not ready; or a target could not be;
   * or the vault is sealed or has the wrong key.
   */
  unreachable: 8,
  /** `stint check`: answered, and the answer is no (the principal does not hold the role right now). */
  notHeld: 9,
  /** Interrupted with Ctrl-C at a prompt (128 + SIGINT). */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];

/** Codes the CLI itself raises, next to the server's registry in src/lib/errors.ts. */
export type LocalErrorCode =
  | "USAGE"
  | "CONFIG_INVALID"
  | "SERVER_UNREACHABLE"
  | "BAD_RESPONSE"
  | "PROXY_UNVERIFIABLE"
  | "RESPONSE_TOO_LARGE"
  | "AUDIT_CHAIN_BROKEN"
  | "INTERRUPTED"
  | "UNEXPECTED";

const EXIT_BY_CODE: Readonly<Record<string, ExitCode>> = {
  // CLI-local codes
  USAGE: EXIT_CODES.usage,
  CONFIG_INVALID: EXIT_CODES.usage,
  SERVER_UNREACHABLE: EXIT_CODES.unreachable,
  BAD_RESPONSE: EXIT_CODES.unexpected,
  PROXY_UNVERIFIABLE: EXIT_CODES.unexpected,
  RESPONSE_TOO_LARGE: EXIT_CODES.unexpected,
  AUDIT_CHAIN_BROKEN: EXIT_CODES.auditBroken,
  INTERRUPTED: EXIT_CODES.interrupted,
  UNEXPECTED: EXIT_CODES.unexpected,
  // bad input, as judged by the server
  VALIDATION_FAILED: EXIT_CODES.usage,
  BAD_JSON: EXIT_CODES.usage,
  BAD_ENCODING: EXIT_CODES.usage,
  UNSUPPORTED_MEDIA_TYPE: EXIT_CODES.usage,
  PAYLOAD_TOO_LARGE: EXIT_CODES.usage,
  WEAK_PASSWORD: EXIT_CODES.usage,
  // authentication
  UNAUTHENTICATED: EXIT_CODES.unauthenticated,
  TOKEN_EXPIRED: EXIT_CODES.unauthenticated,
  INVALID_CREDENTIALS: EXIT_CODES.unauthenticated,
  MFA_REQUIRED: EXIT_CODES.unauthenticated,
  MFA_INVALID: EXIT_CODES.unauthenticated,
  SETUP_CODE_INVALID: EXIT_CODES.unauthenticated,
  INVITE_INVALID: EXIT_CODES.unauthenticated,
  ACCOUNT_LOCKED: EXIT_CODES.unauthenticated,
  ACCOUNT_DISABLED: EXIT_CODES.unauthenticated,
  // authorization, existence, state
  FORBIDDEN: EXIT_CODES.forbidden,
  NOT_FOUND: EXIT_CODES.notFound,
  ROUTE_NOT_FOUND: EXIT_CODES.notFound,
  ALREADY_EXISTS: EXIT_CODES.conflict,
  CONFLICT: EXIT_CODES.conflict,
  SETUP_ALREADY_DONE: EXIT_CODES.conflict,
  PASSWORD_ALREADY_SET: EXIT_CODES.conflict,
  ADMIN_PASSWORDS_REFUSED: EXIT_CODES.forbidden,
  MFA_ALREADY_ENROLLED: EXIT_CODES.conflict,
  MFA_NOT_STARTED: EXIT_CODES.conflict,
  // activation requests
  NOT_ELIGIBLE: EXIT_CODES.forbidden,
  SELF_APPROVAL: EXIT_CODES.forbidden,
  NOT_AN_APPROVER: EXIT_CODES.forbidden,
  OUTSIDE_WINDOW: EXIT_CODES.forbidden,
  REQUEST_ALREADY_OPEN: EXIT_CODES.conflict,
  REQUEST_NOT_PENDING: EXIT_CODES.conflict,
  ALREADY_DECIDED: EXIT_CODES.conflict,
  DISTINCT_APPROVERS_REQUIRED: EXIT_CODES.forbidden,
  REQUESTER_NOT_ELIGIBLE: EXIT_CODES.conflict,
  REQUEST_EXPIRED: EXIT_CODES.conflict,
  START_IN_PAST: EXIT_CODES.usage,
  START_TOO_FAR: EXIT_CODES.usage,
  START_NOT_ALLOWED: EXIT_CODES.usage,
  SELF_GRANT: EXIT_CODES.forbidden,
  // four-eyes change requests
  CHANGE_REQUEST_SELF_APPROVAL: EXIT_CODES.forbidden,
  FOUR_EYES_REQUIRED: EXIT_CODES.forbidden,
  CHANGE_REQUEST_NOT_PENDING: EXIT_CODES.conflict,
  CHANGE_REQUEST_EXPIRED: EXIT_CODES.conflict,
  CHANGE_REQUEST_STALE: EXIT_CODES.conflict,
  EXTENSION_LIMIT_REACHED: EXIT_CODES.conflict,
  NOT_ACTIVE: EXIT_CODES.conflict,
  // the vault
  CHECKED_OUT: EXIT_CODES.conflict,
  BREAK_GLASS_ONLY: EXIT_CODES.forbidden,
  SEALED: EXIT_CODES.unreachable,
  VAULT_KEY_INVALID: EXIT_CODES.unreachable,
  INTEGRITY_FAILED: EXIT_CODES.unexpected,
  DURATION_TOO_LONG: EXIT_CODES.usage,
  DURATION_INVALID: EXIT_CODES.usage,
  JUSTIFICATION_INVALID: EXIT_CODES.usage,
  MFA_STEP_UP_REQUIRED: EXIT_CODES.unauthenticated,
  // availability and faults
  UNAVAILABLE: EXIT_CODES.unreachable,
  STORE_UNAVAILABLE: EXIT_CODES.unreachable,
  TARGET_UNAVAILABLE: EXIT_CODES.unreachable,
  RATE_LIMITED: EXIT_CODES.unexpected,
  METHOD_NOT_ALLOWED: EXIT_CODES.unexpected,
  AUDIT_WRITE_FAILED: EXIT_CODES.unexpected,
  INTERNAL: EXIT_CODES.unexpected,
};

/**
 * The exit code for an error code. A code this CLI does not know yet (a newer server) falls back
 * to its HTTP status class, so an old CLI still exits sensibly.
 */
export function exitCodeFor(code: string, status?: number): ExitCode {
  const known = EXIT_BY_CODE[code];
  if (known !== undefined) return known;
  if (status === undefined) return EXIT_CODES.unexpected;
  if (status === 401) return EXIT_CODES.unauthenticated;
  if (status === 403) return EXIT_CODES.forbidden;
  if (status === 404) return EXIT_CODES.notFound;
  if (status === 409) return EXIT_CODES.conflict;
  if (status === 502 || status === 503 || status === 504) return EXIT_CODES.unreachable;
  if (status >= 400 && status < 500 && status !== 429) return EXIT_CODES.usage;
  return EXIT_CODES.unexpected;
}

/** An error the CLI reports as `error: CODE: message` and turns into an exit code. */
export class CliError extends Error {
  readonly code: string;
  readonly exitCode: ExitCode;
  readonly status: number | undefined;
  readonly details: Record<string, unknown> | undefined;
  /** The command already told the user (e.g. `BROKEN at seq …`); only the exit code remains. */
  readonly reported: boolean;

  constructor(
    code: LocalErrorCode | (string & {}),
    message: string,
    options: { status?: number; details?: Record<string, unknown>; exitCode?: ExitCode; reported?: boolean } = {},
  ) {
    super(message);
    this.name = "CliError";
    this.code = code;
    this.status = options.status;
    this.details = options.details;
    this.exitCode = options.exitCode ?? exitCodeFor(code, options.status);
    this.reported = options.reported ?? false;
  }
}

export function isCliError(error: unknown): error is CliError {
  return error instanceof CliError;
}

export function usageError(message: string): CliError {
  return new CliError("USAGE", message);
}
