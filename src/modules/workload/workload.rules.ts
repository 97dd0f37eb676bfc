/** Pure rules of workload identity: trust validation, claim matching, token lifetimes. No IO. */
import type { JobClaims, WorkloadTrust } from "./workload.types.js";

export const TOKEN_TTL_DEFAULT_MS = 15 * 60_000;
export const TOKEN_TTL_MIN_MS = 60_000;
export const TOKEN_TTL_MAX_MS = 60 * 60_000;
/** Seconds a job token's times may be off from ours. */
export const CLOCK_TOLERANCE_S = 60;
/** A job token that lived longer than this (`exp − iat`) is not a job token. */
export const MAX_JOB_TOKEN_LIFETIME_S = 3600;
export const MAX_CONDITIONS = 16;
const CLAIM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

/** `*` matches any run of characters (also `/`), `?` one character; everything else literally. */
export function globMatches(pattern: string, value: string): boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return pattern === value;
  // Iterative wildcard match (no regular expression built from input: no catastrophic backtracking).
  let p = 0;
  let v = 0;
  let star = -1;
  let mark = 0;
  while (v < value.length) {
    if (p < pattern.length && pattern[p] === "*") {
      // Checked first: a "*" in the pattern is always a wildcard, even against a literal "*" in the value.
      star = p++;
      mark = v;
    } else if (p < pattern.length && (pattern[p] === "?" || pattern[p] === value[v])) {
      p++;
      v++;
    } else if (star >= 0) {
      p = star + 1;
      v = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

/** An issuer URL Stint may fetch discovery from: https, or http on a loopback host (tests, local issuers). */
export function issuerProblem(issuer: string): string | null {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return "must be a URL";
  }
  if (url.search || url.hash || url.username || url.password) return "must not carry a query, fragment or credentials";
  if (url.protocol === "https:") return null;
  const loopback = ["127.0.0.1", "[::1]", "localhost"].includes(url.hostname);
  if (url.protocol === "http:" && loopback) return null;
  return "must be https (http only on a loopback address)";
}

export interface TrustInput {
  name: string;
  issuer: string;
  audiences: string[];
  conditions: Record<string, string>;
  tokenTtlMs: number;
}

/** Every problem of a trust, as `{ path, message }` (empty when it may be created). */
export function trustProblems(input: TrustInput): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  const issuer = issuerProblem(input.issuer);
  if (issuer) problems.push({ path: "body.issuer", message: issuer });
  if (input.audiences.length === 0) problems.push({ path: "body.audiences", message: "name at least one audience" });
  const entries = Object.entries(input.conditions);
  if (entries.length === 0)
    problems.push({
      path: "body.conditions",
      message: "name at least one claim condition (e.g. repository): without one, every job of the issuer would match",
    });
  if (entries.length > MAX_CONDITIONS)
    problems.push({ path: "body.conditions", message: `at most ${MAX_CONDITIONS} conditions` });
  for (const [claim, pattern] of entries) {
    if (!CLAIM_NAME.test(claim)) problems.push({ path: `body.conditions.${claim}`, message: "is not a claim name" });
    else if (["iss", "aud", "exp", "iat", "nbf", "jti"].includes(claim))
      problems.push({
        path: `body.conditions.${claim}`,
        message: "is checked by the exchange itself, not a condition",
      });
    if (pattern.length === 0 || pattern.length > 256)
      problems.push({ path: `body.conditions.${claim}`, message: "must be 1 to 256 characters" });
    else if (/^[*?]*$/.test(pattern))
      problems.push({ path: `body.conditions.${claim}`, message: "must not match everything" });
  }
  if (input.tokenTtlMs < TOKEN_TTL_MIN_MS || input.tokenTtlMs > TOKEN_TTL_MAX_MS)
    problems.push({ path: "body.tokenTtl", message: "must be between 1m and 60m" });
  return problems;
}

/** A claim's value as the text conditions compare: strings, numbers and booleans; anything else has none. */
export function claimText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "boolean") return String(value);
  return undefined;
}

export function conditionsHold(conditions: Record<string, string>, claims: Record<string, unknown>): boolean {
  const entries = Object.entries(conditions);
  if (entries.length === 0) return false;
  return entries.every(([claim, pattern]) => {
    const text = claimText(Object.hasOwn(claims, claim) ? claims[claim] : undefined);
    return text !== undefined && globMatches(pattern, text);
  });
}

export type TrustChoice =
  { trust: WorkloadTrust } | { refused: "NO_TRUST" } | { refused: "AMBIGUOUS"; services: string[] };

/**
 * The trust a verified job token is exchanged under: those of its issuer whose audiences include one of the
 * token's and whose conditions hold; of the named service only, when one is named. Several service identities
 * matching without a name is ambiguous (never decided by order); several trusts of one identity: the first by name.
 */
export function chooseTrust(trusts: readonly WorkloadTrust[], claims: JobClaims, service?: string): TrustChoice {
  const matching = trusts
    .filter((t) => t.issuer === claims.iss)
    .filter((t) => service === undefined || t.service === service)
    .filter((t) => t.audiences.some((a) => claims.aud.includes(a)))
    .filter((t) => conditionsHold(t.conditions, claims))
    .sort((a, b) => (a.service === b.service ? a.name.localeCompare(b.name) : a.service.localeCompare(b.service)));
  if (matching.length === 0) return { refused: "NO_TRUST" };
  const services = [...new Set(matching.map((t) => t.service))];
  if (services.length > 1) return { refused: "AMBIGUOUS", services };
  return { trust: matching[0]! };
}

/** What is wrong with a job token's times and identifiers beyond its signature (null: nothing). */
export function jobTokenProblem(
  claims: Record<string, unknown>,
  nowSeconds: number,
): "MISSING_CLAIMS" | "EXPIRED" | "NOT_YET_VALID" | "TOO_LONG_LIVED" | null {
  const { exp, iat, jti, nbf } = claims;
  if (typeof exp !== "number" || typeof iat !== "number" || typeof jti !== "string" || jti.length === 0)
    return "MISSING_CLAIMS";
  if (jti.length > 256) return "MISSING_CLAIMS";
  if (exp + CLOCK_TOLERANCE_S <= nowSeconds) return "EXPIRED";
  if (iat - CLOCK_TOLERANCE_S > nowSeconds) return "NOT_YET_VALID";
  if (typeof nbf === "number" && nbf - CLOCK_TOLERANCE_S > nowSeconds) return "NOT_YET_VALID";
  if (exp - iat > MAX_JOB_TOKEN_LIFETIME_S) return "TOO_LONG_LIVED";
  return null;
}

/** The minted token's expiry: the trust's lifetime from now. */
export function mintedExpiry(now: Date, trust: Pick<WorkloadTrust, "tokenTtlMs">): Date {
  return new Date(now.getTime() + trust.tokenTtlMs);
}

/** What the audit keeps of a job's claims: `sub`, `jti` and the claims the trust's conditions named. */
export function auditedClaims(claims: JobClaims, trust?: Pick<WorkloadTrust, "conditions">): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const claim of ["sub", "jti", ...Object.keys(trust?.conditions ?? {})]) {
    const text = claimText(claims[claim]);
    if (text !== undefined) kept[claim] = text.slice(0, 256);
  }
  return kept;
}
