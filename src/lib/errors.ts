/**
 * The registry of stable error codes. Every error a client can see is one of
 * these: an HTTP status, a human sentence, and whether the message may be shown
 * as is. docs/errors.md documents each code; a test keeps the two in sync.
 */
export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, message: "The request is not valid." },
  BAD_JSON: { status: 400, message: "The request body is not valid JSON." },
  BAD_ENCODING: { status: 400, message: "The request body is not valid UTF-8." },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: "The request body must be application/json." },
  PAYLOAD_TOO_LARGE: { status: 413, message: "The request body is too large." },
  HEADERS_TOO_LARGE: {
    status: 431,
    message: "The request line and headers are too large (a very long URL or query string, or too many headers).",
  },
  REQUEST_TIMEOUT: { status: 408, message: "The request did not arrive in time." },
  UNAUTHENTICATED: { status: 401, message: "Sign in first: no valid credentials were presented." },
  TOKEN_EXPIRED: { status: 401, message: "The access token has expired; refresh it or sign in again." },
  INVALID_CREDENTIALS: { status: 401, message: "The user name or password is wrong." },
  MFA_REQUIRED: { status: 401, message: "A one-time code from the authenticator app is required." },
  MFA_INVALID: { status: 401, message: "The one-time code is wrong or was already used." },
  MFA_ALREADY_ENROLLED: { status: 409, message: "An authenticator is already enrolled for this account." },
  MFA_NOT_STARTED: { status: 409, message: "Start the enrolment first with `stint mfa enroll`." },
  ACCOUNT_LOCKED: { status: 429, message: "Too many failed sign-ins; try again later." },
  ACCOUNT_DISABLED: { status: 403, message: "This account is disabled." },
  FORBIDDEN: { status: 403, message: "You are not allowed to do that." },
  NOT_FOUND: { status: 404, message: "Nothing was found there." },
  ROUTE_NOT_FOUND: { status: 404, message: "There is no such endpoint." },
  METHOD_NOT_ALLOWED: { status: 405, message: "That method is not allowed here." },
  ALREADY_EXISTS: { status: 409, message: "Something with that name already exists." },
  CONFLICT: { status: 409, message: "The request conflicts with the current state." },
  SETUP_CODE_INVALID: { status: 401, message: "The setup code is wrong, used or expired." },
  SETUP_ALREADY_DONE: { status: 409, message: "Stint already has an administrator." },
  INVITE_INVALID: {
    status: 401,
    message: "The invite code is wrong, used, expired or replaced by a newer one (or the user name is wrong).",
  },
  PASSWORD_ALREADY_SET: {
    status: 409,
    message: "That user already has a password: an invite is only for an account without one.",
  },
  ADMIN_PASSWORDS_REFUSED: {
    status: 403,
    message:
      "This install refuses passwords chosen by an administrator (identity.adminSetPasswords: refused); issue an invite instead.",
  },
  WEAK_PASSWORD: { status: 400, message: "The password is too weak: use at least 12 characters." },
  NOT_ELIGIBLE: { status: 403, message: "You are not eligible for that role (or it does not exist)." },
  REQUEST_ALREADY_OPEN: {
    status: 409,
    message: "You already have a pending or active request for that role; extend it instead.",
  },
  REQUEST_NOT_PENDING: { status: 409, message: "That request is no longer pending, so it takes no decision." },
  REQUEST_EXPIRED: {
    status: 409,
    message: "That request expired without a decision (its policy's requestTtl passed); the requester must ask again.",
  },
  START_IN_PAST: { status: 400, message: "The requested start time is in the past." },
  START_TOO_FAR: { status: 400, message: "The requested start time is further ahead than the role's policy allows." },
  START_NOT_ALLOWED: { status: 400, message: "This request cannot take a start time: it starts at once." },
  SELF_APPROVAL: { status: 403, message: "Nobody approves their own request." },
  NOT_AN_APPROVER: { status: 403, message: "The role's policy does not name you as an approver of this request." },
  ALREADY_DECIDED: { status: 409, message: "You already decided on this stage of the request." },
  DISTINCT_APPROVERS_REQUIRED: {
    status: 403,
    message: "You approved an earlier stage of this request; each stage needs a different approver.",
  },
  SELF_GRANT: {
    status: 403,
    message: "Nobody grants themselves access; someone else must make this change.",
  },
  SELF_REVIEW: { status: 403, message: "Nobody reviews their own access; another reviewer must decide this item." },
  NOT_A_REVIEWER: { status: 403, message: "You are not a reviewer of this review item." },
  SELF_MODERATION: { status: 403, message: "Nobody moderates their own session; another moderator must join." },
  SESSION_ELSEWHERE: {
    status: 409,
    message: "That session is relayed by another Stint node; watch or moderate it through that node.",
  },
  REVIEW_ITEM_CLOSED: { status: 409, message: "That review item is already decided or closed." },
  CAMPAIGN_CLOSED: { status: 409, message: "That review campaign is closed." },
  CHANGE_REQUEST_SELF_APPROVAL: {
    status: 403,
    message: "Nobody approves their own change to access; another admin must approve it.",
  },
  CHANGE_REQUEST_NOT_PENDING: {
    status: 409,
    message: "That change request is no longer pending (applied, denied, expired or stale), so it takes no decision.",
  },
  CHANGE_REQUEST_EXPIRED: {
    status: 409,
    message: "That change request expired without a decision; its author must apply the file again.",
  },
  FOUR_EYES_REQUIRED: {
    status: 403,
    message:
      "This change widens access at a four-eyes risk tier; make it with a configuration file so a second admin can approve it.",
  },
  CHANGE_REQUEST_STALE: {
    status: 409,
    message: "The catalog changed since this change was planned; its author must apply the file again.",
  },
  REQUESTER_NOT_ELIGIBLE: {
    status: 409,
    message: "The requester is disabled or no longer eligible for the role; the request was cancelled.",
  },
  DURATION_TOO_LONG: { status: 400, message: "The duration is longer than the role's policy allows." },
  DURATION_INVALID: { status: 400, message: "The duration is not valid for this role." },
  JUSTIFICATION_INVALID: { status: 400, message: "The justification does not meet the role's policy." },
  OUTSIDE_WINDOW: { status: 403, message: "The role cannot be activated at this time." },
  MFA_STEP_UP_REQUIRED: { status: 401, message: "This role needs a recent MFA check: give a fresh one-time code." },
  SIGN_IN_AGAIN: {
    status: 401,
    message: "Adding a first second factor needs a sign-in within the last 15 minutes: sign out and in again.",
  },
  EXTENSION_LIMIT_REACHED: { status: 409, message: "The activation cannot be extended any further." },
  NOT_ACTIVE: { status: 409, message: "That activation is not active." },
  SQL_CONSOLE_ENDED: { status: 410, message: "This SQL console has ended; open a new one from My access." },
  SQL_CONSOLE_BUSY: { status: 409, message: "A query is still running in this SQL console; wait for its answer." },
  SQL_CONSOLE_LIMIT: { status: 429, message: "Too many SQL consoles are open; close one first." },
  SQL_CONSOLE_REFUSED: { status: 403, message: "The PostgreSQL proxy refused to open the SQL console's session." },
  SQL_QUERY_TOO_LARGE: { status: 413, message: "The query text is longer than the SQL console takes (64 KiB)." },
  SEALED: { status: 503, message: "The vault is sealed: an operator must unseal it (stint operator unseal)." },
  VAULT_KEY_INVALID: { status: 503, message: "The vault key does not match this vault, so no secret can be opened." },
  INTEGRITY_FAILED: {
    status: 500,
    message: "A stored secret failed its integrity check; it may have been tampered with.",
  },
  CHECKED_OUT: { status: 409, message: "The secret is checked out by someone else." },
  BREAK_GLASS_ONLY: {
    status: 403,
    message: "This is a break-glass secret: only its reveal releases it (stint secret reveal), with fresh MFA.",
  },
  WORKLOAD_TOKEN_INVALID: {
    status: 401,
    message: "The job token is not valid: its issuer, audience, signature or key does not check out.",
  },
  WORKLOAD_TOKEN_EXPIRED: {
    status: 401,
    message: "The job token has expired; a job token is exchanged while it runs.",
  },
  WORKLOAD_TOKEN_REPLAYED: { status: 401, message: "This job token was already exchanged; each one is accepted once." },
  WORKLOAD_NO_TRUST: { status: 403, message: "No service identity trusts this job (its issuer, audience and claims)." },
  WORKLOAD_AMBIGUOUS: {
    status: 409,
    message: "Several service identities trust this job; name the one to act as.",
  },
  WORKLOAD_ISSUER_UNAVAILABLE: { status: 502, message: "The issuer's signing keys could not be fetched; try again." },
  WORKLOAD_ISSUER_REFUSED: {
    status: 502,
    message: "The issuer's discovery document or key set is at an address Stint does not connect to.",
  },
  WEBAUTHN_REQUIRED: {
    status: 401,
    message: "This needs a fresh passkey (WebAuthn) check with user verification; a one-time code does not count.",
  },
  WEBAUTHN_INVALID: {
    status: 401,
    message: "The passkey answer did not verify (wrong origin, relying party, signature or key).",
  },
  WEBAUTHN_CHALLENGE_INVALID: {
    status: 401,
    message: "The passkey challenge is unknown, expired or already used; ask for a new one.",
  },
  WEBAUTHN_CLONED_AUTHENTICATOR: {
    status: 401,
    message: "The passkey's signature counter went back: it may have been cloned, so it was refused.",
  },
  SSO_PROVIDER_UNKNOWN: { status: 404, message: "There is no single sign-on provider by that name." },
  SSO_STATE_INVALID: {
    status: 400,
    message: "This sign-in is unknown, expired or was already finished; start it again.",
  },
  SSO_ISSUER_MISMATCH: { status: 401, message: "The identity provider's answer names another issuer." },
  SSO_AUDIENCE_MISMATCH: { status: 401, message: "The identity provider's ID token was not issued to Stint." },
  SSO_BAD_SIGNATURE: {
    status: 401,
    message: "The ID token's signature does not verify with a key the identity provider publishes.",
  },
  SSO_TOKEN_EXPIRED: { status: 401, message: "The identity provider's ID token has expired; sign in again." },
  SSO_NONCE_MISMATCH: { status: 401, message: "The ID token was not issued for this sign-in (nonce mismatch)." },
  SSO_TOKEN_INVALID: { status: 401, message: "The identity provider's answer is not valid." },
  SSO_PROVIDER_DENIED: { status: 401, message: "The identity provider did not sign you in." },
  SSO_PROVIDER_UNAVAILABLE: { status: 502, message: "The identity provider could not be reached; try again." },
  SSO_CLAIM_MISSING: {
    status: 401,
    message: "The identity provider did not say who you are (the claim naming the user is missing or not usable).",
  },
  SSO_EMAIL_DOMAIN_DENIED: {
    status: 403,
    message: "Your e-mail address's domain may not sign in to Stint through this provider.",
  },
  SSO_ACCOUNT_CONFLICT: {
    status: 409,
    message: "A Stint account of that name exists and is not linked to this identity provider; ask an administrator.",
  },
  SSO_CODE_INVALID: {
    status: 401,
    message: "The sign-in code is wrong, expired or already used, or does not match this client.",
  },
  SSO_AUTHORIZATION_PENDING: {
    status: 400,
    message: "The sign-in is not finished yet at the identity provider; keep polling.",
  },
  PASSWORD_SIGNIN_DISABLED: {
    status: 403,
    message: "Passwords are turned off here: sign in with single sign-on.",
  },
  TARGET_UNAVAILABLE: { status: 502, message: "The target could not be reached or refused Stint's request." },
  RATE_LIMITED: { status: 429, message: "Too many requests; slow down." },
  AUDIT_WRITE_FAILED: { status: 503, message: "The audit log could not be written, so nothing was changed." },
  UNAVAILABLE: { status: 503, message: "The service is not ready." },
  STORE_UNAVAILABLE: {
    status: 503,
    message: "Stint lost its connection to its database for a moment; try again in a few seconds.",
  },
  STORAGE_FULL: {
    status: 503,
    message: "Stint's disk is full, so nothing was changed; an operator must free space.",
  },
  INTERNAL: { status: 500, message: "Something went wrong on our side; it has been logged." },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class StintError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    super(message ?? ERROR_CODES[code].message);
    this.name = "StintError";
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.details = details;
  }
}

export function isStintError(error: unknown): error is StintError {
  return error instanceof StintError;
}

/** The public error envelope. */
export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

export function toEnvelope(error: StintError): ErrorEnvelope {
  return {
    error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) },
  };
}
