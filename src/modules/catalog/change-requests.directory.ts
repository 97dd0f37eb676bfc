/**
 * Change requests that hold a change to the directory instead of a configuration file (identity/held-directory.ts,
 * docs/security.md finding 81): granting a platform role that approves, or an administrator's reset of an
 * approver's password. Kept in the directory's transaction; approved by another approver, never the author nor the
 * account concerned, and applied by the directory in the approval's transaction, while the author may still manage
 * users. A held password's hash is sealed by the vault (`sealed_secret`), opened only to be applied and dropped at
 * the decision; it never reaches the plan, the document, an audit event or an answer.
 */
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { can, PERMISSIONS } from "../authz/authz.rules.js";
import { PLATFORM_ROLES, type Actor, type CallContext, type PlatformRole } from "../authz/authz.types.js";
import type { RiskTier } from "./catalog.types.js";
import type { ChangeRequestCreated } from "./change-request-notifications.js";
import * as store from "./change-requests.store.js";
import type { ApproverMfa } from "../requests/policy.rules.js";

type Tx = Parameters<typeof store.decideChangeRequest>[0];
type Person = Extract<Actor, { kind: "principal" }>;

/** What the directory gives the change requests: opening a held password's hash, and applying a held change. */
export interface DirectoryApplier {
  /** Outside any transaction (the vault reads its keys). */
  openHeldSecret: (changeRequestId: string, sealed: unknown) => Promise<string>;
  /** In the approval's transaction: the change and its audit events, or CHANGE_REQUEST_STALE. */
  applyHeld: (tx: Tx, held: { change: unknown; passwordHash: string | null }) => Promise<AuditInput[]>;
}

/** A held directory change as the directory hands it over (identity/held-directory.ts `HeldDirectoryChange`). */
export interface HeldDirectory {
  id: string;
  change: { principalId: string; principal: string };
  document: string;
  reasons: string[];
  notes: string[];
  sealed?: unknown;
}

/** The account a held directory change is about, or null for a configuration file. */
export function directorySubject(row: Pick<store.ChangeRequestRow, "kind" | "plan">): string | null {
  if (row.kind !== "directory") return null;
  return (row.plan as { directory?: { principalId?: string } }).directory?.principalId ?? null;
}

/** A held directory change's tier: approver rights are the keys to four-eyes itself. */
const TIER: RiskTier = "critical";

export function heldDirectoryUseCases(deps: {
  store: { db: Tx };
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  expireAfterMs: number;
  directory?: DirectoryApplier | undefined;
  onCreated?: ((tx: Tx, created: ChangeRequestCreated) => Promise<void>) | undefined;
  expire: (tx: Tx, now: Date, context: CallContext) => Promise<void>;
  principalOf: (actor: Actor) => Person;
}) {
  const { audit, clock } = deps;

  return {
    /** Keeps a held directory change in the caller's (the directory's) transaction, with its audit event. */
    async hold(tx: Tx, actor: Actor, held: HeldDirectory, context: CallContext): Promise<ChangeRequestRefDto> {
      const author = deps.principalOf(actor);
      const now = clock.now();
      const expiresAt = new Date(now.getTime() + deps.expireAfterMs);
      const summary = { create: 0, update: 1, delete: 0 };
      await deps.expire(tx, now, context);
      await store.insertChangeRequest(tx, {
        id: held.id,
        kind: "directory",
        status: "pending",
        author_id: author.id,
        author_name: author.name,
        document: held.document,
        plan: { changes: [], summary, notes: held.notes, directory: held.change },
        assessment: [
          {
            kind: "user",
            action: "update",
            name: held.change.principal,
            effect: "widens",
            tier: TIER,
            reasons: held.reasons,
          },
        ],
        tier: TIER,
        base_fingerprint: "",
        ...(held.sealed !== undefined ? { sealed_secret: held.sealed } : {}),
        created_at: now,
        expires_at: expiresAt,
      });
      const widening = [{ kind: "user", name: held.change.principal, tier: TIER, reasons: held.reasons }];
      await audit.append(tx, actor, context, {
        action: "change_request.created",
        outcome: "success",
        subject: `change-request:${held.id}`,
        details: { kind: "directory", tier: TIER, summary, widening, expiresAt: expiresAt.toISOString() },
      });
      await deps.onCreated?.(tx, {
        id: held.id,
        author: author.name,
        tier: TIER,
        widening: [`user ${held.change.principal}: ${held.reasons.join("; ")}`],
        expiresAt,
        createdAt: now,
        recipients: await store.approverEmails(tx, author.id, PERMISSIONS["catalog.write"]),
      });
      return { id: held.id, status: "pending", tier: TIER, expiresAt: expiresAt.toISOString() };
    },

    /** A held password's hash, opened before the approval's transaction; null for anything else or its author. */
    async openBeforeApproval(id: string, approver: Person): Promise<string | null> {
      const row = await store.findChangeRequest(deps.store.db, id);
      if (row?.kind !== "directory" || !row.sealed_secret || row.author_id === approver.id || !deps.directory)
        return null;
      return deps.directory.openHeldSecret(id, row.sealed_secret);
    },

    /**
     * Approves a pending held directory change (refusals of status, expiry and author already made): applied, or
     * turned stale (the account or the author changed since) with its event, answered CHANGE_REQUEST_STALE.
     */
    async approve(
      tx: Tx,
      row: store.ChangeRequestRow,
      approver: Person,
      passwordHash: string | null,
      reason: string | undefined,
      context: CallContext,
      /** The approver's MFA as `fourEyes.approverMfa` checked it, for the approval's event (null: not asked). */
      approverMfa: ApproverMfa | null = null,
    ): Promise<"CHANGE_REQUEST_STALE" | null> {
      if (directorySubject(row) === approver.id)
        throw new StintError(
          "CHANGE_REQUEST_SELF_APPROVAL",
          "Nobody approves a change to their own account's platform roles or password; another approver must.",
        );
      if (!deps.directory) throw new StintError("UNAVAILABLE", "Held directory changes cannot be applied here.");
      const now = clock.now();
      let events: AuditInput[];
      try {
        if (!(await authorManagesUsers(tx, row.author_id)))
          throw new StintError("CHANGE_REQUEST_STALE", "its author can no longer manage users");
        events = await deps.directory.applyHeld(tx, {
          change: (row.plan as { directory?: unknown }).directory,
          passwordHash,
        });
      } catch (error) {
        if (!(error instanceof StintError) || error.code !== "CHANGE_REQUEST_STALE") throw error;
        const why = error.message;
        await store.decideChangeRequest(tx, row.id, {
          status: "stale",
          byId: approver.id,
          byName: approver.name,
          at: now,
          reason: why,
        });
        await audit.append(tx, approver, context, {
          action: "change_request.stale",
          outcome: "failed",
          subject: `change-request:${row.id}`,
          reason: why,
        });
        return "CHANGE_REQUEST_STALE";
      }
      await store.decideChangeRequest(tx, row.id, {
        status: "applied",
        byId: approver.id,
        byName: approver.name,
        at: now,
        reason: reason ?? null,
      });
      await audit.append(tx, approver, context, [
        {
          action: "change_request.approved",
          outcome: "success",
          subject: `change-request:${row.id}`,
          ...(reason ? { reason } : {}),
          details: {
            author: row.author_name,
            tier: row.tier,
            kind: "directory",
            ...(approverMfa ? { approverMfa } : {}),
          },
        },
        ...events.map((event) => ({
          ...event,
          details: { ...event.details, changeRequest: row.id, author: row.author_name },
        })),
      ]);
      return null;
    },
  };
}

/** Whether the author is still an active principal who may manage users (who made the change may still). */
async function authorManagesUsers(tx: Tx, authorId: string): Promise<boolean> {
  const found = await store.findActivePrincipal(tx, authorId);
  if (!found) return false;
  const roles = found.platform_roles.filter((r): r is PlatformRole =>
    (PLATFORM_ROLES as readonly string[]).includes(r),
  );
  return can({ kind: "principal", id: found.id, name: found.name, principalKind: found.kind, roles }, "users.write");
}
