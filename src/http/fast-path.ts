/**
 * Fast paths: the plain success of a hot GET route (the check API) answered before Fastify routes the
 * request, for the cost of the work itself (issue 14, acceptance 3: Fastify's request and reply objects,
 * hook chain, query parser, validation and serialization stages cost about as much again as the answer).
 *
 * A fast path answers only when all of this holds, and returns false otherwise, for Fastify to answer the
 * request from the start exactly as it answers any other (the route's hooks, errors, headers):
 * - the request is a GET of the path exactly, with a query (`?`);
 * - memory authenticates the caller (`authenticate` answers synchronously) and the route's requirement,
 *   as registered in the route table, admits the actor (the route's own hook would decide the same);
 * - the path's answer function returns the answer's JSON text (it refuses anything unusual: a query it
 *   does not parse strictly, a caller it must refuse).
 * The answer carries the headers every answer carries (request id, nosniff, no-store) and is counted by the
 * observers (the HTTP metrics), as an onResponse hook counts Fastify's. When authentication has to go to
 * the database (a promise), the promise is left on the raw request for the route's hook to use: the
 * database is asked once. With request logging (`debug`) on there is no fast path: the log line is a hook.
 */
import type { FastifyRequest } from "fastify";
import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { authorize } from "../modules/authz/authz.rules.js";
import type { Actor } from "../modules/authz/authz.types.js";
import type { RouteEntry } from "./app.js";

/**
 * A fast path's answer to `GET <path>?<query>` by an authenticated, authorized `actor`: the 200 answer's JSON
 * text, or undefined (or a throw) to let Fastify answer the request as it would any other.
 */
export type FastAnswer = (query: string, actor: Actor) => string | undefined;

/** Told of each answer a fast path sent (what an onResponse hook is told of Fastify's). */
export type FastAnswerObserver = (route: RouteEntry, method: string, statusCode: number, seconds: number) => void;

const PENDING_ACTOR = Symbol("stint.pendingActor");
type RawWithPending = IncomingMessage & { [PENDING_ACTOR]?: Promise<Actor> };

/** The authentication a fast path started and handed over (a database read), if any. */
export function pendingActor(raw: IncomingMessage): Promise<Actor> | undefined {
  return (raw as RawWithPending)[PENDING_ACTOR];
}

export function createFastPaths(deps: {
  /** False: no fast path answers anything. */
  enabled: boolean;
  authenticate(request: FastifyRequest): Actor | Promise<Actor>;
  /** The app's routes: a fast path's requirement is its GET route's. */
  routeTable: readonly RouteEntry[];
  requestIdFor(given: string | string[] | undefined): string;
}) {
  const paths = new Map<string, { answer: FastAnswer; route: RouteEntry | null }>();
  const observers: FastAnswerObserver[] = [];

  function answer(request: IncomingMessage, response: ServerResponse): boolean {
    if (!deps.enabled || paths.size === 0 || request.method !== "GET") return false;
    const url = request.url!;
    const q = url.indexOf("?");
    if (q === -1) return false;
    const path = url.slice(0, q);
    const fast = paths.get(path);
    if (fast === undefined) return false;
    const started = performance.now();
    const route = (fast.route ??= deps.routeTable.find((r) => r.method === "GET" && r.url === path) ?? null);
    if (route === null) return false;
    let body: string | undefined;
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
      body = fast.answer(url.slice(q + 1), actor);
    } catch {
      return false;
    }
    if (body === undefined) return false;
    response.writeHead(200, [
      "x-request-id",
      deps.requestIdFor(request.headers["x-request-id"]),
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
    const seconds = (performance.now() - started) / 1000;
    for (const observer of observers) observer(route, "GET", 200, seconds);
    return true;
  }

  return {
    /** Answers `request` when a fast path can (true), else leaves it untouched for Fastify (false). */
    answer,
    add(path: string, fastAnswer: FastAnswer) {
      paths.set(path, { answer: fastAnswer, route: null });
    },
    observe(observer: FastAnswerObserver) {
      observers.push(observer);
    },
  };
}
