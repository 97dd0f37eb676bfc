/**
 * SCIM 2.0 provisioning of users and groups by an identity provider (Entra ID, Okta), authenticated as a service
 * identity the configuration names (`scimServices`). SCIM sees and changes only what it created (source `scim`):
 * a local account or group with the same name is never taken over; and each service only what it provisioned
 * (`provisioned_by`), a group's members only among its own users: another service's resources are 404 to it. Every change is one transaction with its audit
 * events; a user made inactive or deleted is disabled in that transaction (sessions and tokens revoked, pending
 * requests cancelled, activations revoked at the targets through the outbox), and a member removed from a group
 * loses what they activated through it, the same way.
 */
import type { Kysely } from "kysely";
import type { AppStore } from "../../db/index.js";
import type { Database } from "../../db/schema.js";
import type { Clock } from "../../lib/clock.js";
import { isUniqueViolation } from "../../lib/db.js";
import { newId } from "../../lib/ids.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import * as provisioning from "../identity/provisioning.js";
import { principalTeller } from "../identity/principal.mapper.js";
import { addMemberships, removeMemberships } from "../identity/group-membership.js";
import { disablePrincipal, scimMayEnable, type LifecycleDeps } from "../identity/principal-lifecycle.js";
import {
  etag,
  groupPatch,
  paging,
  parseFilter,
  ScimError,
  SCHEMA_GROUP,
  SCHEMA_LIST,
  SCHEMA_USER,
  ScimRefusal,
  signInSubjectFixed,
  adminDisabled,
  stintName,
  userFromResource,
  userPatch,
  type ScimSsoLink,
  type UserFields,
} from "./scim.rules.js";

export interface ScimServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  /** Service identities allowed to provision. */
  services: readonly string[];
  onAccessBasisLost?: LifecycleDeps["onAccessBasisLost"];
  index?: Pick<AccessIndex, "send">;
  /**
   * Where people reach Stint (the configured `publicUrl`, never a request's Host header): a resource's
   * `meta.location` (and a 201's Location) is the absolute `<publicUrl>/scim/v2/Users/<id>` (RFC 7643 §3.1).
   */
  publicUrl: string;
  /** The single sign-on issuer each SCIM service provisions for (`ssoProviders[].scim`, see `ssoLinksOf`). */
  ssoLinks?: readonly ScimSsoLink[];
  /** The id of the account a sign-in link of `issuer` names (the SSO module's `principalLinkedAt`). */
  linkedAccount?: (tx: Db, issuer: string, match: { subject: string } | { username: string }) => Promise<string | null>;
}

type Db = Kysely<Database>;
type ListQuery = { filter?: string | undefined; startIndex?: unknown; count?: unknown };
type UserRow = provisioning.PrincipalRow;
/** What SCIM provisioned; a deleted resource is kept as `scim-deleted`, hidden from SCIM. */
const SOURCE = "scim";
const DELETED = "scim-deleted";

export function createScimService(deps: ScimServiceDeps) {
  const { store, audit, clock } = deps;
  const base = `${deps.publicUrl.replace(/\/+$/, "")}/scim/v2`;

  const tellPrincipal = principalTeller(deps.index);
  const lifecycle: LifecycleDeps = { onAccessBasisLost: deps.onAccessBasisLost, tellPrincipal };

  /** Only the service identities the configuration names provision; anyone else is told no. */
  function allow(actor: Actor): string {
    if (actor.kind === "principal" && actor.principalKind === "service" && deps.services.includes(actor.name))
      return actor.name;
    throw new ScimError(403, "This identity may not provision users (it is not in scimServices).");
  }

  /**
   * What service `by` sees: what it provisioned, and rows recording no service (from before migrations 0033 and
   * 0043) only when it is the one configured, as it then made them; with several, those are no service's.
   */
  function ownerOf(by: string): provisioning.Owner {
    return { source: SOURCE, service: by, orUnowned: deps.services.length === 1 };
  }

  async function userResource(db: Db, row: UserRow, by: string) {
    const updated = new Date(row.updated_at);
    return {
      schemas: [SCHEMA_USER],
      id: row.id,
      externalId: row.external_id ?? undefined,
      userName: row.scim_name ?? row.name,
      displayName: row.display_name ?? undefined,
      active: row.status === "active",
      emails: row.email ? [{ value: row.email, primary: true, type: "work" }] : [],
      groups: (await provisioning.sourcedGroupsOf(db, row.id, ownerOf(by))).map((g) => ({
        value: g.id,
        display: g.scim_name ?? g.name,
      })),
      "urn:stint:params:scim:user": { name: row.name },
      meta: {
        resourceType: "User",
        created: new Date(row.created_at).toISOString(),
        lastModified: updated.toISOString(),
        version: etag(updated),
        location: `${base}/Users/${row.id}`,
      },
    };
  }

  async function scimUser(db: Db, id: string, by: string, lock = false): Promise<UserRow> {
    if (!/^[0-9a-f-]{36}$/i.test(id)) throw new ScimError(404, `There is no user ${id.slice(0, 64)}.`);
    const row = await provisioning.findSourcedPrincipal(db, id, ownerOf(by), lock);
    if (!row) throw new ScimError(404, `There is no user ${id}.`);
    return row;
  }

  /** Applies what a PUT or PATCH says, in the caller's transaction; the audit events of the change. */
  async function changeUser(tx: Db, row: UserRow, fields: UserFields, by: string): Promise<AuditInput[]> {
    // An account adopted from single sign-on keeps its name; the userName it was provisioned with is the one kept.
    const current = row.scim_name !== null ? stintName(row.scim_name) : row.name;
    if (fields.userName !== undefined && stintName(fields.userName) !== current)
      throw new ScimError(400, `userName cannot change the user's name in Stint (${row.name}).`, "mutability");
    const now = clock.now();
    const changes: Parameters<typeof provisioning.updatePrincipalAttributes>[2] = {};
    if (fields.userName !== undefined && fields.userName !== row.scim_name) changes.scim_name = fields.userName;
    if (fields.externalId !== undefined && fields.externalId !== row.external_id) {
      // Where sign-ins find SCIM's account by it, it names who signs in as the user (docs/security.md).
      if (deps.ssoLinks?.some((link) => link.service === by && link.match === "externalId"))
        throw signInSubjectFixed(row.name);
      changes.external_id = fields.externalId;
    }
    if (fields.displayName !== undefined && fields.displayName !== row.display_name)
      changes.display_name = fields.displayName;
    if (fields.email !== undefined && fields.email !== row.email) changes.email = fields.email;
    // An incident-response disable outlasts the identity provider's next sync: only an administrator undoes it.
    if (fields.active === true && row.status === "disabled" && !scimMayEnable(row.disabled_by))
      throw adminDisabled(row.name);
    // Accounts provisioned before migration 0033 become the single configured service's at its next change.
    if (row.provisioned_by === null) changes.provisioned_by = by;
    const events: AuditInput[] = [];
    if (Object.keys(changes).length > 0) {
      await provisioning.updatePrincipalAttributes(tx, row.id, changes, now);
      await tellPrincipal(tx, row.id);
      events.push({
        action: "user.update",
        outcome: "success",
        subject: `user:${row.name}`,
        details: { source: "scim", changed: Object.keys(changes) },
      });
    }
    if (fields.active === false && row.status === "active") {
      const result = await disablePrincipal(
        tx,
        lifecycle,
        row,
        now,
        { by, reason: "deprovisioned by SCIM" },
        `scim:${by}`,
      );
      events.push(
        {
          action: "user.disable",
          outcome: "success",
          subject: `user:${row.name}`,
          reason: "deprovisioned by SCIM",
          details: {
            source: "scim",
            sessionsEnded: result.sessionsEnded,
            tokensRevoked: result.tokensRevoked,
            mintedTokensLive: result.mintedTokensLive,
            requestsEnded: result.ended.length,
          },
        },
        ...result.ended,
      );
    } else if (fields.active === true && row.status === "disabled") {
      await provisioning.updatePrincipalAttributes(tx, row.id, { status: "active", disabled_by: null }, now);
      await tellPrincipal(tx, row.id);
      events.push({
        action: "user.enable",
        outcome: "success",
        subject: `user:${row.name}`,
        details: { source: "scim" },
      });
    }
    return events;
  }

  function checkVersion(row: { updated_at: Date | string }, ifMatch: string | undefined): void {
    if (ifMatch !== undefined && ifMatch !== "*" && ifMatch !== etag(new Date(row.updated_at)))
      throw new ScimError(412, "The resource changed since that version (If-Match).");
  }

  async function groupRow(db: Db, id: string, by: string, lock = false) {
    if (!/^[0-9a-f-]{36}$/i.test(id)) throw new ScimError(404, `There is no group ${id.slice(0, 64)}.`);
    const row = await provisioning.findSourcedGroup(db, id, ownerOf(by), lock);
    if (!row) throw new ScimError(404, `There is no group ${id}.`);
    return row;
  }

  async function groupResource(
    db: Db,
    row: { id: string; name: string; scim_name: string | null; external_id: string | null; created_at: Date | string },
  ) {
    const members = await provisioning.membersOf(db, row.id);
    return {
      schemas: [SCHEMA_GROUP],
      id: row.id,
      externalId: row.external_id ?? undefined,
      displayName: row.scim_name ?? row.name,
      members: members.map((m) => ({ value: m.id, display: m.scim_name ?? m.name, type: "User" })),
      meta: {
        resourceType: "Group",
        created: new Date(row.created_at).toISOString(),
        location: `${base}/Groups/${row.id}`,
      },
    };
  }

  /** Members by SCIM id: only users this SCIM service provisioned. */
  async function memberRows(tx: Db, ids: string[], by: string) {
    if (ids.length === 0) return [];
    for (const id of ids)
      if (!/^[0-9a-f-]{36}$/i.test(id)) throw new ScimError(400, `No user ${id.slice(0, 64)}.`, "invalidValue");
    const rows = await provisioning.sourcedPrincipalsByIds(tx, ids, ownerOf(by));
    const missing = ids.filter((id) => !rows.some((r) => r.id === id));
    if (missing.length > 0) throw new ScimError(400, `No provisioned user ${missing[0]}.`, "invalidValue");
    return rows;
  }

  /** Adds and removes members in the caller's transaction; those removed lose what they activated through it. */
  async function changeMembers(
    tx: Db,
    group: { id: string; name: string },
    add: string[],
    remove: string[],
    by: string,
  ): Promise<AuditInput[]> {
    const memberships = async (ids: string[]) =>
      (await memberRows(tx, [...new Set(ids)], by)).map((principal) => ({ group, principal }));
    return [
      ...(await addMemberships(tx, await memberships(add), clock.now(), { source: SOURCE })),
      ...(await removeMemberships(tx, lifecycle, await memberships(remove), { by, source: SOURCE })),
    ];
  }

  /**
   * A name another resource holds (a local one too: it is never taken over), or an externalId another SCIM resource
   * holds (`*_scim_external_id`, migration 0020), is SCIM's 409 `uniqueness`; the sentence says which clashed.
   */
  function uniqueness(what: "user" | "group", clashing: { name?: string; externalId?: string | null }) {
    return (error: unknown): never => {
      if (!isUniqueViolation(error)) throw error;
      const constraint = (error as { constraint?: unknown }).constraint;
      if (typeof constraint === "string" && constraint.endsWith("_scim_external_id"))
        throw new ScimError(409, `Another ${what} has the externalId ${String(clashing.externalId)}.`, "uniqueness");
      // A PUT or PATCH never renames (400 `mutability` above), so only a creation clashes on a name.
      if (clashing.name === undefined) throw error;
      throw new ScimError(
        409,
        `A ${what} named ${clashing.name} already exists (a local ${what === "user" ? "account" : "group"} is never taken over).`,
        "uniqueness",
      );
    };
  }

  /** PUT and PATCH of a user: the fields `parse` reads from the body, applied under If-Match. */
  async function updateUser(
    actor: Actor,
    id: string,
    fields: (body: unknown) => UserFields,
    body: unknown,
    ifMatch: string | undefined,
    context: CallContext,
  ) {
    const by = allow(actor);
    const change = fields(body);
    return store
      .transaction(async (tx) => {
        const row = await scimUser(tx, id, by, true);
        checkVersion(row, ifMatch);
        const events = await changeUser(tx, row, change, by);
        if (events.length > 0) await audit.append(tx, actor, context, events);
        return userResource(tx, (await provisioning.findPrincipalById(tx, row.id))!, by);
      })
      .catch(uniqueness("user", { externalId: change.externalId }))
      .catch((error: unknown) => refuseAudited(actor, context, by, error));
  }

  /**
   * A change SCIM may not make (`ScimRefusal`): nothing of the request is applied, the attempt is audited (outcome
   * denied) and the client told 400 `mutability`, which Entra and Okta show in their provisioning logs.
   */
  async function refuseAudited(actor: Actor, context: CallContext, by: string, error: unknown): Promise<never> {
    if (!(error instanceof ScimRefusal)) throw error;
    await audit.record(actor, context, {
      action: error.action,
      outcome: "denied",
      subject: `user:${error.user}`,
      reason: error.why,
      details: { source: "scim", by },
    });
    throw new ScimError(400, error.sentence, "mutability");
  }

  /**
   * A POST of a person single sign-on already created an account for, through the issuer this SCIM service
   * provisions for (matched by userName or externalId, as the provider's `scim.match` says): that account becomes
   * SCIM's (source `scim`), so SCIM's deprovisioning reaches it. Null when there is none to adopt. An account of
   * another source, or one linked through another issuer too, is never taken (409 `uniqueness`, or a new user).
   */
  async function adopt(
    tx: Db,
    fields: UserFields & { userName: string },
    by: string,
  ): Promise<{ id: string; events: AuditInput[] } | null> {
    const link = deps.ssoLinks?.find((l) => l.service === by);
    if (!link || !deps.linkedAccount) return null;
    const match =
      link.match === "userName"
        ? { username: fields.userName }
        : typeof fields.externalId === "string"
          ? { subject: fields.externalId }
          : null;
    if (!match) return null;
    const id = await deps.linkedAccount(tx, link.issuer, match);
    if (!id) return null;
    const row = (await provisioning.lockPrincipal(tx, id))!;
    if (row.source !== "oidc" || row.kind !== "user")
      throw new ScimError(409, `The account of ${fields.userName} is already provisioned.`, "uniqueness");
    const now = clock.now();
    await provisioning.updatePrincipalAttributes(
      tx,
      row.id,
      {
        source: SOURCE,
        provisioned_by: by,
        scim_name: fields.userName,
        external_id: fields.externalId ?? null,
        ...(fields.email !== undefined ? { email: fields.email } : {}),
        ...(fields.displayName !== undefined ? { display_name: fields.displayName } : {}),
      },
      now,
    );
    await tellPrincipal(tx, row.id);
    const events: AuditInput[] = [
      {
        action: "user.update",
        outcome: "success",
        subject: `user:${row.name}`,
        reason: `provisioned by SCIM: the account a sign-in through ${link.provider} created`,
        details: {
          source: "scim",
          by,
          userName: fields.userName,
          externalId: fields.externalId ?? null,
          linked: { provider: link.provider, issuer: link.issuer, match: link.match },
          ...(row.status === "disabled" ? { keptDisabled: true } : {}),
        },
      },
    ];
    if (fields.active === false && row.status === "active") {
      const adopted = (await provisioning.findPrincipalById(tx, row.id))!;
      events.push(...(await changeUser(tx, adopted, { active: false }, by)));
    }
    return { id: row.id, events };
  }

  /**
   * One page of what SCIM provisioned in `table` (its ids, in creation order) and how many match in all, for a
   * filter on the name attribute (matched through the Stint name it maps to), `externalId` or `id`.
   */
  async function listed(table: provisioning.SourcedTable, nameAttribute: string, query: ListQuery, by: string) {
    const { offset, limit } = paging(query.startIndex, query.count);
    let criterion: provisioning.SourcedCriterion;
    if (query.filter !== undefined) {
      const { attribute, value } = parseFilter(query.filter, [nameAttribute, "externalId", "id"]);
      criterion =
        attribute === nameAttribute
          ? { by: "name", value: stintName(value) }
          : { by: attribute === "externalId" ? "externalId" : "id", value };
      // A user adopted from single sign-on keeps its own name: its userName is found as given, too.
      if (attribute === nameAttribute && table === "principals")
        criterion = { by: "name", value: stintName(value), raw: value };
    }
    return { ...(await provisioning.pageSourced(store.db, table, ownerOf(by), criterion, offset, limit)), offset };
  }

  function listResponse(found: { total: number; offset: number }, resources: unknown[]) {
    return {
      schemas: [SCHEMA_LIST],
      totalResults: found.total,
      startIndex: found.offset + 1,
      itemsPerPage: resources.length,
      Resources: resources,
    };
  }

  return {
    async createUser(actor: Actor, body: unknown, context: CallContext) {
      const by = allow(actor);
      const fields = userFromResource(body);
      const name = stintName(fields.userName);
      return store
        .transaction(async (tx) => {
          const adopted = await adopt(tx, fields, by);
          if (adopted) {
            await audit.append(tx, actor, context, adopted.events);
            return userResource(tx, (await provisioning.findPrincipalById(tx, adopted.id))!, by);
          }
          const now = clock.now();
          const id = newId();
          await provisioning.insertPrincipal(tx, {
            id,
            kind: "user",
            name,
            email: fields.email ?? null,
            display_name: fields.displayName ?? null,
            platform_roles: ["user"],
            status: fields.active === false ? "disabled" : "active",
            source: SOURCE,
            external_id: fields.externalId ?? null,
            scim_name: fields.userName,
            provisioned_by: by,
            disabled_by: fields.active === false ? `scim:${by}` : null,
            now,
          });
          await tellPrincipal(tx, id);
          await audit.append(tx, actor, context, {
            action: "user.create",
            outcome: "success",
            subject: `user:${name}`,
            details: { source: "scim", by, userName: fields.userName, externalId: fields.externalId ?? null },
          });
          return userResource(tx, (await provisioning.findPrincipalById(tx, id))!, by);
        })
        .catch(uniqueness("user", { name, externalId: fields.externalId }));
    },

    async getUser(actor: Actor, id: string) {
      const by = allow(actor);
      return userResource(store.db, await scimUser(store.db, id, by), by);
    },

    async listUsers(actor: Actor, query: ListQuery) {
      const by = allow(actor);
      const found = await listed("principals", "userName", query, by);
      const rows = await provisioning.principalsByIds(store.db, found.ids);
      return listResponse(found, await Promise.all(rows.map((row) => userResource(store.db, row, by))));
    },

    replaceUser(actor: Actor, id: string, body: unknown, ifMatch: string | undefined, context: CallContext) {
      return updateUser(actor, id, userFromResource, body, ifMatch, context);
    },

    patchUser(actor: Actor, id: string, body: unknown, ifMatch: string | undefined, context: CallContext) {
      return updateUser(actor, id, userPatch, body, ifMatch, context);
    },

    /** DELETE disables the user (its history stays) and hides it from SCIM: a later GET answers 404. */
    async deleteUser(actor: Actor, id: string, context: CallContext): Promise<void> {
      const by = allow(actor);
      await store.transaction(async (tx) => {
        const row = await scimUser(tx, id, by, true);
        const events = await changeUser(tx, row, { active: false }, by);
        await provisioning.updatePrincipalAttributes(tx, row.id, { source: DELETED }, clock.now());
        await audit.append(tx, actor, context, [
          ...events,
          { action: "user.deprovision", outcome: "success", subject: `user:${row.name}`, details: { source: "scim" } },
        ]);
      });
    },

    async createGroup(actor: Actor, body: unknown, context: CallContext) {
      const by = allow(actor);
      const group = body as { displayName?: unknown; externalId?: unknown; members?: unknown } | null;
      if (typeof group?.displayName !== "string" || group.displayName === "")
        throw new ScimError(400, "displayName is required.", "invalidValue");
      const displayName = group.displayName.slice(0, 256);
      const name = stintName(displayName);
      const externalId = typeof group.externalId === "string" ? group.externalId.slice(0, 256) : null;
      return store
        .transaction(async (tx) => {
          const id = newId();
          const now = clock.now();
          await provisioning.insertGroup(tx, {
            id,
            name,
            source: SOURCE,
            externalId,
            scimName: displayName,
            provisionedBy: by,
            now,
          });
          const members = Array.isArray(group.members)
            ? groupPatch({ Operations: [{ op: "add", path: "members", value: group.members }] }).add
            : [];
          const events = await changeMembers(tx, { id, name }, members, [], by);
          await audit.append(tx, actor, context, [
            {
              action: "group.create",
              outcome: "success",
              subject: `group:${name}`,
              details: { source: "scim", displayName, externalId },
            },
            ...events,
          ]);
          return groupResource(tx, await groupRow(tx, id, by));
        })
        .catch(uniqueness("group", { name, externalId }));
    },

    async getGroup(actor: Actor, id: string) {
      const by = allow(actor);
      return groupResource(store.db, await groupRow(store.db, id, by));
    },

    async listGroups(actor: Actor, query: ListQuery) {
      const by = allow(actor);
      const found = await listed("groups", "displayName", query, by);
      const rows = await provisioning.groupsByIds(store.db, found.ids);
      return listResponse(found, await Promise.all(rows.map((row) => groupResource(store.db, row))));
    },

    async patchGroup(actor: Actor, id: string, body: unknown, context: CallContext) {
      const by = allow(actor);
      const patch = groupPatch(body);
      return store
        .transaction(async (tx) => {
          const group = await groupRow(tx, id, by, true);
          // A group created before migration 0043 becomes the single configured service's at its next change.
          if (group.provisioned_by === null)
            await provisioning.updateGroupAttributes(tx, group.id, { provisioned_by: by });
          if (patch.displayName !== undefined && stintName(patch.displayName) !== group.name)
            throw new ScimError(
              400,
              `displayName cannot change the group's name in Stint (${group.name}).`,
              "mutability",
            );
          let { add, remove } = patch;
          if (patch.replace !== undefined) {
            const current = await provisioning.memberIdsOf(tx, group.id);
            const keep = new Set(patch.replace);
            remove = [...remove, ...current.filter((p) => !keep.has(p))];
            add = [...add, ...patch.replace];
          }
          const events = await changeMembers(tx, group, add, remove, by);
          if (patch.externalId !== undefined && patch.externalId !== group.external_id) {
            await provisioning.updateGroupAttributes(tx, group.id, { external_id: patch.externalId });
            events.push({
              action: "group.update",
              outcome: "success",
              subject: `group:${group.name}`,
              details: { source: "scim", changed: ["externalId"] },
            });
          }
          if (events.length > 0) await audit.append(tx, actor, context, events);
          return groupResource(tx, group);
        })
        .catch(uniqueness("group", { externalId: patch.externalId }));
    },

    /** DELETE empties the group (members lose what they activated through it) and hides it from SCIM. */
    async deleteGroup(actor: Actor, id: string, context: CallContext): Promise<void> {
      const by = allow(actor);
      await store.transaction(async (tx) => {
        const group = await groupRow(tx, id, by, true);
        const events = await changeMembers(tx, group, [], await provisioning.memberIdsOf(tx, group.id), by);
        await provisioning.updateGroupAttributes(tx, group.id, { source: DELETED });
        await audit.append(tx, actor, context, [
          ...events,
          {
            action: "group.deprovision",
            outcome: "success",
            subject: `group:${group.name}`,
            details: { source: "scim" },
          },
        ]);
      });
    },
  };
}

export type ScimService = ReturnType<typeof createScimService>;
