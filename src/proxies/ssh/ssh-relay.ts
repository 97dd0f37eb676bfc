/** Relaying bytes between the client's and the target's channels: backpressure, window top-ups, batched writes. */
import type { Readable, Writable } from "node:stream";

/**
 * Data from `from` to `to`, each chunk seen by `observe` first, with backpressure; no end propagation.
 * Backpressure from the recording too: when its disk is behind (`recording.backlogged`), `from` waits
 * until the recording drained, and its sender's window is not topped up meanwhile (a stalled disk holds
 * the target back instead of filling the proxy's memory).
 * Once `relaying()` answers false (the session is ending and its recording closing) chunks are dropped:
 * nothing passes that the recording did not take.
 *
 * Flow control across the two hops (the cost of a jump host, not more):
 * - `from` stops (pause) only while `to` holds more than its high-water mark, and starts again on its
 *   `drain`; one listener each, not one per chunk.
 * - When `from` is an SSH channel, the window its sender may fill is topped up to RELAY_WINDOW as soon
 *   as a quarter of it has been passed on to a `to` that is not backed up (ssh2 alone keeps 2 MiB and
 *   grants more only once half is used): the sender never waits for the proxy while the proxy is busy
 *   or descheduled. While `to` is backed up nothing is granted, so what the proxy holds per direction
 *   stays bounded (RELAY_WINDOW + ssh2's 2 MiB readable and writable buffers).
 */
export function relayStream(
  from: Readable,
  to: Writable,
  observe: (data: Buffer) => void,
  relaying: () => boolean,
  /** What to pass on instead of the chunk (the file-transfer policy); a filter that fails passes nothing. */
  transform?: (data: Buffer) => Buffer[],
  /** The recording: while its disk is behind, `from` waits (nothing is dropped, nothing piles up in memory). */
  recording?: RecordingBacklog,
): void {
  const window = channelWindow(from, RELAY_WINDOW);
  const batch = writeBatch(to);
  /** `to` is backed up. */
  let waiting = false;
  /** The recording is backed up. */
  let held = false;
  const resume = () => {
    if (!waiting && !held) from.resume();
  };
  const release = () => {
    held = false;
    resume();
  };
  to.on("drain", () => {
    if (!waiting) return;
    waiting = false;
    resume();
  });
  from.on("data", (data: Buffer) => {
    if (!relaying()) return;
    try {
      observe(data);
    } catch {
      // Recording never stops the relay (the recorder itself reports its failures).
    }
    if (!to.writable) return;
    batch?.cork();
    let passed = true;
    if (transform) {
      let parts: Buffer[] = [];
      try {
        parts = transform(data);
      } catch {
        // Fail closed: nothing the filter could not judge goes on.
      }
      for (const part of parts) passed = to.write(part) && passed;
    } else {
      passed = to.write(data);
    }
    if (!held && recording?.backlogged && recording.onDrain) {
      held = true;
      from.pause();
      recording.onDrain(release);
    }
    if (!passed && !waiting) {
      waiting = true;
      from.pause();
    } else if (passed && !held) {
      window?.grant();
    }
  });
}

/** What relayStream reads of a session's recorder (SessionRecorder's backlogged and onDrain). */
export interface RecordingBacklog {
  readonly backlogged?: boolean;
  onDrain?(listener: () => void): void;
}

/**
 * Byte counts summed over one turn of the event loop and handed on once: `session.countBytes` updates a
 * labelled metric (~1% of a transfer's CPU when called per 32 KiB chunk, and one read carries two). The
 * sum goes out on process.nextTick, before any I/O or timer of a later turn, so before the session ends.
 */
export function countPerTick(count: (bytes: number) => void): (bytes: number) => void {
  let pending = 0;
  const flush = () => {
    const bytes = pending;
    pending = 0;
    count(bytes);
  };
  return (bytes) => {
    if (bytes <= 0) return;
    if (pending === 0) process.nextTick(flush);
    pending += bytes;
  };
}

/**
 * Packets written to one destination during one turn of the event loop leave in one socket write: the
 * destination connection's socket is corked at the first chunk and uncorked once the turn's work is done
 * (process.nextTick), so nothing is held past the current tick. One read from the source's socket
 * (up to 64 KiB) carries up to two 32 KiB packets: they now cost one write system call, not two.
 * With this batching the sockets run without Nagle's algorithm (setNoDelay), which would otherwise hold
 * the tail of a batch until the peer acknowledges the previous segment.
 */
export function writeBatch(to: Writable): { cork(): void } | undefined {
  const socket = (to as unknown as { _client?: { _sock?: Writable } })._client?._sock;
  if (!socket || typeof socket.cork !== "function" || typeof socket.uncork !== "function") return undefined;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  return {
    cork() {
      if (corked) return;
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    },
  };
}

/**
 * How much one relayed channel direction lets its sender send ahead. ssh2 keeps 2 MiB (topped up at
 * half); OpenSSH's session channels keep 2 MiB topped up every 96 KiB. 4 MiB topped up every 1 MiB keeps
 * at least 3 MiB open. ssh2 cannot take packets over 35,000 bytes, so the packet size stays 32 KiB (what
 * OpenSSH uses for sessions too).
 */
const RELAY_WINDOW = 4 * 1024 * 1024;

/** What relayStream uses of an ssh2 channel (checked at run time; a stream without them is relayed as is). */
interface ChannelInternals {
  incoming?: { window: number };
  outgoing?: { id: number; state: string };
  _client?: { _protocol?: { channelWindowAdjust?(id: number, amount: number): void } };
}

/**
 * Grants the sender of an ssh2 channel more window (SSH_MSG_CHANNEL_WINDOW_ADJUST, RFC 4254 §5.2) the way
 * ssh2 does itself (its count first, then the message), up to `size`, once a quarter is used. ssh2 only
 * adjusts while its count is at or below 1 MiB and never above 2 MiB, so the two never disagree on the
 * count: if ssh2's internals ever change shape, the channel keeps ssh2's own window.
 */
function channelWindow(stream: Readable, size: number): { grant(): void } | undefined {
  const channel = stream as unknown as ChannelInternals;
  const { incoming, outgoing } = channel;
  const protocol = channel._client?._protocol;
  if (
    typeof incoming?.window !== "number" ||
    typeof outgoing?.id !== "number" ||
    typeof protocol?.channelWindowAdjust !== "function"
  ) {
    return undefined;
  }
  return {
    grant() {
      const missing = size - incoming.window;
      if (missing < size / 4 || outgoing.state === "closed") return;
      incoming.window += missing;
      protocol.channelWindowAdjust!(outgoing.id, missing);
    },
  };
}
