/**
 * Revocation: the revoke job (a shared membership is kept while another active grant relies on it), the restore
 * of a membership a removal took away, and the probe chain of a target that does not answer.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { failpoint } from "../../lib/failpoints.js";
import { newId } from "../../lib/ids.js";
import { SYSTEM } from "../authz/authz.types.js";
import { outboxStore, type HandlerContext } from "../outbox/index.js";
import { asConnectorError, problemsOf, systemContext, type GrantContext } from "./grants.context.js";
import { probeLane, targetLane } from "./grants.lanes.js";
import * as grantStore from "./grants.store.js";
import { isDynamic, JOB } from "./grants.types.js";

/**
 * A probe is one link of a chain that queues the next itself, so it is not retried on failure; but a probe whose
 * node died is run again once (otherwise dead-lettered, the chain would end and the target's revocations would
 * wait out their backoff).
 */
const PROBE_ATTEMPTS = 2;

export function createRevocation(ctx: GrantContext) {
  const {
    store,
    audit,
    clock,
    outbox,
    logger,
    revokeAttempts,
    probeIntervalMs,
    alert,
    revocationLatency,
    connectorTarget,
    call,
    queueRestores,
  } = ctx;

  /**
   * The membership a grant holds at its target, which every grant of the same login and entitlement there
   * shares (the same role activated again, or another role granting the same thing); null for a minted login,
   * which is its grant's alone.
   */
  function membershipOf(grant: grantStore.GrantRow): grantStore.MembershipKey | null {
    if (grant.login === null || isDynamic(grant.entitlement)) return null;
    return { targetId: grant.target_id, login: grant.login, entitlement: grant.entitlement };
  }

  async function revokeJob(payload: Record<string, unknown>, job: HandlerContext) {
    const grantId = String(payload.grantId);
    const force = payload.force === true;
    // The grant, its target and the target's credential in one statement, as a provisioning attempt reads them.
    const read = await grantStore.grantToProvision(store.db, grantId);
    if (!read || (read.grant.state !== "revoking" && !force)) return;
    const { grant, target: targetRow } = read;
    const membership = membershipOf(grant);
    const restoreReason = `the revocation of grant ${grantId} removed it at the target`;

    /**
     * Marks the grant revoked and audits it (a forced revocation is audited even when it already was). With `done`,
     * the same statement writes the attempt's done-mark; returns whether it did (undefined without `done`).
     */
    async function recordRevoked(
      tx: Kysely<Database>,
      now: Date,
      extra: Record<string, unknown>,
      done?: HandlerContext["done"],
    ): Promise<boolean | undefined> {
      const marked = done ? await grantStore.markRevokedAndDone(tx, grantId, now, done.alongside) : undefined;
      const revoked = marked ? marked.revoked : await grantStore.markRevoked(tx, grantId, now);
      if (!revoked && !force) return marked?.completed;
      await audit.append(tx, SYSTEM, systemContext(`grant:${grantId}`), {
        action: "grant.revoked",
        outcome: "success",
        subject: `grant:${grantId}`,
        details: {
          role: grant.role_name,
          target: targetRow.name,
          login: grant.login,
          requestId: grant.request_id,
          attempts: grant.attempts + 1,
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
      return marked?.completed;
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
        const { connector, target } = await connectorTarget(store.db, targetRow, read.targetSecret);
        const login = grant.login;
        const entitlement = grant.entitlement as Record<string, unknown>;
        if (isDynamic(entitlement) && connector.dropLogin) {
          // The login's name was drawn with the grant, and the grant became active with it: Stint made it there
          // (a pre-created login was made before its grant, and is marked as Stint's anyway).
          const madeFor =
            grant.request_activated_at !== null && !read.credential?.pool_id
              ? { madeFor: { namedAt: new Date(grant.created_at) } }
              : {};
          await call(connector.kind, "drop_login", () =>
            connector.dropLogin!(
              target,
              { login, ...madeFor },
              { signal: job.signal, operationId: `revoke:${grantId}` },
            ),
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
    // The attempt's done-mark goes with the grant's revoked mark, in its transaction: the runner writes none.
    const completed = await store.transaction(async (tx) => {
      // A grant of the same membership that started after the check above may have had its GRANT land before this
      // REVOKE did: the membership is put back for every one still provisioning or active.
      const holders = membership
        ? await grantStore.grantsSharing(tx, membership, {
            states: ["provisioning", "active"],
            exceptGrantId: grantId,
          })
        : [];
      await queueRestores(tx, holders, job, restoreReason);
      return recordRevoked(tx, now, holders.length > 0 ? { restoring: holders.map((h) => h.id) } : {}, job.done);
    });
    if (completed !== undefined) job.done!.completed(completed);
    // The activation ended before its revocation was queued (read with the grant above).
    if (grant.request_ended_at)
      revocationLatency.observe(Math.max(0, (now.getTime() - new Date(grant.request_ended_at).getTime()) / 1000));
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

  return { revokeJob, restoreJob, probeJob };
}
