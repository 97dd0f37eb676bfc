/** Roles: list, read, create, change and delete, each authorized first and audited in its transaction. */
import type { RoleDto, RoleInput } from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { diffEntity } from "./catalog.plan.rules.js";
import { sortedSet } from "./catalog.rules.js";
import * as catalogStore from "./catalog.store.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import { roleDto } from "./catalog.helpers.js";
import type { CatalogContext } from "./catalog.context.js";

export function roleUseCases(ctx: CatalogContext) {
  const { store, audit, clock, write, roleValues, requireRole, fourEyesGuard } = ctx;
  return {
    async listRoles(actor: Actor): Promise<RoleDto[]> {
      authorize(actor, "catalog.read");
      return (await catalogStore.listRoles(store.db)).map(roleDto);
    },

    async getRole(actor: Actor, ref: string): Promise<RoleDto> {
      authorize(actor, "catalog.read");
      return roleDto(await requireRole(store.db, ref));
    },

    async createRole(actor: Actor, input: RoleInput, context: CallContext): Promise<RoleDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const values = await roleValues(tx, actor, input);
        const id = newId();
        await catalogStore.insertRole(tx, id, values, clock.now());
        const row = (await catalogStore.findRole(tx, id))!;
        await audit.append(tx, actor, context, {
          action: "role.create",
          outcome: "success",
          subject: `role:${row.name}`,
          details: {
            source: "api",
            target: row.target_name,
            policy: row.policy_name,
            risk: row.risk,
            owners: row.owners,
            entitlement: row.entitlement,
          },
        });
        return roleDto(row);
      }, `A role named ${input.name} already exists.`);
    },

    async updateRole(actor: Actor, ref: string, input: RoleInput, context: CallContext): Promise<RoleDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const row = await requireRole(tx, ref);
        // Nor what a role they are eligible for grants, or which policy governs it.
        const ownAccess = await guardOwnAccess(tx, actor);
        const values = await roleValues(tx, actor, input);
        const before = roleDto(row);
        const after = {
          name: values.name,
          description: values.description,
          target: (await catalogStore.findTarget(tx, values.target_id))!.name,
          policy: (await catalogStore.findPolicy(tx, values.policy_id))!.name,
          risk: values.risk,
          owners: values.owners,
          entitlement: values.entitlement,
        };
        const fields = diffEntity("role", { ...before, owners: sortedSet(before.owners) }, after);
        if (before.name !== after.name) fields.unshift({ field: "name", from: before.name, to: after.name });
        if (fields.length === 0) return before;
        await fourEyesGuard(
          tx,
          actor,
          { action: "update", kind: "role", name: row.name, fields },
          { prune: false, roles: [{ ...after, name: row.name }] },
        );
        await catalogStore.updateRole(tx, row.id, values, clock.now());
        await ownAccess.check(tx, clock.now());
        await audit.append(tx, actor, context, {
          action: "role.update",
          outcome: "success",
          subject: `role:${row.name}`,
          details: { source: "api", fields },
        });
        return roleDto((await catalogStore.findRole(tx, row.id))!);
      }, `A role named ${input.name} already exists.`);
    },

    async deleteRole(actor: Actor, ref: string, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requireRole(tx, ref);
        const live = await catalogStore.countLiveEligibilities(tx, row.id);
        if (live > 0)
          throw new StintError(
            "CONFLICT",
            `The role ${row.name} still has ${live} eligibilit${live === 1 ? "y" : "ies"}; remove them first.`,
          );
        if (await catalogStore.roleHasRequests(tx, row.id))
          throw new StintError(
            "CONFLICT",
            `The role ${row.name} has activation requests on record; deleting it would lose their history.`,
          );
        await catalogStore.deleteRole(tx, row.id);
        await audit.append(tx, actor, context, {
          action: "role.delete",
          outcome: "success",
          subject: `role:${row.name}`,
          details: { source: "api" },
        });
      });
    },
  };
}
