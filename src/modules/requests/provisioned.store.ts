/**
 * SQL of the provisioning worker's success (`lifecycle.ts` `provisioned`): the activation in one statement.
 */
import { sql, type Expression, type Kysely, type QueryCreator, type SqlBool } from "kysely";
import type { Database } from "../../db/index.js";
import type { Alongside } from "../outbox/index.js";
import { eligibleQuery, requestQuery, type RequestRow } from "./requests.store.js";

type Q = Kysely<Database>;

/** The access index's `act` message the statement sends: its channel and the sender's `at`. */
export interface ActNotification {
  channel: string;
  at: number;
}

/**
 * The request a grant was made for, both rows locked (`FOR NO KEY UPDATE`: the rows are changed, never their keys,
 * so an insert referencing them, the minted login's password in `grant_credentials`, is not held up; with the
 * activation written beside the target call and waiting for that insert, `FOR UPDATE` held the insert's key-share
 * lock until `OVERLAP_MS` gave up), with its requester's basis at `now`
 * (account active, eligible for the role) and, when both are `provisioning` and the basis holds, both made
 * active (the request's clock starts at `now`) and the index's `act` sent (`act`), all in one statement: one
 * round trip where the lock, the basis, the writes and the message were four. The message's payload is built
 * here as `actMessage` (request-context.ts) builds it, completed by the transaction id (`x`), as
 * `prepareAct` sends it (untagged: the index applies it here at commit through `sentAct` and reads its echo as
 * any other message); `parseMessage` reads it (requests.statements.test.ts holds that).
 * Undefined when the grant does not exist; `activated` false when nothing changed (`row` says why).
 *
 * A transaction that activates commits without waiting for the WAL flush (`synchronous_commit` off for it alone,
 * set by this statement; one flush, 1–6 ms on this host, off the dynamic login's path): a database crash right
 * after can only lose an activation whose grant is still `provisioning` and whose job (its done-mark is written
 * here) still `running`, which the job's retry activates again, with its event. Whatever hands something out on
 * the strength of it commits after it and waits for the flush, which covers it (WAL is flushed in order): the
 * credentials read's audit event before the password is returned, the sequencer chaining the activation's
 * event, a deactivation. Ending (the basis lost) keeps the synchronous commit.
 */
export async function activateProvisioned(
  db: Q,
  grantId: string,
  now: Date,
  act: ActNotification | null,
  /** The provisioning attempt's done-mark (outbox `HandlerContext.done`), carried and written only on activation. */
  doneMark?: (when: Expression<SqlBool>) => Alongside,
) {
  const nowMs = now.getTime();
  // A CTE that writes nothing when there is no mark to carry.
  const mark: Alongside =
    doneMark?.(sql<SqlBool>`exists (select 1 from granted)`) ??
    ((creator) =>
      creator
        .selectFrom("grants")
        .select("grants.id")
        .where(sql<SqlBool>`false`));
  const found = await db
    .with("locked", () =>
      requestQuery(db)
        .innerJoin("grants", "grants.request_id", "activation_requests.id")
        .select((eb) => [
          "grants.state as grant_state",
          "principals.status as requester_status",
          eb
            .exists(
              eligibleQuery(db, sql.ref<string>("activation_requests.requester_id"), now)
                .select("eligibilities.id")
                .where("eligibilities.role_id", "=", sql.ref<string>("activation_requests.role_id")),
            )
            .as("eligible"),
        ])
        .where("grants.id", "=", grantId)
        .modifyEnd(sql`for no key update of activation_requests, grants`),
    )
    .with("activated", (db) =>
      db
        .updateTable("activation_requests")
        .from("locked")
        .set({
          state: "active",
          activated_at: now,
          expires_at: sql<Date>`${now}::timestamptz + locked.duration_ms * interval '1 millisecond'`,
          updated_at: now,
        })
        .whereRef("activation_requests.id", "=", "locked.id")
        .where("activation_requests.state", "=", "provisioning")
        .where("locked.grant_state", "=", "provisioning")
        .where("locked.requester_status", "=", "active")
        .where("locked.eligible", "=", true)
        .returning("activation_requests.id"),
    )
    .with("granted", (db) =>
      db
        .updateTable("grants")
        .set({ state: "active", last_error: null, next_attempt_at: null, updated_at: now })
        .where("grants.id", "=", grantId)
        .where(sql<boolean>`exists (select 1 from activated)`)
        .returning("grants.id"),
    )
    // Sent only when the request became active (one row in `activated`), in the statement that made it so.
    .with("sent", (db) =>
      db
        .selectFrom("activated")
        .innerJoin("locked", "locked.id", "activated.id")
        .select([
          sql<string>`pg_current_xact_id()::text`.as("x"),
          sql`pg_notify(${act?.channel ?? ""}, left(json_build_object('t', 'act', 'id', locked.id,
            'pid', locked.requester_id, 'pn', locked.requester_name, 'rid', locked.role_id, 'rn', locked.role_name,
            'exp', ${nowMs}::bigint + locked.duration_ms, 'since', ${nowMs}::bigint, 'at', ${act?.at ?? 0}::bigint
            )::text, -1) || ',"x":' || pg_current_xact_id()::text || '}')`.as("n"),
        ])
        .where(sql<boolean>`${act !== null}`),
    )
    // The mark is typed for the plain schema; the CTEs above add nothing it uses (its condition is raw SQL).
    .with("completed", ((creator: QueryCreator<Database>) => mark(creator)) as never)
    .selectFrom("locked")
    .selectAll("locked")
    .select([
      sql<boolean>`exists (select 1 from granted)`.as("activated"),
      sql<boolean>`exists (select 1 from completed)`.as("completed"),
      sql<string | null>`(select x from sent)`.as("x"),
      // An activation commits without waiting for the WAL flush (synchronous_commit off for this transaction
      // alone): see above.
      sql<string | null>`case when exists (select 1 from granted)
        then set_config('synchronous_commit', 'off', true) end`.as("async_commit"),
    ])
    .executeTakeFirst();
  if (!found) return undefined;
  const { grant_state, requester_status, eligible, activated, completed, x, async_commit: _async, ...row } = found;
  return {
    row: row as RequestRow,
    grantState: grant_state,
    basis: { active: requester_status === "active", eligible: eligible === true },
    activated: activated === true,
    /** Whether the statement wrote the done-mark it carried. */
    completed: completed === true,
    /** The transaction id the `act` message carries (null when none was sent). */
    x: x === null ? null : Number(x),
  };
}
