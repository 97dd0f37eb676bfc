/**
 * Figures computed at scrape time (a gauge's `collect`, typically a database count) are recomputed at
 * most once per refresh interval, however often and however many scrapers ask: between refreshes a
 * scrape answers the last values, and concurrent scrapes share one refresh. Process metrics (cheap,
 * in memory) are left alone.
 */
import type { Registry } from "prom-client";
import type { Clock } from "../lib/clock.js";

const THROTTLED = Symbol("stint.throttledCollect");

type Collect = () => unknown;
interface Collectable {
  name: string;
  collect?: Collect;
  [THROTTLED]?: true;
}

/** Returns a function to call before each scrape: it throttles every collector not throttled yet. */
export function throttleCollectors(registry: Registry, options: { clock: Clock; refreshMs: number }): () => void {
  return () => {
    for (const metric of registry.getMetricsAsArray() as unknown as Collectable[]) {
      const collect = metric.collect;
      if (typeof collect !== "function" || metric[THROTTLED] || metric.name.startsWith("stint_process_")) continue;
      metric.collect = throttled(collect.bind(metric), options);
      metric[THROTTLED] = true;
    }
  };
}

function throttled(collect: Collect, { clock, refreshMs }: { clock: Clock; refreshMs: number }): Collect {
  let refreshedAt = Number.NEGATIVE_INFINITY;
  let running: Promise<unknown> | null = null;
  return () => {
    if (running) return running;
    const now = clock.now().getTime();
    if (now - refreshedAt < refreshMs) return undefined;
    refreshedAt = now;
    const result = collect();
    if (!(result instanceof Promise)) return result;
    running = result.finally(() => (running = null));
    return running;
  };
}
