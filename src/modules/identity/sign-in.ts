/**
 * Password sign-in: throttled per account and peer address, an unknown user costing what a wrong password
 * costs, the second factor (TOTP, recovery code or passkey) when one is enrolled, every outcome audited.
 */
import type { WebauthnAssertionDto } from "../../contract/passkeys.js";
import { StintError } from "../../lib/errors.js";
import { burnPasswordCheck, verifyPassword } from "../../lib/security.js";
import { ANONYMOUS, type CallContext } from "../authz/authz.types.js";
import type { IdentityContext } from "./identity.context.js";
import { canonicalUsername } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import type { TokenPair } from "./identity.types.js";
import { secondFactors } from "./mfa.js";
import { sessionTokens } from "./sessions.js";
import { signInGuard } from "./sign-in-guard.js";

export function createSignInUseCases(deps: IdentityContext) {
  const { store, clock } = deps;
  const { userKey, failSignIn, claimAttempt, releaseAttempt, deny } = signInGuard(deps);
  const { openRefreshSession, issueSession } = sessionTokens(deps);
  const { checkSecondFactor } = secondFactors(deps);

  return {
    async login(
      input: {
        username: string;
        password: string;
        otp?: string | undefined;
        /** A passkey answer to the challenge a previous MFA_REQUIRED carried. */
        webauthn?: WebauthnAssertionDto | undefined;
      },
      context: CallContext,
    ): Promise<TokenPair> {
      const username = canonicalUsername(input.username);
      const now = clock.now();
      const refuse = (reason: string, error: StintError) =>
        deny(context, "auth.login", `user:${username}`, reason, error);
      const passwords = deps.passwordSignIn;
      if (passwords?.mode === "break-glass" && !passwords.breakGlassUsers.includes(username))
        return refuse(
          "passwords are turned off (single sign-on only) and this is no break-glass account",
          new StintError("PASSWORD_SIGNIN_DISABLED"),
        );
      // Counted before the password (and code) are checked: parallel guesses cannot outrun the lockout.
      const claim = await claimAttempt(username, context, "auth.login", ANONYMOUS);
      const fail = (reason: string, code: Parameters<typeof failSignIn>[3]) =>
        failSignIn(username, context, reason, code, undefined, claim);
      const refuseUncounted = async (reason: string, error: StintError) => {
        await releaseAttempt(claim);
        return refuse(reason, error);
      };

      const principal = await identityStore.findPrincipalByName(store.db, username);
      const storedHash = principal ? await identityStore.getPasswordHash(store.db, principal.id) : undefined;
      if (!principal || !storedHash) {
        await burnPasswordCheck(input.password, deps.scrypt);
        return fail(principal ? "account has no password" : "unknown user", "INVALID_CREDENTIALS");
      }
      if (!(await verifyPassword(input.password, storedHash))) return fail("wrong password", "INVALID_CREDENTIALS");
      if (principal.status !== "active")
        return refuseUncounted("account is disabled", new StintError("ACCOUNT_DISABLED"));

      const totp = await identityStore.getTotp(store.db, principal.id);
      const totpEnrolled = !!totp?.confirmed_at;
      const passkeyEnrolled = deps.passkeys ? await deps.passkeys.hasPasskeys(store.db, principal.id) : false;
      const mfaEnrolled = totpEnrolled || passkeyEnrolled;
      if (mfaEnrolled && !input.otp && !input.webauthn) {
        const methods = [...(totpEnrolled ? ["totp"] : []), ...(passkeyEnrolled ? ["webauthn"] : [])];
        // The challenge is issued only now that the password checked out: it never tells who has passkeys.
        const webauthn = passkeyEnrolled ? await deps.passkeys!.loginOptions(principal.id) : undefined;
        return refuseUncounted(
          totpEnrolled ? "one-time code missing" : "passkey missing",
          new StintError(
            "MFA_REQUIRED",
            !passkeyEnrolled
              ? undefined
              : totpEnrolled
                ? "A second factor is required: a one-time code (`otp`) or your passkey (`webauthn`, answering details.webauthn)."
                : "A passkey is required: this account's second factor is a passkey. Sign in with it in the web UI (or answer details.webauthn as `webauthn`).",
            { methods, ...(webauthn ? { webauthn } : {}) },
          ),
        );
      }

      type LoginFailure = { failed: string; code: Parameters<typeof failSignIn>[3] };
      const result = await store.transaction(async (tx) => {
        let method: "none" | "totp" | "recovery" | "webauthn" = "none";
        let credential: { id: string; name: string } | undefined;
        let webauthnAt: Date | null = null;
        if (mfaEnrolled && input.webauthn) {
          if (!passkeyEnrolled) return { failed: "no passkey registered", code: "WEBAUTHN_INVALID" } as LoginFailure;
          const checked = await deps.passkeys!.checkAssertion(tx, {
            principal,
            purpose: "login",
            assertion: input.webauthn,
            actor: ANONYMOUS,
            context,
          });
          if ("failed" in checked) return { failed: checked.failed, code: checked.code } as LoginFailure;
          method = "webauthn";
          credential = checked.credential;
          webauthnAt = now;
        } else if (mfaEnrolled) {
          const checked = await checkSecondFactor(tx, principal, input.otp!, now);
          if ("failed" in checked) return { failed: checked.failed, code: "MFA_INVALID" } as LoginFailure;
          method = checked.method;
        }
        const grant = { mfaAt: mfaEnrolled ? now : null, webauthnAt };
        const session = await openRefreshSession(tx, principal.id, grant, context, now);
        await identityStore.clearThrottle(tx, userKey(username));
        const details = {
          sessionId: session.id,
          mfa: method,
          ...(method === "recovery" ? { recoveryCodesLeft: "reduced by one" } : {}),
          ...(credential ? { credential: credential.id, credentialName: credential.name } : {}),
        };
        const event = { action: "auth.login", subject: `user:${username}`, details };
        return { pair: await issueSession(tx, principal, session, context, event) };
      });
      if ("failed" in result) return fail(result.failed, result.code);
      return result.pair!;
    },
  };
}
