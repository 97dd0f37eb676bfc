/**
 * Brokered sessions: the gate the proxies ask (who may connect where, as which upstream login, under
 * which policy), recordings in the blob store, the audit trail, database tokens and SSH certificates,
 * and the kill switch: every session of an activation ends when the activation ends, on every node
 * (NOTIFY committed with the activation's end; a sweep catches what a lost notification missed).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { AppStore } from "../../db/index.js";
import type { BlobStore, BlobWriter } from "../../lib/blob-store.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { failpoint, FailpointCrash } from "../../lib/failpoints.js";
import { newId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import { deriveKey, open, randomToken, seal, sha256Hex } from "../../lib/security.js";
import { policySpec } from "../../contract/catalog.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import { can } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { VaultService } from "../vault/vault.service.js";
import { roleSessionOf, sessionOptionsOf } from "../connectors/session-options.rules.js";
import { currentAddressPolicy } from "../connectors/index.js";
import { AddressRefusedError, resolveAllowedAddress } from "../../lib/address-guard.js";
import * as mysqlRules from "../connectors/mysql/mysql.rules.js";
import * as postgresRules from "../connectors/postgres/postgres.rules.js";
import * as sshHostRules from "../connectors/ssh-host/ssh-host.rules.js";
import { createRecorder, type ActiveRecorder } from "./recorder.js";
import type { LiveHub } from "./live-hub.js";
import { approversOf } from "./live.rules.js";
import { RECORDING_EXTENSION } from "../../contract/recording.js";
import * as sessionStore from "./sessions.store.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type SessionEnd,
  type SessionGate,
  type SessionKind,
  type SessionPolicy,
  type SshCertificateLogin,
  type UpstreamMysql,
  type UpstreamPostgres,
  type UpstreamSsh,
} from "./sessions.types.js";
import {
  generateCa,
  parseCertificate,
  publicKeyObject,
  signUserCertificate,
  verifyCertificate,
  type CertExtension,
} from "./ssh-ca.js";
import { encodeKrl } from "./ssh-krl.js";
import { endedPayloads, parseBus, type ActivationEnded, type BusMessage } from "./sessions.bus.js";
import { generateEd25519KeyPair } from "../../lib/ssh-keys.js";

export const SESSIONS_CHANNEL = "stint_sessions";
/** How far a client's clock may be behind ours and its certificate still be valid. */
const CERT_BACKDATE_MS = 60_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface SessionServiceDeps {
  store: Pick<AppStore, "db" | "transaction" | "listen">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  masterKey: Uint8Array;
  blobs: BlobStore;
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
}

export interface SessionDto {
  id: string;
  kind: SessionKind;
  user: string;
  role: string;
  target: string;
  login: string;
  requestId: string;
  clientAddress: string | null;
  node: string;
  startedAt: string;
  endedAt: string | null;
  endReason: string | null;
  endDetail: string | null;
  endedBy: string | null;
  live: boolean;
  bytesUp: number;
  bytesDown: number;
  recording: { sha256: string | null; bytes: number | null; available: boolean } | null;
}

interface LiveEntry {
  id: string;
  requestId: string;
  controller: AbortController;
  /** When the cause of an abort happened (for the kill latency). */
  causeAt: number | null;
  timer: NodeJS.Timeout | undefined;
}

export type SessionService = ReturnType<typeof createSessionService>;

export function createSessionService(deps: SessionServiceDeps) {
  const { store, audit, clock, blobs, registry, logger } = deps;
  const node = deps.node ?? `${hostname()}:${process.pid}`;
  const keyWrap = deriveKey(deps.masterKey, "ssh-keys");
  const live = new Map<string, LiveEntry>();
  const proxies: Partial<Record<SessionKind, ProxyAddress>> = {};
  /** Where this node's own proxies are bound (the SQL console connects there, never to a public name). */
  const localProxies: Partial<Record<SessionKind, ProxyAddress>> = {};
  /** Sessions awaited by the SHA-256 of the database token that opens them (the SQL console's, in-process). */
  const awaitedTokens = new Map<string, (session: { id: string; target: string }) => void>();
  let stopListening: (() => Promise<void>) | null = null;
  let sweepTimer: NodeJS.Timeout | undefined;

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

  /** Opens the session row, the recording and the audit event; everything a proxy gets back. */
  async function openSession<U extends UpstreamPostgres | UpstreamMysql | UpstreamSsh>(input: {
    kind: SessionKind;
    principal: { id: string; name: string };
    activation: sessionStore.ActivationRow;
    clientAddress: string | null;
    upstream: U;
    credential: string;
    certificate?: { serial: string; keyId: string };
  }): Promise<BrokeredSession<U>> {
    const { kind, principal, activation, upstream } = input;
    const policy = policyOf(activation);
    const actor = userActor(principal.id, principal.name);
    const id = newId();
    const now = clock.now();
    const who = {
      actor,
      clientAddress: input.clientAddress,
      details: { role: activation.role_name, target: activation.target_name },
    };
    if (policy.moderator && kind !== "ssh")
      return refuse(
        kind,
        "MODERATION_UNSUPPORTED",
        `Sessions of ${activation.role_name} need a moderator, and only SSH sessions can be moderated.`,
        who,
      );
    const spec = policySpec.safeParse(activation.policy_spec);
    const approvers = spec.success ? approversOf(spec.data) : { users: [], groups: [], manager: false };
    // The user's manager only matters when the policy names managers as approvers (who may then watch).
    const userManagerId =
      deps.live && approvers.manager
        ? ((
            await store.db
              .selectFrom("principals")
              .select("manager_id")
              .where("id", "=", principal.id)
              .executeTakeFirst()
          )?.manager_id ?? null)
        : null;
    const month = now.toISOString().slice(0, 7).replace("-", "/");
    const recordingKey = `recordings/${month}/${id}.${RECORDING_EXTENSION[kind]}`;
    let writer: BlobWriter | null = null;
    try {
      writer = await blobs.create(recordingKey);
    } catch (error) {
      recordingFailures.inc({ kind });
      logger.error({ err: error, session: id, blobs: blobs.dir }, "the recording store cannot be written to");
      if (policy.recording === "required")
        return refuse(
          kind,
          "RECORDING_UNAVAILABLE",
          `Recording is required for ${activation.role_name} and the recording store cannot be written to, so the session is refused; tell your Stint administrator.`,
          who,
        );
    }
    const login = upstream.kind === "ssh" ? upstream.username : upstream.user;
    try {
      await store.transaction(async (tx) => {
        await sessionStore.insertSession(tx, {
          id,
          kind,
          principalId: principal.id,
          requestId: activation.request_id,
          roleId: activation.role_id,
          targetId: activation.target_id,
          login,
          clientAddress: input.clientAddress,
          node,
          now,
          recordingKey: writer ? recordingKey : null,
        });
        await audit.append(tx, actor, context(input.clientAddress), {
          action: "session.started",
          outcome: "success",
          subject: `session:${id}`,
          details: {
            kind,
            role: activation.role_name,
            target: activation.target_name,
            request: activation.request_id,
            login,
            credential: input.credential,
            recording: writer ? policy.recording : "unavailable",
            ...(input.certificate ? { certificate: input.certificate } : {}),
          },
        });
      });
    } catch (error) {
      await writer?.finish().catch(() => undefined);
      throw error;
    }
    sessionsOpened.inc({ kind, outcome: "opened" });
    liveGauge.inc({ kind });

    const controller = new AbortController();
    const entry: LiveEntry = { id, requestId: activation.request_id, controller, causeAt: null, timer: undefined };
    live.set(id, entry);
    // A timer at the activation's expiry ends the session; when it fires it asks the database first,
    // because an extension moves the expiry (the session then lives on, to the new one).
    const expired = (at: number) =>
      abort(
        entry,
        {
          reason: "activation_ended",
          message: `Your activation of ${activation.role_name} expired, so this session is over.`,
        },
        at,
      );
    const armExpiry = (at: number) => {
      clearTimeout(entry.timer);
      const wait = Math.max(0, at - clock.now().getTime());
      if (wait >= MAX_TIMER_MS || controller.signal.aborted) return;
      entry.timer = setTimeout(() => void atExpiry(at), wait);
      entry.timer.unref();
    };
    const atExpiry = async (at: number) => {
      let current: { state: string; expires_at: Date | null } | undefined;
      try {
        current = await sessionStore.activationExpiry(store.db, activation.request_id);
      } catch (error) {
        // Unknown whether it was extended: fail closed, at the expiry known.
        logger.warn({ err: error, session: id }, "could not read the activation's expiry; ending the session");
        return expired(at);
      }
      const expiresAt = current?.expires_at ? new Date(current.expires_at).getTime() : at;
      if (current?.state === "active" && expiresAt > clock.now().getTime()) return armExpiry(expiresAt);
      expired(Math.min(at, expiresAt));
    };
    armExpiry(new Date(activation.expires_at!).getTime());

    // Watchers see the recording's lines as they are written; a moderated session waits for its moderator.
    const feed = deps.live?.open({
      id,
      kind,
      user: principal.name,
      role: activation.role_name,
      target: activation.target_name,
      startedAt: now,
      facts: {
        userId: principal.id,
        userManagerId,
        approvers,
        moderator: policy.moderator ?? null,
      },
      abort: (end) => abort(entry, end, Date.now()),
    });

    const recorder: ActiveRecorder = createRecorder({
      kind,
      writer,
      meta: {
        session: id,
        user: principal.name,
        role: activation.role_name,
        target: activation.target_name,
        login,
        startedAt: now,
      },
      clock,
      ...(feed ? { tap: (line: string) => feed.push(line) } : {}),
      onFailure: (error) => {
        recordingFailures.inc({ kind });
        logger.error({ err: error, session: id }, "a session recording failed");
        if (policy.recording === "required")
          abort(
            entry,
            {
              reason: "recording_failed",
              message: `Recording is required for ${activation.role_name} and it failed, so the session is ended.`,
            },
            clock.now().getTime(),
          );
      },
    });

    const bytes = { up: 0, down: 0 };
    let refusals = 0;
    let transfers = 0;
    let ended: Promise<void> | null = null;
    const end = (reason: EndReason, detail?: string): Promise<void> => {
      ended ??= (async () => {
        clearTimeout(entry.timer);
        live.delete(id);
        feed?.close(
          controller.signal.aborted ? (controller.signal.reason as SessionEnd).message : (detail ?? `ended: ${reason}`),
        );
        liveGauge.dec({ kind });
        const endedAt = clock.now();
        if (entry.causeAt !== null)
          killLatency.observe(
            { cause: reason === "killed" ? "killed" : "activation_ended" },
            Math.max(0, (Date.now() - entry.causeAt) / 1000),
          );
        let recording: { key: string; sha256: string; bytes: number } | null = null;
        try {
          recording = await recorder.finish();
        } catch (error) {
          if (error instanceof FailpointCrash) throw error; // the node died while recording: nothing more
          recordingFailures.inc({ kind });
          logger.error({ err: error, session: id }, "a session recording could not be completed");
        }
        await failpoint("session.end.after-recording");
        const signalReason = controller.signal.aborted ? (controller.signal.reason as SessionEnd) : null;
        const sentence = detail ?? signalReason?.message ?? null;
        try {
          await store.transaction(async (tx) => {
            const fields = {
              recording: recording ? { sha256: recording.sha256, bytes: recording.bytes } : null,
              bytesUp: bytes.up,
              bytesDown: bytes.down,
            };
            const row = await sessionStore.endSession(tx, id, {
              ...fields,
              now: endedAt,
              reason,
              detail: sentence,
              endedBy: null,
            });
            if (!row) await sessionStore.completeEndedSession(tx, id, fields);
            await audit.append(tx, reason === "client_closed" ? actor : BROKER, context(input.clientAddress), {
              action: "session.ended",
              outcome: "success",
              subject: `session:${id}`,
              ...(sentence ? { reason: sentence } : {}),
              details: {
                kind,
                user: principal.name,
                role: activation.role_name,
                target: activation.target_name,
                endReason: reason,
                bytesUp: bytes.up,
                bytesDown: bytes.down,
                recording: recording ? { key: recording.key, sha256: recording.sha256, bytes: recording.bytes } : null,
              },
            });
            await failpoint("session.end.before-commit");
          });
        } catch (error) {
          if (error instanceof FailpointCrash) throw error;
          logger.error({ err: error, session: id }, "could not record the end of a session");
        }
      })();
      return ended;
    };

    return {
      id,
      user: principal.name,
      role: activation.role_name,
      target: activation.target_name,
      policy,
      upstream,
      recorder,
      ...(feed?.moderation ? { moderation: feed.moderation } : {}),
      signal: controller.signal,
      countBytes(direction, n) {
        bytes[direction] += n;
        bytesRelayed.inc({ kind, direction }, n);
      },
      queryRefused(event) {
        // One audit event per refusal up to a cap per session (a client looping on a refused statement
        // must not flood the log); the query log keeps every one.
        refusals += 1;
        if (refusals > MAX_AUDITED_REFUSALS) return;
        audit
          .record(actor, context(input.clientAddress), {
            action: "session.query_refused",
            outcome: "denied",
            subject: `session:${id}`,
            reason: event.message,
            details: {
              role: activation.role_name,
              target: activation.target_name,
              rule: event.rule,
              protocol: event.protocol,
              statement: event.statement.slice(0, 2_000),
              ...(refusals === MAX_AUDITED_REFUSALS ? { lastAudited: true } : {}),
            },
          })
          .catch((error: unknown) => logger.error({ err: error, session: id }, "could not audit a refused query"));
      },
      fileTransfer(event) {
        // Every file in the audit log up to a cap per session (a recursive copy of a whole tree must not
        // flood it); the recording keeps every one.
        transfers += 1;
        if (transfers > MAX_AUDITED_TRANSFERS) return;
        audit
          .record(actor, context(input.clientAddress), {
            action: "session.file_transfer",
            outcome: event.outcome,
            subject: `session:${id}`,
            ...(event.reason ? { reason: event.reason } : {}),
            details: {
              role: activation.role_name,
              target: activation.target_name,
              protocol: event.protocol,
              direction: event.direction,
              path: event.path.slice(0, 4_096),
              bytes: event.bytes,
              sha256: event.sha256,
              ...(event.rule ? { rule: event.rule } : {}),
              ...(transfers === MAX_AUDITED_TRANSFERS ? { lastAudited: true } : {}),
            },
          })
          .catch((error: unknown) => logger.error({ err: error, session: id }, "could not audit a file transfer"));
      },
      end,
    };
  }

  // ---- the gate ----

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
   * A database proxy's sign-in (MySQL; PostgreSQL has the same checks inline): `user%role` and a Stint
   * database token bound to that user and role, a live activation it was issued for, `once` tokens used once.
   */
  async function databaseTokenActivation(kind: SessionKind, user: string, password: string, clientAddress: string) {
    const [userName, roleName, ...rest] = user.split("%");
    if (!userName || !roleName || rest.length > 0)
      return refuse(
        kind,
        "BAD_CREDENTIALS",
        `Connect as <user>%<role> with the password \`stint db login ROLE\` prints (not "${user.slice(0, 64)}").`,
        null,
      );
    const bad = `password authentication failed for ${userName}%${roleName}: not a valid Stint database token for that user and role (get one with \`stint db login ${roleName}\`)`;
    const token = await sessionStore.findToken(store.db, sha256Hex(password));
    const now = clock.now();
    if (!token || token.principal_name !== userName || token.role_name !== roleName)
      return refuse(kind, "BAD_CREDENTIALS", bad, {
        actor: { kind: "anonymous" },
        clientAddress,
        details: { user: userName, role: roleName },
      });
    const who = {
      actor: userActor(token.principal_id, token.principal_name),
      clientAddress,
      details: { role: roleName },
    };
    if (token.principal_status !== "active")
      return refuse(kind, "BAD_CREDENTIALS", `The account ${userName} is disabled.`, who);
    const activation = heldLive(token.request_id)
      ? (await sessionStore.activeActivations(store.db, token.principal_id, now)).find(
          (a) => a.request_id === token.request_id,
        )
      : undefined;
    if (!activation || new Date(token.expires_at).getTime() <= now.getTime())
      return refuse(
        kind,
        "NOT_ACTIVE",
        `Your activation of ${roleName} has ended, and its database tokens with it: activate the role again, then run \`stint db login ${roleName}\`.`,
        who,
      );
    if (token.once && !(await sessionStore.useOnceToken(store.db, token.id, now)))
      return refuse(kind, "BAD_CREDENTIALS", `This single-use token (--once) was already used.`, who);
    return { token, activation, who };
  }

  /** The upstream login of a database session: the grant's minted one (dynamic), else the vaulted session login. */
  async function databaseLogin(
    kind: SessionKind,
    activation: sessionStore.ActivationRow,
    who: { actor: Actor; clientAddress: string | null; details: Record<string, unknown> },
  ): Promise<{ user: string; password: string; credential: string }> {
    const roleName = activation.role_name;
    const entitlement = activation.entitlement as { dynamic?: unknown };
    if (entitlement.dynamic === true) {
      const stored = activation.grant_id
        ? await store.db
            .selectFrom("grant_credentials")
            .selectAll()
            .where("grant_id", "=", activation.grant_id)
            .executeTakeFirst()
        : undefined;
      if (!stored || activation.grant_state !== "active")
        return refuse(kind, "NO_CREDENTIAL", `The database login of ${roleName} is still being made.`, who);
      try {
        const password = await deps.vault.openValue(`grant:${activation.grant_id}`, {
          ciphertext: stored.ciphertext,
          wrappedKey: stored.wrapped_key,
          kekVersion: stored.kek_version,
        });
        return { user: stored.login, password, credential: "dynamic" };
      } catch (error) {
        if (error instanceof StintError)
          return refuse(kind, "NO_CREDENTIAL", `The session credential cannot be read: ${error.message}`, who);
        throw error;
      }
    }
    const options = sessionLoginOf(activation);
    if (!options)
      return refuse(
        kind,
        "NO_CREDENTIAL",
        `The target ${activation.target_name} has no session credential (options.session) and ${roleName} is not dynamic.`,
        who,
      );
    const password = (await sealedValue(kind, options.secret, activation, who)).value;
    return { user: options.login, password, credential: options.secret };
  }

  const gate: SessionGate = {
    async openPostgres({ user, password, database, clientAddress }) {
      const kind = "postgres";
      const { token, activation, who } = await databaseTokenActivation(kind, user, password, clientAddress);
      const roleName = token.role_name;
      const tokenHash = sha256Hex(password);
      if (activation.target_kind !== "postgres")
        return refuse(kind, "TARGET_UNSUPPORTED", `${roleName}'s target is not a PostgreSQL database.`, who);
      const address = postgresRules.parseAddress(activation.address ?? "");
      // The database is the target's, or one its options.databases lists: the client does not choose.
      // libpq asks for a database named like the user when none is given: that means "the default".
      const asked = database !== null && database !== "" && database !== user ? database : null;
      const databases = (configOptions(activation).databases as string[] | undefined) ?? [];
      const pinned = asked ?? address.database;
      if (pinned !== address.database && !databases.includes(pinned))
        return refuse(
          kind,
          "TARGET_UNSUPPORTED",
          `${roleName} reaches only the database ${address.database}${databases.length > 0 ? ` (or ${databases.join(", ")})` : ""} on ${activation.target_name}, not ${pinned.slice(0, 63)}.`,
          who,
        );
      const connectTo = await upstreamAddress(kind, address.host, activation.target_name, who);
      let upstreamUser: string;
      let upstreamPassword: string;
      let credential: string;
      const entitlement = activation.entitlement as { dynamic?: unknown };
      if (entitlement.dynamic === true) {
        const stored = activation.grant_id
          ? await store.db
              .selectFrom("grant_credentials")
              .selectAll()
              .where("grant_id", "=", activation.grant_id)
              .executeTakeFirst()
          : undefined;
        if (!stored || activation.grant_state !== "active")
          return refuse(kind, "NO_CREDENTIAL", `The database login of ${roleName} is still being made.`, who);
        upstreamUser = stored.login;
        try {
          upstreamPassword = await deps.vault.openValue(`grant:${activation.grant_id}`, {
            ciphertext: stored.ciphertext,
            wrappedKey: stored.wrapped_key,
            kekVersion: stored.kek_version,
          });
        } catch (error) {
          if (error instanceof StintError)
            return refuse(kind, "NO_CREDENTIAL", `The session credential cannot be read: ${error.message}`, who);
          throw error;
        }
        credential = "dynamic";
      } else {
        const options = sessionLoginOf(activation);
        if (!options)
          return refuse(
            kind,
            "NO_CREDENTIAL",
            `The target ${activation.target_name} has no session credential (options.session) and ${roleName} is not dynamic.`,
            who,
          );
        upstreamUser = options.login;
        upstreamPassword = (await sealedValue(kind, options.secret, activation, who)).value;
        credential = options.secret;
      }
      const targetOptions = configOptions(activation);
      const security = postgresRules.upstreamSecurity(address, targetOptions);
      const upstream: UpstreamPostgres = {
        kind: "postgres",
        host: address.host,
        address: connectTo,
        port: address.port,
        database: pinned,
        user: upstreamUser,
        password: upstreamPassword,
        tls: security.tls,
        allowAuth: security.allow,
      };
      const session = await openSession({
        kind,
        principal: { id: token.principal_id, name: token.principal_name },
        activation,
        clientAddress,
        upstream,
        credential,
      });
      awaitedTokens.get(tokenHash)?.({ id: session.id, target: session.target });
      return session;
    },

    async openMysql({ user, password, database, clientAddress }) {
      const kind = "mysql";
      const { token, activation, who } = await databaseTokenActivation(kind, user, password, clientAddress);
      if (activation.target_kind !== "mysql")
        return refuse(
          kind,
          "TARGET_UNSUPPORTED",
          `${activation.role_name}'s target is not a MySQL or MariaDB database.`,
          who,
        );
      const address = mysqlRules.parseAddress(activation.address ?? "");
      if ("problems" in address)
        return refuse(kind, "TARGET_UNSUPPORTED", `The address of ${activation.target_name} is not valid.`, who);
      if (database !== null && (database.length > 64 || database.includes("\0")))
        return refuse(kind, "TARGET_UNSUPPORTED", "That is not a database name MySQL accepts.", who);
      const connectTo = await upstreamAddress(kind, address.host, activation.target_name, who);
      const login = await databaseLogin(kind, activation, who);
      const upstream: UpstreamMysql = {
        kind: "mysql",
        host: address.host,
        address: connectTo,
        port: address.port,
        database,
        user: login.user,
        password: login.password,
        tls: mysqlRules.upstreamTls(address, configOptions(activation)),
      };
      return openSession({
        kind,
        principal: { id: token.principal_id, name: token.principal_name },
        activation,
        clientAddress,
        upstream,
        credential: login.credential,
      });
    },

    checkSshCertificate({ username, algorithm, key }) {
      const ca = keyCache.get("user-ca");
      const [userName, targetName, ...rest] = username.split("%");
      if (!userName || !targetName || rest.length > 0)
        throw new SessionRefusedError("BAD_CREDENTIALS", "Log in as <user>%<target>, e.g. ssh alice%prod-web@stint.");
      if (!ca || !algorithm.endsWith("-cert-v01@openssh.com"))
        throw new SessionRefusedError("BAD_CREDENTIALS", "Only Stint certificates are accepted (stint ssh login).");
      const line = `${algorithm} ${key.toString("base64")}`;
      // The principal is the whole login, user and target: a certificate names the one target it is for.
      const verdict = verifyCertificate(line, ca.publicKey, clock.now(), { principal: username });
      if (!verdict.ok)
        throw new SessionRefusedError("BAD_CREDENTIALS", `The certificate is not valid: ${verdict.reason}`);
      return {
        user: userName,
        target: targetName,
        publicKey: publicKeyObject(verdict.certificate.publicKey),
        serial: verdict.certificate.serial.toString(),
        keyId: verdict.certificate.keyId,
      };
    },

    async openSsh(login: SshCertificateLogin, { clientAddress }) {
      const kind = "ssh";
      const principal = await principalByName(login.user);
      if (!principal || principal.status !== "active")
        return refuse(kind, "BAD_CREDENTIALS", `The account ${login.user} is disabled.`, null);
      const who = {
        actor: userActor(principal.id, principal.name),
        clientAddress,
        details: { target: login.target, certificate: { serial: login.serial, keyId: login.keyId } },
      };
      // The certificate is bound to the activation and target it was issued for: only that activation,
      // while it lasts, opens a session (not another one of the same user, not another target).
      const issued = await sessionStore.findSshCertificate(store.db, login.serial);
      if (
        !issued ||
        issued.principal_id !== principal.id ||
        issued.key_id !== login.keyId ||
        issued.principal !== `${login.user}%${login.target}` ||
        issued.target_name !== login.target
      )
        return refuse(
          kind,
          "BAD_CREDENTIALS",
          `This certificate was not issued for ${login.target}: run stint ssh login for it.`,
          who,
        );
      const activation = heldLive(issued.request_id)
        ? (await sessionStore.activeActivations(store.db, principal.id, clock.now())).find(
            (a) => a.request_id === issued.request_id && a.target_name === login.target,
          )
        : undefined;
      if (!activation)
        return refuse(
          kind,
          "NOT_ACTIVE",
          `The activation this certificate was issued for (${issued.request_id}) has ended: activate again (stint activate ROLE), then run stint ssh login.`,
          who,
        );
      if (activation.target_kind !== "ssh-host")
        return refuse(kind, "TARGET_UNSUPPORTED", `${login.target} is not an SSH host.`, who);
      const options = configOptions(activation);
      const session = sessionLoginOf(activation);
      const address = sshHostRules.parseAddress(activation.address ?? "");
      if (!session || "problem" in address)
        return refuse(
          kind,
          "NO_CREDENTIAL",
          `The target ${login.target} has no session credential (options.session), so Stint cannot open it.`,
          who,
        );
      const connectTo = await upstreamAddress(kind, address.host, login.target, who);
      const secret = await sealedValue(kind, session.secret, activation, who);
      const upstream: UpstreamSsh = {
        kind: "ssh",
        host: address.host,
        address: connectTo,
        port: address.port,
        username: session.login,
        hostKey: sshHostRules.parseOptions(options).hostKey,
        ...(secret.kind === "ssh-key" ? { privateKey: secret.value } : { password: secret.value }),
      };
      return openSession({
        kind,
        principal,
        activation,
        clientAddress,
        upstream,
        credential: session.secret,
        certificate: { serial: login.serial, keyId: login.keyId },
      });
    },
  };

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

  // ---- bus ----

  function onBus(payload: string) {
    const messages = parseBus(payload);
    if (messages.length === 0) return;
    const first = messages[0]!;
    if (first.type === "kill") {
      const entry = live.get(first.sessionId);
      if (entry)
        abort(entry, { reason: "killed", message: `${first.by} ended this session: ${first.reason}` }, first.at);
      return;
    }
    // Activations ended (one, or a batch of them): the live sessions are looked through once.
    const ended = new Map<string, ActivationEnded>();
    for (const message of messages) if (message.type === "activation") ended.set(message.requestId, message);
    for (const entry of [...live.values()]) {
      const message = ended.get(entry.requestId);
      if (!message) continue;
      const how =
        message.state === "expired"
          ? "expired"
          : `was ${message.state}${message.by && message.by !== "system" ? ` by ${message.by}` : ""}`;
      const end: SessionEnd = {
        reason: "activation_ended",
        message: `Your activation of ${message.role} ${how}${message.reason ? `: ${message.reason}` : ""}; this session is over.`,
      };
      abort(entry, end, message.at);
    }
  }

  /** How long a live session may go untouched before another node ends it as lost. */
  const lostAfterMs = Math.max(60_000, 6 * (deps.sweepMs ?? 5000));

  async function sweep() {
    const entries = [...live.values()];
    // This node's own sessions first, so that they are never taken for lost ones.
    await sessionStore.touchSessions(
      store.db,
      entries.map((e) => e.id),
      clock.now(),
    );
    await reapLost();
    if (entries.length === 0) return;
    const ended = await sessionStore.endedActivations(
      store.db,
      [...new Set(entries.map((e) => e.requestId))],
      clock.now(),
    );
    const killed = await sessionStore.killedSessions(
      store.db,
      entries.map((e) => e.id),
    );
    const now = Date.now();
    for (const entry of entries) {
      if (killed.has(entry.id))
        abort(
          entry,
          { reason: "killed", message: `An administrator ended this session: ${killed.get(entry.id) ?? ""}` },
          now,
        );
      else if (ended.has(entry.requestId))
        abort(entry, { reason: "activation_ended", message: "Your activation ended, so this session is over." }, now);
    }
  }

  /**
   * Ends the live sessions of nodes that stopped touching them. Each one's recording is kept: the blob
   * its node finished, or the `.partial` file it was writing (all but at most its last batch), made
   * readable under its key; its SHA-256 and size go on the row and into `session.ended`. A recording
   * this node's blob store does not hold is named in `session.ended` as not found, never dropped silently.
   */
  async function reapLost() {
    const now = clock.now();
    const before = new Date(now.getTime() - lostAfterMs);
    // Read first (most sweeps find nothing: no transaction), and keep the recordings outside the transaction
    // (hashing a long recording must not hold it open).
    const candidates = await store.db
      .selectFrom("sessions")
      .select(["id", "recording_key"])
      .where("ended_at", "is", null)
      .where("seen_at", "<", before)
      .execute();
    if (candidates.length === 0) return;
    type Kept = { key: string; sha256?: string; bytes?: number; partial?: boolean; found: boolean };
    const keep = async (id: string, key: string): Promise<Kept> => {
      const kept = await blobs.salvage(key).catch((error: unknown) => {
        logger.error({ err: error, session: id }, "the recording of a lost session could not be kept");
        return null;
      });
      return kept ? { ...kept, found: true } : { key, found: false };
    };
    const salvaged = new Map<string, Kept>();
    for (const c of candidates) if (c.recording_key) salvaged.set(c.id, await keep(c.id, c.recording_key));
    await store.transaction(async (tx) => {
      const lost = await sessionStore.reapLostSessions(tx, before, now);
      if (lost.length === 0) return;
      const stored = new Map(
        (
          await tx
            .selectFrom("sessions")
            .select(["id", "recording_key", "bytes_up", "bytes_down"])
            .where(
              "id",
              "in",
              lost.map((row) => row.id),
            )
            .execute()
        ).map((row) => [row.id, row]),
      );
      const events = [];
      for (const row of lost) {
        const own = stored.get(row.id);
        const key = own?.recording_key ?? null;
        // A session lost since the read above is kept here.
        const recording = key ? (salvaged.get(row.id) ?? (await keep(row.id, key))) : null;
        if (recording?.found)
          await sessionStore.completeEndedSession(tx, row.id, {
            recording: { sha256: recording.sha256!, bytes: recording.bytes! },
            bytesUp: Number(own!.bytes_up),
            bytesDown: Number(own!.bytes_down),
          });
        const sentence =
          recording === null
            ? ""
            : recording.found
              ? recording.partial
                ? " Its recording is kept as far as it reached the disk."
                : " Its recording is kept whole."
              : ` Its recording (${key}) is not in this node's blob store.`;
        events.push({
          action: "session.ended",
          outcome: "success" as const,
          subject: `session:${row.id}`,
          reason: `The Stint node relaying this session (${row.node}) stopped answering.${sentence}`,
          details: { kind: row.kind, endReason: "node_lost", node: row.node, request: row.request_id, recording },
        });
      }
      await audit.append(tx, BROKER, context(null), events);
    });
  }

  function toDto(row: sessionStore.SessionRow): SessionDto {
    return {
      id: row.id,
      kind: row.kind,
      user: row.user_name,
      role: row.role_name,
      target: row.target_name,
      login: row.login,
      requestId: row.request_id,
      clientAddress: row.client_address,
      node: row.node,
      startedAt: new Date(row.started_at).toISOString(),
      endedAt: row.ended_at ? new Date(row.ended_at).toISOString() : null,
      endReason: row.end_reason,
      endDetail: row.end_detail,
      endedBy: row.ended_by,
      live: row.ended_at === null,
      bytesUp: Number(row.bytes_up),
      bytesDown: Number(row.bytes_down),
      recording: row.recording_key
        ? {
            sha256: row.recording_sha256,
            bytes: row.recording_bytes === null ? null : Number(row.recording_bytes),
            available: row.recording_sha256 !== null,
          }
        : null,
    };
  }

  /** Recordings and session lists are for admins and auditors; to anyone else they do not exist. */
  function mayRead(actor: Actor): boolean {
    return can(actor, "sessions.read");
  }

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

    /** The CA's public key and where the SSH proxy listens (public: hosts may trust the CA directly). */
    async sshInfo() {
      const [ca, host] = await Promise.all([sshKey("user-ca"), sshKey("proxy-host")]);
      return {
        caPublicKey: ca.publicKey,
        proxy: proxies.ssh ? { ...proxies.ssh, hostKey: host.publicKey } : null,
      };
    },

    /**
     * The OpenSSH KRL for hosts that trust the CA directly (sshd RevokedKeys): every certificate not yet
     * expired whose activation ended. Built from the database at each call, so always current.
     */
    async sshKrl(): Promise<Buffer> {
      const ca = await sshKey("user-ca");
      const now = clock.now();
      const serials = await sessionStore.revokedSshSerials(store.db, now);
      return encodeKrl({
        caPublicKey: ca.publicKey,
        serials: serials.map((serial) => BigInt(serial)),
        version: BigInt(now.getTime()),
        generatedAt: now,
        comment: "Stint: certificates of ended activations",
      });
    },

    /** Signs the caller's public key for as long as their activation of an SSH host role lasts. */
    async issueSshCertificate(actor: Actor, ctx: CallContext, input: { publicKey: string; role?: string | undefined }) {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const now = clock.now();
      const activations = (await sessionStore.activeActivations(store.db, actor.id, now)).filter(
        (a) => a.target_kind === "ssh-host" && (input.role === undefined || a.role_name === input.role),
      );
      const activation = activations[0];
      if (!activation)
        throw new StintError(
          "NOT_ACTIVE",
          input.role
            ? `You have no active activation of ${input.role} on an SSH host.`
            : "You have no active role on an SSH host: activate one first.",
        );
      const [ca, proxyHost] = await Promise.all([sshKey("user-ca"), sshKey("proxy-host")]);
      const offered = input.publicKey.trim().split(/\s+/).slice(0, 2).join(" ");
      // Never certify Stint's own keys: a certificate for the CA key is a CA that logs in as a user.
      for (const own of [ca.publicKey, proxyHost.publicKey])
        if (offered === own.trim().split(/\s+/).slice(0, 2).join(" "))
          throw new StintError("VALIDATION_FAILED", "That key is one of Stint's own keys; certify your own key.");
      const policy = policyOf(activation);
      const serial = BigInt(`0x${randomBytes(8).toString("hex")}`) & ((1n << 63n) - 1n);
      const validBefore = new Date(activation.expires_at!);
      // What the certificate is for, in the certificate: the one target (principal user%target, which
      // hosts trusting the CA list in AuthorizedPrincipalsFile) and the activation (key id).
      const keyId = `stint:${actor.name}:${activation.request_id}`;
      const principal = `${actor.name}%${activation.target_name}`;
      const extensions: CertExtension[] = ["permit-pty"];
      if (policy.portForwarding) extensions.push("permit-port-forwarding");
      let certificate: string;
      try {
        certificate = signUserCertificate({
          caPrivateKey: ca.privateKey,
          userPublicKey: input.publicKey,
          keyId,
          principals: [principal],
          validAfter: new Date(now.getTime() - CERT_BACKDATE_MS),
          validBefore,
          serial,
          extensions,
        });
      } catch (error) {
        throw new StintError(
          "VALIDATION_FAILED",
          `That is not a public key Stint can certify (ssh-ed25519 or ssh-rsa): ${(error as Error).message}`,
        );
      }
      const cert = parseCertificate(certificate);
      await store.transaction(async (tx) => {
        await sessionStore.insertSshCertificate(tx, {
          serial: serial.toString(),
          principalId: actor.id,
          requestId: activation.request_id,
          targetId: activation.target_id,
          principal,
          keyId,
          now,
          validBefore,
        });
        await audit.append(tx, actor, ctx, {
          action: "ssh.certificate_issued",
          outcome: "success",
          subject: `request:${activation.request_id}`,
          details: {
            role: activation.role_name,
            target: activation.target_name,
            principal,
            serial: serial.toString(),
            keyId,
            validBefore: validBefore.toISOString(),
          },
        });
      });
      return {
        certificate,
        keyId,
        serial: serial.toString(),
        principals: cert.principals,
        validBefore: validBefore.toISOString(),
        role: activation.role_name,
        target: activation.target_name,
      };
    },

    /** A password for the PostgreSQL or MySQL proxy, bound to the caller, the role and this activation. */
    async issueDatabaseToken(actor: Actor, ctx: CallContext, input: { role: string; once: boolean }) {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const now = clock.now();
      const activation = (await sessionStore.activeActivations(store.db, actor.id, now)).find(
        (a) => a.role_name === input.role,
      );
      if (!activation) throw new StintError("NOT_ACTIVE", `You have no active activation of ${input.role}.`);
      if (activation.target_kind !== "postgres" && activation.target_kind !== "mysql")
        throw new StintError("VALIDATION_FAILED", `${input.role}'s target is not a PostgreSQL or MySQL database.`);
      const kind = activation.target_kind;
      const proxy = proxies[kind];
      if (!proxy)
        throw new StintError(
          "UNAVAILABLE",
          `The ${kind === "mysql" ? "MySQL" : "PostgreSQL"} proxy is not running on this server.`,
        );
      const token = `stint_${randomToken(32)}`;
      const expiresAt = new Date(activation.expires_at!);
      await store.transaction(async (tx) => {
        await sessionStore.insertToken(tx, {
          id: newId(),
          tokenHash: sha256Hex(token),
          principalId: actor.id,
          requestId: activation.request_id,
          roleId: activation.role_id,
          once: input.once,
          now,
          expiresAt,
        });
        await audit.append(tx, actor, ctx, {
          action: "session.token_issued",
          outcome: "success",
          subject: `request:${activation.request_id}`,
          details: {
            role: input.role,
            target: activation.target_name,
            once: input.once,
            expiresAt: expiresAt.toISOString(),
          },
        });
      });
      return {
        kind,
        host: proxy.host,
        port: proxy.port,
        // MySQL: the client names a database (or none); the login's privileges decide.
        database: kind === "postgres" ? postgresRules.parseAddress(activation.address ?? "").database : "",
        user: `${actor.name}%${input.role}`,
        password: token,
        expiresAt: expiresAt.toISOString(),
      };
    },

    async list(actor: Actor, options: { live: boolean; limit?: number }): Promise<SessionDto[]> {
      if (!mayRead(actor)) throw new StintError("NOT_FOUND", "There are no sessions you may see.");
      const rows = await sessionStore.listSessions(store.db, {
        live: options.live,
        limit: Math.min(options.limit ?? 100, 1000),
      });
      return rows.map(toDto);
    },

    async show(actor: Actor, id: string): Promise<SessionDto> {
      const row = mayRead(actor) ? await sessionStore.findSession(store.db, id) : undefined;
      if (!row) throw new StintError("NOT_FOUND", `There is no session ${id} that you may see.`);
      return toDto(row);
    },

    /** A finished recording's bytes; audited, because replaying a session is itself sensitive. */
    async recording(actor: Actor, ctx: CallContext, id: string) {
      const row = mayRead(actor) ? await sessionStore.findSession(store.db, id) : undefined;
      if (!row) throw new StintError("NOT_FOUND", `There is no session ${id} that you may see.`);
      if (!row.recording_key || !row.recording_sha256)
        throw new StintError(
          "NOT_FOUND",
          row.ended_at
            ? `Session ${id} has no recording.`
            : `Session ${id} is still live; its recording is not finished.`,
        );
      const stream = await blobs.read(row.recording_key).catch(() => {
        throw new StintError("NOT_FOUND", `The recording of session ${id} is missing from the blob store.`);
      });
      await audit.record(actor, ctx, {
        action: "session.recording_read",
        outcome: "success",
        subject: `session:${id}`,
        details: { sha256: row.recording_sha256 },
      });
      return {
        kind: row.kind,
        sha256: row.recording_sha256,
        contentType: row.kind === "ssh" ? "application/x-asciicast" : "application/x-ndjson",
        stream,
      };
    },

    /** Ends a live session now, on whichever node relays it. */
    async kill(actor: Actor, ctx: CallContext, id: string, reason: string): Promise<SessionDto> {
      if (!can(actor, "sessions.kill")) throw new StintError("FORBIDDEN");
      const by = actor.kind === "principal" ? actor.name : "system";
      await store.transaction(async (tx) => {
        const row = await sessionStore.findSession(tx, id);
        if (!row) throw new StintError("NOT_FOUND", `There is no session ${id}.`);
        const marked = await sessionStore.markKilled(tx, id, { now: clock.now(), by, reason });
        if (!marked) throw new StintError("CONFLICT", `Session ${id} has already ended.`);
        await audit.append(tx, actor, ctx, {
          action: "session.killed",
          outcome: "success",
          subject: `session:${id}`,
          reason,
          details: { user: row.user_name, role: row.role_name, target: row.target_name },
        });
        const message: BusMessage = { type: "kill", sessionId: id, by, reason, at: Date.now() };
        await sessionStore.notify(tx, SESSIONS_CHANNEL, message);
      });
      return toDto((await sessionStore.findSession(store.db, id))!);
    },
  };
}

function hostKeyPair(): { publicKey: string; privateKey: string } {
  return generateEd25519KeyPair("stint-proxy");
}
