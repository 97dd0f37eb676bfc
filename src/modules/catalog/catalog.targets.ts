/** Targets: list, read, create, change and delete, each authorized first and audited in its transaction. */
import type { TargetDto, TargetInput } from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { actorLabel } from "../audit/audit.service.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { diffEntity } from "./catalog.plan.rules.js";
import { targetConfig } from "./catalog.rules.js";
import * as catalogStore from "./catalog.store.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import { applyCustody } from "./custody.js";
import { storedCredentials } from "./custody.store.js";
import {
  targetValues,
  endpointOfRow,
  custodyOrThrow,
  invalid,
  targetDto,
  normalizeSpec,
  quote,
  type Db,
} from "./catalog.helpers.js";
import { riskFloorProblem } from "./risk-floor.rules.js";
import type { TargetKind } from "./catalog.types.js";
import type { TargetValues } from "./catalog.store.js";

/**
 * A target's new labels (or options) may raise the floor of a role on it above the role's declared tier: refused
 * as the role's own write would be (risk-floor.rules.ts), so the change cannot leave a role below its floor.
 */
async function floorsOfRolesOn(db: Db, targetId: string, values: TargetValues): Promise<void> {
  const issues = [];
  for (const role of await catalogStore.rolesOnTarget(db, targetId)) {
    const grant = {
      targetKind: values.kind as TargetKind,
      targetLabels: values.labels ?? {},
      entitlement: role.entitlement as Record<string, unknown>,
      policy: normalizeSpec(role.policy_spec),
    };
    const floor = riskFloorProblem(grant, role.risk);
    if (floor) issues.push({ path: "body.labels", message: `role ${quote(role.name)} would have ${floor}` });
  }
  if (issues.length > 0) throw invalid(issues);
}
import type { CatalogContext } from "./catalog.context.js";

export function targetUseCases(ctx: CatalogContext) {
  const { store, audit, clock, allowanceKey, write, requireTarget, fourEyesGuard } = ctx;
  return {
    async listTargets(actor: Actor): Promise<TargetDto[]> {
      authorize(actor, "catalog.read");
      const stored = await storedCredentials(store.db);
      return (await catalogStore.listTargets(store.db)).map((row) => targetDto(row, stored));
    },

    async getTarget(actor: Actor, ref: string): Promise<TargetDto> {
      authorize(actor, "catalog.read");
      return targetDto(await requireTarget(store.db, ref), await storedCredentials(store.db));
    },

    async createTarget(actor: Actor, input: TargetInput, context: CallContext): Promise<TargetDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const now = clock.now();
        const id = newId();
        const values = targetValues(input);
        const custody = await custodyOrThrow(tx, actor, values, null);
        await catalogStore.insertTarget(tx, id, values, now);
        const custodyEvents = await applyCustody(
          tx,
          { id, name: values.name },
          custody,
          false,
          actorLabel(actor).actor,
          now,
          allowanceKey,
        );
        await audit.append(tx, actor, context, {
          action: "target.create",
          outcome: "success",
          subject: `target:${input.name}`,
          details: {
            source: "api",
            kind: values.kind,
            address: values.address,
            labels: values.labels,
            credential: values.credential,
            identity: values.identity,
            options: values.options,
          },
        });
        await audit.append(tx, actor, context, custodyEvents);
        return targetDto((await catalogStore.findTarget(tx, id))!, await storedCredentials(tx));
      }, `A target named ${input.name} already exists.`);
    },

    async updateTarget(actor: Actor, ref: string, input: TargetInput, context: CallContext): Promise<TargetDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const row = await requireTarget(tx, ref);
        const values = targetValues(input);
        const before = { ...row, labels: row.labels ?? {}, ...targetConfig(row.config) };
        const fields = diffEntity("target", before, values);
        if (row.name !== values.name) fields.unshift({ field: "name", from: row.name, to: values.name });
        if (before.kind !== values.kind && (await catalogStore.roleNamesUsingTarget(tx, row.id)).length > 0)
          throw invalid([{ path: "body.kind", message: "cannot change the kind of a target that has roles" }]);
        if (fields.length === 0) return targetDto(row, await storedCredentials(tx));
        await floorsOfRolesOn(tx, row.id, values);
        // Nor what a role they are eligible for grants through its target (its session login, its address…).
        const ownAccess = await guardOwnAccess(tx, actor);
        await fourEyesGuard(
          tx,
          actor,
          { action: "update", kind: "target", name: row.name, fields },
          { prune: false, targets: [{ ...values, name: row.name }] },
        );
        const custody = await custodyOrThrow(tx, actor, values, row);
        await catalogStore.updateTarget(tx, row.id, values, clock.now());
        await ownAccess.check(tx, clock.now());
        await audit.append(tx, actor, context, {
          action: "target.update",
          outcome: "success",
          subject: `target:${row.name}`,
          details: { source: "api", fields },
        });
        const moved = custody.endpoint !== endpointOfRow(row);
        await audit.append(
          tx,
          actor,
          context,
          await applyCustody(
            tx,
            { id: row.id, name: values.name },
            custody,
            moved,
            actorLabel(actor).actor,
            clock.now(),
            allowanceKey,
          ),
        );
        return targetDto((await catalogStore.findTarget(tx, row.id))!, await storedCredentials(tx));
      }, `A target named ${input.name} already exists.`);
    },

    async deleteTarget(actor: Actor, ref: string, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requireTarget(tx, ref);
        const roles = await catalogStore.roleNamesUsingTarget(tx, row.id);
        if (roles.length > 0)
          throw new StintError(
            "CONFLICT",
            `The target ${row.name} is used by the roles ${roles.join(", ")}; move or delete them first.`,
          );
        await catalogStore.deleteTarget(tx, row.id);
        await audit.append(tx, actor, context, {
          action: "target.delete",
          outcome: "success",
          subject: `target:${row.name}`,
          details: { source: "api" },
        });
      });
    },
  };
}
