/**
 * Grants at real targets: provisioning and revocation through the outbox,
 * reconciliation (drift), discovery of standing access and its conversion to
 * eligibility, target credentials and connection tests.
 *
 * Connectors run only in outbox handlers and in reconcile/discover/test calls,
 * never inside a transaction; every state change they cause is written with its
 * audit event afterwards, in one transaction, fenced on the state it expects.
 *
 * This factory only wires the use cases, one file each, which share one dependency type (grants.context.ts):
 * grants.provision.ts, grants.credentials.ts, grants.revoke.ts, grants.drift.ts, grants.standing.ts,
 * grants.targets.ts.
 */
import type { OutboxHandlers } from "../outbox/index.js";
import { createGrantContext, type GrantServiceDeps } from "./grants.context.js";
import { createCredentialReads } from "./grants.credentials.js";
import { createDriftChecks } from "./grants.drift.js";
import { createPreCreation } from "./grants.precreated.js";
import { createProvisioning } from "./grants.provision.js";
import { createRevocation } from "./grants.revoke.js";
import { createStandingAccess } from "./grants.standing.js";
import * as grantStore from "./grants.store.js";
import { createTargetAdmin } from "./grants.targets.js";
import { JOB } from "./grants.types.js";

export { withoutSecrets, type GrantServiceDeps } from "./grants.context.js";
export * from "./grants.types.js";

export function createGrantService(deps: GrantServiceDeps) {
  const ctx = createGrantContext(deps);
  const preCreation = createPreCreation(ctx);
  const provisioning = createProvisioning(ctx, preCreation);
  const credentialReads = createCredentialReads(ctx);
  const revocation = createRevocation(ctx);
  const drift = createDriftChecks(ctx);
  const standing = createStandingAccess(ctx);

  const handlers: OutboxHandlers = {
    [JOB.provision]: (payload, context) =>
      provisioning.provisionJob(payload, context.attempt, context.signal, context.done),
    [JOB.revoke]: (payload, context) => revocation.revokeJob(payload, context),
    [JOB.restore]: (payload, context) => revocation.restoreJob(payload, context),
    [JOB.removeDrift]: (payload, context) => drift.removeDriftJob(payload, context),
    [JOB.reprovision]: (payload, context) => drift.reprovisionJob(payload, context.signal),
    [JOB.removeStanding]: (payload, context) => standing.removeStandingJob(payload, context),
    [JOB.probe]: (payload, context) => revocation.probeJob(payload, context.signal),
    [JOB.preCreate]: (payload, context) => preCreation.fillJob(payload, context.signal),
    [JOB.reconcile]: async (payload) => {
      const row = await grantStore.findTarget(ctx.store.db, String(payload.targetId));
      if (row) await drift.reconcileTarget(row);
    },
  };

  return {
    handlers,
    onGrant: provisioning.onGrant,
    scheduleReconcile: drift.scheduleReconcile,
    reconcile: drift.reconcile,
    credentials: credentialReads.credentials,
    /** Credentials reads waiting for an activation now (tests). */
    waitingForCredentials: credentialReads.waiting,
    discover: standing.discover,
    convert: standing.convert,
    applyHeldFollowUp: standing.applyHeldFollowUp,
    ...createTargetAdmin(ctx),
  };
}

export type GrantService = ReturnType<typeof createGrantService>;
