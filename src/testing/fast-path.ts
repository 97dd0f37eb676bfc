/**
 * Test support for the fast paths (src/http/fast-path.ts): the app listening on a loopback port, the answers its
 * fast path gave (its observers are told of each), and `both`: one request over HTTP, the fast path in front, and
 * the same through app.inject, which never meets the fast path (Fastify only: the reference).
 */
import type { AddressInfo } from "node:net";
import type { TestServer } from "./server.js";

/** The headers a fast answer must give as the route does. */
export const FAST_PATH_HEADERS = [
  "content-type",
  "content-length",
  "x-content-type-options",
  "cache-control",
  "www-authenticate",
];

export async function listenWithFastPath(server: TestServer) {
  const answers: { url: string; statusCode: number }[] = [];
  server.app.observeFastAnswers((route, _method, statusCode) => answers.push({ url: route.url, statusCode }));
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;

  /** The request over HTTP and through app.inject; `fast` tells whether the fast path answered the first. */
  async function both(url: string, headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET") {
    const before = answers.length;
    const res = await fetch(base + url, { method, headers });
    const http = {
      status: res.status,
      body: await res.text(),
      headers: Object.fromEntries(FAST_PATH_HEADERS.map((h) => [h, res.headers.get(h)])),
      requestId: res.headers.get("x-request-id"),
    };
    const fast = answers.length > before;
    const ref = await server.app.inject({ method, url, headers });
    const inject = {
      status: ref.statusCode,
      body: ref.body,
      headers: Object.fromEntries(FAST_PATH_HEADERS.map((h) => [h, (ref.headers[h] as string | undefined) ?? null])),
    };
    return { http, inject, fast };
  }
  return { base, answers, both };
}
