/** Liveness, readiness, Prometheus metrics and the token JWKS. */
import { Counter, Histogram, type Registry } from "prom-client";
import { z } from "zod";
import type { Clock } from "../lib/clock.js";
import type { App } from "./app.js";
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
  const requests = new Counter({
    name: "stint_http_requests_total",
    help: "HTTP requests by route and status code.",
    labelNames: ["method", "route", "status"],
    registers: [deps.registry],
  });
  const duration = new Histogram({
    name: "stint_http_request_duration_seconds",
    help: "HTTP request duration by route.",
    labelNames: ["method", "route"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [deps.registry],
  });
  // The children for each (method, route, status), found once: prom-client hashes a label object at every
  // call otherwise, on every request.
  const children = new Map<string, { count: { inc(): void }; time: { observe(seconds: number): void } }>();
  app.addHook("onResponse", (request, reply, done) => {
    const route = request.routeOptions.url ?? "unmatched";
    const key = `${request.method} ${reply.statusCode} ${route}`;
    let child = children.get(key);
    if (!child) {
      child = {
        count: requests.labels({ method: request.method, route, status: String(reply.statusCode) }),
        time: duration.labels({ method: request.method, route }),
      };
      children.set(key, child);
    }
    child.count.inc();
    child.time.observe(reply.elapsedTime / 1000);
    done();
  });

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
