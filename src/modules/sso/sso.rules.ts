/**
 * Pure rules of single sign-on: what a verified ID token's claims say (or why they are refused), which library
 * error is which refusal, which redirect a CLI may ask for. Nothing here does IO.
 */
import type { ErrorCode } from "../../lib/errors.js";
import type { SsoIdentity, SsoProvider } from "./sso.types.js";

/** How long a sign-in may take between Stint's redirect and the provider's callback. */
export const ATTEMPT_TTL_MS = 10 * 60_000;
/** How long a finished sign-in's one-time code may wait to be redeemed. */
export const HANDOFF_TTL_MS = 2 * 60_000;
/** At most this many groups are taken from a claim (more is a misconfigured provider, not a person). */
export const MAX_GROUPS = 200;

/**
 * A Stint name (user or group) made of a claim value: lower case, other characters `.`; a value that does not start
 * with a letter gets `prefix` in front (Entra's group object ids: `0f8f…` → `g0f8f…`); null when nothing is left.
 */
export function nameFrom(value: string, prefix = "u"): string | null {
  let name = value
    .normalize("NFKC")
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, ".")
    .replace(/^[._-]+/, "")
    .replace(/[._-]+$/, "");
  if (name === "") return null;
  if (!/^[a-z]/.test(name)) name = `${prefix}${name}`;
  if (name.length > 64) name = name.slice(0, 64).replace(/[._-]+$/, "");
  return name;
}

export type Refusal = { refused: ErrorCode; reason: string };

function claimText(claims: Record<string, unknown>, claim: string): string | undefined {
  const value = claims[claim];
  return typeof value === "string" && value.length > 0 && value.length <= 512 ? value : undefined;
}

/** The groups a claim lists (strings only, names made safe, each once). */
export function groupNamesOf(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : typeof value === "string" ? [value] : [];
  const names = new Set<string>();
  for (const item of list) {
    if (typeof item !== "string") continue;
    const name = nameFrom(item, "g");
    if (name) names.add(name);
    if (names.size >= MAX_GROUPS) break;
  }
  return [...names].sort();
}

/** The token says its groups did not fit and are to be fetched elsewhere (Entra's distributed "overage" claim). */
function groupsElsewhere(claims: Record<string, unknown>, claim: string): boolean {
  const names = claims._claim_names;
  return claims[claim] === undefined && typeof names === "object" && names !== null && claim in names;
}

/** How far ahead of Stint's clock a provider's `auth_time` may be (its clock, not a claim about the future). */
export const AUTH_TIME_SKEW_MS = 60_000;

/**
 * When the provider's authentication counts as MFA under its configuration: its `auth_time`, else null. Without
 * an `auth_time` (or with one ahead of the clock) the token says MFA happened in the provider's session, not
 * when: hours ago is as likely as now, so it is not counted (the session steps up with Stint's own factor).
 */
export function providerMfaAt(
  provider: Pick<SsoProvider, "mfaAmr" | "mfaAcr">,
  claims: Record<string, unknown>,
  now: Date,
): Date | null {
  const amr = Array.isArray(claims.amr) ? claims.amr.filter((v): v is string => typeof v === "string") : [];
  const acr = typeof claims.acr === "string" ? claims.acr : undefined;
  const counts = amr.some((v) => provider.mfaAmr.includes(v)) || (acr !== undefined && provider.mfaAcr.includes(acr));
  if (!counts) return null;
  if (typeof claims.auth_time !== "number" || !Number.isFinite(claims.auth_time)) return null;
  const authTime = new Date(claims.auth_time * 1000);
  if (authTime.getTime() > now.getTime() + AUTH_TIME_SKEW_MS) return null;
  return authTime.getTime() <= now.getTime() ? authTime : now;
}

/** `email_verified` says no (`false`, or the string `"false"` some providers send, e.g. Amazon Cognito). */
export function emailUnverified(claims: Record<string, unknown>): boolean {
  const verified = claims.email_verified;
  return verified === false || (typeof verified === "string" && verified.trim().toLowerCase() === "false");
}

/** Who the verified claims name, or why they are refused (in the order a person would fix them). */
export function identityFromClaims(
  provider: SsoProvider,
  issuer: string,
  claims: Record<string, unknown>,
  now: Date,
): { identity: SsoIdentity } | Refusal {
  const subject = claimText(claims, "sub");
  if (!subject) return { refused: "SSO_CLAIM_MISSING", reason: "no sub claim" };
  const claimed = claimText(claims, "email")?.toLowerCase() ?? null;
  // An address the provider says it has not verified is anyone's to type: it never names, maps or reaches the user.
  const unverified = emailUnverified(claims);
  const email = unverified ? null : claimed;
  if (provider.allowedEmailDomains.length > 0) {
    if (!claimed) return { refused: "SSO_CLAIM_MISSING", reason: "no email claim, and allowedEmailDomains is set" };
    if (!email) return { refused: "SSO_CLAIM_MISSING", reason: "the email is not verified" };
    const domain = email.slice(email.lastIndexOf("@") + 1);
    if (!email.includes("@") || !provider.allowedEmailDomains.some((d) => d.toLowerCase() === domain))
      return { refused: "SSO_EMAIL_DOMAIN_DENIED", reason: `email domain ${domain.slice(0, 100)} is not allowed` };
  }
  if (unverified && provider.usernameClaim === "email")
    return { refused: "SSO_CLAIM_MISSING", reason: "the email that would name the user is not verified" };
  const raw = claimText(claims, provider.usernameClaim);
  const name = raw === undefined ? null : nameFrom(raw);
  if (!name) return { refused: "SSO_CLAIM_MISSING", reason: `no usable ${provider.usernameClaim} claim` };
  const mfaAt = providerMfaAt(provider, claims, now);
  return {
    identity: {
      issuer,
      subject,
      name,
      username: raw!,
      email,
      displayName: claimText(claims, "name") ?? null,
      groups: !provider.groupsClaim
        ? []
        : groupsElsewhere(claims, provider.groupsClaim)
          ? null
          : groupNamesOf(claims[provider.groupsClaim]),
      mfaAt,
      amr: mfaAt ? ["oidc", "mfa"] : ["oidc"],
    },
  };
}

/** The error code for an error openid-client (oauth4webapi) threw while validating a provider's answer. */
export function refusalOfClientError(error: unknown): Refusal {
  const e = error as { name?: string; code?: string; message?: string; error?: string; cause?: unknown };
  if (e?.name === "AuthorizationResponseError" || e?.name === "ResponseBodyError")
    return {
      refused: "SSO_PROVIDER_DENIED",
      reason: `the provider answered ${String(e.error ?? "an error").slice(0, 64)}`,
    };
  const cause = e?.cause as { code?: string; message?: string; cause?: { claim?: string } } | undefined;
  const code = e?.code ?? cause?.code;
  const claim = cause?.cause?.claim ?? (cause as { claim?: string } | undefined)?.claim;
  const message = `${e?.message ?? ""} ${cause?.message ?? ""}`;
  if (code === "OAUTH_JWT_CLAIM_COMPARISON_FAILED" || code === "OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED") {
    if (claim === "iss" || /"iss"|issuer/.test(message))
      return { refused: "SSO_ISSUER_MISMATCH", reason: "the issuer does not match" };
    if (claim === "aud" || claim === "azp" || /audience|authorized party/.test(message))
      return { refused: "SSO_AUDIENCE_MISMATCH", reason: "the ID token was issued to another client" };
    if (claim === "nonce" || /nonce/.test(message))
      return { refused: "SSO_NONCE_MISMATCH", reason: "the nonce does not match" };
    if (/state/.test(message)) return { refused: "SSO_STATE_INVALID", reason: "the state does not match" };
    return { refused: "SSO_TOKEN_INVALID", reason: "a claim does not match" };
  }
  if (code === "OAUTH_JWT_TIMESTAMP_CHECK_FAILED")
    return { refused: "SSO_TOKEN_EXPIRED", reason: "the ID token expired" };
  if (code === "OAUTH_KEY_SELECTION_FAILED" || /signature verification failed/.test(message))
    return { refused: "SSO_BAD_SIGNATURE", reason: "the signature does not verify" };
  if (/iss.*parameter|issuer/i.test(message))
    return { refused: "SSO_ISSUER_MISMATCH", reason: "the issuer does not match" };
  const causeName = (e?.cause as { name?: string } | undefined)?.name;
  if (
    e?.name === "TypeError" ||
    causeName === "TypeError" ||
    code === "OAUTH_TIMEOUT" ||
    code === "OAUTH_ABORT" ||
    code === "OAUTH_RESPONSE_IS_NOT_CONFORM" ||
    code === "OAUTH_RESPONSE_IS_NOT_JSON"
  )
    return { refused: "SSO_PROVIDER_UNAVAILABLE", reason: "the provider's answer could not be read" };
  return { refused: "SSO_TOKEN_INVALID", reason: "the provider's answer is not valid" };
}

/** RFC 8252 loopback redirect of a native client: http on 127.0.0.1, [::1] or localhost, any port, no query. */
export function isLoopbackRedirect(uri: string): boolean {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  return (
    url.protocol === "http:" &&
    ["127.0.0.1", "[::1]", "localhost"].includes(url.hostname) &&
    url.port !== "" &&
    !url.search &&
    !url.hash &&
    !url.username &&
    !url.password &&
    uri.length <= 200
  );
}

/** A PKCE S256 challenge or verifier as RFC 7636 allows (verifier 43–128 unreserved characters). */
export const PKCE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
export const PKCE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
