/**
 * buildApp(deps): the HTTP API, separate from listen() so tests use app.inject.
 * Every route declares what it requires of the caller (config.requirement);
 * a route that forgets is refused at start-up: deny by default.
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type RawServerDefault,
} from "fastify";
import { randomUUID } from "node:crypto";
import { createServer, STATUS_CODES, type IncomingMessage, type ServerOptions, type ServerResponse } from "node:http";
import fastifyCompress from "@fastify/compress";
import fastifyWebsocket from "@fastify/websocket";
import { isNeverCompressed } from "./no-compress.js";
import { createFastPaths, pendingActor, type FastAnswer, type FastAnswerObserver } from "./fast-path.js";
import fastifySwagger from "@fastify/swagger";
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { redactUrl, type Logger } from "../lib/logger.js";
import { isStoreUnavailable } from "../lib/db.js";
import { isDiskFull } from "../lib/disk.js";
import { StintError, isStintError, toEnvelope } from "../lib/errors.js";
import { constantTimeEqual } from "../lib/security.js";
import { authorize, isPermission, type Requirement } from "../modules/authz/authz.rules.js";
import { ANONYMOUS, type Actor, type CallContext } from "../modules/authz/authz.types.js";

export type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger, ZodTypeProvider>;

/** One registered route (per method) and what it requires: in `routeTable` (tests walk it) and on each request. */
export interface RouteEntry {
  readonly method: string;
  readonly url: string;
  readonly requirement: Requirement;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route registered on the app, in registration order. */
    routeTable: readonly RouteEntry[];
    /**
     * Answers the plain success of `GET <url>` before Fastify routes the request (fast-path.ts): `url` must
     * be a GET route registered with the same answer; everything the fast path does not answer (no or
     * another credential, a refusal, an unusual query) goes to that route.
     */
    fastGet(url: string, answer: FastAnswer): void;
    /** Registers a watcher of the fast paths' answers (the metrics). */
    observeFastAnswers(observer: FastAnswerObserver): void;
  }
  interface FastifyContextConfig {
    requirement?: Requirement;
    /** The route also admits the configured scrape token (`Bearer <STINT_METRICS_TOKEN>`), as no one in particular. */
    scrapeToken?: boolean;
  }
  interface FastifyRequest {
    actor: Actor;
    callContext: CallContext;
    /** Where `callContext` keeps what it made on first read. */
    stintCallContext: CallContext | null;
    /**
     * The route that matched, null until its first hook ran (none for an unknown route). Read this, not
     * `routeOptions`, on a hot path: that getter builds a new object at each read.
     */
    route: RouteEntry | null;
  }
}

export interface HttpDeps {
  logger: Logger;
  /** Trusted reverse proxies (IPs/CIDRs); X-Forwarded-For is honoured only from these. */
  trustedProxies: readonly string[];
  /**
   * Resolves the bearer credential of a request into an actor (anonymous when absent): synchronously when
   * it can answer from memory (no promise, no extra turn of the event loop on the hot path).
   */
  authenticate(request: FastifyRequest): Actor | Promise<Actor>;
  bodyLimit?: number;
  /** The metrics scrape token; routes with `config.scrapeToken` admit it. */
  scrapeToken?: string | undefined;
  /** Told when a request failed on a full disk (readiness reports it). */
  onDiskFull?: () => void;
}

/** Answers smaller than this are sent as they are: compressing them costs more than the bytes saved. */
export const COMPRESS_THRESHOLD_BYTES = 1024;

const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });
/** The request id: the caller's `X-Request-Id` when it is a sane one, else a new one. */
const requestIdFor = (given: string | string[] | undefined) =>
  typeof given === "string" && REQUEST_ID.test(given) ? given : requestId();

export async function buildApp(deps: HttpDeps, register: (app: App) => Promise<void> | void): Promise<App> {
  // The fast paths (fast-path.ts) in front of Fastify's handler; none with the request log line (`debug`, a hook).
  const routeTable: RouteEntry[] = [];
  const fast = createFastPaths({
    enabled: !deps.logger.isLevelEnabled("debug"),
    authenticate: deps.authenticate,
    routeTable,
    requestIdFor,
    trustsProxies: deps.trustedProxies.length > 0,
  });

  const app = Fastify({
    // Fastify's own server, with the fast paths in front of its handler; set up as Fastify sets up its own.
    serverFactory: (handler, fastifyOptions) => {
      const options = fastifyOptions as {
        http?: ServerOptions;
        keepAliveTimeout?: number;
        requestTimeout?: number;
        connectionTimeout?: number;
      };
      // Not once the server stops listening (closing): Fastify then answers 503 with `Connection: close`,
      // which is how busy keep-alive connections drain.
      const server = createServer(options.http ?? {}, (request, response) => {
        if (!server.listening || !fast.answer(request, response, handler)) handler(request, response);
      });
      if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout;
      if (options.requestTimeout !== undefined) server.requestTimeout = options.requestTimeout;
      if (options.connectionTimeout !== undefined) server.setTimeout(options.connectionTimeout);
      return server;
    },
    loggerInstance: deps.logger,
    bodyLimit: deps.bodyLimit ?? 1024 * 1024,
    trustProxy: deps.trustedProxies.length > 0 ? [...deps.trustedProxies] : false,
    genReqId: (req) => requestIdFor(req.headers["x-request-id"]),
    // A request's logger is made when something logs through it, not for every request (pino's child()
    // serialises and redacts its bindings: ~5 µs a request, for a logger that at `warn` and above writes
    // nothing on a successful request; at `info` Fastify's request log lines make it anyway).
    childLoggerFactory: (logger, bindings, options) =>
      options.level === undefined && options.serializers === undefined
        ? lazyChild(logger, bindings)
        : logger.child(bindings, options),
    // One line per request at most, and only at `debug` (below): Fastify's own two lines per request at `info`
    // buried a first run's setup code under the web UI's asset requests.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { ignoreTrailingSlash: true },
    // Malformed percent-encoding and over-long path parameters get the error envelope too.
    frameworkErrors: (_error, _request, reply) =>
      sendError(
        reply,
        new StintError("VALIDATION_FAILED", "The URL is badly percent-encoded or a part of it is too long."),
      ),
    // Errors Node's HTTP parser meets before there is a request (a 100 KB URL overflows the header
    // limit) get the error envelope too, written on the socket that is then closed.
    clientErrorHandler: (error, socket) => {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ECONNRESET" || socket.destroyed) return;
      const stint =
        code === "HPE_HEADER_OVERFLOW"
          ? new StintError("HEADERS_TOO_LARGE")
          : code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? new StintError("REQUEST_TIMEOUT")
            : new StintError("VALIDATION_FAILED", "The request could not be read as HTTP.");
      const body = JSON.stringify(toEnvelope(stint));
      if (socket.writable)
        socket.write(
          `HTTP/1.1 ${stint.status} ${STATUS_CODES[stint.status] ?? ""}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
        );
      socket.destroy();
    },
  }).withTypeProvider<ZodTypeProvider>() as unknown as App;

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  // JSON only, strictly UTF-8: invalid bytes are an error, not silently replaced.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(/^application\/([\w.+-]+\+)?json\s*(;|$)/i, { parseAs: "buffer" }, (_req, body, done) => {
    const buffer = body as Buffer;
    let text: string;
    try {
      text = utf8.decode(buffer);
    } catch {
      return done(new StintError("BAD_ENCODING"), undefined);
    }
    if (text.trim() === "") return done(null, undefined);
    // No Stint body nests deeply; a 10,000-deep one only costs stack and time in every walker after the parse.
    if (nestedDeeperThan(text, MAX_JSON_DEPTH))
      return done(
        new StintError(
          "VALIDATION_FAILED",
          `The request body is nested too deeply (more than ${MAX_JSON_DEPTH} levels).`,
        ),
        undefined,
      );
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new StintError("BAD_JSON"), undefined);
    }
  });

  // PostgreSQL text holds neither U+0000 nor unpaired surrogates: refuse them before any handler, not fail or
  // alter them later (`unstorableProblem`). A route that may take a body checks in a preValidation hook, once
  // the body is parsed; a GET, HEAD or TRACE route has none (Fastify never parses one) and checks its URL at the
  // end of its onRequest hook: one hook less on every read. (Hooks take a callback rather than return a
  // promise: one less turn per hook.)
  const unstorableHook = (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) =>
    done(unstorableProblem(request));

  // The request log: one line when the response is sent (method, redacted URL, status, time), at `debug`;
  // no hook at all when the level is above it, so a production server pays nothing for it.
  if (deps.logger.isLevelEnabled("debug"))
    app.addHook("onResponse", (request, reply, done) => {
      request.log.debug(
        {
          method: request.method,
          url: redactUrl(request.url),
          statusCode: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
          remoteAddress: request.ip,
        },
        "request",
      );
      done();
    });

  app.decorateRequest("actor", null as never);
  // Made on first read (most reads from memory never audit anything, so never read it), then kept.
  app.decorateRequest("stintCallContext", null);
  app.decorateRequest("callContext", {
    getter(this: FastifyRequest) {
      return (this.stintCallContext ??= {
        correlationId: this.id,
        sourceIp: this.ip ?? null,
        userAgent: (this.headers["user-agent"] ?? "").slice(0, 512) || null,
      });
    },
    setter(this: FastifyRequest, context: CallContext) {
      this.stintCallContext = context;
    },
  } as never);
  app.decorateRequest("route", null);

  // Deny by default: every route states its requirement.
  app.decorate("routeTable", routeTable);
  app.decorate("fastGet", fast.add);
  app.decorate("observeFastAnswers", fast.observe);
  app.addHook("onRoute", (route) => {
    const requirement = route.config?.requirement;
    if (requirement === undefined) throw new Error(`route ${route.method} ${route.url} declares no requirement`);
    if (requirement !== "public" && requirement !== "authenticated" && !isPermission(requirement)) {
      throw new Error(`route ${route.method} ${route.url} names unknown permission ${requirement}`);
    }
    const methods = [route.method].flat();
    const entries = new Map<string, RouteEntry>();
    for (const method of methods) {
      const entry = Object.freeze({ method, url: route.url, requirement });
      routeTable.push(entry);
      entries.set(method, entry);
    }
    // Each route carries its own authentication hook, its requirement known when it is made: nothing to
    // look up per request (`request.routeOptions` builds an object at each read). A new array, so that the
    // HEAD route Fastify copies from a GET's options before this hook runs gets exactly one of its own.
    const bodyless = methods.every((method) => BODYLESS_METHODS.has(method));
    route.onRequest = [
      authenticateFor(entries, route.config?.scrapeToken === true, bodyless),
      ...[route.onRequest ?? []].flat(),
    ];
    // A route without a body schema takes no body: `null`, `[]` or a field it ignores must not reach
    // it as if the call were plain (a seal sent with any body sealed the vault).
    const refuses = route.schema?.body === undefined && methods.some((method) => BODY_METHODS.has(method));
    if (!bodyless || refuses)
      route.preValidation = [
        ...(bodyless ? [] : [unstorableHook]),
        ...[route.preValidation ?? []].flat(),
        ...(refuses ? [refuseBody] : []),
      ];
  });

  /**
   * The route's onRequest hook: the response's standing headers, the call context, the actor, the verdict;
   * on a bodyless route also the URL's text (see `unstorableProblem`), after the verdict as before.
   */
  function authenticateFor(entries: ReadonlyMap<string, RouteEntry>, admitsScrapeToken: boolean, bodyless: boolean) {
    const only = entries.size === 1 ? entries.values().next().value : undefined;
    return (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => {
      stampRequest(request, reply);
      // A body may take a while to arrive: the context (peer address included) is taken while the socket is
      // surely open. A bodyless route's handler runs in this turn when memory authenticates; it reads it then.
      if (!bodyless) void request.callContext;
      const route = only ?? entries.get(request.method)!;
      request.route = route;
      const requirement = route.requirement;
      // A scraper's token is no principal's: it opens the few routes that say so and nothing else.
      if (admitsScrapeToken && isScrapeToken(deps.scrapeToken, request.headers.authorization))
        return done(bodyless ? unstorableProblem(request) : undefined);
      let resolved: Actor | Promise<Actor>;
      try {
        resolved = pendingActor(request.raw) ?? deps.authenticate(request);
        if (!(resolved instanceof Promise)) {
          request.actor = resolved;
          authorize(resolved, requirement);
          return done(bodyless ? unstorableProblem(request) : undefined);
        }
      } catch (error) {
        return done(error as Error);
      }
      resolved.then(
        (actor) => {
          request.actor = actor;
          try {
            authorize(actor, requirement);
          } catch (error) {
            return done(error as Error);
          }
          done(bodyless ? unstorableProblem(request) : undefined);
        },
        (error: unknown) => done(error as Error),
      );
    };
  }

  app.setNotFoundHandler({}, (request, reply) => {
    stampRequest(request, reply);
    sendError(
      reply,
      new StintError("ROUTE_NOT_FOUND", `There is no endpoint ${request.method} ${request.url.split("?")[0]}.`),
    );
  });

  app.setErrorHandler((error: unknown, request, reply) => {
    if (isStintError(error)) return sendError(reply, error);
    if (hasZodFastifySchemaValidationErrors(error)) {
      const issues = error.validation.map((v) => ({
        path: [
          error.validationContext ?? "body",
          ...String(v.instancePath ?? "")
            .split("/")
            .filter(Boolean),
        ].join("."),
        message: v.message ?? "is not valid",
      }));
      return sendError(
        reply,
        new StintError(
          "VALIDATION_FAILED",
          `The request is not valid: ${issues.map((i) => `${i.path} ${i.message}`).join("; ")}.`,
          { issues },
        ),
      );
    }
    if (isResponseSerializationError(error)) {
      request.log.error({ err: error }, "response did not match its schema");
      return sendError(reply, new StintError("INTERNAL"));
    }
    const code = (error as { code?: string }).code;
    const status = (error as { statusCode?: number }).statusCode;
    if (code === "FST_ERR_CTP_BODY_TOO_LARGE") return sendError(reply, new StintError("PAYLOAD_TOO_LARGE"));
    if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return sendError(reply, new StintError("UNSUPPORTED_MEDIA_TYPE"));
    if (code === "FST_ERR_CTP_EMPTY_JSON_BODY" || code === "FST_ERR_CTP_INVALID_JSON_BODY")
      return sendError(reply, new StintError("BAD_JSON"));
    if (code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH")
      return sendError(reply, new StintError("VALIDATION_FAILED", "The Content-Length header is wrong."));
    if (status !== undefined && status >= 400 && status < 500) {
      return sendError(reply, new StintError("VALIDATION_FAILED", "The request could not be read."));
    }
    // A lost store connection is an outage, not a bug: a retryable 503 (with Retry-After).
    if (isStoreUnavailable(error)) {
      request.log.warn({ err: error }, "the store connection was lost during the request");
      return sendError(reply, new StintError("STORE_UNAVAILABLE"));
    }
    // A full disk is an operator's problem, not a bug: a 503 that says so, and the node reports not ready.
    if (isDiskFull(error)) {
      request.log.error({ err: error }, "the disk is full: the request's change was not made");
      deps.onDiskFull?.();
      return sendError(reply, new StintError("STORAGE_FULL"));
    }
    request.log.error({ err: error }, "unhandled error");
    return sendError(reply, new StintError("INTERNAL"));
  });

  // Answers that carry secrets are never compressed (BREACH: no-compress.ts); said before the compression
  // plugin's own onRoute hook reads `compress`.
  app.addHook("onRoute", (route) => {
    if (isNeverCompressed(route.method, route.url ?? route.path)) route.compress = false;
  });

  // API answers of 1 KiB or more go out brotli- or gzip-compressed when the client accepts it (a page of
  // audit events or the OpenAPI document shrink 5–10×); smaller ones, and routes that say `compress: false`
  // (the check API: its answer is ~200 bytes and it must pay for no hook), as they are. Static assets arrive
  // compressed already (web.routes.ts) and pass through. Compressed request bodies are not accepted.
  await app.register(fastifyCompress, {
    encodings: ["br", "gzip"],
    threshold: COMPRESS_THRESHOLD_BYTES,
    globalDecompression: false,
  });

  // WebSocket routes (`{ websocket: true }`: the browser terminal, live session watching). A frame is at most
  // 1 MiB; a route authenticates in its first message, never through the URL (tokens do not go in URLs).
  await app.register(fastifyWebsocket, { options: { maxPayload: 1024 * 1024 } });

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: "Stint API", version: "1", description: "Just-in-time privileged access." },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.get("/openapi.json", { config: { requirement: "public" }, schema: { hide: true } }, async () => app.swagger());

  await app.register(async (scoped) => register(scoped as unknown as App));
  return app;
}

function isScrapeToken(token: string | undefined, authorization: string | undefined): boolean {
  return token !== undefined && authorization !== undefined && constantTimeEqual(authorization, `Bearer ${token}`);
}

/** How long a client should wait before retrying after a lost store connection (reconnecting takes about a second). */
const STORE_RETRY_AFTER_SECONDS = 2;

/** Freeing disk space takes an operator: clients should not hammer a full node. */
const STORAGE_RETRY_AFTER_SECONDS = 30;

/**
 * What every answer carries (request id, nosniff, no-store) and who asks (anonymous until authenticated; the
 * call context is made when first read). Done by each route's first hook; an answer made before that
 * (unknown route, unreadable URL) gets it from `sendError`.
 */
function stampRequest(request: FastifyRequest, reply: FastifyReply): void {
  reply.header("x-request-id", request.id);
  reply.header("x-content-type-options", "nosniff");
  reply.header("cache-control", "no-store");
  request.actor = ANONYMOUS;
}

export function sendError(reply: FastifyReply, error: StintError): void {
  if (reply.request.actor === null) stampRequest(reply.request, reply);
  if (error.status === 401) reply.header("www-authenticate", 'Bearer realm="stint"');
  if (error.code === "STORE_UNAVAILABLE") reply.header("retry-after", String(STORE_RETRY_AFTER_SECONDS));
  if (error.code === "STORAGE_FULL") reply.header("retry-after", String(STORAGE_RETRY_AFTER_SECONDS));
  void reply.code(error.status).type("application/json").send(toEnvelope(error));
}

const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** Methods whose body Fastify never parses (`request.body` stays undefined). */
const BODYLESS_METHODS = new Set(["GET", "HEAD", "TRACE"]);

/** For endpoints that take no body: none, or an empty object, is all they accept. */
async function refuseBody(request: FastifyRequest): Promise<void> {
  const body: unknown = request.body;
  if (body === undefined) return;
  if (body !== null && typeof body === "object" && !Array.isArray(body) && Object.keys(body).length === 0) return;
  throw new StintError("VALIDATION_FAILED", "This endpoint takes no request body: send none, or {}.");
}

/**
 * A request id: UUIDv7-shaped (time-ordered, like every id in Stint): the millisecond time in its first 48
 * bits, then a per-process random part and a per-process counter. A request id is no secret (a caller may
 * choose its own, docs/api.md), only unique: the counter makes it so within a process, the random part
 * (42 bits) across processes. ~0.1 µs less than a `randomUUID()` per request.
 */
export function requestId(): string {
  const ms = Date.now();
  if (ms !== stampedMs) {
    stampedMs = ms;
    const hex = ms.toString(16).padStart(12, "0");
    stamp = `${hex.slice(0, 8)}-${hex.slice(8)}-7${processPart}`;
  }
  requestCounter = (requestCounter + 1) >>> 0;
  return stamp + requestCounter.toString(16).padStart(8, "0");
}
let stampedMs = -1;
let stamp = "";
let requestCounter = 0;
/** A random UUID's `xxx-Vxxx-xxxx` after its version digit (V its variant). */
const processPart = randomUUID().slice(15, 28);

/**
 * A child logger made on first use: until something is written through it (an error, a request log line
 * at `info`), a request's logger costs one small object. Its level follows its parent's.
 */
class LazyChildLogger {
  #child: Logger | undefined;
  constructor(
    readonly parent: Logger,
    readonly childBindings: Record<string, unknown>,
  ) {}
  #real(): Logger {
    return (this.#child ??= this.parent.child(this.childBindings));
  }
  #log(level: "fatal" | "error" | "warn" | "info" | "debug" | "trace", args: unknown[]) {
    if (this.#child === undefined && !this.parent.isLevelEnabled(level)) return;
    (this.#real()[level] as (...a: unknown[]) => void)(...args);
  }
  fatal(...args: unknown[]) {
    this.#log("fatal", args);
  }
  error(...args: unknown[]) {
    this.#log("error", args);
  }
  warn(...args: unknown[]) {
    this.#log("warn", args);
  }
  info(...args: unknown[]) {
    this.#log("info", args);
  }
  debug(...args: unknown[]) {
    this.#log("debug", args);
  }
  trace(...args: unknown[]) {
    this.#log("trace", args);
  }
  silent() {}
  child(bindings: Record<string, unknown>, options?: object): Logger {
    return this.#real().child(bindings, options);
  }
  isLevelEnabled(level: string): boolean {
    return (this.#child ?? this.parent).isLevelEnabled(level);
  }
  bindings(): Record<string, unknown> {
    return this.#real().bindings();
  }
  get level(): string {
    return (this.#child ?? this.parent).level;
  }
  set level(level: string) {
    this.#real().level = level;
  }
}

function lazyChild(parent: FastifyBaseLogger, bindings: Record<string, unknown>): FastifyBaseLogger {
  return new LazyChildLogger(parent as Logger, bindings) as unknown as FastifyBaseLogger;
}

export const MAX_JSON_DEPTH = 64;

/** Whether JSON `text` opens more than `max` arrays or objects inside each other (one pass, strings skipped). */
export function nestedDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c)
        i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > max) return true;
    } else if (ch === 0x5d || ch === 0x7d) depth--;
  }
  return false;
}

const UNPAIRED_SURROGATE = /\p{Cs}/u;
/** A URL whose decoded parts may differ from its characters (`%`), or whose characters are unstorable. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what it looks for
const ESCAPED_OR_UNSTORABLE = /[%\u0000\p{Cs}]/u;
const unstorable = (text: string) => text.includes("\u0000") || UNPAIRED_SURROGATE.test(text);

/**
 * PostgreSQL text holds neither U+0000 nor unpaired surrogates: the error for a request whose params, query or
 * body holds either, else undefined. Params and query are made of the URL's own characters unless it holds a
 * percent escape: one pass over the URL then answers for both, and only a body, or an escaped URL, is walked.
 */
function unstorableProblem(request: FastifyRequest): StintError | undefined {
  if (
    (ESCAPED_OR_UNSTORABLE.test(request.url) && hasUnstorableText([request.params, request.query])) ||
    (request.body !== undefined && hasUnstorableText(request.body))
  )
    return new StintError(
      "VALIDATION_FAILED",
      "The request must not contain NUL (U+0000) characters or unpaired UTF-16 surrogates.",
    );
  return undefined;
}

/** Whether any string or key in a parsed request is unstorable text (iterative: bodies may nest deeply). */
function hasUnstorableText(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item === "string" && unstorable(item)) return true;
    if (item !== null && typeof item === "object") {
      // for…in over own keys: no entries array per object on every request.
      const record = item as Record<string, unknown>;
      for (const key in record) {
        if (!Object.hasOwn(record, key)) continue;
        if (unstorable(key)) return true;
        stack.push(record[key]);
      }
    }
  }
  return false;
}
