/**
 * Ending sessions from elsewhere: the bus (kills and ended activations, NOTIFY committed with them) and the
 * sweep behind it (this node's sessions touched, lost nodes' sessions ended with their recordings kept).
 */
import * as sessionStore from "./sessions.store.js";
import { type SessionEnd } from "./sessions.types.js";
import { parseBus, type ActivationEnded } from "./sessions.bus.js";
import type { SessionsCore } from "./sessions.core.js";

export function createSweeper(core: SessionsCore) {
  const { deps, store, audit, clock, blobs, logger, live, BROKER, context, abort } = core;

  // ---- bus ----

  function onBus(payload: string) {
    const messages = parseBus(payload);
    if (messages.length === 0) return;
    const first = messages[0]!;
    if (first.type === "kill") {
      const entry = live.get(first.sessionId);
      if (entry)
        abort(entry, { reason: "killed", message: `${first.by} ended this session: ${first.reason}` }, first.at);
      return;
    }
    // Activations ended (one, or a batch of them): the live sessions are looked through once.
    const ended = new Map<string, ActivationEnded>();
    for (const message of messages) if (message.type === "activation") ended.set(message.requestId, message);
    for (const entry of [...live.values()]) {
      const message = ended.get(entry.requestId);
      if (!message) continue;
      const how =
        message.state === "expired"
          ? "expired"
          : `was ${message.state}${message.by && message.by !== "system" ? ` by ${message.by}` : ""}`;
      const end: SessionEnd = {
        reason: "activation_ended",
        message: `Your activation of ${message.role} ${how}${message.reason ? `: ${message.reason}` : ""}; this session is over.`,
      };
      abort(entry, end, message.at);
    }
  }

  /** How long a live session may go untouched before another node ends it as lost. */
  const lostAfterMs = Math.max(60_000, 6 * (deps.sweepMs ?? 5000));

  async function sweep() {
    const entries = [...live.values()];
    // This node's own sessions first, so that they are never taken for lost ones.
    await sessionStore.touchSessions(
      store.db,
      entries.map((e) => e.id),
      clock.now(),
    );
    await reapLost();
    if (entries.length === 0) return;
    const ended = await sessionStore.endedActivations(
      store.db,
      [...new Set(entries.map((e) => e.requestId))],
      clock.now(),
    );
    const killed = await sessionStore.killedSessions(
      store.db,
      entries.map((e) => e.id),
    );
    const now = Date.now();
    for (const entry of entries) {
      if (killed.has(entry.id))
        abort(
          entry,
          { reason: "killed", message: `An administrator ended this session: ${killed.get(entry.id) ?? ""}` },
          now,
        );
      else if (ended.has(entry.requestId))
        abort(entry, { reason: "activation_ended", message: "Your activation ended, so this session is over." }, now);
    }
  }

  /**
   * Ends the live sessions of nodes that stopped touching them. Each one's recording is kept: the blob
   * its node finished, or the `.partial` file it was writing (all but at most its last batch), made
   * readable under its key; its SHA-256 and size go on the row and into `session.ended`. A recording
   * this node's blob store does not hold is named in `session.ended` as not found, never dropped silently.
   */
  async function reapLost() {
    const now = clock.now();
    const before = new Date(now.getTime() - lostAfterMs);
    // Read first (most sweeps find nothing: no transaction), and keep the recordings outside the transaction
    // (hashing a long recording must not hold it open).
    const candidates = await store.db
      .selectFrom("sessions")
      .select(["id", "recording_key"])
      .where("ended_at", "is", null)
      .where("seen_at", "<", before)
      .execute();
    if (candidates.length === 0) return;
    type Kept = { key: string; sha256?: string; bytes?: number; partial?: boolean; found: boolean };
    const keep = async (id: string, key: string): Promise<Kept> => {
      const kept = await blobs.salvage(key).catch((error: unknown) => {
        logger.error({ err: error, session: id }, "the recording of a lost session could not be kept");
        return null;
      });
      return kept ? { ...kept, found: true } : { key, found: false };
    };
    const salvaged = new Map<string, Kept>();
    for (const c of candidates) if (c.recording_key) salvaged.set(c.id, await keep(c.id, c.recording_key));
    await store.transaction(async (tx) => {
      const lost = await sessionStore.reapLostSessions(tx, before, now);
      if (lost.length === 0) return;
      const stored = new Map(
        (
          await tx
            .selectFrom("sessions")
            .select(["id", "recording_key", "bytes_up", "bytes_down"])
            .where(
              "id",
              "in",
              lost.map((row) => row.id),
            )
            .execute()
        ).map((row) => [row.id, row]),
      );
      const events = [];
      for (const row of lost) {
        const own = stored.get(row.id);
        const key = own?.recording_key ?? null;
        // A session lost since the read above is kept here.
        const recording = key ? (salvaged.get(row.id) ?? (await keep(row.id, key))) : null;
        if (recording?.found)
          await sessionStore.completeEndedSession(tx, row.id, {
            recording: { sha256: recording.sha256!, bytes: recording.bytes! },
            bytesUp: Number(own!.bytes_up),
            bytesDown: Number(own!.bytes_down),
          });
        const sentence =
          recording === null
            ? ""
            : recording.found
              ? recording.partial
                ? " Its recording is kept as far as it reached the disk."
                : " Its recording is kept whole."
              : ` Its recording (${key}) is not in this node's blob store.`;
        events.push({
          action: "session.ended",
          outcome: "success" as const,
          subject: `session:${row.id}`,
          reason: `The Stint node relaying this session (${row.node}) stopped answering.${sentence}`,
          details: { kind: row.kind, endReason: "node_lost", node: row.node, request: row.request_id, recording },
        });
      }
      await audit.append(tx, BROKER, context(null), events);
    });
  }

  return { onBus, sweep };
}
