/**
 * What the directory's use cases share (directory.service.ts wires them; create-principal.ts makes users and
 * services): the service's dependencies and the few helpers each needs.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import type { ScryptParams } from "../../lib/security.js";
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { DirectoryFourEyes } from "./held-directory.js";
import * as identityStore from "./identity.store.js";
import { principalTeller } from "./principal.mapper.js";

export interface DirectoryServiceDeps {
  /** `identity.adminSetPasswords: refused`: no administrator chooses another person's password (finding 89). */
  adminSetPasswords?: "allowed" | "refused";
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  scrypt?: ScryptParams;
  /**
   * Called inside the transaction that disables a principal or removes it from a group: ends the open
   * activations that lost their basis (the requests service), so access never outlives the change, and
   * returns their audit events. Called before this transaction's audit append, so request rows are locked
   * before the audit head, in the order request transactions take them.
   */
  onAccessBasisLost?: (
    tx: Kysely<Database>,
    scope: { principalIds: string[] },
    cause: { by: string; reason?: string },
  ) => Promise<AuditInput[]>;
  /** Tells every node's access index (and the caches of sessions and tokens on it) what changed, at commit. */
  index?: Pick<AccessIndex, "send">;
  /**
   * Four-eyes on adding a group member (the catalog's `holdGroupMember`): a change request when the addition widens
   * access at a covered tier (held as a file, as `stint apply` would be), "applied" when that file applied at once,
   * null when the directory adds the member itself.
   */
  holdGroupMember?: (
    actor: Actor,
    context: CallContext,
    group: string,
    principal: string,
  ) => Promise<ChangeRequestRefDto | "applied" | null>;
  /** Four-eyes on granting approver roles and resetting an approver's password (held-directory.ts). */
  fourEyes?: DirectoryFourEyes;
  /** How long the invite of a user made with `invite: true` is good for (`inviteTtl`; invites.ts, 24 hours). */
  inviteTtlMs?: number;
}

/** A write that four-eyes held in part: what was applied now, and the change request for the rest. */
export type MaybeHeld<T> = T & { changeRequest?: ChangeRequestRefDto };

export const actorName = (actor: Actor) => (actor.kind === "principal" ? actor.name : "system");

export interface DirectoryContext extends DirectoryServiceDeps {
  /** In the transaction that created or changed a principal: every node's index learns it at commit. */
  tellPrincipal(tx: Kysely<Database>, id: string): Promise<void>;
  /** The principal named `name` (user or service), or NOT_FOUND. */
  requirePrincipal(db: Kysely<Database>, name: string): Promise<identityStore.PrincipalRow>;
}

export function createDirectoryContext(deps: DirectoryServiceDeps): DirectoryContext {
  const { index } = deps;
  return {
    ...deps,
    tellPrincipal: principalTeller(index),
    async requirePrincipal(db, name) {
      const row = await identityStore.findPrincipalByName(db, name);
      if (!row) throw new StintError("NOT_FOUND", `There is no user or service named ${name}.`);
      return row;
    },
  };
}
