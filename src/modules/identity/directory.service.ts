/**
 * Users, service identities, groups and API tokens. Each call authorizes
 * first, then writes its change and audit event in one transaction.
 * Disabling a principal ends every session and token it has, at once, and every
 * activation it holds or waits for (through the requests service, same transaction).
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { isUniqueViolation } from "../../lib/db.js";
import { parseDuration } from "../../lib/duration.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { hashPassword, randomToken, sha256Hex } from "../../lib/security.js";
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext, PlatformRole } from "../authz/authz.types.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import { listApiTokens } from "./api-token.js";
import { createPrincipalUseCases } from "./create-principal.js";
import { actorName, createDirectoryContext, type DirectoryServiceDeps, type MaybeHeld } from "./directory.context.js";
import { formatApiToken, passwordProblem } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import { toPrincipal, toPrincipals } from "./principal.mapper.js";
import { disablePrincipal } from "./principal-lifecycle.js";
import {
  applyDirectoryChange,
  platformRolesChange,
  approverRolesAdded,
  approvesWhat,
  directoryDecision,
  heldPassword,
  heldPasswordBinding,
  heldRoles,
  sealedSecret,
  waivedEvent,
} from "./held-directory.js";
import { addMemberships, removeMemberships } from "./group-membership.js";
import type { Principal } from "./identity.types.js";

export type { DirectoryServiceDeps, MaybeHeld } from "./directory.context.js";

const MAX_TOKEN_LIFETIME_MS = 366 * 86_400_000;

export function createDirectoryService(deps: DirectoryServiceDeps) {
  const ctx = createDirectoryContext(deps);
  const { store, audit, clock, index, tellPrincipal, requirePrincipal } = ctx;

  return {
    async listPrincipals(actor: Actor): Promise<Principal[]> {
      authorize(actor, "users.read");
      const rows = await identityStore.listPrincipals(store.db);
      return toPrincipals(store.db, rows, rows);
    },

    async getPrincipal(actor: Actor, name: string): Promise<Principal> {
      authorize(actor, "users.read");
      return toPrincipal(store.db, await requirePrincipal(store.db, name));
    },

    ...createPrincipalUseCases(ctx),

    async updatePrincipal(
      actor: Actor,
      name: string,
      input: {
        email?: string | null | undefined;
        displayName?: string | null | undefined;
        manager?: string | null | undefined;
        platformRoles?: PlatformRole[] | undefined;
      },
      context: CallContext,
    ): Promise<MaybeHeld<Principal>> {
      authorize(actor, "users.write");
      return store.transaction(async (tx) => {
        const row = (await identityStore.lockPrincipal(tx, (await requirePrincipal(tx, name)).id))!;
        let changeRequest: ChangeRequestRefDto | undefined;
        const waived: AuditInput[] = [];
        const changes: Record<string, unknown> = {};
        if (input.email !== undefined) changes.email = input.email;
        if (input.displayName !== undefined) changes.display_name = input.displayName;
        if (input.manager !== undefined) {
          const manager = input.manager === null ? null : await requirePrincipal(tx, input.manager);
          if (manager?.id === row.id) throw new StintError("VALIDATION_FAILED", "Nobody is their own manager.");
          if (manager && manager.kind !== "user")
            throw new StintError("VALIDATION_FAILED", "A manager must be a user, not a service.");
          // The manager approves one's requests where a policy says `manager: true`: not one's own choice.
          if (manager && manager.id !== row.manager_id && actor.kind === "principal" && actor.id === row.id)
            throw new StintError(
              "SELF_GRANT",
              "Your manager approves your requests where a policy says `manager: true`; someone else must choose who it is.",
            );
          changes.manager_id = manager?.id ?? null;
        }
        if (input.platformRoles !== undefined) {
          const roles = [...new Set(input.platformRoles)];
          // Adding a role that approves waits for another approver, the whole new set of roles with it.
          const added = approverRolesAdded(row.platform_roles, roles);
          const decision = added.length > 0 ? await directoryDecision(deps.fourEyes, tx, actor) : "apply";
          if (decision === "hold") {
            const change = heldRoles(newId(), row, row.platform_roles, roles, []);
            changeRequest = await deps.fourEyes!.hold(tx, actor, change, context);
          } else {
            Object.assign(changes, await platformRolesChange(tx, row, roles, clock.now()));
            if (decision === "waive")
              waived.push(waivedEvent(`${row.kind}:${name}`, `platform roles ${added.join(", ")}`));
          }
        }
        const held = <T extends object>(value: T): MaybeHeld<T> =>
          changeRequest ? { ...value, changeRequest } : value;
        if (Object.keys(changes).length === 0) return held(await toPrincipal(tx, row));
        await tx
          .updateTable("principals")
          .set({ ...changes, updated_at: clock.now() })
          .where("id", "=", row.id)
          .execute();
        await tellPrincipal(tx, row.id);
        const applied = Object.keys(input).filter(
          (k) => (input as Record<string, unknown>)[k] !== undefined && (k !== "platformRoles" || !changeRequest),
        );
        await audit.append(tx, actor, context, [
          {
            action: "user.update",
            outcome: "success",
            subject: `${row.kind}:${name}`,
            details: { changed: applied, platformRoles: changeRequest ? null : (input.platformRoles ?? null) },
          },
          ...waived,
        ]);
        return held(await toPrincipal(tx, (await identityStore.findPrincipalById(tx, row.id))!));
      });
    },

    async setStatus(
      actor: Actor,
      name: string,
      status: "active" | "disabled",
      reason: string | undefined,
      context: CallContext,
    ): Promise<Principal> {
      authorize(actor, "users.write");
      return store.transaction(async (tx) => {
        const found = await requirePrincipal(tx, name);
        const row = (await identityStore.lockPrincipal(tx, found.id))!;
        const now = clock.now();
        if (row.status === status) return toPrincipal(tx, row);
        let sessions = 0;
        let tokens = 0;
        let minted = 0;
        let ended: AuditInput[] = [];
        if (status === "disabled") {
          ({
            sessionsEnded: sessions,
            tokensRevoked: tokens,
            mintedTokensLive: minted,
            ended,
          } = await disablePrincipal(
            tx,
            { onAccessBasisLost: deps.onAccessBasisLost, tellPrincipal },
            row,
            now,
            {
              by: actorName(actor),
              ...(reason ? { reason } : {}),
            },
            `user:${actorName(actor)}`,
          ));
        } else {
          await tx
            .updateTable("principals")
            .set({ status, disabled_by: null, updated_at: now })
            .where("id", "=", row.id)
            .execute();
          await tellPrincipal(tx, row.id);
        }
        await audit.append(tx, actor, context, [
          {
            action: status === "disabled" ? "user.disable" : "user.enable",
            outcome: "success",
            subject: `${row.kind}:${name}`,
            reason: reason ?? null,
            details:
              status === "disabled"
                ? {
                    sessionsEnded: sessions,
                    tokensRevoked: tokens,
                    mintedTokensLive: minted,
                    requestsEnded: ended.length,
                  }
                : {},
          },
          ...ended,
        ]);
        return toPrincipal(tx, (await identityStore.findPrincipalById(tx, row.id))!);
      });
    },

    /**
     * Sets another user's password; held for another approver (answered) when that user approves something and
     * four-eyes is on: the password's hash is then sealed by the vault and set only on approval.
     */
    async setPassword(
      actor: Actor,
      name: string,
      password: string,
      context: CallContext,
    ): Promise<ChangeRequestRefDto | undefined> {
      authorize(actor, "users.write");
      const target = await requirePrincipal(store.db, name);
      if (target.kind === "service")
        throw new StintError("VALIDATION_FAILED", "Service identities sign in with API tokens, not passwords.");
      if (deps.adminSetPasswords === "refused" && !(actor.kind === "principal" && actor.id === target.id))
        throw new StintError("ADMIN_PASSWORDS_REFUSED");
      const problem = passwordProblem(password, name);
      if (problem) throw new StintError("WEAK_PASSWORD", `The password ${problem}.`);
      const passwordHash = await hashPassword(password, deps.scrypt);
      // One's own password is one's own; someone else's, where they approve, lets the setter be them.
      const approves =
        actor.kind === "principal" && actor.id !== target.id ? await approvesWhat(store.db, target) : null;
      const decision = approves ? await directoryDecision(deps.fourEyes, store.db, actor) : "apply";
      if (decision === "hold") {
        const id = newId();
        // Sealed before the transaction: the vault reads its keys outside it.
        const sealed = await deps.fourEyes!.seal(heldPasswordBinding(id), passwordHash);
        const held = heldPassword(id, target, actorName(actor), approves!, sealed);
        return store.transaction((tx) => deps.fourEyes!.hold(tx, actor, held, context));
      }
      await store.transaction(async (tx) => {
        const now = clock.now();
        await identityStore.setPasswordHash(tx, target.id, passwordHash, now);
        const sessions = await identityStore.revokeSessions(tx, target.id, now, "password reset by an administrator");
        await index?.send(tx, { t: "pses", pid: target.id });
        await audit.append(tx, actor, context, [
          {
            action: "user.password_reset",
            outcome: "success",
            subject: `user:${name}`,
            details: { sessionsEnded: sessions },
          },
          ...(decision === "waive" ? [waivedEvent(`user:${name}`, "password")] : []),
        ]);
      });
      return undefined;
    },

    /** Opens a held password's hash (outside any transaction: the vault reads its keys), for `applyHeld`. */
    async openHeldSecret(changeRequestId: string, sealed: unknown): Promise<string> {
      if (!deps.fourEyes) throw new StintError("UNAVAILABLE", "Held directory changes cannot be applied here.");
      return deps.fourEyes.open(heldPasswordBinding(changeRequestId), sealedSecret.parse(sealed));
    },

    /** Applies an approved directory change in the change request's transaction; answers its audit events. */
    applyHeld(tx: Kysely<Database>, held: { change: unknown; passwordHash: string | null }): Promise<AuditInput[]> {
      return applyDirectoryChange(
        tx,
        {
          now: clock.now(),
          tellPrincipal,
          sessionsEnded: async (t, pid) => {
            await index?.send(t, { t: "pses", pid });
          },
        },
        held,
      );
    },

    async listGroups(actor: Actor) {
      authorize(actor, "groups.read");
      return (await identityStore.listGroupsWithMembers(store.db)).map((g) => ({
        id: g.id,
        name: g.name,
        description: g.description,
        members: g.members,
        createdAt: new Date(g.created_at).toISOString(),
      }));
    },

    async createGroup(actor: Actor, input: { name: string; description?: string | undefined }, context: CallContext) {
      authorize(actor, "groups.write");
      try {
        return await store.transaction(async (tx) => {
          const now = clock.now();
          const id = newId();
          await tx
            .insertInto("groups")
            .values({ id, name: input.name, description: input.description ?? null, created_at: now })
            .execute();
          await audit.append(tx, actor, context, {
            action: "group.create",
            outcome: "success",
            subject: `group:${input.name}`,
          });
          return {
            id,
            name: input.name,
            description: input.description ?? null,
            members: [] as string[],
            createdAt: now.toISOString(),
          };
        });
      } catch (error) {
        if (isUniqueViolation(error))
          throw new StintError("ALREADY_EXISTS", `A group named ${input.name} already exists.`);
        throw error;
      }
    },

    async changeMembership(
      actor: Actor,
      groupName: string,
      principalName: string,
      change: "add" | "remove",
      context: CallContext,
    ): Promise<{ changeRequest: ChangeRequestRefDto } | undefined> {
      authorize(actor, "groups.write");
      // Joining a group that carries a high-risk role (or approves one) waits for a second admin, as a file would.
      if (change === "add" && deps.holdGroupMember) {
        const held = await deps.holdGroupMember(actor, context, groupName, principalName);
        if (held === "applied") return undefined;
        if (held) return { changeRequest: held };
      }
      await store.transaction(async (tx) => {
        const group = await identityStore.findGroupByName(tx, groupName);
        if (!group) throw new StintError("NOT_FOUND", `There is no group named ${groupName}.`);
        const principal = await requirePrincipal(tx, principalName);
        const now = clock.now();
        // Joining a group that carries eligibility is granting oneself roles: someone else must add you.
        const ownAccess = await guardOwnAccess(tx, actor);
        if (change === "remove") {
          // An eligibility held through this group no longer carries what was activated on it.
          const events = await removeMemberships(
            tx,
            { onAccessBasisLost: deps.onAccessBasisLost },
            [{ group, principal }],
            { by: actorName(actor) },
          );
          if (events.length === 0) return; // already so: nothing changed, nothing to record
          await ownAccess.check(tx, now);
          await audit.append(tx, actor, context, events);
          return;
        }
        const added = await addMemberships(tx, [{ group, principal }], now);
        if (added.length === 0) return; // already so: nothing changed, nothing to record
        await ownAccess.check(tx, now);
        await audit.append(tx, actor, context, added);
      });
      return undefined;
    },

    /** API tokens, never their secrets, each with its minter as they stand now (api-token.ts). */
    async listTokens(actor: Actor, filter: { mintedBy?: string; minter?: "left" } = {}) {
      authorize(actor, "tokens.read");
      return listApiTokens(store.db, {
        ...(filter.mintedBy !== undefined ? { mintedBy: filter.mintedBy } : {}),
        minterLeft: filter.minter === "left",
      });
    },

    /** Creates an API token for a service identity. The token is returned once and only its hash is kept. */
    async createToken(
      actor: Actor,
      input: { name: string; principal: string; expiresIn: string },
      context: CallContext,
    ) {
      authorize(actor, "tokens.write");
      const lifetime = parseDuration(input.expiresIn);
      if (lifetime < 60_000 || lifetime > MAX_TOKEN_LIFETIME_MS) {
        throw new StintError("VALIDATION_FAILED", "A token lives between 1m and 366d.", {
          issues: [{ path: "body.expiresIn", message: "must be between 1m and 366d" }],
        });
      }
      return store.transaction(async (tx) => {
        const principal = await requirePrincipal(tx, input.principal);
        if (principal.kind !== "service")
          throw new StintError(
            "VALIDATION_FAILED",
            "API tokens are for service identities; people sign in with `stint login`.",
          );
        if (principal.status !== "active") throw new StintError("CONFLICT", `${input.principal} is disabled.`);
        const now = clock.now();
        const id = newId();
        const secret = randomToken(32);
        const expiresAt = new Date(now.getTime() + lifetime);
        await tx
          .insertInto("api_tokens")
          .values({
            id,
            principal_id: principal.id,
            name: input.name,
            token_hash: sha256Hex(secret),
            created_by: actor.kind === "principal" ? actor.id : null,
            created_at: now,
            expires_at: expiresAt,
          })
          .execute();
        await audit.append(tx, actor, context, {
          action: "token.create",
          outcome: "success",
          subject: `service:${input.principal}`,
          details: { tokenId: id, name: input.name, expiresAt: expiresAt.toISOString() },
        });
        return {
          id,
          name: input.name,
          principal: input.principal,
          createdAt: now.toISOString(),
          expiresAt: expiresAt.toISOString(),
          lastUsedAt: null,
          revokedAt: null,
          minter: actor.kind === "principal" ? { name: actor.name, status: "active" as const } : null,
          token: formatApiToken(id, secret),
        };
      });
    },

    async revokeToken(actor: Actor, tokenId: string, context: CallContext): Promise<void> {
      authorize(actor, "tokens.write");
      await store.transaction(async (tx) => {
        const row = await tx
          .selectFrom("api_tokens")
          .innerJoin("principals", "principals.id", "api_tokens.principal_id")
          .select(["api_tokens.id", "api_tokens.revoked_at", "principals.name"])
          .where("api_tokens.id", "=", tokenId)
          .forUpdate()
          .executeTakeFirst();
        if (!row) throw new StintError("NOT_FOUND", "There is no such token.");
        if (row.revoked_at) return;
        await tx.updateTable("api_tokens").set({ revoked_at: clock.now() }).where("id", "=", tokenId).execute();
        await index?.send(tx, { t: "tok", id: tokenId });
        await audit.append(tx, actor, context, {
          action: "token.revoke",
          outcome: "success",
          subject: `service:${row.name}`,
          details: { tokenId },
        });
      });
    },
  };
}

export type DirectoryService = ReturnType<typeof createDirectoryService>;
