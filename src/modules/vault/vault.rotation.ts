/**
 * Rotation: now (`rotate`), when due (`rotateDue`, the scheduler), and the settling of pending versions a
 * dead node left (`reconcilePending`). Bound to a login at a target, a rotation is claimed by one node with
 * a lease, stored as a pending version, set at the target and proven by a sign-in before it becomes current.
 */
import { checkoutPolicy } from "../../contract/vault.js";
import { StintError } from "../../lib/errors.js";
import { failpoint, FailpointCrash } from "../../lib/failpoints.js";
import { authorize } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import { newValueFor, nextRotation, type VaultContext } from "./vault.context.js";
import { binding, sealVersion } from "./vault.crypto.js";
import * as vaultStore from "./vault.store.js";

/** How long a node's claim on a rotation lasts: past it, the rotation counts as abandoned (its node died). */
const ROTATION_LEASE_MS = 10 * 60_000;

export function createRotations(ctx: VaultContext) {
  const { deps, store, audit, clock, memory, node, release } = ctx;
  const { activeKek, tellSecret } = memory;
  let lastReconcileAt = Number.NEGATIVE_INFINITY;

  /** The body of a rotation whose claim this node holds (see `rotate`). */
  async function rotateClaimed(
    actor: Actor,
    context: CallContext,
    row: vaultStore.SecretRow,
    kek: { version: number; key: Buffer },
  ) {
    const path = row.path;
    const next = newValueFor(row.kind);
    const rotation = row.rotation;
    const pending = await store.transaction(async (tx) => {
      const locked = (await vaultStore.findSecret(tx, path, true))!;
      const version = (await vaultStore.maxVersion(tx, locked.id)) + 1;
      const sealed = sealVersion(kek.key, binding(locked.id, path, version), next);
      await vaultStore.insertVersion(tx, {
        secret_id: locked.id,
        version,
        ciphertext: sealed.ciphertext,
        wrapped_key: sealed.wrappedKey,
        kek_version: kek.version,
        source: "rotation",
        created_by: actor.kind === "principal" ? actor.name : "system",
        created_at: clock.now(),
        pending: true,
      });
      return { version, previous: locked.current_version };
    });
    await failpoint("vault.rotate.after-pending");
    if (rotation) {
      if (!deps.targets) {
        await store.transaction(async (tx) => {
          await vaultStore.deleteVersion(tx, row.id, pending.version);
          await tellSecret(tx, path);
        });
        throw new StintError("CONFLICT", "Rotation at targets is not available on this server.");
      }
      const old = await release("rotation", row, pending.previous);
      // A person's credential (one holder at a time, or break-glass): whoever saw the old password keeps no
      // session they opened with it. An application's login keeps its connections.
      const endSessions = row.break_glass || checkoutPolicy.parse(row.checkout ?? {}).exclusive;
      try {
        await deps.targets.withCredentials(rotation.target, async (ops) => {
          await ops.setPassword(rotation.login, next, { endSessions });
          if (!(await ops.verifyPassword(rotation.login, next)))
            throw new Error("the new password does not sign in at the target");
        });
      } catch (error) {
        const reason = error instanceof Error ? error.message : "the target failed";
        let restored = false;
        try {
          restored = await deps.targets.withCredentials(rotation.target, async (ops) => {
            await ops.setPassword(rotation.login, old);
            return ops.verifyPassword(rotation.login, old);
          });
        } catch {
          restored = false;
        }
        await store.transaction(async (tx) => {
          await vaultStore.deleteVersion(tx, row.id, pending.version);
          await tellSecret(tx, path);
          await audit.append(tx, actor, context, {
            action: "secret.rotation_failed",
            outcome: "failed",
            subject: `secret:${path}`,
            reason,
            details: { target: rotation.target, login: rotation.login, oldPasswordRestored: restored },
          });
          await deps.onRotationFailed?.(tx, {
            path,
            reason: `${reason}${restored ? "; the old password still works" : "; the old password could NOT be restored"}`,
            at: clock.now(),
          });
        });
        throw new StintError(
          "TARGET_UNAVAILABLE",
          `Rotating ${path} failed: ${reason}. The previous version stays current.`,
          {
            oldPasswordRestored: restored,
          },
        );
      }
      await failpoint("vault.rotate.after-target");
    }
    const committed = await store.transaction(async (tx) => {
      const now = clock.now();
      // Fenced: a reconcile that already settled this version (after our claim ran out) is not undone.
      if (!(await vaultStore.commitPending(tx, row.id, pending.version))) return false;
      await tx
        .updateTable("secrets")
        .set({ current_version: pending.version, rotation_due_at: nextRotation(row, now), updated_at: now })
        .where("id", "=", row.id)
        .execute();
      await tellSecret(tx, path);
      await audit.append(tx, actor, context, {
        action: "secret.rotated",
        outcome: "success",
        subject: `secret:${path}`,
        details: {
          version: pending.version,
          previousVersion: pending.previous,
          ...(rotation ? { target: rotation.target, login: rotation.login, verified: true } : {}),
        },
      });
      await failpoint("vault.rotate.before-commit");
      return true;
    });
    if (!committed) await outlivedClaim(actor, context, path, pending.version);
    return { path, version: pending.version, previousVersion: pending.previous };
  }

  /**
   * A rotation whose claim ran out while it worked (a stalled node) and whose pending version another node
   * settled meanwhile. Settled on this version: done. Settled on the old password (the target had not changed
   * yet when it was asked) and then changed by this node: the target is given the vault's current password
   * back, and the rotation fails, audited and alerted, as any failed rotation.
   */
  async function outlivedClaim(actor: Actor, context: CallContext, path: string, version: number): Promise<void> {
    const now = await vaultStore.findSecret(store.db, path);
    if (!now || now.current_version === version) return;
    const rotation = now.rotation;
    let restored = false;
    if (rotation && deps.targets) {
      const current = await release("rotation", now, now.current_version);
      try {
        restored = await deps.targets.withCredentials(rotation.target, async (ops) => {
          await ops.setPassword(rotation.login, current);
          return ops.verifyPassword(rotation.login, current);
        });
      } catch {
        restored = false;
      }
    }
    const reason = "the rotation outlived its claim and another node settled it on the previous password";
    await store.transaction(async (tx) => {
      await audit.append(tx, actor, context, {
        action: "secret.rotation_failed",
        outcome: "failed",
        subject: `secret:${path}`,
        reason,
        details: {
          version: now.current_version,
          ...(rotation ? { target: rotation.target, login: rotation.login } : {}),
          currentPasswordRestored: restored,
        },
      });
      await deps.onRotationFailed?.(tx, {
        path,
        reason: `${reason}${restored ? "; the target has the vault's current password again" : "; the target could NOT be given the vault's current password"}`,
        at: clock.now(),
      });
    });
    throw new StintError(
      "CONFLICT",
      `Rotating ${path} took longer than its claim and another node settled it meanwhile; version ${now.current_version} stays current${restored ? " and the target has its password again" : ", but the target could not be given its password back"}.`,
      { currentPasswordRestored: restored },
    );
  }

  /** One abandoned pending version, settled on what the target accepts (see `reconcilePending`). */
  async function settlePending(path: string, version: number): Promise<boolean> {
    const row = await vaultStore.findSecret(store.db, path);
    if (!row) return false;
    const context: CallContext = { correlationId: "rotation-reconcile", sourceIp: null, userAgent: null };
    const settle = async (outcome: "new" | "old") =>
      store.transaction(async (tx) => {
        const now = clock.now();
        await tellSecret(tx, path);
        if (outcome === "new") {
          if (!(await vaultStore.commitPending(tx, row.id, version))) return;
          await tx
            .updateTable("secrets")
            .set({ current_version: version, rotation_due_at: nextRotation(row, now), updated_at: now })
            .where("id", "=", row.id)
            .execute();
        } else {
          await vaultStore.deleteVersion(tx, row.id, version);
        }
        await audit.append(tx, SYSTEM, context, {
          action: "secret.rotation_reconciled",
          outcome: "success",
          subject: `secret:${path}`,
          reason: "a rotation's node stopped between changing the target and committing",
          details: { settledOn: outcome, version: outcome === "new" ? version : row.current_version },
        });
      });
    const rotation = row.rotation;
    // Without a target the pending value never left the vault.
    if (!rotation || !deps.targets) {
      await settle("old");
      return true;
    }
    const fresh = await release("rotation", row, version);
    const old = await release("rotation", row, row.current_version);
    let verdict: "new" | "old" | "neither";
    try {
      verdict = await deps.targets.withCredentials(rotation.target, async (ops) => {
        if (await ops.verifyPassword(rotation.login, fresh)) return "new";
        if (await ops.verifyPassword(rotation.login, old)) return "old";
        return "neither";
      });
    } catch {
      return false; // the target is not answering: ask again at the next pass
    }
    if (verdict !== "neither") {
      await settle(verdict);
      return true;
    }
    await store.transaction(async (tx) => {
      await audit.append(tx, SYSTEM, context, {
        action: "secret.rotation_reconciled",
        outcome: "failed",
        subject: `secret:${path}`,
        reason: "neither the pending nor the current password signs in at the target",
        details: { target: rotation.target, login: rotation.login, pendingVersion: version },
      });
      await deps.onRotationFailed?.(tx, {
        path,
        reason: `neither the pending version ${version} nor the current password signs in as ${rotation.login} at ${rotation.target}`,
        at: clock.now(),
      });
    });
    return false;
  }

  /**
   * Rotates a secret now. Bound to a login at a target: the rotation is claimed (one node, one rotation,
   * for ROTATION_LEASE_MS), the new password stored as a pending version, set at the target, proven by a
   * real sign-in, and only then made current; on any failure the old password is put back at the target,
   * the pending version dropped, and the failure audited and alerted. A node that dies in between leaves
   * the pending version to `reconcilePending`. Without a target: a new random version.
   */
  async function rotate(actor: Actor, context: CallContext, path: string, options: { claimed?: boolean } = {}) {
    authorize(actor, "secrets.write");
    const kek = await activeKek(store.db);
    const row = await vaultStore.findSecret(store.db, path);
    if (!row) throw new StintError("NOT_FOUND", `There is no secret ${path}.`);
    if (row.kind === "certificate")
      throw new StintError("CONFLICT", `${path} is a certificate: Stint does not issue certificates; put a new one.`);
    if (!options.claimed) {
      const now = clock.now();
      if (!(await vaultStore.claimRotation(store.db, row.id, node, now, new Date(now.getTime() + ROTATION_LEASE_MS))))
        throw new StintError("CONFLICT", `A rotation of ${path} is already running; try again when it ends.`);
    }
    let crashed = false;
    try {
      return await rotateClaimed(actor, context, row, kek);
    } catch (error) {
      // A test's simulated crash: a dead node releases nothing; its claim runs out (see reconcilePending).
      crashed = error instanceof FailpointCrash;
      throw error;
    } finally {
      if (!crashed) await vaultStore.releaseRotation(store.db, row.id, node).catch(() => undefined);
    }
  }

  /**
   * Scheduler: rotates the secrets whose rotation is due (a schedule, or after a break-glass reveal),
   * exactly as `rotate` does, each claimed first so that of several nodes one rotates it. A failed one is
   * audited and alerted by `rotate`, and tried again in an hour. Pending versions a dead node left are
   * settled first.
   */
  async function rotateDue(limit = 50): Promise<number> {
    // The scheduler passes often; abandoned rotations are looked for once a minute (claims last ten).
    const now = clock.now().getTime();
    if (now - lastReconcileAt >= 60_000) {
      lastReconcileAt = now;
      await reconcilePending();
    }
    const due = await vaultStore.dueRotations(store.db, clock.now(), limit);
    let rotated = 0;
    for (const { id, path } of due) {
      const now = clock.now();
      if (!(await vaultStore.claimRotation(store.db, id, node, now, new Date(now.getTime() + ROTATION_LEASE_MS))))
        continue; // another node has it
      try {
        await rotate(SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, path, {
          claimed: true,
        });
        rotated += 1;
      } catch (error) {
        if (error instanceof FailpointCrash) throw error; // the node died here: it reschedules nothing
        if (error instanceof StintError && (error.code === "SEALED" || error.code === "VAULT_KEY_INVALID")) throw error;
        // A secret that cannot be rotated at all stops being due; anything else is tried again in an hour.
        // (A rotation that outlived its claim failed this time only: tried again in an hour too.)
        const cannot =
          error instanceof StintError &&
          error.code === "CONFLICT" &&
          error.details?.currentPasswordRestored === undefined;
        await vaultStore.setRotationDueByPath(
          store.db,
          path,
          cannot ? null : new Date(clock.now().getTime() + 3600_000),
        );
      }
    }
    return rotated;
  }

  /**
   * Settles the pending versions of rotations whose node died between storing the new password and
   * committing it (their claim ran out): the target decides. The pending password signs in: it becomes
   * current. The old one does: the pending version is dropped. Neither: it stays pending, audited and
   * alerted, for an operator. A target that cannot be reached is asked again at the next pass.
   */
  async function reconcilePending(): Promise<{ settled: number }> {
    const abandoned = await vaultStore.abandonedPending(store.db, clock.now());
    let settled = 0;
    for (const pending of abandoned) {
      const now = clock.now();
      if (
        !(await vaultStore.claimRotation(
          store.db,
          pending.secret_id,
          node,
          now,
          new Date(now.getTime() + ROTATION_LEASE_MS),
        ))
      )
        continue;
      try {
        if (await settlePending(pending.path, pending.version)) settled += 1;
      } finally {
        await vaultStore.releaseRotation(store.db, pending.secret_id, node).catch(() => undefined);
      }
    }
    return { settled };
  }

  return { rotate, rotateDue, reconcilePending };
}
