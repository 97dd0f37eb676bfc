/**
 * Test support for PIM: seed targets, policies, roles, groups and eligibility
 * straight into the store (setup, not behaviour under test), and act as users
 * through the HTTP API.
 */
import { newId } from "../lib/ids.js";
import { policySpec } from "../contract/catalog.js";
import type { z } from "zod";
import type { TestServer } from "./server.js";
import { passwordFor } from "./server.js";

export async function seedUser(
  server: TestServer,
  name: string,
  options: { manager?: string; groups?: string[] } = {},
) {
  const res = await server.app.inject({
    method: "POST",
    url: "/v1/users",
    headers: { authorization: server.adminAuth },
    payload: { name, password: passwordFor(name), ...(options.manager ? { manager: options.manager } : {}) },
  });
  if (res.statusCode !== 201) throw new Error(`create ${name}: ${res.body}`);
  for (const group of options.groups ?? []) await seedGroupMember(server, group, name);
}

export async function seedGroupMember(server: TestServer, group: string, member: string) {
  const db = server.store.db;
  let row = await db.selectFrom("groups").select("id").where("name", "=", group).executeTakeFirst();
  if (!row) {
    row = { id: newId() };
    await db.insertInto("groups").values({ id: row.id, name: group, created_at: new Date() }).execute();
  }
  const principal = await db.selectFrom("principals").select("id").where("name", "=", member).executeTakeFirstOrThrow();
  await db
    .insertInto("group_members")
    .values({ group_id: row.id, principal_id: principal.id, added_at: new Date() })
    .execute();
}

export async function removeGroupMember(server: TestServer, group: string, member: string) {
  const db = server.store.db;
  const g = await db.selectFrom("groups").select("id").where("name", "=", group).executeTakeFirstOrThrow();
  const p = await db.selectFrom("principals").select("id").where("name", "=", member).executeTakeFirstOrThrow();
  await db.deleteFrom("group_members").where("group_id", "=", g.id).where("principal_id", "=", p.id).execute();
}

/**
 * The self-service policy of the PIM tests and benches: approved at once (no stages), no MFA, 1 h by default and
 * 8 h at most, a reason of 10 characters or more.
 */
export const AUTO_APPROVED_POLICY: z.input<typeof policySpec> = {
  defaultDuration: "1h",
  maxDuration: "8h",
  approval: { stages: [] },
  mfa: { required: false, maxAge: "10m" },
  justification: { minLength: 10 },
};

/** The access index tests' self-service policy: no approval, no MFA, 30 minutes by default and 2 hours at most. */
export const SELF_SERVICE_POLICY: z.input<typeof policySpec> = {
  defaultDuration: "30m",
  maxDuration: "2h",
  mfa: { required: false, maxAge: "10m" },
  justification: { minLength: 10 },
  approval: { stages: [] },
};

/** A role on the internal target with its own policy; eligible groups and users get an eligibility each. */
export async function seedRole(
  server: TestServer,
  role: {
    name: string;
    risk?: "low" | "medium" | "high" | "critical";
    policy: z.input<typeof policySpec>;
    eligibleGroups?: string[];
    eligibleUsers?: string[];
    eligibleUntil?: Date;
  },
) {
  const db = server.store.db;
  const now = new Date("2000-01-01T00:00:00Z");
  let target = await db.selectFrom("targets").select("id").where("name", "=", "stint").executeTakeFirst();
  if (!target) {
    target = { id: newId() };
    await db
      .insertInto("targets")
      .values({
        id: target.id,
        name: "stint",
        kind: "internal",
        config: "{}",
        labels: "{}",
        created_at: now,
        updated_at: now,
      })
      .execute();
  }
  const policyId = newId();
  const spec = policySpec.parse(role.policy);
  await db
    .insertInto("policies")
    .values({ id: policyId, name: `${role.name}-policy`, spec: JSON.stringify(spec), created_at: now, updated_at: now })
    .execute();
  const roleId = newId();
  await db
    .insertInto("roles")
    .values({
      id: roleId,
      name: role.name,
      target_id: target.id,
      policy_id: policyId,
      entitlement: "{}",
      risk: role.risk ?? "medium",
      owners: [],
      created_at: now,
      updated_at: now,
    })
    .execute();
  for (const group of role.eligibleGroups ?? []) {
    const g = await db.selectFrom("groups").select("id").where("name", "=", group).executeTakeFirstOrThrow();
    await db
      .insertInto("eligibilities")
      .values({
        id: newId(),
        role_id: roleId,
        group_id: g.id,
        starts_at: now,
        ends_at: role.eligibleUntil ?? null,
        granted_by: "test",
        created_at: now,
      })
      .execute();
  }
  for (const user of role.eligibleUsers ?? []) {
    const p = await db.selectFrom("principals").select("id").where("name", "=", user).executeTakeFirstOrThrow();
    await db
      .insertInto("eligibilities")
      .values({
        id: newId(),
        role_id: roleId,
        principal_id: p.id,
        starts_at: now,
        ends_at: role.eligibleUntil ?? null,
        granted_by: "test",
        created_at: now,
      })
      .execute();
  }
  return roleId;
}

/** Calls the API as `name`, signing in fresh each time (the test clock may have moved past the token's life). */
export function actAs(server: TestServer, name: string) {
  return async (method: "GET" | "POST", url: string, payload?: unknown) => {
    const auth = await server.login(name, passwordFor(name));
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return {
      status: res.statusCode,
      body: res.json() as Record<string, unknown> & { error?: { code: string; message: string } },
    };
  };
}
