/**
 * SCIM 2.0 (issue 15, acceptance 3): the request sequences Entra ID and Okta send when a user joins, changes group
 * and leaves (from their published SCIM documentation: Entra's "develop a SCIM endpoint" tutorial, Okta's SCIM 2.0
 * reference) run against the server. At the leave, in the same transaction: the user is disabled, a pending request
 * cancelled, and an active activation on the machine's PostgreSQL ends, its membership revoked at the server by the
 * outbox job the transaction queued. A caller who is not the configured SCIM service gets nothing; a local account
 * with the same name is never taken over.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const hex = randomBytes(4).toString("hex");
const pgDatabase = `stint_scim_${hex}`;
const pgReader = `stint_scim_reader_${hex}`;
const ENTRA = `entra${hex}`;
const OKTA = `okta${hex}`;
const PASSWORD = "a-password-the-idp-never-sees-1";

let h: TargetsHarness;
let pgRoot: pg.Client;
const tokens = new Map<string, string>();

interface Reply {
  status: number;
  headers: Record<string, unknown>;
  body: Record<string, unknown> & { Resources?: Record<string, unknown>[]; detail?: string; scimType?: string };
}

async function scim(
  service: string,
  method: string,
  url: string,
  payload?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await h.server.app.inject({
    method: method as "GET",
    url: `/scim/v2${url}`,
    headers: { authorization: `Bearer ${tokens.get(service)}`, "content-type": "application/scim+json", ...headers },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });
  return { status: res.statusCode, headers: res.headers, body: res.body ? res.json() : {} } as Reply;
}

async function memberOfReader(login: string): Promise<boolean> {
  const res = await pgRoot.query(
    "select 1 from pg_auth_members m join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member where r.rolname = $1 and u.rolname = $2",
    [pgReader, login],
  );
  return (res.rowCount ?? 0) > 0;
}

/** Signs a SCIM user in (an administrator set a password: SSO is what would do it in production). */
async function signIn(name: string): Promise<string> {
  // Their login at the PostgreSQL target (the default identity mapping: the Stint name).
  await pgRoot.query(`create role "${name}" login`);
  const set = await h.admin("PUT", `/v1/users/${name}/password`, { password: PASSWORD });
  expect(set.status, JSON.stringify(set.body)).toBe(200);
  return h.server.login(name, PASSWORD);
}

async function as(auth: string, method: "GET" | "POST", url: string, payload?: object) {
  const res = await h.server.app.inject({
    method,
    url,
    headers: { authorization: auth },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
}

/** The Stint user behind a SCIM id, as the admin API shows it. */
async function stintUser(scimId: string) {
  const users = await h.admin("GET", "/v1/users");
  return (
    users.body.items as { id: string; name: string; status: string; disabledBy: string | null; groups: string[] }[]
  ).find((u) => u.id === scimId)!;
}

beforeAll(async () => {
  pgRoot = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
  await pgRoot.connect();
  await pgRoot.query(`create database ${pgDatabase}`);
  await pgRoot.query(`create role ${pgReader} nologin`);
  h = await targetsHarness({ env: { STINT_SCIM_SERVICES: `${ENTRA},${OKTA}` } });
  for (const service of [ENTRA, OKTA, `other${hex}`]) {
    expect((await h.admin("POST", "/v1/users", { name: service, kind: "service" })).status).toBe(201);
    const token = await h.admin("POST", "/v1/tokens", { name: "scim", principal: service, expiresIn: "1d" });
    tokens.set(service, token.body.token as string);
  }
});

afterAll(async () => {
  await h?.server.cleanup();
  if (pgRoot) {
    await pgRoot.query(`drop database if exists ${pgDatabase} with (force)`).catch(() => undefined);
    const logins = await pgRoot.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
      `%${hex}%`,
    ]);
    for (const r of logins.rows) await pgRoot.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
    await pgRoot.end();
  }
});

/** A role on the PostgreSQL target, eligible through `group`, plus one that needs an approval (stays pending). */
async function catalogFor(group: string, suffix: string) {
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy(`scim-self-${suffix}`)}
  - name: scim-approval-${suffix}
    mfa: { required: false }
    maxDuration: 8h
    approval:
      stages:
        - approvers: { users: [admin] }
          count: 1
targets:
  - name: scim-pg-${suffix}
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${pgDatabase}?sslmode=disable
  - name: scim-int-${suffix}
    kind: internal
roles:
  - name: scim-reader-${suffix}
    target: scim-pg-${suffix}
    entitlement: { role: ${pgReader} }
    policy: scim-self-${suffix}
    risk: medium
  - name: scim-approved-${suffix}
    target: scim-int-${suffix}
    policy: scim-approval-${suffix}
    risk: high
eligibility:
  - role: scim-reader-${suffix}
    groups: [${group}]
  - role: scim-approved-${suffix}
    groups: [${group}]
`);
}

describe("SCIM: Entra ID's sequence", () => {
  it("join, group change and leave end with the user disabled, the pending request cancelled and the activation revoked at PostgreSQL", async () => {
    const userName = `Ada.Lovelace.${hex}@Contoso.com`;
    // Entra looks the user up first, then creates it.
    const lookup = await scim(ENTRA, "GET", `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`);
    expect(lookup.status).toBe(200);
    expect(lookup.body).toMatchObject({ totalResults: 0, Resources: [] });
    expect(lookup.headers["content-type"]).toContain("application/scim+json");
    const created = await scim(ENTRA, "POST", "/Users", {
      schemas: [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
      ],
      externalId: `ext-${hex}`,
      userName,
      active: true,
      emails: [{ primary: true, type: "work", value: userName }],
      meta: { resourceType: "User" },
      name: { formatted: "Ada Lovelace", familyName: "Lovelace", givenName: "Ada" },
      roles: [],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id as string;
    expect(created.body).toMatchObject({
      userName,
      active: true,
      externalId: `ext-${hex}`,
      displayName: "Ada Lovelace",
    });
    const name = (created.body["urn:stint:params:scim:user"] as { name: string }).name;
    expect(name).toBe(`ada.lovelace.${hex}.contoso.com`);
    const found = await scim(ENTRA, "GET", `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`);
    expect(found.body.totalResults).toBe(1);
    // Entra's attribute update: capitalised ops, a filtered path for the e-mail.
    const updated = await scim(ENTRA, "PATCH", `/Users/${id}`, {
      schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
      Operations: [
        { op: "Replace", path: 'emails[type eq "work"].value', value: `ada.${hex}@contoso.com` },
        { op: "Replace", path: "name.familyName", value: "Byron" },
        { op: "Replace", path: "displayName", value: "Ada King" },
      ],
    });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expect(updated.body).toMatchObject({ displayName: "Ada King", emails: [{ value: `ada.${hex}@contoso.com` }] });

    // A group, then the user joins it: the group carries the roles' eligibility.
    const groupName = `DB Readers ${hex}`;
    const noGroup = await scim(ENTRA, "GET", `/Groups?filter=${encodeURIComponent(`displayName eq "${groupName}"`)}`);
    expect(noGroup.body.totalResults).toBe(0);
    const group = await scim(ENTRA, "POST", "/Groups", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"],
      externalId: `grp-${hex}`,
      displayName: groupName,
      members: [],
      meta: { resourceType: "Group" },
    });
    expect(group.status, JSON.stringify(group.body)).toBe(201);
    const groupId = group.body.id as string;
    await catalogFor(`db.readers.${hex}`, `e${hex}`);
    const joined = await scim(ENTRA, "PATCH", `/Groups/${groupId}`, {
      schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
      Operations: [{ op: "Add", path: "members", value: [{ value: id }] }],
    });
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect((await stintUser(id)).groups).toContain(`db.readers.${hex}`);

    // The user works: one activation on PostgreSQL, one request waiting for approval.
    const auth = await signIn(name);
    const activation = await as(auth, "POST", "/v1/activation-requests", {
      role: `scim-reader-e${hex}`,
      duration: "1h",
      reason: "quarterly report queries on the ledger",
    });
    expect(activation.status, JSON.stringify(activation.body)).toBe(201);
    await h.drainOutbox();
    expect(await memberOfReader(name)).toBe(true);
    const pending = await as(auth, "POST", "/v1/activation-requests", {
      role: `scim-approved-e${hex}`,
      duration: "1h",
      reason: "prepare the migration window for Friday",
    });
    expect(pending.status, JSON.stringify(pending.body)).toBe(201);
    expect(pending.body.state).toBe("pending");

    // The leaver: Entra sets active to "False" (a string).
    const left = await scim(ENTRA, "PATCH", `/Users/${id}`, {
      schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
      Operations: [{ op: "Replace", path: "active", value: "False" }],
    });
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    expect(left.body.active).toBe(false);
    expect(await stintUser(id)).toMatchObject({ status: "disabled", disabledBy: `scim:${ENTRA}` });
    const requests = await h.admin("GET", `/v1/activation-requests?scope=all&role=scim-reader-e${hex}`);
    expect(JSON.stringify(requests.body)).toContain('"state":"revoked"');
    const cancelled = await h.admin("GET", `/v1/activation-requests/${String(pending.body.id)}`);
    expect(cancelled.body.state).toBe("cancelled");
    // The revocation at PostgreSQL is an outbox job queued by the same transaction: one pass removes it.
    await h.drainOutbox();
    expect(await memberOfReader(name)).toBe(false);
    expect((await as(auth, "GET", "/v1/me")).status).toBe(401);

    // Finally Entra deletes the user: 204, and SCIM no longer finds it.
    expect((await scim(ENTRA, "DELETE", `/Users/${id}`)).status).toBe(204);
    expect((await scim(ENTRA, "GET", `/Users/${id}`)).status).toBe(404);
    const audit = await h.admin("GET", "/v1/audit/events?action=user.*&limit=100");
    const actions = (audit.body.items as { action: string; subject: string; actor: string }[]).filter(
      (e) => e.subject === `user:${name}`,
    );
    // Every change SCIM made is recorded as the SCIM service's (the password was set by the administrator).
    expect(actions.filter((e) => e.actor === ENTRA).map((e) => e.action)).toEqual(
      expect.arrayContaining(["user.create", "user.update", "user.disable", "user.deprovision"]),
    );
  });
});

describe("SCIM: Okta's sequence", () => {
  it("join with a PUT update, group push, removal from the group ends what it carried, deactivation", async () => {
    const userName = `grace.${hex}@example.com`;
    const list = await scim(
      OKTA,
      "GET",
      `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}&startIndex=1&count=100`,
    );
    expect(list.body).toMatchObject({ totalResults: 0, startIndex: 1 });
    const created = await scim(OKTA, "POST", "/Users", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      userName,
      name: { givenName: "Grace", familyName: "Hopper" },
      emails: [{ primary: true, value: userName, type: "work" }],
      displayName: "Grace Hopper",
      locale: "en-US",
      externalId: `00u${hex}`,
      groups: [],
      password: "okta-sends-one-stint-ignores-it",
      active: true,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id as string;
    const name = (created.body["urn:stint:params:scim:user"] as { name: string }).name;
    // Okta updates with a PUT of the whole user; If-Match with a stale version is refused.
    const put = {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      id,
      userName,
      name: { givenName: "Grace", familyName: "Hopper" },
      emails: [{ primary: true, value: `g.hopper.${hex}@example.com`, type: "work" }],
      displayName: "Rear Admiral Hopper",
      active: true,
    };
    expect((await scim(OKTA, "PUT", `/Users/${id}`, put, { "if-match": 'W/"stale"' })).status).toBe(412);
    const replaced = await scim(OKTA, "PUT", `/Users/${id}`, put, { "if-match": String(created.headers.etag) });
    expect(replaced.status, JSON.stringify(replaced.body)).toBe(200);
    expect(replaced.body).toMatchObject({ displayName: "Rear Admiral Hopper" });
    // A PUT may not rename the user in Stint.
    const renamed = await scim(OKTA, "PUT", `/Users/${id}`, { ...put, userName: `someone.else.${hex}@example.com` });
    expect(renamed.status).toBe(400);
    expect(renamed.body.scimType).toBe("mutability");

    // Group push: the group with its member, then removal through Okta's filtered path.
    const group = await scim(OKTA, "POST", "/Groups", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"],
      displayName: `Okta Readers ${hex}`,
      members: [{ value: id, display: userName }],
    });
    expect(group.status, JSON.stringify(group.body)).toBe(201);
    expect(group.body.members).toEqual([expect.objectContaining({ value: id })]);
    await catalogFor(`okta.readers.${hex}`, `o${hex}`);
    const auth = await signIn(name);
    const activation = await as(auth, "POST", "/v1/activation-requests", {
      role: `scim-reader-o${hex}`,
      duration: "1h",
      reason: "reading ledger numbers for the audit",
    });
    expect(activation.status, JSON.stringify(activation.body)).toBe(201);
    await h.drainOutbox();
    expect(await memberOfReader(name)).toBe(true);
    const removed = await scim(OKTA, "PATCH", `/Groups/${String(group.body.id)}`, {
      schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
      Operations: [{ op: "remove", path: `members[value eq "${id}"]` }],
    });
    expect(removed.status, JSON.stringify(removed.body)).toBe(200);
    expect(removed.body.members).toEqual([]);
    await h.drainOutbox();
    expect(await memberOfReader(name)).toBe(false);
    const ended = await h.admin("GET", `/v1/activation-requests/${String(activation.body.id)}`);
    expect(ended.body.state).toBe("revoked");

    // Deactivation: a path-less replace with an object.
    const deactivated = await scim(OKTA, "PATCH", `/Users/${id}`, {
      schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
      Operations: [{ op: "replace", value: { active: false } }],
    });
    expect(deactivated.status, JSON.stringify(deactivated.body)).toBe(200);
    expect(await stintUser(id)).toMatchObject({ status: "disabled", disabledBy: `scim:${OKTA}` });
    // Reactivation works the same way.
    const back = await scim(OKTA, "PATCH", `/Users/${id}`, {
      schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
      Operations: [{ op: "replace", value: { active: true } }],
    });
    expect(back.body.active).toBe(true);
    expect((await scim(OKTA, "DELETE", `/Groups/${String(group.body.id)}`)).status).toBe(204);
  });
});

describe("SCIM: who may provision, and what it may touch", () => {
  it("refuses a service identity that is not configured, a user's session, and no credentials", async () => {
    const other = await scim(`other${hex}`, "GET", "/Users");
    expect(other.status).toBe(403);
    expect(other.body).toMatchObject({ schemas: ["urn:ietf:params:scim:api:messages:2.0:Error"], status: "403" });
    const asAdmin = await h.server.app.inject({
      method: "GET",
      url: "/scim/v2/Users",
      headers: { authorization: h.server.adminAuth },
    });
    expect(asAdmin.statusCode).toBe(403);
    const anonymous = await h.server.app.inject({ method: "GET", url: "/scim/v2/Users" });
    expect(anonymous.statusCode).toBe(401);
  });

  it("never takes over a local account or group, and never shows one", async () => {
    await h.createUser(`local${hex}`);
    const clash = await scim(ENTRA, "POST", "/Users", { userName: `local${hex}`, active: true });
    expect(clash.status).toBe(409);
    expect(clash.body.scimType).toBe("uniqueness");
    const lookup = await scim(ENTRA, "GET", `/Users?filter=${encodeURIComponent(`userName eq "local${hex}"`)}`);
    expect(lookup.body.totalResults).toBe(0);
    const admin = await h.admin("GET", "/v1/me");
    expect((await scim(ENTRA, "GET", `/Users/${String(admin.body.id)}`)).status).toBe(404);
    const disableAdmin = await scim(ENTRA, "PATCH", `/Users/${String(admin.body.id)}`, {
      Operations: [{ op: "replace", path: "active", value: false }],
    });
    expect(disableAdmin.status).toBe(404);
    expect((await h.admin("GET", "/v1/me")).status).toBe(200);
  });

  it("says what clashed: the userName's account or the externalId another resource holds", async () => {
    const taken = await scim(ENTRA, "POST", "/Users", { userName: `holder.${hex}`, externalId: `ext-${hex}` });
    expect(taken.status, JSON.stringify(taken.body)).toBe(201);
    const sameName = await scim(ENTRA, "POST", "/Users", { userName: `holder.${hex}`, externalId: `other-${hex}` });
    expect(sameName.status).toBe(409);
    expect(sameName.body).toMatchObject({ scimType: "uniqueness", detail: expect.stringMatching(/^A user named /) });
    const sameExternalId = await scim(ENTRA, "POST", "/Users", { userName: `fresh.${hex}`, externalId: `ext-${hex}` });
    expect(sameExternalId.status).toBe(409);
    expect(sameExternalId.body).toMatchObject({
      scimType: "uniqueness",
      detail: `Another user has the externalId ext-${hex}.`,
    });
    // A PATCH taking another user's externalId is the same 409 (it was a 500), and changes nothing.
    const second = await scim(ENTRA, "POST", "/Users", { userName: `second.${hex}`, externalId: `ext2-${hex}` });
    const patched = await scim(ENTRA, "PATCH", `/Users/${String(second.body.id)}`, {
      Operations: [{ op: "replace", path: "externalId", value: `ext-${hex}` }],
    });
    expect(patched.status).toBe(409);
    expect(patched.body.detail).toBe(`Another user has the externalId ext-${hex}.`);
    expect((await scim(ENTRA, "GET", `/Users/${String(second.body.id)}`)).body.externalId).toBe(`ext2-${hex}`);
    const group = await scim(ENTRA, "POST", "/Groups", { displayName: `g1-${hex}`, externalId: `gext-${hex}` });
    expect(group.status).toBe(201);
    const groupClash = await scim(ENTRA, "POST", "/Groups", { displayName: `g2-${hex}`, externalId: `gext-${hex}` });
    expect(groupClash.body).toMatchObject({ status: "409", detail: `Another group has the externalId gext-${hex}.` });
  });

  it("refuses bad input with SCIM errors and changes nothing", async () => {
    const before = await scim(ENTRA, "GET", "/Users");
    const cases: [string, string, unknown, number, string?][] = [
      ["POST", "/Users", { active: true }, 400, "invalidValue"],
      ["POST", "/Users", { userName: "x", active: "maybe" }, 400, "invalidValue"],
      ["GET", `/Users?filter=${encodeURIComponent('userName co "a"')}`, undefined, 400, "invalidFilter"],
      ["GET", `/Users?filter=${encodeURIComponent('title eq "a"')}`, undefined, 400, "invalidFilter"],
      [
        "PATCH",
        `/Users/${String(before.body.Resources?.[0]?.id ?? "00000000-0000-0000-0000-000000000000")}`,
        { Operations: [] },
        400,
        "invalidSyntax",
      ],
      ["PATCH", "/Users/not-a-uuid", { Operations: [{ op: "replace", path: "active", value: false }] }, 404],
      [
        "POST",
        "/Groups",
        { displayName: "g", members: [{ value: "00000000-0000-0000-0000-000000000000" }] },
        400,
        "invalidValue",
      ],
    ];
    for (const [method, url, body, status, scimType] of cases) {
      const res = await scim(ENTRA, method, url, body);
      expect(res.status, `${method} ${url}: ${JSON.stringify(res.body)}`).toBe(status);
      expect(res.body.schemas).toEqual(["urn:ietf:params:scim:api:messages:2.0:Error"]);
      if (scimType) expect(res.body.scimType).toBe(scimType);
    }
    const after = await scim(ENTRA, "GET", "/Users");
    expect(after.body.totalResults).toBe(before.body.totalResults);
    expect(
      (await scim(ENTRA, "GET", `/Groups?filter=${encodeURIComponent('displayName eq "g"')}`)).body.totalResults,
    ).toBe(0);
  });

  it("pages what it provisioned: totalResults of all, Resources of the page, in creation order", async () => {
    const created: string[] = [];
    for (const n of [1, 2, 3]) {
      const res = await scim(OKTA, "POST", "/Users", {
        userName: `pager${n}.${hex}@example.com`,
        externalId: `pg-${hex}-${n}`,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      created.push(res.body.id as string);
    }
    const all = await scim(OKTA, "GET", "/Users?startIndex=1&count=200");
    const ids = (all.body.Resources ?? []).map((r) => r.id);
    const mine = ids.filter((id) => created.includes(id as string));
    expect(mine).toEqual(created);
    const at = ids.indexOf(created[1]) + 1;
    const page = await scim(OKTA, "GET", `/Users?startIndex=${at}&count=2`);
    expect(page.body).toMatchObject({ totalResults: all.body.totalResults, startIndex: at, itemsPerPage: 2 });
    expect((page.body.Resources ?? []).map((r) => r.id)).toEqual([created[1], created[2]]);
    const byExternal = await scim(OKTA, "GET", `/Users?filter=${encodeURIComponent(`externalId eq "pg-${hex}-3"`)}`);
    expect((byExternal.body.Resources ?? []).map((r) => r.id)).toEqual([created[2]]);
  });
});
