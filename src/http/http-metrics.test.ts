/**
 * The HTTP metrics counted in plain numbers render exactly what prom-client's own Counter and Histogram
 * rendered for the same responses: a scraper (and every dashboard and alert on these series) sees no change.
 */
import { Counter, Histogram, Registry, type OpenMetricsContentType } from "prom-client";
import { describe, expect, it } from "vitest";
import { createHttpMetrics, HTTP_DURATION_BUCKETS } from "./http-metrics.js";

const CHECK = { url: "/v1/check" };
const LOGIN = { url: "/v1/auth/login" };
const ASSET = { url: "/assets/*" };

/** Responses as (route, method, status, seconds), with bounds hit exactly and values past the last bound. */
const RESPONSES: [{ url: string } | null, string, number, number][] = [
  [LOGIN, "POST", 200, 0.2],
  [CHECK, "GET", 200, 0.001],
  [CHECK, "GET", 200, 0.005],
  [CHECK, "GET", 401, 0.0002],
  [ASSET, "GET", 404, 0.03],
  [CHECK, "GET", 200, 7],
  [CHECK, "HEAD", 200, 0.01],
  [LOGIN, "POST", 401, 1.5],
  [null, "GET", 404, 0.0001],
  [CHECK, "GET", 403, 0.1],
];

/** The registry in OpenMetrics format (prom-client's types bind the format at construction; this one is set after). */
function openMetrics(registry: Registry): Registry {
  (registry as unknown as Registry<OpenMetricsContentType>).setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  return registry;
}

function withPromClient(): Registry {
  const registry = new Registry();
  const requests = new Counter({
    name: "stint_http_requests_total",
    help: "HTTP requests by route and status code.",
    labelNames: ["method", "route", "status"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "stint_http_request_duration_seconds",
    help: "HTTP request duration by route.",
    labelNames: ["method", "route"],
    buckets: HTTP_DURATION_BUCKETS,
    registers: [registry],
  });
  for (const [route, method, status, seconds] of RESPONSES) {
    const url = route?.url ?? "unmatched";
    requests.inc({ method, route: url, status: String(status) });
    duration.observe({ method, route: url }, seconds);
  }
  return registry;
}

function withPlainCounts(): Registry {
  const registry = new Registry();
  const metrics = createHttpMetrics(registry);
  for (const [route, method, status, seconds] of RESPONSES) metrics.observe(route, method, status, seconds);
  return registry;
}

describe("HTTP metrics", () => {
  it("render as prom-client's Counter and Histogram did, in both exposition formats", async () => {
    expect(await withPlainCounts().metrics()).toBe(await withPromClient().metrics());
    expect(await openMetrics(withPlainCounts()).metrics()).toBe(await openMetrics(withPromClient()).metrics());
    // As JSON too (prom-client adds an empty exemplar to each histogram value; it means nothing here).
    const json = async (registry: Registry) =>
      JSON.parse(
        JSON.stringify(await registry.getMetricsAsJSON(), (key, value) => (key === "exemplar" ? undefined : value)),
      );
    expect(await json(withPlainCounts())).toEqual(await json(withPromClient()));
  });

  it("count a route's responses under its own series however many requests share it", async () => {
    const registry = new Registry();
    const metrics = createHttpMetrics(registry);
    for (let i = 0; i < 1000; i++) metrics.observe(CHECK, "GET", 200, 0.002);
    metrics.observe({ url: "/v1/check" }, "GET", 200, 0.002); // another object for the same URL: the same series
    const text = await registry.metrics();
    expect(text.match(/stint_http_requests_total\{/g)).toHaveLength(1);
    expect(text).toContain('stint_http_requests_total{method="GET",route="/v1/check",status="200"} 1001');
    expect(text).toContain('stint_http_request_duration_seconds_count{method="GET",route="/v1/check"} 1001');
    expect(text).toContain(
      'stint_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/check"} 1001',
    );
  });

  it("start again from zero after a registry reset", async () => {
    const registry = new Registry();
    const metrics = createHttpMetrics(registry);
    metrics.observe(CHECK, "GET", 200, 0.002);
    registry.resetMetrics();
    metrics.observe(CHECK, "GET", 500, 0.002);
    const text = await registry.metrics();
    expect(text).not.toContain('status="200"');
    expect(text).toContain('stint_http_requests_total{method="GET",route="/v1/check",status="500"} 1');
    expect(text).toContain('stint_http_request_duration_seconds_count{method="GET",route="/v1/check"} 1');
  });
});
