/**
 * Bearer authentication: an Authorization header (an access token or an API token) turned into an actor,
 * from memory when the access index vouches for its messages, from the database otherwise.
 */
import { errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import { hash as digestOnce } from "node:crypto";
import { StintError } from "../../lib/errors.js";
import { constantTimeEqual, sha256Hex } from "../../lib/security.js";
import { ANONYMOUS, type Actor } from "../authz/authz.types.js";
import type { VerifiedAccessToken } from "./auth-cache.js";
import type { IdentityContext } from "./identity.context.js";
import { parseApiToken } from "./identity.rules.js";
import { entryActor, principalActor } from "./principal.mapper.js";
import * as identityStore from "./identity.store.js";
import { ACCESS_TOKEN_AUDIENCE, ACCESS_TOKEN_ISSUER } from "./identity.types.js";

const BEARER = "Bearer ";
const MAX_BEARER_HEADER = BEARER.length + 4096;
/** Headers whose token hash is remembered (per node; the oldest is forgotten first). */
const HASHES_KEPT = 256;

/** `Bearer <token>`, the token 1 to 4,096 printable ASCII characters (a loop: the regex cost ~1 µs a request). */
export function isBearerHeader(header: string): boolean {
  const length = header.length;
  if (length <= BEARER.length || length > MAX_BEARER_HEADER || !header.startsWith(BEARER)) return false;
  for (let i = BEARER.length; i < length; i++) {
    const code = header.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) return false;
  }
  return true;
}

export function createBearerAuth(deps: IdentityContext) {
  const { store, keyring, clock, index, cache } = deps;

  /**
   * The token's SHA-256 hex (the auth cache's key), remembered for the last few headers: a caller sends the
   * same header on every request, and a lookup of the header (its exact text) costs far less than the hash
   * (~1 µs a request). A forgotten header is hashed again; nothing but the hash is decided from it.
   */
  const hashes = new Map<string, string>();
  function tokenHashOf(authorization: string, token: string): string {
    let hash = hashes.get(authorization);
    if (hash === undefined) {
      // One-shot hash (no Hash object): the same SHA-256 hex as sha256Hex.
      hash = digestOnce("sha256", token, "hex");
      if (hashes.size >= HASHES_KEPT) hashes.delete(hashes.keys().next().value!);
      hashes.set(authorization, hash);
    }
    return hash;
  }

  /**
   * An access token already verified on this node (remembered by its SHA-256 until its expiry): only the
   * expiry and that its key is still trusted are checked again. Undefined when it must be verified.
   */
  function knownAccessToken(tokenHash: string, now: Date): VerifiedAccessToken | undefined {
    const known = cache?.verified(tokenHash);
    if (!known) return undefined;
    if (!keyring.publicKeys("token").has(known.kid)) {
      cache!.forgetVerified(tokenHash);
      return undefined;
    }
    // jose's rule: expired once `exp` is at or before the current second.
    if (known.exp <= Math.floor(now.getTime() / 1000)) throw new StintError("TOKEN_EXPIRED");
    return known;
  }

  /** An access token's signature (Ed25519), issuer, audience and expiry; remembered once verified. */
  async function verifyAccessToken(token: string, tokenHash: string, now: Date): Promise<VerifiedAccessToken> {
    let payload: JWTPayload;
    let kid = "";
    try {
      ({ payload } = await jwtVerify(
        token,
        (header) => {
          const key = header.kid ? keyring.publicKeys("token").get(header.kid) : undefined;
          if (!key) throw new StintError("UNAUTHENTICATED");
          kid = header.kid!;
          return key;
        },
        { issuer: ACCESS_TOKEN_ISSUER, audience: ACCESS_TOKEN_AUDIENCE, algorithms: ["EdDSA"], currentDate: now },
      ));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new StintError("TOKEN_EXPIRED");
      throw new StintError("UNAUTHENTICATED");
    }
    const verified: VerifiedAccessToken = {
      sub: typeof payload.sub === "string" ? payload.sub : "",
      sid: typeof payload.sid === "string" ? payload.sid : "",
      kid,
      exp: typeof payload.exp === "number" ? payload.exp : 0,
    };
    if (cache && verified.exp > 0) cache.rememberVerified(tokenHash, verified);
    return verified;
  }

  /**
   * The actor behind a verified access token from memory (its session cached, its principal in the access
   * index), or undefined when the database must be asked. Throws when memory knows the session ended.
   */
  function sessionFromMemory(verified: VerifiedAccessToken, now: Date): Actor | undefined {
    const view = index?.view();
    if (!view || !cache) return undefined;
    const nowMs = now.getTime();
    const session = cache.session(verified.sid, nowMs);
    const principal = session && view.principal(session.principalId);
    if (!session || !principal) return undefined;
    if (session.principalId !== verified.sub || session.expiresAt <= nowMs || principal.status !== "active")
      throw new StintError("UNAUTHENTICATED", "The session has ended; sign in again.");
    // The same session and principal entry make the same actor: made once, not per request.
    if (session.actor?.of === principal) return session.actor.actor;
    const actor: Actor = Object.freeze({
      ...entryActor(principal),
      sessionId: verified.sid,
      mfaAt: session.mfaAt === null ? null : new Date(session.mfaAt),
      webauthnAt: session.webauthnAt === null ? null : new Date(session.webauthnAt),
    });
    session.actor = { of: principal, actor };
    return actor;
  }

  /** The actor behind a verified access token from the database (and the session remembered). */
  async function sessionFromDatabase(verified: VerifiedAccessToken, now: Date): Promise<Actor> {
    const remembering = index?.view() && cache ? cache.mark() : undefined;
    const live = verified.sid ? await identityStore.findLiveSession(store.db, verified.sid, now) : undefined;
    if (!live || live.id !== verified.sub)
      throw new StintError("UNAUTHENTICATED", "The session has ended; sign in again.");
    const mfaAt = live.mfa_at ? new Date(live.mfa_at).getTime() : null;
    const webauthnAt = live.webauthn_at ? new Date(live.webauthn_at).getTime() : null;
    if (remembering)
      cache!.rememberSession(
        verified.sid,
        {
          principalId: live.id,
          mfaAt,
          webauthnAt,
          expiresAt: new Date(live.session_expires_at).getTime(),
          loadedAt: now.getTime(),
        },
        remembering,
      );
    return {
      ...principalActor(live),
      sessionId: verified.sid,
      mfaAt: mfaAt === null ? null : new Date(mfaAt),
      webauthnAt: webauthnAt === null ? null : new Date(webauthnAt),
    };
  }

  /** An API token (`stint_…`): its hash compared in constant time, its principal active. */
  async function authenticateApiToken(apiToken: { tokenId: string; secret: string }, now: Date): Promise<Actor> {
    const nowMs = now.getTime();
    const view = index?.view();
    let known = view && cache ? cache.apiToken(apiToken.tokenId, nowMs) : undefined;
    let principal = known && view?.principal(known.principalId);
    if (!known || !principal) {
      const mark = cache?.mark();
      const row = await identityStore.findLiveApiToken(store.db, apiToken.tokenId, now);
      if (!row || !constantTimeEqual(row.token_hash, sha256Hex(apiToken.secret)))
        throw new StintError("UNAUTHENTICATED");
      known = {
        tokenHash: row.token_hash,
        principalId: row.id,
        expiresAt: new Date(row.expires_at).getTime(),
        lastUsedAt: row.last_used_at ? new Date(row.last_used_at).getTime() : 0,
        loadedAt: nowMs,
      };
      principal = { id: row.id, name: row.name, kind: row.kind, status: "active", platformRoles: row.platform_roles };
      if (view && cache && mark) cache.rememberApiToken(apiToken.tokenId, known, mark);
    } else if (
      !constantTimeEqual(known.tokenHash, sha256Hex(apiToken.secret)) ||
      known.expiresAt <= nowMs ||
      principal.status !== "active"
    ) {
      throw new StintError("UNAUTHENTICATED");
    }
    if (nowMs - known.lastUsedAt > 60_000) {
      known.lastUsedAt = nowMs;
      await identityStore.touchApiToken(store.db, apiToken.tokenId, now);
    }
    return {
      ...entryActor(principal),
      tokenId: apiToken.tokenId,
    };
  }

  return {
    /**
     * Turns an Authorization header into an actor. A revoked session, a revoked token or a disabled principal
     * is refused at the next request: from memory when the access index vouches for its messages (every
     * node hears them when they commit), from the database otherwise. Answers synchronously when memory
     * answers (the hot path costs no promise); throws synchronously for a malformed header.
     */
    authenticate(authorization: string | undefined): Actor | Promise<Actor> {
      if (authorization === undefined || authorization === "") return ANONYMOUS;
      const now = clock.now();
      const token = authorization.slice(BEARER.length);
      const tokenHash =
        cache && authorization.length <= MAX_BEARER_HEADER && authorization.startsWith(BEARER)
          ? tokenHashOf(authorization, token)
          : "";
      // A token this node verified before passed the format check then (only a header that passed it is
      // ever verified, and SHA-256 does not collide), and is no API token: those checks are for the others.
      const known = tokenHash === "" ? undefined : knownAccessToken(tokenHash, now);
      if (!known) {
        if (!isBearerHeader(authorization))
          throw new StintError("UNAUTHENTICATED", "The Authorization header must be `Bearer <token>`.");
        const apiToken = parseApiToken(token);
        if (apiToken) return authenticateApiToken(apiToken, now);
      }
      const fromMemory = known && sessionFromMemory(known, now);
      if (fromMemory) return fromMemory;
      return (async () => {
        const verified = known ?? (await verifyAccessToken(token, tokenHash, now));
        return sessionFromMemory(verified, now) ?? sessionFromDatabase(verified, now);
      })();
    },
  };
}
