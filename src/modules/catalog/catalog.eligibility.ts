/** Eligibility: who may activate which role, and until when; removing or narrowing it ends what stood on it. */
import type { EligibilityDto, EligibilityInput, EligibilityUpdate } from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { actorLabel } from "../audit/audit.service.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { eligibilityName } from "./catalog.rules.js";
import * as catalogStore from "./catalog.store.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import type { FieldChange } from "./catalog.types.js";
import { type Issue, quote, iso, invalid, eligibilityDto } from "./catalog.helpers.js";
import type { CatalogContext } from "./catalog.context.js";

export function eligibilityUseCases(ctx: CatalogContext) {
  const { deps, store, audit, clock, write, requireEligibility, fourEyesGuard } = ctx;
  return {
    async listEligibilities(actor: Actor, filter: catalogStore.EligibilityFilter = {}): Promise<EligibilityDto[]> {
      authorize(actor, "catalog.read");
      const now = clock.now();
      return (await catalogStore.listEligibilities(store.db, filter)).map((row) => eligibilityDto(row, now));
    },

    async getEligibility(actor: Actor, id: string): Promise<EligibilityDto> {
      authorize(actor, "catalog.read");
      return eligibilityDto(await requireEligibility(store.db, id), clock.now());
    },

    async createEligibility(actor: Actor, input: EligibilityInput, context: CallContext): Promise<EligibilityDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const now = clock.now();
        // Nobody makes themselves eligible (directly or through a group they are in): checked on the outcome.
        const ownAccess = await guardOwnAccess(tx, actor);
        const issues: Issue[] = [];
        const role = await catalogStore.findRole(tx, input.role);
        if (!role) issues.push({ path: "body.role", message: `unknown role ${quote(input.role)}` });
        const principal = input.principal !== undefined ? await catalogStore.findPrincipal(tx, input.principal) : null;
        if (input.principal !== undefined && !principal)
          issues.push({ path: "body.principal", message: `unknown user or service ${quote(input.principal)}` });
        const group = input.group !== undefined ? await catalogStore.findGroup(tx, input.group) : null;
        if (input.group !== undefined && !group)
          issues.push({ path: "body.group", message: `unknown group ${quote(input.group)}` });
        const startsAt = input.startsAt !== undefined ? new Date(input.startsAt) : now;
        const endsAt = input.endsAt ? new Date(input.endsAt) : null;
        if (endsAt && endsAt.getTime() <= startsAt.getTime())
          issues.push({ path: "body.endsAt", message: "must be after startsAt" });
        if (issues.length > 0 || !role) throw invalid(issues);
        const subjectName = (principal?.name ?? group?.name)!;
        const name = eligibilityName({
          role: role.name,
          subjectKind: principal ? "user" : "group",
          subject: subjectName,
        });
        const subject = principal ? { principalId: principal.id } : { groupId: group!.id };
        const existing = await catalogStore.findEligibilitiesOf(tx, role.id, subject);
        if (existing.length > 0)
          throw new StintError(
            "ALREADY_EXISTS",
            `${subjectName} is already eligible for ${role.name} (eligibility ${existing[0]!.id}); change that one instead.`,
          );
        await fourEyesGuard(
          tx,
          actor,
          { action: "create", kind: "eligibility", name, fields: [] },
          {
            prune: false,
            eligibility: [
              {
                role: role.name,
                subjectKind: principal ? "user" : "group",
                subject: subjectName,
                // Not said: "now" (held, that is when it is approved).
                from: input.startsAt !== undefined ? startsAt.toISOString() : undefined,
                until: endsAt?.toISOString() ?? null,
                reason: input.reason ?? null,
              },
            ],
          },
        );
        const id = newId();
        await catalogStore.insertEligibility(
          tx,
          id,
          {
            role_id: role.id,
            principal_id: principal?.id ?? null,
            group_id: group?.id ?? null,
            starts_at: startsAt,
            ends_at: endsAt,
            granted_by: actorLabel(actor).actor,
            reason: input.reason ?? null,
          },
          now,
        );
        await audit.append(tx, actor, context, {
          action: "eligibility.create",
          outcome: "success",
          subject: `eligibility:${name}`,
          reason: input.reason ?? null,
          details: {
            source: "api",
            eligibilityId: id,
            startsAt: startsAt.toISOString(),
            endsAt: endsAt?.toISOString() ?? null,
          },
        });
        await ownAccess.check(tx, now);
        return eligibilityDto((await catalogStore.findEligibility(tx, id))!, now);
      }, "That eligibility already exists.");
    },

    async updateEligibility(
      actor: Actor,
      id: string,
      input: EligibilityUpdate,
      context: CallContext,
    ): Promise<EligibilityDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const now = clock.now();
        const row = await requireEligibility(tx, id, true);
        const ownAccess = await guardOwnAccess(tx, actor);
        const startsAt = input.startsAt !== undefined ? new Date(input.startsAt) : new Date(row.starts_at);
        const endsAt = input.endsAt ? new Date(input.endsAt) : null;
        if (endsAt && endsAt.getTime() <= startsAt.getTime())
          throw invalid([{ path: "body.endsAt", message: "must be after startsAt" }]);
        const fields: FieldChange[] = [];
        const compare = (field: string, from: string | null, to: string | null) => {
          if (from !== to) fields.push({ field, from, to });
        };
        compare("startsAt", iso(row.starts_at), startsAt.toISOString());
        compare("endsAt", row.ends_at ? iso(row.ends_at) : null, endsAt?.toISOString() ?? null);
        compare("reason", row.reason, input.reason ?? null);
        if (fields.length === 0) return eligibilityDto(row, now);
        const name = eligibilityName({
          role: row.role_name,
          subjectKind: row.principal_name !== null ? "user" : "group",
          subject: (row.principal_name ?? row.group_name)!,
        });
        await fourEyesGuard(
          tx,
          actor,
          {
            action: "update",
            kind: "eligibility",
            name,
            fields: fields.map((f) => ({
              ...f,
              field: f.field === "startsAt" ? "from" : f.field === "endsAt" ? "until" : f.field,
            })),
          },
          {
            prune: false,
            eligibility: [
              {
                role: row.role_name,
                subjectKind: row.principal_name !== null ? "user" : "group",
                subject: (row.principal_name ?? row.group_name)!,
                from: startsAt.toISOString(),
                until: endsAt?.toISOString() ?? null,
                reason: input.reason ?? null,
              },
            ],
          },
        );
        await catalogStore.updateEligibility(tx, row.id, {
          starts_at: startsAt,
          ends_at: endsAt,
          reason: input.reason ?? null,
        });
        await ownAccess.check(tx, now);
        // An eligibility moved to start later or end sooner may no longer carry what is active on it.
        const ended =
          (await deps.onAccessBasisLost?.(
            tx,
            { roleIds: [row.role_id] },
            { by: actorLabel(actor).actor, reason: "its eligibility changed" },
          )) ?? [];
        await audit.append(tx, actor, context, [
          {
            action: "eligibility.update",
            outcome: "success",
            subject: `eligibility:${name}`,
            details: { source: "api", eligibilityId: row.id, fields },
          },
          ...ended,
        ]);
        return eligibilityDto((await catalogStore.findEligibility(tx, row.id))!, now);
      }, "That eligibility already exists.");
    },

    /**
     * Four-eyes for eligibility another use case makes for users (`stint discover --convert`): throws the
     * `HeldAsFile` of all `entries` together when making any of them widens access at a covered tier, as
     * createEligibility would for each; returns when four-eyes lets them be made at once. Changes nothing.
     */
    async guardNewEligibility(actor: Actor, entries: { role: string; principal: string; reason: string }[]) {
      authorize(actor, "catalog.write");
      if (entries.length === 0) return;
      const eligibility = entries.map((e) => ({
        role: e.role,
        subjectKind: "user" as const,
        subject: e.principal,
        from: undefined,
        until: null,
        reason: e.reason,
      }));
      await write(async (tx) => {
        for (const e of eligibility)
          await fourEyesGuard(
            tx,
            actor,
            { action: "create", kind: "eligibility", name: eligibilityName(e), fields: [] },
            { prune: false, eligibility },
          );
      });
    },

    async removeEligibility(actor: Actor, id: string, reason: string | undefined, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requireEligibility(tx, id, true);
        await catalogStore.removeEligibility(tx, row.id, clock.now());
        const name = eligibilityName({
          role: row.role_name,
          subjectKind: row.principal_name !== null ? "user" : "group",
          subject: (row.principal_name ?? row.group_name)!,
        });
        const ended =
          (await deps.onAccessBasisLost?.(
            tx,
            { roleIds: [row.role_id] },
            { by: actorLabel(actor).actor, reason: reason ? `eligibility removed (${reason})` : "eligibility removed" },
          )) ?? [];
        await audit.append(tx, actor, context, [
          {
            action: "eligibility.remove",
            outcome: "success",
            subject: `eligibility:${name}`,
            reason: reason ?? null,
            details: { source: "api", eligibilityId: row.id },
          },
          ...ended,
        ]);
      });
    },
  };
}
