/**
 * Provisioning: the requests service's hook (a grant to provision or revoke, in its transaction), the
 * provisioning job, and a minted login's password (made and sealed once per grant; read back by its holder in
 * grants.credentials.ts).
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { StintError } from "../../lib/errors.js";
import { failpoint, FailpointCrash } from "../../lib/failpoints.js";
import { ConnectorError, type Connector, type MintedPassword } from "../connectors/index.js";
import type { HandlerContext } from "../outbox/index.js";
import type { GrantInputs } from "../requests/request-context.js";
import { generateValue } from "../vault/vault.crypto.js";
import { asConnectorError, grantLogin, problemsOf, type GrantContext } from "./grants.context.js";
import { targetLane } from "./grants.lanes.js";
import * as grantStore from "./grants.store.js";
import { isDynamic, JOB, mintedLogin } from "./grants.types.js";
import { preCreatedCount, type createPreCreation } from "./grants.precreated.js";
import { claimPreCreated } from "./precreated.store.js";
import type { ActivationPath } from "../requests/provisioned.js";

/**
 * Attempts a provisioning row has beyond the provisioning's own budget. The runner dead-letters a row whose last
 * allowed attempt died (its node crashed), which would leave the grant `provisioning` for good, and perhaps the
 * privilege at the target. These attempts never call the target: they fail the activation and queue the removal
 * of what the attempt that died may have left. Two, so a node dying while settling is settled too.
 */
const SETTLING_ATTEMPTS = 2;
/** A minted login's own VALID UNTIL, past the activation's end: a safety net if Stint cannot drop it in time. */
const DYNAMIC_SAFETY_MARGIN_MS = 60 * 60_000;
/**
 * Activations written beside their target's change at once on a node, at most: each holds a store connection
 * while its target answers (up to the requests module's `OVERLAP_MS`), so a burst of provisioning at slow targets
 * must not take the pool (10 by default) from everyone else. Beyond it an activation runs after its change.
 */
const MAX_OVERLAPPING = 4;

export function createProvisioning(ctx: GrantContext, preCreation: ReturnType<typeof createPreCreation>) {
  const { deps, store, clock, outbox, provisionAttempts, revokeAttempts, call, activationPaths } = ctx;
  /** Activations being written beside their target's change on this node (`MAX_OVERLAPPING`). */
  let overlapping = 0;

  // -------------------------------------------------------------------------
  // The requests service's hook: a grant must be provisioned or revoked

  async function onGrant(
    tx: Kysely<Database>,
    change: { grantId: string; requestId: string; action: "provision" | "revoke"; inputs?: GrantInputs },
  ): Promise<void> {
    if (change.action === "provision") {
      // In the submit's transaction: its entitlement, target and principal came with the submit's facts (else one
      // read), and the lane is given (the wrapper would read the target again).
      const grant = change.inputs ?? (await grantStore.grantLoginInputs(tx, change.grantId));
      if (!grant) throw new Error(`grant ${change.grantId} vanished inside its own transaction`);
      const mapped = isDynamic(grant.entitlement)
        ? { login: mintedLogin(grant.principal_name) }
        : grantLogin(grant.target_config, grant);
      // A target that keeps logins created ahead hands one to this grant (else the minted login), in the job's INSERT.
      const alongside =
        "login" in mapped
          ? isDynamic(grant.entitlement) && preCreatedCount(grant.target_config) > 0
            ? claimPreCreated({
                grantId: change.grantId,
                targetId: grant.target_id,
                now: clock.now(),
                minted: mapped.login,
              })
            : grantStore.setLogin(change.grantId, mapped.login)
          : undefined;
      await outbox.enqueue(tx, {
        kind: JOB.provision,
        idempotencyKey: `provision:${change.grantId}`,
        payload: { grantId: change.grantId, maxAttempts: provisionAttempts },
        maxAttempts: provisionAttempts + SETTLING_ATTEMPTS,
        lane: targetLane(grant.target_id),
        // Run by this node's runner the moment the submit commits: no NOTIFY round, no claim of its own.
        runAfterCommit: true,
        // The login set by the job's INSERT: one statement.
        ...(alongside ? { alongside } : {}),
      });
      return;
    }
    // The lane's target and the provisioning job's state: one read (the lanes' wrapper reads none when given one).
    const facts = await grantStore.revocationInputs(tx, change.grantId);
    await outbox.enqueue(tx, {
      kind: JOB.revoke,
      idempotencyKey: `revoke:${change.grantId}`,
      payload: { grantId: change.grantId },
      maxAttempts: revokeAttempts,
      ...(facts ? { lane: targetLane(facts.target_id) } : {}),
    });
    // Ended while its provisioning is still to run or running: that attempt may change the target after the
    // revocation above has run, and its node may die before it says so. A second revocation, due once the
    // attempt's lease is over, commits here with the end, so no crash anywhere can lose it (issue 13 finding 2).
    if (facts?.provision_status) {
      const now = clock.now().getTime();
      const lockedUntil = facts.provision_locked_until;
      const leaseEnd = Math.max(now, lockedUntil === null ? now : new Date(lockedUntil).getTime());
      await outbox.enqueue(tx, {
        kind: JOB.revoke,
        idempotencyKey: `revoke:${change.grantId}:provision-in-flight`,
        payload: { grantId: change.grantId, force: true, after: "the activation ended while it was being provisioned" },
        maxAttempts: revokeAttempts,
        notBefore: new Date(leaseEnd + ctx.provisionSettleMs),
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

  async function provisionJob(
    payload: Record<string, unknown>,
    attempt: number,
    signal: AbortSignal,
    /** The attempt's done-mark, carried by the activation's statement (the runner then writes none). */
    done?: HandlerContext["done"],
  ) {
    const grantId = String(payload.grantId);
    const maxAttempts = Number(payload.maxAttempts ?? provisionAttempts);
    // The grant, its target, the target's credential and a stored password: one statement.
    let read = await grantStore.grantToProvision(store.db, grantId);
    if (!read) return;
    let grant = read.grant;
    if (grant.state === "provisioning" && attempt > maxAttempts) {
      // Its budget is spent and the last attempt stopped before finishing (its node died, or it overran its
      // lease), perhaps after the target call: fail the activation, then (below) leave a revocation behind.
      ctx.logger.warn({ grantId, attempt }, "provisioning settled: its last attempt stopped before finishing");
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
      const mapped = grantLogin(targetRow.config, grant);
      await deps.requests.provisionFailed(grantId, "problem" in mapped ? mapped.problem : "no login could be mapped");
      return;
    }
    const login = grant.login;
    const entitlement = grant.entitlement as Record<string, unknown>;
    // Handed a pre-created login by the submit: its password is set at the target and sealed already.
    const preCreated = isDynamic(entitlement) && Boolean(read.credential?.pool_id);
    /** The minted login's stored password as sealed, for its holder's read (`handouts`); null when unknown here. */
    let handedOut: grantStore.StoredCredential | null = preCreated ? read.credential : null;
    // This node provisions the pair's minted login: its holder's read may wait without looking first.
    const inFlight = isDynamic(entitlement) ? ctx.handouts.provisioning(grant.principal_name, grant.role_name) : null;
    try {
      await failpoint("grant.provision.before-target");
      // The target's stock of pre-created logins is topped up later (the fill is due in 250 ms): queued beside the
      // target call, so that its commit is not in the way of the activation or of the credentials read after it.
      const fill =
        isDynamic(entitlement) && preCreatedCount(targetRow.config) > 0
          ? preCreation.queueFill(targetRow.id, grantId)
          : undefined;
      // Awaited after the activation; never an unhandled rejection meanwhile.
      fill?.catch(() => undefined);
      /**
       * On PostgreSQL the activation's transaction runs while the target is being changed and commits once the
       * change succeeded (`provisioned`'s `ready`): its statements are off the path to a working login. It may
       * wait for this attempt's password insert, on another store connection: at most `MAX_OVERLAPPING` such
       * transactions hold connections meanwhile, fewer than the pool has, so that insert always gets one (and
       * `OVERLAP_MS` bounds any wait).
       */
      const overlap = store.engine === "postgres" && overlapping < MAX_OVERLAPPING;
      let activation: Promise<boolean> | undefined;
      const ran = (path: ActivationPath) => activationPaths.inc({ kind: targetRow.kind, path });
      try {
        const { connector, target } = await ctx.connectorTarget(store.db, targetRow, read.targetSecret);
        problemsOf(connector.checkLogin(login), `the login ${login}`);
        /** The target's change, then what must hold before the activation may commit. */
        let changed: Promise<void>;
        if (preCreated) {
          if (!connector.activatePreCreated)
            throw new ConnectorError("refused", `a ${connector.kind} target pre-creates no logins`);
          const validUntil = new Date(clock.now().getTime() + grant.duration_ms + DYNAMIC_SAFETY_MARGIN_MS);
          changed = call(connector.kind, "activate_login", () =>
            connector.activatePreCreated!(
              target,
              { login, entitlement, validUntil },
              { signal, operationId: `provision:${grantId}` },
            ),
          );
        } else if (isDynamic(entitlement)) {
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
          // path); both have finished, and succeeded, before the activation commits. A login made with a password
          // that is then not stored is harmless: the retry seals a new one and createLogin sets it on the login it
          // made (both connectors), and a grant that fails or ends has its login dropped whatever its password.
          const stored = minted.stored.then(async (winner) => {
            await failpoint("grant.provision.after-credential");
            return winner;
          });
          const creating = createLogin(minted.password);
          changed = (async () => {
            const [storing, creation] = await Promise.allSettled([stored, creating]);
            if (storing.status === "rejected") throw storing.reason;
            if (creation.status === "rejected") throw creation.reason;
            // Another worker stored its password first: the login gets that one (that worker sets it too).
            if (storing.value !== null) await createLogin(storing.value);
            else handedOut = minted.sealed;
          })();
        } else {
          changed = call(connector.kind, "provision", () =>
            connector.provision(target, { login, entitlement }, { signal, operationId: `provision:${grantId}` }),
          );
        }
        const ready = changed.then(async () => {
          await failpoint("grant.provision.after-target");
          // Kept before the activation commits: the holder's waiting read is woken by that commit (on this node).
          if (handedOut)
            ctx.handouts.remember({
              requestId: grant.request_id,
              grantId,
              roleName: grant.role_name,
              login,
              sealed: handedOut,
              target: { kind: targetRow.kind, address: targetRow.address, name: targetRow.name },
            });
          // From here the activation may commit: a read arriving now looks at the database first.
          inFlight?.activating();
        });
        // Settled by the catch below or by the activation; never an unhandled rejection meanwhile.
        ready.catch(() => undefined);
        if (overlap) {
          overlapping += 1;
          activation = deps.requests.provisioned(grantId, { login, done, ready, ran });
          activation.catch(() => undefined).finally(() => (overlapping -= 1));
        }
        await ready;
      } catch (error) {
        // The activation beside the target's change waited for it and wrote nothing: over before going on.
        await activation?.catch(() => undefined);
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
      const activated = await (activation ?? deps.requests.provisioned(grantId, { login, done, ran }));
      await fill;
      if (!activated) {
        // The activation ended while the target was being changed: take the privilege away again.
        await failpoint("grant.provision.before-follow-up");
        await revokeAfterProvisioning(
          grantId,
          `after-attempt:${attempt}`,
          "provisioning finished after the activation ended",
        );
      }
    } finally {
      inFlight?.end();
    }
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
  ): Promise<{
    password: string;
    stored: Promise<string | null>;
    prepared?: MintedPassword;
    /** The password sealed: the stored one, or this attempt's (the login's only if its insert wins: `stored`). */
    sealed: grantStore.StoredCredential;
  }> {
    const vault = deps.vault!;
    const bound = `grant:${grantId}`;
    const openSealed = (row: grantStore.StoredCredential) =>
      vault.openValue(bound, { ciphertext: row.ciphertext, wrappedKey: row.wrapped_key, kekVersion: row.kek_version });
    if (stored) return { password: await openSealed(stored), stored: Promise.resolve(null), sealed: stored };
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
    const mine = {
      login,
      ciphertext: sealed.ciphertext,
      wrapped_key: sealed.wrappedKey,
      kek_version: sealed.kekVersion,
    };
    return { password, stored: storing, ...(prepared ? { prepared } : {}), sealed: mine };
  }

  return {
    onGrant,
    provisionJob,
  };
}
