/** The outbox runner's metrics (`stint_outbox_*`), registered once per registry. */
import { Counter, Gauge, type Registry } from "prom-client";
import type { AppStore } from "../db/index.js";
import type { Clock } from "../lib/clock.js";
import type { Logger } from "../lib/logger.js";
import { outboxStore, safeErrorMessage } from "../modules/outbox/index.js";

function getOrCreate<M>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

/** Registers the outbox metrics on `registry` (once; a second runner on the same registry shares them). */
export function outboxMetrics(
  registry: Registry,
  deps: { store: Pick<AppStore, "db">; clock: Clock; logger: Pick<Logger, "warn"> },
) {
  const { store, clock, logger } = deps;
  const registers = [registry];
  const depth: Gauge<"kind"> = getOrCreate(
    registry,
    "stint_outbox_depth",
    () =>
      new Gauge({
        name: "stint_outbox_depth",
        help: "Outbox rows still to do (pending or running), per kind.",
        labelNames: ["kind"],
        registers,
        async collect() {
          try {
            const rows = await outboxStore.depthByKind(store.db);
            depth.reset();
            for (const row of rows) depth.set({ kind: row.kind }, row.count);
          } catch (error) {
            logger.warn({ err: safeErrorMessage(error) }, "outbox depth could not be read");
          }
        },
      }),
  );
  const oldestAge: Gauge = getOrCreate(
    registry,
    "stint_outbox_oldest_age_seconds",
    () =>
      new Gauge({
        name: "stint_outbox_oldest_age_seconds",
        help: "Age of the oldest pending outbox row (0 when none).",
        registers,
        async collect() {
          try {
            const oldest = await outboxStore.oldestPendingCreatedAt(store.db);
            oldestAge.set(oldest ? Math.max(0, (clock.now().getTime() - oldest.getTime()) / 1000) : 0);
          } catch (error) {
            logger.warn({ err: safeErrorMessage(error) }, "outbox age could not be read");
          }
        },
      }),
  );
  return {
    depth,
    oldestAge,
    failures: getOrCreate(
      registry,
      "stint_outbox_failures_total",
      () =>
        new Counter({
          name: "stint_outbox_failures_total",
          help: "Failed outbox attempts (including unknown kinds and timeouts), per kind.",
          labelNames: ["kind"],
          registers,
        }),
    ) as Counter<"kind">,
    deadLetters: getOrCreate(
      registry,
      "stint_outbox_dead_letters_total",
      () =>
        new Counter({
          name: "stint_outbox_dead_letters_total",
          help: "Outbox rows that used up their attempts.",
          registers,
        }),
    ) as Counter,
    executed: getOrCreate(
      registry,
      "stint_outbox_executed_total",
      () => new Counter({ name: "stint_outbox_executed_total", help: "Outbox rows run to success.", registers }),
    ) as Counter,
  };
}
