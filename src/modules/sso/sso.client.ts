/**
 * The providers' openid-client configurations: discovered once per provider (again after a failure), every request
 * the library makes (discovery, keys, token and device endpoints) judged by the address policy first, sent to the
 * judged address (lib/pinned-fetch: no DNS rebinding), under one deadline and a size cap, without following
 * redirects. http is allowed only for a provider on a loopback address.
 */
import * as oidc from "openid-client";
import { DEFAULT_ADDRESS_POLICY, type AddressPolicy } from "../../lib/address-policy.js";
import { pinnedFetch, PinnedFetchError } from "../../lib/pinned-fetch.js";
import { StintError } from "../../lib/errors.js";
import { issuerProblem, sameIssuer, type SsoProvider } from "./sso.types.js";

export interface ProviderClientsOptions {
  policy?: AddressPolicy;
  /** Deadline of each request to a provider. */
  timeoutMs?: number;
}

/** Largest answer Stint reads from a provider (discovery, keys, tokens): a few KiB in practice. */
const MAX_PROVIDER_ANSWER_BYTES = 1024 * 1024;

/**
 * The fetch openid-client uses: through lib/pinned-fetch (the address judged once and the connection pinned to
 * it, so a name re-pointed after the check — DNS rebinding — is not followed; one deadline; a size cap), no
 * redirect followed. Failures become SSO_PROVIDER_UNAVAILABLE with a sentence.
 */
export function guardedFetch(policy: AddressPolicy, timeoutMs: number): oidc.CustomFetch {
  const fetcher = pinnedFetch({ policy, timeoutMs, maxBytes: MAX_PROVIDER_ANSWER_BYTES });
  return async (url, options) => {
    const target = new URL(url);
    if (target.protocol !== "https:" && issuerProblem(target.origin) !== null)
      throw new StintError("SSO_PROVIDER_UNAVAILABLE", `${target.origin} is not https.`);
    try {
      return await fetcher(url, options as RequestInit);
    } catch (error) {
      if (!(error instanceof PinnedFetchError)) throw error;
      throw new StintError(
        "SSO_PROVIDER_UNAVAILABLE",
        error.kind === "refused"
          ? `The provider's address is refused by the address policy: ${error.message}.`
          : `The provider did not answer: ${error.message}.`,
      );
    }
  };
}

export function createProviderClients(providers: readonly SsoProvider[], options: ProviderClientsOptions = {}) {
  const policy = options.policy ?? DEFAULT_ADDRESS_POLICY;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const fetcher = guardedFetch(policy, timeoutMs);
  const byId = new Map(providers.map((p) => [p.id, p]));
  const configs = new Map<string, Promise<oidc.Configuration>>();

  async function discover(provider: SsoProvider): Promise<oidc.Configuration> {
    const insecure = new URL(provider.issuer).protocol === "http:";
    try {
      const config = await oidc.discovery(
        new URL(provider.issuer),
        provider.clientId,
        provider.clientSecret ?? undefined,
        provider.clientSecret ? oidc.ClientSecretPost(provider.clientSecret) : oidc.None(),
        {
          execute: insecure ? [oidc.allowInsecureRequests] : [],
          [oidc.customFetch]: fetcher,
          timeout: Math.ceil(timeoutMs / 1000),
        },
      );
      // openid-client lets one origin's document name another issuer (Entra ID's multi-tenant `common` and
      // `organizations` name `…/{tenantid}/v2.0`, then any tenant's token passes): Stint trusts exactly one issuer.
      const named = config.serverMetadata().issuer;
      if (!sameIssuer(named, provider.issuer))
        throw new StintError(
          "SSO_PROVIDER_UNAVAILABLE",
          `The discovery document of ${provider.issuer} names the issuer ${named.slice(0, 200)}: Stint signs in ` +
            `through one issuer exactly (for Entra ID, your tenant's https://login.microsoftonline.com/<tenant-id>/v2.0, ` +
            `never common or organizations, which admit every tenant).`,
        );
      config[oidc.customFetch] = fetcher;
      // openid-client does not verify the signature of an ID token received straight from the token endpoint
      // (OIDC Core allows trusting TLS instead); Stint always verifies it against the provider's published keys.
      oidc.enableNonRepudiationChecks(config);
      return config;
    } catch (error) {
      if (error instanceof StintError) throw error;
      const cause = (error as { cause?: unknown }).cause;
      if (cause instanceof StintError) throw cause;
      throw new StintError(
        "SSO_PROVIDER_UNAVAILABLE",
        `The discovery document of ${provider.issuer} could not be read or names another issuer.`,
      );
    }
  }

  return {
    provider(id: string): SsoProvider {
      const provider = byId.get(id);
      if (!provider) throw new StintError("SSO_PROVIDER_UNKNOWN");
      return provider;
    },
    list(): SsoProvider[] {
      return [...byId.values()];
    },
    /** The provider's configuration, discovered once (a failed discovery is tried again next time). */
    async configOf(id: string): Promise<oidc.Configuration> {
      const provider = this.provider(id);
      let config = configs.get(id);
      if (!config) {
        config = discover(provider);
        configs.set(id, config);
        config.catch(() => configs.delete(id));
      }
      return config;
    },
  };
}

export type ProviderClients = ReturnType<typeof createProviderClients>;
