import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { Actor, PlatformRole } from "../authz/authz.types.js";
import { findPrincipalById, principalFacts, type PrincipalRow } from "./identity.store.js";
import type { Principal } from "./identity.types.js";

/** Rows → API principals, with manager names, groups and MFA status, in two queries. */
export async function toPrincipals(
  db: Kysely<Database>,
  rows: PrincipalRow[],
  all?: PrincipalRow[],
): Promise<Principal[]> {
  const facts = await principalFacts(
    db,
    rows.map((r) => r.id),
  );
  const managerIds = rows.map((r) => r.manager_id).filter((id): id is string => id !== null);
  const managers = new Map((all ?? []).map((p) => [p.id, p.name]));
  const missing = managerIds.filter((id) => !managers.has(id));
  if (missing.length > 0) {
    const found = await db.selectFrom("principals").select(["id", "name"]).where("id", "in", missing).execute();
    for (const m of found) managers.set(m.id, m.name);
  }
  return rows.map((row) => ({
    id: row.id,
    kind: row.kind,
    name: row.name,
    email: row.email,
    displayName: row.display_name,
    manager: row.manager_id ? (managers.get(row.manager_id) ?? null) : null,
    status: row.status,
    disabledBy: row.status === "disabled" ? row.disabled_by : null,
    platformRoles: row.platform_roles as PlatformRole[],
    mfaEnrolled: facts.mfa.has(row.id),
    groups: facts.groups.get(row.id) ?? [],
    createdAt: new Date(row.created_at).toISOString(),
  }));
}

export async function toPrincipal(db: Kysely<Database>, row: PrincipalRow): Promise<Principal> {
  return (await toPrincipals(db, [row]))[0]!;
}

/** What the access index keeps of a principal (sent in a `prn` message by every change to one). */
export function principalEntry(row: Pick<PrincipalRow, "id" | "name" | "kind" | "status" | "platform_roles">) {
  return { id: row.id, name: row.name, kind: row.kind, status: row.status, platformRoles: [...row.platform_roles] };
}

/**
 * `tellPrincipal(tx, id)`, called in the transaction that created or changed a principal: every node's access index
 * learns what it now is, at commit. Without an index there is no one to tell.
 */
export function principalTeller(index: Pick<AccessIndex, "send"> | undefined) {
  return async (tx: Kysely<Database>, id: string): Promise<void> => {
    if (!index) return;
    const row = await findPrincipalById(tx, id);
    if (row) await index.send(tx, { t: "prn", p: principalEntry(row) });
  };
}

type PrincipalActor = Extract<Actor, { kind: "principal" }>;

/** The actor a principal stands for once it signed in (before any session or token is attached), from its index entry. */
export function entryActor(
  entry: Pick<ReturnType<typeof principalEntry>, "id" | "name" | "kind" | "platformRoles">,
): PrincipalActor {
  return {
    kind: "principal",
    id: entry.id,
    name: entry.name,
    principalKind: entry.kind,
    roles: entry.platformRoles as PlatformRole[],
  };
}

/** The actor a principal's row stands for once it signed in (before any session or token is attached). */
export function principalActor(row: Pick<PrincipalRow, "id" | "name" | "kind" | "platform_roles">): PrincipalActor {
  return entryActor({ id: row.id, name: row.name, kind: row.kind, platformRoles: row.platform_roles });
}
