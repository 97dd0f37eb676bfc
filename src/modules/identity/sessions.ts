/**
 * Sessions: access tokens signed for a refresh session, the refresh token's rotation (a rotated one presented
 * again ends the session), sessions opened for single sign-on, and signing out.
 */
import { SignJWT } from "jose";
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { constantTimeEqual, randomToken, sha256Hex } from "../../lib/security.js";
import { ANONYMOUS, type Actor, type CallContext } from "../authz/authz.types.js";
import type { IdentityContext } from "./identity.context.js";
import { classifyRefreshSecret, parseRefreshToken, rememberRotated } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import { ACCESS_TOKEN_AUDIENCE, ACCESS_TOKEN_ISSUER, type TokenPair } from "./identity.types.js";
import { principalActor, toPrincipal } from "./principal.mapper.js";

/** How a session was opened: its last second factor, its last passkey check, what its access tokens say. */
interface SessionGrant {
  mfaAt: Date | null;
  webauthnAt?: Date | null;
  amr?: string[] | null;
}

/**
 * Signs access tokens and makes the token pair a sign-in or a refresh answers with; opens the refresh
 * sessions a password sign-in or a single sign-on starts.
 */
export function sessionTokens(deps: IdentityContext) {
  const { keyring, clock, policy, audit } = deps;

  async function signAccessToken(
    principal: { id: string; name: string; kind: string; platform_roles: string[] },
    sessionId: string,
    mfaAt: Date | null,
    amr: string[] | null = null,
    webauthnAt: Date | null = null,
  ) {
    const key = keyring.current("token");
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + policy.accessTokenTtlMs);
    const token = await new SignJWT({
      name: principal.name,
      kind: principal.kind,
      roles: principal.platform_roles,
      sid: sessionId,
      // RFC 8176: `hwk` when the session's last second factor was a passkey (proof of a hardware-bound key).
      amr: amr ?? (mfaAt ? ["pwd", webauthnAt && webauthnAt.getTime() >= mfaAt.getTime() ? "hwk" : "otp"] : ["pwd"]),
      ...(mfaAt ? { mfa_at: Math.floor(mfaAt.getTime() / 1000) } : {}),
    })
      .setProtectedHeader({ alg: "EdDSA", kid: key.id, typ: "JWT" })
      .setSubject(principal.id)
      .setIssuer(ACCESS_TOKEN_ISSUER)
      .setAudience(ACCESS_TOKEN_AUDIENCE)
      .setIssuedAt(Math.floor(now.getTime() / 1000))
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .setJti(randomToken(16))
      .sign(key.privateKey);
    return { token, expiresAt };
  }

  async function pairFor(
    db: Kysely<Database>,
    principal: identityStore.PrincipalRow,
    session: SessionGrant & { id: string; secret: string; expiresAt: Date },
  ): Promise<TokenPair> {
    const access = await signAccessToken(
      principal,
      session.id,
      session.mfaAt,
      session.amr ?? null,
      session.webauthnAt ?? null,
    );
    return {
      accessToken: access.token,
      accessTokenExpiresAt: access.expiresAt.toISOString(),
      refreshToken: `${session.id}.${session.secret}`,
      refreshTokenExpiresAt: session.expiresAt.toISOString(),
      principal: await toPrincipal(db, principal),
    };
  }

  /** Opens a refresh session in the caller's transaction; only the secret's hash is stored. */
  async function openRefreshSession(
    tx: Kysely<Database>,
    principalId: string,
    grant: SessionGrant,
    context: CallContext,
    now: Date = clock.now(),
  ) {
    const session = {
      id: newId(),
      secret: randomToken(32),
      expiresAt: new Date(now.getTime() + policy.refreshSessionTtlMs),
      ...grant,
    };
    await tx
      .insertInto("refresh_sessions")
      .values({
        id: session.id,
        principal_id: principalId,
        token_hash: sha256Hex(session.secret),
        mfa_at: session.mfaAt,
        webauthn_at: session.webauthnAt ?? null,
        amr: session.amr ?? null,
        created_at: now,
        last_used_at: now,
        expires_at: session.expiresAt,
        source_ip: context.sourceIp,
        user_agent: context.userAgent,
      })
      .execute();
    return session;
  }

  /** The end of a successful sign-in or refresh: audited as the principal, answered with the session's tokens. */
  async function issueSession(
    tx: Kysely<Database>,
    principal: identityStore.PrincipalRow,
    session: Parameters<typeof pairFor>[2],
    context: CallContext,
    event: { action: string; subject: string; details: Record<string, unknown> },
  ): Promise<TokenPair> {
    await audit.append(tx, principalActor(principal), context, { ...event, outcome: "success" });
    return pairFor(tx, principal, session);
  }

  return { pairFor, openRefreshSession, issueSession };
}

export function createSessionUseCases(deps: IdentityContext) {
  const { store, audit, clock, index } = deps;
  const { pairFor, openRefreshSession, issueSession } = sessionTokens(deps);

  return {
    /**
     * Rotates the refresh token. A token presented after it was rotated ends the whole session; a secret
     * that never was the session's is refused and changes nothing.
     */
    async refresh(refreshToken: string, context: CallContext): Promise<TokenPair> {
      const parsed = parseRefreshToken(refreshToken);
      if (!parsed) throw new StintError("UNAUTHENTICATED", "The refresh token is not valid; sign in again.");
      const now = clock.now();
      const result = await store.transaction(async (tx) => {
        const session = await tx
          .selectFrom("refresh_sessions")
          .selectAll()
          .where("id", "=", parsed.sessionId)
          .forUpdate()
          .executeTakeFirst();
        if (!session || session.revoked_at || new Date(session.expires_at) <= now) return { denied: "session ended" };
        const principal = await identityStore.findPrincipalById(tx, session.principal_id);
        if (!principal || principal.status !== "active") return { denied: "account disabled" };
        const presented = classifyRefreshSecret(
          sha256Hex(parsed.secret),
          { currentHash: session.token_hash, previousHashes: session.previous_token_hashes ?? [] },
          constantTimeEqual,
        );
        if (presented === "unknown") {
          await audit.append(tx, ANONYMOUS, context, {
            action: "auth.refresh",
            outcome: "denied",
            subject: `user:${principal.name}`,
            reason: "a refresh token that never belonged to the session",
            details: { sessionId: session.id },
          });
          return { denied: "wrong secret" };
        }
        if (presented === "reused") {
          await tx
            .updateTable("refresh_sessions")
            .set({ revoked_at: now, revoked_reason: "refresh token reused" })
            .where("id", "=", session.id)
            .execute();
          await index?.send(tx, { t: "ses", sid: session.id });
          await audit.append(tx, ANONYMOUS, context, {
            action: "auth.session_revoked",
            outcome: "denied",
            subject: `user:${principal.name}`,
            reason: "a rotated refresh token was presented again; the session was ended",
            details: { sessionId: session.id },
          });
          return { denied: "reuse" };
        }
        const secret = randomToken(32);
        await tx
          .updateTable("refresh_sessions")
          .set({
            token_hash: sha256Hex(secret),
            previous_token_hashes: rememberRotated(session.previous_token_hashes ?? [], session.token_hash),
            last_used_at: now,
          })
          .where("id", "=", session.id)
          .execute();
        const rotated = {
          id: session.id,
          secret,
          expiresAt: new Date(session.expires_at),
          mfaAt: session.mfa_at ? new Date(session.mfa_at) : null,
          amr: session.amr,
          webauthnAt: session.webauthn_at ? new Date(session.webauthn_at) : null,
        };
        return {
          pair: await issueSession(tx, principal, rotated, context, {
            action: "auth.refresh",
            subject: `user:${principal.name}`,
            details: { sessionId: session.id },
          }),
        };
      });
      if ("denied" in result) throw new StintError("UNAUTHENTICATED", "The session has ended; sign in again.");
      return result.pair!;
    },

    /**
     * Opens a session for a principal another module already authenticated (single sign-on), in the caller's
     * transaction: the caller checked the principal is active and audits the sign-in. `amr` is what the access
     * tokens say of how it was opened; `mfaAt` counts as the session's last MFA when the caller vouches for it.
     */
    async openSession(
      tx: Kysely<Database>,
      principalId: string,
      options: { amr: string[]; mfaAt: Date | null },
      context: CallContext,
    ): Promise<TokenPair> {
      const principal = await identityStore.findPrincipalById(tx, principalId);
      if (!principal || principal.status !== "active") throw new StintError("ACCOUNT_DISABLED");
      const session = await openRefreshSession(tx, principal.id, { mfaAt: options.mfaAt, amr: options.amr }, context);
      return pairFor(tx, principal, session);
    },

    async logout(actor: Actor, context: CallContext): Promise<void> {
      if (actor.kind !== "principal" || !actor.sessionId) throw new StintError("UNAUTHENTICATED");
      const now = clock.now();
      await store.transaction(async (tx) => {
        await tx
          .updateTable("refresh_sessions")
          .set({ revoked_at: now, revoked_reason: "signed out" })
          .where("id", "=", actor.sessionId!)
          .where("revoked_at", "is", null)
          .execute();
        await index?.send(tx, { t: "ses", sid: actor.sessionId! });
        await audit.append(tx, actor, context, {
          action: "auth.logout",
          outcome: "success",
          subject: `user:${actor.name}`,
          details: { sessionId: actor.sessionId },
        });
      });
    },
  };
}
