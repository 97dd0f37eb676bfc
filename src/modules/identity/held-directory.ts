/**
 * Four-eyes on the directory (docs/security.md, finding 81). Four-eyes assumes one account is one person, which no
 * admin may undo alone: granting a platform role that approves change requests (admin, security) and an
 * administrator's reset of the password of someone who approves (those roles, or named an approver of activations
 * by a policy or a pending request's policy snapshot: directly, through a group, or as a manager where a policy says
 * `manager: true`; or a reviewer of an open access-review item: `approvesWhat`) are held as change
 * requests while four-eyes is on (`fourEyes.tiers` not empty). Another approver approves, never the author nor the
 * account concerned; `fourEyes.alone: apply` waives it while nobody else could (the first admin making the second),
 * audited as `user.four_eyes_waived`. A held password is kept only as its scrypt hash, sealed by the vault (envelope
 * encryption bound to the change request), and set only on approval.
 */
import { sql, type Kysely } from "kysely";
import { z } from "zod";
import type { Database } from "../../db/index.js";
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import type { AuditInput } from "../audit/audit.types.js";
import { mayApproveChanges } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import * as identityStore from "./identity.store.js";

type Tx = Kysely<Database>;

/** What a held directory change does once approved (kept in the change request's plan as `directory`). */
export const directoryChange = z.discriminatedUnion("action", [
  z.object({
    action: z.literal("platform-roles"),
    principalId: z.string(),
    principal: z.string(),
    /** The roles it had when the change was held: approving a change made against other roles turns it stale. */
    before: z.array(z.string()),
    roles: z.array(z.string()),
  }),
  z.object({ action: z.literal("password"), principalId: z.string(), principal: z.string() }),
]);
export type DirectoryChange = z.infer<typeof directoryChange>;

/** A value the vault sealed (vault.secrets `sealValue`). */
export const sealedSecret = z.object({ ciphertext: z.string(), wrappedKey: z.string(), kekVersion: z.number() });
export type SealedSecret = z.infer<typeof sealedSecret>;

export interface HeldDirectoryChange {
  /** The change request's id, drawn first: a held password's hash is sealed bound to it. */
  id: string;
  change: DirectoryChange;
  /** What the approver reads (there is no configuration file to show). */
  document: string;
  reasons: string[];
  notes: string[];
  sealed?: SealedSecret;
}

export interface DirectoryFourEyes {
  /** Four-eyes is on (`fourEyes.tiers` not empty). */
  on: boolean;
  alone: "apply" | "hold";
  /** Whether someone other than `actor` could approve (or could a day ago: change-requests.service). */
  anotherApprover: (tx: Tx, actor: Actor) => Promise<boolean>;
  /** Keeps the change request in the caller's transaction. */
  hold: (tx: Tx, actor: Actor, held: HeldDirectoryChange, context: CallContext) => Promise<ChangeRequestRefDto>;
  /** The vault's envelope encryption (`sealValue`, `openValue`): a held password's hash, never the password. */
  seal: (bound: string, value: string) => Promise<SealedSecret>;
  open: (bound: string, sealed: SealedSecret) => Promise<string>;
}

/** What a held password's hash is sealed bound to: it opens for this change request only. */
export const heldPasswordBinding = (changeRequestId: string) => `change-request:${changeRequestId}:password`;

/** The roles in `after` and not in `before` that approve change requests (admin, security). */
export function approverRolesAdded(before: readonly string[], after: readonly string[]): string[] {
  return after.filter((role) => !before.includes(role) && mayApproveChanges([role]));
}

const stringsOf = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];

/** Who the stored policies name as approvers of activations (any stage, escalation, outside the window). */
export function namedApprovers(specs: readonly unknown[]): {
  users: Set<string>;
  groups: Set<string>;
  manager: boolean;
} {
  const named = { users: new Set<string>(), groups: new Set<string>(), manager: false };
  const add = (set: unknown) => {
    if (typeof set !== "object" || set === null) return;
    const { users, groups, manager } = set as { users?: unknown; groups?: unknown; manager?: unknown };
    for (const user of stringsOf(users)) named.users.add(user);
    for (const group of stringsOf(groups)) named.groups.add(group);
    if (manager === true) named.manager = true;
  };
  for (const spec of specs) {
    const { approval, outsideWindowApprovers } = (spec ?? {}) as {
      approval?: unknown;
      outsideWindowApprovers?: unknown;
    };
    const stages = (approval as { stages?: unknown } | undefined)?.stages;
    for (const stage of Array.isArray(stages) ? (stages as unknown[]) : []) {
      add((stage as { approvers?: unknown } | null)?.approvers);
      add((stage as { escalateTo?: unknown } | null)?.escalateTo);
    }
    add(outsideWindowApprovers);
  }
  return named;
}

/**
 * Why `principal` approves something now, or null when nothing: the one answer to "does this account approve
 * anything" (finding 89). A platform role that approves change requests; being named an approver of activations
 * by a policy as it stands, or by the policy snapshot of a pending request (the policy kept at submission, which
 * decides that request whatever the policy says since); or being a reviewer of an open access-review item.
 */
export async function approvesWhat(
  db: Tx,
  principal: { id: string; name: string; platform_roles: string[] },
): Promise<string | null> {
  const roles = principal.platform_roles.filter((role) => mayApproveChanges([role]));
  if (roles.length > 0) return `approves change requests (platform role ${roles.join(", ")})`;
  const reviewer = await db
    .selectFrom("review_items")
    .select("id")
    .where("status", "=", "open")
    .where(sql<boolean>`${principal.id}::uuid = any(reviewer_ids)`)
    .limit(1)
    .executeTakeFirst();
  if (reviewer) return "reviews an open access-review item";
  const policies = (await db.selectFrom("policies").select("spec").execute()).map((p) => p.spec);
  const snapshots = (
    await db.selectFrom("activation_requests").select("policy_snapshot").where("state", "=", "pending").execute()
  ).map((r) => r.policy_snapshot);
  const named = namedApprovers([...policies, ...snapshots]);
  if (named.users.has(principal.name)) return "is named an approver of activations by a policy or a pending request";
  if (named.groups.size > 0) {
    const group = await db
      .selectFrom("group_members")
      .innerJoin("groups", "groups.id", "group_members.group_id")
      .select("groups.name")
      .where("group_members.principal_id", "=", principal.id)
      .where("groups.name", "in", [...named.groups])
      .limit(1)
      .executeTakeFirst();
    if (group) return `approves activations (a member of ${group.name}, which a policy names)`;
  }
  if (named.manager) {
    const report = await db
      .selectFrom("principals")
      .select("id")
      .where("manager_id", "=", principal.id)
      .limit(1)
      .executeTakeFirst();
    if (report) return "approves activations as a manager (a policy says `manager: true`)";
  }
  return null;
}

/**
 * Whether `actor`'s change of approver rights is applied now (`apply`: four-eyes off), applied with the waiver
 * (`waive`: nobody else could approve, `alone: apply`) or held.
 */
export async function directoryDecision(
  fourEyes: DirectoryFourEyes | undefined,
  db: Tx,
  actor: Actor,
): Promise<"apply" | "waive" | "hold"> {
  if (!fourEyes?.on || actor.kind !== "principal") return "apply";
  if (fourEyes.alone === "apply" && !(await fourEyes.anotherApprover(db, actor))) return "waive";
  return "hold";
}

/** The audit event of a waived directory change (`alone: apply`), beside the change's own. */
export function waivedEvent(subject: string, what: string): AuditInput {
  return {
    action: "user.four_eyes_waived",
    outcome: "success",
    subject,
    reason: "no second admin",
    details: { change: what },
  };
}

const HEADER = "# Held by four-eyes: a change to the directory (not a configuration file).\n";

/** A held grant of approver roles, as the approver reads it. */
export function heldRoles(
  id: string,
  principal: { id: string; name: string },
  before: string[],
  roles: string[],
  notes: string[],
): HeldDirectoryChange {
  const added = approverRolesAdded(before, roles);
  return {
    id,
    change: { action: "platform-roles", principalId: principal.id, principal: principal.name, before, roles },
    document: `${HEADER}user: ${principal.name}\nplatformRoles: [${roles.join(", ")}]  # now: [${before.join(", ")}]\n`,
    reasons: added.map((role) => `grants platform role ${role}, which approves change requests`),
    notes,
  };
}

/** A held password reset, as the approver reads it: the password itself is nowhere in it. */
export function heldPassword(
  id: string,
  principal: { id: string; name: string },
  author: string,
  why: string,
  sealed: SealedSecret,
): HeldDirectoryChange {
  return {
    id,
    change: { action: "password", principalId: principal.id, principal: principal.name },
    document: `${HEADER}user: ${principal.name}\npassword: chosen by ${author}, kept sealed until approved\n`,
    reasons: [`sets the password of ${principal.name}, who ${why}: whoever knows it can sign in as them`],
    notes: [`Approving lets ${author} sign in as ${principal.name} until ${principal.name} changes the password.`],
    sealed,
  };
}

/** What a platform role change is judged on: the principal as locked. */
export type RolesRow = { id: string; status: string; platform_roles: string[] };

/**
 * The columns that give `row` the platform roles `roles`, now or on approval: never the last active
 * administrator's (CONFLICT), and the loss of the last role that approves remembered (finding 76).
 */
export async function platformRolesChange(
  tx: Tx,
  row: RolesRow,
  roles: string[],
  now: Date,
): Promise<Record<string, unknown>> {
  // A disabled administrator is not counted, so demoting one takes nothing away.
  if (row.status === "active" && row.platform_roles.includes("admin") && !roles.includes("admin")) {
    await identityStore.lockAdministrators(tx);
    if ((await identityStore.countActiveAdmins(tx)) <= 1)
      throw new StintError("CONFLICT", "That would leave Stint without an active administrator.");
  }
  // Demoted, they still count against `fourEyes.alone: apply` for a day, as a disabled approver does.
  return {
    platform_roles: roles,
    ...(mayApproveChanges(row.platform_roles) && !mayApproveChanges(roles) ? { approver_role_lost_at: now } : {}),
  };
}

/**
 * Applies an approved directory change in the change request's transaction and answers its audit events: only to
 * the account as it was when held (roles unchanged, still active), else CHANGE_REQUEST_STALE.
 */
export async function applyDirectoryChange(
  tx: Tx,
  deps: {
    now: Date;
    tellPrincipal: (tx: Tx, id: string) => Promise<void>;
    sessionsEnded: (tx: Tx, principalId: string) => Promise<void>;
  },
  held: { change: unknown; passwordHash: string | null },
): Promise<AuditInput[]> {
  const change = directoryChange.parse(held.change);
  const row = await identityStore.lockPrincipal(tx, change.principalId);
  if (!row || row.status !== "active")
    throw new StintError("CHANGE_REQUEST_STALE", `${change.principal} is gone or disabled since this was held.`);
  const subject = `${row.kind}:${row.name}`;
  if (change.action === "password") {
    if (held.passwordHash === null) throw new StintError("INTEGRITY_FAILED", "The held password is missing.");
    await identityStore.setPasswordHash(tx, row.id, held.passwordHash, deps.now);
    const sessions = await identityStore.revokeSessions(tx, row.id, deps.now, "password reset by an administrator");
    await deps.sessionsEnded(tx, row.id);
    return [{ action: "user.password_reset", outcome: "success", subject, details: { sessionsEnded: sessions } }];
  }
  const same = (a: readonly string[], b: readonly string[]) => [...a].sort().join() === [...b].sort().join();
  if (!same(row.platform_roles, change.before))
    throw new StintError(
      "CHANGE_REQUEST_STALE",
      `The platform roles of ${row.name} changed since this was held; ask for the change again.`,
    );
  const changes = await platformRolesChange(tx, row, change.roles, deps.now);
  await tx
    .updateTable("principals")
    .set({ ...changes, updated_at: deps.now })
    .where("id", "=", row.id)
    .execute();
  await deps.tellPrincipal(tx, row.id);
  return [
    {
      action: "user.update",
      outcome: "success",
      subject,
      details: { changed: ["platformRoles"], platformRoles: change.roles },
    },
  ];
}
