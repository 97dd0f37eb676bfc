/**
 * Live watching and moderated sessions: the policy's `session.moderator` rule, the sessions a caller may
 * watch or moderate, and the WebSocket messages of `/v1/sessions/:id/live`. Shared by server and web.
 *
 * The socket: the client's first message is `auth` (the access token: never in the URL); the server then
 * sends `hello`, the session's recent lines, and every new line of its recording as it is written (asciicast
 * v2 event lines for SSH, query-log lines for PostgreSQL; typed input is never sent), `moderation` when a
 * moderator joins or leaves, and `ended` before it closes. A moderator may send `terminate`; any client may
 * send `auth` again with a fresh token for the same principal and mode (the right to watch lasts as long as
 * the latest token, and is checked again every few seconds); anything else the client sends closes the
 * socket (a watcher is read-only).
 */
import { z } from "zod";
import { isoTime, name, reason } from "./common.js";
import type { SessionKind } from "./recording.js";

/** `session: { moderator: { groups: [...] } }`: the session waits for a member of one of these groups. */
export const moderatorRule = z.strictObject({
  groups: z.array(name).min(1).max(20),
});
export type ModeratorRule = z.output<typeof moderatorRule>;

export const liveMode = z.enum(["watch", "moderate"]);
export type LiveMode = z.infer<typeof liveMode>;

/** Client → server, first message; again later with a refreshed token (a renewal). */
export const liveAuth = z.strictObject({
  type: z.literal("auth"),
  token: z.string().min(1).max(4096),
  mode: liveMode,
});
/** Client → server, moderators only. */
export const liveTerminate = z.strictObject({ type: z.literal("terminate"), reason: reason.optional() });

export const liveModeration = z.object({
  required: z.boolean(),
  /** True once a moderator joined (the session started); stays true. */
  admitted: z.boolean(),
  moderators: z.array(z.string()),
});
export type LiveModerationView = z.infer<typeof liveModeration>;

/** A live session the caller may watch (and, `mayModerate`, moderate), on this node or another. */
export const watchableSession = z.object({
  id: z.uuid(),
  /** A SessionKind: ssh, postgres… */
  kind: z.string(),
  user: z.string(),
  role: z.string(),
  target: z.string(),
  startedAt: isoTime,
  node: z.string(),
  mayModerate: z.boolean(),
  moderation: liveModeration.nullable(),
});
export type WatchableSession = z.infer<typeof watchableSession>;
export const watchableList = z.object({ items: z.array(watchableSession) });

/** WebSocket close codes (4000–4999 are the application's). */
export const LIVE_CLOSE = {
  /** The session ended (normal closure). */
  ended: 1000,
  /** The first message was not a valid `auth` in time, or the latest token expired or its account was disabled. */
  unauthenticated: 4401,
  /** Not allowed to watch or moderate this session (any more), or it does not exist (the same answer). */
  forbidden: 4403,
  /** The client sent something a watcher may not send (input, unknown messages). */
  readOnly: 4400,
  /** The Origin header is missing or not this server's. */
  badOrigin: 4003,
  /** The session is relayed by another node. */
  elsewhere: 4409,
  /** The watcher did not keep up: its unsent output passed the cap. */
  tooSlow: 4408,
} as const;

export type LiveServerMessage =
  | {
      type: "hello";
      session: { id: string; kind: SessionKind; user: string; role: string; target: string };
      mode: LiveMode;
      moderation: LiveModerationView | null;
    }
  | { type: "moderation"; moderation: LiveModerationView }
  | { type: "ended"; reason: string };
