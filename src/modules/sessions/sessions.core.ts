/**
 * What every part of the session broker shares (sessions.service.ts wires the parts): the dependencies, this
 * node's live sessions and proxy addresses, the metrics, Stint's SSH keys, and the small rules every
 * decision uses (a refusal is counted and audited the same way wherever it happens).
 */
import { hostname } from "node:os";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { AppStore } from "../../db/index.js";
import type { BlobStore } from "../../lib/blob-store.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import { deriveKey, open, seal } from "../../lib/security.js";
import { policySpec } from "../../contract/catalog.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { VaultService } from "../vault/vault.service.js";
import { roleSessionOf, sessionOptionsOf } from "../connectors/session-options.rules.js";
import { currentAddressPolicy } from "../connectors/index.js";
import { AddressRefusedError, resolveAllowedAddress } from "../../lib/address-guard.js";
import type { LiveHub } from "./live-hub.js";
import * as sessionStore from "./sessions.store.js";
import { SessionRefusedError, type SessionEnd, type SessionKind, type SessionPolicy } from "./sessions.types.js";
import { generateCa } from "./ssh-ca.js";
import { generateEd25519KeyPair } from "../../lib/ssh-keys.js";

export const SESSIONS_CHANNEL = "stint_sessions";

export interface SessionServiceDeps {
  store: Pick<AppStore, "db" | "transaction" | "listen">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  masterKey: Uint8Array;
  blobs: BlobStore;
  /** The largest a session's recording may grow (STINT_RECORDING_MAX_BYTES); none when absent. */
  recordingMaxBytes?: number;
  registry: Registry;
  logger: Logger;
  vault: Pick<VaultService, "injectValue" | "openValue">;
  /** This process, as recorded on its sessions. */
  node?: string;
  /** How often live sessions are checked against the database (the safety net behind NOTIFY). */
  sweepMs?: number;
  /** The node's access index: the gate refuses an activation it does not hold live before any database read. */
  index?: Pick<AccessIndex, "view">;
  /** Live watchers and moderation (live-hub.ts): every session's recording lines go there as written. */
  live?: Pick<LiveHub, "open">;
}

export interface ProxyAddress {
  host: string;
  port: number;
  /** A database proxy with TLS: its certificate's SHA-256 ("AB:CD:…"), which clients check it against. */
  certificateSha256?: string;
}

export interface LiveEntry {
  id: string;
  requestId: string;
  controller: AbortController;
  /** When the cause of an abort happened (for the kill latency). */
  causeAt: number | null;
  timer: NodeJS.Timeout | undefined;
}

export type SessionsCore = ReturnType<typeof createSessionsCore>;

export function createSessionsCore(deps: SessionServiceDeps) {
  const { store, audit, clock, blobs, registry, logger } = deps;
  const node = deps.node ?? `${hostname()}:${process.pid}`;
  const keyWrap = deriveKey(deps.masterKey, "ssh-keys");
  const live = new Map<string, LiveEntry>();
  const proxies: Partial<Record<SessionKind, ProxyAddress>> = {};
  /** Where this node's own proxies are bound (the SQL console connects there, never to a public name). */
  const localProxies: Partial<Record<SessionKind, ProxyAddress>> = {};
  /** Sessions awaited by the SHA-256 of the database token that opens them (the SQL console's, in-process). */
  const awaitedTokens = new Map<string, (session: { id: string; target: string }) => void>();

  const liveGauge = new Gauge({
    name: "stint_sessions_live",
    help: "Brokered sessions open on this node",
    labelNames: ["kind"],
    registers: [registry],
  });
  const bytesRelayed = new Counter({
    name: "stint_session_bytes_total",
    help: "Bytes relayed by the session proxies (up: client to target, down: target to client)",
    labelNames: ["kind", "direction"],
    registers: [registry],
  });
  const recordingFailures = new Counter({
    name: "stint_session_recording_failures_total",
    help: "Sessions whose recording could not be started or written",
    labelNames: ["kind"],
    registers: [registry],
  });
  const sessionsOpened = new Counter({
    name: "stint_sessions_total",
    help: "Session attempts through the proxies by outcome",
    labelNames: ["kind", "outcome"],
    registers: [registry],
  });
  const killLatency = new Histogram({
    name: "stint_session_kill_latency_seconds",
    help: "From a kill or the end of an activation to its sessions closed",
    labelNames: ["cause"],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });

  // ---- keys ----

  const keyCache = new Map<string, { publicKey: string; privateKey: string }>();
  async function sshKey(purpose: "user-ca" | "proxy-host") {
    const cached = keyCache.get(purpose);
    if (cached) return cached;
    let row = await sessionStore.findSshKey(store.db, purpose);
    if (!row) {
      const pair = purpose === "user-ca" ? generateCa() : hostKeyPair();
      await sessionStore.insertSshKey(store.db, {
        purpose,
        publicKey: pair.publicKey,
        sealedPrivateKey: seal(keyWrap, pair.privateKey, `ssh-key:${purpose}`),
        now: clock.now(),
      });
      row = (await sessionStore.findSshKey(store.db, purpose))!;
    }
    const pair = {
      publicKey: row.public_key,
      privateKey: open(keyWrap, row.sealed_private_key, `ssh-key:${purpose}`).toString("utf8"),
    };
    keyCache.set(purpose, pair);
    return pair;
  }

  // ---- helpers ----

  const userActor = (id: string, name: string): Actor => ({
    kind: "principal",
    id,
    name,
    principalKind: "user",
    roles: [],
  });
  const BROKER: Actor = { kind: "system", name: "session-broker" };
  const context = (clientAddress: string | null): CallContext => ({
    correlationId: newId(),
    sourceIp: clientAddress,
    userAgent: null,
  });

  /** Refused statements audited one by one per session; later ones are in the query log only. */
  const MAX_AUDITED_REFUSALS = 100;
  /** File transfers audited one by one per session; later ones are in the recording only. */
  const MAX_AUDITED_TRANSFERS = 1_000;

  function policyOf(row: sessionStore.ActivationRow): SessionPolicy {
    const parsed = policySpec.safeParse(row.policy_spec);
    return parsed.success
      ? parsed.data.session
      : { recording: "required", portForwarding: false, queryParameters: false };
  }

  async function refuse(
    kind: SessionKind,
    code: string,
    message: string,
    audit_: { actor: Actor; clientAddress: string | null; details: Record<string, unknown> } | null,
  ): Promise<never> {
    sessionsOpened.inc({ kind, outcome: "refused" });
    if (audit_)
      await audit
        .record(audit_.actor, context(audit_.clientAddress), {
          action: "session.refused",
          outcome: "denied",
          reason: message,
          details: { kind, code, ...audit_.details },
        })
        .catch((error: unknown) => logger.error({ err: error }, "could not audit a refused session"));
    throw new SessionRefusedError(code, message);
  }

  /**
   * Where the proxy may connect for `host`: resolved now and judged by the address policy (as the
   * connectors are), before any secret is opened. A name that resolves to the metadata service or a
   * denied network is refused; the proxy connects to the returned address only.
   */
  async function upstreamAddress(
    kind: SessionKind,
    host: string,
    target: string,
    who: { actor: Actor; clientAddress: string | null; details: Record<string, unknown> },
  ): Promise<string> {
    try {
      return await resolveAllowedAddress(host, currentAddressPolicy());
    } catch (error) {
      if (error instanceof AddressRefusedError)
        return refuse(kind, "ADDRESS_REFUSED", `Stint does not connect to ${target}: ${error.message}.`, who);
      return refuse(kind, "TARGET_UNREACHABLE", `The address of ${target} (${host}) does not resolve.`, who);
    }
  }

  async function principalByName(name: string) {
    return store.db
      .selectFrom("principals")
      .select(["id", "name", "status", "kind"])
      .where("name", "=", name)
      .executeTakeFirst();
  }

  /**
   * The session secret for the target's upstream. The vault decides (one decision for every value it
   * releases): only a secret allowed for this target at its current endpoint, never a break-glass one.
   */
  async function sealedValue(
    kind: SessionKind,
    path: string,
    activation: sessionStore.ActivationRow,
    who: { actor: Actor; clientAddress: string | null; details: Record<string, unknown> },
  ) {
    try {
      const value = await deps.vault.injectValue(path, {
        id: activation.target_id,
        kind: activation.target_kind,
        address: activation.address,
        options: configOptions(activation),
      });
      if (value) return value;
    } catch (error) {
      if (error instanceof StintError)
        return refuse(kind, "NO_CREDENTIAL", `The session credential cannot be read: ${error.message}`, who);
      throw error;
    }
    return refuse(kind, "NO_CREDENTIAL", `The session credential ${path} is not in the vault.`, who);
  }

  function abort(entry: LiveEntry, end: SessionEnd, causeAt: number) {
    if (entry.controller.signal.aborted) return;
    entry.causeAt = causeAt;
    entry.controller.abort(end);
  }

  /**
   * The gate's decision on an activation, from the access index: one it does not hold live (ended, expired
   * by the clock) opens nothing, before any database read. The upstream details are then read with the
   * same conditions, so both must agree. Without a current index the database alone decides.
   */
  function heldLive(requestId: string): boolean {
    const view = deps.index?.view();
    return view ? view.activation(requestId) !== null : true;
  }

  /**
   * The upstream login of a session: the role's own (`entitlement.session`), else the target's
   * (`options.session`). Either way the vault releases the secret only if it is allowed for this target.
   */
  function sessionLoginOf(row: sessionStore.ActivationRow) {
    return roleSessionOf((row.entitlement ?? {}) as Record<string, unknown>) ?? sessionOptionsOf(configOptions(row));
  }

  function configOptions(row: sessionStore.ActivationRow): Record<string, unknown> {
    const config = (row.target_config ?? {}) as { options?: Record<string, unknown> };
    return config.options ?? {};
  }

  return {
    deps,
    store,
    audit,
    clock,
    blobs,
    logger,
    node,
    live,
    proxies,
    localProxies,
    awaitedTokens,
    metrics: { liveGauge, bytesRelayed, recordingFailures, sessionsOpened, killLatency },
    keyCache,
    sshKey,
    userActor,
    BROKER,
    context,
    MAX_AUDITED_REFUSALS,
    MAX_AUDITED_TRANSFERS,
    policyOf,
    refuse,
    upstreamAddress,
    principalByName,
    sealedValue,
    abort,
    heldLive,
    sessionLoginOf,
    configOptions,
  };
}

function hostKeyPair(): { publicKey: string; privateKey: string } {
  return generateEd25519KeyPair("stint-proxy");
}
