/**
 * Read-only questions other modules ask about activations (access reviews' evidence), so that they do not read
 * the requests tables themselves.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

/** When any of these principals last activated the role, and how many activations began since `since`. */
export async function activationUsage(
  db: Kysely<Database>,
  principalIds: readonly string[],
  roleId: string,
  since: Date,
): Promise<{ lastActivationAt: Date | null; activationsInPeriod: number }> {
  if (principalIds.length === 0) return { lastActivationAt: null, activationsInPeriod: 0 };
  const row = await db
    .selectFrom("activation_requests")
    .select([
      (eb) => eb.fn.max("activated_at").as("last"),
      (eb) => eb.fn.count<string>("id").filterWhere("activated_at", ">=", since).as("recent"),
    ])
    .where("requester_id", "in", principalIds)
    .where("role_id", "=", roleId)
    .where("activated_at", "is not", null)
    .executeTakeFirst();
  return {
    lastActivationAt: row?.last ? new Date(row.last as unknown as string) : null,
    activationsInPeriod: Number(row?.recent ?? 0),
  };
}
