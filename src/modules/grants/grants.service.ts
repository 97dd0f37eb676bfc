/**
 * Grants at real targets: provisioning and revocation through the outbox,
 * reconciliation (drift), discovery of standing access and its conversion to
 * eligibility, target credentials and connection tests.
 *
 * Connectors run only in outbox handlers and in reconcile/discover/test calls,
 * never inside a transaction; every state change they cause is written with its
 * audit event afterwards, in one transaction, fenced on the state it expects.
 */
import { randomBytes } from "node:crypto";
import canonicalize from "canonicalize";
import type { Kysely } from "kysely";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { AppStore, Database } from "../../db/index.js";
import { policySpec } from "../../contract/catalog.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { failpoint, FailpointCrash } from "../../lib/failpoints.js";
import { newId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import { deriveKey, open, seal } from "../../lib/security.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import { targetConfig } from "../catalog/catalog.store.js";
import { allowanceMac, credentialBinding, endpointOf, legacyCredentialBinding } from "../catalog/custody.rules.js";
import * as custodyStore from "../catalog/custody.store.js";
import { sessionOptionsOf } from "../connectors/session-options.rules.js";
import {
  ConnectorError,
  connectorFor as defaultConnectorFor,
  loginFor,
  type Connector,
  type ConnectorTarget,
  type MintedPassword,
  type StandingAccess,
} from "../connectors/index.js";
import {
  outboxStore,
  safeErrorMessage,
  type HandlerContext,
  type OutboxHandlers,
  type OutboxService,
} from "../outbox/index.js";
import type { RequestService } from "../requests/requests.service.js";
import * as grantStore from "./grants.store.js";
import { probeLane, targetLane, withTargetLanes } from "./grants.lanes.js";
import { generateValue } from "../vault/vault.crypto.js";
import type { VaultService } from "../vault/vault.service.js";
import { compareFindings, driftAction, findDrift, normalizeLogin, type DriftKind } from "./reconcile.rules.js";

export const JOB = {
  provision: "grant.provision",
  revoke: "grant.revoke",
  removeDrift: "drift.remove",
  reprovision: "drift.reprovision",
  removeStanding: "standing.remove",
  reconcile: "reconcile.target",
  probe: "target.probe",
  restore: "grant.restore",
} as const;

/** Something operators should hear about now (delivered through the outbox, like request notifications). */
export interface GrantAlert {
  event: "drift.detected" | "grant.revoke_failing";
  severity: "warning" | "critical";
  title: string;
  text: string;
  dedupeKey: string;
}

export interface GrantServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record" | "sequencing">;
  clock: Clock;
  outbox: Pick<OutboxService, "enqueue">;
  requests: Pick<RequestService, "provisioned" | "provisionFailed">;
  masterKey: Uint8Array;
  registry: Registry;
  logger?: Pick<Logger, "info" | "warn" | "error">;
  /** Tests may wrap connectors; by default the built-in one of each kind. */
  connectorFor?: (kind: string) => Connector | null;
  onAlert?: (tx: Kysely<Database>, alert: GrantAlert) => Promise<void>;
  /** Seals the passwords of minted logins (roles with `dynamic: true`). */
  vault?: Pick<VaultService, "sealValue" | "openValue">;
  /** Attempts before a provisioning that cannot reach its target fails the activation. */
  provisionAttempts?: number;
  /** Attempts of a revocation; practically unbounded, a revocation is never dropped. */
  revokeAttempts?: number;
  /**
   * How long after the lease of an in-flight provisioning attempt its target call may still land: an
   * activation that ends while its provisioning runs gets a revocation due that long after (default 60 s).
   */
  provisionSettleMs?: number;
  /**
   * While a target has jobs waiting on a backoff because it did not answer, it is probed this often
   * (the connector's test call); as soon as it answers they are made due now (default 2 s).
   */
  probeIntervalMs?: number;
}

export interface DriftItem {
  role: string;
  login: string;
  kind: DriftKind;
  /** reported: audited and alerted; removing: queued for removal (policy drift: remove); reprovisioning: queued. */
  action: "reported" | "removing" | "reprovisioning";
  /** First seen in this cycle (false: seen in an earlier one and still there). */
  new: boolean;
  since: string;
}

export interface TargetReconcileReport {
  target: string;
  kind: string;
  ok: boolean;
  /** Why the target could not be compared (unreachable, refused); nothing changed then. */
  error: string | null;
  roles: { role: string; holders: number; skipped: string | null }[];
  drift: DriftItem[];
  resolved: { role: string; login: string; kind: DriftKind }[];
}

export interface GrantDto {
  id: string;
  requestId: string;
  role: string;
  target: string;
  principal: string;
  login: string | null;
  state: string;
  attempts: number;
  lastError: string | null;
  nextAttemptAt: string | null;
  since: string;
}

export interface DiscoveredAccessDto extends StandingAccess {
  /** The Stint principal whose mapped login this is, when there is one. */
  principal: string | null;
}

export interface ConvertResult {
  dryRun: boolean;
  role: string;
  converted: { login: string; principal: string; privilege: string; eligibility: "created" | "existing" }[];
  skipped: { login: string; reason: string }[];
}

const OBSERVE_CONCURRENCY = 4;
/**
 * Attempts a provisioning row has beyond the provisioning's own budget. The runner dead-letters a row whose last
 * allowed attempt died (its node crashed), which would leave the grant `provisioning` for good, and perhaps the
 * privilege at the target. These attempts never call the target: they fail the activation and queue the removal
 * of what the attempt that died may have left. Two, so a node dying while settling is settled too.
 */
const SETTLING_ATTEMPTS = 2;
/**
 * A probe is one link of a chain that queues the next itself, so it is not retried on failure; but a probe whose
 * node died is run again once (otherwise dead-lettered, the chain would end and the target's revocations would
 * wait out their backoff).
 */
const PROBE_ATTEMPTS = 2;
/** A minted login's own VALID UNTIL, past the activation's end: a safety net if Stint cannot drop it in time. */
const DYNAMIC_SAFETY_MARGIN_MS = 60 * 60_000;

/** A role whose entitlement says `dynamic: true` mints a login per activation. */
export const isDynamic = (entitlement: unknown) =>
  typeof entitlement === "object" && entitlement !== null && (entitlement as { dynamic?: unknown }).dynamic === true;

/** `stint_alice_3f9a1c2e`: short enough for every database, unique per activation. */
export function mintedLogin(principal: string): string {
  return `stint_${principal.replace(/[^a-z0-9]/g, "_").slice(0, 16)}_${randomBytes(4).toString("hex")}`;
}

const iso = (value: Date | string | null) => (value === null ? null : new Date(value).toISOString());

function asConnectorError(error: unknown): ConnectorError {
  if (error instanceof ConnectorError) return error;
  return new ConnectorError("unavailable", safeErrorMessage(error));
}

/**
 * A connector error without any of these secrets (and, for keys, without any long line of them): each
 * connector scrubs its own messages too, but a target's words pass through here whatever the connector.
 */
export function withoutSecrets(error: unknown, secrets: readonly (string | null | undefined)[]): ConnectorError {
  const failure = asConnectorError(error);
  const pieces = secrets
    .filter((secret): secret is string => typeof secret === "string" && secret.length >= 4)
    .flatMap((secret) => [secret, ...secret.split("\n").filter((line) => line.trim().length >= 12)])
    .sort((a, b) => b.length - a.length);
  let message = failure.message;
  for (const piece of pieces) message = message.split(piece).join("[redacted]");
  return message === failure.message ? failure : new ConnectorError(failure.reason, message);
}

/** The connector with every call's failure scrubbed of the secrets it was given (see withoutSecrets). */
function scrubbing(connector: Connector, secrets: readonly (string | null)[]): Connector {
  return new Proxy(connector, {
    get(object, property, receiver) {
      const value: unknown = Reflect.get(object, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        let result: unknown;
        try {
          result = (value as (...a: unknown[]) => unknown).apply(object, args);
        } catch (error) {
          throw withoutSecrets(error, secrets);
        }
        return result instanceof Promise
          ? result.catch((error: unknown) => {
              throw withoutSecrets(error, secrets);
            })
          : result;
      };
    },
  });
}

function getOrCreate<M>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

function systemContext(correlationId: string): CallContext {
  return { correlationId, sourceIp: null, userAgent: null };
}

export function createGrantService(deps: GrantServiceDeps) {
  const { store, audit, clock } = deps;
  // Every job runs in its target's outbox lane, so one slow target cannot hold up the others.
  const outbox = withTargetLanes(deps.outbox);
  const logger = deps.logger ?? { info: () => undefined, warn: () => undefined, error: () => undefined };
  const connectorFor = deps.connectorFor ?? defaultConnectorFor;
  const provisionAttempts = deps.provisionAttempts ?? 5;
  const revokeAttempts = deps.revokeAttempts ?? 1000;
  const provisionSettleMs = deps.provisionSettleMs ?? 60_000;
  const probeIntervalMs = deps.probeIntervalMs ?? 2_000;
  const secretKey = deriveKey(deps.masterKey, "target-secrets");
  const allowanceKey = deriveKey(deps.masterKey, "secret-allowances");
  const alert = async (tx: Kysely<Database>, a: GrantAlert) => deps.onAlert?.(tx, a);

  // -------------------------------------------------------------------------
  // Metrics

  const registers = [deps.registry];
  const operations: Counter<"kind" | "operation" | "outcome"> = getOrCreate(
    deps.registry,
    "stint_connector_operations_total",
    () =>
      new Counter({
        name: "stint_connector_operations_total",
        help: "Connector calls by target kind, operation and outcome (ok, refused, unavailable).",
        labelNames: ["kind", "operation", "outcome"],
        registers,
      }),
  );
  const revocationLatency: Histogram = getOrCreate(
    deps.registry,
    "stint_revocation_latency_seconds",
    () =>
      new Histogram({
        name: "stint_revocation_latency_seconds",
        help: "From the end of an activation to the privilege gone at the target.",
        buckets: [0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600],
        registers,
      }),
  );
  const unsettled: Gauge<"target" | "state"> = getOrCreate(
    deps.registry,
    "stint_grants_unsettled",
    () =>
      new Gauge({
        name: "stint_grants_unsettled",
        help: "Grants still provisioning or revoking at their target.",
        labelNames: ["target", "state"],
        registers,
        async collect() {
          await collectUnsettled(unsettled, "count");
        },
      }),
  );
  const stuck: Gauge<"target" | "state"> = getOrCreate(
    deps.registry,
    "stint_grants_stuck",
    () =>
      new Gauge({
        name: "stint_grants_stuck",
        help: "Grants provisioning or revoking whose last attempt at the target failed (retrying).",
        labelNames: ["target", "state"],
        registers,
        async collect() {
          await collectUnsettled(stuck, "failing");
        },
      }),
  );
  // prom-client collects gauges concurrently, so each reads its own counts.
  async function collectUnsettled(gauge: Gauge<"target" | "state">, column: "count" | "failing") {
    try {
      const rows = await grantStore.unsettledCounts(store.db);
      gauge.reset();
      for (const row of rows) gauge.set({ target: row.target, state: row.state }, Number(row[column] ?? 0));
    } catch (error) {
      logger.warn({ err: safeErrorMessage(error) }, "grant counts could not be read");
    }
  }
  const drift: Gauge<"target" | "kind"> = getOrCreate(
    deps.registry,
    "stint_privilege_drift",
    () =>
      new Gauge({
        name: "stint_privilege_drift",
        help: "Open drift findings: privilege at a target without an activation (unexpected) or missing while active.",
        labelNames: ["target", "kind"],
        registers,
        async collect() {
          try {
            const rows = await grantStore.openFindingCounts(store.db);
            drift.reset();
            for (const row of rows) drift.set({ target: row.target, kind: row.kind }, Number(row.count));
          } catch (error) {
            logger.warn({ err: safeErrorMessage(error) }, "drift counts could not be read");
          }
        },
      }),
  );

  // -------------------------------------------------------------------------
  // Targets and credentials

  /** Where the target's credential may go now: the fingerprint of its kind, address and endpoint options. */
  const endpointOfRow = (row: grantStore.TargetRow) =>
    endpointOf({ kind: row.kind, address: row.address, options: targetConfig(row.config).options });

  /**
   * The target's admin credential, opened only for the target it was set for at the endpoint it was set for
   * (both are in the sealed value's associated data, so a row pointed at or moved from elsewhere does not open).
   */
  async function openCredential(
    db: Kysely<Database>,
    row: grantStore.TargetRow,
    path: string,
    read?: grantStore.StoredTargetSecret | null,
  ): Promise<string> {
    const sealed = read === undefined ? await grantStore.readSecret(db, path) : read;
    const setAgain = `set it with \`stint targets credential ${row.name}\``;
    if (!sealed)
      throw new ConnectorError("refused", `the credential ${path} of target ${row.name} is not stored; ${setAgain}`);
    if (sealed.target_id !== row.id)
      throw new ConnectorError("refused", `the credential ${path} does not belong to target ${row.name}; ${setAgain}`);
    const endpoint = endpointOfRow(row);
    if (sealed.endpoint !== endpoint)
      throw new ConnectorError(
        "refused",
        `the credential of target ${row.name} was set for another address; ${setAgain} for this one`,
      );
    try {
      return open(secretKey, sealed.sealed, credentialBinding(row.id, path, endpoint)).toString("utf8");
    } catch {
      throw new ConnectorError(
        "refused",
        `the credential of target ${row.name} failed its integrity check; ${setAgain}`,
      );
    }
  }

  /** `secret`: the target's stored credential when the caller read it already (null: none is stored). */
  async function connectorTarget(
    db: Kysely<Database>,
    row: grantStore.TargetRow,
    secret?: grantStore.StoredTargetSecret | null,
  ): Promise<{ connector: Connector; target: ConnectorTarget; ignore: string[] }> {
    const connector = connectorFor(row.kind);
    if (!connector) throw new StintError("CONFLICT", `The target ${row.name} is internal: Stint enforces it itself.`);
    const config = targetConfig(row.config);
    const credential = config.credential ? await openCredential(db, row, config.credential, secret) : null;
    const ignore = Array.isArray(config.options.ignore) ? (config.options.ignore as unknown[]).map(String) : [];
    return {
      connector: scrubbing(connector, [credential]),
      target: { name: row.name, address: row.address ?? "", options: config.options, credential },
      ignore,
    };
  }

  async function call<T>(kind: string, operation: string, run: () => Promise<T>): Promise<T> {
    try {
      const result = await run();
      operations.inc({ kind, operation, outcome: "ok" });
      return result;
    } catch (error) {
      const failure = asConnectorError(error);
      operations.inc({ kind, operation, outcome: failure.reason });
      throw failure;
    }
  }

  async function requireTarget(ref: string) {
    const row = await grantStore.findTarget(store.db, ref);
    if (!row) throw new StintError("NOT_FOUND", `There is no target ${JSON.stringify(ref)}.`);
    return row;
  }

  /** Principal → login at a target, for every principal the mapping works for. */
  async function loginsOf(db: Kysely<Database>, row: grantStore.TargetRow) {
    const mapping = targetConfig(row.config).identity;
    const byLogin = new Map<string, { id: string; name: string }>();
    for (const p of await grantStore.principals(db)) {
      const result = loginFor(mapping, p);
      if ("login" in result) byLogin.set(normalizeLogin(row.kind, result.login), { id: p.id, name: p.name });
    }
    return byLogin;
  }

  // -------------------------------------------------------------------------
  // The requests service's hook: a grant must be provisioned or revoked

  async function onGrant(
    tx: Kysely<Database>,
    change: { grantId: string; requestId: string; action: "provision" | "revoke" },
  ): Promise<void> {
    if (change.action === "provision") {
      // In the submit's transaction: its entitlement, target and principal in one read, and the lane given (the
      // wrapper would read the target again).
      const grant = await grantStore.grantLoginInputs(tx, change.grantId);
      if (!grant) throw new Error(`grant ${change.grantId} vanished inside its own transaction`);
      const mapped = isDynamic(grant.entitlement)
        ? { login: mintedLogin(grant.principal_name) }
        : loginFor(targetConfig(grant.target_config).identity, {
            name: grant.principal_name,
            email: grant.principal_email,
          });
      if ("login" in mapped) await grantStore.setGrantLogin(tx, change.grantId, mapped.login);
      await outbox.enqueue(tx, {
        kind: JOB.provision,
        idempotencyKey: `provision:${change.grantId}`,
        payload: { grantId: change.grantId, maxAttempts: provisionAttempts },
        maxAttempts: provisionAttempts + SETTLING_ATTEMPTS,
        lane: targetLane(grant.target_id),
        // Run by this node's runner the moment the submit commits: no NOTIFY round, no claim of its own.
        runAfterCommit: true,
      });
      return;
    }
    await outbox.enqueue(tx, {
      kind: JOB.revoke,
      idempotencyKey: `revoke:${change.grantId}`,
      payload: { grantId: change.grantId },
      maxAttempts: revokeAttempts,
    });
    // Ended while its provisioning is still to run or running: that attempt may change the target after the
    // revocation above has run, and its node may die before it says so. A second revocation, due once the
    // attempt's lease is over, commits here with the end, so no crash anywhere can lose it (issue 13 finding 2).
    const provision = await outboxStore.findByIdempotencyKey(tx, `provision:${change.grantId}`);
    if (provision && (provision.status === "pending" || provision.status === "running")) {
      const now = clock.now().getTime();
      const leaseEnd = Math.max(now, provision.lockedUntil?.getTime() ?? now);
      await outbox.enqueue(tx, {
        kind: JOB.revoke,
        idempotencyKey: `revoke:${change.grantId}:provision-in-flight`,
        payload: { grantId: change.grantId, force: true, after: "the activation ended while it was being provisioned" },
        maxAttempts: revokeAttempts,
        notBefore: new Date(leaseEnd + provisionSettleMs),
      });
    }
    await failpoint("grant.end.before-commit");
  }

  /** A forced revocation, due now: the privilege may be at the target although the grant has ended. */
  async function revokeAfterProvisioning(grantId: string, key: string, after: string): Promise<void> {
    await store.transaction((tx) =>
      outbox.enqueue(tx, {
        kind: JOB.revoke,
        idempotencyKey: `revoke:${grantId}:${key}`,
        payload: { grantId, force: true, after },
        maxAttempts: revokeAttempts,
      }),
    );
  }

  // -------------------------------------------------------------------------
  // Outbox handlers

  async function provisionJob(payload: Record<string, unknown>, attempt: number, signal: AbortSignal) {
    const grantId = String(payload.grantId);
    const maxAttempts = Number(payload.maxAttempts ?? provisionAttempts);
    // The grant, its target, the target's credential and a stored password: one statement.
    let read = await grantStore.grantToProvision(store.db, grantId);
    if (!read) return;
    let grant = read.grant;
    if (grant.state === "provisioning" && attempt > maxAttempts) {
      // Its budget is spent and the last attempt stopped before finishing (its node died, or it overran its
      // lease), perhaps after the target call: fail the activation, then (below) leave a revocation behind.
      logger.warn({ grantId, attempt }, "provisioning settled: its last attempt stopped before finishing");
      await deps.requests.provisionFailed(grantId, "its last provisioning attempt stopped before finishing");
      read = await grantStore.grantToProvision(store.db, grantId);
      if (!read) return;
      grant = read.grant;
    }
    if (grant.state !== "provisioning") {
      // A retry: an earlier attempt may have changed the target and died before saying so. If the grant has
      // ended meanwhile, leave a revocation behind before returning (active grants are revoked when they end).
      if (attempt > 1 && grant.login !== null && grant.state !== "active")
        await revokeAfterProvisioning(grantId, `before-attempt:${attempt}`, "an earlier provisioning attempt stopped");
      return;
    }
    const targetRow = read.target;
    if (grant.login === null) {
      const mapped = loginFor(targetConfig(targetRow.config).identity, {
        name: grant.principal_name,
        email: grant.principal_email,
      });
      await deps.requests.provisionFailed(grantId, "problem" in mapped ? mapped.problem : "no login could be mapped");
      return;
    }
    const login = grant.login;
    const entitlement = grant.entitlement as Record<string, unknown>;
    await failpoint("grant.provision.before-target");
    try {
      const { connector, target } = await connectorTarget(store.db, targetRow, read.targetSecret);
      problemsOf(connector.checkLogin(login), `the login ${login}`);
      if (isDynamic(entitlement)) {
        if (!connector.createLogin || !deps.vault)
          throw new ConnectorError("refused", `a ${connector.kind} target cannot mint a login per activation`);
        const minted = await dynamicPassword(grantId, login, read.credential, connector);
        const validUntil = new Date(clock.now().getTime() + grant.duration_ms + DYNAMIC_SAFETY_MARGIN_MS);
        const createLogin = (password: string) =>
          call(connector.kind, "create_login", () =>
            connector.createLogin!(
              target,
              {
                login,
                password,
                entitlement,
                validUntil,
                ...(minted.prepared?.password === password ? { minted: minted.prepared } : {}),
              },
              { signal, operationId: `provision:${grantId}` },
            ),
          );
        // A new password's insert commits while the target creates the login (its commit is off the critical
        // path); both have finished, and succeeded, before the activation. A login made with a password that
        // is then not stored is harmless: the retry seals a new one and createLogin sets it on the login it
        // made (both connectors), and a grant that fails or ends has its login dropped whatever its password.
        const [storing, creating] = await Promise.allSettled([
          minted.stored.then(async (winner) => {
            await failpoint("grant.provision.after-credential");
            return winner;
          }),
          createLogin(minted.password),
        ]);
        if (storing.status === "rejected") throw storing.reason;
        if (creating.status === "rejected") throw creating.reason;
        // Another worker stored its password first: the login gets that one (that worker sets it too).
        if (storing.value !== null) await createLogin(storing.value);
      } else {
        await call(connector.kind, "provision", () =>
          connector.provision(target, { login, entitlement }, { signal, operationId: `provision:${grantId}` }),
        );
      }
    } catch (error) {
      if (error instanceof FailpointCrash) throw error;
      const failure = asConnectorError(error);
      if (failure.reason === "refused" || attempt >= maxAttempts) {
        await deps.requests.provisionFailed(
          grantId,
          failure.reason === "refused" ? failure.message : `the target did not answer: ${failure.message}`,
        );
        if (failure.reason === "refused") return;
        // A call that timed out or lost its connection may still have changed the target: take it away.
        await failpoint("grant.provision.after-give-up");
        await revokeAfterProvisioning(grantId, `after-attempt:${attempt}`, "the provisioning did not finish");
        return;
      }
      await grantStore.recordGrantFailure(
        store.db,
        { id: grantId, state: "provisioning" },
        failure.message,
        clock.now(),
        null,
      );
      throw failure;
    }
    await failpoint("grant.provision.after-target");
    if (!(await deps.requests.provisioned(grantId, { login }))) {
      // The activation ended while the target was being changed: take the privilege away again.
      await failpoint("grant.provision.before-follow-up");
      await revokeAfterProvisioning(
        grantId,
        `after-attempt:${attempt}`,
        "provisioning finished after the activation ended",
      );
    }
  }

  // -------------------------------------------------------------------------
  // Shared memberships: the same login holding the same entitlement at a target, whichever grant asked for it

  /**
   * The membership a grant holds at its target, which every grant of the same login and entitlement there
   * shares (the same role activated again, or another role granting the same thing); null for a minted login,
   * which is its grant's alone.
   */
  function membershipOf(grant: grantStore.GrantRow): grantStore.MembershipKey | null {
    if (grant.login === null || isDynamic(grant.entitlement)) return null;
    return { targetId: grant.target_id, login: grant.login, entitlement: grant.entitlement };
  }

  /**
   * Queues, in the caller's transaction, the restore of each of these live grants' membership: a removal at the
   * target (the outbox job `job`, this attempt) may have taken it away after a grant started relying on it.
   */
  async function queueRestores(
    tx: Kysely<Database>,
    holders: readonly { id: string }[],
    job: Pick<HandlerContext, "idempotencyKey" | "attempt">,
    after: string,
  ): Promise<void> {
    for (const holder of holders)
      await outbox.enqueue(tx, {
        kind: JOB.restore,
        idempotencyKey: `restore:${holder.id}:${job.idempotencyKey}:${job.attempt}`,
        payload: { grantId: holder.id, after },
        maxAttempts: revokeAttempts,
      });
  }

  async function revokeJob(payload: Record<string, unknown>, job: HandlerContext) {
    const grantId = String(payload.grantId);
    const force = payload.force === true;
    const grant = await grantStore.findGrant(store.db, grantId);
    if (!grant || (grant.state !== "revoking" && !force)) return;
    const targetRow = (await grantStore.findTarget(store.db, grant.target_id))!;
    const membership = membershipOf(grant);
    const restoreReason = `the revocation of grant ${grantId} removed it at the target`;

    /** Marks the grant revoked and audits it (a forced revocation is audited even when it already was). */
    async function recordRevoked(tx: Kysely<Database>, now: Date, extra: Record<string, unknown>): Promise<void> {
      const revoked = await grantStore.markRevoked(tx, grantId, now);
      if (!revoked && !force) return;
      await audit.append(tx, SYSTEM, systemContext(`grant:${grantId}`), {
        action: "grant.revoked",
        outcome: "success",
        subject: `grant:${grantId}`,
        details: {
          role: grant!.role_name,
          target: targetRow.name,
          login: grant!.login,
          requestId: grant!.request_id,
          attempts: grant!.attempts + 1,
          ...(force
            ? {
                after:
                  typeof payload.after === "string"
                    ? payload.after
                    : "provisioning finished after the activation ended",
              }
            : {}),
          ...extra,
        },
      });
    }

    if (membership) {
      // The same login holds the same privilege for an activation that is active now: the membership is that
      // activation's as much as this one's, and its own end takes it away. Decided with those grants locked, so
      // one that ends meanwhile queues its revocation after this decision.
      const kept = await store.transaction(async (tx) => {
        const holders = await grantStore.grantsSharing(tx, membership, { states: ["active"], exceptGrantId: grantId });
        if (holders.length === 0) return false;
        // An earlier attempt of this job may have reached the target and stopped before saying so: put it back.
        if (job.attempt > 1) await queueRestores(tx, holders, job, restoreReason);
        await recordRevoked(tx, clock.now(), {
          keptFor: { grantId: holders[0]!.id, requestId: holders[0]!.request_id },
        });
        return true;
      });
      if (kept) return;
    }
    await failpoint("grant.revoke.before-target");
    if (grant.login !== null) {
      try {
        const { connector, target } = await connectorTarget(store.db, targetRow);
        const login = grant.login;
        const entitlement = grant.entitlement as Record<string, unknown>;
        if (isDynamic(entitlement) && connector.dropLogin) {
          await call(connector.kind, "drop_login", () =>
            connector.dropLogin!(target, { login }, { signal: job.signal, operationId: `revoke:${grantId}` }),
          );
        } else {
          await call(connector.kind, "revoke", () =>
            connector.revoke(target, { login, entitlement }, { signal: job.signal, operationId: `revoke:${grantId}` }),
          );
        }
      } catch (error) {
        const failure = asConnectorError(error);
        const now = clock.now();
        await store.transaction(async (tx) => {
          await grantStore.recordGrantFailure(tx, { id: grantId, state: "revoking" }, failure.message, now, null);
          // The target did not answer: probe it, so the revocation runs as soon as it does, not after the backoff.
          if (failure.reason === "unavailable") await startProbing(tx, targetRow.id);
          if (job.attempt === 1) {
            // Audited and alerted once; later attempts are counted on the grant and in the metrics.
            await audit.append(tx, SYSTEM, systemContext(`grant:${grantId}`), {
              action: "grant.revoke_failed",
              outcome: "failed",
              subject: `grant:${grantId}`,
              reason: failure.message,
              details: { role: grant.role_name, target: targetRow.name, login: grant.login, retrying: true },
            });
            await alert(tx, {
              event: "grant.revoke_failing",
              severity: "critical",
              title: `Revoking ${grant.role_name} for ${grant.principal_name} at ${targetRow.name} is failing`,
              text: `The target did not let Stint take the privilege away: ${failure.message}. Stint keeps retrying; see \`stint grants --stuck\`.`,
              dedupeKey: `revoke-failing:${grantId}`,
            });
          }
        });
        logger.warn(
          { grantId, target: targetRow.name, attempt: job.attempt, err: failure.message },
          "revocation failed; retrying",
        );
        throw failure;
      }
    }
    await failpoint("grant.revoke.after-target");
    const now = clock.now();
    await store.transaction(async (tx) => {
      // A grant of the same membership that started after the check above may have had its GRANT land before this
      // REVOKE did: the membership is put back for every one still provisioning or active.
      const holders = membership
        ? await grantStore.grantsSharing(tx, membership, {
            states: ["provisioning", "active"],
            exceptGrantId: grantId,
          })
        : [];
      await queueRestores(tx, holders, job, restoreReason);
      await recordRevoked(tx, now, holders.length > 0 ? { restoring: holders.map((h) => h.id) } : {});
    });
    const ended = await store.db
      .selectFrom("activation_requests")
      .select("ended_at")
      .where("id", "=", grant.request_id)
      .executeTakeFirst();
    if (ended?.ended_at)
      revocationLatency.observe(Math.max(0, (now.getTime() - new Date(ended.ended_at).getTime()) / 1000));
  }

  /**
   * Puts back the membership of a live grant that a removal at the target took away: the revocation of another
   * grant of the same login and entitlement (or a drift or standing removal) that checked no active grant relied
   * on it, and then landed after this grant's GRANT. Checked again after the call: a grant that ended meanwhile
   * may have had its own revocation run before this GRANT landed, so a forced revocation follows.
   *
   * Never at the same time as the grant's own provisioning: two GRANTs of one membership at once fail at
   * PostgreSQL (a duplicate key in pg_auth_members), and the loser would fail the activation.
   */
  async function restoreJob(payload: Record<string, unknown>, job: HandlerContext) {
    const grantId = String(payload.grantId);
    const grant = await grantStore.findGrant(store.db, grantId);
    const membership = grant ? membershipOf(grant) : null;
    if (!grant || !membership) return;
    const followUp = {
      kind: JOB.revoke,
      idempotencyKey: `revoke:${grantId}:after-${job.idempotencyKey}:${job.attempt}`,
      payload: { grantId, force: true, after: "its membership was restored after the activation ended" },
      maxAttempts: revokeAttempts,
    };
    if (grant.state !== "provisioning" && grant.state !== "active") {
      // Ended before this attempt; an earlier one may have reached the target and stopped before saying so.
      if (job.attempt > 1) await store.transaction((tx) => outbox.enqueue(tx, followUp));
      return;
    }
    if (grant.state === "provisioning") {
      const provision = await outboxStore.findByIdempotencyKey(store.db, `provision:${grantId}`);
      // Not running: its next attempt (if any) GRANTs after the removal that queued this, and before the grant
      // is active. Running: that attempt may have GRANTed before the removal; come back once its lease is over.
      if (provision?.status !== "running") return;
      const leaseEnd = Math.max(clock.now().getTime(), provision.lockedUntil?.getTime() ?? 0);
      await store.transaction((tx) =>
        outbox.enqueue(tx, {
          kind: JOB.restore,
          idempotencyKey: `${job.idempotencyKey}:after-provisioning:${provision.attempts}`,
          payload,
          maxAttempts: revokeAttempts,
          notBefore: new Date(leaseEnd + 1),
        }),
      );
      return;
    }
    const targetRow = (await grantStore.findTarget(store.db, grant.target_id))!;
    try {
      const { connector, target } = await connectorTarget(store.db, targetRow);
      problemsOf(connector.checkLogin(membership.login), `the login ${membership.login}`);
      await call(connector.kind, "restore", () =>
        connector.provision(
          target,
          { login: membership.login, entitlement: grant.entitlement as Record<string, unknown> },
          { signal: job.signal, operationId: `restore:${grantId}` },
        ),
      );
    } catch (error) {
      const failure = asConnectorError(error);
      // Refused: retrying will not help; the reconciler reports the privilege missing (and provisions it again).
      if (failure.reason === "refused") {
        logger.warn({ grantId, target: targetRow.name, err: failure.message }, "a membership could not be restored");
        return;
      }
      throw failure;
    }
    await failpoint("grant.restore.after-target");
    await store.transaction(async (tx) => {
      const state = await grantStore.lockGrantState(tx, grantId);
      if (state !== "provisioning" && state !== "active") {
        // Ended while its membership was being put back: its revocation may have run before this GRANT landed.
        await outbox.enqueue(tx, followUp);
        return;
      }
      await audit.append(tx, SYSTEM, systemContext(`grant:${grantId}`), {
        action: "grant.restored",
        outcome: "success",
        subject: `grant:${grantId}`,
        reason: typeof payload.after === "string" ? payload.after : null,
        details: {
          role: grant.role_name,
          target: targetRow.name,
          login: membership.login,
          requestId: grant.request_id,
        },
      });
    });
  }

  /** Starts a target's probe chain unless one is already on its way. */
  async function startProbing(tx: Kysely<Database>, targetId: string): Promise<void> {
    const lane = probeLane(targetId);
    if (await outboxStore.hasOpen(tx, { kind: JOB.probe, lane })) return;
    await outbox.enqueue(tx, {
      kind: JOB.probe,
      idempotencyKey: `probe:${targetId}:${newId()}`,
      payload: { targetId },
      maxAttempts: PROBE_ATTEMPTS,
      notBefore: new Date(clock.now().getTime() + probeIntervalMs),
      lane,
    });
  }

  /**
   * One probe of a target with jobs stuck in backoff (issue 13 finding 4): the connector's test call. If the
   * target answers, its waiting jobs are made due now and the runners woken; if not, the next probe is queued
   * `probeIntervalMs` later, for as long as jobs wait. One row per chain stays (finished links are removed).
   */
  async function probeJob(payload: Record<string, unknown>, signal: AbortSignal) {
    const targetRow = await grantStore.findTarget(store.db, String(payload.targetId));
    if (!targetRow) return;
    let answered = false;
    try {
      const { connector, target } = await connectorTarget(store.db, targetRow);
      await call(connector.kind, "probe", () =>
        connector.test(target, { signal, operationId: `probe:${targetRow.id}` }),
      );
      answered = true;
    } catch {
      // Still down (or refusing Stint): the jobs keep their backoff, and the probe goes on.
    }
    if (answered) await failpoint("grant.probe.after-target");
    const lane = targetLane(targetRow.id);
    await store.transaction(async (tx) => {
      const now = clock.now();
      if (answered) {
        const woken = await outboxStore.expediteLane(tx, { lane, now });
        if (woken > 0) {
          await outboxStore.notifyDue(tx);
          logger.info({ target: targetRow.name, jobs: woken }, "target answers again; its waiting jobs run now");
        }
        return;
      }
      if ((await outboxStore.countBackedOff(tx, { lane, now })) === 0) return;
      await outboxStore.deleteDone(tx, { kind: JOB.probe, lane: probeLane(targetRow.id) });
      await outbox.enqueue(tx, {
        kind: JOB.probe,
        idempotencyKey: `probe:${targetRow.id}:${newId()}`,
        payload: { targetId: targetRow.id },
        maxAttempts: PROBE_ATTEMPTS,
        notBefore: new Date(now.getTime() + probeIntervalMs),
        lane: probeLane(targetRow.id),
      });
    });
  }

  /**
   * The minted login's password: made and sealed once per grant, so a retry creates the same login.
   * `stored`: the sealed password the attempt read with its grant (null: none yet). Returns the password to
   * create the login with and the storing of a new one (already done for a stored one): null once stored, or
   * the password another worker stored first, which the login must have instead.
   */
  async function dynamicPassword(
    grantId: string,
    login: string,
    stored: grantStore.StoredCredential | null,
    connector: Pick<Connector, "mintPassword">,
  ): Promise<{ password: string; stored: Promise<string | null>; prepared?: MintedPassword }> {
    const vault = deps.vault!;
    const bound = `grant:${grantId}`;
    const openSealed = (row: grantStore.StoredCredential) =>
      vault.openValue(bound, { ciphertext: row.ciphertext, wrappedKey: row.wrapped_key, kekVersion: row.kek_version });
    if (stored) return { password: await openSealed(stored), stored: Promise.resolve(null) };
    // The connector's own minting where it has one: the target-side form (a SCRAM secret) is ready already.
    const prepared = connector.mintPassword?.(() => generateValue(32));
    const password = prepared?.password ?? generateValue(32);
    let sealed: Awaited<ReturnType<typeof vault.sealValue>>;
    try {
      sealed = await vault.sealValue(bound, password);
    } catch (error) {
      // A sealed vault is an outage for this activation: retried, and failed in the end if it stays sealed.
      if (error instanceof StintError) throw new ConnectorError("unavailable", `the vault: ${error.message}`);
      throw error;
    }
    const storing = (async () => {
      await failpoint("grant.provision.before-credential");
      if (await grantStore.insertCredential(store.db, { grantId, login, ...sealed, now: clock.now() })) return null;
      // Another worker stored one first: the stored one is the login's password.
      return openSealed((await grantStore.findCredential(store.db, grantId))!);
    })();
    // Awaited by the caller (allSettled); never an unhandled rejection meanwhile.
    storing.catch(() => undefined);
    return { password, stored: storing, ...(prepared ? { prepared } : {}) };
  }

  function problemsOf(problems: string[], what: string) {
    if (problems.length > 0) throw new ConnectorError("refused", `${what} is not valid: ${problems.join("; ")}`);
  }

  async function removeDriftJob(payload: Record<string, unknown>, job: HandlerContext) {
    const finding = await grantStore.findFinding(store.db, String(payload.findingId));
    if (!finding || finding.resolved_at !== null) return;
    const membership: grantStore.MembershipKey = {
      targetId: finding.target_id,
      login: finding.login,
      entitlement: finding.entitlement,
    };
    const restoreReason = `the removal of drift ${finding.id} removed it at the target`;
    // An activation of this role or of another granting the same privilege to the login now backs it.
    const backed = await store.transaction(async (tx) => {
      const holders = await grantStore.grantsSharing(tx, membership, { states: ["provisioning", "active"] });
      if (holders.length === 0) return false;
      // An earlier attempt may have removed it and stopped before saying so: put it back.
      if (job.attempt > 1) await queueRestores(tx, holders, job, restoreReason);
      if (!(await grantStore.resolveFinding(tx, finding.id, "an activation now backs it", clock.now()))) return true;
      await audit.append(tx, SYSTEM, systemContext(`drift:${finding.id}`), {
        action: "drift.resolved",
        outcome: "success",
        subject: `target:${finding.target_name}`,
        details: { role: finding.role_name, login: finding.login, kind: finding.kind, resolution: "activation" },
      });
      return true;
    });
    if (backed) return;
    const targetRow = (await grantStore.findTarget(store.db, finding.target_id))!;
    const { connector, target } = await connectorTarget(store.db, targetRow);
    await call(connector.kind, "revoke", () =>
      connector.revoke(
        target,
        { login: finding.login, entitlement: finding.entitlement as Record<string, unknown> },
        { signal: job.signal, operationId: `drift:${finding.id}` },
      ),
    );
    await failpoint("drift.remove.after-target");
    await store.transaction(async (tx) => {
      // An activation that started after the check above may have had its GRANT land before this REVOKE.
      const holders = await grantStore.grantsSharing(tx, membership, { states: ["provisioning", "active"] });
      await queueRestores(tx, holders, job, restoreReason);
      if (!(await grantStore.resolveFinding(tx, finding.id, "removed by Stint", clock.now(), "removed"))) return;
      await audit.append(tx, SYSTEM, systemContext(`drift:${finding.id}`), {
        action: "drift.removed",
        outcome: "success",
        subject: `target:${finding.target_name}`,
        details: { role: finding.role_name, login: finding.login },
      });
    });
  }

  async function reprovisionJob(payload: Record<string, unknown>, signal: AbortSignal) {
    const finding = await grantStore.findFinding(store.db, String(payload.findingId));
    if (!finding || finding.resolved_at !== null) return;
    if (!(await grantStore.hasOpenGrant(store.db, finding.role_id, finding.login))) return;
    const targetRow = (await grantStore.findTarget(store.db, finding.target_id))!;
    const { connector, target } = await connectorTarget(store.db, targetRow);
    await call(connector.kind, "provision", () =>
      connector.provision(
        target,
        { login: finding.login, entitlement: finding.entitlement as Record<string, unknown> },
        { signal, operationId: `drift:${finding.id}` },
      ),
    );
    await store.transaction(async (tx) => {
      if (!(await grantStore.resolveFinding(tx, finding.id, "provisioned again by Stint", clock.now()))) return;
      await audit.append(tx, SYSTEM, systemContext(`drift:${finding.id}`), {
        action: "drift.reprovisioned",
        outcome: "success",
        subject: `target:${finding.target_name}`,
        details: { role: finding.role_name, login: finding.login },
      });
    });
  }

  async function removeStandingJob(payload: Record<string, unknown>, job: HandlerContext) {
    const targetRow = await grantStore.findTarget(store.db, String(payload.targetId));
    if (!targetRow) return;
    const login = String(payload.login);
    const entitlement = payload.entitlement as Record<string, unknown>;
    const membership: grantStore.MembershipKey = { targetId: targetRow.id, login, entitlement };
    const restoreReason = `the removal of standing access (conversion ${String(payload.conversionId)}) removed it`;
    const standingRemoved = (details: Record<string, unknown>): AuditInput => ({
      action: "standing.removed",
      outcome: "success",
      subject: `target:${targetRow.name}`,
      details: { login, entitlement, privilege: payload.privilege, ...details },
    });
    // The login holds it for an active activation now: it is no longer standing, and that activation's end
    // takes it away.
    const kept = await store.transaction(async (tx) => {
      const holders = await grantStore.grantsSharing(tx, membership, { states: ["active"] });
      if (holders.length === 0) return false;
      if (job.attempt > 1) await queueRestores(tx, holders, job, restoreReason);
      await audit.append(
        tx,
        SYSTEM,
        systemContext(`convert:${String(payload.conversionId)}`),
        standingRemoved({ keptFor: { grantId: holders[0]!.id, requestId: holders[0]!.request_id } }),
      );
      return true;
    });
    if (kept) return;
    const { connector, target } = await connectorTarget(store.db, targetRow);
    await call(connector.kind, "revoke", () =>
      connector.revoke(
        target,
        { login, entitlement },
        { signal: job.signal, operationId: `standing:${String(payload.conversionId)}:${login}` },
      ),
    );
    await store.transaction(async (tx) => {
      const holders = await grantStore.grantsSharing(tx, membership, { states: ["provisioning", "active"] });
      await queueRestores(tx, holders, job, restoreReason);
      await audit.append(tx, SYSTEM, systemContext(`convert:${String(payload.conversionId)}`), standingRemoved({}));
    });
  }

  const handlers: OutboxHandlers = {
    [JOB.provision]: (payload, context) => provisionJob(payload, context.attempt, context.signal),
    [JOB.revoke]: (payload, context) => revokeJob(payload, context),
    [JOB.restore]: (payload, context) => restoreJob(payload, context),
    [JOB.removeDrift]: (payload, context) => removeDriftJob(payload, context),
    [JOB.reprovision]: (payload, context) => reprovisionJob(payload, context.signal),
    [JOB.removeStanding]: (payload, context) => removeStandingJob(payload, context),
    [JOB.probe]: (payload, context) => probeJob(payload, context.signal),
    [JOB.reconcile]: async (payload) => {
      const row = await grantStore.findTarget(store.db, String(payload.targetId));
      if (row) await reconcileTarget(row);
    },
  };

  // -------------------------------------------------------------------------
  // Reconciliation

  async function reconcileTarget(row: grantStore.TargetRow): Promise<TargetReconcileReport> {
    const report: TargetReconcileReport = {
      target: row.name,
      kind: row.kind,
      ok: true,
      error: null,
      roles: [],
      drift: [],
      resolved: [],
    };
    const startedAt = clock.now();
    const roles = await grantStore.rolesAt(store.db, row.id);
    const observed = new Map<string, string[]>();
    let ignore: string[] = [];
    try {
      const resolved = await connectorTarget(store.db, row);
      ignore = resolved.ignore;
      const results = new Map<string, { holders: string[] } | { skipped: string }>();
      // A few roles at a time: each observe is one admin connection, and a target should not see a burst.
      let next = 0;
      const worker = async () => {
        while (next < roles.length) {
          const role = roles[next++]!;
          try {
            const holders = await call(resolved.connector.kind, "observe", () =>
              resolved.connector.observe(resolved.target, role.entitlement as Record<string, unknown>),
            );
            results.set(role.id, { holders });
          } catch (error) {
            const failure = asConnectorError(error);
            // A target that answers but cannot report holders for this role (a webhook without
            // observe, a missing group) is skipped; an unreachable one stops the whole cycle.
            if (failure.reason === "unavailable") throw failure;
            results.set(role.id, { skipped: failure.message });
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(OBSERVE_CONCURRENCY, roles.length) }, worker));
      for (const role of roles) {
        const result = results.get(role.id)!;
        if ("holders" in result) observed.set(role.id, result.holders);
        report.roles.push({
          role: role.name,
          holders: "holders" in result ? result.holders.length : 0,
          skipped: "skipped" in result ? result.skipped : null,
        });
      }
    } catch (error) {
      const failure = asConnectorError(error);
      logger.warn({ target: row.name, err: failure.message }, "reconcile could not read the target");
      return { ...report, ok: false, error: failure.message };
    }

    await store.transaction(async (tx) => {
      const now = clock.now();
      const grants = await grantStore.grantsAt(tx, row.id, startedAt);
      const open = await grantStore.openFindings(tx, row.id);
      // Roles granting the same entitlement share one membership per login (see the README).
      const entitlementOf = new Map(roles.map((r) => [r.id, canonicalize(r.entitlement) ?? ""]));
      const leftByStint = new Set(
        (await grantStore.endedGrantLogins(tx, row.id)).map(
          (g) => `${canonicalize(g.entitlement) ?? ""}\u0000${normalizeLogin(row.kind, g.login)}`,
        ),
      );
      const events: AuditInput[] = [];
      for (const role of roles) {
        const holders = observed.get(role.id);
        const roleOpen = open.filter((f) => f.role_id === role.id);
        if (holders === undefined) continue;
        const entitlement = entitlementOf.get(role.id)!;
        const ofRole = grants.filter((g) => g.role_id === role.id && g.login !== null);
        const found = findDrift(row.kind, {
          active: ofRole.filter((g) => g.state === "active").map((g) => g.login!),
          inFlux: ofRole.filter((g) => g.state === "provisioning" || g.state === "revoking").map((g) => g.login!),
          recentlyEnded: ofRole.filter((g) => g.state === "revoked" || g.state === "failed").map((g) => g.login!),
          sharedWith: grants
            .filter((g) => g.role_id !== role.id && g.login !== null && entitlementOf.get(g.role_id) === entitlement)
            .map((g) => g.login!),
          observed: holders,
          ignored: ignore,
        });
        const { opened, seen, closed } = compareFindings(row.kind, roleOpen, found);
        const spec = policySpec.safeParse(role.policy_spec);
        const remove = spec.success && spec.data.drift === "remove";
        await grantStore.touchFindings(
          tx,
          seen.map((f) => f.id),
          now,
        );
        for (const f of seen)
          report.drift.push({
            role: role.name,
            login: f.login,
            kind: f.kind,
            action: f.action === "removed" ? "removing" : f.action,
            new: false,
            since: iso(f.first_seen_at)!,
          });
        for (const d of opened) {
          const id = newId();
          const left = leftByStint.has(`${entitlement}\u0000${normalizeLogin(row.kind, d.login)}`);
          const action = driftAction({ kind: d.kind, policyRemove: remove, leftByStint: left });
          await grantStore.insertFinding(tx, {
            id,
            targetId: row.id,
            roleId: role.id,
            login: d.login,
            kind: d.kind,
            action,
            now,
          });
          if (action === "removing")
            await outbox.enqueue(tx, {
              kind: JOB.removeDrift,
              idempotencyKey: `drift-remove:${id}`,
              payload: { findingId: id },
              maxAttempts: revokeAttempts,
            });
          if (action === "reprovisioning")
            await outbox.enqueue(tx, {
              kind: JOB.reprovision,
              idempotencyKey: `drift-reprovision:${id}`,
              payload: { findingId: id },
            });
          events.push({
            action: "drift.detected",
            outcome: "success",
            subject: `target:${row.name}`,
            reason:
              d.kind === "unexpected"
                ? left
                  ? `${d.login} holds ${role.name} at ${row.name} after Stint's grant of it ended`
                  : `${d.login} holds ${role.name} at ${row.name} without an activation`
                : `${d.login} has an active activation of ${role.name} but ${row.name} does not show it`,
            details: {
              role: role.name,
              login: d.login,
              kind: d.kind,
              action,
              findingId: id,
              ...(left && d.kind === "unexpected" ? { leftByStint: true } : {}),
            },
          });
          await alert(tx, {
            event: "drift.detected",
            severity: d.kind === "unexpected" ? "critical" : "warning",
            title:
              d.kind === "unexpected"
                ? `Privilege drift at ${row.name}: ${d.login} holds ${role.name} without an activation`
                : `Privilege drift at ${row.name}: ${d.login} is missing ${role.name}`,
            text:
              action === "removing"
                ? left
                  ? "Stint granted it for an activation that has ended: Stint is taking it away."
                  : "The role's policy says to remove drift: Stint is taking it away."
                : action === "reprovisioning"
                  ? "Stint is provisioning it again."
                  : "The role's policy says to report drift: find out who granted it, then remove it or convert it with `stint discover --convert`.",
            dedupeKey: `drift:${id}`,
          });
          report.drift.push({
            role: role.name,
            login: d.login,
            kind: d.kind,
            action,
            new: true,
            since: now.toISOString(),
          });
        }
        for (const f of closed) {
          if (!(await grantStore.resolveFinding(tx, f.id, "no longer seen at the target", now))) continue;
          events.push({
            action: "drift.resolved",
            outcome: "success",
            subject: `target:${row.name}`,
            details: { role: role.name, login: f.login, kind: f.kind, findingId: f.id, resolution: "gone" },
          });
          report.resolved.push({ role: role.name, login: f.login, kind: f.kind });
        }
      }
      if (events.length > 0) await audit.append(tx, SYSTEM, systemContext(`reconcile:${row.name}`), events);
    });
    return report;
  }

  // -------------------------------------------------------------------------
  // The service

  return {
    handlers,
    onGrant,

    /** Every node's scheduler may call this: one job per target per interval, whoever enqueues it first. */
    async scheduleReconcile(intervalMs: number): Promise<number> {
      const slot = Math.floor(clock.now().getTime() / intervalMs);
      const targets = await grantStore.listTargets(store.db);
      let queued = 0;
      await store.transaction(async (tx) => {
        for (const t of targets) {
          const added = await outbox.enqueue(tx, {
            kind: JOB.reconcile,
            idempotencyKey: `reconcile:${t.id}:${slot}`,
            payload: { targetId: t.id },
            maxAttempts: 1,
          });
          if (added) queued += 1;
        }
      });
      return queued;
    },

    /** Compares what Stint granted with what the targets have, now. */
    async reconcile(actor: Actor, context: CallContext, targetRef?: string): Promise<TargetReconcileReport[]> {
      authorize(actor, "targets.operate");
      const rows = targetRef ? [await requireTarget(targetRef)] : await grantStore.listTargets(store.db);
      if (rows.some((r) => r.kind === "internal"))
        throw new StintError("CONFLICT", "An internal target has nothing to reconcile: Stint enforces it itself.");
      const reports: TargetReconcileReport[] = [];
      for (const row of rows) reports.push(await reconcileTarget(row));
      await audit.record(actor, context, {
        action: "reconcile.run",
        outcome: reports.every((r) => r.ok) ? "success" : "failed",
        subject: targetRef ? `target:${rows[0]!.name}` : null,
        details: {
          targets: reports.map((r) => ({
            target: r.target,
            ok: r.ok,
            drift: r.drift.length,
            new: r.drift.filter((d) => d.new).length,
            resolved: r.resolved.length,
          })),
        },
      });
      return reports;
    },

    /** A password change at a target, for the vault's rotation: the connector's credential operations, for one call. */
    async withCredentials<T>(
      targetName: string,
      work: (ops: {
        setPassword(login: string, password: string): Promise<void>;
        verifyPassword(login: string, password: string): Promise<boolean>;
      }) => Promise<T>,
    ): Promise<T> {
      const row = await requireTarget(targetName);
      const { connector, target } = await connectorTarget(store.db, row);
      const setPassword = connector.setPassword;
      const verifyPassword = connector.verifyPassword;
      if (!setPassword || !verifyPassword)
        throw new ConnectorError("refused", `a ${connector.kind} target cannot change passwords`);
      return work({
        setPassword: (login, password) =>
          call(connector.kind, "set_password", () =>
            setPassword.call(connector, target, { login, password }).catch((error: unknown) => {
              throw withoutSecrets(error, [password, target.credential]);
            }),
          ),
        verifyPassword: (login, password) =>
          call(connector.kind, "verify_password", () =>
            verifyPassword.call(connector, target, { login, password }).catch((error: unknown) => {
              throw withoutSecrets(error, [password, target.credential]);
            }),
          ),
      });
    },

    /**
     * The minted login of the caller's active activation of a role (`dynamic: true`), with where to connect.
     * Audited; the password never is.
     */
    async credentials(actor: Actor, context: CallContext, roleName: string) {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const now = clock.now();
      const grant = await grantStore.activeGrantOf(store.db, actor.id, roleName, now);
      if (!grant || !isDynamic(grant.entitlement) || !deps.vault)
        throw new StintError(
          "NOT_ACTIVE",
          `You have no active activation of ${roleName} with database credentials (a role with dynamic: true).`,
        );
      // The sealed password came with the grant (null columns while it is not stored yet).
      if (grant.ciphertext === null || grant.credential_login === null)
        throw new StintError("NOT_ACTIVE", `The credentials of ${roleName} are still being made.`);
      const stored = { login: grant.credential_login };
      const password = await deps.vault.openValue(`grant:${grant.id}`, {
        ciphertext: grant.ciphertext,
        wrappedKey: grant.wrapped_key!,
        kekVersion: grant.kek_version!,
      });
      const url = new URL(grant.address ?? "");
      const defaultPort = grant.target_kind === "postgres" ? 5432 : 3306;
      const read: AuditInput = {
        action: "grant.credentials_read",
        outcome: "success",
        subject: `grant:${grant.id}`,
        details: { role: roleName, target: grant.target_name, login: stored.login },
      };
      // The event has committed before the password is returned. With a background sequencer its one INSERT
      // commits on its own (no BEGIN and COMMIT round trips); chaining inline needs its transaction.
      if (audit.sequencing === "background") await audit.append(store.db, actor, context, read);
      else await audit.record(actor, context, read);
      return {
        host: url.hostname,
        port: url.port ? Number(url.port) : defaultPort,
        database: decodeURIComponent(url.pathname.replace(/^\//, "")) || null,
        user: stored.login,
        password,
        expiresAt: new Date(grant.expires_at!).toISOString(),
      };
    },

    /** Grants on their way to or from a target; `stuck`: only those whose last attempt failed or that wait longer than a minute. */
    async listUnsettled(actor: Actor, options: { stuck: boolean; limit?: number }): Promise<GrantDto[]> {
      authorize(actor, "grants.read");
      const now = clock.now();
      const rows = await grantStore.unsettledGrants(store.db, {
        limit: Math.min(options.limit ?? 200, 1000),
        ...(options.stuck ? { stuckBefore: new Date(now.getTime() - 60_000) } : {}),
      });
      return rows.map((r) => ({
        id: r.id,
        requestId: r.request_id,
        role: r.role_name,
        target: r.target_name,
        principal: r.principal_name,
        login: r.login,
        state: r.state,
        attempts: r.attempts,
        lastError: r.last_error,
        nextAttemptAt: iso(r.next_attempt_at),
        since: iso(r.updated_at)!,
      }));
    },

    /** Can Stint reach and administer the target? */
    async testTarget(actor: Actor, ref: string): Promise<{ target: string; ok: boolean; detail: string }> {
      authorize(actor, "targets.operate");
      const row = await requireTarget(ref);
      try {
        const { connector, target } = await connectorTarget(store.db, row);
        const result = await call(connector.kind, "test", () => connector.test(target));
        return { target: row.name, ok: true, detail: result.detail };
      } catch (error) {
        if (error instanceof StintError) throw error;
        const failure = asConnectorError(error);
        return { target: row.name, ok: false, detail: `${failure.reason}: ${failure.message}` };
      }
    },

    /**
     * Stores the target's admin credential, sealed and bound to the target and its endpoint; the value never
     * comes back out of the API. A path whose stored value belongs to another target is refused.
     */
    async setCredential(actor: Actor, context: CallContext, ref: string, secret: string): Promise<{ secret: string }> {
      authorize(actor, "targets.operate");
      const row = await requireTarget(ref);
      const path = targetConfig(row.config).credential;
      if (!path)
        throw new StintError(
          "CONFLICT",
          `The target ${row.name} declares no credential; add \`credential: { secret: targets/${row.name}/admin }\` to it first.`,
        );
      const endpoint = endpointOfRow(row);
      await store.transaction(async (tx) => {
        const change = await grantStore.writeSecret(
          tx,
          {
            path,
            targetId: row.id,
            endpoint,
            sealed: seal(secretKey, secret, credentialBinding(row.id, path, endpoint)),
          },
          clock.now(),
        );
        if (change === "taken")
          throw new StintError(
            "CONFLICT",
            `The credential ${path} belongs to another target; ${row.name} cannot set it.`,
          );
        await audit.append(tx, actor, context, {
          action: "target.credential_set",
          outcome: "success",
          subject: `target:${row.name}`,
          details: { secret: path, change },
        });
      });
      return { secret: path };
    },

    async deleteCredential(actor: Actor, context: CallContext, ref: string): Promise<void> {
      authorize(actor, "targets.operate");
      const row = await requireTarget(ref);
      const path = targetConfig(row.config).credential;
      await store.transaction(async (tx) => {
        const deleted = path ? await grantStore.deleteSecret(tx, path, row.id) : false;
        if (!deleted) throw new StintError("NOT_FOUND", `The target ${row.name} has no stored credential.`);
        await audit.append(tx, actor, context, {
          action: "target.credential_deleted",
          outcome: "success",
          subject: `target:${row.name}`,
          details: { secret: path },
        });
      });
    },

    /**
     * At start, after the upgrade to bound credentials: credentials stored before are re-sealed for the one
     * target that names their path, and session secrets targets named before get their allowance when one
     * target alone names them and they are not break-glass. Anything named by several targets (or none)
     * stays unbound: no target can use it until an operator sets or allows it again, and the log says so.
     */
    async bindStoredCredentials(): Promise<{ bound: number; unbound: string[] }> {
      const targets = await grantStore.listTargets(store.db);
      const unbound: string[] = [];
      const sessionPaths = new Map<string, grantStore.TargetRow[]>();
      for (const target of targets) {
        const session = sessionOptionsOf(targetConfig(target.config).options);
        if (session) sessionPaths.set(session.secret, [...(sessionPaths.get(session.secret) ?? []), target]);
      }
      for (const [path, named] of sessionPaths) {
        const facts = await custodyStore.sessionSecretFacts(store.db, path);
        if (facts.allowance) continue;
        if (named.length !== 1 || facts.secret?.breakGlass) {
          unbound.push(path);
          continue;
        }
        const target = named[0]!;
        await store.transaction(async (tx) => {
          const endpoint = endpointOfRow(target);
          const adopted = await custodyStore.adopt(tx, {
            path,
            targetId: target.id,
            endpoint,
            grantedBy: "upgrade",
            now: clock.now(),
            mac: allowanceMac(allowanceKey, { path, targetId: target.id, endpoint }),
          });
          if (!adopted) return;
          await audit.append(tx, SYSTEM, systemContext("upgrade"), {
            action: "secret.allowed",
            outcome: "success",
            subject: `secret:${path}`,
            details: { target: target.name, by: "upgrade" },
          });
        });
      }
      // Allowances made before they carried a MAC get theirs (the database as it is at the upgrade is trusted).
      for (const allowance of await custodyStore.allowancesWithoutMac(store.db))
        await custodyStore.setAllowanceMac(store.db, {
          path: allowance.path,
          targetId: allowance.target_id,
          mac: allowanceMac(allowanceKey, {
            path: allowance.path,
            targetId: allowance.target_id,
            endpoint: allowance.endpoint,
          }),
        });
      const rows = await grantStore.unboundSecrets(store.db);
      let bound = 0;
      for (const secretRow of rows) {
        const owners = targets.filter((t) => targetConfig(t.config).credential === secretRow.path);
        if (owners.length !== 1) {
          unbound.push(secretRow.path);
          continue;
        }
        const target = owners[0]!;
        const endpoint = endpointOfRow(target);
        let value: Buffer;
        try {
          value = open(secretKey, secretRow.sealed, legacyCredentialBinding(secretRow.path));
        } catch {
          // Not sealed to its path under this master key: it cannot be bound, only set again.
          unbound.push(secretRow.path);
          continue;
        }
        try {
          await store.transaction(async (tx) => {
            const bound = await grantStore.bindSecret(tx, {
              path: secretRow.path,
              targetId: target.id,
              endpoint,
              sealed: seal(secretKey, value, credentialBinding(target.id, secretRow.path, endpoint)),
            });
            if (!bound) return;
            await audit.append(tx, SYSTEM, systemContext("upgrade"), {
              action: "target.credential_bound",
              outcome: "success",
              subject: `target:${target.name}`,
              details: { secret: secretRow.path },
            });
          });
        } finally {
          value.fill(0);
        }
        bound += 1;
      }
      if (unbound.length > 0)
        logger.warn(
          { paths: unbound },
          "credentials and session secrets named by no target, by several or break-glass were not bound; set or allow them again per target",
        );
      return { bound, unbound };
    },

    /** Standing privileged access at a target, with the Stint principal each login maps to. */
    async discover(actor: Actor, context: CallContext, ref: string): Promise<DiscoveredAccessDto[]> {
      authorize(actor, "targets.operate");
      return discover(actor, context, await requireTarget(ref));
    },

    /**
     * Phase one → phase two: the chosen standing access becomes eligibility for `role`
     * (one transaction, audited), and its removal at the target goes through the outbox.
     * Only access that the role grants back is converted; the rest is listed as skipped.
     */
    async convert(
      actor: Actor,
      context: CallContext,
      ref: string,
      input: { role: string; logins: string[] | null; dryRun: boolean; reason: string },
    ): Promise<ConvertResult> {
      authorize(actor, "targets.operate");
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const row = await requireTarget(ref);
      const role = await grantStore.findRoleByName(store.db, input.role);
      if (!role || role.target_id !== row.id)
        throw new StintError("NOT_FOUND", `There is no role ${JSON.stringify(input.role)} at the target ${row.name}.`);
      const found = await discover(actor, context, row);
      const key = (login: string) => normalizeLogin(row.kind, login);
      const wanted = input.logins ? new Set(input.logins.map(key)) : null;
      const result: ConvertResult = { dryRun: input.dryRun, role: role.name, converted: [], skipped: [] };
      const grants = canonicalize(role.entitlement);
      for (const login of input.logins ?? [])
        if (!found.some((a) => key(a.login) === key(login)))
          result.skipped.push({ login, reason: "no standing privileged access was found for it" });
      const byLogin = await loginsOf(store.db, row);
      const plan: { access: DiscoveredAccessDto; principal: { id: string; name: string } }[] = [];
      for (const access of found) {
        if (wanted && !wanted.has(key(access.login))) continue;
        if (access.entitlement === null || canonicalize(access.entitlement) !== grants) {
          // Without a list of logins, only what the role grants is looked at.
          if (wanted)
            result.skipped.push({
              login: access.login,
              reason: `${access.privilege}: the role ${role.name} does not grant this, so removing it would lose access`,
            });
          continue;
        }
        const principal = byLogin.get(key(access.login));
        if (!principal) {
          result.skipped.push({ login: access.login, reason: "no Stint user maps to this login" });
          continue;
        }
        plan.push({ access, principal });
      }
      const conversionId = newId();
      await store.transaction(async (tx) => {
        const now = clock.now();
        for (const [index, { access, principal }] of plan.entries()) {
          const existing = await grantStore.isDirectlyEligible(tx, role.id, principal.id, now);
          result.converted.push({
            login: access.login,
            principal: principal.name,
            privilege: access.privilege,
            eligibility: existing ? "existing" : "created",
          });
          if (input.dryRun) continue;
          if (!existing)
            await grantStore.insertEligibility(tx, {
              id: newId(),
              roleId: role.id,
              principalId: principal.id,
              grantedBy: actor.id,
              reason: input.reason,
              now,
            });
          await outbox.enqueue(tx, {
            kind: JOB.removeStanding,
            idempotencyKey: `standing-remove:${conversionId}:${index}`,
            payload: {
              targetId: row.id,
              login: access.login,
              entitlement: access.entitlement,
              privilege: access.privilege,
              conversionId,
            },
            maxAttempts: revokeAttempts,
          });
        }
        if (!input.dryRun && plan.length > 0)
          await audit.append(tx, actor, context, {
            action: "standing.converted",
            outcome: "success",
            subject: `target:${row.name}`,
            reason: input.reason,
            details: {
              role: role.name,
              conversionId,
              converted: result.converted.map((c) => ({
                login: c.login,
                principal: c.principal,
                privilege: c.privilege,
              })),
            },
          });
      });
      return result;
    },
  };

  async function discover(
    actor: Actor,
    context: CallContext,
    row: grantStore.TargetRow,
  ): Promise<DiscoveredAccessDto[]> {
    let found: StandingAccess[];
    try {
      const { connector, target } = await connectorTarget(store.db, row);
      found = await call(connector.kind, "discover", () => connector.discover(target));
    } catch (error) {
      if (error instanceof StintError) throw error;
      const failure = asConnectorError(error);
      throw new StintError("TARGET_UNAVAILABLE", `${row.name}: ${failure.message}`, { reason: failure.reason });
    }
    const byLogin = await loginsOf(store.db, row);
    await audit.record(actor, context, {
      action: "target.discovered",
      outcome: "success",
      subject: `target:${row.name}`,
      details: { accounts: found.length },
    });
    return found.map((access) => ({
      ...access,
      principal: byLogin.get(normalizeLogin(row.kind, access.login))?.name ?? null,
    }));
  }
}

export type GrantService = ReturnType<typeof createGrantService>;
