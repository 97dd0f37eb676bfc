/**
 * A minted login's credentials, read by the holder of the activation (`GET /v1/me/roles/:role/credentials`), at
 * once or, with `?wait=N`, as soon as the activation becomes active (at most N seconds): the caller asks right
 * after its submit and gets the login in the same answer, instead of polling the request and asking again.
 *
 * The wait is woken by the access index (`onActivation`) when the caller's activation of the role becomes active:
 * on this node the moment the activation's transaction commits (the provisioning job runs on the submitting node),
 * heard through the index's channel from any other. A waiter is armed before each read, so an activation committed
 * between the read and the wait still wakes it. A lost message (the index's reset) wakes every waiter, and each looks again
 * at least every `RECHECK_MS` (a failed activation sends no `act`): it answers NOT_ACTIVE once no request of the
 * role may still become active. A caller with nothing coming is answered at once.
 */
import { performance } from "node:perf_hooks";
import { StintError } from "../../lib/errors.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { grantCredentialBinding } from "../vault/vault.crypto.js";
import type { GrantContext } from "./grants.context.js";
import * as grantStore from "./grants.store.js";
import { isDynamic } from "./grants.types.js";

/** A waiting read looks again at least this often (a failure sends no `act`; a message may be lost). */
const RECHECK_MS = 500;
/** Why there is nothing to answer yet: no active activation with credentials, or its password not stored yet. */
type Missing = "none" | "being-made";

/** The longest `?wait=` (seconds). */
export const MAX_CREDENTIALS_WAIT_S = 30;

/** The access index's subscription to activations, as the waits use it. */
export type ActivationEvents = Pick<AccessIndex, "onActivation">;

/** Waiters by principal and role name, woken when an activation of the pair becomes active. */
function createActivationWaits(events: ActivationEvents | undefined) {
  let waiting = 0;

  /**
   * Arms a waiter (before the read it follows): `until` settles at the first activation of the pair since it
   * was armed (or the index's reset), after `ms`, or when `signal` aborts; `disarm` forgets it.
   */
  function arm(principalId: string, roleName: string) {
    let woken = false;
    let resolveWake = () => {};
    const woke = new Promise<void>((resolve) => {
      resolveWake = resolve;
    });
    const stop = events?.onActivation(principalId, roleName, () => {
      woken = true;
      resolveWake();
    });
    waiting += 1;
    let armed = true;
    return {
      async until(ms: number, signal: AbortSignal | undefined): Promise<void> {
        if (woken || signal?.aborted) return;
        let timer: NodeJS.Timeout | undefined;
        const onAbort = () => resolveWake();
        signal?.addEventListener("abort", onAbort, { once: true });
        await Promise.race([woke, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      },
      disarm() {
        if (!armed) return;
        armed = false;
        waiting -= 1;
        stop?.();
      },
    };
  }

  return { arm, waiting: () => waiting };
}

export function createCredentialReads(ctx: GrantContext) {
  const { deps, store, audit, clock } = ctx;
  const waits = createActivationWaits(deps.index);

  const notActive = (roleName: string, why: Missing) =>
    new StintError(
      "NOT_ACTIVE",
      why === "being-made"
        ? `The credentials of ${roleName} are still being made.`
        : `You have no active activation of ${roleName} with database credentials (a role with dynamic: true).`,
    );

  /** The read itself: the grant with its sealed password (one statement), opened, then its audit event. */
  async function readOnce(actor: Actor & { kind: "principal" }, context: CallContext, roleName: string) {
    const grant = await grantStore.activeGrantOf(store.db, actor.id, roleName, clock.now());
    if (!grant || !isDynamic(grant.entitlement) || !deps.vault) return "none";
    // The sealed password came with the grant (null columns while it is not stored yet).
    if (grant.ciphertext === null || grant.credential_login === null) return "being-made";
    const login = grant.credential_login;
    const bound = grantCredentialBinding({ grant_id: grant.id, pool_id: grant.pool_id });
    const password = await deps.vault.openValue(bound, {
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
      details: { role: roleName, target: grant.target_name, login },
    };
    // The event has committed before the password is returned. With a background sequencer its one INSERT
    // commits on its own (no BEGIN and COMMIT round trips); chaining inline needs its transaction.
    if (audit.sequencing === "background") await audit.append(store.db, actor, context, read);
    else await audit.record(actor, context, read);
    return {
      host: url.hostname,
      port: url.port ? Number(url.port) : defaultPort,
      database: decodeURIComponent(url.pathname.replace(/^\//, "")) || null,
      user: login,
      password,
      expiresAt: new Date(grant.expires_at!).toISOString(),
    };
  }

  /**
   * Whether a request of the role (with credentials to mint) may still become active for the caller (`coming`),
   * is active already (`arrived`: its activation committed after the read looked), or neither.
   */
  async function whatIsComing(principalId: string, roleName: string): Promise<"coming" | "arrived" | "nothing"> {
    const open = (await grantStore.openRequestsOf(store.db, principalId, roleName)).filter((row) =>
      isDynamic(row.entitlement),
    );
    if (open.some((row) => row.state !== "active")) return "coming";
    return open.length > 0 ? "arrived" : "nothing";
  }

  return {
    /**
     * The minted login of the caller's active activation of a role (`dynamic: true`), with where to connect;
     * with `waitMs`, waits that long at most for a request of the role still on its way to become active.
     * Audited; the password never is.
     */
    async credentials(
      actor: Actor,
      context: CallContext,
      roleName: string,
      options: { waitMs?: number; signal?: AbortSignal } = {},
    ) {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const waitMs = Math.min(Math.max(options.waitMs ?? 0, 0), MAX_CREDENTIALS_WAIT_S * 1000);
      if (waitMs === 0) {
        const answer = await readOnce(actor, context, roleName);
        if (typeof answer === "string") throw notActive(roleName, answer);
        return answer;
      }
      const deadline = performance.now() + waitMs;
      // An activation that committed between the read and the look at what is coming is read again, once.
      let readAgain = false;
      for (;;) {
        // A caller that hung up gets nothing read (and nothing audited) for it.
        if (options.signal?.aborted) throw notActive(roleName, "none");
        const waiter = waits.arm(actor.id, roleName);
        try {
          const answer = await readOnce(actor, context, roleName);
          if (typeof answer !== "string") return answer;
          const left = deadline - performance.now();
          if (left <= 0) throw notActive(roleName, answer);
          if (answer === "none") {
            const coming = await whatIsComing(actor.id, roleName);
            if (coming === "nothing" || (coming === "arrived" && readAgain)) throw notActive(roleName, answer);
            readAgain = coming === "arrived";
            if (readAgain) continue;
          }
          await waiter.until(Math.min(left, RECHECK_MS), options.signal);
        } finally {
          waiter.disarm();
        }
      }
    },
    /** Reads waiting now (tests). */
    waiting: waits.waiting,
  };
}
