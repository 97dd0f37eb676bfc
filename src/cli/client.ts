/**
 * The HTTP client of the CLI: global fetch, a bearer access token, and a transparent refresh
 * (POST /v1/auth/refresh) when the access token is about to expire or the server answers
 * 401 TOKEN_EXPIRED. The rotated pair is saved at once, under a lock, so concurrent `stint`
 * processes never spend the same refresh token twice.
 */
import type { z } from "zod";
import { tokenPair, type TokenPairDto } from "../contract/identity.js";
import { declaredLength, MAX_RESPONSE_BYTES, readBounded, responseTooLarge } from "./bounded-body.js";
import type { CliContext } from "./context.js";
import { loadCredentials, saveCredentials, withCredentialsLock, type SavedCredentials } from "./credentials.js";
import { CliError } from "./exit-codes.js";
import { warn } from "./output.js";

export const DEFAULT_SERVER = "http://127.0.0.1:8420";
/** Refresh this long before the access token expires, to absorb clock skew and slow requests. */
const REFRESH_MARGIN_MS = 30_000;
const REQUEST_TIMEOUT_MS = 30_000;

/** A server base URL: http or https, no credentials, query or fragment; no trailing slash. */
export function normalizeServer(text: string): string {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new CliError("CONFIG_INVALID", `"${text}" is not a URL; write the server like https://stint.example.com`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliError("CONFIG_INVALID", `the server URL must start with http:// or https://, not ${url.protocol}`);
  }
  if (url.username || url.password) {
    throw new CliError("CONFIG_INVALID", "the server URL must not contain a user name or password");
  }
  if (url.search || url.hash) throw new CliError("CONFIG_INVALID", "the server URL must not have a query or fragment");
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/** `--server`, else the server of the saved credentials, else `$STINT_SERVER`, else the default. */
export function resolveServer(
  flag: string | undefined,
  saved: SavedCredentials | null,
  env: Readonly<Record<string, string | undefined>>,
): string {
  return normalizeServer(flag ?? saved?.server ?? (env.STINT_SERVER || DEFAULT_SERVER));
}

/** True for loopback servers, where plain HTTP does not expose a password to the network. */
export function isLoopback(server: string): boolean {
  const host = new URL(server).hostname;
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function toSavedCredentials(server: string, pair: TokenPairDto, now: number): SavedCredentials {
  return {
    version: 1,
    server,
    principal: { id: pair.principal.id, name: pair.principal.name },
    accessToken: pair.accessToken,
    accessTokenExpiresAt: pair.accessTokenExpiresAt,
    refreshToken: pair.refreshToken,
    refreshTokenExpiresAt: pair.refreshTokenExpiresAt,
    savedAt: new Date(now).toISOString(),
  };
}

type Query = Record<string, string | number | undefined>;

export interface RequestOptions<T> {
  body?: unknown;
  query?: Query;
  /**
   * true (default): send the saved access token, refreshing it if needed; false: anonymous;
   * "if-valid": send it only when it is still valid, never refresh (logout).
   */
  auth?: boolean | "if-valid";
  /** The contract schema of a successful answer; a mismatch is BAD_RESPONSE. */
  schema?: z.ZodType<T>;
}

export interface ApiResult<T> {
  /** The answer, checked against the schema when one was given. */
  data: T;
  /** The answer exactly as the server sent it (what `--json` prints); null for an empty body. */
  raw: unknown;
}

export interface ApiClient {
  readonly server: string;
  /** The saved credentials when they belong to this server. */
  credentials(): SavedCredentials | null;
  /** Throws "not signed in" now, before the user is asked to type anything. */
  requireSession(): void;
  request<T = unknown>(method: string, path: string, options?: RequestOptions<T>): Promise<ApiResult<T>>;
  /**
   * A streamed answer (audit export); only the wait for the headers is timed out. Unbounded: a caller that
   * holds it in memory reads it with readBounded and the size it expects.
   */
  /** `auth: false` for public downloads (the SSH KRL), so a host without a Stint sign-in can fetch them. */
  stream(path: string, query?: Query, auth?: boolean): Promise<ReadableStream<Uint8Array>>;
  /** Saves a freshly issued token pair as the credentials for this server. */
  saveSession(pair: TokenPairDto): Promise<SavedCredentials>;
  /** Saves an API token a token exchange returned, as the sign-in for this server (never refreshed). */
  saveExchanged(token: {
    accessToken: string;
    expiresAt: string;
    principal: { id: string; name: string };
  }): Promise<void>;
}

/** A path segment from a user-supplied name or id. */
export function segment(value: string): string {
  return encodeURIComponent(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The CliError for a non-2xx answer, from the API's error envelope when there is one. */
export function errorFromResponse(status: number, text: string): CliError {
  let code = `HTTP_${status}`;
  let message = `the server answered with HTTP status ${status}`;
  let details: Record<string, unknown> | undefined;
  try {
    const body: unknown = JSON.parse(text);
    if (isRecord(body) && isRecord(body.error) && typeof body.error.code === "string") {
      code = body.error.code;
      if (typeof body.error.message === "string") message = body.error.message;
      if (isRecord(body.error.details)) details = body.error.details;
    }
  } catch {
    // not JSON (a proxy's HTML page, say): keep the status-based code
  }
  return new CliError(code, message, { status, ...(details ? { details } : {}) });
}

function unreachable(server: string, error: unknown, timedOut: boolean): CliError {
  if (timedOut) {
    return new CliError(
      "SERVER_UNREACHABLE",
      `the Stint server at ${server} did not answer within ${REQUEST_TIMEOUT_MS / 1000}s`,
    );
  }
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
  const reason = (cause as NodeJS.ErrnoException | undefined)?.code ?? cause?.message ?? (error as Error).message;
  return new CliError("SERVER_UNREACHABLE", `cannot reach the Stint server at ${server} (${reason})`);
}

function expiresWithin(iso: string, now: number, marginMs: number): boolean {
  const at = Date.parse(iso);
  return Number.isNaN(at) || at - now < marginMs;
}

/** An answer whose headers are in; `settle` stops the timeout once the body is read. */
interface Exchange {
  response: Response;
  settle: () => void;
  timedOut: () => boolean;
}

export interface ClientOptions {
  /** The `--server` flag. */
  serverFlag?: string | undefined;
  /**
   * Use `$STINT_TOKEN` (an API token, for CI) as the bearer instead of the saved sign-in.
   * Default true; login, setup and logout manage the saved sign-in and pass false.
   */
  useEnvToken?: boolean;
}

export async function createApiClient(ctx: CliContext, options: ClientOptions = {}): Promise<ApiClient> {
  const envToken = options.useEnvToken === false ? undefined : ctx.env.STINT_TOKEN || undefined;
  const saved = envToken ? null : await loadCredentials(ctx.env, (message) => warn(ctx, message));
  const server = resolveServer(options.serverFlag, saved, ctx.env);
  // Tokens are only ever sent to the server that issued them.
  let credentials: SavedCredentials | null = saved && saved.server === server ? saved : null;
  const userAgent = `stint-cli/${ctx.version}`;

  function url(path: string, query?: Query): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) params.set(key, String(value));
    }
    const search = params.toString();
    return `${server}${path}${search ? `?${search}` : ""}`;
  }

  function notSignedIn(): CliError {
    if (saved && saved.server !== server) {
      return new CliError(
        "UNAUTHENTICATED",
        `you are signed in to ${saved.server}, not ${server}; run \`stint login --server ${server}\``,
      );
    }
    const flag = server === DEFAULT_SERVER ? "" : ` --server ${server}`;
    return new CliError("UNAUTHENTICATED", `not signed in to ${server}; run \`stint login${flag}\``);
  }

  /** One HTTP exchange. Resolves with the response once its headers are in; `settle` ends the timer. */
  async function exchange(
    method: string,
    path: string,
    body: unknown,
    query: Query | undefined,
    bearer: string | undefined,
  ): Promise<Exchange> {
    const headers: Record<string, string> = { accept: "application/json", "user-agent": userAgent };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, REQUEST_TIMEOUT_MS);
    const settle = () => clearTimeout(timer);
    let response: Response;
    try {
      response = await ctx.fetch(url(path, query), {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        // A redirect could carry the bearer token elsewhere; refuse to follow one.
        redirect: "manual",
        signal: controller.signal,
      });
    } catch (error) {
      settle();
      throw unreachable(server, error, timedOut);
    }
    if (response.status >= 300 && response.status < 400) {
      settle();
      const location = response.headers.get("location");
      throw new CliError(
        "BAD_RESPONSE",
        `the server redirected to ${location ?? "another address"}; pass the final URL with --server`,
        { status: response.status },
      );
    }
    return { response, settle, timedOut: () => timedOut };
  }

  /** The answer's body as text, at most MAX_RESPONSE_BYTES: a server (or proxy) sets no size on our memory. */
  async function readText({ response, settle, timedOut }: Exchange): Promise<string> {
    try {
      const declared = declaredLength(response.headers);
      if (declared !== null && declared > MAX_RESPONSE_BYTES) {
        await response.body?.cancel().catch(() => undefined);
        throw responseTooLarge(MAX_RESPONSE_BYTES, "answer");
      }
      // TextDecoder as response.text() does (UTF-8, a leading BOM dropped).
      return new TextDecoder().decode(await readBounded(response.body, MAX_RESPONSE_BYTES, "answer"));
    } catch (error) {
      if (error instanceof CliError) throw error;
      throw unreachable(server, error, timedOut());
    } finally {
      settle();
    }
  }

  /** Refreshes the pair under the lock; adopts a pair another process refreshed meanwhile. */
  async function refresh(used: SavedCredentials): Promise<SavedCredentials> {
    return withCredentialsLock(ctx.env, async () => {
      const current = await loadCredentials(ctx.env);
      if (!current || current.server !== server || current.principal.id !== used.principal.id) {
        // Someone signed out, or in as someone else, meanwhile: do not resurrect the old session.
        credentials = null;
        throw new CliError("UNAUTHENTICATED", "the saved sign-in changed meanwhile; run `stint login` again");
      }
      if (
        current.accessToken !== used.accessToken &&
        !expiresWithin(current.accessTokenExpiresAt, ctx.now(), REFRESH_MARGIN_MS)
      ) {
        credentials = current;
        return current;
      }
      if (current.exchanged) {
        credentials = null;
        throw new CliError(
          "TOKEN_EXPIRED",
          "the exchanged token has expired; exchange a new job token (`stint login --token-exchange-from-env VAR`)",
        );
      }
      if (expiresWithin(current.refreshTokenExpiresAt, ctx.now(), 0)) {
        throw new CliError("TOKEN_EXPIRED", "the session has expired; run `stint login` again");
      }
      const answer = await exchange(
        "POST",
        "/v1/auth/refresh",
        { refreshToken: current.refreshToken },
        undefined,
        undefined,
      );
      const { response } = answer;
      const text = await readText(answer);
      if (!response.ok) {
        const error = errorFromResponse(response.status, text);
        if (response.status === 400 || response.status === 401 || response.status === 403) {
          throw new CliError(
            "TOKEN_EXPIRED",
            `the session could not be refreshed (${error.code}: ${error.message}); run \`stint login\` again`,
            { status: 401 },
          );
        }
        throw error;
      }
      const pair = parseBody(text, response.status, tokenPair).data;
      credentials = toSavedCredentials(server, pair, ctx.now());
      await saveCredentials(ctx.env, credentials);
      return credentials;
    });
  }

  async function bearerFor(auth: boolean | "if-valid"): Promise<string | undefined> {
    if (auth === false) return undefined;
    if (envToken) return envToken;
    if (!credentials) {
      if (auth === "if-valid") return undefined;
      throw notSignedIn();
    }
    // An exchanged token is used to its last second: there is nothing to refresh it with.
    const margin = credentials.exchanged ? 0 : REFRESH_MARGIN_MS;
    if (expiresWithin(credentials.accessTokenExpiresAt, ctx.now(), margin)) {
      if (auth === "if-valid") return undefined;
      credentials = await refresh(credentials);
    }
    return credentials.accessToken;
  }

  /** Sends, and on 401 TOKEN_EXPIRED refreshes once and sends again. Throws for non-2xx answers. */
  async function send(
    method: string,
    path: string,
    body: unknown,
    query: Query | undefined,
    auth: boolean | "if-valid",
  ): Promise<Exchange> {
    for (let attempt = 0; ; attempt += 1) {
      const bearer = await bearerFor(auth);
      const answer = await exchange(method, path, body, query, bearer);
      if (answer.response.ok) return answer;
      const error = errorFromResponse(answer.response.status, await readText(answer));
      if (error.code === "TOKEN_EXPIRED" && auth === true && credentials && attempt === 0) {
        credentials = await refresh(credentials);
        continue;
      }
      throw error;
    }
  }

  function parseBody<T>(text: string, status: number, schema: z.ZodType<T> | undefined): ApiResult<T> {
    let raw: unknown = null;
    if (text.trim() !== "") {
      try {
        raw = JSON.parse(text);
      } catch {
        throw new CliError("BAD_RESPONSE", `the server's answer (HTTP ${status}) is not JSON`, { status });
      }
    }
    if (!schema) return { data: raw as T, raw };
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
      throw new CliError(
        "BAD_RESPONSE",
        `the server's answer is not what this CLI (${ctx.version}) expects${where}: ${issue?.message ?? "invalid"}`,
        { status },
      );
    }
    return { data: parsed.data, raw };
  }

  return {
    server,
    credentials: () => credentials,
    requireSession() {
      if (!envToken && !credentials) throw notSignedIn();
    },
    async request<T>(method: string, path: string, options: RequestOptions<T> = {}): Promise<ApiResult<T>> {
      const answer = await send(method, path, options.body, options.query, options.auth ?? true);
      return parseBody(await readText(answer), answer.response.status, options.schema);
    },
    async stream(path: string, query?: Query, auth = true): Promise<ReadableStream<Uint8Array>> {
      const { response, settle } = await send("GET", path, undefined, query, auth);
      settle();
      if (!response.body) throw new CliError("BAD_RESPONSE", "the server sent no body");
      return response.body;
    },
    async saveExchanged(token): Promise<void> {
      const next: SavedCredentials = {
        version: 1,
        server,
        principal: token.principal,
        accessToken: token.accessToken,
        accessTokenExpiresAt: token.expiresAt,
        refreshToken: "",
        refreshTokenExpiresAt: token.expiresAt,
        savedAt: new Date(ctx.now()).toISOString(),
        exchanged: true,
      };
      await withCredentialsLock(ctx.env, () => saveCredentials(ctx.env, next));
      credentials = next;
    },
    async saveSession(pair: TokenPairDto): Promise<SavedCredentials> {
      const next = toSavedCredentials(server, pair, ctx.now());
      await withCredentialsLock(ctx.env, () => saveCredentials(ctx.env, next));
      credentials = next;
      return next;
    },
  };
}
