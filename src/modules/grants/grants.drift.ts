/**
 * Reconciliation: what the targets hold compared with what Stint granted (drift findings, reported, removed or
 * provisioned again per the role's policy), on a schedule or on demand.
 */

import canonicalize from "canonicalize";
import { policySpec } from "../../contract/catalog.js";
import { StintError } from "../../lib/errors.js";
import { failpoint } from "../../lib/failpoints.js";
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import type { HandlerContext } from "../outbox/index.js";
import { asConnectorError, iso, systemContext, type GrantContext } from "./grants.context.js";
import * as grantStore from "./grants.store.js";
import * as reconcileStore from "./reconcile.store.js";
import { JOB, type TargetReconcileReport } from "./grants.types.js";
import { compareFindings, driftAction, findDrift, normalizeLogin } from "./reconcile.rules.js";

const OBSERVE_CONCURRENCY = 4;

export function createDriftChecks(ctx: GrantContext) {
  const { store, audit, clock, outbox, connectorTarget, call, queueRestores } = ctx;

  async function removeDriftJob(payload: Record<string, unknown>, job: HandlerContext) {
    const finding = await reconcileStore.findFinding(store.db, String(payload.findingId));
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
      if (!(await reconcileStore.resolveFinding(tx, finding.id, "an activation now backs it", clock.now())))
        return true;
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
      if (!(await reconcileStore.resolveFinding(tx, finding.id, "removed by Stint", clock.now(), "removed"))) return;
      await audit.append(tx, SYSTEM, systemContext(`drift:${finding.id}`), {
        action: "drift.removed",
        outcome: "success",
        subject: `target:${finding.target_name}`,
        details: { role: finding.role_name, login: finding.login },
      });
    });
  }

  async function reprovisionJob(payload: Record<string, unknown>, signal: AbortSignal) {
    const finding = await reconcileStore.findFinding(store.db, String(payload.findingId));
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
      if (!(await reconcileStore.resolveFinding(tx, finding.id, "provisioned again by Stint", clock.now()))) return;
      await audit.append(tx, SYSTEM, systemContext(`drift:${finding.id}`), {
        action: "drift.reprovisioned",
        outcome: "success",
        subject: `target:${finding.target_name}`,
        details: { role: finding.role_name, login: finding.login },
      });
    });
  }

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
      ctx.logger.warn({ target: row.name, err: failure.message }, "reconcile could not read the target");
      return { ...report, ok: false, error: failure.message };
    }

    await store.transaction(async (tx) => {
      const now = clock.now();
      const grants = await grantStore.grantsAt(tx, row.id, startedAt);
      const open = await reconcileStore.openFindings(tx, row.id);
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
        await reconcileStore.touchFindings(
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
          await reconcileStore.insertFinding(tx, {
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
              maxAttempts: ctx.revokeAttempts,
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
          await ctx.alert(tx, {
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
          if (!(await reconcileStore.resolveFinding(tx, f.id, "no longer seen at the target", now))) continue;
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

  return {
    removeDriftJob,
    reprovisionJob,
    reconcileTarget,

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
      const rows = targetRef ? [await ctx.requireTarget(targetRef)] : await grantStore.listTargets(store.db);
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
  };
}
