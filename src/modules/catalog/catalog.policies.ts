/** Policies: list, read, create, change and delete, each authorized first and audited in its transaction. */
import type { PolicyDto, PolicyInput } from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { diffEntity } from "./catalog.plan.rules.js";
import { riskProblem } from "./catalog.rules.js";
import * as catalogStore from "./catalog.store.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import { quote, invalid, normalizeSpec, policyDto } from "./catalog.helpers.js";
import type { CatalogContext } from "./catalog.context.js";

export function policyUseCases(ctx: CatalogContext) {
  const { store, audit, clock, write, policyIssues, requirePolicy, fourEyesGuard } = ctx;
  return {
    async listPolicies(actor: Actor): Promise<PolicyDto[]> {
      authorize(actor, "catalog.read");
      const roles = await catalogStore.roleNamesByPolicy(store.db);
      return (await catalogStore.listPolicies(store.db)).map((row) => policyDto(row, roles.get(row.id) ?? []));
    },

    async getPolicy(actor: Actor, ref: string): Promise<PolicyDto> {
      authorize(actor, "catalog.read");
      const row = await requirePolicy(store.db, ref);
      return policyDto(
        row,
        (await catalogStore.rolesUsingPolicy(store.db, row.id)).map((r) => r.name),
      );
    },

    async createPolicy(actor: Actor, input: PolicyInput, context: CallContext): Promise<PolicyDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const issues = await policyIssues(tx, input.spec);
        if (issues.length > 0) throw invalid(issues);
        const now = clock.now();
        const id = newId();
        await catalogStore.insertPolicy(
          tx,
          id,
          { name: input.name, description: input.description ?? null, spec: input.spec },
          now,
        );
        await audit.append(tx, actor, context, {
          action: "policy.create",
          outcome: "success",
          subject: `policy:${input.name}`,
          details: { source: "api", spec: input.spec },
        });
        return policyDto((await catalogStore.findPolicy(tx, id))!, []);
      }, `A policy named ${input.name} already exists.`);
    },

    async updatePolicy(actor: Actor, ref: string, input: PolicyInput, context: CallContext): Promise<PolicyDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const row = await requirePolicy(tx, ref);
        // Nobody changes the policy of a role they are eligible for (dropping its approval, say).
        const ownAccess = await guardOwnAccess(tx, actor);
        const roles = await catalogStore.rolesUsingPolicy(tx, row.id);
        const issues = await policyIssues(tx, input.spec);
        for (const role of roles) {
          const problem = riskProblem(input.spec, role.risk);
          if (problem)
            issues.push({ path: "body.spec.approval", message: `role ${quote(role.name)} uses it: ${problem}` });
        }
        if (issues.length > 0) throw invalid(issues);
        const before = { name: row.name, description: row.description, spec: normalizeSpec(row.spec) };
        const after = { name: input.name, description: input.description ?? null, spec: input.spec };
        const fields = diffEntity("policy", before, after);
        if (before.name !== after.name) fields.unshift({ field: "name", from: before.name, to: after.name });
        const names = roles.map((r) => r.name);
        if (fields.length === 0) return policyDto(row, names);
        await fourEyesGuard(
          tx,
          actor,
          { action: "update", kind: "policy", name: row.name, fields },
          { prune: false, policies: [{ ...after, name: row.name, spec: normalizeSpec(after.spec) }] },
        );
        await catalogStore.updatePolicy(tx, row.id, after, clock.now());
        await ownAccess.check(tx, clock.now());
        await audit.append(tx, actor, context, {
          action: "policy.update",
          outcome: "success",
          subject: `policy:${row.name}`,
          details: { source: "api", fields },
        });
        return policyDto((await catalogStore.findPolicy(tx, row.id))!, names);
      }, `A policy named ${input.name} already exists.`);
    },

    async deletePolicy(actor: Actor, ref: string, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requirePolicy(tx, ref);
        const roles = await catalogStore.rolesUsingPolicy(tx, row.id);
        if (roles.length > 0)
          throw new StintError(
            "CONFLICT",
            `The policy ${row.name} is used by the roles ${roles.map((r) => r.name).join(", ")}; give them another policy first.`,
          );
        await catalogStore.deletePolicy(tx, row.id);
        await audit.append(tx, actor, context, {
          action: "policy.delete",
          outcome: "success",
          subject: `policy:${row.name}`,
          details: { source: "api" },
        });
      });
    },
  };
}
