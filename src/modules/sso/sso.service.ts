/**
 * OIDC single sign-on: the authorization code flow with PKCE (web UI and the CLI's loopback redirect) and the
 * device authorization grant, both ending in one sign-in transaction (user linked or created, groups synced,
 * audited) and a Stint session. See README.md for the invariants.
 */
import { createHash } from "node:crypto";
import type { Kysely } from "kysely";
import * as oidc from "openid-client";
import type { AppStore } from "../../db/index.js";
import type { Database } from "../../db/schema.js";
import type { Clock } from "../../lib/clock.js";
import { StintError, type ErrorCode } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { constantTimeEqual, deriveKey, randomToken, sha256Hex } from "../../lib/security.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { ANONYMOUS, type Actor, type CallContext, type PlatformRole } from "../authz/authz.types.js";
import { addMemberships, removeMemberships } from "../identity/group-membership.js";
import type { IdentityService } from "../identity/identity.service.js";
import * as provisioning from "../identity/provisioning.js";
import type { TokenPair } from "../identity/identity.types.js";
import { principalEntry } from "../identity/principal.mapper.js";
import type { LifecycleDeps } from "../identity/principal-lifecycle.js";
import type { ProviderClients } from "./sso.client.js";
import {
  ATTEMPT_TTL_MS,
  HANDOFF_TTL_MS,
  identityFromClaims,
  isLoopbackRedirect,
  PKCE_CHALLENGE,
  PKCE_VERIFIER,
  refusalOfClientError,
} from "./sso.rules.js";
import * as ssoStore from "./sso.store.js";
import { scimAccount } from "./sso.scim.js";
import { createDeviceFlow, throwIfStint } from "./sso.device.js";
import { sameIssuer, type SsoIdentity, type SsoProvider } from "./sso.types.js";

type Db = Kysely<Database>;

export interface SsoServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  identity: Pick<IdentityService, "openSession">;
  clients: ProviderClients;
  masterKey: Uint8Array;
  /** Where people reach Stint: the redirect URI is `<publicUrl>/v1/auth/sso/<provider>/callback`. */
  publicUrl: string;
  onAccessBasisLost?: LifecycleDeps["onAccessBasisLost"];
  index?: Pick<AccessIndex, "send">;
}

export { DEVICE_GRANT, type DeviceStart } from "./sso.device.js";
/** The account a sign-in link names, for SCIM's adoption of accounts single sign-on created. */
export { principalLinkedAt } from "./sso.store.js";

/** A refusal with its code, audited by the caller's `refuse`. */
class Refused extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly reason: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(reason);
  }
}

/** The `external_id` of an `oidc` group: the issuer whose sign-ins fill it. */
export function groupOwner(issuer: string): string {
  return `oidc:${issuer}`;
}

function s256(verifier: string): string {
  return createHash("sha256").update(verifier).digest("base64url");
}

export function createSsoService(deps: SsoServiceDeps) {
  const { store, audit, clock, clients } = deps;
  const publicUrl = deps.publicUrl.replace(/\/+$/, "");
  const deviceKey = deriveKey(deps.masterKey, "sso-device-code");

  /** Errors `refuse` already audited (the callback audits any other refusal it sends back). */
  const audited = new WeakSet<StintError>();
  const redirectUri = (provider: string) => `${publicUrl}/v1/auth/sso/${provider}/callback`;

  async function tellPrincipal(tx: Db, id: string) {
    if (!deps.index) return;
    const row = await provisioning.findPrincipalById(tx, id);
    if (row) await deps.index.send(tx, { t: "prn", p: principalEntry(row) });
  }

  /** Audits a refused sign-in (in its own transaction) and throws its error. */
  async function refuse(
    context: CallContext,
    provider: string,
    refusal: { code: ErrorCode; reason: string; details?: Record<string, unknown> },
    subject?: string,
  ): Promise<never> {
    await audit.record(ANONYMOUS, context, {
      action: "auth.login",
      outcome: "denied",
      subject: subject ?? null,
      reason: refusal.reason,
      details: { method: "oidc", provider, code: refusal.code, ...refusal.details },
    });
    // Only the provider's OAuth error code goes back to the client (never a claim or a token).
    const providerError = refusal.details?.error;
    const error = new StintError(
      refusal.code,
      undefined,
      typeof providerError === "string" ? { error: providerError } : undefined,
    );
    audited.add(error);
    throw error;
  }

  /**
   * Groups of the claim joined (created, source `oidc`, when missing); `oidc` groups it no longer lists left. An
   * `oidc` group belongs to the issuer whose sign-in created it (`external_id` = `oidc:<issuer>`): another
   * provider's claim of the same name neither joins nor leaves it.
   */
  async function syncGroups(
    tx: Db,
    principal: { id: string; name: string },
    identity: SsoIdentity,
    provider: SsoProvider,
    now: Date,
  ): Promise<{ events: AuditInput[]; ignored: string[] }> {
    const events: AuditInput[] = [];
    const ignored: string[] = [];
    if (!provider.groupsClaim || identity.groups === null) return { events, ignored };
    const claimed = identity.groups;
    const owner = groupOwner(identity.issuer);
    /** Whether this issuer may fill the group: its own, or one from before owners were kept that it may adopt. */
    const ours = async (group: { id: string; name: string; source: string; external_id: string | null }) => {
      if (group.source !== "oidc") return false;
      if (group.external_id !== null) return group.external_id === owner;
      if (!(await adoptable(tx, group.id, identity.issuer))) return false;
      await provisioning.updateGroupAttributes(tx, group.id, { external_id: owner });
      events.push({
        action: "group.update",
        outcome: "success",
        subject: `group:${group.name}`,
        details: { source: "oidc", changed: ["owner"], issuer: identity.issuer, provider: provider.id },
      });
      return true;
    };
    const existing = await provisioning.groupsNamed(tx, claimed);
    const wanted: { id: string; name: string }[] = [];
    for (const name of claimed) {
      const group = existing.find((g) => g.name === name);
      if (group) {
        // A local or SCIM group, or another provider's, is not this provider's to fill.
        if (await ours(group)) wanted.push(group);
        else ignored.push(name);
        continue;
      }
      const id = newId();
      const created = await provisioning.insertGroupIfAbsent(tx, {
        id,
        name,
        description: `From ${provider.displayName} (single sign-on)`,
        source: "oidc",
        externalId: owner,
        now,
      });
      if (!created) {
        // Created meanwhile by another sign-in (it is then the provider's), or a local or SCIM group.
        const raced = (await provisioning.groupsNamed(tx, [name]))[0];
        if (raced && (await ours(raced))) wanted.push(raced);
        else ignored.push(name);
        continue;
      }
      events.push({
        action: "group.create",
        outcome: "success",
        subject: `group:${name}`,
        details: { source: "oidc", provider: provider.id, issuer: identity.issuer },
      });
      wanted.push({ id, name });
    }
    events.push(
      ...(await addMemberships(
        tx,
        wanted.map((group) => ({ group, principal })),
        now,
        { source: "oidc" },
      )),
    );
    const dropped = (await provisioning.sourcedGroupsOf(tx, principal.id, "oidc")).filter(
      (g) => !claimed.includes(g.name) && (g.external_id === null || g.external_id === owner),
    );
    events.push(
      ...(await removeMemberships(
        tx,
        { onAccessBasisLost: deps.onAccessBasisLost },
        dropped.map((group) => ({ group, principal })),
        { by: `sso:${provider.id}`, source: "oidc" },
      )),
    );
    return { events, ignored };
  }

  /**
   * Whether an `oidc` group from before owners were kept may become this issuer's: when every provider
   * configured has this issuer, or when it has members and every one of them signs in through this issuer.
   */
  async function adoptable(tx: Db, groupId: string, issuer: string): Promise<boolean> {
    if (clients.list().every((p) => p.issuer === issuer)) return true;
    const members = await provisioning.memberIdsOf(tx, groupId);
    if (members.length === 0) return false;
    const issuers = await ssoStore.issuersOf(tx, members);
    const linked = await ssoStore.linkedCount(tx, members);
    return linked === members.length && issuers.length === 1 && issuers[0] === issuer;
  }

  /**
   * The sign-in transaction: the person linked by (issuer, sub) or created, groups synced, all audited. Returns
   * the principal to open a session for; throws Refused for an account conflict or a disabled user.
   */
  async function signIn(
    tx: Db,
    provider: SsoProvider,
    identity: SsoIdentity,
    context: CallContext,
  ): Promise<{ principalId: string; name: string }> {
    const now = clock.now();
    const link = await ssoStore.lockLink(tx, identity.issuer, identity.subject);
    const events: AuditInput[] = [];
    let principal: provisioning.PrincipalRow;
    const scimOwned = link ? null : await scimAccount(tx, provider, identity);
    if (link) {
      principal = (await provisioning.lockPrincipal(tx, link.principal_id))!;
      if (principal.status !== "active")
        throw new Refused("ACCOUNT_DISABLED", "account is disabled", { user: principal.name });
      await ssoStore.touchLink(tx, identity.issuer, identity.subject, identity.username, now);
      // The provider is the truth for the e-mail address and display name of the people it signs in.
      const changes: { email?: string | null; display_name?: string | null } = {};
      if (identity.email !== null && identity.email !== principal.email) changes.email = identity.email;
      if (identity.displayName !== null && identity.displayName !== principal.display_name)
        changes.display_name = identity.displayName;
      if (Object.keys(changes).length > 0) {
        await provisioning.updatePrincipalAttributes(tx, principal.id, changes, now);
        await tellPrincipal(tx, principal.id);
        events.push({
          action: "user.update",
          outcome: "success",
          subject: `user:${principal.name}`,
          details: { changed: Object.keys(changes), source: "oidc", provider: provider.id },
        });
      }
    } else if (scimOwned) {
      // The account SCIM provisioned for this person (the provider's `scim` setting): linked, not duplicated.
      principal = scimOwned;
      if (principal.status !== "active")
        throw new Refused("ACCOUNT_DISABLED", "account is disabled", {
          user: principal.name,
          ...(principal.source === "scim-deleted" ? { deprovisioned: true } : {}),
        });
      await ssoStore.insertLink(tx, {
        issuer: identity.issuer,
        subject: identity.subject,
        provider: provider.id,
        principalId: principal.id,
        username: identity.username,
        now,
      });
      events.push({
        action: "user.update",
        outcome: "success",
        subject: `user:${principal.name}`,
        reason: `first sign-in through ${provider.displayName}: linked to the account SCIM provisioned`,
        details: {
          source: "scim",
          changed: ["link"],
          provider: provider.id,
          issuer: identity.issuer,
          sub: identity.subject,
          match: provider.scim!.match,
        },
      });
    } else {
      const taken = await provisioning.findPrincipalByName(tx, identity.name);
      if (taken)
        throw new Refused("SSO_ACCOUNT_CONFLICT", "a Stint account of that name is not linked to this person", {
          user: identity.name,
          existingSource: taken.source,
        });
      const id = newId();
      await provisioning.insertPrincipal(tx, {
        id,
        kind: "user",
        name: identity.name,
        email: identity.email,
        display_name: identity.displayName,
        platform_roles: ["user"],
        status: "active",
        source: "oidc",
        external_id: null,
        scim_name: null,
        now,
      });
      await ssoStore.insertLink(tx, {
        issuer: identity.issuer,
        subject: identity.subject,
        provider: provider.id,
        principalId: id,
        username: identity.username,
        now,
      });
      await tellPrincipal(tx, id);
      principal = (await provisioning.findPrincipalById(tx, id))!;
      events.push({
        action: "user.create",
        outcome: "success",
        subject: `user:${identity.name}`,
        reason: `first sign-in through ${provider.displayName}`,
        details: { source: "oidc", provider: provider.id, issuer: identity.issuer, sub: identity.subject },
      });
    }
    const groups = await syncGroups(tx, principal, identity, provider, now);
    events.push(...groups.events);
    const actor: Actor = {
      kind: "principal",
      id: principal.id,
      name: principal.name,
      principalKind: principal.kind,
      roles: principal.platform_roles as PlatformRole[],
    };
    await audit.append(tx, actor, context, [
      {
        action: "auth.login",
        outcome: "success",
        subject: `user:${principal.name}`,
        details: {
          method: "oidc",
          provider: provider.id,
          issuer: identity.issuer,
          sub: identity.subject,
          mfa: identity.mfaAt !== null,
          groups: identity.groups ?? "not in the token (left as they were)",
          ...(groups.ignored.length > 0 ? { groupsIgnored: groups.ignored } : {}),
        },
      },
      ...events,
    ]);
    return { principalId: principal.id, name: principal.name };
  }

  /** Validates the claims and runs `then` in the sign-in transaction; every refusal audited with its code. */
  async function signInAndThen<T>(
    provider: SsoProvider,
    claims: Record<string, unknown>,
    context: CallContext,
    then: (tx: Db, principal: { principalId: string }, identity: SsoIdentity) => Promise<T>,
  ): Promise<T> {
    const issuer = String(claims.iss ?? provider.issuer);
    // The library checked `iss` against the discovery document; Stint links people of the configured issuer only.
    if (!sameIssuer(issuer, provider.issuer))
      return refuse(context, provider.id, {
        code: "SSO_ISSUER_MISMATCH",
        reason: "the ID token names another issuer than the configured one",
        details: { issuer: issuer.slice(0, 200) },
      });
    const checked = identityFromClaims(provider, issuer, claims, clock.now());
    if ("refused" in checked)
      return refuse(context, provider.id, {
        code: checked.refused,
        reason: checked.reason,
        details: { issuer, sub: typeof claims.sub === "string" ? claims.sub.slice(0, 255) : null },
      });
    const { identity } = checked;
    try {
      const attempt = () =>
        store.transaction(async (tx) => then(tx, await signIn(tx, provider, identity, context), identity));
      // Two first sign-ins of one person at once: the second finds the user the first created when it tries again.
      return await attempt().catch((error: unknown) => {
        if ((error as { code?: string })?.code === "23505") return attempt();
        throw error;
      });
    } catch (error) {
      if (error instanceof Refused)
        return refuse(
          context,
          provider.id,
          { code: error.code, reason: error.reason, details: { issuer, sub: identity.subject, ...error.details } },
          `user:${identity.name}`,
        );
      throw error;
    }
  }

  return {
    providers(): { id: string; displayName: string }[] {
      return clients.list().map((p) => ({ id: p.id, displayName: p.displayName }));
    },

    /**
     * Starts a sign-in: the provider's authorization URL, with a fresh state, nonce and PKCE verifier kept
     * server-side. `clientChallenge` is the S256 challenge of the client that will redeem the result;
     * `clientRedirect` a CLI's loopback address (none: the web UI).
     */
    async start(
      providerId: string,
      input: { clientChallenge: string; clientRedirect?: string | undefined },
    ): Promise<{ authorizationUrl: string }> {
      const provider = clients.provider(providerId);
      if (!PKCE_CHALLENGE.test(input.clientChallenge))
        throw new StintError("VALIDATION_FAILED", "code_challenge must be an S256 PKCE challenge (43 characters).");
      if (input.clientRedirect !== undefined && !isLoopbackRedirect(input.clientRedirect))
        throw new StintError(
          "VALIDATION_FAILED",
          "redirect_uri must be a loopback address with a port (http://127.0.0.1:PORT/…), without a query.",
        );
      const config = await clients.configOf(provider.id);
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const codeVerifier = oidc.randomPKCECodeVerifier();
      const now = clock.now();
      await store.transaction(async (tx) => {
        await ssoStore.sweep(tx, now);
        await ssoStore.insertAttempt(tx, {
          stateHash: sha256Hex(state),
          provider: provider.id,
          nonce,
          codeVerifier,
          clientChallenge: input.clientChallenge,
          clientRedirect: input.clientRedirect ?? null,
          now,
          expiresAt: new Date(now.getTime() + ATTEMPT_TTL_MS),
        });
      });
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri(provider.id),
        scope: provider.scopes.join(" "),
        state,
        nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: "S256",
      });
      return { authorizationUrl: url.href };
    },

    /**
     * The provider's redirect back: the attempt consumed, the answer validated by the library, the sign-in
     * done. Returns where the browser goes next: the web UI or the CLI's loopback address, with a one-time
     * code, or with the error code when refused.
     */
    async callback(providerId: string, query: URLSearchParams, context: CallContext): Promise<{ location: string }> {
      const provider = clients.provider(providerId);
      const state = query.get("state") ?? "";
      const now = clock.now();
      const attempt =
        state.length > 0 && state.length <= 512
          ? await store.transaction((tx) => ssoStore.consumeAttempt(tx, sha256Hex(state), provider.id, now))
          : undefined;
      const back = (redirect: string | null, params: Record<string, string>) =>
        redirect
          ? `${redirect}?${new URLSearchParams(params).toString()}`
          : `${publicUrl}/#${new URLSearchParams(Object.fromEntries(Object.entries(params).map(([k, v]) => [`sso_${k}`, v]))).toString()}`;
      if (!attempt) {
        const known =
          state.length > 0 && state.length <= 512 ? await ssoStore.findAttempt(store.db, sha256Hex(state)) : undefined;
        try {
          await refuse(context, provider.id, {
            code: "SSO_STATE_INVALID",
            reason: known ? "the sign-in was already finished or expired" : "a state Stint did not issue",
          });
        } catch (error) {
          return { location: back(known?.client_redirect ?? null, { error: (error as StintError).code }) };
        }
      }
      const redirect = attempt!.client_redirect;
      try {
        const config = await clients.configOf(provider.id);
        const current = new URL(redirectUri(provider.id));
        for (const [key, value] of query) current.searchParams.append(key, value);
        let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
        try {
          tokens = await oidc.authorizationCodeGrant(config, current, {
            pkceCodeVerifier: attempt!.code_verifier,
            expectedState: state,
            expectedNonce: attempt!.nonce,
            idTokenExpected: true,
          });
        } catch (error) {
          throwIfStint(error);
          const refusal = refusalOfClientError(error);
          const providerError = (error as { error?: unknown }).error;
          return await refuse(context, provider.id, {
            code: refusal.refused,
            reason: refusal.reason,
            details: typeof providerError === "string" ? { error: providerError.slice(0, 64) } : {},
          });
        }
        const claims = tokens.claims() as Record<string, unknown> | undefined;
        if (!claims) return await refuse(context, provider.id, { code: "SSO_TOKEN_INVALID", reason: "no ID token" });
        const code = randomToken(32);
        await signInAndThen(provider, claims, context, async (tx, signedIn, identity) => {
          await ssoStore.insertHandoff(tx, {
            codeHash: sha256Hex(code),
            kind: "code",
            provider: provider.id,
            principalId: signedIn.principalId,
            clientChallenge: attempt!.client_challenge,
            deviceCodeSealed: null,
            pollIntervalS: null,
            amr: identity.amr,
            mfaAt: identity.mfaAt,
            now,
            expiresAt: new Date(now.getTime() + HANDOFF_TTL_MS),
          });
        });
        return { location: back(redirect, { code }) };
      } catch (error) {
        if (error instanceof StintError) {
          if (!audited.has(error))
            await audit
              .record(ANONYMOUS, context, {
                action: "auth.login",
                outcome: "denied",
                reason: error.message,
                details: { method: "oidc", provider: provider.id, code: error.code },
              })
              .catch(() => undefined);
          return { location: back(redirect, { error: error.code }) };
        }
        throw error;
      }
    },

    /** Turns a finished sign-in's one-time code into a Stint session, for the holder of the PKCE verifier. */
    async redeem(input: { code: string; codeVerifier: string }, context: CallContext): Promise<TokenPair> {
      const now = clock.now();
      const codeHash = sha256Hex(input.code);
      const result = await store.transaction(async (tx) => {
        const handoff = await ssoStore.lockHandoff(tx, codeHash, "code", now);
        if (!handoff || !handoff.principal_id || !handoff.client_challenge)
          return { refused: "unknown, used or expired code" };
        // Single use whatever happens next: a wrong verifier burns the code.
        await ssoStore.useHandoff(tx, codeHash, now);
        if (
          !PKCE_VERIFIER.test(input.codeVerifier) ||
          !constantTimeEqual(s256(input.codeVerifier), handoff.client_challenge)
        )
          return { refused: "the PKCE verifier does not match", provider: handoff.provider, burnt: true };
        const principal = await provisioning.findPrincipalById(tx, handoff.principal_id);
        if (!principal || principal.status !== "active")
          return { refused: "account is disabled", provider: handoff.provider, disabled: true };
        const pair = await deps.identity.openSession(
          tx,
          principal.id,
          { amr: handoff.amr ?? ["oidc"], mfaAt: handoff.mfa_at ? new Date(handoff.mfa_at) : null },
          context,
        );
        await audit.append(
          tx,
          {
            kind: "principal",
            id: principal.id,
            name: principal.name,
            principalKind: principal.kind,
            roles: principal.platform_roles as PlatformRole[],
          },
          context,
          {
            action: "auth.sso_session",
            outcome: "success",
            subject: `user:${principal.name}`,
            details: { provider: handoff.provider, sessionId: pair.refreshToken.split(".")[0] },
          },
        );
        return { pair };
      });
      if ("refused" in result) {
        await audit.record(ANONYMOUS, context, {
          action: "auth.sso_session",
          outcome: "denied",
          reason: result.refused!,
          details: { provider: result.provider ?? null },
        });
        // A burnt code is committed as used: a second try with the right verifier is refused too.
        throw new StintError(result.disabled ? "ACCOUNT_DISABLED" : "SSO_CODE_INVALID");
      }
      return result.pair!;
    },

    ...createDeviceFlow({ deps, deviceKey, refuse, signInAndThen }),
  };
}

export type SsoService = ReturnType<typeof createSsoService>;
