/**
 * Fast paths: the plain success of a hot GET route (the check API, a secret read) answered before Fastify
 * routes the request, for the cost of the work itself (issue 14, acceptances 3 and 4: Fastify's request and
 * reply objects, hook chain, query parser, validation and serialization stages cost about as much again as
 * the answer).
 *
 * A fast path is registered for a route's URL: an exact path (`/v1/check`), whose requests must carry a
 * query, the answer function getting the query's text; or a path with one parameter segment
 * (`/v1/secrets/:path/value`), whose requests must carry none, the answer function getting the segment as
 * sent (percent-encoded). A fast path answers only when all of this holds, and otherwise hands the request
 * to Fastify, which answers it from the start exactly as it answers any other (the route's hooks, errors,
 * headers):
 * - the request is a GET of such a URL;
 * - memory authenticates the caller (`authenticate` answers synchronously) and the route's requirement,
 *   as registered in the route table, admits the actor (the route's own hook would decide the same);
 * - the answer function returns the answer's JSON text, at once or as a promise (it refuses anything
 *   unusual: input it does not parse strictly, a caller it must refuse, what memory cannot decide).
 * An answer that comes as a promise may do work Fastify must not do again (a secret read's audit event):
 * when the promise resolves undefined the function promises that it did nothing (Fastify then answers from
 * the start); when it rejects, Fastify answers the request too and the route throws that error
 * (`fastFailure`) instead of doing the work again, so the error handler answers it as it answers the
 * route's own errors.
 * The answer carries the headers every answer carries (request id, nosniff, no-store) and is counted by the
 * observers (the HTTP metrics), as an onResponse hook counts Fastify's. When authentication has to go to
 * the database (a promise), the promise is left on the raw request for the route's hook to use: the
 * database is asked once. With request logging (`debug`) on there is no fast path: the log line is a hook.
 */
import type { FastifyRequest } from "fastify";
import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { authorize } from "../modules/authz/authz.rules.js";
import type { Actor, CallContext } from "../modules/authz/authz.types.js";
import type { RouteEntry } from "./app.js";

/** The request a fast path answers, as its answer function sees it. */
export interface FastRequest {
  /** The call context Fastify's request would carry (throws when that is Fastify's to work out). */
  context(): CallContext;
}

/**
 * A fast path's answer to `GET <path>?<query>` (or `GET <prefix><param><suffix>`) by an authenticated,
 * authorized `actor`: the 200 answer's JSON text, or undefined (or a throw) to let Fastify answer the
 * request as it would any other.
 */
export type FastAnswer = (
  input: string,
  actor: Actor,
  request: FastRequest,
) => string | undefined | Promise<string | undefined>;

/** Told of each answer a fast path sent (what an onResponse hook is told of Fastify's). */
export type FastAnswerObserver = (route: RouteEntry, method: string, statusCode: number, seconds: number) => void;

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

const PENDING_ACTOR = Symbol("stint.pendingActor");
const FAILURE = Symbol("stint.fastFailure");
type RawWithPending = IncomingMessage & { [PENDING_ACTOR]?: Promise<Actor>; [FAILURE]?: { error: unknown } };

/** The authentication a fast path started and handed over (a database read), if any. */
export function pendingActor(raw: IncomingMessage): Promise<Actor> | undefined {
  return (raw as RawWithPending)[PENDING_ACTOR];
}

/** Throws the error a fast path's answer (a promise) failed with, if it did: the route answers it. */
export function fastFailure(raw: IncomingMessage): void {
  const failed = (raw as RawWithPending)[FAILURE];
  if (failed !== undefined) throw failed.error;
}

interface CallDeps {
  requestIdFor(given: string | string[] | undefined): string;
  trustsProxies: boolean;
}

/**
 * One request a fast path answers: its request id (made once, when first needed) and call context. A class,
 * not closures made per request (the check API's answer needs neither).
 */
class FastCall implements FastRequest {
  private id: string | undefined = undefined;
  constructor(
    readonly request: IncomingMessage,
    private readonly deps: CallDeps,
  ) {}

  requestId(): string {
    return (this.id ??= this.deps.requestIdFor(this.request.headers["x-request-id"]));
  }

  context(): CallContext {
    const { request } = this;
    // Fastify's `request.ip`: the peer's address, unless a trusted proxy may have named another.
    if (this.deps.trustsProxies && request.headers["x-forwarded-for"] !== undefined)
      throw new Error("the source address is Fastify's to work out");
    return {
      correlationId: this.requestId(),
      sourceIp: request.socket.remoteAddress ?? null,
      userAgent: (request.headers["user-agent"] ?? "").slice(0, 512) || null,
    };
  }
}

interface FastPath {
  /** For a path with a parameter: what comes after it (the path is then the prefix). */
  suffix: string | null;
  url: string;
  answer: FastAnswer;
  route: RouteEntry | null;
}

/** Fastify's longest path parameter (`maxParamLength`, default): a longer one is Fastify's to refuse. */
const MAX_PARAM_LENGTH = 100;

export function createFastPaths(deps: {
  /** False: no fast path answers anything. */
  enabled: boolean;
  authenticate(request: FastifyRequest): Actor | Promise<Actor>;
  /** The app's routes: a fast path's requirement is its GET route's. */
  routeTable: readonly RouteEntry[];
  requestIdFor(given: string | string[] | undefined): string;
  /** Whether some proxy's X-Forwarded-For is trusted (Fastify's `trustProxy`): see `context`. */
  trustsProxies: boolean;
}) {
  const exact = new Map<string, FastPath>();
  /** Paths with a parameter, by their prefix up to the parameter. */
  const withParam = new Map<string, FastPath>();
  const observers: FastAnswerObserver[] = [];

  /** The path and what the answer function gets (query or parameter), or undefined: not a fast path's. */
  function lookup(url: string): { fast: FastPath; input: string } | undefined {
    const q = url.indexOf("?");
    if (q !== -1) {
      const fast = exact.get(url.slice(0, q));
      return fast && { fast, input: url.slice(q + 1) };
    }
    const cut = url.lastIndexOf("/", url.lastIndexOf("/") - 1) + 1;
    if (cut <= 0) return undefined;
    const fast = withParam.get(url.slice(0, cut));
    if (fast === undefined) return undefined;
    const end = url.indexOf("/", cut);
    if (end === -1 || end - cut > MAX_PARAM_LENGTH || url.slice(end) !== fast.suffix) return undefined;
    return { fast, input: url.slice(cut, end) };
  }

  function send(response: ServerResponse, id: string, body: string) {
    response.writeHead(200, [
      "x-request-id",
      id,
      "x-content-type-options",
      "nosniff",
      "cache-control",
      "no-store",
      "content-type",
      "application/json; charset=utf-8",
      "content-length",
      String(Buffer.byteLength(body)),
    ]);
    response.end(body);
  }

  /**
   * Answers `request` when a fast path can, or takes it in charge and hands it to `fallback` (Fastify)
   * later: true. False: untouched, for the caller to give to Fastify now.
   */
  function answer(request: IncomingMessage, response: ServerResponse, fallback: Handler): boolean {
    if (!deps.enabled || request.method !== "GET") return false;
    const found = lookup(request.url!);
    if (found === undefined) return false;
    const { fast, input } = found;
    const started = performance.now();
    const route = (fast.route ??= deps.routeTable.find((r) => r.method === "GET" && r.url === fast.url) ?? null);
    if (route === null) return false;
    const call = new FastCall(request, deps);
    let body: string | undefined | Promise<string | undefined>;
    try {
      // Only the headers are read (as the server's `authenticate` does of a Fastify request).
      const actor = deps.authenticate(request as unknown as FastifyRequest);
      if (actor instanceof Promise) {
        // Marked handled here; the route's hook takes the outcome (nothing does if Fastify refuses the URL).
        actor.catch(() => undefined);
        (request as RawWithPending)[PENDING_ACTOR] = actor;
        return false;
      }
      authorize(actor, route.requirement);
      body = fast.answer(input, actor, call);
    } catch {
      return false;
    }
    if (body === undefined) return false;
    if (typeof body === "string") {
      answered(call, response, route, started, body);
      return true;
    }
    body.then(
      (text) => (text === undefined ? fallback(request, response) : answered(call, response, route, started, text)),
      (error: unknown) => {
        (request as RawWithPending)[FAILURE] = { error };
        fallback(request, response);
      },
    );
    return true;
  }

  function answered(call: FastCall, response: ServerResponse, route: RouteEntry, started: number, text: string) {
    send(response, call.requestId(), text);
    const seconds = (performance.now() - started) / 1000;
    for (const observer of observers) observer(route, "GET", 200, seconds);
  }

  return {
    answer,
    /** `url`: an exact path, or one with a single `:parameter` segment (not the last). */
    add(url: string, fastAnswer: FastAnswer) {
      const at = url.indexOf("/:");
      if (at === -1) return void exact.set(url, { suffix: null, url, answer: fastAnswer, route: null });
      const end = url.indexOf("/", at + 1);
      if (end === -1 || url.includes(":", end)) throw new Error(`fast path ${url}: one parameter, not the last`);
      withParam.set(url.slice(0, at + 1), { suffix: url.slice(end), url, answer: fastAnswer, route: null });
    },
    observe(observer: FastAnswerObserver) {
      observers.push(observer);
    },
  };
}
