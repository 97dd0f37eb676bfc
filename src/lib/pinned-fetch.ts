/**
 * A `fetch` for outbound calls to addresses an administrator configured (identity providers' discovery,
 * token and key endpoints): the host is resolved once, every address judged by the address policy
 * (STINT_ALLOW_NETWORKS / STINT_DENY_NETWORKS, metadata services and link-local refused by default), and the
 * connection goes to the judged address (a name re-pointed between the check and the connection — DNS
 * rebinding — is not followed; TLS still checks the certificate against the name). One deadline covers
 * resolving, connecting, the headers and the whole body; the body is cut off past a size cap; a redirect is
 * answered as it came (the caller sees a 3xx and follows nothing).
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP, type LookupFunction } from "node:net";
import { AddressRefusedError, resolveAllowedAddress, type Resolve } from "./address-guard.js";
import { DEFAULT_ADDRESS_POLICY, type AddressPolicy } from "./address-policy.js";

export interface PinnedFetchOptions {
  policy?: AddressPolicy;
  timeoutMs: number;
  maxBytes: number;
  /** The resolver (tests); the system's by default. */
  resolve?: Resolve;
}

/** Why a pinned fetch failed: `refused` (the address policy) or `unavailable` (anything else). */
export class PinnedFetchError extends Error {
  constructor(
    readonly kind: "refused" | "unavailable",
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "PinnedFetchError";
  }
}

/** Request bodies openid-client and Stint send: text, bytes or form parameters. */
function bodyBytes(body: RequestInit["body"]): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return Buffer.from(body);
  if (body instanceof URLSearchParams) return Buffer.from(body.toString());
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  throw new PinnedFetchError("unavailable", "a request body of this kind is not supported");
}

/** A fetch with the policy, the pinned address, the deadline and the size cap of `options`. */
export function pinnedFetch(options: PinnedFetchOptions): typeof fetch {
  return async (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.protocol !== "https:" && url.protocol !== "http:")
      throw new PinnedFetchError("refused", `${url.protocol} is not http(s)`);
    const deadline = init.signal
      ? AbortSignal.any([init.signal, AbortSignal.timeout(options.timeoutMs)])
      : AbortSignal.timeout(options.timeoutMs);
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    let address: string;
    try {
      address = await Promise.race([
        resolveAllowedAddress(host, options.policy ?? DEFAULT_ADDRESS_POLICY, options.resolve),
        new Promise<never>((_, reject) =>
          deadline.addEventListener("abort", () => reject(new Error("name resolution timed out")), { once: true }),
        ),
      ]);
    } catch (error) {
      if (error instanceof AddressRefusedError) throw new PinnedFetchError("refused", error.message);
      throw new PinnedFetchError("unavailable", `${host} does not resolve`);
    }
    const family = isIP(address) === 6 ? 6 : 4;
    const pinned: LookupFunction = (_hostname, lookupOptions, callback) => {
      if ((lookupOptions as { all?: boolean }).all)
        (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
      else callback(null, address, family);
    };
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => (headers[name] = value));
    const body = bodyBytes(init.body);
    if (body) headers["content-length"] = String(body.length);
    return new Promise<Response>((resolve, reject) => {
      const request = (url.protocol === "https:" ? httpsRequest : httpRequest)(
        url,
        { method: init.method ?? "GET", headers, lookup: pinned },
        (res: IncomingMessage) => {
          const declared = Number(res.headers["content-length"]);
          if (Number.isFinite(declared) && declared > options.maxBytes) {
            res.destroy();
            return reject(new PinnedFetchError("unavailable", `the answer is larger than ${options.maxBytes} bytes`));
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > options.maxBytes) {
              res.destroy();
              reject(new PinnedFetchError("unavailable", `the answer is larger than ${options.maxBytes} bytes`));
            } else chunks.push(chunk);
          });
          res.on("error", () => reject(new PinnedFetchError("unavailable", "the answer was cut off")));
          res.on("close", () => {
            if (!res.complete) reject(new PinnedFetchError("unavailable", "the answer was cut off"));
          });
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            const answerHeaders = new Headers();
            for (const [name, value] of Object.entries(res.headers))
              if (value !== undefined) answerHeaders.set(name, Array.isArray(value) ? value.join(", ") : value);
            const empty = status === 204 || status === 304 || (init.method ?? "GET") === "HEAD";
            const answer = new Response(empty ? null : Buffer.concat(chunks), { status, headers: answerHeaders });
            Object.defineProperty(answer, "url", { value: url.href });
            resolve(answer);
          });
        },
      );
      request.on("error", (error) =>
        reject(
          new PinnedFetchError(
            "unavailable",
            deadline.aborted ? `no answer within ${options.timeoutMs} ms` : `the connection failed: ${error.message}`,
            { cause: error },
          ),
        ),
      );
      // The one deadline ends a request however far it got (a slow start, a body that never ends).
      deadline.addEventListener(
        "abort",
        () => {
          reject(new PinnedFetchError("unavailable", `no answer within ${options.timeoutMs} ms`));
          request.destroy();
        },
        { once: true },
      );
      request.end(body);
    });
  };
}
