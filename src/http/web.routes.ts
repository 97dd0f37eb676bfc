/**
 * The web UI: the single-page app built by Vite into dist/web, served at `/` and at each page's path
 * (so a reload or a shared link works). Hashed assets are cached for a year; the page itself is
 * revalidated every time, so a new release is picked up at once. Scripts, styles and the page go out
 * brotli- or gzip-compressed when the browser accepts it, compressed once at build. The UI talks only to /v1.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import { StintError } from "../lib/errors.js";
import type { App } from "./app.js";

/** Where `npm run build` puts the UI, from src/http (tests) and from dist/http (the built server) alike. */
export const WEB_DIR = fileURLToPath(new URL("../../dist/web", import.meta.url));

/** The UI's pages: each answers with the app, which shows the page for its path. */
export const WEB_PAGES = [
  "/",
  "/approvals",
  "/requests",
  // One request, where notification links lead: the decision token rides in the fragment, never here.
  "/requests/:id",
  "/sessions",
  // Live sessions the caller may watch or moderate.
  "/live",
  "/vault",
  "/admin",
  "/audit",
  "/dashboards",
  "/reviews",
  "/evidence",
  "/alerts",
  "/account",
  // A CLI session's passkey step-up, handed to the browser (the id names a hand-off, not a secret).
  "/step-up/:id",
];

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

export async function registerWebRoutes(app: App, dir = WEB_DIR): Promise<void> {
  const built = () => existsSync(`${dir}/index.html`);
  // `npm run build` writes .br and .gz beside each asset (web/vite.config.ts): a browser that accepts
  // them gets them, with Vary: Accept-Encoding; anything else gets the file as it is.
  await app.register(fastifyStatic, { root: dir, serve: false, preCompressed: true });
  const notBuilt = () =>
    new StintError("UNAVAILABLE", "The web UI is not built on this server: run `npm run build`, then restart.");

  for (const page of WEB_PAGES)
    app.get(page, { config: { requirement: "public" }, schema: { hide: true } }, async (_request, reply) => {
      if (!built()) throw notBuilt();
      reply.headers({ ...SECURITY_HEADERS, "cache-control": "no-cache" });
      return reply.sendFile("index.html", { cacheControl: false });
    });

  app.get("/assets/*", { config: { requirement: "public" }, schema: { hide: true } }, async (request, reply) => {
    const file = (request.params as { "*": string })["*"];
    if (!/^[A-Za-z0-9._-]+$/.test(file)) throw new StintError("NOT_FOUND", "There is no such file.");
    if (!built()) throw notBuilt();
    if (!existsSync(`${dir}/assets/${file}`)) throw new StintError("NOT_FOUND", "There is no such file.");
    // Vary is said here, not left to the static plugin (its 9.x line does not say it): a cache between the
    // browser and Stint must not hand a brotli body to a client that did not ask for one.
    reply.headers({
      ...SECURITY_HEADERS,
      "cache-control": "public, max-age=31536000, immutable",
      vary: "Accept-Encoding",
    });
    return reply.sendFile(`assets/${file}`, { cacheControl: false });
  });
}
