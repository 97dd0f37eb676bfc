/**
 * The HTTP request counter and duration histogram (`stint_http_requests_total`,
 * `stint_http_request_duration_seconds`), counted in plain numbers on each response and turned into
 * Prometheus series only when scraped. prom-client's own `inc`/`observe` check and hash their label set on
 * every call, even on a labelled child (~4 µs a request on the check API); here a response costs a lookup by
 * its route object, a bucket search over ten bounds and three additions. The registry renders these
 * exactly as it rendered prom-client's Counter and Histogram (same names, labels, order and buckets).
 */
import type { Metric, Registry } from "prom-client";

export const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** One (method, route) pair: its responses by status code and its duration histogram (non-cumulative). */
interface Series {
  method: string;
  route: string;
  statuses: Map<number, number>;
  buckets: number[];
  sum: number;
  count: number;
}

export interface HttpMetrics {
  /** Counts one response; `route` is the route's own object (null when no route matched). */
  observe(route: { url: string } | null, method: string, status: number, seconds: number): void;
}

const UNMATCHED = { url: "unmatched" };

export function createHttpMetrics(registry: Registry, bounds: readonly number[] = HTTP_DURATION_BUCKETS): HttpMetrics {
  /** In the order first seen, as prom-client listed its series. */
  const all: Series[] = [];
  const byRoute = new WeakMap<object, Series[]>();

  const seriesFor = (route: { url: string }, method: string): Series => {
    let list = byRoute.get(route);
    if (!list) byRoute.set(route, (list = []));
    for (const series of list) if (series.method === method) return series;
    // Found once per route object and method; two objects for one URL (never two registered routes) share it.
    const existing = all.find((series) => series.method === method && series.route === route.url);
    if (existing) {
      list.push(existing);
      return existing;
    }
    const series: Series = {
      method,
      route: route.url,
      statuses: new Map(),
      buckets: bounds.map(() => 0),
      sum: 0,
      count: 0,
    };
    list.push(series);
    all.push(series);
    return series;
  };

  const requests = {
    name: "stint_http_requests_total",
    help: "HTTP requests by route and status code.",
    type: "counter",
    aggregator: "sum",
    get() {
      // Statuses in the order first seen across all routes, as prom-client's one hash map kept them.
      const values = statusOrder.map(({ series, status }) => ({
        labels: { method: series.method, route: series.route, status: String(status) },
        value: series.statuses.get(status)!,
      }));
      return Promise.resolve({
        name: this.name,
        help: this.help,
        type: this.type,
        values,
        aggregator: this.aggregator,
      });
    },
    reset() {
      for (const series of all) series.statuses.clear();
      statusOrder.length = 0;
    },
  };
  const statusOrder: { series: Series; status: number }[] = [];

  const durations = {
    name: "stint_http_request_duration_seconds",
    help: "HTTP request duration by route.",
    type: "histogram",
    aggregator: "sum",
    get() {
      const name = this.name;
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const series of all) {
        if (series.count === 0) continue;
        const labels = { method: series.method, route: series.route };
        let cumulative = 0;
        bounds.forEach((bound, i) => {
          cumulative += series.buckets[i]!;
          values.push({ labels: { le: bound, ...labels }, value: cumulative, metricName: `${name}_bucket` });
        });
        values.push({ labels: { le: "+Inf", ...labels }, value: series.count, metricName: `${name}_bucket` });
        values.push({ labels: { ...labels }, value: series.sum, metricName: `${name}_sum` });
        values.push({ labels: { ...labels }, value: series.count, metricName: `${name}_count` });
      }
      return Promise.resolve({ name, help: this.help, type: this.type, values, aggregator: this.aggregator });
    },
    reset() {
      for (const series of all) {
        series.buckets.fill(0);
        series.sum = 0;
        series.count = 0;
      }
    },
  };

  registry.registerMetric(requests as unknown as Metric);
  registry.registerMetric(durations as unknown as Metric);

  return {
    observe(route, method, status, seconds) {
      const series = seriesFor(route ?? UNMATCHED, method);
      const seen = series.statuses.get(status);
      if (seen === undefined) {
        series.statuses.set(status, 1);
        statusOrder.push({ series, status });
      } else series.statuses.set(status, seen + 1);
      for (let i = 0; i < bounds.length; i++) {
        if (seconds <= bounds[i]!) {
          series.buckets[i] = series.buckets[i]! + 1;
          break;
        }
      }
      series.sum += seconds;
      series.count += 1;
    },
  };
}
