/**
 * Sign-in, sessions, MFA and the first administrator. Password and TOTP checks
 * run outside transactions (they are slow); every outcome, including refusals,
 * is audited, and every state change commits with its audit event.
 *
 * Each use case has its file, all sharing one context (identity.context.ts): setup.ts (the first
 * administrator), sign-in.ts (password sign-in), sessions.ts (access tokens, refresh, single-sign-on
 * sessions, sign-out), bearer-auth.ts (an Authorization header to an actor), mfa.ts (TOTP, recovery codes,
 * step-up), account.ts (me, password change), invites.ts (a user chooses their password with a one-time code); sign-in-guard.ts holds throttling and audited refusals.
 */
import { createAccountUseCases } from "./account.js";
import { createBearerAuth } from "./bearer-auth.js";
import { createIdentityContext, type IdentityServiceDeps } from "./identity.context.js";
import { createInviteUseCases } from "./invites.js";
import { createMfaUseCases } from "./mfa.js";
import { createSessionUseCases } from "./sessions.js";
import { createSetupUseCases } from "./setup.js";
import { createSignInUseCases } from "./sign-in.js";

export type { IdentityServiceDeps } from "./identity.context.js";
export { isBearerHeader } from "./bearer-auth.js";

export function createIdentityService(deps: IdentityServiceDeps) {
  const context = createIdentityContext(deps);
  return {
    ...createSetupUseCases(context),
    ...createSignInUseCases(context),
    ...createSessionUseCases(context),
    ...createBearerAuth(context),
    ...createAccountUseCases(context),
    ...createMfaUseCases(context),
    ...createInviteUseCases(context),
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
