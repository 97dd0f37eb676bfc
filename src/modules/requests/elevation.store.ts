/**
 * The reads of an elevation (issue 14 acceptance 2): what a submit decides on (`submitFactsMany`) and the
 * holder's open activation a deactivate ends (`lockOpenOfRoles`), for one caller or a group of them. Each is a
 * constant text with one JSON parameter (`lib/constant-sql.ts`): no query built per call, one value serialized
 * (no array escaped element by element), prepared once per PostgreSQL connection (`PREPARED`), and seen by
 * Kysely's plugins as the statement it is (tests count it, or make it fail).
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { PREPARED } from "../../lib/db.js";
import { oneParameter } from "../../lib/constant-sql.js";
import type { DecisionJson, RequestRow } from "./requests.store.js";

type Q = Kysely<Database>;

/** What a submit decides on: one row per caller asked (none when there is no such principal). */
export interface SubmitFactsRow {
  /** The caller's place in the question, from 1. */
  n: number | string;
  status: string;
  requester_name: string;
  requester_manager_id: string | null;
  requester_email: string | null;
  /** Null: no role of that name (nor its policy or target). */
  role_id: string | null;
  role_name: string | null;
  role_risk: RequestRow["role_risk"] | null;
  role_entitlement: Record<string, unknown> | null;
  /** The policy's spec as its JSON text (`loadPolicy` parses each text once). */
  policy_spec: string | null;
  target_id: string | null;
  target_kind: RequestRow["target_kind"] | null;
  target_config: Record<string, unknown> | null;
  eligible: boolean;
}

/**
 * Everything submit decides on, read in one statement inside its transaction: each requester's status (its row
 * locked FOR SHARE, so a concurrent disable either waits for this request and ends it, or is seen here; rows
 * locked in id order, so two groups locking the same ones never wait for each other), the role with its policy
 * and target (null columns when there is no such role), and whether the requester holds an eligibility for it
 * valid at `now`, directly or through a group. `$1`: `{"now": ISO time, "q": [[principal id, role name], …]}`.
 */
const FACTS = oneParameter<SubmitFactsRow>(`${PREPARED} with p as (select $1::jsonb as j),
  q as (
    select (u.e->>0)::uuid as pid, u.e->>1 as rname, u.n
    from p, jsonb_array_elements(p.j->'q') with ordinality as u(e, n)
  ),
  c as (select (j->>'now')::timestamptz as now from p)
  select q.n, principals.status, principals.name as requester_name,
    principals.manager_id as requester_manager_id, principals.email as requester_email,
    roles.id as role_id, roles.name as role_name, roles.risk as role_risk, roles.entitlement as role_entitlement,
    policies.spec::text as policy_spec, targets.id as target_id, targets.kind as target_kind,
    targets.config as target_config,
    exists (
      select 1 from eligibilities
      where eligibilities.role_id = roles.id and eligibilities.removed_at is null
        and eligibilities.starts_at <= (select now from c)
        and (eligibilities.ends_at is null or eligibilities.ends_at > (select now from c))
        and (eligibilities.principal_id = q.pid
          or eligibilities.group_id in (select group_id from group_members where principal_id = q.pid))
    ) as eligible
  from q
  inner join principals on principals.id = q.pid
  left join roles on roles.name = q.rname
  left join policies on policies.id = roles.policy_id
  left join targets on targets.id = roles.target_id
  order by principals.id
  for share of principals`);

/** The facts of many submits in one statement (a group of them, `submit.group.ts`), in the order asked. */
export async function submitFactsMany(
  db: Q,
  asked: readonly { principalId: string; roleName: string }[],
  now: Date,
): Promise<(SubmitFactsRow | undefined)[]> {
  const { rows } = await FACTS(
    JSON.stringify({ now: now.toISOString(), q: asked.map((a) => [a.principalId, a.roleName]) }),
  ).execute(db);
  const facts: (SubmitFactsRow | undefined)[] = asked.map(() => undefined);
  for (const row of rows) facts[Number(row.n) - 1] = row;
  return facts;
}

/** The facts of one submit (`submitFactsMany` of one). */
export async function submitFacts(db: Q, principalId: string, roleName: string, now: Date) {
  return (await submitFactsMany(db, [{ principalId, roleName }], now))[0];
}

/**
 * The callers' open activations (not extensions) of roles, by name, locked for the rest of the transaction,
 * with their decisions: one statement. A row another transaction ended meanwhile is not returned (the lock
 * waits for it, then the row is checked again). `$1`: `[[requester id, role name], …]`.
 */
const LOCK_OPEN = oneParameter<RequestRow & { n: number | string; decisions: DecisionJson[] }>(`${PREPARED}
  with q as (
    select (u.e->>0)::uuid as pid, u.e->>1 as rname, u.n
    from jsonb_array_elements($1::jsonb) with ordinality as u(e, n)
  )
  select a.id, a.role_id, a.requester_id, a.extends_request_id, a.state, a.duration_ms, a.reason, a.ticket,
    a.break_glass, a.policy_snapshot, a.stages, a.stage_index, a.stage_deadline, a.mfa_at, a.submitted_at,
    a.decided_at, a.activated_at, a.expires_at, a.ended_at, a.end_reason, a.ended_by, a.extensions, a.start_at,
    a.pending_expires_at, roles.name as role_name, roles.risk as role_risk, targets.kind as target_kind,
    principals.name as requester_name, principals.manager_id as requester_manager_id, q.n,
    (select coalesce(json_agg(json_build_object(
        'stage_index', d.stage_index, 'approver_id', d.approver_id, 'decision', d.decision,
        'reason', d.reason, 'decided_at', d.decided_at, 'name', dp.name) order by d.decided_at, d.id), '[]'::json)
      from request_decisions d join principals dp on dp.id = d.approver_id
      where d.request_id = a.id) as decisions
  from activation_requests a
  inner join roles on roles.id = a.role_id
  inner join targets on targets.id = roles.target_id
  inner join principals on principals.id = a.requester_id
  inner join q on q.pid = a.requester_id and q.rname = roles.name
  where a.extends_request_id is null and a.state in ('pending', 'approved', 'provisioning', 'active')
  order by a.id
  for update of a`);

/** `LOCK_OPEN` of the callers asked, in the order asked: each one's row and its decisions (as JSON). */
export async function lockOpenOfRolesJson(db: Q, asked: readonly { requesterId: string; roleName: string }[]) {
  const { rows } = await LOCK_OPEN(JSON.stringify(asked.map((a) => [a.requesterId, a.roleName]))).execute(db);
  const found: ({ row: RequestRow; decisions: DecisionJson[] } | undefined)[] = asked.map(() => undefined);
  for (const { decisions, n, ...request } of rows) found[Number(n) - 1] = { row: request, decisions };
  return found;
}
