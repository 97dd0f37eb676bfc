/**
 * The web UI's client for the public /v1 API. Tokens live in memory only (never localStorage or
 * cookies the UI can read): a reload signs out. An expired access token is refreshed once; when the
 * refresh fails the session is over and the UI says so.
 */
import type { TokenPairDto } from "../../src/contract/identity.js";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
  /** Validation issues by field path ("body.reason" → "reason"), for forms. */
  fieldErrors(): Record<string, string> {
    const issues = (this.details?.issues ?? []) as { path?: string; message?: string }[];
    const out: Record<string, string> = {};
    for (const issue of issues) {
      const path = (issue.path ?? "").replace(/^(body|querystring|params)\.?/, "");
      if (path && issue.message && !out[path]) out[path] = issue.message;
    }
    return out;
  }
}

type Listener = () => void;

export interface Session {
  user: TokenPairDto["principal"];
  accessToken: string;
  accessTokenExpiresAt: number;
  refreshToken: string;
}

let session: Session | null = null;
let expiredNotice = false;
const listeners = new Set<Listener>();

function changed() {
  for (const listener of listeners) listener();
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function currentSession(): Session | null {
  return session;
}

/** True once after the session ended by itself (the sign-in page says so). */
export function takeExpiredNotice(): boolean {
  const was = expiredNotice;
  expiredNotice = false;
  return was;
}

function adopt(pair: TokenPairDto) {
  prefetched.clear();
  session = {
    user: pair.principal,
    accessToken: pair.accessToken,
    accessTokenExpiresAt: Date.parse(pair.accessTokenExpiresAt),
    refreshToken: pair.refreshToken,
  };
  changed();
}

async function send(method: string, path: string, body: unknown, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code: string; message: string; details?: Record<string, unknown> } };
    if (body.error) return new ApiError(res.status, body.error.code, body.error.message, body.error.details);
  } catch {
    // not JSON
  }
  return new ApiError(res.status, `HTTP_${res.status}`, `The server answered with HTTP status ${res.status}.`);
}

let refreshing: Promise<boolean> | null = null;
async function refresh(): Promise<boolean> {
  if (!session) return false;
  refreshing ??= (async () => {
    try {
      const res = await send("POST", "/v1/auth/refresh", { refreshToken: session!.refreshToken }, null);
      if (!res.ok) return false;
      adopt((await res.json()) as TokenPairDto);
      return true;
    } catch {
      return false;
    } finally {
      setTimeout(() => (refreshing = null), 0);
    }
  })();
  return refreshing;
}

function endSession(expired: boolean) {
  prefetched.clear();
  session = null;
  expiredNotice = expired;
  changed();
}

/**
 * GETs started ahead of the page that reads them (its data while its code loads), each answer taken once by
 * that page's first call for it within PREFETCH_TTL_MS; a later call asks the server again.
 */
const prefetched = new Map<string, { at: number; result: Promise<unknown> }>();
const PREFETCH_TTL_MS = 5000;

/** Starts these GETs now, for the page about to show (see `prefetched`). */
export function prefetch(paths: readonly string[]): void {
  if (!session) return;
  for (const path of paths) {
    const result = api("GET", path);
    result.catch(() => undefined); // the page's own call sees the error
    prefetched.set(path, { at: Date.now(), result });
  }
}

/** One API call; throws ApiError with the server's code and sentence. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  if (method === "GET") {
    const ahead = prefetched.get(path);
    if (ahead) {
      prefetched.delete(path);
      if (Date.now() - ahead.at < PREFETCH_TTL_MS) return ahead.result as Promise<T>;
    }
  }
  if (session && session.accessTokenExpiresAt - Date.now() < 30_000) await refresh();
  let res = await send(method, path, body, session?.accessToken ?? null);
  if (res.status === 401 && session) {
    const error = await errorOf(res);
    if (error.code !== "TOKEN_EXPIRED" && error.code !== "UNAUTHENTICATED") throw error;
    if (!(await refresh())) {
      endSession(true);
      throw new ApiError(401, "SESSION_EXPIRED", "Your session has expired; sign in again.");
    }
    res = await send(method, path, body, session!.accessToken);
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("content-type") ?? "";
  const json = /^application\/(json|[\w.-]+\+json)\s*(;|$)/i.test(type);
  return (json ? await res.json() : await res.text()) as T;
}

export async function signIn(username: string, password: string, otp?: string): Promise<void> {
  const res = await send("POST", "/v1/auth/login", { username, password, ...(otp ? { otp } : {}) }, null);
  if (!res.ok) throw await errorOf(res);
  expiredNotice = false;
  adopt((await res.json()) as TokenPairDto);
}

/** Password and a passkey answer to the challenge MFA_REQUIRED carried. */
export async function signInWithPasskey(
  username: string,
  password: string,
  webauthn: { challengeId: string; response: unknown },
): Promise<void> {
  const res = await send("POST", "/v1/auth/login", { username, password, webauthn }, null);
  if (!res.ok) throw await errorOf(res);
  expiredNotice = false;
  adopt((await res.json()) as TokenPairDto);
}

/** Single sign-on: the one-time code Stint sent back, redeemed with this tab's PKCE verifier. */
export async function signInWithSsoCode(code: string, codeVerifier: string): Promise<void> {
  const res = await send("POST", "/v1/auth/sso/redeem", { code, codeVerifier }, null);
  if (!res.ok) throw await errorOf(res);
  expiredNotice = false;
  adopt((await res.json()) as TokenPairDto);
}

export async function signOut(): Promise<void> {
  const current = session;
  endSession(false);
  if (current)
    await send("POST", "/v1/auth/logout", { refreshToken: current.refreshToken }, current.accessToken).catch(
      () => undefined,
    );
}

export function hasRole(...roles: string[]): boolean {
  return !!session && session.user.platformRoles.some((r) => roles.includes(r));
}
