/**
 * Cross-site WebSocket hijacking: any web page can open a WebSocket to this server from a user's browser, so the
 * socket routes (browser terminal, live watching) serve only pages of this server (the request's own scheme and
 * Host) or of the configured public URL. A missing, `null` or malformed Origin is refused.
 */
import type { FastifyRequest } from "fastify";

export function originAllowed(request: FastifyRequest, origins: readonly string[]): boolean {
  const origin = request.headers.origin;
  if (typeof origin !== "string" || origin.length === 0 || origin === "null") return false;
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return false;
  }
  if (parsed.origin !== origin) return false;
  const host = request.headers.host;
  if (typeof host === "string" && origin === `${request.protocol}://${host}`) return true;
  return origins.includes(origin);
}
