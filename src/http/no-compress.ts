/**
 * Answers that are never compressed, whatever the client accepts (BREACH, CVE-2013-3587): a compressed answer's
 * length tells how well a secret in it compresses against text next to it, and an attacker who can choose that
 * text (a name, a reason, a query parameter echoed back) and watch the lengths can guess the secret a byte at a
 * time. These routes answer with tokens, keys, passwords or recovery codes, most of them next to something the
 * caller sent; they go out as they are (most are small anyway). The rest of the API holds no secret in its
 * answers and is compressed from COMPRESS_THRESHOLD_BYTES on. Static assets are precompressed and hold none.
 * Kept as one list so that a new route that answers with a secret is added here (docs/security.md says so).
 */
export const NEVER_COMPRESSED: readonly string[] = [
  // Sessions and tokens issued.
  "POST /v1/setup",
  "POST /v1/auth/login",
  "POST /v1/auth/refresh",
  "POST /v1/auth/sso/redeem",
  "POST /v1/auth/sso/device/token",
  "POST /v1/auth/token-exchange",
  "POST /v1/tokens",
  "POST /v1/tokens/activation",
  "POST /v1/db/tokens",
  "POST /v1/ssh/certificates",
  // Second factors: the TOTP secret, recovery codes.
  "POST /v1/me/mfa/totp",
  "POST /v1/me/mfa/totp/confirm",
  // Secret values and generated credentials.
  "GET /v1/secrets/:path/value",
  "POST /v1/secrets/:path/checkout",
  "POST /v1/secrets/:path/reveal",
  "GET /v1/me/roles/:role/credentials",
  // SQL console answers: rows of the caller's database, next to the query text the caller chose.
  "POST /v1/sql-console/sessions/:id/queries",
  // Vault operator answers (unseal key shares).
  "POST /v1/operator/init",
  "POST /v1/operator/rotate-key",
];

const neverCompressed = new Set(NEVER_COMPRESSED);

/** Whether the route `method url` (as registered, e.g. "/v1/secrets/:path/value") answers uncompressed. */
export function isNeverCompressed(method: string | string[], url: string): boolean {
  return (Array.isArray(method) ? method : [method]).some((m) => neverCompressed.has(`${m} ${url}`));
}
