/**
 * The access index: every node's in-memory copy of the active activations and of the principals, for the
 * hot paths (the check API, activation tokens, bearer-token authentication, the vault's access decision,
 * the proxies' per-connection gate). See README.md for its invariants.
 *
 * Loaded at start after the node listens on `stint_access`; kept current by the messages the transactions
 * send (`send`, delivered at commit: LISTEN/NOTIFY on PostgreSQL, in-process on PGlite) and applied at once
 * on the node that committed (`tracked`); reloaded in full after a lost connection and, as a cross-check
 * against the database, on a timer. While it cannot vouch for itself (`view()` is null) callers ask the
 * database, as they did before it existed.
 */
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { newId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import {
  applyMessage,
  drift,
  emptyHeartbeat,
  emptyState,
  heardPing,
  heartbeatFresh,
  isLive,
  liveActivationOf,
  liveActivationsOf,
  mergeSnapshot,
  parseMessages,
  parseTxSnapshot,
  reflectedIn,
  renamedRoles,
  touchedBy,
  type IndexState,
  type Touched,
  type TxSnapshot,
} from "./access-index.rules.js";
import { createIndexListeners } from "./access-index.listeners.js";
import { createOwnNotifications, type AccessMessageBody } from "./access-index.own.js";
import * as indexStore from "./access-index.store.js";
import type { AccessMessage, ActiveActivation, PrincipalEntry } from "./access-index.types.js";

export type { AccessSubscriber, ActivationListener } from "./access-index.listeners.js";
export type { AccessMessageBody } from "./access-index.own.js";

export interface AccessIndexDeps {
  store: Pick<AppStore, "db" | "engine" | "listen">;
  clock: Clock;
  logger?: Pick<Logger, "warn" | "info">;
  registry?: Registry;
  /** This node's name in its heartbeats. */
  node?: string;
  /** How often the whole index is read again from the database and compared (drift is counted and logged). */
  crossCheckMs?: number;
  /** PostgreSQL: how often the node sends itself a heartbeat through the store. */
  heartbeatMs?: number;
  /**
   * PostgreSQL: answers come from memory only while the newest heartbeat heard was sent at most this long
   * ago, i.e. while every change committed before then is known to be applied. Otherwise from the database.
   */
  maxSilenceMs?: number;
  /** How often role names are compared with the database (the catalog sends no message when it renames one). */
  roleNamesMs?: number;
  /** Tests: runs when a reload has read the database and before it applies what it read (holds it there). */
  afterSnapshot?: () => Promise<void>;
}

/**
 * What `prepareMany` carries: ends only. They need no transaction id (an end is terminal, applied over any
 * snapshot), so the caller's statement sends them as they are.
 */
export type EndMessageBody = AccessMessageBody & { t: "end" };

/** What the index answers, valid for the moment it was asked (see `view()`). */
export interface AccessView {
  /** The principal's live activations, by role name. */
  activeFor(principalId: string): ActiveActivation[];
  /** The principal's live activation of this role (by name), else null: one lookup, no list (the check API). */
  activeRole(principalId: string, roleName: string): ActiveActivation | null;
  /** The activation if it is live now, else null. */
  activation(requestId: string): ActiveActivation | null;
  /** Whether the principal holds a live activation of one of these roles (by name). */
  hasActiveRole(principalId: string, roleNames: readonly string[]): boolean;
  principal(id: string): PrincipalEntry | null;
  principalByName(name: string): PrincipalEntry | null;
}

/** The channel the index's messages travel on (a caller that sends one in its own statement, see `prepareAct`). */
export const ACCESS_CHANNEL = indexStore.ACCESS_CHANNEL;
export const DEFAULT_CROSS_CHECK_MS = 30_000;
export const DEFAULT_HEARTBEAT_MS = 250;
export const DEFAULT_MAX_SILENCE_MS = 1_000;
export const DEFAULT_ROLE_NAMES_MS = 2_000;
const RELOAD_RETRY_MS = 1_000;
/**
 * At least this long between two reloads for notifications whose sender exited before it could be checked
 * (a role that may only connect can cause those at will); meanwhile the index answers from the database.
 */
const UNVERIFIED_RELOAD_GAP_MS = 1_000;

export function createAccessIndex(deps: AccessIndexDeps) {
  const { store, clock } = deps;
  const node = deps.node ?? `${hostname()}:${process.pid}:${newId()}`;
  const crossCheckMs = deps.crossCheckMs ?? DEFAULT_CROSS_CHECK_MS;
  const heartbeatMs = deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const maxSilenceMs = deps.maxSilenceMs ?? DEFAULT_MAX_SILENCE_MS;
  const heartbeatNeeded = store.engine === "postgres";

  let state: IndexState = emptyState();
  let loaded = false;
  let needsReload = true;
  let reloading: Promise<void> | null = null;
  let reloadAgain = false;
  /** While a reload runs: the messages heard since it began, and what they were about. */
  let journal: { heard: AccessMessage[]; touched: Touched } | null = null;
  /** The transactions the state's last reload saw: a message from one of them is already in the state. */
  let seenTx: TxSnapshot | null = null;
  const heartbeat = emptyHeartbeat();
  let pingN = 0;
  let beating = false;
  let started = false;
  let stopListening: (() => Promise<void>) | null = null;
  let crossCheckTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let roleNamesTimer: NodeJS.Timeout | undefined;
  let unverifiedTimer: NodeJS.Timeout | undefined;
  let unverifiedReloadAt = Number.NEGATIVE_INFINITY;
  /** The role-name pass under way, and the one queued behind it (for a caller whose rename it may have missed). */
  let roleNamesPass: Promise<void> | null = null;
  let roleNamesNext: Promise<void> | null = null;
  /** Bumped whenever messages may have been lost: caches compare it before and after a database read. */
  let generation = 0;
  const listeners = createIndexListeners();
  const own = createOwnNotifications({
    apply: (message) => apply(message),
    heard: (at) => {
      if (at > 0) metrics.lag.observe(Math.max(0, Date.now() - at) / 1000);
    },
  });

  const registers = deps.registry ? [deps.registry] : [];
  const metrics = {
    activations: new Gauge({
      name: "stint_access_index_activations",
      help: "Activations held in this node's access index (some may be past their expiry, which counts)",
      registers,
      collect() {
        this.set(state.activations.size);
      },
    }),
    current: new Gauge({
      name: "stint_access_index_current",
      help: "1 while this node's access index answers from memory, 0 while it asks the database",
      registers,
      collect() {
        this.set(isCurrent() ? 1 : 0);
      },
    }),
    lag: new Histogram({
      name: "stint_access_index_message_lag_seconds",
      help: "From a change's message being written (sender's clock) to this node applying it (another node's, or this node's own heard before its COMMIT returned)",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    reloads: new Counter({
      name: "stint_access_index_reloads_total",
      help: "Full reloads of the access index from the database, by reason",
      labelNames: ["reason"],
      registers,
    }),
    drift: new Counter({
      name: "stint_access_index_drift_total",
      help: "Activations a reload found the index had wrong: extra (live in memory, ended in the database) or missing",
      labelNames: ["kind"],
      registers,
    }),
    fallbacks: new Counter({
      name: "stint_access_index_fallbacks_total",
      help: "Hot-path answers taken from the database because the index could not vouch for itself",
      registers,
    }),
  };

  function isCurrent(): boolean {
    if (!loaded || needsReload) return false;
    return !heartbeatNeeded || heartbeatFresh(heartbeat, performance.now(), maxSilenceMs);
  }

  function apply(message: AccessMessage) {
    // Heard late: the last reload's snapshot already holds this change, and any later one it saw.
    if (!reflectedIn(seenTx, message)) {
      applyMessage(state, message, clock.now().getTime());
      if (journal) {
        journal.heard.push(message);
        const about = touchedBy(message);
        if (about.activation) journal.touched.activations.add(about.activation);
        if (about.principal) journal.touched.principals.add(about.principal);
        if (about.role) journal.touched.roles.add(about.role);
      }
    }
    listeners.deliver(message);
  }

  function receive(payload: string) {
    if (own.echo(payload)) return;
    const messages = parseMessages(payload);
    if (messages.length === 0) return;
    const first = messages[0]!;
    if (first.t === "ping") {
      if (first.node === node && heardPing(heartbeat, first.n).lost) lose("heartbeat-skipped");
      return;
    }
    // A batch is one notification: its lag is observed once.
    if (first.at > 0) metrics.lag.observe(Math.max(0, Date.now() - first.at) / 1000);
    for (const message of messages) apply(message);
  }

  /** Messages may have been lost: nothing cached is trusted until a full reload that started after now. */
  function lose(reason: string) {
    generation += 1;
    needsReload = true;
    listeners.reset();
    deps.logger?.warn(
      { reason },
      "access index: messages may have been lost; answering from the database until reloaded",
    );
    void reload(reason).catch(() => undefined);
  }

  /**
   * A notification was dropped unchecked (its sender exited first): it may have been a real change, so it is
   * lost like any other, but the reload it calls for waits out `UNVERIFIED_RELOAD_GAP_MS` after the last one.
   */
  function unverified() {
    if (unverifiedTimer || !started) return;
    const wait = Math.max(0, unverifiedReloadAt + UNVERIFIED_RELOAD_GAP_MS - performance.now());
    if (wait === 0) {
      unverifiedReloadAt = performance.now();
      lose("unverified-sender");
      return;
    }
    generation += 1;
    needsReload = true;
    listeners.reset();
    unverifiedTimer = setTimeout(() => {
      unverifiedTimer = undefined;
      unverifiedReloadAt = performance.now();
      lose("unverified-sender");
    }, wait);
    unverifiedTimer.unref();
  }

  function reload(reason: string): Promise<void> {
    if (reloading) {
      reloadAgain = true;
      return reloading;
    }
    reloading = (async () => {
      do {
        reloadAgain = false;
        const heard: AccessMessage[] = [];
        const seen: Touched = { activations: new Set(), principals: new Set(), roles: new Set() };
        journal = { heard, touched: seen };
        try {
          const read = await indexStore.loadSnapshot(store.db);
          const tx = parseTxSnapshot(read.tx);
          if (!tx) throw new Error(`access index: unreadable snapshot ${read.tx}`);
          await deps.afterSnapshot?.();
          const now = clock.now().getTime();
          const next = mergeSnapshot(
            { tx, activations: read.activations, principals: read.principals },
            state,
            heard,
            now,
          );
          const found = drift(state, next, seen, now);
          const wasLoaded = loaded;
          state = next;
          seenTx = tx;
          loaded = true;
          // Echoes still awaited of notifications applied here: lost, or on their way (one that comes is
          // parsed and merged as any other message: acts and ends merge the same in any order).
          own.forgetApplied();
          metrics.reloads.inc({ reason });
          if (wasLoaded && (found.extra > 0 || found.missing > 0)) {
            metrics.drift.inc({ kind: "extra" }, found.extra);
            metrics.drift.inc({ kind: "missing" }, found.missing);
            deps.logger?.warn({ reason, ...found }, "access index: a reload found activations the index had wrong");
          }
        } finally {
          journal = null;
        }
      } while (reloadAgain);
      // A loss waiting for its own reload (`unverified`) keeps the index from vouching until then.
      needsReload = unverifiedTimer !== undefined;
    })()
      .catch((error: unknown) => {
        deps.logger?.warn({ err: error, reason }, "access index: reload failed; trying again");
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => void reload(reason).catch(() => undefined), RELOAD_RETRY_MS);
        retryTimer.unref();
        throw error;
      })
      .finally(() => {
        reloading = null;
      });
    return reloading;
  }

  /**
   * Renames the activations of roles renamed in the database (messages carry the name at activation). Once
   * the returned promise settles, every rename committed before the call is applied: a pass already under way
   * may have read the names before it, so a call meanwhile waits for one more pass (at most one is queued).
   */
  function checkRoleNames(): Promise<void> {
    if (roleNamesPass) {
      roleNamesNext ??= roleNamesPass.then(() => {
        roleNamesNext = null;
        return checkRoleNames();
      });
      return roleNamesNext;
    }
    roleNamesPass = roleNamesOnce().finally(() => (roleNamesPass = null));
    return roleNamesPass;
  }

  async function roleNamesOnce() {
    if (!loaded) return;
    try {
      const names = new Map((await indexStore.roleNames(store.db)).map((r) => [r.id, r.name]));
      for (const [id, name] of renamedRoles(state, names)) apply({ t: "role", at: 0, id, name });
    } catch {
      // The store is unreachable: the next pass (or the cross-check) catches up.
    }
  }

  async function beat() {
    const n = ++pingN;
    heartbeat.outstanding.set(n, performance.now());
    try {
      await indexStore.notify(store.db, { t: "ping", at: Date.now(), node, n });
    } catch {
      heartbeat.outstanding.delete(n);
    }
  }

  const view: AccessView = {
    activeFor: (principalId) => liveActivationsOf(state, principalId, clock.now().getTime()),
    activeRole: (principalId, roleName) => liveActivationOf(state, principalId, roleName, clock.now().getTime()),
    activation(requestId) {
      const activation = state.activations.get(requestId);
      return activation && isLive(activation, clock.now().getTime()) ? activation : null;
    },
    hasActiveRole(principalId, roleNames) {
      if (roleNames.length === 0) return false;
      const ids = state.byPrincipal.get(principalId);
      if (!ids) return false;
      const now = clock.now().getTime();
      for (const id of ids) {
        const activation = state.activations.get(id)!;
        if (isLive(activation, now) && roleNames.includes(activation.roleName)) return true;
      }
      return false;
    },
    principal: (id) => state.principals.get(id) ?? null,
    principalByName(name) {
      const id = state.principalIdsByName.get(name);
      return id === undefined ? null : (state.principals.get(id) ?? null);
    },
  };

  return {
    node,

    /** Listens, loads, and starts the heartbeat and the cross-check. */
    async start() {
      if (started) return;
      started = true;
      stopListening = await store.listen(indexStore.ACCESS_CHANNEL, receive, {
        onReconnect: () => lose("listen-reconnected"),
        onUnverified: unverified,
      });
      await reload("start");
      crossCheckTimer = setInterval(() => void reload("cross-check").catch(() => undefined), crossCheckMs);
      crossCheckTimer.unref();
      roleNamesTimer = setInterval(() => void checkRoleNames(), deps.roleNamesMs ?? DEFAULT_ROLE_NAMES_MS);
      roleNamesTimer.unref();
      if (heartbeatNeeded) {
        heartbeatTimer = setInterval(() => {
          if (beating) return;
          beating = true;
          void beat().finally(() => (beating = false));
        }, heartbeatMs);
        heartbeatTimer.unref();
        await beat();
      }
    },

    async stop() {
      clearInterval(crossCheckTimer);
      clearInterval(roleNamesTimer);
      clearInterval(heartbeatTimer);
      clearTimeout(retryTimer);
      clearTimeout(unverifiedTimer);
      unverifiedTimer = undefined;
      started = false;
      loaded = false;
      await stopListening?.().catch(() => undefined);
      stopListening = null;
      await reloading?.catch(() => undefined);
    },

    /**
     * The index's answers, or null when it cannot vouch for them right now (not loaded, a reload pending
     * after lost messages, no recent heartbeat): the caller then asks the database.
     */
    view(): AccessView | null {
      if (isCurrent()) return view;
      if (started) metrics.fallbacks.inc();
      return null;
    },

    /** Whether `view()` would answer (without counting a fallback). */
    current: isCurrent,

    /** Changes whenever messages may have been lost (a cache must not keep what it read across a change). */
    generation: () => generation,

    subscribe: listeners.subscribe,
    onActivation: listeners.onActivation,
    onActivated: listeners.onActivated,
    onEnded: listeners.onEnded,
    /** `onActivation`'s listeners now (tests). */
    activationListeners: listeners.activationListeners,

    /**
     * Inside a transaction: tells every node, when it commits. A transaction run through `tracked` also
     * applies it on this node right after the commit, before the call that made the change returns.
     */
    async send(tx: Kysely<Database>, body: AccessMessageBody): Promise<void> {
      const notification = own.of(tx, [body], false)[0]!;
      const message = notification.messages[0]!;
      const x = await indexStore.notify(tx, message);
      if (x !== undefined) message.x = x;
      own.register(tx, notification);
    },

    /**
     * `send` of an `act` for a caller that sends it in a statement it runs anyway (submit: the one that inserts
     * the request): the channel and the payload's text before the transaction id, which that statement
     * completes (`head || pg_current_xact_id()::text || '}'`). The caller gives the id back (`sent`) once the
     * statement sent it; only then is the message applied on this node at commit.
     */
    prepareAct(
      tx: Kysely<Database>,
      body: AccessMessageBody & { t: "act" },
    ): { channel: string; head: string; sent(x: number): void } {
      const notification = own.of(tx, [body], false)[0]!;
      const message = notification.messages[0]!;
      return {
        channel: indexStore.ACCESS_CHANNEL,
        head: `${JSON.stringify(message).slice(0, -1)},"x":`,
        sent(x: number) {
          message.x = x;
          own.register(tx, notification);
        },
      };
    },

    /**
     * An `act` the caller's statement sent in words of its own (the provisioning worker's, built in SQL):
     * applied on this node at commit, like `prepareAct`'s once `sent`; its echo is read as any other message.
     */
    sentAct(tx: Kysely<Database>, body: AccessMessageBody & { t: "act" }, x: number): void {
      own.register(tx, { n: 0, messages: [{ ...body, at: Date.now(), x }], applied: false });
    },

    /** `send` for many messages, in one statement (the scheduler ending a batch of activations). */
    async sendMany(tx: Kysely<Database>, bodies: AccessMessageBody[]): Promise<void> {
      const notifications = own.of(tx, bodies, false);
      const messages = notifications.flatMap((notification) => notification.messages);
      const x = await indexStore.notifyMany(tx, messages);
      if (x !== undefined)
        for (const message of messages) if (message.t === "act" || message.t === "prn") message.x = x;
      for (const notification of notifications) own.register(tx, notification);
    },

    /**
     * `sendMany` of ends for a caller that sends the notifications itself, in a statement of its own in `tx`
     * (the scheduler sends them with its audit events): the notifications to send, in this order. Applied on
     * this node at commit as `sendMany`'s are; the caller must send them in `tx`.
     */
    prepareMany(tx: Kysely<Database>, bodies: EndMessageBody[]): { channel: string; payload: string }[] {
      return own
        .of(tx, bodies)
        .flatMap((notification) => indexStore.payloadsOfNotification(notification.messages))
        .map((payload) => ({ channel: indexStore.ACCESS_CHANNEL, payload }));
    },

    /**
     * The store, with transactions whose messages are applied on this node as soon as they commit (read
     * your own writes: a revocation answered is a revocation this node honours). Other nodes hear them
     * through the channel; this one skips their echo.
     */
    tracked<S extends Pick<AppStore, "transaction">>(inner: S): S {
      const transaction: AppStore["transaction"] = (fn) => own.transaction((run) => inner.transaction(run), fn);
      return Object.assign(Object.create(inner) as S, { transaction });
    },

    /** Compares role names with the database now (tests; the timer does it every `roleNamesMs`). */
    checkRoleNames,

    /** A full reload now (tests; the timer does it every `crossCheckMs`). */
    reload: (reason = "requested") => reload(reason),

    /** Simulates lost messages (tests): exactly what a skipped heartbeat or a reconnect does. */
    lose: (reason = "requested") => lose(reason),

    /** Registers the index's metrics (when the registry was not known at creation). */
    registerMetrics(registry: Registry) {
      for (const metric of Object.values(metrics)) registry.registerMetric(metric);
    },

    stats() {
      return {
        loaded,
        current: isCurrent(),
        activations: state.activations.size,
        principals: state.principals.size,
        tombstones: state.ended.size,
        generation,
        /** This node's notifications applied at commit whose echo has not come back yet. */
        echoesAwaited: own.awaited(),
      };
    },
  };
}

export type AccessIndex = ReturnType<typeof createAccessIndex>;
