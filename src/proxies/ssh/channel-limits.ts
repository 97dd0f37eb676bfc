/**
 * What one client connection may hold open at once through the SSH proxy, and what its requests may make
 * the proxy keep. Every session channel, forwarded TCP connection and remote-forward listener costs the
 * proxy buffers (a relayed channel up to its window per direction) and the target a process, a socket or a
 * listening port: uncapped, one signed-in connection opened thousands. Past a cap the open is refused
 * (administratively prohibited, with a sentence) and the connection goes on; the first refusal of each
 * kind is recorded and audited once per connection, the rest only counted (a loop must not flood the log).
 */
import type { Connection, Session } from "ssh2";
import type { SessionRecorder } from "../../modules/sessions/sessions.types.js";
import { safely } from "./session-end.js";

/** Session channels open at once on one connection (OpenSSH's MaxSessions). */
export const DEFAULT_MAX_SESSIONS = 10;
/** Forwarded TCP connections open at once on one connection, and remote-forward listeners apart. */
export const DEFAULT_MAX_FORWARDS = 32;
/** Environment variables one session channel may set (OpenSSH's sshd ignores any past 128 too). */
export const MAX_ENV_PER_CHANNEL = 128;

export interface ChannelLimits {
  /** STINT_SSH_PROXY_MAX_SESSIONS. */
  sessions: number;
  /** STINT_SSH_PROXY_MAX_FORWARDS. */
  forwards: number;
}

/** `direct-tcpip` (ssh -L, -W, -D) and `forwarded-tcpip` (a connection to an ssh -R port) share one count. */
export type ChannelKind = "session" | "direct-tcpip" | "forwarded-tcpip" | "tcpip-forward";

export interface ChannelBudget {
  /** One more of `kind` opens: its release (idempotent; call once it closed), or null past the cap. */
  take(kind: ChannelKind): (() => void) | null;
  /** The sentence a refused open of `kind` gets. */
  refusal(kind: ChannelKind): string;
  /** Opens refused so far. */
  refused(): number;
}

const POOL: Record<ChannelKind, "sessions" | "forwards" | "listeners"> = {
  session: "sessions",
  "direct-tcpip": "forwards",
  "forwarded-tcpip": "forwards",
  "tcpip-forward": "listeners",
};

export function createChannelBudget(
  limits: ChannelLimits,
  /** The first refusal of each pool on this connection: record and audit it. */
  onFirstRefusal: (kind: ChannelKind, limit: number, sentence: string) => void,
): ChannelBudget {
  const open = { sessions: 0, forwards: 0, listeners: 0 };
  const cap = { sessions: limits.sessions, forwards: limits.forwards, listeners: limits.forwards };
  const reported = new Set<string>();
  let refused = 0;
  const refusal = (kind: ChannelKind): string => {
    const pool = POOL[kind];
    const what =
      pool === "sessions"
        ? `${cap.sessions} session channels (STINT_SSH_PROXY_MAX_SESSIONS)`
        : pool === "forwards"
          ? `${cap.forwards} forwarded connections (STINT_SSH_PROXY_MAX_FORWARDS)`
          : `${cap.listeners} remote forwards (STINT_SSH_PROXY_MAX_FORWARDS)`;
    return `Stint: at most ${what} may be open at once on one connection`;
  };
  return {
    refusal,
    refused: () => refused,
    take(kind) {
      const pool = POOL[kind];
      if (open[pool] >= cap[pool]) {
        refused += 1;
        if (!reported.has(pool)) {
          reported.add(pool);
          onFirstRefusal(kind, cap[pool], refusal(kind));
        }
        return null;
      }
      open[pool] += 1;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        open[pool] -= 1;
      };
    },
  };
}

/**
 * A session channel the client closed before any shell, exec or subsystem started: ssh2 neither answers
 * its CHANNEL_CLOSE nor forgets it (it waits for a channel that never came), so a client opening and
 * closing such channels in a loop grew the proxy's channel table without end. The close is answered and
 * the entry freed as ssh2 does for a started channel; if ssh2's internals ever change shape, nothing is done.
 */
export function closeUnstarted(client: Connection, session: Session): void {
  const internals = client as unknown as {
    _chanMgr?: { remove?(id: number): void };
    _protocol?: { channelClose?(id: number): void };
  };
  const info = (session as unknown as { _chanInfo?: { incoming?: { id?: number }; outgoing?: { id?: number } } })
    ._chanInfo;
  const local = info?.incoming?.id;
  const remote = info?.outgoing?.id;
  if (typeof local !== "number" || typeof remote !== "number") return;
  safely(() => internals._protocol?.channelClose?.(remote));
  safely(() => internals._chanMgr?.remove?.(local));
}

/**
 * After a client's request or channel open was written to the recording (an env, a window change, a
 * signal, a refused forward): while the recording's disk is behind, the client's connection is not read
 * until it drained. The streams hold themselves back (ssh-relay.ts); requests are not streams, and a
 * client sending them in a loop would otherwise queue recording lines in memory without bound.
 */
export function createConnectionHold(client: Connection): (recorder: SessionRecorder) => void {
  type Readable = { pause(): void; resume(): void; destroyed?: boolean };
  const found = (client as unknown as { _sock?: Partial<Readable> })._sock;
  // Without a socket of that shape (ssh2's internals changed) the streams' own backpressure is all there is.
  if (typeof found?.pause !== "function" || typeof found.resume !== "function") return () => undefined;
  const socket = found as Readable;
  let held = false;
  return (recorder) => {
    if (held || !recorder.backlogged || !recorder.onDrain) return;
    held = true;
    socket.pause();
    recorder.onDrain(() => {
      held = false;
      if (!socket.destroyed) socket.resume();
    });
  };
}
