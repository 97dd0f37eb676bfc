/**
 * Owners granting themselves roles through the target (Teleport GHSA-76cc-p55w-63g3, the target side).
 *
 * A role's privilege is its entitlement and its target's definition together: the PostgreSQL proxy signs in
 * upstream as the target's session login (`options.session`) unless the role names its own. A `security` user
 * eligible for a low-risk role on a target must not rewrite that target so their role's sessions sign in as the
 * login of a stronger role on the same target (one whose secret an admin allowed for the target): that is
 * changing what a role they are eligible for grants, refused with SELF_GRANT like a change to its entitlement.
 * Real server, real proxy, real cluster (TLS + SCRAM): the attacker's `current_user` is what a user would check.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";

const DBA_LOGIN = "app_dba";
const DBA_SECRET = "dba/app-db";

describe("a security user widening their own role through its target (SELF_GRANT)", () => {
  let pgh: PgProxyHarness;

  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "optional" });
    const { h } = pgh;
    // The stronger login at the same database, for a medium-risk role the attacker is not eligible for.
    const password = `dba-${randomUUID()}`;
    await pgh.admin.query(`CREATE ROLE ${DBA_LOGIN} LOGIN PASSWORD '${password}'`);
    const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent(DBA_SECRET)}`, {
      kind: "password",
      value: password,
      platformRoles: ["admin"],
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    await h.apply(`
apiVersion: stint/v1
roles:
  - name: app-db-dba
    target: app-db
    policy: app-self
    risk: medium
    entitlement: { role: pg_read_all_data, session: { login: ${DBA_LOGIN}, secret: ${DBA_SECRET} } }
`);
    const allow = await h.admin("PUT", `/v1/secrets/${encodeURIComponent(DBA_SECRET)}/targets/app-db`);
    expect(allow.status, JSON.stringify(allow.body)).toBeLessThan(300);
    // The attacker: eligible for the low-risk app-db-ops only, and an author of the catalog.
    const promote = await h.admin("PATCH", `/v1/users/${pgh.user}`, { platformRoles: ["user", "security"] });
    expect(promote.status, JSON.stringify(promote.body)).toBe(200);
  });

  afterAll(async () => {
    await pgh?.close();
  });

  /** Who the attacker is at the database through the proxy, with their own role's database token. */
  async function upstreamUser(): Promise<string> {
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    client.on("error", () => undefined);
    await client.connect();
    try {
      return (await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u;
    } finally {
      await client.end();
    }
  }

  /** The export's app-db with its session login switched to the stronger role's. */
  async function targetWithDbaSession(): Promise<Record<string, unknown>> {
    const exported = await pgh.h.as(pgh.user, "GET", "/v1/config/export");
    expect(exported.status, JSON.stringify(exported.body)).toBe(200);
    const file = parse(String(exported.body.yaml)) as { targets: Record<string, unknown>[] };
    const target = file.targets.find((t) => t.name === "app-db")!;
    const options = target.options as Record<string, unknown>;
    expect(options.session).toEqual({ login: pgh.login, secret: "targets/app-db/session" });
    return { ...target, options: { ...options, session: { login: DBA_LOGIN, secret: DBA_SECRET } } };
  }

  it("cannot switch the target's session login by file, nor by the API", async () => {
    expect(await upstreamUser()).toBe(pgh.login);
    const target = await targetWithDbaSession();

    const yaml = stringify({ apiVersion: "stint/v1", targets: [target] });
    const byFile = await pgh.h.as(pgh.user, "POST", "/v1/config/apply", { yaml });
    // The role still reaches the database as its own login, not the stronger role's.
    expect(await upstreamUser()).toBe(pgh.login);
    expect(byFile.status, JSON.stringify(byFile.body)).toBe(403);
    expect(byFile.body.error?.code).toBe("SELF_GRANT");

    const byApi = await pgh.h.as(pgh.user, "PUT", "/v1/targets/app-db", target);
    expect(await upstreamUser()).toBe(pgh.login);
    expect(byApi.status, JSON.stringify(byApi.body)).toBe(403);
    expect(byApi.body.error?.code).toBe("SELF_GRANT");
    const stored = await pgh.h.admin("GET", "/v1/targets/app-db");
    expect((stored.body.options as Record<string, unknown>).session).toEqual({
      login: pgh.login,
      secret: "targets/app-db/session",
    });
  });

  it("someone who is not eligible through the target may change it", async () => {
    const target = await targetWithDbaSession();
    const byAdmin = await pgh.h.admin("PUT", "/v1/targets/app-db", target);
    expect(byAdmin.status, JSON.stringify(byAdmin.body)).toBe(200);
    // Put back as it was, so a later test meets the harness's target.
    const back = await pgh.h.admin("PUT", "/v1/targets/app-db", {
      ...target,
      options: { ...(target.options as object), session: { login: pgh.login, secret: "targets/app-db/session" } },
    });
    expect(back.status, JSON.stringify(back.body)).toBe(200);
  });
});
