/** SQL of passkeys: credentials, challenges, step-up hand-offs. Each function takes a transaction (or the pool). */
import type { Insertable, Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { ChallengePurpose } from "./passkeys.rules.js";

type Q = Kysely<Database>;

export function listCredentials(db: Q, principalId: string) {
  return db
    .selectFrom("webauthn_credentials")
    .selectAll()
    .where("principal_id", "=", principalId)
    .orderBy("created_at")
    .execute();
}

export type CredentialRow = Awaited<ReturnType<typeof listCredentials>>[number];

export async function countCredentials(db: Q, principalId: string): Promise<number> {
  const row = await db
    .selectFrom("webauthn_credentials")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("principal_id", "=", principalId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The credential an assertion names, locked: its counter is compared and moved under the lock. */
export function lockCredential(db: Q, credentialId: string) {
  return db
    .selectFrom("webauthn_credentials")
    .selectAll()
    .where("credential_id", "=", credentialId)
    .forUpdate()
    .executeTakeFirst();
}

export function findCredential(db: Q, principalId: string, id: string) {
  return db
    .selectFrom("webauthn_credentials")
    .selectAll()
    .where("principal_id", "=", principalId)
    .where("id", "=", id)
    .forUpdate()
    .executeTakeFirst();
}

export async function credentialIdTaken(db: Q, credentialId: string): Promise<boolean> {
  const row = await db
    .selectFrom("webauthn_credentials")
    .select("id")
    .where("credential_id", "=", credentialId)
    .executeTakeFirst();
  return row !== undefined;
}

export async function insertCredential(db: Q, row: Insertable<Database["webauthn_credentials"]>) {
  await db.insertInto("webauthn_credentials").values(row).execute();
}

export async function touchCredential(db: Q, id: string, signCount: number, now: Date) {
  await db
    .updateTable("webauthn_credentials")
    .set({ sign_count: signCount, last_used_at: now })
    .where("id", "=", id)
    .execute();
}

export async function renameCredential(db: Q, id: string, name: string) {
  await db.updateTable("webauthn_credentials").set({ name }).where("id", "=", id).execute();
}

export async function deleteCredential(db: Q, id: string) {
  await db.deleteFrom("webauthn_credentials").where("id", "=", id).execute();
}

export async function hasConfirmedTotp(db: Q, principalId: string): Promise<boolean> {
  const row = await db
    .selectFrom("mfa_totp")
    .select("confirmed_at")
    .where("principal_id", "=", principalId)
    .executeTakeFirst();
  return !!row?.confirmed_at;
}

export async function insertChallenge(
  db: Q,
  row: {
    id: string;
    principal_id: string;
    purpose: ChallengePurpose;
    challenge: string;
    session_id: string | null;
    handoff_id: string | null;
    created_at: Date;
    expires_at: Date;
  },
) {
  // Expired challenges of anyone go with each new one: the table stays small without a sweeper.
  await db.deleteFrom("webauthn_challenges").where("expires_at", "<", row.created_at).execute();
  await db
    .insertInto("webauthn_challenges")
    .values({ ...row, used_at: null })
    .execute();
}

/** The challenge, locked: it is marked used in the same transaction, whatever the answer turns out to be. */
export function lockChallenge(db: Q, id: string) {
  return db.selectFrom("webauthn_challenges").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
}

export async function useChallenge(db: Q, id: string, now: Date) {
  await db.updateTable("webauthn_challenges").set({ used_at: now }).where("id", "=", id).execute();
}

export async function markSessionStepUp(db: Q, sessionId: string, at: Date) {
  await db.updateTable("refresh_sessions").set({ mfa_at: at, webauthn_at: at }).where("id", "=", sessionId).execute();
}

export function liveSession(db: Q, sessionId: string, principalId: string, now: Date) {
  return db
    .selectFrom("refresh_sessions")
    .select(["id", "source_ip", "user_agent"])
    .where("id", "=", sessionId)
    .where("principal_id", "=", principalId)
    .where("revoked_at", "is", null)
    .where("expires_at", ">", now)
    .executeTakeFirst();
}

export async function insertHandoff(db: Q, row: Insertable<Database["step_up_handoffs"]>) {
  await db.deleteFrom("step_up_handoffs").where("expires_at", "<", new Date(row.created_at)).execute();
  await db.insertInto("step_up_handoffs").values(row).execute();
}

export function findHandoff(db: Q, id: string, principalId: string, lock = false) {
  let query = db
    .selectFrom("step_up_handoffs")
    .selectAll()
    .where("id", "=", id)
    .where("principal_id", "=", principalId);
  if (lock) query = query.forUpdate();
  return query.executeTakeFirst();
}

export async function completeHandoff(db: Q, id: string, now: Date) {
  await db.updateTable("step_up_handoffs").set({ completed_at: now }).where("id", "=", id).execute();
}
