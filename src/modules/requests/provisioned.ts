/**
 * The provisioning worker's success: a provisioning request becomes active and its clock starts (one statement,
 * `provisioned.store.ts`, then its event). Optionally beside the target's change still under way: the
 * transaction writes, then waits for the change and commits only once it succeeded.
 */
import { SYSTEM, type CallContext } from "../authz/authz.types.js";
import type { HandlerContext } from "../outbox/index.js";
import { ACCESS_CHANNEL } from "../access-index/access-index.service.js";
import type { RequestCore } from "./activation.js";
import { activateProvisioned } from "./provisioned.store.js";
import { assertTransition, basisProblem } from "./requests.rules.js";

/**
 * How long an activation's transaction waits for the target's change it was written beside, holding its locks
 * (the request and its grant: a deactivation or revocation of that request waits as long). A slower change has
 * the transaction rolled back and written again once the change is done.
 */
export const OVERLAP_MS = 250;

/**
 * How a provisioned activation's transaction ran: beside the target's change (committed once it succeeded), again
 * after a change slower than `OVERLAP_MS` (the first transaction rolled back), or after the change (PGlite, or a
 * node with enough such transactions open already).
 */
export type ActivationPath = "beside_target" | "after_slow_target" | "after_target";

/** The activation's transaction gave up waiting for the target's change (rolled back, nothing written). */
export const SLOW_TARGET = Symbol("slow target");

class SlowTarget extends Error {}

/** `ready`, or a SlowTarget thrown after `ms`. */
async function within(ready: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SlowTarget("the target's change is slow")), ms);
  });
  try {
    await Promise.race([ready, late]);
  } finally {
    clearTimeout(timer);
  }
}

export function createActivation(core: RequestCore) {
  const { store, audit, clock, emit, tellActive, actMessage, index, end } = core;

  /**
   * The activation of `grantId`'s request in one transaction: true when it became active or was revoked here (its
   * requester lost the basis), false when the request ended meanwhile (the caller revokes again). With `ready`,
   * the transaction commits only after it resolved: its rejection rolls everything back and is thrown;
   * `SLOW_TARGET` when it took longer than `OVERLAP_MS` (nothing written).
   */
  async function activate(
    grantId: string,
    details: { login: string; done?: HandlerContext["done"] | undefined },
    ready: Promise<void> | undefined,
  ): Promise<boolean | typeof SLOW_TARGET> {
    const context: CallContext = { correlationId: `grant:${grantId}`, sourceIp: null, userAgent: null };
    // Whether the activation's statement wrote the provisioning job's done-mark (told once committed).
    let marked: boolean | undefined;
    const waitForTarget = () => (ready ? within(ready, OVERLAP_MS) : undefined);
    let result: boolean;
    try {
      result = await store.transaction(async (tx) => {
        marked = undefined;
        const now = clock.now();
        // One statement locks the request and its grant, reads the requester's basis and, when both are
        // provisioning and the basis holds, makes them active, sends the index's message and marks the job done
        // (4 before, and the mark after the commit).
        const act = index?.sentAct ? { channel: ACCESS_CHANNEL, at: Date.now() } : null;
        const done = await activateProvisioned(tx, grantId, now, act, details.done?.alongside);
        if (!done?.activated) await waitForTarget();
        if (!done) return false;
        if (details.done && done.activated) marked = done.completed;
        const { row, activated } = done;
        if (row.state !== "provisioning" || done.grantState !== "provisioning") return false;
        if (!activated) {
          // The target changed for someone who may no longer hold the role: take it away again, now.
          const lost = basisProblem({
            requesterActive: done.basis.active,
            eligible: done.basis.active && done.basis.eligible,
          });
          // Not activated with the basis held cannot happen (the statement's conditions are these): retried.
          if (!lost) throw new Error(`grant ${grantId}: provisioning not activated with its basis held`);
          await audit.append(tx, SYSTEM, context, await end(tx, row, "revoked", lost, "system", now));
          return true;
        }
        assertTransition("provisioning", "active");
        const expiresAt = new Date(now.getTime() + row.duration_ms);
        if (done.x !== null) index!.sentAct!(tx, actMessage(row, now, expiresAt), done.x);
        else await tellActive(tx, row, now, expiresAt);
        await emit(tx, { type: "activated", requestId: row.id, role: row.role_name, requester: row.requester_name });
        await audit.append(tx, SYSTEM, context, {
          action: "request.activated",
          outcome: "success",
          subject: `request:${row.id}`,
          details: {
            role: row.role_name,
            requester: row.requester_name,
            expiresAt: expiresAt.toISOString(),
            grantId,
            login: details.login,
          },
        });
        // Written beside the target's change: committed only once it succeeded.
        await waitForTarget();
        return true;
      });
    } catch (error) {
      if (error instanceof SlowTarget) return SLOW_TARGET;
      throw error;
    }
    if (marked !== undefined) details.done!.completed(marked);
    return result;
  }

  return { activate };
}
