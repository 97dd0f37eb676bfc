/**
 * Target administration: the target's admin credential (set, deleted, bound at upgrade), connection tests,
 * password changes for the vault's rotation, and the grants still on their way to or from a target.
 */

import { StintError } from "../../lib/errors.js";
import { open, seal } from "../../lib/security.js";
import { authorize } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import { createUpgradeSteps } from "../audit/audit.upgrades.js";
import {
  adoptSessionSecret,
  allowancesWithoutMac,
  bindTargetCredential,
  deleteTargetCredential,
  macLegacyAllowances,
  sessionSecretFacts,
  storeTargetCredential,
  unboundTargetCredentials,
} from "../catalog/catalog.public.js";
import { targetConfig } from "../catalog/catalog.rules.js";
import { credentialBinding, legacyCredentialBinding } from "../catalog/custody.rules.js";
import { ConnectorError } from "../connectors/index.js";
import { sessionOptionsOf } from "../connectors/session-options.rules.js";
import { asConnectorError, iso, systemContext, withoutSecrets, type GrantContext } from "./grants.context.js";
import * as grantStore from "./grants.store.js";
import type { GrantDto } from "./grants.types.js";

export function createTargetAdmin(ctx: GrantContext) {
  const { store, audit, clock, logger, secretKey, allowanceKey, endpointOfRow, connectorTarget, call, requireTarget } =
    ctx;

  const { onceOnUpgrade } = createUpgradeSteps({ store, audit });

  return {
    /** A password change at a target, for the vault's rotation: the connector's credential operations, for one call. */
    async withCredentials<T>(
      targetName: string,
      work: (ops: {
        setPassword(login: string, password: string, options?: { endSessions?: boolean }): Promise<void>;
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
        setPassword: (login, password, options) =>
          call(connector.kind, "set_password", () =>
            setPassword.call(connector, target, { login, password, ...options }).catch((error: unknown) => {
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
        const change = await storeTargetCredential(
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
        const deleted = path ? await deleteTargetCredential(tx, path, row.id) : false;
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
     * At start, the upgrade steps that trust the database as it was when it was upgraded, each run once per
     * database (`onceOnUpgrade`): session secrets targets named before allowances existed get their allowance
     * when one target alone names them and they are not break-glass; allowances written before they carried a
     * MAC get theirs; credentials stored before they were bound to their target are re-sealed for the one target
     * that names their path. Afterwards a target naming a secret with no allowance, an allowance with no MAC or a
     * stored credential with no target (a database writer's, or one the upgrade left) stays refused, and the last
     * two are reported (log warning, audit event) at every start. Anything named by several targets (or none)
     * stays unbound: no target can use it until an operator sets or allows it again, and the log says so.
     */
    async bindStoredCredentials(): Promise<{ bound: number; unbound: string[] }> {
      const targets = await grantStore.listTargets(store.db);
      const names = new Map(targets.map((t) => [t.id, t.name]));
      const unbound: string[] = [];
      const sessionPaths = new Map<string, grantStore.TargetRow[]>();
      for (const target of targets) {
        const session = sessionOptionsOf(targetConfig(target.config).options);
        if (session) sessionPaths.set(session.secret, [...(sessionPaths.get(session.secret) ?? []), target]);
      }
      await onceOnUpgrade("session-secret-allowances", async (tx) => {
        for (const [path, named] of sessionPaths) {
          const facts = await sessionSecretFacts(tx, path);
          if (facts.allowance) continue;
          if (named.length !== 1 || facts.secret?.breakGlass) continue;
          const target = named[0]!;
          const endpoint = endpointOfRow(target);
          if (!(await adoptSessionSecret(tx, { path, targetId: target.id, endpoint, now: clock.now() }, allowanceKey)))
            continue;
          await audit.append(tx, SYSTEM, systemContext("upgrade"), {
            action: "secret.allowed",
            outcome: "success",
            subject: `secret:${path}`,
            details: { target: target.name, by: "upgrade" },
          });
        }
      });
      // Named and still without an allowance (several targets, break-glass, or named after the upgrade ran).
      for (const path of sessionPaths.keys())
        if (!(await sessionSecretFacts(store.db, path)).allowance) unbound.push(path);
      await onceOnUpgrade("allowance-macs", async (tx) => {
        const maced = await macLegacyAllowances(tx, allowanceKey);
        if (maced.length === 0) return;
        await audit.append(
          tx,
          SYSTEM,
          systemContext("upgrade"),
          maced.map((allowance) => ({
            action: "secret.allowed",
            outcome: "success" as const,
            subject: `secret:${allowance.path}`,
            details: { target: names.get(allowance.targetId) ?? allowance.targetId, by: "upgrade", legacy: true },
          })),
        );
      });
      // After the upgrade an allowance without a MAC is a database writer's: refused at session open, reported.
      const unmaced = await allowancesWithoutMac(store.db);
      if (unmaced.length > 0) {
        logger.warn(
          { allowances: unmaced.map((a) => ({ path: a.path, target: names.get(a.target_id) ?? a.target_id })) },
          "session-secret allowances without a MAC (written in the database since the upgrade) are refused",
        );
        await audit.record(
          SYSTEM,
          systemContext("upgrade"),
          unmaced.map((allowance) => ({
            action: "secret.allowance_refused",
            outcome: "denied" as const,
            subject: `secret:${allowance.path}`,
            reason: "no MAC: written in the database after the upgrade",
            details: { target: names.get(allowance.target_id) ?? allowance.target_id },
          })),
        );
      }
      // Credentials stored before the binding, re-sealed once per database for the one target naming them.
      let bound = 0;
      const leftUnbound: string[] = [];
      await onceOnUpgrade("credential-binding", async (tx) => {
        for (const secretRow of await unboundTargetCredentials(tx)) {
          const owners = targets.filter((t) => targetConfig(t.config).credential === secretRow.path);
          if (owners.length !== 1) {
            leftUnbound.push(secretRow.path);
            continue;
          }
          const target = owners[0]!;
          const endpoint = endpointOfRow(target);
          let value: Buffer;
          try {
            value = open(secretKey, secretRow.sealed, legacyCredentialBinding(secretRow.path));
          } catch {
            // Not sealed to its path under this master key: it cannot be bound, only set again.
            leftUnbound.push(secretRow.path);
            continue;
          }
          try {
            const sealed = seal(secretKey, value, credentialBinding(target.id, secretRow.path, endpoint));
            if (!(await bindTargetCredential(tx, { path: secretRow.path, targetId: target.id, endpoint, sealed })))
              continue;
          } finally {
            value.fill(0);
          }
          await audit.append(tx, SYSTEM, systemContext("upgrade"), {
            action: "target.credential_bound",
            outcome: "success",
            subject: `target:${target.name}`,
            details: { secret: secretRow.path },
          });
          bound += 1;
        }
      });
      unbound.push(...leftUnbound);
      // After the upgrade a credential with no target (one the upgrade could not bind, or a database writer's:
      // inserted, or put back from a backup, and named by a target of their choice) is never bound: reported.
      const refused = (await unboundTargetCredentials(store.db)).filter((row) => !leftUnbound.includes(row.path));
      if (refused.length > 0) {
        const namedBy = (path: string) =>
          targets.filter((t) => targetConfig(t.config).credential === path).map((t) => t.name);
        logger.warn(
          { credentials: refused.map((row) => ({ path: row.path, targets: namedBy(row.path) })) },
          "stored credentials without a target (not bound by the upgrade, or written in the database since) are refused; set them again for their target",
        );
        await audit.record(
          SYSTEM,
          systemContext("upgrade"),
          refused.map((row) => ({
            action: "target.credential_refused",
            outcome: "denied" as const,
            subject: `secret:${row.path}`,
            reason: "no target: not bound by the upgrade, or written in the database after it",
            details: { targets: namedBy(row.path) },
          })),
        );
      }
      if (unbound.length > 0)
        logger.warn(
          { paths: unbound },
          "credentials and session secrets named by no target, by several or break-glass were not bound; set or allow them again per target",
        );
      return { bound, unbound: [...unbound, ...refused.map((row) => row.path)] };
    },
  };
}
