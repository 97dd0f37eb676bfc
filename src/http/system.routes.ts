/** Liveness, readiness, Prometheus metrics and the token JWKS. */
import type { Registry } from "prom-client";
import { z } from "zod";
import type { Clock } from "../lib/clock.js";
import type { App } from "./app.js";
import { createHttpMetrics } from "./http-metrics.js";
import { throttleCollectors } from "./metrics-refresh.js";

export interface SystemDeps {
  registry: Registry;
  clock: Clock;
  /** How often figures computed at scrape time (database counts) are computed again. */
  metricsRefreshMs: number;
  /** Throws when the node cannot serve: database unreachable or migrations pending; `disk` false when full. */
  readiness(): Promise<{ database: boolean; migrations: boolean; disk: boolean }>;
  jwks(): { keys: Record<string, unknown>[] };
}

const health = z.object({ status: z.literal("ok") });
const readiness = z.object({
  status: z.enum(["ready", "not_ready"]),
  checks: z.object({ database: z.boolean(), migrations: z.boolean(), disk: z.boolean() }),
});

export function registerSystemRoutes(app: App, deps: SystemDeps) {
  // Counted in plain numbers per response, made into Prometheus series when scraped (see http-metrics.ts).
  const metrics = createHttpMetrics(deps.registry);
  app.addHook("onResponse", (request, reply, done) => {
    metrics.observe(request.route, request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  // The answers a fast path sent before Fastify saw the request (fast-path.ts) count the same.
  app.observeFastAnswers((route, method, statusCode, seconds) => metrics.observe(route, method, statusCode, seconds));

  app.get(
    "/healthz",
    { config: { requirement: "public" }, schema: { tags: ["system"], response: { 200: health } } },
    async () => ({ status: "ok" as const }),
  );

  app.get(
    "/readyz",
    { config: { requirement: "public" }, schema: { tags: ["system"], response: { 200: readiness, 503: readiness } } },
    async (_req, reply) => {
      const checks = await deps.readiness().catch(() => ({ database: false, migrations: false, disk: true }));
      const ready = checks.database && checks.migrations && checks.disk;
      reply.code(ready ? 200 : 503);
      return { status: ready ? ("ready" as const) : ("not_ready" as const), checks };
    },
  );

  // Not public: the figures describe who holds what, and a scrape used to cost database queries each time.
  const throttle = throttleCollectors(deps.registry, { clock: deps.clock, refreshMs: deps.metricsRefreshMs });
  app.get(
    "/metrics",
    { config: { requirement: "metrics.read", scrapeToken: true }, schema: { tags: ["system"] } },
    async (_req, reply) => {
      throttle();
      reply.type(deps.registry.contentType);
      return deps.registry.metrics();
    },
  );

  app.get(
    "/.well-known/jwks.json",
    { config: { requirement: "public" }, schema: { tags: ["system"] } },
    async (_req, reply) => {
      reply.header("cache-control", "public, max-age=300");
      return deps.jwks();
    },
  );
}
