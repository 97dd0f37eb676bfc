/** Reading sessions and recordings (admins and auditors), and the kill switch. */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { StintError } from "../../lib/errors.js";
import { can } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import * as sessionStore from "./sessions.store.js";
import { type SessionKind } from "./sessions.types.js";
import { type BusMessage } from "./sessions.bus.js";
import { SESSIONS_CHANNEL, type SessionsCore } from "./sessions.core.js";

export interface SessionDto {
  id: string;
  kind: SessionKind;
  user: string;
  role: string;
  target: string;
  login: string;
  requestId: string;
  clientAddress: string | null;
  node: string;
  startedAt: string;
  endedAt: string | null;
  endReason: string | null;
  endDetail: string | null;
  endedBy: string | null;
  live: boolean;
  bytesUp: number;
  bytesDown: number;
  recording: { sha256: string | null; bytes: number | null; available: boolean } | null;
}

export function createSessionQueries(core: SessionsCore) {
  const { store, audit, clock, blobs } = core;

  /** The recording's SHA-256 as the session's `session.ended` event gives it (chained or still pending). */
  async function endedHash(id: string): Promise<string | undefined> {
    for (const table of ["audit_events", "audit_pending"] as const) {
      const rows = await store.db
        .selectFrom(table)
        .select("details")
        .where("action", "=", "session.ended")
        .where("subject", "=", `session:${id}`)
        .execute();
      for (const { details } of rows) {
        const recording = (details as { recording?: { sha256?: unknown } } | null)?.recording;
        if (typeof recording?.sha256 === "string") return recording.sha256;
      }
    }
    return undefined;
  }

  function toDto(row: sessionStore.SessionRow): SessionDto {
    return {
      id: row.id,
      kind: row.kind,
      user: row.user_name,
      role: row.role_name,
      target: row.target_name,
      login: row.login,
      requestId: row.request_id,
      clientAddress: row.client_address,
      node: row.node,
      startedAt: new Date(row.started_at).toISOString(),
      endedAt: row.ended_at ? new Date(row.ended_at).toISOString() : null,
      endReason: row.end_reason,
      endDetail: row.end_detail,
      endedBy: row.ended_by,
      live: row.ended_at === null,
      bytesUp: Number(row.bytes_up),
      bytesDown: Number(row.bytes_down),
      recording: row.recording_key
        ? {
            sha256: row.recording_sha256,
            bytes: row.recording_bytes === null ? null : Number(row.recording_bytes),
            available: row.recording_sha256 !== null,
          }
        : null,
    };
  }

  /** Recordings and session lists are for admins and auditors; to anyone else they do not exist. */
  function mayRead(actor: Actor): boolean {
    return can(actor, "sessions.read");
  }

  return {
    async list(actor: Actor, options: { live: boolean; limit?: number }): Promise<SessionDto[]> {
      if (!mayRead(actor)) throw new StintError("NOT_FOUND", "There are no sessions you may see.");
      const rows = await sessionStore.listSessions(store.db, {
        live: options.live,
        limit: Math.min(options.limit ?? 100, 1000),
      });
      return rows.map(toDto);
    },

    async show(actor: Actor, id: string): Promise<SessionDto> {
      const row = mayRead(actor) ? await sessionStore.findSession(store.db, id) : undefined;
      if (!row) throw new StintError("NOT_FOUND", `There is no session ${id} that you may see.`);
      return toDto(row);
    },

    /** A finished recording's bytes; audited, because replaying a session is itself sensitive. */
    async recording(actor: Actor, ctx: CallContext, id: string) {
      const row = mayRead(actor) ? await sessionStore.findSession(store.db, id) : undefined;
      if (!row) throw new StintError("NOT_FOUND", `There is no session ${id} that you may see.`);
      if (!row.recording_key || !row.recording_sha256)
        throw new StintError(
          "NOT_FOUND",
          row.ended_at
            ? `Session ${id} has no recording.`
            : `Session ${id} is still live; its recording is not finished.`,
        );
      const missing = () => {
        throw new StintError("NOT_FOUND", `The recording of session ${id} is missing from the blob store.`);
      };
      // Checked before it is served: the bytes must hash to what the session's `session.ended` event (the
      // tamper-evident log) holds, so a recording changed on disk, or a row changed with it, is never
      // replayed as the session's.
      const expected = (await endedHash(id)) ?? row.recording_sha256;
      const actual = await sha256Of(await blobs.read(row.recording_key).catch(missing));
      if (actual !== expected || row.recording_sha256 !== expected) {
        await audit.record(actor, ctx, {
          action: "session.recording_read",
          outcome: "failed",
          subject: `session:${id}`,
          reason: "the recording does not match the SHA-256 in the audit log",
          details: { expected, actual },
        });
        throw new StintError(
          "INTEGRITY_FAILED",
          `The recording of session ${id} does not match the SHA-256 the audit log holds for it (${expected}): it was changed after the session ended, so it is not served.`,
        );
      }
      const stream = await blobs.read(row.recording_key).catch(missing);
      await audit.record(actor, ctx, {
        action: "session.recording_read",
        outcome: "success",
        subject: `session:${id}`,
        details: { sha256: row.recording_sha256 },
      });
      return {
        kind: row.kind,
        sha256: row.recording_sha256,
        contentType: row.kind === "ssh" ? "application/x-asciicast" : "application/x-ndjson",
        stream,
      };
    },

    /** Ends a live session now, on whichever node relays it. */
    async kill(actor: Actor, ctx: CallContext, id: string, reason: string): Promise<SessionDto> {
      if (!can(actor, "sessions.kill")) throw new StintError("FORBIDDEN");
      const by = actor.kind === "principal" ? actor.name : "system";
      await store.transaction(async (tx) => {
        const row = await sessionStore.findSession(tx, id);
        if (!row) throw new StintError("NOT_FOUND", `There is no session ${id}.`);
        const marked = await sessionStore.markKilled(tx, id, { now: clock.now(), by, reason });
        if (!marked) throw new StintError("CONFLICT", `Session ${id} has already ended.`);
        await audit.append(tx, actor, ctx, {
          action: "session.killed",
          outcome: "success",
          subject: `session:${id}`,
          reason,
          details: { user: row.user_name, role: row.role_name, target: row.target_name },
        });
        const message: BusMessage = { type: "kill", sessionId: id, by, reason, at: Date.now() };
        await sessionStore.notify(tx, SESSIONS_CHANNEL, message);
      });
      return toDto((await sessionStore.findSession(store.db, id))!);
    },
  };
}

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
