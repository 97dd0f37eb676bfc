/**
 * Test support for reading back what the SSH proxy recorded (and the database proxies: `newestEnded`,
 * `servedRecording`): a user's newest ended session, the recording its `session.ended` audit event names
 * (checked against its SHA-256, and served by the API), SFTP packets built by hand, and a robust wait.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseRecording, type ParsedRecording } from "../contract/recording.js";
import type { SshSessionsHarness } from "./ssh-sessions.js";
import { untilValue } from "./until.js";

export type SshRecording = ParsedRecording & { kind: "ssh" };

/** Polls `probe` until it answers something truthy (every 50 ms), or throws after `timeoutMs` (30 s). */
export const until = untilValue;

export interface EndedSession {
  session: { id: string; user: string; live: boolean; endReason: string | null };
  /** The `session.ended` event's reason sentence, if any. */
  reason: string | null;
  recording: { key: string; sha256: string; bytes: number; partial?: true } | null;
}

/** The user's newest session once it ended, with what its `session.ended` audit event says. */
export async function newestEnded(h: Pick<SshSessionsHarness, "admin">, user: string): Promise<EndedSession> {
  const session = await until("the session to end", async () => {
    const items = (await h.admin("GET", "/v1/sessions?limit=100")).body.items as EndedSession["session"][];
    const [latest] = items.filter((s) => s.user === user);
    return latest && !latest.live ? latest : undefined;
  });
  const ended = await until("the session.ended event", async () => {
    const res = await h.admin("GET", "/v1/audit/events?limit=100&action=session.ended&order=desc");
    const items = res.body.items as { subject: string | null; reason?: string; details: Record<string, unknown> }[];
    return items.find((e) => e.subject === `session:${session.id}`);
  });
  return {
    session,
    reason: ended.reason ?? null,
    recording: (ended.details.recording as EndedSession["recording"]) ?? null,
  };
}

/**
 * The recording an auditor replays, as the API serves it (`stint sessions play`, the web player): its file
 * hashing to what the audit log holds, its text and what a player reads of it.
 */
export async function servedRecording(
  h: Pick<SshSessionsHarness, "server">,
  ended: EndedSession,
): Promise<{ text: string; recording: ParsedRecording }> {
  const recorded = ended.recording;
  if (!recorded) throw new Error(`session ${ended.session.id} ended without a recording`);
  const bytes = readFileSync(path.join(h.server.config.blobDir, recorded.key));
  if (createHash("sha256").update(bytes).digest("hex") !== recorded.sha256)
    throw new Error("the recording's SHA-256 is not the audit log's");
  const served = await h.server.app.inject({
    method: "GET",
    url: `/v1/sessions/${ended.session.id}/recording`,
    headers: { authorization: h.server.adminAuth },
  });
  if (served.statusCode !== 200) throw new Error(`the recording is not served: ${served.statusCode}`);
  return { text: served.payload, recording: parseRecording(served.payload) };
}

/** An SSH session's recording as an auditor replays it (servedRecording). */
export async function replayed(h: Pick<SshSessionsHarness, "server">, ended: EndedSession): Promise<SshRecording> {
  const { recording } = await servedRecording(h, ended);
  if (recording.kind !== "ssh") throw new Error("not an SSH recording");
  return recording;
}

/** The audit events of one action about one session, newest first. */
export async function auditedFor(
  h: SshSessionsHarness,
  action: string,
  sessionId: string,
): Promise<{ outcome: string; reason?: string; details: Record<string, unknown> }[]> {
  const res = await h.admin("GET", `/v1/audit/events?limit=100&action=${action}&order=desc`);
  const items = res.body.items as { subject: string | null; outcome: string; details: Record<string, unknown> }[];
  return items.filter((e) => e.subject === `session:${sessionId}`);
}

/** One SFTP packet: a number is a uint32, a bigint a uint64, a string an SSH string. */
export function sftpPacket(type: number, ...fields: (number | string | bigint)[]): Buffer {
  const uint32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const parts = fields.map((field) => {
    if (typeof field === "number") return uint32(field);
    if (typeof field === "string") return Buffer.concat([uint32(Buffer.byteLength(field)), Buffer.from(field)]);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(field);
    return b;
  });
  const body = Buffer.concat([Buffer.from([type]), ...parts]);
  return Buffer.concat([uint32(body.length), body]);
}
