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
import type { ActiveActivation } from "../access-index/access-index.types.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { grantCredentialBinding } from "../vault/vault.crypto.js";
import type { GrantContext } from "./grants.context.js";
import * as grantStore from "./grants.store.js";
import { HANDED_OUT_IS_CURRENT } from "./grants.store.js";
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
    let activation: ActiveActivation | null = null;
    let resolveWake = () => {};
    const woke = new Promise<void>((resolve) => {
      resolveWake = resolve;
    });
    const stop = events?.onActivation(principalId, roleName, (news) => {
      woken = true;
      activation ??= news;
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
      /** The activation that woke it (null: none, or the index's reset). */
      activation: () => activation,
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

/** A credentials read's audit event (never the password). */
function readEvent(grantId: string, roleName: string, targetName: string, login: string): AuditInput {
  return {
    action: "grant.credentials_read",
    outcome: "success",
    subject: `grant:${grantId}`,
    details: { role: roleName, target: targetName, login },
  };
}

/** The answer: where to connect, as whom, with what, until when. */
function answer(address: string | null, kind: string, login: string, password: string, expiresAt: Date | string) {
  const url = new URL(address ?? "");
  const defaultPort = kind === "postgres" ? 5432 : 3306;
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : defaultPort,
    database: decodeURIComponent(url.pathname.replace(/^\//, "")) || null,
    user: login,
    password,
    expiresAt: new Date(expiresAt).toISOString(),
  };
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
    const password = await openPassword(grant.id, grant);
    const read = readEvent(grant.id, roleName, grant.target_name, login);
    // The event has committed before the password is returned. With a background sequencer its one INSERT
    // commits on its own (no BEGIN and COMMIT round trips); chaining inline needs its transaction.
    if (audit.sequencing === "background") await audit.append(store.db, actor, context, read);
    else await audit.record(actor, context, read);
    return answer(grant.address, grant.target_kind, login, password, grant.expires_at!);
  }

  /**
   * The read woken by an activation this node's provisioning handed out (its copy, grants.handouts.ts): one
   * statement, the audit event's INSERT, written only if the database still holds what the copy says
   * (`HANDED_OUT_IS_CURRENT`); undefined when there is no copy or it is not current (the read then reads the
   * database). With a background sequencer only: chaining inline needs a transaction.
   */
  async function readHandedOut(
    actor: Actor & { kind: "principal" },
    context: CallContext,
    roleName: string,
    activation: ActiveActivation,
  ) {
    const copy = ctx.handouts.take(activation.requestId);
    if (!copy || copy.roleName !== roleName || audit.sequencing !== "background" || !deps.vault) return undefined;
    const password = await openPassword(copy.grantId, copy.sealed);
    const [written] = await audit.appendManyWhere(
      store.db,
      [
        {
          actor,
          context,
          events: readEvent(copy.grantId, roleName, copy.target.name, copy.login),
          copy: [copy.grantId, actor.id, activation.requestId, copy.sealed.ciphertext, clock.now().toISOString()],
        },
      ],
      HANDED_OUT_IS_CURRENT,
    );
    if (!written) return undefined;
    return answer(copy.target.address, copy.target.kind, copy.login, password, new Date(activation.expiresAt));
  }

  function openPassword(
    grantId: string,
    sealed: {
      ciphertext: string | null;
      wrapped_key: string | null;
      kek_version: number | null;
      pool_id?: string | null;
    },
  ) {
    return deps.vault!.openValue(grantCredentialBinding({ grant_id: grantId, pool_id: sealed.pool_id ?? null }), {
      ciphertext: sealed.ciphertext!,
      wrappedKey: sealed.wrapped_key!,
      kekVersion: sealed.kek_version!,
    });
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
      // The activation that woke the last wait: answered from this node's copy when it has one.
      let woke: ActiveActivation | null = null;
      for (;;) {
        // A caller that hung up gets nothing read (and nothing audited) for it.
        if (options.signal?.aborted) throw notActive(roleName, "none");
        if (woke) {
          const handedOut = await readHandedOut(actor, context, roleName, woke);
          woke = null;
          if (handedOut) return handedOut;
        }
        const waiter = waits.arm(actor.id, roleName);
        try {
          // This node is provisioning it and has not reached the activation: nothing to read yet, so wait.
          const answer = ctx.handouts.onlyComing(actor.name, roleName)
            ? "being-made"
            : await readOnce(actor, context, roleName);
          if (typeof answer !== "string") return answer;
          const left = deadline - performance.now();
          if (left <= 0) throw notActive(roleName, answer);
          // The job may have started during the read: then it is coming, and its activation cannot be missed.
          if (answer === "none" && !ctx.handouts.onlyComing(actor.name, roleName)) {
            const coming = await whatIsComing(actor.id, roleName);
            if (coming === "nothing" || (coming === "arrived" && readAgain)) throw notActive(roleName, answer);
            readAgain = coming === "arrived";
            if (readAgain) continue;
          }
          await waiter.until(Math.min(left, RECHECK_MS), options.signal);
          woke = waiter.activation();
        } finally {
          waiter.disarm();
        }
      }
    },
    /** Reads waiting now (tests). */
    waiting: waits.waiting,
  };
}
