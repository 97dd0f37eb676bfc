/**
 * Fetching a JSON document from an issuer (discovery, JWKS) under Stint's address policy: the host is resolved
 * once, every address it resolves to is judged (STINT_ALLOW_NETWORKS / STINT_DENY_NETWORKS, metadata services
 * and link-local refused by default), and the connection goes to the judged address (a name re-pointed between
 * check and connect is not followed). One deadline covers connecting, the headers and the whole body; the body is
 * cut off past a size cap; a redirect is never followed (it could lead anywhere, the metadata service included).
 */
import type { Resolve } from "../../lib/address-guard.js";
import type { AddressPolicy } from "../../lib/address-policy.js";
import { pinnedFetch, PinnedFetchError } from "../../lib/pinned-fetch.js";

export interface IssuerFetchOptions {
  policy?: AddressPolicy;
  timeoutMs: number;
  maxBytes: number;
  /** The resolver (tests); the system's by default. */
  resolve?: Resolve;
}

/** Why a fetch failed: `refused` (the address policy, a redirect) or `unavailable` (anything else). */
export class IssuerFetchError extends Error {
  constructor(
    readonly kind: "refused" | "unavailable",
    message: string,
  ) {
    super(message);
    this.name = "IssuerFetchError";
  }
}

/** GETs `url` and parses its body as JSON, under the policy, the deadline and the size cap (lib/pinned-fetch). */
export async function fetchIssuerJson(url: URL, options: IssuerFetchOptions): Promise<unknown> {
  let res: Response;
  try {
    res = await pinnedFetch(options)(url, { headers: { accept: "application/json" } });
  } catch (error) {
    if (error instanceof PinnedFetchError) throw new IssuerFetchError(error.kind, error.message);
    throw new IssuerFetchError("unavailable", `the request failed (${(error as Error).message})`);
  }
  if (res.status >= 300 && res.status < 400)
    throw new IssuerFetchError("refused", `it answered with a redirect (${res.status}); Stint follows none`);
  if (res.status !== 200) throw new IssuerFetchError("unavailable", `it answered ${res.status}`);
  try {
    return JSON.parse(await res.text()) as unknown;
  } catch {
    throw new IssuerFetchError("unavailable", "its answer is not JSON");
  }
}
