/**
 * What bearer-token authentication keeps in memory so that a request costs no database round trip and
 * no signature check (see README.md, "Authentication from memory"):
 * - verified access tokens, by the SHA-256 of the token, until their own expiry: a signature that
 *   verified once verifies for ever, so only the expiry and the signing key's presence are checked again;
 * - refresh sessions found live, by session id, dropped by the messages that change them (sign-out,
 *   revocation, step-up, password change, anything about their principal) and after `maxAgeMs` anyway;
 * - API tokens found live, by token id, dropped the same way.
 * Principals themselves (status, platform roles) come from the access index. Nothing here is used, or
 * filled, while the index cannot vouch for its messages (`view()` null): the database answers then.
 */
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { PrincipalEntry } from "../access-index/access-index.types.js";
import type { Actor } from "../authz/authz.types.js";

export interface VerifiedAccessToken {
  sub: string;
  sid: string;
  kid: string;
  /** JWT `exp`, in seconds. */
  exp: number;
}

export interface CachedSession {
  principalId: string;
  mfaAt: number | null;
  /** The session's last passkey check (a policy may count only that one). */
  webauthnAt: number | null;
  expiresAt: number;
  loadedAt: number;
  /**
   * The actor of this session's requests, made once (frozen) and reused while the access index holds the
   * same principal entry it was made from (the index replaces an entry on any change, never edits one).
   */
  actor?: { of: PrincipalEntry; actor: Actor };
}

export interface CachedApiToken {
  tokenHash: string;
  principalId: string;
  expiresAt: number;
  lastUsedAt: number;
  loadedAt: number;
}

export const AUTH_CACHE_MAX_ENTRIES = 50_000;
/** A cached session or API token is read again from the database at least this often (a safety net). */
export const AUTH_CACHE_MAX_AGE_MS = 60_000;

/** A Map that forgets its oldest entry past `max` entries. */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number) {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value!);
}

export function createAuthCache(deps: {
  index: Pick<AccessIndex, "subscribe" | "generation">;
  maxEntries?: number;
  maxAgeMs?: number;
}) {
  const max = deps.maxEntries ?? AUTH_CACHE_MAX_ENTRIES;
  const maxAgeMs = deps.maxAgeMs ?? AUTH_CACHE_MAX_AGE_MS;
  const verified = new Map<string, VerifiedAccessToken>();
  const sessions = new Map<string, CachedSession>();
  const apiTokens = new Map<string, CachedApiToken>();
  /** Bumped by every message that drops something: a read that began before must not fill the cache. */
  let changes = 0;

  const dropPrincipal = (principalId: string) => {
    for (const [sid, session] of sessions) if (session.principalId === principalId) sessions.delete(sid);
    for (const [id, token] of apiTokens) if (token.principalId === principalId) apiTokens.delete(id);
  };

  deps.index.subscribe({
    onMessage(message) {
      switch (message.t) {
        case "ses":
          changes += 1;
          sessions.delete(message.sid);
          return;
        case "pses":
          changes += 1;
          for (const [sid, session] of sessions) if (session.principalId === message.pid) sessions.delete(sid);
          return;
        case "prn":
          changes += 1;
          dropPrincipal(message.p.id);
          return;
        case "tok":
          changes += 1;
          apiTokens.delete(message.id);
          return;
        default:
          return;
      }
    },
    onReset() {
      changes += 1;
      sessions.clear();
      apiTokens.clear();
    },
  });

  return {
    /** A mark to take before a database read whose result may be cached (see `rememberSession`). */
    mark: () => `${deps.index.generation()}:${changes}`,

    verified(tokenHash: string): VerifiedAccessToken | undefined {
      return verified.get(tokenHash);
    },
    rememberVerified(tokenHash: string, token: VerifiedAccessToken) {
      remember(verified, tokenHash, token, max);
    },
    forgetVerified(tokenHash: string) {
      verified.delete(tokenHash);
    },

    session(sessionId: string, nowMs: number): CachedSession | undefined {
      const session = sessions.get(sessionId);
      if (session && nowMs - session.loadedAt > maxAgeMs) {
        sessions.delete(sessionId);
        return undefined;
      }
      return session;
    },
    /** Keeps what a read found, unless something changed since `mark` was taken before it. */
    rememberSession(sessionId: string, session: CachedSession, mark: string) {
      if (mark === `${deps.index.generation()}:${changes}`) remember(sessions, sessionId, session, max);
    },

    apiToken(tokenId: string, nowMs: number): CachedApiToken | undefined {
      const token = apiTokens.get(tokenId);
      if (token && nowMs - token.loadedAt > maxAgeMs) {
        apiTokens.delete(tokenId);
        return undefined;
      }
      return token;
    },
    rememberApiToken(tokenId: string, token: CachedApiToken, mark: string) {
      if (mark === `${deps.index.generation()}:${changes}`) remember(apiTokens, tokenId, token, max);
    },

    sizes: () => ({ verified: verified.size, sessions: sessions.size, apiTokens: apiTokens.size }),
  };
}

export type AuthCache = ReturnType<typeof createAuthCache>;
