/**
 * The address policy (./address-policy.ts) at connect time: a host name is resolved and every address it
 * resolves to is judged, so a name that points at the metadata service (or is re-pointed there after
 * the target was saved) is refused as surely as the literal address.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import {
  DEFAULT_ADDRESS_POLICY,
  hostsOfAddress,
  judgeAddress,
  parseIpLiteral,
  type AddressPolicy,
} from "./address-policy.js";

export class AddressRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AddressRefusedError";
  }
}

export type Resolve = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Resolves `host` and returns its addresses when the policy allows every one of them; throws
 * AddressRefusedError otherwise (one bad answer is enough: a client may pick any of them).
 */
export async function checkHost(
  host: string,
  policy: AddressPolicy = DEFAULT_ADDRESS_POLICY,
  resolve: Resolve = systemResolve,
): Promise<string[]> {
  const literal = parseIpLiteral(host);
  const addresses = literal ? [host] : (await resolve(host)).map((a) => a.address);
  for (const address of addresses) {
    const verdict = judgeAddress(address, policy);
    if (!verdict.allowed)
      throw new AddressRefusedError(
        literal ? `${host} is refused: ${verdict.reason}` : `${host} resolves to ${verdict.reason}`,
      );
  }
  return addresses;
}

/** Checks every host of a target address or URL (see hostsOfAddress). Unresolvable names pass: the connection fails on its own. */
export async function checkAddressHosts(
  address: string,
  policy: AddressPolicy = DEFAULT_ADDRESS_POLICY,
  resolve: Resolve = systemResolve,
): Promise<void> {
  for (const host of hostsOfAddress(address)) {
    if (host.startsWith("/")) continue; // a Unix socket directory (libpq's host=/run/postgresql)
    try {
      await checkHost(host, policy, resolve);
    } catch (error) {
      if (error instanceof AddressRefusedError) throw error;
    }
  }
}

/**
 * The one address to connect to for `host`: resolved once, every answer judged (checkHost), the first
 * returned. Connecting to it instead of the name means no second lookup, so a name re-pointed between
 * the check and the connection (DNS rebinding) is not followed. Throws AddressRefusedError when the
 * policy refuses an answer, and a plain Error when the name does not resolve.
 */
export async function resolveAllowedAddress(
  host: string,
  policy: AddressPolicy = DEFAULT_ADDRESS_POLICY,
  resolve: Resolve = systemResolve,
): Promise<string> {
  const addresses = await checkHost(host, policy, resolve);
  const first = addresses[0];
  if (first === undefined) throw new Error(`${host} does not resolve`);
  // In its plain spelling (a literal may be written `0xa9fea9fe`, `[::1]`): that exact address, no resolver.
  return judgeAddress(first, policy).address;
}
