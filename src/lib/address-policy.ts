/**
 * The address policy: which IP addresses Stint may open a connection to on someone's say-so (a target's
 * address, a webhook URL). Pure: no DNS, no sockets; src/lib/address-guard.ts applies it to what a
 * name resolves to at connect time.
 *
 * Blocked unless an operator allows them explicitly (STINT_ALLOW_NETWORKS): cloud metadata services
 * (they hand out the host's cloud credentials), link-local, "this network" (0.0.0.0 reaches the local
 * host), multicast, broadcast and reserved ranges. Loopback and private ranges are allowed: targets are
 * normally inside the network, and on a single host beside Stint; STINT_DENY_NETWORKS takes them away.
 * An address is judged in every spelling a resolver accepts (decimal, hex, octal and short IPv4 forms,
 * IPv4 inside IPv6: mapped, compatible, NAT64, 6to4) by the IPv4 address it really reaches.
 */

export type AddressCategory =
  | "metadata"
  | "link-local"
  | "unspecified"
  | "multicast"
  | "broadcast"
  | "reserved"
  | "loopback"
  | "private"
  | "public";

/** Categories refused unless allowed explicitly. */
export const BLOCKED_CATEGORIES: ReadonlySet<AddressCategory> = new Set([
  "metadata",
  "link-local",
  "unspecified",
  "multicast",
  "broadcast",
  "reserved",
]);

export interface AddressPolicy {
  /** CIDRs (or single IPs) allowed although their category is blocked. */
  allow: readonly string[];
  /** CIDRs (or single IPs) never allowed, whatever else says. */
  deny: readonly string[];
}

export const DEFAULT_ADDRESS_POLICY: AddressPolicy = Object.freeze({ allow: [], deny: [] });

export type Verdict =
  | { allowed: true; address: string; category: AddressCategory }
  | { allowed: false; address: string; category: AddressCategory; reason: string };

/** A parsed IP address: 4 or 16 bytes as one bigint. */
interface Ip {
  version: 4 | 6;
  value: bigint;
}

// ------------------------------------------------------------------ parsing

/**
 * An IPv4 address in any form inet_aton (and so getaddrinfo, and so every client library) accepts:
 * `a.b.c.d`, `a.b.c`, `a.b`, `a`, each part decimal, `0x` hex or `0`-prefixed octal.
 */
export function parseIpv4(text: string): bigint | null {
  const parts = text.split(".");
  if (parts.length < 1 || parts.length > 4) return null;
  const values: bigint[] = [];
  for (const part of parts) {
    let value: bigint;
    if (/^0[xX][0-9a-fA-F]*$/.test(part)) value = part.length === 2 ? 0n : BigInt(part);
    else if (/^0[0-7]+$/.test(part)) value = BigInt(`0o${part.slice(1)}`);
    else if (/^(0|[1-9][0-9]*)$/.test(part)) value = BigInt(part);
    else return null;
    values.push(value);
  }
  const last = values.pop()!;
  if (values.some((v) => v > 255n)) return null;
  const lastBits = BigInt(8 * (4 - values.length));
  if (last >= 1n << lastBits) return null;
  let result = 0n;
  values.forEach((v, i) => (result |= v << BigInt(8 * (3 - i))));
  return result | last;
}

/** An IPv6 address (brackets and a zone id allowed; embedded dotted IPv4 too). */
export function parseIpv6(text: string): bigint | null {
  let body = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const zone = body.indexOf("%");
  if (zone !== -1) body = body.slice(0, zone);
  if (!/^[0-9a-fA-F:.]+$/.test(body) || !body.includes(":")) return null;
  // A trailing dotted IPv4 part (::ffff:1.2.3.4) is two 16-bit words.
  const lastColon = body.lastIndexOf(":");
  const tail = body.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(tail);
    if (!v4 || v4.slice(1).some((p) => Number(p) > 255)) return null;
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    body = `${body.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = body.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  if ([...head, ...rest].some((w) => !/^[0-9a-fA-F]{1,4}$/.test(w))) return null;
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const words = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  let value = 0n;
  for (const w of words) value = (value << 16n) | BigInt(parseInt(w, 16));
  return value;
}

/** The IP address a host string names literally, in any accepted spelling; null for a DNS name. */
export function parseIpLiteral(host: string): Ip | null {
  const trimmed = host.trim().replace(/\.$/, "");
  if (trimmed === "") return null;
  if (trimmed.includes(":")) {
    const v6 = parseIpv6(trimmed);
    return v6 === null ? null : { version: 6, value: v6 };
  }
  const v4 = parseIpv4(trimmed);
  return v4 === null ? null : { version: 4, value: v4 };
}

export function formatIp(ip: Ip): string {
  if (ip.version === 4) return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 255n)).join(".");
  const words = Array.from({ length: 8 }, (_, i) => ((ip.value >> BigInt(16 * (7 - i))) & 0xffffn).toString(16));
  return words.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

// ------------------------------------------------------------------ ranges

interface Range {
  version: 4 | 6;
  base: bigint;
  bits: number;
}

function parseCidr(text: string): Range {
  const [address, bits] = text.split("/");
  const ip = parseIpLiteral(address ?? "");
  if (!ip) throw new Error(`not an IP address or CIDR range: ${text}`);
  const width = ip.version === 4 ? 32 : 128;
  const prefix = bits === undefined ? width : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > width) throw new Error(`bad prefix length: ${text}`);
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(width - prefix);
  return { version: ip.version, base: ip.value & mask, bits: prefix };
}

function inRange(ip: Ip, range: Range): boolean {
  if (ip.version !== range.version) return false;
  const width = ip.version === 4 ? 32 : 128;
  const mask = range.bits === 0 ? 0n : ((1n << BigInt(range.bits)) - 1n) << BigInt(width - range.bits);
  return (ip.value & mask) === range.base;
}

const ranges = (...cidrs: string[]) => cidrs.map(parseCidr);

const CATEGORIES: [AddressCategory, Range[]][] = [
  [
    "metadata",
    ranges(
      "169.254.169.254", // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
      "169.254.170.2", // AWS ECS task credentials
      "100.100.100.200", // Alibaba Cloud
      "168.63.129.16", // Azure wire server
      "fd00:ec2::254", // AWS IMDS over IPv6
      "fd00:ec2::23", // AWS time sync, same service
    ),
  ],
  ["link-local", ranges("169.254.0.0/16", "fe80::/10")],
  ["unspecified", ranges("0.0.0.0/8", "::/128")],
  ["broadcast", ranges("255.255.255.255/32")],
  ["multicast", ranges("224.0.0.0/4", "ff00::/8")],
  ["reserved", ranges("240.0.0.0/4", "100::/64", "fec0::/10", "2001:db8::/32", "192.0.2.0/24")],
  ["loopback", ranges("127.0.0.0/8", "::1/128")],
  ["private", ranges("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15", "fc00::/7")],
];

/** IPv6 forms that carry an IPv4 address, and where: the connection goes to that IPv4 address. */
function embeddedIpv4(ip: Ip): Ip | null {
  if (ip.version !== 6) return null;
  const v = ip.value;
  const low32 = { version: 4 as const, value: v & 0xffffffffn };
  if (v >> 32n === 0xffffn) return low32; // ::ffff:a.b.c.d, IPv4-mapped
  if (v >> 32n === 0xffff0000n) return low32; // ::ffff:0:a.b.c.d, IPv4-translated
  if (v >> 32n === 0n && v > 1n) return low32; // ::a.b.c.d, IPv4-compatible (deprecated, still routed by some)
  if (v >> 32n === 0x64ff9b0000000000000000n) return low32; // 64:ff9b::/96, NAT64
  if (v >> 112n === 0x2002n) return { version: 4, value: (v >> 80n) & 0xffffffffn }; // 2002:AABB:CCDD::/16, 6to4
  return null;
}

export function categorize(ip: Ip): AddressCategory {
  const inner = embeddedIpv4(ip);
  if (inner) return categorize(inner);
  for (const [category, list] of CATEGORIES) if (list.some((range) => inRange(ip, range))) return category;
  return "public";
}

const REASONS: Partial<Record<AddressCategory, string>> = {
  metadata: "a cloud metadata service",
  "link-local": "a link-local address",
  unspecified: "the unspecified address (it reaches the local host)",
  multicast: "a multicast address",
  broadcast: "the broadcast address",
  reserved: "a reserved address",
};

/** Parses a policy's CIDRs once (throws on a bad one: config validation has already refused those). */
export function compilePolicy(policy: AddressPolicy): { allow: Range[]; deny: Range[] } {
  return { allow: policy.allow.map(parseCidr), deny: policy.deny.map(parseCidr) };
}

/** Whether Stint may connect to this IP address (in any spelling) under the policy. */
export function judgeAddress(address: string, policy: AddressPolicy = DEFAULT_ADDRESS_POLICY): Verdict {
  const ip = parseIpLiteral(address);
  if (!ip) return { allowed: false, address, category: "reserved", reason: `${address} is not an IP address` };
  const compiled = compilePolicy(policy);
  const canonical = formatIp(ip);
  const category = categorize(ip);
  // The IPv4 address an IPv6 form reaches is what the allow and deny lists are about, too.
  const forms = [ip, ...(embeddedIpv4(ip) ? [embeddedIpv4(ip)!] : [])];
  const matches = (list: Range[]) => forms.some((form) => list.some((range) => inRange(form, range)));
  if (matches(compiled.deny))
    return { allowed: false, address: canonical, category, reason: `${canonical} is in STINT_DENY_NETWORKS` };
  if (BLOCKED_CATEGORIES.has(category) && !matches(compiled.allow))
    return {
      allowed: false,
      address: canonical,
      category,
      reason: `${canonical} is ${REASONS[category]}; Stint connects there only if STINT_ALLOW_NETWORKS allows it`,
    };
  return { allowed: true, address: canonical, category };
}

/**
 * The host names in a target address or URL (`scheme://user@host:port/…`, `host:port`, a list of hosts
 * `h1,h2:port` as libpq allows), without brackets.
 */
export function hostsOfAddress(address: string): string[] {
  let host: string | null = null;
  const authority = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)/.exec(address);
  if (authority) {
    host = authority[1]!.slice(authority[1]!.lastIndexOf("@") + 1);
  } else {
    host = address.slice(address.lastIndexOf("@") + 1).split(/[/?#]/)[0] ?? "";
  }
  return host
    .split(",")
    .map((h) => {
      const bracketed = /^\[([^\]]*)\]/.exec(h);
      if (bracketed) return bracketed[1]!;
      const colons = h.split(":").length - 1;
      return colons === 1 ? h.slice(0, h.indexOf(":")) : h; // host:port, or a bare IPv6 address
    })
    .map((h) => {
      try {
        return decodeURIComponent(h);
      } catch {
        return h;
      }
    })
    .filter((h) => h !== "");
}

/**
 * Problems with an address's literal hosts under the policy (names are judged when resolved, at connect
 * time). Empty when fine.
 */
export function literalAddressProblems(address: string, policy: AddressPolicy = DEFAULT_ADDRESS_POLICY): string[] {
  const problems: string[] = [];
  for (const host of hostsOfAddress(address)) {
    if (!parseIpLiteral(host)) continue;
    const verdict = judgeAddress(host, policy);
    if (!verdict.allowed) problems.push(`must not point at ${host}: ${verdict.reason}`);
  }
  return problems;
}
