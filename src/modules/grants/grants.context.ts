/**
 * The one dependency type the grants use cases share (`GrantContext`): the service's dependencies with their
 * defaults applied, the metrics, and the steps every use case takes with a target (its connector with the
 * credential opened, a counted call, the restore of shared memberships).
 */
import type { Kysely } from "kysely";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { deriveKey, open } from "../../lib/security.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { readTargetCredential } from "../catalog/catalog.public.js";
import { targetConfig } from "../catalog/catalog.rules.js";
import { credentialBinding, endpointOf } from "../catalog/custody.rules.js";
import {
  ConnectorError,
  connectorFor as defaultConnectorFor,
  loginFor,
  type Connector,
  type ConnectorTarget,
} from "../connectors/index.js";
import { safeErrorMessage, type HandlerContext, type OutboxService } from "../outbox/index.js";
import type { RequestService } from "../requests/requests.service.js";
import type { VaultService } from "../vault/vault.service.js";
import type { ActivationEvents } from "./grants.credentials.js";
import { createHandouts } from "./grants.handouts.js";
import { withTargetLanes } from "./grants.lanes.js";
import * as grantStore from "./grants.store.js";
import * as reconcileStore from "./reconcile.store.js";
import { JOB, type GrantAlert } from "./grants.types.js";
import { normalizeLogin } from "./reconcile.rules.js";
import { OVERLAP_MS } from "../requests/provisioned.js";

export interface GrantServiceDeps {
  /** `engine`: PostgreSQL lets an activation's transaction run beside the target's change (`grants.provision.ts`). */
  store: Pick<AppStore, "db" | "transaction"> & Partial<Pick<AppStore, "engine">>;
  audit: Pick<AuditLog, "append" | "appendManyWhere" | "record" | "sequencing" | "catchUp">;
  clock: Clock;
  outbox: Pick<OutboxService, "enqueue">;
  requests: Pick<RequestService, "provisioned" | "provisionFailed">;
  masterKey: Uint8Array;
  registry: Registry;
  logger?: Pick<Logger, "info" | "warn" | "error">;
  /** Tests may wrap connectors; by default the built-in one of each kind. */
  connectorFor?: (kind: string) => Connector | null;
  onAlert?: (tx: Kysely<Database>, alert: GrantAlert) => Promise<void>;
  /**
   * The access index: a credentials read that waits (`?wait=`) is woken when the activation becomes active
   * (`onActivation`; without it, such a read looks again every half second).
   */
  index?: ActivationEvents;
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
  /**
   * Four-eyes for the eligibility a conversion of standing access makes (the catalog's `holdNewEligibility`): the
   * change request it became when that widens access at a covered tier (nothing may then change), else null. The
   * change request keeps `followUp` (the catalog's `HeldFollowUp`) and hands it to `applyHeldFollowUp` when approved.
   */
  holdNewEligibility?: (
    actor: Actor,
    context: CallContext,
    entries: { role: string; principal: string; reason: string }[],
    followUp: { kind: string; notes: string[]; payload: Record<string, unknown> },
  ) => Promise<ChangeRequestRefDto | null>;
}

export const iso = (value: Date | string | null) => (value === null ? null : new Date(value).toISOString());

export function asConnectorError(error: unknown): ConnectorError {
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

export function systemContext(correlationId: string): CallContext {
  return { correlationId, sourceIp: null, userAgent: null };
}

export function problemsOf(problems: string[], what: string) {
  if (problems.length > 0) throw new ConnectorError("refused", `${what} is not valid: ${problems.join("; ")}`);
}

/** A grant's login at its target, by the target's identity mapping (or why none can be mapped). */
export function grantLogin(config: unknown, grant: { principal_name: string; principal_email: string | null }) {
  return loginFor(targetConfig(config).identity, { name: grant.principal_name, email: grant.principal_email });
}

export function createGrantContext(deps: GrantServiceDeps) {
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
  const activationPaths: Counter<"kind" | "path"> = getOrCreate(
    deps.registry,
    "stint_provisioned_activations_total",
    () =>
      new Counter({
        name: "stint_provisioned_activations_total",
        help:
          "Activations after a target's change, by target kind and how their transaction ran: beside_target " +
          `(committed once the change succeeded), after_slow_target (the change took longer than ${OVERLAP_MS} ms: ` +
          "rolled back, written again after it), after_target.",
        labelNames: ["kind", "path"],
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
            const rows = await reconcileStore.openFindingCounts(store.db);
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
    const sealed = read === undefined ? await readTargetCredential(db, path) : read;
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

  return {
    deps,
    store,
    audit,
    clock,
    outbox,
    logger,
    provisionAttempts,
    revokeAttempts,
    provisionSettleMs,
    probeIntervalMs,
    secretKey,
    allowanceKey,
    alert,
    revocationLatency,
    activationPaths,
    endpointOfRow,
    connectorTarget,
    call,
    requireTarget,
    loginsOf,
    queueRestores,
    /** Minted logins this node's provisioning just activated, for their holders' waiting reads (one statement). */
    handouts: createHandouts(),
  };
}

/** What every grants use case is built from. */
export type GrantContext = ReturnType<typeof createGrantContext>;
