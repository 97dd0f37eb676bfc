/**
 * The signing keys of the issuers trusts name: discovery (`/.well-known/openid-configuration`, whose `issuer`
 * must be the configured one) gives the `jwks_uri`; jose's remote key set caches the keys and refetches on an
 * unknown `kid` at most once per cooldown (a rotated-in key is picked up without a restart; a rotated-out key
 * stops verifying at the next refetch). Only issuers a trust names are ever asked for.
 */
import { createRemoteJWKSet, type JWTVerifyGetKey } from "jose";
import { StintError } from "../../lib/errors.js";
import { issuerProblem } from "./workload.rules.js";

export interface IssuerKeysOptions {
  /** Minimum time between two fetches of one issuer's key set (jose's cooldown). */
  cooldownMs?: number;
  /** How long fetched keys are used before the set is fetched again. */
  cacheMaxAgeMs?: number;
  /** How long a discovery document is kept. */
  discoveryMaxAgeMs?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

const MAX_DISCOVERY_BYTES = 64 * 1024;

export function createIssuerKeys(options: IssuerKeysOptions = {}) {
  const cooldownMs = options.cooldownMs ?? 30_000;
  const cacheMaxAgeMs = options.cacheMaxAgeMs ?? 10 * 60_000;
  const discoveryMaxAgeMs = options.discoveryMaxAgeMs ?? 60 * 60_000;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const doFetch = options.fetch ?? fetch;
  const sets = new Map<string, { jwksUri: string; keys: JWTVerifyGetKey; discoveredAt: number }>();

  async function discover(issuer: string): Promise<string> {
    const url = `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
    let body: unknown;
    try {
      const res = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "error" });
      if (!res.ok) throw new Error(`status ${res.status}`);
      const text = await res.text();
      if (text.length > MAX_DISCOVERY_BYTES) throw new Error("discovery document too large");
      body = JSON.parse(text);
    } catch {
      throw new StintError("WORKLOAD_ISSUER_UNAVAILABLE", `The discovery document of ${issuer} could not be read.`);
    }
    const doc = body as { issuer?: unknown; jwks_uri?: unknown };
    if (doc.issuer !== issuer || typeof doc.jwks_uri !== "string")
      throw new StintError(
        "WORKLOAD_ISSUER_UNAVAILABLE",
        `The discovery document of ${issuer} names another issuer or no jwks_uri.`,
      );
    let jwks: URL;
    try {
      jwks = new URL(doc.jwks_uri);
    } catch {
      throw new StintError("WORKLOAD_ISSUER_UNAVAILABLE", `The jwks_uri of ${issuer} is not a URL.`);
    }
    // The same rule as for issuers: https, or http on a loopback address.
    if (issuerProblem(`${jwks.protocol}//${jwks.host}`) !== null)
      throw new StintError("WORKLOAD_ISSUER_UNAVAILABLE", `The jwks_uri of ${issuer} is not https.`);
    return jwks.toString();
  }

  return {
    /** The key resolver for an issuer's tokens (discovering it first, or again when its document is old). */
    async keysOf(issuer: string, now = Date.now()): Promise<JWTVerifyGetKey> {
      const known = sets.get(issuer);
      if (known && now - known.discoveredAt < discoveryMaxAgeMs) return known.keys;
      const jwksUri = await discover(issuer);
      if (known && known.jwksUri === jwksUri) {
        known.discoveredAt = now;
        return known.keys;
      }
      const keys = createRemoteJWKSet(new URL(jwksUri), {
        cooldownDuration: cooldownMs,
        cacheMaxAge: cacheMaxAgeMs,
        timeoutDuration: timeoutMs,
      });
      sets.set(issuer, { jwksUri, keys, discoveredAt: now });
      return keys;
    },
    forget(issuer: string): void {
      sets.delete(issuer);
    },
  };
}

export type IssuerKeys = ReturnType<typeof createIssuerKeys>;
