/**
 * Brokered sessions: the gate the proxies ask (who may connect where, as which upstream login, under
 * which policy), recordings in the blob store, the audit trail, database tokens and SSH certificates,
 * and the kill switch: every session of an activation ends when the activation ends, on every node
 * (NOTIFY committed with the activation's end; a sweep catches what a lost notification missed).
 */
import type { AppStore } from "../../db/index.js";
import { sha256Hex } from "../../lib/security.js";
import * as sessionStore from "./sessions.store.js";
import { type SessionKind } from "./sessions.types.js";
import { endedPayloads, type BusMessage } from "./sessions.bus.js";
import { createSessionsCore, SESSIONS_CHANNEL, type ProxyAddress, type SessionServiceDeps } from "./sessions.core.js";
import { createOpenSession } from "./sessions.open.js";
import { createGate } from "./sessions.gate.js";
import { createSweeper } from "./sessions.sweep.js";
import { createCredentials } from "./sessions.credentials.js";
import { createSessionQueries } from "./sessions.queries.js";

export { SESSIONS_CHANNEL, type ProxyAddress, type SessionServiceDeps };
export type { SessionDto } from "./sessions.queries.js";

export type SessionService = ReturnType<typeof createSessionService>;

export function createSessionService(deps: SessionServiceDeps) {
  const core = createSessionsCore(deps);
  const { store, logger, node, live, proxies, localProxies, awaitedTokens, sshKey, abort } = core;

  const gate = createGate(core, createOpenSession(core));
  const { onBus, sweep } = createSweeper(core);
  let stopListening: (() => Promise<void>) | null = null;
  let sweepTimer: NodeJS.Timeout | undefined;

  return {
    gate,
    node,

    async start() {
      await sshKey("user-ca");
      stopListening = await store.listen(SESSIONS_CHANNEL, onBus);
      const every = deps.sweepMs ?? 5000;
      sweepTimer = setInterval(() => {
        sweep().catch((error: unknown) => logger.warn({ err: error }, "session sweep failed"));
      }, every);
      sweepTimer.unref();
    },

    async stop() {
      clearInterval(sweepTimer);
      for (const entry of live.values())
        abort(entry, { reason: "shutdown", message: "Stint is shutting down; reconnect in a moment." }, Date.now());
      await stopListening?.().catch(() => undefined);
      stopListening = null;
    },

    liveSessions: () => live.size,

    /** One sweep now (the timer runs it every few seconds): touch this node's sessions, end lost ones, catch missed kills. */
    sweepOnce: () => sweep(),

    /** `address`: what clients are told; `local`: where this node's proxy is bound (default: the same). */
    setProxyAddress(kind: SessionKind, address: ProxyAddress, local: ProxyAddress = address) {
      proxies[kind] = address;
      localProxies[kind] = local;
    },

    /** Where this node's own proxy of `kind` listens, null when it runs none. */
    localProxyAddress: (kind: SessionKind): ProxyAddress | null => localProxies[kind] ?? null,

    /**
     * Calls `opened` with the id (and target) of the session the database token `token` opens through this
     * node's proxy (the SQL console learns which session its connection is). Returns the function that stops
     * waiting.
     */
    awaitSessionOf(token: string, opened: (session: { id: string; target: string }) => void): () => void {
      const hash = sha256Hex(token);
      awaitedTokens.set(hash, opened);
      return () => awaitedTokens.delete(hash);
    },

    proxyHostKey: () => sshKey("proxy-host").then((pair) => pair.privateKey),

    /** Inside the transaction that ends an activation: its sessions end everywhere when it commits. */
    async onActivationEnded(
      tx: AppStore["db"],
      ended: { requestId: string; role: string; state: string; by: string; reason: string },
    ) {
      const message: BusMessage = { type: "activation", ...ended, at: Date.now() };
      await sessionStore.notify(tx, SESSIONS_CHANNEL, message);
    },

    /** `onActivationEnded` for many activations ended in one transaction: one statement. */
    async onActivationsEnded(
      tx: AppStore["db"],
      ended: { requestId: string; role: string; state: string; by: string; reason: string }[],
    ) {
      const at = Date.now();
      // A batch travels as a few `activations` messages (sessions.bus.ts), not one notification each.
      await sessionStore.notifyTexts(tx, SESSIONS_CHANNEL, endedPayloads(ended.map((e) => ({ ...e, at }))));
    },

    /**
     * The bus messages `onActivationsEnded` sends, for a caller that sends them in a statement of its own (the
     * scheduler's expiries send them with their audit events: one round trip fewer per batch).
     */
    endedNotifications(ended: { requestId: string; role: string; state: string; by: string; reason: string }[]) {
      const at = Date.now();
      return endedPayloads(ended.map((e) => ({ ...e, at }))).map((payload) => ({ channel: SESSIONS_CHANNEL, payload }));
    },

    ...createCredentials(core),
    ...createSessionQueries(core),
  };
}
