/**
 * SIEM streaming: one deliverer loop per configured destination. The loop holds the destination's lease
 * (one node of the cluster delivers it), reads the chained events after the destination's cursor with the
 * signed checkpoints among them, formats them, hands them to the transport and moves the cursor once the
 * transport says they were delivered. A failure sends everything after the cursor again after a capped
 * backoff: delivery is at least once, in chain order.
 */
import os from "node:os";
import { Counter, Gauge, type Registry } from "prom-client";
import type { AppStore } from "../../db/index.js";
import type { Logger } from "../../lib/logger.js";
import type { AuditLog } from "../audit/audit.service.js";
import {
  backoffMs,
  headerField,
  hecEnvelope,
  octetCounted,
  streamItems,
  syslogMessage,
  type Position,
} from "./siem.rules.js";
import * as siemStore from "./siem.store.js";
import { createHecSender, createSyslogSender, readHecToken, type Sender } from "./siem.transports.js";
import type { DestinationStatus, SiemDestination, StreamItem } from "./siem.types.js";

export interface SiemService {
  start(): Promise<void>;
  /** Stops every loop after the send in flight, closes the connections and gives the leases up. */
  stop(): Promise<void>;
  status(): Promise<DestinationStatus[]>;
}

export interface SiemServiceOptions {
  store: Pick<AppStore, "db">;
  audit: Pick<AuditLog, "anchorsBetween">;
  destinations: readonly SiemDestination[];
  /** This node's name in the lease rows. */
  holder: string;
  registry?: Registry | undefined;
  logger?: Pick<Logger, "info" | "warn" | "error"> | undefined;
  productVersion?: string | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Poll interval while caught up (default 250 ms). */
  pollMs?: number | undefined;
  /** Lease TTL (default 5 s): a dead node's destinations are taken over within about this long. */
  leaseMs?: number | undefined;
  now?: () => number;
}

/**
 * Syslog batches written and not yet settled, at most: what a failure sends again is bounded by it, and so is
 * the throughput under a backlog (batchSize × this per settleMs: 200 × 64 per 2 s is 6,400 events a second).
 */
const MAX_UNCONFIRMED = 64;

function metric<M>(registry: Registry | undefined, name: string, create: (registers: Registry[]) => M): M {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as M;
  return create(registry ? [registry] : []);
}

export function endpointOf(destination: SiemDestination): string {
  if (destination.kind === "hec") {
    const url = new URL(destination.url);
    return `${url.origin}${url.pathname}`;
  }
  return `${destination.transport}://${destination.host.includes(":") ? `[${destination.host}]` : destination.host}:${destination.port}`;
}

export function createSiemService(options: SiemServiceOptions): SiemService {
  const { store, audit, holder, registry } = options;
  const pollMs = options.pollMs ?? 250;
  const leaseMs = options.leaseMs ?? 5000;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? { info: () => undefined, warn: () => undefined, error: () => undefined };
  const hostname = headerField(os.hostname(), 255);

  const lagEvents = metric(
    registry,
    "stint_siem_lag_events",
    (registers) =>
      new Gauge({
        name: "stint_siem_lag_events",
        help: "Chained audit events not yet delivered to the SIEM destination (the head's seq minus the destination's cursor).",
        labelNames: ["destination"],
        registers,
      }),
  );
  const lagSeconds = metric(
    registry,
    "stint_siem_lag_seconds",
    (registers) =>
      new Gauge({
        name: "stint_siem_lag_seconds",
        help: "Age of the oldest chained audit event not yet delivered to the SIEM destination (0 when caught up).",
        labelNames: ["destination"],
        registers,
      }),
  );
  const delivered = metric(
    registry,
    "stint_siem_delivered_total",
    (registers) =>
      new Counter({
        name: "stint_siem_delivered_total",
        help: "Stream records (events and checkpoints) delivered to the SIEM destination, resends included.",
        labelNames: ["destination"],
        registers,
      }),
  );
  const failures = metric(
    registry,
    "stint_siem_send_failures_total",
    (registers) =>
      new Counter({
        name: "stint_siem_send_failures_total",
        help: "Failed sends to the SIEM destination (each is retried after a capped backoff).",
        labelNames: ["destination"],
        registers,
      }),
  );

  // Tokens are read once, now: a missing one stops the server from starting, not the first send.
  const loops = options.destinations.map((destination) => {
    const sender: Sender =
      destination.kind === "hec"
        ? createHecSender(destination, readHecToken(destination, options.env))
        : createSyslogSender(destination, now);
    return createLoop(destination, sender);
  });

  function createLoop(destination: SiemDestination, sender: Sender) {
    const name = destination.name;
    const state = {
      leader: false,
      leaseCheckedAt: 0,
      running: false,
      state: "idle" as DestinationStatus["state"],
      lastError: null as string | null,
      retries: 0,
      lastLagAt: 0,
    };
    let wake: (() => void) | undefined;
    let loop: Promise<void> | undefined;

    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(0, ms));
        function done() {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });

    async function holdLease(): Promise<boolean> {
      const at = now();
      if (state.leader && at - state.leaseCheckedAt < leaseMs / 3) return true;
      const had = state.leader;
      try {
        state.leader = await siemStore.takeLease(store.db, name, holder, leaseMs);
      } catch (error) {
        state.leader = false;
        logger.warn({ destination: name, err: (error as Error).message }, "SIEM destination lease unreachable");
      }
      state.leaseCheckedAt = at;
      if (state.leader && !had) logger.info({ destination: name, holder }, "this node streams to the SIEM destination");
      if (!state.leader && had) {
        logger.warn({ destination: name, holder }, "this node lost the SIEM destination's lease");
        sender.reset();
      }
      return state.leader;
    }

    async function refreshLag(cursorSeq?: number): Promise<void> {
      state.lastLagAt = now();
      const seq = cursorSeq ?? (await siemStore.readCursor(store.db, name))?.seq ?? 0;
      const { headSeq, nextTime } = await siemStore.lagFrom(store.db, seq);
      lagEvents.set({ destination: name }, Math.max(0, headSeq - seq));
      lagSeconds.set({ destination: name }, nextTime ? Math.max(0, now() - nextTime.getTime()) / 1000 : 0);
    }

    function format(item: StreamItem): Buffer {
      if (destination.kind === "hec")
        return Buffer.from(
          hecEnvelope(item, {
            format: destination.format,
            host: hostname,
            source: destination.source,
            sourcetype: destination.sourcetype,
            index: destination.index,
            productVersion: options.productVersion,
          }),
          "utf8",
        );
      return octetCounted(
        syslogMessage(item, {
          format: destination.format,
          facility: destination.facility,
          hostname: destination.hostname ?? hostname,
          appName: destination.appName,
          productVersion: options.productVersion,
        }),
      );
    }

    async function confirm(persisted: Position): Promise<Position> {
      const position = sender.confirmed(now());
      if (!position) return persisted;
      if (!(await siemStore.advance(store.db, name, holder, position, leaseMs))) {
        // Another node took the lease: it delivers now; stop and start over from its cursor when ours again.
        state.leader = false;
        sender.reset();
        throw new Error("another node took the lease before the cursor could move");
      }
      state.leaseCheckedAt = now();
      await refreshLag(position.seq);
      return position;
    }

    async function run(): Promise<void> {
      let persisted: Position | undefined;
      let sent: Position | undefined;
      let failuresInRow = 0;
      while (state.running) {
        try {
          if (!(await holdLease())) {
            state.state = "standby";
            persisted = sent = undefined;
            if (now() - state.lastLagAt > 1000) await refreshLag();
            await sleep(leaseMs / 3);
            continue;
          }
          if (!persisted || !sent) {
            const cursor = await siemStore.readCursor(store.db, name);
            persisted = { seq: cursor?.seq ?? 0, checkpointSeq: cursor?.checkpointSeq ?? 0 };
            sent = persisted;
          }
          const broken = sender.broken();
          if (broken) throw broken;
          persisted = await confirm(persisted);
          if (sender.unconfirmed() >= MAX_UNCONFIRMED) {
            await sleep(Math.min(pollMs, Math.max(1, (sender.nextConfirmAt() ?? now() + pollMs) - now())));
            continue;
          }
          const events = await siemStore.eventsAfter(store.db, sent.seq, destination.batchSize);
          const lastSeq = events.at(-1)?.seq ?? sent.seq;
          const anchors =
            lastSeq > sent.checkpointSeq ? await audit.anchorsBetween(sent.checkpointSeq + 1, lastSeq) : [];
          const items = streamItems(
            sent,
            events.map((event) => ({ kind: "event", event })),
            anchors.map((anchor) => ({ kind: "checkpoint", anchor })),
          );
          if (items.length === 0) {
            state.state = sender.unconfirmed() > 0 ? "sending" : "idle";
            if (now() - state.lastLagAt > 1000) await refreshLag(persisted.seq);
            const confirmAt = sender.nextConfirmAt();
            await sleep(confirmAt === undefined ? pollMs : Math.min(pollMs, Math.max(1, confirmAt - now())));
            continue;
          }
          state.state = "sending";
          const after = items.at(-1)!.after;
          await sender.send(
            items.map(({ item }) => format(item)),
            after,
          );
          sent = after;
          delivered.inc({ destination: name }, items.length);
          failuresInRow = 0;
          state.retries = 0;
          state.lastError = null;
          persisted = await confirm(persisted);
          if (now() - state.lastLagAt > 1000) await refreshLag(persisted.seq);
        } catch (error) {
          failuresInRow++;
          state.retries++;
          failures.inc({ destination: name });
          const message = error instanceof Error ? error.message : String(error);
          state.lastError = message;
          state.state = "retrying";
          // What was sent and not confirmed goes again from the cursor: at least once, in order.
          sender.reset();
          sent = persisted;
          const wait = backoffMs(failuresInRow, destination.retryCapMs);
          logger.warn({ destination: name, err: message, retryInMs: wait }, "SIEM delivery failed; retrying");
          await refreshLag(persisted?.seq).catch(() => undefined);
          await sleep(wait);
        }
      }
    }

    return {
      destination,
      sender,
      state,
      start() {
        if (state.running) return;
        state.running = true;
        loop = run();
      },
      async stop() {
        state.running = false;
        wake?.();
        await loop;
        await sender.close().catch(() => undefined);
        if (state.leader) {
          state.leader = false;
          await siemStore.releaseLease(store.db, name, holder).catch(() => undefined);
        }
      },
    };
  }

  return {
    async start() {
      for (const { destination } of loops)
        await siemStore.ensureCursor(store.db, destination.name, destination.startAt);
      for (const loop of loops) loop.start();
    },
    async stop() {
      await Promise.all(loops.map((loop) => loop.stop()));
    },
    async status() {
      const cursors = new Map((await siemStore.readCursors(store.db)).map((row) => [row.destination, row]));
      const out: DestinationStatus[] = [];
      for (const { destination, sender, state } of loops) {
        const cursor = cursors.get(destination.name);
        const seq = cursor?.seq ?? 0;
        const { headSeq, nextTime } = await siemStore.lagFrom(store.db, seq);
        const held = cursor?.holder !== null && cursor !== undefined && cursor.leaseExpiresAt.getTime() > now();
        out.push({
          name: destination.name,
          kind: destination.kind,
          format: destination.format,
          endpoint: endpointOf(destination),
          deliveredSeq: seq,
          checkpointSeq: cursor?.checkpointSeq ?? 0,
          headSeq,
          lagEvents: Math.max(0, headSeq - seq),
          lagSeconds: nextTime ? Math.max(0, now() - nextTime.getTime()) / 1000 : 0,
          deliveredAt: cursor?.deliveredAt?.toISOString() ?? null,
          deliveringHere: state.leader,
          holder: held ? cursor.holder : null,
          bufferedBytes: sender.bufferedBytes(),
          state: state.leader ? state.state : "standby",
          lastError: state.lastError,
          retries: state.retries,
        });
      }
      return out;
    },
  };
}
