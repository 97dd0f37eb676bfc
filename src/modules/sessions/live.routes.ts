/**
 * Live sessions over a WebSocket (`GET /v1/sessions/:id/live`, protocol in src/contract/live.ts) and the
 * list of live sessions the caller may watch. The socket carries no credential in its URL: the first
 * message is `auth` with the access token; a foreign or missing Origin is refused before that.
 */
import type { FastifyRequest } from "fastify";
import type { App } from "../../http/app.js";
import { isStintError, StintError, toEnvelope } from "../../lib/errors.js";
import type { Actor } from "../authz/authz.types.js";
import { LIVE_CLOSE, liveAuth, liveTerminate, watchableList, type LiveMode } from "../../contract/live.js";
import { sessionParams } from "../../contract/sessions.js";
import type { LiveService } from "./live.service.js";
import type { LiveSocket } from "./live-hub.js";
import { originAllowed } from "../../http/origin.js";

/** What this route uses of ws's WebSocket (the socket @fastify/websocket hands over). */
interface ServerSocket extends LiveSocket {
  on(event: "message", listener: (data: Buffer, isBinary: boolean) => void): void;
  on(event: "close" | "error", listener: () => void): void;
  terminate(): void;
}

/** How long a socket may stay open without its `auth` message. */
const AUTH_DEADLINE_MS = 10_000;
/** Largest client message taken (an `auth` with a long token, a `terminate` with a reason). */
const MAX_CLIENT_MESSAGE = 8 * 1024;
/** How often a joined socket's right to the stream is checked again: its latest token, its account, the rules. */
export const LIVE_RECHECK_MS = 5_000;

export interface LiveRouteDeps {
  live: LiveService;
  /** Resolves `Bearer <token>` to its actor (the HTTP API's authentication). */
  authenticate(authorization: string): Actor | Promise<Actor>;
  /** Origins the web UI is served from besides the request's own (the configured public URL's). */
  origins: readonly string[];
  /** How often a joined socket's right is checked again (default LIVE_RECHECK_MS). */
  recheckMs?: number;
}

const closeCode: Record<string, number> = {
  UNAUTHENTICATED: LIVE_CLOSE.unauthenticated,
  TOKEN_EXPIRED: LIVE_CLOSE.unauthenticated,
  FORBIDDEN: LIVE_CLOSE.forbidden,
  SELF_MODERATION: LIVE_CLOSE.forbidden,
  SESSION_ELSEWHERE: LIVE_CLOSE.elsewhere,
};

export function registerLiveRoutes(app: App, deps: LiveRouteDeps) {
  const { live } = deps;
  const tags = ["sessions"];

  app.get(
    "/v1/sessions/live",
    { config: { requirement: "authenticated" }, schema: { tags, response: { 200: watchableList } } },
    async (req) => ({ items: await live.watchable(req.actor) }),
  );

  // Public at the HTTP level: the socket authenticates in its first message (never through the URL).
  app.route({
    method: "GET",
    url: "/v1/sessions/:id/live",
    config: { requirement: "public" },
    schema: { tags, params: sessionParams },
    // `handler` answers a plain HTTP request (no upgrade) with why; `wsHandler` takes the upgraded socket.
    // (Not `websocket: true`: with it the plugin would take `handler` for the socket.)
    handler: async () => {
      throw new StintError("VALIDATION_FAILED", "This endpoint is a WebSocket: open it with an Upgrade request.");
    },
    wsHandler: (socket: ServerSocket, req: FastifyRequest) => {
      const { id } = req.params as { id: string };
      serve(socket, req, id);
    },
  } as never);

  function fail(socket: ServerSocket, error: unknown) {
    const stint = isStintError(error) ? error : new StintError("INTERNAL");
    if (!isStintError(error)) app.log.error({ err: error }, "live session socket failed");
    try {
      socket.send(JSON.stringify({ type: "error", ...toEnvelope(stint) }));
      socket.close(closeCode[stint.code] ?? 1011, stint.code);
    } catch {
      socket.terminate();
    }
  }

  function serve(socket: ServerSocket, req: FastifyRequest, id: string) {
    if (!originAllowed(req, deps.origins)) {
      socket.close(LIVE_CLOSE.badOrigin, "origin not allowed");
      return;
    }
    let state: "auth" | "joining" | "joined" | "closed" = "auth";
    let joined: Awaited<ReturnType<LiveService["join"]>> | undefined;
    // The right to the stream lasts as long as the latest token the socket sent (the web UI sends each one it
    // refreshes to) and the rules that let its holder in: checked again every few seconds, closed when gone.
    let token = "";
    let principalId = "";
    let mode: LiveMode | undefined;
    let recheck: NodeJS.Timeout | undefined;
    const lapsed = (error: unknown) => {
      if (state === "closed") return;
      state = "closed";
      fail(socket, error);
    };
    const holder = async (mode: LiveMode) => {
      const actor = await deps.authenticate(`Bearer ${token}`);
      if (actor.kind !== "principal" || (principalId !== "" && actor.id !== principalId))
        throw new StintError("UNAUTHENTICATED");
      await deps.live.mayStay(actor, id, mode);
    };
    const deadline = setTimeout(() => {
      if (state === "auth") socket.close(LIVE_CLOSE.unauthenticated, "no auth message");
    }, AUTH_DEADLINE_MS);
    deadline.unref();
    socket.on("close", () => {
      state = "closed";
      clearTimeout(deadline);
      clearInterval(recheck);
      joined?.leave();
    });
    socket.on("error", () => undefined);
    socket.on("message", (data: Buffer, isBinary: boolean) => {
      if (state === "closed") return;
      if (isBinary || data.length > MAX_CLIENT_MESSAGE) return socket.close(LIVE_CLOSE.readOnly, "unexpected message");
      let message: unknown;
      try {
        message = JSON.parse(data.toString("utf8"));
      } catch {
        return socket.close(LIVE_CLOSE.readOnly, "unexpected message");
      }
      if (state === "auth") {
        const auth = liveAuth.safeParse(message);
        if (!auth.success) return socket.close(LIVE_CLOSE.unauthenticated, "the first message must be auth");
        mode = auth.data.mode;
        state = "joining";
        clearTimeout(deadline);
        token = auth.data.token;
        void (async () => {
          const actor = await deps.authenticate(`Bearer ${auth.data.token}`);
          if (actor.kind === "anonymous") throw new StintError("UNAUTHENTICATED");
          const result = await live.join(actor, req.callContext, id, auth.data.mode, socket);
          if ((state as string) === "closed") return result.leave();
          joined = result;
          state = "joined";
          principalId = actor.kind === "principal" ? actor.id : "";
          recheck = setInterval(() => void holder(auth.data.mode).catch(lapsed), deps.recheckMs ?? LIVE_RECHECK_MS);
          recheck.unref();
        })().catch(lapsed);
        return;
      }
      // A renewed token for the same principal and mode: the socket's right now lasts as long as it does
      // (checked at once when joined, else at the first recheck).
      const renewal = liveAuth.safeParse(message);
      if (renewal.success && renewal.data.mode === mode) {
        token = renewal.data.token;
        if (state === "joined") holder(mode).catch(lapsed);
        return;
      }
      const terminate = liveTerminate.safeParse(message);
      // A watcher is read-only: nothing but a moderator's terminate is taken.
      if (state !== "joined" || !terminate.success || joined?.watcher.mode !== "moderate")
        return socket.close(LIVE_CLOSE.readOnly, "watchers are read-only");
      joined.terminate(terminate.data.reason).catch((error: unknown) => fail(socket, error));
    });
  }
}
