/**
 * The signing keys of the issuers trusts name: discovery (`/.well-known/openid-configuration`, whose `issuer`
 * must be the configured one) gives the `jwks_uri`, whose key set is fetched before anything is kept. Fetched
 * keys are used until they are old; an unknown `kid` refetches the set at most once per cooldown (a rotated-in
 * key is picked up without a restart; a rotated-out key stops verifying at the next refetch). Only issuers a
 * trust names are ever asked for, and every fetch goes through the address policy with a deadline and a size
 * cap, never following a redirect (./issuer-fetch.ts): a discovery document cannot send Stint to the metadata
 * service, and a slow or endless issuer holds up only its own exchanges, never longer than the timeout.
 */
import { createLocalJWKSet, errors as joseErrors, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import type { AddressPolicy } from "../../lib/address-policy.js";
import type { Resolve } from "../../lib/address-guard.js";
import { StintError } from "../../lib/errors.js";
import { fetchIssuerJson, IssuerFetchError } from "./issuer-fetch.js";
import { issuerProblem } from "./workload.rules.js";

export interface IssuerKeysOptions {
  /** Minimum time between two fetches of one issuer's key set on an unknown `kid`. */
  cooldownMs?: number;
  /** How long fetched keys are used before the set is fetched again. */
  cacheMaxAgeMs?: number;
  /** How long a discovery document is kept. */
  discoveryMaxAgeMs?: number;
  /** The deadline of one fetch (connect, headers and body). */
  timeoutMs?: number;
  /** Where Stint may connect (STINT_ALLOW_NETWORKS / STINT_DENY_NETWORKS). */
  addressPolicy?: AddressPolicy;
  /** The resolver (tests); the system's by default. */
  resolve?: Resolve;
}

export const MAX_DISCOVERY_BYTES = 64 * 1024;
export const MAX_JWKS_BYTES = 256 * 1024;

interface KeySet {
  jwksUri: string;
  keys: JWTVerifyGetKey;
  discoveredAt: number;
}

export function createIssuerKeys(options: IssuerKeysOptions = {}) {
  const cooldownMs = options.cooldownMs ?? 30_000;
  const cacheMaxAgeMs = options.cacheMaxAgeMs ?? 10 * 60_000;
  const discoveryMaxAgeMs = options.discoveryMaxAgeMs ?? 60 * 60_000;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const sets = new Map<string, KeySet>();
  /** One discovery at a time per issuer: concurrent exchanges of a slow issuer wait for the same one. */
  const pending = new Map<string, Promise<KeySet>>();

  async function fetchJson(issuer: string, what: string, url: URL, maxBytes: number): Promise<unknown> {
    try {
      return await fetchIssuerJson(url, {
        timeoutMs,
        maxBytes,
        ...(options.addressPolicy ? { policy: options.addressPolicy } : {}),
        ...(options.resolve ? { resolve: options.resolve } : {}),
      });
    } catch (error) {
      const reason = error instanceof IssuerFetchError ? error.message : "it could not be fetched";
      if (error instanceof IssuerFetchError && error.kind === "refused")
        throw new StintError("WORKLOAD_ISSUER_REFUSED", `Stint does not fetch the ${what} of ${issuer}: ${reason}.`);
      throw new StintError("WORKLOAD_ISSUER_UNAVAILABLE", `The ${what} of ${issuer} could not be read: ${reason}.`);
    }
  }

  async function discover(issuer: string): Promise<URL> {
    const url = new URL(`${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`);
    const doc = (await fetchJson(issuer, "discovery document", url, MAX_DISCOVERY_BYTES)) as {
      issuer?: unknown;
      jwks_uri?: unknown;
    } | null;
    if (doc?.issuer !== issuer || typeof doc.jwks_uri !== "string")
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
    return jwks;
  }

  async function fetchKeySet(issuer: string, jwksUri: URL): Promise<JWTVerifyGetKey> {
    const body = (await fetchJson(issuer, "key set", jwksUri, MAX_JWKS_BYTES)) as JSONWebKeySet;
    try {
      return createLocalJWKSet(body);
    } catch {
      throw new StintError("WORKLOAD_ISSUER_UNAVAILABLE", `The key set of ${issuer} is not a JWK set.`);
    }
  }

  /** A key resolver over a fetched set: old keys are fetched again; an unknown `kid` too, once per cooldown. */
  function remoteKeys(issuer: string, jwksUri: URL, first: JWTVerifyGetKey, now: number): JWTVerifyGetKey {
    let local = first;
    let fetchedAt = now;
    let reload: Promise<void> | undefined;
    async function refetch(): Promise<void> {
      reload ??= fetchKeySet(issuer, jwksUri)
        .then((keys) => {
          local = keys;
          fetchedAt = Date.now();
        })
        .finally(() => (reload = undefined));
      await reload;
    }
    return async (header, token) => {
      if (Date.now() - fetchedAt >= cacheMaxAgeMs) await refetch();
      try {
        return await local(header, token);
      } catch (error) {
        if (!(error instanceof joseErrors.JWKSNoMatchingKey) || Date.now() - fetchedAt < cooldownMs) throw error;
        await refetch();
        return local(header, token);
      }
    };
  }

  async function load(issuer: string, known: KeySet | undefined, now: number): Promise<KeySet> {
    const jwksUri = await discover(issuer);
    if (known && known.jwksUri === jwksUri.toString()) {
      known.discoveredAt = now;
      return known;
    }
    // The key set is fetched before anything is kept: a refused or broken jwks_uri leaves nothing cached.
    const keys = remoteKeys(issuer, jwksUri, await fetchKeySet(issuer, jwksUri), now);
    const set = { jwksUri: jwksUri.toString(), keys, discoveredAt: now };
    sets.set(issuer, set);
    return set;
  }

  return {
    /** The key resolver for an issuer's tokens (discovering it first, or again when its document is old). */
    async keysOf(issuer: string, now = Date.now()): Promise<JWTVerifyGetKey> {
      const known = sets.get(issuer);
      if (known && now - known.discoveredAt < discoveryMaxAgeMs) return known.keys;
      let loading = pending.get(issuer);
      if (!loading) {
        loading = load(issuer, known, now).finally(() => pending.delete(issuer));
        pending.set(issuer, loading);
      }
      return (await loading).keys;
    },
    /** Whether keys of the issuer are kept (tests: a refused issuer leaves nothing behind). */
    has(issuer: string): boolean {
      return sets.has(issuer);
    },
    forget(issuer: string): void {
      sets.delete(issuer);
    },
  };
}

export type IssuerKeys = ReturnType<typeof createIssuerKeys>;
