/**
 * Second factors: TOTP enrolment (the secret sealed, ten single-use recovery codes), a code or recovery code
 * checked and consumed (each TOTP step once), and step-up (a fresh code refreshes the session's MFA time).
 */
import * as OTPAuth from "otpauth";
import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { constantTimeEqual, open, seal, sha256Hex } from "../../lib/security.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { factorChangeNeeds } from "../passkeys/passkeys.rules.js";
import type { IdentityContext } from "./identity.context.js";
import { RECOVERY_CODE, TOTP_CODE, isTotpReplay, normalizeRecoveryCode, totpStep } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import { sessionOpenedAt } from "./membership-reads.js";
import { signInGuard } from "./sign-in-guard.js";

const RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789";

function recoveryCode(): string {
  const bytes = randomBytes(10);
  const chars = Array.from(bytes, (b) => RECOVERY_ALPHABET[b % RECOVERY_ALPHABET.length]).join("");
  return `${chars.slice(0, 5)}-${chars.slice(5)}`;
}

/** Checks and consumes second factors (sign-in, step-up). */
export function secondFactors(deps: IdentityContext) {
  const { totpKey } = deps;

  /** Checks a TOTP code (each 30-second step once) or a single-use recovery code, consuming it. */
  async function checkSecondFactor(
    tx: Kysely<Database>,
    principal: { id: string; name: string },
    input: string,
    now: Date,
  ): Promise<{ method: "totp" | "recovery" } | { failed: string }> {
    const otp = input.trim();
    const row = await identityStore.getTotp(tx, principal.id, true);
    if (!row?.confirmed_at) return { failed: "no authenticator enrolled" };
    if (TOTP_CODE.test(otp)) {
      const secret = OTPAuth.Secret.fromBase32(open(totpKey, row.secret_sealed, `totp:${principal.id}`).toString());
      const delta = totpFor(principal.name, secret).validate({ token: otp, timestamp: now.getTime(), window: 1 });
      const step = delta === null ? -1 : totpStep(now.getTime(), delta);
      if (delta === null || isTotpReplay(step, row.last_used_step)) {
        return { failed: delta === null ? "wrong one-time code" : "one-time code reused" };
      }
      await tx.updateTable("mfa_totp").set({ last_used_step: step }).where("principal_id", "=", principal.id).execute();
      return { method: "totp" };
    }
    if (RECOVERY_CODE.test(normalizeRecoveryCode(otp))) {
      const codeHash = sha256Hex(normalizeRecoveryCode(otp));
      const codes = await tx
        .selectFrom("recovery_codes")
        .selectAll()
        .where("principal_id", "=", principal.id)
        .where("used_at", "is", null)
        .forUpdate()
        .execute();
      const match = codes.find((c) => constantTimeEqual(c.code_hash, codeHash));
      if (!match) return { failed: "wrong recovery code" };
      await tx.updateTable("recovery_codes").set({ used_at: now }).where("id", "=", match.id).execute();
      return { method: "recovery" };
    }
    return { failed: "malformed one-time code" };
  }

  function totpFor(name: string, secret: OTPAuth.Secret) {
    return new OTPAuth.TOTP({ issuer: "Stint", label: name, algorithm: "SHA1", digits: 6, period: 30, secret });
  }

  return { checkSecondFactor, totpFor };
}

export function createMfaUseCases(deps: IdentityContext) {
  const { store, audit, clock, index, totpKey } = deps;
  const { failSignIn, claimAttempt, releaseAttempt, refuseIfLocked, deny } = signInGuard(deps);
  const { checkSecondFactor, totpFor } = secondFactors(deps);

  /**
   * An account that already has a passkey gets an authenticator app beside it only from a session whose MFA is
   * fresh, and one without a factor its first only from a recent sign-in (the passkeys' rule for adding a
   * factor): whoever holds a session but not the passkey, or an old session of an account with no factor,
   * must not enrol a factor of their own and step up with it. Checked at the start and at the confirmation.
   */
  async function requireFreshMfaIfFactor(
    actor: Extract<Actor, { kind: "principal" }>,
    context: CallContext,
    action: string,
  ) {
    const hasPasskey = deps.passkeys ? await deps.passkeys.hasPasskeys(store.db, actor.id) : false;
    const needs = factorChangeNeeds({
      hasFactor: hasPasskey,
      mfaAt: actor.mfaAt ?? null,
      signedInAt: await sessionOpenedAt(store.db, actor.sessionId),
      now: clock.now(),
    });
    if (needs === null) return;
    if (needs === "sign-in")
      await deny(
        context,
        action,
        `user:${actor.name}`,
        "a first second factor needs a sign-in within the last 15 minutes",
        new StintError("SIGN_IN_AGAIN"),
        actor,
      );
    await deny(
      context,
      action,
      `user:${actor.name}`,
      "adding a second factor needs an MFA check within the last 15 minutes",
      new StintError(
        "MFA_STEP_UP_REQUIRED",
        "Adding an authenticator app beside your passkey needs a passkey check within the last 15 minutes: step up first.",
      ),
      actor,
    );
  }

  return {
    async startTotpEnrollment(actor: Actor, context: CallContext): Promise<{ secret: string; otpauthUri: string }> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      await requireFreshMfaIfFactor(actor, context, "mfa.enrollment_started");
      const secret = new OTPAuth.Secret({ size: 20 });
      const now = clock.now();
      const enrolled = await store.transaction(async (tx) => {
        const existing = await identityStore.getTotp(tx, actor.id, true);
        if (existing?.confirmed_at) return true;
        const sealed = seal(totpKey, secret.base32, `totp:${actor.id}`);
        await tx
          .insertInto("mfa_totp")
          .values({ principal_id: actor.id, secret_sealed: sealed, created_at: now })
          .onConflict((oc) =>
            oc.column("principal_id").doUpdateSet({ secret_sealed: sealed, created_at: now, last_used_step: 0 }),
          )
          .execute();
        await audit.append(tx, actor, context, {
          action: "mfa.enrollment_started",
          outcome: "success",
          subject: `user:${actor.name}`,
        });
        return false;
      });
      if (enrolled)
        return deny(
          context,
          "mfa.enrollment_started",
          `user:${actor.name}`,
          "already enrolled",
          new StintError("MFA_ALREADY_ENROLLED"),
          actor,
        );
      return { secret: secret.base32, otpauthUri: totpFor(actor.name, secret).toString() };
    },

    async confirmTotpEnrollment(
      actor: Actor,
      code: string,
      context: CallContext,
    ): Promise<{ recoveryCodes: string[] }> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      await refuseIfLocked(actor.name, context, "mfa.enrolled", actor);
      await requireFreshMfaIfFactor(actor, context, "mfa.enrolled");
      const now = clock.now();
      const codes = Array.from({ length: 10 }, recoveryCode);
      const result = await store.transaction(async (tx) => {
        const row = await identityStore.getTotp(tx, actor.id, true);
        if (!row) return { error: new StintError("MFA_NOT_STARTED") };
        if (row.confirmed_at) return { error: new StintError("MFA_ALREADY_ENROLLED") };
        const secret = OTPAuth.Secret.fromBase32(open(totpKey, row.secret_sealed, `totp:${actor.id}`).toString());
        const delta = totpFor(actor.name, secret).validate({ token: code, timestamp: now.getTime(), window: 1 });
        if (delta === null) return { error: new StintError("MFA_INVALID") };
        await tx
          .updateTable("mfa_totp")
          .set({ confirmed_at: now, last_used_step: totpStep(now.getTime(), delta) })
          .where("principal_id", "=", actor.id)
          .execute();
        await tx.deleteFrom("recovery_codes").where("principal_id", "=", actor.id).execute();
        await tx
          .insertInto("recovery_codes")
          .values(codes.map((c) => ({ id: newId(), principal_id: actor.id, code_hash: sha256Hex(c), used_at: null })))
          .execute();
        await audit.append(tx, actor, context, {
          action: "mfa.enrolled",
          outcome: "success",
          subject: `user:${actor.name}`,
          details: { method: "totp", recoveryCodes: codes.length },
        });
        return { ok: true };
      });
      if ("error" in result && result.error) {
        // A wrong code counts against the lockout, like any other guess at a second factor.
        if (result.error.code === "MFA_INVALID") {
          return failSignIn(actor.name, context, result.error.message, "MFA_INVALID", {
            action: "mfa.enrolled",
            actor,
          });
        }
        return deny(context, "mfa.enrolled", `user:${actor.name}`, result.error.message, result.error, actor);
      }
      return { recoveryCodes: codes };
    },

    /** Step-up: a fresh one-time code refreshes the session's MFA time (policies ask for a recent one). */
    async stepUp(actor: Actor, otp: string, context: CallContext): Promise<{ mfaAt: string }> {
      if (actor.kind !== "principal" || !actor.sessionId)
        throw new StintError("UNAUTHENTICATED", "Step-up needs a signed-in session.");
      // Counted before the code is checked: parallel guesses from a stolen session cannot outrun the lockout.
      const claim = await claimAttempt(actor.name, context, "auth.step_up", actor);
      const now = clock.now();
      const result = await store.transaction(async (tx) => {
        const checked = await checkSecondFactor(tx, actor, otp, now);
        if ("failed" in checked) return checked;
        await releaseAttempt(claim, tx);
        await tx.updateTable("refresh_sessions").set({ mfa_at: now }).where("id", "=", actor.sessionId!).execute();
        await index?.send(tx, { t: "ses", sid: actor.sessionId! });
        await audit.append(tx, actor, context, {
          action: "auth.step_up",
          outcome: "success",
          subject: `user:${actor.name}`,
          details: { sessionId: actor.sessionId, method: checked.method },
        });
        return checked;
      });
      if ("failed" in result) {
        return failSignIn(actor.name, context, result.failed, "MFA_INVALID", { action: "auth.step_up", actor }, claim);
      }
      return { mfaAt: now.toISOString() };
    },
  };
}
