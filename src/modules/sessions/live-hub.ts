/**
 * The live sessions of this node, as watchers see them: each session's recording lines fanned out to its
 * watchers as they are written, and its moderation (who moderates, whether it may start). In memory, per
 * node: a session is watched on the node that relays it (docs/sessions.md, "Live watching").
 *
 * Fan-out: a line becomes one Buffer, sent to every watcher as is (ws writes the same bytes behind each
 * frame header; nothing is copied per watcher). A watcher whose unsent bytes pass `maxBuffered` is closed
 * (LIVE_CLOSE.tooSlow) at once: the relay never waits for a watcher, and a slow one costs at most its cap
 * in memory. A joining watcher gets the session's latest lines (at most `recentBytes`) in one frame.
 */
import { LIVE_CLOSE, type LiveMode, type LiveModerationView, type LiveServerMessage } from "../../contract/live.js";
import type { SessionKind } from "../../contract/recording.js";
import { shownToWatchers, type LiveSessionFacts, type LiveViewer } from "./live.rules.js";
import type { SessionEnd } from "./sessions.types.js";

/** What the hub needs of a WebSocket (ws's WebSocket has it). */
export interface LiveSocket {
  send(data: Buffer | string, options?: { binary?: boolean }): void;
  /** Bytes queued and not yet written to the network. */
  readonly bufferedAmount: number;
  close(code?: number, reason?: string): void;
}

export interface LiveSessionInfo {
  id: string;
  kind: SessionKind;
  user: string;
  role: string;
  target: string;
  startedAt: Date;
  facts: LiveSessionFacts;
  /** Ends the session now on this node (the sessions service's abort of its signal). */
  abort(end: SessionEnd): void;
}

/** The moderation a proxy waits on before it opens anything upstream (absent: the policy names no moderator). */
export interface ModerationGate {
  readonly required: boolean;
  /** True once a moderator joined (stays true). */
  admitted(): boolean;
  /** Resolves with the first moderator's name once one joined (at once if one has). */
  whenAdmitted(): Promise<string>;
}

export interface LiveFeed {
  /** One recording line (the recorder's tap). Never throws. */
  push(line: string): void;
  moderation: ModerationGate | undefined;
  /** The session ended: every watcher gets `ended` and is closed. */
  close(reason: string): void;
}

export interface Watcher {
  viewer: LiveViewer;
  mode: LiveMode;
  socket: LiveSocket;
}

/** Told when a watcher leaves (closed its socket, was too slow, or the session ended). */
export type LeaveListener = (
  session: LiveSessionInfo,
  watcher: Watcher,
  how: { tooSlow: boolean; sessionEnded: boolean; lastModerator: boolean },
) => void;

export interface LiveHubOptions {
  /** Unsent bytes a watcher may hold before it is closed as too slow (default 1 MiB). */
  maxBuffered?: number;
  /** Latest lines kept per session for a joining watcher (default 64 KiB). */
  recentBytes?: number;
}

interface Feed {
  info: LiveSessionInfo;
  header: string | null;
  /** The latest lines: `recent` from index `recentStart` (dropped lines are skipped, compacted now and then). */
  recent: string[];
  recentStart: number;
  recentLength: number;
  watchers: Set<Watcher>;
  moderation: {
    required: boolean;
    admitted: boolean;
    moderators: Set<Watcher>;
    waiters: ((name: string) => void)[];
    firstModerator: string | null;
  };
  ended: boolean;
}

export type LiveHub = ReturnType<typeof createLiveHub>;

export function createLiveHub(options: LiveHubOptions = {}) {
  const maxBuffered = options.maxBuffered ?? 1024 * 1024;
  const recentBytes = options.recentBytes ?? 64 * 1024;
  const feeds = new Map<string, Feed>();
  let onLeave: LeaveListener = () => undefined;

  const control = (message: LiveServerMessage) => JSON.stringify(message);

  function moderationView(feed: Feed): LiveModerationView | null {
    if (!feed.moderation.required) return null;
    return {
      required: true,
      admitted: feed.moderation.admitted,
      moderators: [...new Set([...feed.moderation.moderators].map((w) => w.viewer.name))],
    };
  }

  function broadcastModeration(feed: Feed) {
    const view = moderationView(feed);
    if (!view) return;
    const frame = Buffer.from(control({ type: "moderation", moderation: view }));
    for (const watcher of [...feed.watchers]) deliver(feed, watcher, frame);
  }

  /** Sends one frame, or closes a watcher that is too far behind. */
  function deliver(feed: Feed, watcher: Watcher, frame: Buffer) {
    if (watcher.socket.bufferedAmount + frame.length > maxBuffered) {
      leave(feed, watcher, { tooSlow: true, sessionEnded: false });
      safely(() => watcher.socket.close(LIVE_CLOSE.tooSlow, "You fell too far behind the session; reopen it."));
      return;
    }
    safely(() => watcher.socket.send(frame, { binary: false }));
  }

  function leave(feed: Feed, watcher: Watcher, how: { tooSlow: boolean; sessionEnded: boolean }) {
    if (!feed.watchers.delete(watcher)) return;
    const wasModerator = feed.moderation.moderators.delete(watcher);
    const lastModerator =
      wasModerator && feed.moderation.admitted && feed.moderation.moderators.size === 0 && !how.sessionEnded;
    if (wasModerator && !how.sessionEnded) broadcastModeration(feed);
    try {
      onLeave(feed.info, watcher, { ...how, lastModerator });
    } catch {
      // A listener's failure never disturbs the session.
    }
  }

  return {
    /** Who is told when a watcher leaves (the live service: audit, and the end after the last moderator). */
    setLeaveListener(listener: LeaveListener) {
      onLeave = listener;
    },

    /** A session opened on this node: its feed (the recorder's tap) and its moderation gate. */
    open(info: LiveSessionInfo): LiveFeed {
      const feed: Feed = {
        info,
        header: null,
        recent: [],
        recentStart: 0,
        recentLength: 0,
        watchers: new Set(),
        moderation: {
          required: info.facts.moderator !== null,
          admitted: false,
          moderators: new Set(),
          waiters: [],
          firstModerator: null,
        },
        ended: false,
      };
      feeds.set(info.id, feed);
      const moderation: ModerationGate | undefined = feed.moderation.required
        ? {
            required: true,
            admitted: () => feed.moderation.admitted,
            whenAdmitted: () =>
              feed.moderation.admitted
                ? Promise.resolve(feed.moderation.firstModerator ?? "")
                : new Promise<string>((resolve) => feed.moderation.waiters.push(resolve)),
          }
        : undefined;
      return {
        moderation,
        push(line) {
          if (feed.ended) return;
          if (feed.header === null && line.charCodeAt(0) === 0x7b /* { */) {
            // The recording's first line (asciicast or query-log header): every joining watcher needs it.
            feed.header = line;
          } else if (shownToWatchers(line)) {
            feed.recent.push(line);
            feed.recentLength += line.length;
            // Dropping from the front by index (Array#shift copies the whole array each time).
            while (feed.recentLength > recentBytes && feed.recent.length - feed.recentStart > 1)
              feed.recentLength -= feed.recent[feed.recentStart++]!.length;
            if (feed.recentStart >= 1024 && feed.recentStart * 2 >= feed.recent.length) {
              feed.recent = feed.recent.slice(feed.recentStart);
              feed.recentStart = 0;
            }
          } else {
            return;
          }
          if (feed.watchers.size === 0) return;
          const frame = Buffer.from(line);
          for (const watcher of [...feed.watchers]) deliver(feed, watcher, frame);
        },
        close(reason) {
          if (feed.ended) return;
          feed.ended = true;
          feeds.delete(info.id);
          const frame = control({ type: "ended", reason });
          for (const watcher of [...feed.watchers]) {
            leave(feed, watcher, { tooSlow: false, sessionEnded: true });
            safely(() => watcher.socket.send(frame));
            safely(() => watcher.socket.close(LIVE_CLOSE.ended, "The session ended."));
          }
        },
      };
    },

    /** The facts to authorize a viewer against, or undefined when the session is not live on this node. */
    session(id: string): LiveSessionInfo | undefined {
      return feeds.get(id)?.info;
    },

    moderation(id: string): LiveModerationView | null | undefined {
      const feed = feeds.get(id);
      return feed ? moderationView(feed) : undefined;
    },

    /**
     * Adds an authorized watcher (or moderator): `hello`, the header and the latest lines, then every new
     * line. A moderator's joining admits a waiting session. Returns its leave function (idempotent).
     */
    attach(id: string, watcher: Watcher): { leave(): void; firstModerator: boolean } | undefined {
      const feed = feeds.get(id);
      if (!feed || feed.ended) return undefined;
      const { info } = feed;
      feed.watchers.add(watcher);
      let firstModerator = false;
      if (watcher.mode === "moderate") {
        feed.moderation.moderators.add(watcher);
        if (feed.moderation.required && !feed.moderation.admitted) {
          feed.moderation.admitted = true;
          feed.moderation.firstModerator = watcher.viewer.name;
          firstModerator = true;
          for (const resolve of feed.moderation.waiters.splice(0)) resolve(watcher.viewer.name);
        }
      }
      const hello = control({
        type: "hello",
        session: { id: info.id, kind: info.kind, user: info.user, role: info.role, target: info.target },
        mode: watcher.mode,
        moderation: moderationView(feed),
      });
      safely(() => watcher.socket.send(hello));
      const backlog = (feed.header ?? "") + feed.recent.slice(feed.recentStart).join("");
      if (backlog.length > 0) deliver(feed, watcher, Buffer.from(backlog));
      if (watcher.mode === "moderate") broadcastModeration(feed);
      return {
        firstModerator,
        leave: () => leave(feed, watcher, { tooSlow: false, sessionEnded: false }),
      };
    },

    /** Live sessions on this node (for the watchable list). */
    sessions(): LiveSessionInfo[] {
      return [...feeds.values()].map((feed) => feed.info);
    },

    watchers(id: string): number {
      return feeds.get(id)?.watchers.size ?? 0;
    },
  };
}

function safely(work: () => unknown): void {
  try {
    work();
  } catch {
    // A socket already closed: nothing to do.
  }
}
