/** SQL of the sessions module: SSH keys, database tokens, sessions. Takes a transaction or the db. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { SessionKind } from "./sessions.types.js";

type Q = Kysely<Database>;

export function findSshKey(db: Q, purpose: "user-ca" | "proxy-host") {
  return db.selectFrom("ssh_keys").selectAll().where("purpose", "=", purpose).executeTakeFirst();
}

/** Inserts unless another node did first; the stored pair is the one to use. */
export async function insertSshKey(
  db: Q,
  row: { purpose: "user-ca" | "proxy-host"; publicKey: string; sealedPrivateKey: string; now: Date },
) {
  await db
    .insertInto("ssh_keys")
    .values({
      purpose: row.purpose,
      public_key: row.publicKey,
      sealed_private_key: row.sealedPrivateKey,
      created_at: row.now,
    })
    .onConflict((oc) => oc.column("purpose").doNothing())
    .execute();
}

export async function insertSshCertificate(
  db: Q,
  row: {
    serial: string;
    principalId: string;
    requestId: string;
    targetId: string;
    principal: string;
    keyId: string;
    now: Date;
    validBefore: Date;
  },
) {
  await db
    .insertInto("ssh_certificates")
    .values({
      serial: row.serial,
      principal_id: row.principalId,
      request_id: row.requestId,
      target_id: row.targetId,
      principal: row.principal,
      key_id: row.keyId,
      issued_at: row.now,
      valid_before: row.validBefore,
    })
    .execute();
}

/** An issued certificate with the activation and target it is bound to. */
export function findSshCertificate(db: Q, serial: string) {
  return db
    .selectFrom("ssh_certificates as c")
    .innerJoin("targets", "targets.id", "c.target_id")
    .select([
      "c.serial",
      "c.principal_id",
      "c.request_id",
      "c.principal",
      "c.key_id",
      "c.valid_before",
      "targets.name as target_name",
    ])
    .where("c.serial", "=", serial)
    .executeTakeFirst();
}

/** Serials of certificates not yet expired whose activation is no longer active: the KRL's content. */
export async function revokedSshSerials(db: Q, now: Date): Promise<string[]> {
  const rows = await db
    .selectFrom("ssh_certificates as c")
    .innerJoin("activation_requests as r", "r.id", "c.request_id")
    .select("c.serial")
    .where("c.valid_before", ">", now)
    .where((eb) => eb.or([eb("r.state", "!=", "active"), eb("r.expires_at", "<=", now)]))
    .execute();
  return rows.map((r) => r.serial);
}

/** An activation's state and current expiry (an extension moves it). */
export function activationExpiry(db: Q, requestId: string) {
  return db
    .selectFrom("activation_requests")
    .select(["state", "expires_at"])
    .where("id", "=", requestId)
    .executeTakeFirst();
}

/** The active activations of a principal whose role's target is reachable through a proxy. */
export function activeActivations(db: Q, principalId: string, now: Date) {
  return db
    .selectFrom("activation_requests as r")
    .innerJoin("roles", "roles.id", "r.role_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .innerJoin("policies", "policies.id", "roles.policy_id")
    .leftJoin("grants", "grants.request_id", "r.id")
    .select([
      "r.id as request_id",
      "r.expires_at",
      "roles.id as role_id",
      "roles.name as role_name",
      "roles.entitlement",
      "roles.risk",
      "policies.spec as policy_spec",
      "targets.id as target_id",
      "targets.name as target_name",
      "targets.kind as target_kind",
      "targets.address",
      "targets.config as target_config",
      "grants.id as grant_id",
      "grants.state as grant_state",
      "grants.login as grant_login",
    ])
    .where("r.requester_id", "=", principalId)
    .where("r.state", "=", "active")
    .where("r.expires_at", ">", now)
    .orderBy("r.expires_at", "desc")
    .execute();
}
export type ActivationRow = Awaited<ReturnType<typeof activeActivations>>[number];

export async function insertToken(
  db: Q,
  row: {
    id: string;
    tokenHash: string;
    principalId: string;
    requestId: string;
    roleId: string;
    once: boolean;
    now: Date;
    expiresAt: Date;
  },
) {
  await db
    .insertInto("database_tokens")
    .values({
      id: row.id,
      token_hash: row.tokenHash,
      principal_id: row.principalId,
      request_id: row.requestId,
      role_id: row.roleId,
      once: row.once,
      created_at: row.now,
      expires_at: row.expiresAt,
    })
    .execute();
}

export function findToken(db: Q, tokenHash: string) {
  return db
    .selectFrom("database_tokens as t")
    .innerJoin("principals as p", "p.id", "t.principal_id")
    .innerJoin("roles", "roles.id", "t.role_id")
    .select([
      "t.id",
      "t.once",
      "t.used_at",
      "t.expires_at",
      "t.request_id",
      "t.principal_id",
      "p.name as principal_name",
      "p.status as principal_status",
      "roles.name as role_name",
    ])
    .where("t.token_hash", "=", tokenHash)
    .executeTakeFirst();
}

/** Marks a single-use token used; false when it already was (another connection won). */
export async function useOnceToken(db: Q, id: string, now: Date): Promise<boolean> {
  const updated = await db
    .updateTable("database_tokens")
    .set({ used_at: now })
    .where("id", "=", id)
    .where("used_at", "is", null)
    .returning("id")
    .executeTakeFirst();
  return updated !== undefined;
}

export async function insertSession(
  db: Q,
  row: {
    id: string;
    kind: SessionKind;
    principalId: string;
    requestId: string;
    roleId: string;
    targetId: string;
    login: string;
    clientAddress: string | null;
    node: string;
    now: Date;
    recordingKey: string | null;
  },
) {
  await db
    .insertInto("sessions")
    .values({
      id: row.id,
      kind: row.kind,
      principal_id: row.principalId,
      request_id: row.requestId,
      role_id: row.roleId,
      target_id: row.targetId,
      login: row.login,
      client_address: row.clientAddress,
      node: row.node,
      started_at: row.now,
      seen_at: row.now,
      recording_key: row.recordingKey,
    })
    .execute();
}

/** Ends a live session; undefined when it had already ended. */
export function endSession(
  db: Q,
  id: string,
  fields: {
    now: Date;
    reason: string;
    detail: string | null;
    endedBy: string | null;
    recording: { sha256: string; bytes: number } | null;
    bytesUp: number;
    bytesDown: number;
  },
) {
  return db
    .updateTable("sessions")
    .set({
      ended_at: fields.now,
      end_reason: fields.reason,
      end_detail: fields.detail,
      ended_by: fields.endedBy,
      recording_sha256: fields.recording?.sha256 ?? null,
      recording_bytes: fields.recording?.bytes ?? null,
      bytes_up: fields.bytesUp,
      bytes_down: fields.bytesDown,
    })
    .where("id", "=", id)
    .where("ended_at", "is", null)
    .returning(["id", "recording_key"])
    .executeTakeFirst();
}

function sessionQuery(db: Q) {
  return db
    .selectFrom("sessions as s")
    .innerJoin("principals as p", "p.id", "s.principal_id")
    .innerJoin("roles", "roles.id", "s.role_id")
    .innerJoin("targets", "targets.id", "s.target_id")
    .select([
      "s.id",
      "s.kind",
      "s.request_id",
      "s.login",
      "s.client_address",
      "s.node",
      "s.started_at",
      "s.ended_at",
      "s.end_reason",
      "s.end_detail",
      "s.ended_by",
      "s.recording_key",
      "s.recording_sha256",
      "s.recording_bytes",
      "s.bytes_up",
      "s.bytes_down",
      "p.name as user_name",
      "roles.name as role_name",
      "targets.name as target_name",
    ]);
}
export type SessionRow = NonNullable<Awaited<ReturnType<typeof findSession>>>;

export function findSession(db: Q, id: string) {
  return sessionQuery(db).where("s.id", "=", id).executeTakeFirst();
}

export function listSessions(db: Q, options: { live: boolean; limit: number }) {
  let query = sessionQuery(db);
  if (options.live) query = query.where("s.ended_at", "is", null);
  return query.orderBy("s.started_at", "desc").limit(options.limit).execute();
}

/** After an administrator's kill: the recording and counters of a session that had already been marked ended. */
export async function completeEndedSession(
  db: Q,
  id: string,
  fields: { recording: { sha256: string; bytes: number } | null; bytesUp: number; bytesDown: number },
) {
  await db
    .updateTable("sessions")
    .set({
      recording_sha256: fields.recording?.sha256 ?? null,
      recording_bytes: fields.recording?.bytes ?? null,
      bytes_up: fields.bytesUp,
      bytes_down: fields.bytesDown,
    })
    .where("id", "=", id)
    .where("recording_sha256", "is", null)
    .execute();
}

/** An administrator's kill: marks the session ended now; the node relaying it closes it on the notification. */
export function markKilled(db: Q, id: string, fields: { now: Date; by: string; reason: string }) {
  return db
    .updateTable("sessions")
    .set({ ended_at: fields.now, end_reason: "killed", end_detail: fields.reason, ended_by: fields.by })
    .where("id", "=", id)
    .where("ended_at", "is", null)
    .returning("id")
    .executeTakeFirst();
}

/** Of the given activations, those no longer active (the sweep's safety net for a missed notification). */
export async function endedActivations(db: Q, requestIds: string[], now: Date): Promise<Set<string>> {
  if (requestIds.length === 0) return new Set();
  const rows = await db
    .selectFrom("activation_requests")
    .select("id")
    .where("id", "in", requestIds)
    .where((eb) => eb.or([eb("state", "!=", "active"), eb("expires_at", "<=", now)]))
    .execute();
  return new Set(rows.map((r) => r.id));
}

/** Of the given sessions, those an administrator ended while this node did not hear of it. */
export async function killedSessions(db: Q, ids: string[]): Promise<Map<string, string | null>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom("sessions")
    .select(["id", "end_detail"])
    .where("id", "in", ids)
    .where("ended_at", "is not", null)
    .execute();
  return new Map(rows.map((r) => [r.id, r.end_detail]));
}

/** The relaying node is alive: its live sessions were seen now. */
export async function touchSessions(db: Q, ids: string[], now: Date) {
  if (ids.length === 0) return;
  await db.updateTable("sessions").set({ seen_at: now }).where("id", "in", ids).where("ended_at", "is", null).execute();
}

/** Ends live sessions no node has touched since `before` (their node died); returns them for the audit log. */
export function reapLostSessions(db: Q, before: Date, now: Date) {
  return db
    .updateTable("sessions")
    .set((eb) => ({
      ended_at: now,
      end_reason: "node_lost",
      end_detail: sql<string>`'The Stint node relaying this session (' || ${eb.ref("node")} || ') stopped answering; the connection went with it.'`,
    }))
    .where("ended_at", "is", null)
    .where("seen_at", "<", before)
    .returning(["id", "node", "kind", "principal_id", "request_id"])
    .execute();
}

export async function notify(db: Q, channel: string, payload: unknown) {
  await sql`select pg_notify(${channel}, ${JSON.stringify(payload)})`.execute(db);
}

/** `notify` for many payloads, in this order, in one statement. */
export async function notifyMany(db: Q, channel: string, payloads: unknown[]) {
  await notifyTexts(
    db,
    channel,
    payloads.map((payload) => JSON.stringify(payload)),
  );
}

/** Payloads already written as text, in this order, in one statement. */
export async function notifyTexts(db: Q, channel: string, texts: string[]) {
  if (texts.length === 0) return;
  if (texts.length === 1) {
    await sql`select pg_notify(${channel}, ${texts[0]})`.execute(db);
    return;
  }
  await sql`select pg_notify(${channel}, m) from unnest(${texts}::text[]) with ordinality as t(m, n) order by n`.execute(
    db,
  );
}
