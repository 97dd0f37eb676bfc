/**
 * Making a user or a service identity: the principal, its password's hash if one was chosen, and its audit event in
 * one transaction, and with `invite: true` the user's one-time invite and its event too (invites.ts), so a failed
 * invite leaves no user behind; a platform role that approves waits for another approver (four-eyes, held-directory.ts).
 */
import type { InviteIssuedDto } from "../../contract/identity.js";
import { isUniqueViolation } from "../../lib/db.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { hashPassword } from "../../lib/security.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext, PlatformRole } from "../authz/authz.types.js";
import { actorName, type DirectoryContext, type MaybeHeld } from "./directory.context.js";
import { approverRolesAdded, directoryDecision, heldRoles, waivedEvent } from "./held-directory.js";
import { passwordProblem } from "./identity.rules.js";
import { DEFAULT_INVITE_TTL_MS, writeInvite } from "./invites.js";
import * as identityStore from "./identity.store.js";
import type { Principal } from "./identity.types.js";
import { toPrincipal } from "./principal.mapper.js";

export function createPrincipalUseCases(deps: DirectoryContext) {
  const { store, audit, clock, tellPrincipal, requirePrincipal } = deps;
  const inviteTtlMs = deps.inviteTtlMs ?? DEFAULT_INVITE_TTL_MS;

  return {
    async createPrincipal(
      actor: Actor,
      input: {
        name: string;
        kind: "user" | "service";
        email?: string | undefined;
        displayName?: string | undefined;
        manager?: string | undefined;
        password?: string | undefined;
        platformRoles?: PlatformRole[] | undefined;
        /** With an invite the user redeems to choose their own password, issued in the same transaction. */
        invite?: boolean | undefined;
      },
      context: CallContext,
    ): Promise<MaybeHeld<Principal> & { invite?: InviteIssuedDto }> {
      authorize(actor, "users.write");
      if (input.invite && (input.password !== undefined || input.kind === "service"))
        throw new StintError("VALIDATION_FAILED", "An invite is for a user without a password: drop `password`.");
      if (input.password !== undefined) {
        if (deps.adminSetPasswords === "refused") throw new StintError("ADMIN_PASSWORDS_REFUSED");
        if (input.kind === "service")
          throw new StintError("VALIDATION_FAILED", "Service identities sign in with API tokens, not passwords.");
        const problem = passwordProblem(input.password, input.name);
        if (problem) throw new StintError("WEAK_PASSWORD", `The password ${problem}.`);
      }
      const passwordHash = input.password !== undefined ? await hashPassword(input.password, deps.scrypt) : undefined;
      const wanted = [...new Set<PlatformRole>(input.platformRoles ?? ["user"])];
      try {
        return await store.transaction(async (tx) => {
          const now = clock.now();
          const manager = input.manager ? await requirePrincipal(tx, input.manager) : undefined;
          if (manager && manager.kind !== "user")
            throw new StintError("VALIDATION_FAILED", "A manager must be a user, not a service.");
          const id = newId();
          // Approver roles wait for another approver: the account is made without them meanwhile.
          const approverRoles = approverRolesAdded([], wanted);
          const decision = approverRoles.length > 0 ? await directoryDecision(deps.fourEyes, tx, actor) : "apply";
          const kept = wanted.filter((role) => decision !== "hold" || !approverRoles.includes(role));
          const roles = kept.length > 0 ? kept : (["user"] as PlatformRole[]);
          await tx
            .insertInto("principals")
            .values({
              id,
              kind: input.kind,
              name: input.name,
              email: input.email ?? null,
              display_name: input.displayName ?? null,
              manager_id: manager?.id ?? null,
              platform_roles: roles,
              created_at: now,
              updated_at: now,
            })
            .execute();
          if (passwordHash) await identityStore.setPasswordHash(tx, id, passwordHash, now);
          // The invite with the account or neither (non-negotiable 4): a failed invite leaves no user behind.
          const invited = input.invite
            ? await writeInvite(tx, { clock, ttlMs: inviteTtlMs }, actor, {
                id,
                name: input.name,
                kind: "user",
                status: "active",
              })
            : undefined;
          await tellPrincipal(tx, id);
          const subject = `${input.kind}:${input.name}`;
          // Held before the audit append: change request rows are locked before the audit head, as approvals do.
          const changeRequest =
            decision === "hold"
              ? await deps.fourEyes!.hold(
                  tx,
                  actor,
                  heldRoles(newId(), { id, name: input.name }, roles, wanted, [
                    ...(passwordHash
                      ? [
                          `${actorName(actor)} chose the password of ${input.name} when making the account: until ${input.name} changes it, ${actorName(actor)} can sign in as ${input.name}.`,
                        ]
                      : []),
                  ]),
                  context,
                )
              : undefined;
          await audit.append(tx, actor, context, [
            {
              action: input.kind === "service" ? "service.create" : "user.create",
              outcome: "success",
              subject,
              details: {
                platformRoles: roles,
                manager: input.manager ?? null,
                email: input.email ?? null,
                password: passwordHash ? "set" : "none",
              },
            },
            ...(invited ? [invited.event] : []),
            ...(decision === "waive" ? [waivedEvent(subject, `platform roles ${approverRoles.join(", ")}`)] : []),
          ]);
          const principal = await toPrincipal(tx, (await identityStore.findPrincipalById(tx, id))!);
          return {
            ...principal,
            ...(changeRequest ? { changeRequest } : {}),
            ...(invited ? { invite: invited.invite } : {}),
          };
        });
      } catch (error) {
        if (isUniqueViolation(error))
          throw new StintError("ALREADY_EXISTS", `A user or service named ${input.name} already exists.`);
        throw error;
      }
    },
  };
}
