/** SQL of single sign-on (Kysely); every function takes the transaction or connection it runs on. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import "./sso.schema.js";

type Db = Kysely<Database>;

/** Drops a few attempts and handoffs past their expiry, so the tables stay the size of the sign-ins under way. */
export async function sweep(db: Db, now: Date): Promise<void> {
  await sql`delete from sso_attempts where ctid = any(array(
    select ctid from sso_attempts where expires_at < ${now} limit 100))`.execute(db);
  await sql`delete from sso_handoffs where ctid = any(array(
    select ctid from sso_handoffs where expires_at < ${now} limit 100))`.execute(db);
}

export async function insertAttempt(
  db: Db,
  row: {
    stateHash: string;
    provider: string;
    nonce: string;
    codeVerifier: string;
    clientChallenge: string;
    clientRedirect: string | null;
    now: Date;
    expiresAt: Date;
  },
): Promise<void> {
  await db
    .insertInto("sso_attempts")
    .values({
      state_hash: row.stateHash,
      provider: row.provider,
      nonce: row.nonce,
      code_verifier: row.codeVerifier,
      client_challenge: row.clientChallenge,
      client_redirect: row.clientRedirect,
      created_at: row.now,
      expires_at: row.expiresAt,
    })
    .execute();
}

/** Marks an attempt used and returns it; undefined when it is unknown, expired or was used before. */
export async function consumeAttempt(db: Db, stateHash: string, provider: string, now: Date) {
  return db
    .updateTable("sso_attempts")
    .set({ used_at: now })
    .where("state_hash", "=", stateHash)
    .where("provider", "=", provider)
    .where("used_at", "is", null)
    .where("expires_at", ">", now)
    .returning(["nonce", "code_verifier", "client_challenge", "client_redirect"])
    .executeTakeFirst();
}

/** An attempt as it is (used or not), to know where to send a browser whose callback is refused. */
export async function findAttempt(db: Db, stateHash: string) {
  return db
    .selectFrom("sso_attempts")
    .select(["client_redirect", "provider"])
    .where("state_hash", "=", stateHash)
    .executeTakeFirst();
}

export async function insertHandoff(
  db: Db,
  row: {
    codeHash: string;
    kind: "code" | "device";
    provider: string;
    principalId: string | null;
    clientChallenge: string | null;
    deviceCodeSealed: string | null;
    pollIntervalS: number | null;
    amr: string[] | null;
    mfaAt: Date | null;
    now: Date;
    expiresAt: Date;
  },
): Promise<void> {
  await db
    .insertInto("sso_handoffs")
    .values({
      code_hash: row.codeHash,
      kind: row.kind,
      provider: row.provider,
      principal_id: row.principalId,
      client_challenge: row.clientChallenge,
      device_code_sealed: row.deviceCodeSealed,
      poll_interval_s: row.pollIntervalS,
      amr: row.amr,
      mfa_at: row.mfaAt,
      created_at: row.now,
      expires_at: row.expiresAt,
    })
    .execute();
}

/** A live (unused, unexpired) handoff of this kind, locked for the caller's transaction. */
export async function lockHandoff(db: Db, codeHash: string, kind: "code" | "device", now: Date) {
  return db
    .selectFrom("sso_handoffs")
    .selectAll()
    .where("code_hash", "=", codeHash)
    .where("kind", "=", kind)
    .where("used_at", "is", null)
    .where("expires_at", ">", now)
    .forUpdate()
    .executeTakeFirst();
}

export async function useHandoff(db: Db, codeHash: string, now: Date): Promise<void> {
  await db.updateTable("sso_handoffs").set({ used_at: now }).where("code_hash", "=", codeHash).execute();
}

/**
 * Claims a device grant's turn to ask the provider: true (and its poll time set) when it was never polled or
 * its last poll is at least its interval ago; false when polled too soon (or not live).
 */
export async function claimPoll(db: Db, codeHash: string, now: Date): Promise<boolean> {
  const claimed = await db
    .updateTable("sso_handoffs")
    .set({ polled_at: now })
    .where("code_hash", "=", codeHash)
    .where("kind", "=", "device")
    .where("used_at", "is", null)
    .where(({ or, eb }) =>
      or([
        eb("polled_at", "is", null),
        eb(sql<Date>`polled_at + coalesce(poll_interval_s, 5) * interval '1 second'`, "<=", now),
      ]),
    )
    .returning("code_hash")
    .executeTakeFirst();
  return claimed !== undefined;
}

export async function setPollInterval(db: Db, codeHash: string, seconds: number): Promise<void> {
  await db.updateTable("sso_handoffs").set({ poll_interval_s: seconds }).where("code_hash", "=", codeHash).execute();
}

export async function lockLink(db: Db, issuer: string, subject: string) {
  return db
    .selectFrom("oidc_identities")
    .selectAll()
    .where("issuer", "=", issuer)
    .where("subject", "=", subject)
    .forUpdate()
    .executeTakeFirst();
}

export async function insertLink(
  db: Db,
  row: { issuer: string; subject: string; provider: string; principalId: string; username: string; now: Date },
): Promise<void> {
  await db
    .insertInto("oidc_identities")
    .values({
      issuer: row.issuer,
      subject: row.subject,
      provider: row.provider,
      principal_id: row.principalId,
      username: row.username,
      created_at: row.now,
      last_sign_in_at: row.now,
    })
    .execute();
}

/** The link's last sign-in, and the usernameClaim value it brought (SCIM's userName is matched to it). */
export async function touchLink(db: Db, issuer: string, subject: string, username: string, now: Date): Promise<void> {
  await db
    .updateTable("oidc_identities")
    .set({ last_sign_in_at: now, username })
    .where("issuer", "=", issuer)
    .where("subject", "=", subject)
    .execute();
}

/** The issuers these principals are linked through (a principal without a link adds nothing). */
export async function issuersOf(db: Db, principalIds: string[]): Promise<string[]> {
  if (principalIds.length === 0) return [];
  const rows = await db
    .selectFrom("oidc_identities")
    .select("issuer")
    .distinct()
    .where("principal_id", "in", principalIds)
    .execute();
  return rows.map((r) => r.issuer);
}

/** How many of these principals are linked to a provider at all. */
export async function linkedCount(db: Db, principalIds: string[]): Promise<number> {
  if (principalIds.length === 0) return 0;
  const row = await db
    .selectFrom("oidc_identities")
    .select((eb) => eb.fn.count<string>("principal_id").distinct().as("n"))
    .where("principal_id", "in", principalIds)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * The id of the principal a link of `issuer` names, by its subject or by the username it recorded (case aside).
 * Null when there is none, or when that principal is linked through another issuer too (never another issuer's
 * account). SCIM adopts an account single sign-on created through this (`ssoLinks` in server wiring).
 */
export async function principalLinkedAt(
  db: Db,
  issuer: string,
  match: { subject: string } | { username: string },
): Promise<string | null> {
  let query = db.selectFrom("oidc_identities").select("principal_id").where("issuer", "=", issuer);
  query =
    "subject" in match
      ? query.where("subject", "=", match.subject)
      : query.where((eb) => eb(eb.fn("lower", ["username"]), "=", match.username.toLowerCase()));
  const links = await query.execute();
  if (links.length !== 1) return null;
  const principalId = links[0]!.principal_id;
  const issuers = await issuersOf(db, [principalId]);
  return issuers.length === 1 ? principalId : null;
}

/** Whether any single sign-on link names this principal. */
export async function hasLink(db: Db, principalId: string): Promise<boolean> {
  const row = await db
    .selectFrom("oidc_identities")
    .select("principal_id")
    .where("principal_id", "=", principalId)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}
