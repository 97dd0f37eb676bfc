/**
 * Check-outs (exclusive secrets, returned by the holder or at their end, a new value on check-in when the
 * policy says so) and the break-glass reveal (fresh MFA, every channel told, a review and a rotation
 * scheduled, all with its audit event).
 */
import { checkoutPolicy, type CheckoutPolicy } from "../../contract/vault.js";
import { parseDuration } from "../../lib/duration.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { can } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import { iso, newValueFor, type VaultContext } from "./vault.context.js";
import { binding, sealVersion } from "./vault.crypto.js";
import * as vaultStore from "./vault.store.js";

/** How fresh the MFA of a break-glass reveal must be. */
const BREAK_GLASS_MFA_MAX_AGE_MS = 5 * 60_000;
/** A revealed break-glass secret is rotated this long after the reveal (time to finish the emergency). */
const BREAK_GLASS_ROTATE_AFTER_MS = 60 * 60_000;
/** The post-incident review is due within this. */
const REVIEW_DUE_MS = 3 * 24 * 3600_000;

export function createCheckouts(
  ctx: VaultContext,
  /** The rotation of a secret bound to a login at a target (vault.rotation.ts), for a check-in. */
  rotateAtTarget: (actor: Actor, context: CallContext, path: string) => Promise<{ version: number }>,
) {
  const { deps, store, audit, clock, memory, principalOf, mayUse, refuse, assertReleasable, release } = ctx;
  const { activeKek, rootKey, tellSecret } = memory;

  async function returnExpired(limit = 100): Promise<number> {
    return store.transaction(async (tx) => {
      const now = clock.now();
      const due = await vaultStore.claimExpiredCheckouts(tx, now, limit);
      const events = [];
      for (const c of due) {
        const leaver = c.holder_status === "disabled";
        await vaultStore.returnCheckout(tx, c.id, leaver ? "holder disabled" : "expired", now);
        // The holder saw the value whether they checked it in or not: rotated as a check-in would have it,
        // by this pass's due rotations (at the target for a login's password, proven there).
        const policy = checkoutPolicy.parse(c.checkout ?? {});
        const rotate = policy.rotateOnCheckin && c.kind !== "certificate";
        if (rotate) await vaultStore.setRotationDueBy(tx, c.secret_id, now);
        events.push({
          action: "secret.checked_in",
          outcome: "success" as const,
          subject: `secret:${c.path}`,
          reason: leaver ? "the holder was disabled" : "the check-out reached its end",
          details: { holder: c.holder_name, automatic: true, rotationDue: rotate },
        });
      }
      if (events.length > 0)
        await audit.append(tx, SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, events);
      return due.length;
    });
  }

  async function checkout(
    actor: Actor,
    context: CallContext,
    path: string,
    input: { duration?: string; reason: string },
  ) {
    const principal = principalOf(actor);
    await rootKey();
    const row = await vaultStore.findSecret(store.db, path);
    if (!row || !(await mayUse(actor, row)))
      return refuse(
        actor,
        context,
        "secret.checkout",
        path,
        `There is no secret ${path} that you may check out now (activate a role that lists it).`,
      );
    // Before any check-out row: a break-glass secret is never checked out.
    await assertReleasable("checkout", row, { actor, context });
    const policy: CheckoutPolicy = checkoutPolicy.parse(row.checkout ?? {});
    const maxMs = parseDuration(policy.maxDuration);
    const ms = input.duration ? parseDuration(input.duration) : maxMs;
    if (ms > maxMs)
      throw new StintError("DURATION_TOO_LONG", `${path} may be checked out for at most ${policy.maxDuration}.`);
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + ms);
    const id = newId();
    const won = await store.transaction(async (tx) => {
      if (
        !(await vaultStore.tryCheckout(tx, {
          id,
          secretId: row.id,
          holderId: principal.id,
          reason: input.reason,
          now,
          expiresAt,
        }))
      )
        return false;
      await audit.append(tx, actor, context, {
        action: "secret.checked_out",
        outcome: "success",
        subject: `secret:${path}`,
        reason: input.reason,
        details: { until: expiresAt.toISOString(), version: row.current_version },
      });
      return true;
    });
    if (!won) {
      const open = await vaultStore.openCheckout(store.db, row.id);
      const until = open ? iso(open.expires_at) : null;
      throw new StintError(
        "CHECKED_OUT",
        `${path} is checked out by ${open?.holder_name ?? "someone"}${until ? ` until ${until}` : ""}.`,
        { holder: open?.holder_name ?? null, until },
      );
    }
    const value = await release("checkout", row, row.current_version, { actor, context });
    return { path, version: row.current_version, value, holder: principal.name, until: expiresAt.toISOString() };
  }

  async function checkin(actor: Actor, context: CallContext, path: string) {
    const principal = principalOf(actor);
    const row = await vaultStore.findSecret(store.db, path);
    const open = row ? await vaultStore.openCheckout(store.db, row.id) : undefined;
    if (!row || !open || (open.holder_id !== principal.id && !can(actor, "secrets.write")))
      throw new StintError("NOT_FOUND", `You hold no check-out of ${path}.`);
    const policy = checkoutPolicy.parse(row.checkout ?? {});
    const wantsRotation = policy.rotateOnCheckin && row.kind !== "certificate";
    // A login's password at a target is rotated there (proven, after the check-in); others get a new version here.
    const atTarget = wantsRotation && row.rotation !== null;
    const rotate = wantsRotation && !atTarget;
    const kek = rotate ? await activeKek(store.db) : null;
    let version = row.current_version;
    await store.transaction(async (tx) => {
      const now = clock.now();
      if (!(await vaultStore.returnCheckout(tx, open.id, "checked in", now))) return;
      if (rotate && kek) {
        // A new value the borrower never saw.
        version = (await vaultStore.maxVersion(tx, row.id)) + 1;
        const sealed = sealVersion(kek.key, binding(row.id, row.path, version), newValueFor(row.kind));
        await vaultStore.insertVersion(tx, {
          secret_id: row.id,
          version,
          ciphertext: sealed.ciphertext,
          wrapped_key: sealed.wrappedKey,
          kek_version: kek.version,
          source: "rotation",
          created_by: "system",
          created_at: now,
        });
        await tx
          .updateTable("secrets")
          .set({ current_version: version, updated_at: now })
          .where("id", "=", row.id)
          .execute();
        await tellSecret(tx, row.path);
      }
      await audit.append(tx, actor, context, {
        action: "secret.checked_in",
        outcome: "success",
        subject: `secret:${path}`,
        details: { holder: open.holder_name, rotated: rotate, version },
      });
    });
    if (atTarget) {
      const result = await rotateAtTarget(SYSTEM, context, path).catch(async () => {
        // Audited and alerted by rotate; the scheduler tries again within the hour.
        await vaultStore.setRotationDueByPath(store.db, path, new Date(clock.now().getTime() + 3600_000));
        return null;
      });
      return { path, rotated: result !== null, currentVersion: result?.version ?? version };
    }
    return { path, rotated: rotate, currentVersion: version };
  }

  /**
   * Break-glass: reveals an emergency secret with a reason and a fresh MFA check, tells every channel,
   * opens a post-incident review and schedules the secret's rotation, all with the audit event.
   */
  async function reveal(actor: Actor, context: CallContext, path: string, reason: string) {
    const principal = principalOf(actor);
    await rootKey();
    const row = await vaultStore.findSecret(store.db, path);
    if (!row || !row.break_glass || !(await mayUse(actor, row)))
      return refuse(
        actor,
        context,
        "breakglass.reveal",
        path,
        `There is no break-glass secret ${path} you may reveal.`,
      );
    const now = clock.now();
    const mfaAge = principal.mfaAt ? now.getTime() - principal.mfaAt.getTime() : Number.NaN;
    if (!(mfaAge >= -30_000 && mfaAge <= BREAK_GLASS_MFA_MAX_AGE_MS)) {
      await audit.record(actor, context, {
        action: "breakglass.reveal",
        outcome: "denied",
        subject: `secret:${path}`,
        reason: "no fresh MFA",
      });
      throw new StintError(
        "MFA_STEP_UP_REQUIRED",
        "Revealing a break-glass secret needs a one-time code entered within the last 5 minutes (stint login --otp, or step up).",
      );
    }
    const value = await release("reveal", row, row.current_version, { actor, context });
    const reviewId = newId();
    const rotationDueAt = await store.transaction(async (tx) => {
      await vaultStore.insertReview(tx, {
        id: reviewId,
        kind: "break-glass-secret",
        subject: `secret:${path}`,
        actorId: principal.id,
        reason,
        now,
        dueAt: new Date(now.getTime() + REVIEW_DUE_MS),
      });
      // Never later than a rotation already due (an earlier reveal's): revealing again does not postpone it.
      const dueAt = await vaultStore.setRotationDueBy(
        tx,
        row.id,
        new Date(now.getTime() + BREAK_GLASS_ROTATE_AFTER_MS),
      );
      await audit.append(tx, actor, context, {
        action: "breakglass.secret_revealed",
        outcome: "success",
        subject: `secret:${path}`,
        reason,
        details: { version: row.current_version, reviewId, rotationDueAt: dueAt.toISOString() },
      });
      await deps.onBreakGlass?.(tx, { path, by: principal.name, reason, reviewId, at: now });
      return dueAt;
    });
    deps.afterBreakGlass?.();
    return { path, version: row.current_version, value, reviewId, rotationDueAt: rotationDueAt.toISOString() };
  }

  return { returnExpired, checkout, checkin, reveal };
}
