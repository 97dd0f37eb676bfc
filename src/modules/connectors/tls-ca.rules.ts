/**
 * A target's `options.tls: { ca: "<PEM certificates>" }`: the certificate authorities its server certificate is
 * checked against instead of Node's list (an internal CA, as most directories and databases use). Shared by
 * the connectors that speak TLS to their target; how TLS is chosen stays each connector's (sslmode, ldaps://).
 */
import { X509Certificate } from "node:crypto";

/** Problems with `options.tls`; `known`: what the message for an unknown key says is known (and what chooses TLS). */
export function tlsCaProblems(value: unknown, known: string): string[] {
  if (value === undefined) return [];
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return ['options.tls must be a mapping such as { ca: "<PEM certificates>" }'];
  const record = value as Record<string, unknown>;
  const problems = Object.keys(record)
    .filter((key) => key !== "ca")
    .map((key) => `options.tls.${key} is not a TLS setting (${known})`);
  if (record.ca === undefined) return problems;
  if (typeof record.ca !== "string" || !record.ca.includes("-----BEGIN CERTIFICATE-----")) {
    problems.push("options.tls.ca must be PEM certificates (-----BEGIN CERTIFICATE-----)");
    return problems;
  }
  const blocks = record.ca.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch {
      problems.push(`options.tls.ca: certificate ${i + 1} cannot be read`);
    }
  }
  if (blocks.length === 0) problems.push("options.tls.ca holds no complete certificate");
  return problems;
}

/** The CA bundle of an `options.tls` that `tlsCaProblems` accepted, or null (Node's list). */
export function tlsCaOf(value: unknown): string | null {
  const ca = typeof value === "object" && value !== null ? (value as { ca?: unknown }).ca : undefined;
  return typeof ca === "string" ? ca : null;
}
