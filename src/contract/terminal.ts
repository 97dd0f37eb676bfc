/**
 * The browser terminal: the WebSocket messages of `GET /v1/ssh/terminals`. Shared by server and web.
 *
 * The socket: the client's first message is `auth` (the access token: never in the URL) with the SSH role
 * to open and the terminal's size; the server opens an SSH session through the SSH proxy (the same
 * certificate check, gate, recording and kill as `ssh`) and sends `ready`. Then the client sends `input`
 * (what is typed or pasted) and `resize`; the server sends the terminal's output as binary frames, and
 * `ended` (or `error`) before it closes. Anything else the client sends closes the socket.
 */
import { z } from "zod";
import { name } from "./common.js";

/** Columns and rows a terminal may have (a 4K screen at a tiny font stays well inside). */
export const TERMINAL_MAX_COLS = 1000;
export const TERMINAL_MAX_ROWS = 500;
/** The largest message a client may send (a paste is split into messages of at most this size). */
export const TERMINAL_MAX_MESSAGE_BYTES = 64 * 1024;
/** What a paste is split into by the page: characters per `input` message, well inside the limit in UTF-8. */
export const TERMINAL_INPUT_CHUNK = 16 * 1024;

const cols = z.number().int().min(1).max(TERMINAL_MAX_COLS);
const rows = z.number().int().min(1).max(TERMINAL_MAX_ROWS);

/** Client → server, first message. */
export const terminalAuth = z.strictObject({
  type: z.literal("auth"),
  token: z.string().min(1).max(4096),
  /** An SSH host role the caller has an active activation of. */
  role: name,
  cols,
  rows,
});
export type TerminalAuth = z.infer<typeof terminalAuth>;

/** Client → server, after `ready`. */
export const terminalClientMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("input"), data: z.string().min(1).max(TERMINAL_INPUT_CHUNK) }),
  z.strictObject({ type: z.literal("resize"), cols, rows }),
]);
export type TerminalClientMessage = z.infer<typeof terminalClientMessage>;

/** Server → client (text frames; the terminal's output comes as binary frames). */
export type TerminalServerMessage =
  | { type: "ready"; role: string; target: string; login: string }
  | { type: "ended"; message: string; exitCode?: number }
  | { type: "error"; error: { code: string; message: string } };

/** WebSocket close codes (4000–4999 are the application's). */
export const TERMINAL_CLOSE = {
  /** The shell exited or the session was ended (the `ended` message says how). */
  ended: 1000,
  /** A message over TERMINAL_MAX_MESSAGE_BYTES. */
  tooLarge: 1009,
  /** The Origin header is missing or not this server's. */
  badOrigin: 4003,
  /** A message that is not one of the protocol's, or a bad size. */
  badMessage: 4400,
  /** The first message was not a valid `auth` in time, or the token is not valid. */
  unauthenticated: 4401,
  /** No active activation of that role on an SSH host, or the proxy refused the session. */
  forbidden: 4403,
  /** No input for the idle time (the session is ended). */
  idle: 4408,
  /** Too many messages, or too many terminals open for this user. */
  rateLimited: 4429,
  /** This node runs no SSH proxy, or the target cannot be reached. */
  unavailable: 4503,
} as const;
