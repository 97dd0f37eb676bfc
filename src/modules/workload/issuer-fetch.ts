/**
 * Fetching a JSON document from an issuer (discovery, JWKS) under Stint's address policy: the host is resolved
 * once, every address it resolves to is judged (STINT_ALLOW_NETWORKS / STINT_DENY_NETWORKS, metadata services
 * and link-local refused by default), and the connection goes to the judged address (a name re-pointed between
 * check and connect is not followed). One deadline covers connecting, the headers and the whole body; the body is
 * cut off past a size cap; a redirect is never followed (it could lead anywhere, the metadata service included).
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP, type LookupFunction } from "node:net";
import { AddressRefusedError, resolveAllowedAddress, type Resolve } from "../../lib/address-guard.js";
import { DEFAULT_ADDRESS_POLICY, type AddressPolicy } from "../../lib/address-policy.js";

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

/** GETs `url` and parses its body as JSON, under the policy, the deadline and the size cap. */
export async function fetchIssuerJson(url: URL, options: IssuerFetchOptions): Promise<unknown> {
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new IssuerFetchError("refused", `${url.protocol} is not http(s)`);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const deadline = AbortSignal.timeout(options.timeoutMs);
  let address: string;
  try {
    address = await Promise.race([
      resolveAllowedAddress(host, options.policy ?? DEFAULT_ADDRESS_POLICY, options.resolve),
      new Promise<never>((_, reject) =>
        deadline.addEventListener("abort", () => reject(new Error("name resolution timed out")), { once: true }),
      ),
    ]);
  } catch (error) {
    if (error instanceof AddressRefusedError) throw new IssuerFetchError("refused", error.message);
    throw new IssuerFetchError("unavailable", `${host} does not resolve`);
  }
  const family = isIP(address) === 6 ? 6 : 4;
  // Connect to the judged address only, whatever the name resolves to by now; TLS still checks the name.
  const pinned: LookupFunction = (_hostname, lookupOptions, callback) => {
    if ((lookupOptions as { all?: boolean }).all)
      (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
    else callback(null, address, family);
  };
  const text = await new Promise<string>((resolve, reject) => {
    const request = (url.protocol === "https:" ? httpsRequest : httpRequest)(
      url,
      { method: "GET", lookup: pinned, signal: deadline, headers: { accept: "application/json" } },
      (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400) {
          res.destroy();
          return reject(new IssuerFetchError("refused", `it answered with a redirect (${status}); Stint follows none`));
        }
        if (status !== 200) {
          res.destroy();
          return reject(new IssuerFetchError("unavailable", `it answered ${status}`));
        }
        const declared = Number(res.headers["content-length"]);
        if (Number.isFinite(declared) && declared > options.maxBytes) {
          res.destroy();
          return reject(new IssuerFetchError("unavailable", `its answer is larger than ${options.maxBytes} bytes`));
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes) {
            res.destroy();
            reject(new IssuerFetchError("unavailable", `its answer is larger than ${options.maxBytes} bytes`));
          } else chunks.push(chunk);
        });
        res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        res.on("error", () => reject(new IssuerFetchError("unavailable", "the answer was cut off")));
        res.on("close", () => reject(new IssuerFetchError("unavailable", "the answer was cut off")));
      },
    );
    request.on("error", (error) =>
      reject(
        new IssuerFetchError(
          "unavailable",
          deadline.aborted ? `no answer within ${options.timeoutMs} ms` : `the request failed (${error.message})`,
        ),
      ),
    );
    // The one deadline ends a request however far it got (a slow start, a body that never ends).
    deadline.addEventListener(
      "abort",
      () => {
        request.destroy();
        reject(new IssuerFetchError("unavailable", `no answer within ${options.timeoutMs} ms`));
      },
      { once: true },
    );
    request.end();
  });
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new IssuerFetchError("unavailable", "its answer is not JSON");
  }
}
