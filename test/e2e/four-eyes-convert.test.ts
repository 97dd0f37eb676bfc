/**
 * Four-eyes on `stint discover --convert`: converting standing access makes Stint users eligible for a role, and
 * Stint cannot tell that the user it maps a login to is the person who held that login (the identity mapping and
 * the target's own answer decide it), so it widens access like a POST of eligibility does. At a four-eyes tier the
 * conversion is held as a change request (202, nothing changed: no eligibility, the standing privilege stays); its
 * author cannot approve it; a second admin's approval applies the whole conversion, with no second run: the
 * eligibility, and the removal of the standing privilege at the target through the outbox (at a real PostgreSQL
 * database too: the login is no longer a member of the role, and its user is eligible for it instead). Nobody
 * converts their own login (SELF_GRANT), held or not.
 */
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { PG_ROOT_URL } from "./pg-target.js";

const ADMINS = { group: "admins" };
const REASON = "phase two: just-in-time only";

/** A webhook target's endpoint: answers `discover` with `accounts`, keeps the actions it was sent. */
async function startEndpoint() {
  const actions: { action: string; login?: string }[] = [];
  const state = { accounts: [] as Record<string, unknown>[] };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { action: string; login?: string };
      actions.push({ action: body.action, ...(body.login !== undefined ? { login: body.login } : {}) });
      const answer =
        body.action === "discover" ? { accounts: state.accounts } : body.action === "observe" ? { holders: [] } : {};
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/stint`,
    actions,
    state,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("four-eyes on converting standing access (discover --convert)", () => {
  let server: TestServer;
  let endpoint: Awaited<ReturnType<typeof startEndpoint>>;
  let admin: string;
  let admin2: string;

  async function call(method: "GET" | "POST" | "PUT", url: string, auth: string, body?: unknown) {
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(body !== undefined ? { payload: body as object } : {}),
    });
    const parsed = res.body ? res.json() : undefined;
    return { status: res.statusCode, code: parsed?.error?.code as string | undefined, body: parsed };
  }

  const eligible = async (role: string) =>
    ((await call("GET", `/v1/eligibilities?role=${role}`, admin)).body.items as { status: string; principal: string }[])
      .filter((e) => e.status !== "removed")
      .map((e) => e.principal);

  const convert = (auth: string, role: string, logins?: string[]) =>
    call("POST", "/v1/targets/hooks/discovery/conversions", auth, {
      role,
      reason: REASON,
      ...(logins ? { logins } : {}),
    });

  /** Runs the outbox dry and answers the removals the endpoint was asked for. */
  async function removals(): Promise<string[]> {
    for (let i = 0; i < 10; i++) if ((await server.outbox.runOnce()).claimed === 0) break;
    return endpoint.actions.filter((a) => a.action === "revoke").map((a) => a.login ?? "");
  }

  beforeAll(async () => {
    endpoint = await startEndpoint();
    server = await testServer("pglite", {
      env: { STINT_FOUR_EYES_TIERS: "high,critical", STINT_RECONCILE_INTERVAL: "0" },
    });
    admin = server.adminAuth;
    await server.userWithRoles("carol", ["user"]);
    const applied = await call("POST", "/v1/config/apply", admin, {
      yaml: `apiVersion: stint/v1
policies:
  - name: self
    mfa: { required: false }
    maxDuration: 8h
targets:
  - name: hooks
    kind: webhook
    address: ${endpoint.url}
    credential: { secret: targets/hooks/admin }
    identity: { template: "{{name}}@example.com" }
roles:
  - name: hooks-admin
    target: hooks
    entitlement: { group: admins }
    policy: self
    risk: high
  - name: hooks-low
    target: hooks
    entitlement: { group: admins }
    policy: self
    risk: low
`,
    });
    expect(applied.body, JSON.stringify(applied.body)).toMatchObject({ applied: true });
    // The second admin comes after the catalog: with nobody else to approve, it applies at once (alone: apply).
    admin2 = await server.userWithRoles("admin2", ["admin"]);
    const stored = await call("PUT", "/v1/targets/hooks/credential", admin, {
      secret: "whsec_convert_0123456789abcdef",
    });
    expect(stored.status, JSON.stringify(stored.body)).toBe(200);
    endpoint.state.accounts = [
      { login: "carol@example.com", privilege: "Admin group member", entitlement: ADMINS },
      { login: "admin@example.com", privilege: "Admin group member", entitlement: ADMINS },
    ];
  });

  afterAll(async () => {
    await server?.cleanup();
    await endpoint?.close();
  });

  it("stint discover --convert says it is held, who must approve, and that nothing changed (exit 0)", async () => {
    await server.app.listen({ port: 0, host: "127.0.0.1" });
    const dir = await mkdtemp(path.join(tmpdir(), "stint-convert-cli-"));
    try {
      const env = {
        STINT_CONFIG_DIR: dir,
        HOME: dir,
        STINT_SERVER: `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`,
        STINT_TOKEN: admin.replace(/^Bearer /, ""),
      };
      const argv = ["discover", "hooks", "--convert", "--to-role", "hooks-admin", "--login", "carol@example.com"];
      const run = await runCliCaptured([...argv, "--reason", REASON], { env });
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^Would convert to eligibility for hooks-admin:\n/);
      expect(run.stdout).toContain("Held for a second admin (four-eyes: making 1 login eligible for hooks-admin");
      expect(run.stdout).toMatch(
        /Change request \S+, pending until .*: another admin runs `stint changes approve \S+`/,
      );
      expect(await eligible("hooks-admin")).toEqual([]);
      // Denied, so the next test starts from no pending request for carol.
      const id = /stint changes approve (\S+)`/.exec(run.stdout)![1]!;
      const denied = await call("POST", `/v1/change-requests/${id}/deny`, admin2, { reason: "tested the CLI only" });
      expect(denied.status, JSON.stringify(denied.body)).toBe(200);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("at a four-eyes tier the conversion is held (202): no eligibility, the standing privilege stays", async () => {
    const held = await convert(admin, "hooks-admin", ["carol@example.com"]);
    expect(held.status, JSON.stringify(held.body)).toBe(202);
    expect(held.body).toMatchObject({
      dryRun: false,
      role: "hooks-admin",
      converted: [{ login: "carol@example.com", principal: "carol", eligibility: "created" }],
      changeRequest: { status: "pending", tier: "high" },
    });
    expect(await eligible("hooks-admin")).toEqual([]);
    expect(await removals()).toEqual([]);

    const id = held.body.changeRequest.id as string;
    const shown = (await call("GET", `/v1/change-requests/${id}`, admin2)).body;
    expect(shown).toMatchObject({ author: "admin", canApprove: true, plan: { summary: { create: 1 } } });
    expect(shown.document).toContain("role: hooks-admin");
    expect(shown.document).toContain("carol");

    // Its author cannot approve it.
    const own = await call("POST", `/v1/change-requests/${id}/approve`, admin, {});
    expect(own).toMatchObject({ status: 403, code: "CHANGE_REQUEST_SELF_APPROVAL" });
    expect(await eligible("hooks-admin")).toEqual([]);

    // The approver is told what approving does besides the eligibility.
    expect(shown.plan.notes.join("\n")).toContain("removes the standing access converted (carol@example.com at hooks)");

    // A second admin's approval applies the whole conversion: the eligibility, and (no second run) the removal.
    const approved = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body.status).toBe("applied");
    expect(await eligible("hooks-admin")).toEqual(["carol"]);
    expect(await removals()).toEqual(["carol@example.com"]);
    const events = (await call("GET", "/v1/audit/events?limit=50&order=desc", admin)).body.items as {
      action: string;
      actor: string;
      details: Record<string, unknown>;
    }[];
    expect(events.find((e) => e.action === "standing.converted")).toMatchObject({
      actor: "admin2",
      details: { role: "hooks-admin", changeRequest: id, author: "admin", converted: [{ login: "carol@example.com" }] },
    });
    expect(events.find((e) => e.action === "standing.removed")).toMatchObject({
      details: { login: "carol@example.com" },
    });

    // The target no longer lists it: the same conversion again has nothing to remove.
    endpoint.state.accounts = endpoint.state.accounts.filter((a) => a.login !== "carol@example.com");
    const again = await convert(admin, "hooks-admin", ["carol@example.com"]);
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body.changeRequest).toBeUndefined();
    expect(again.body.converted).toEqual([]);
    expect(await removals()).toEqual(["carol@example.com"]);
  });

  it("a dry run at a four-eyes tier changes nothing and makes no change request", async () => {
    const before = (await call("GET", "/v1/change-requests?status=all", admin)).body.items.length as number;
    const dry = await call("POST", "/v1/targets/hooks/discovery/conversions", admin2, {
      role: "hooks-admin",
      logins: ["admin@example.com"],
      dryRun: true,
      reason: REASON,
    });
    expect(dry.status, JSON.stringify(dry.body)).toBe(200);
    expect(dry.body.changeRequest).toBeUndefined();
    expect((await call("GET", "/v1/change-requests?status=all", admin)).body.items.length).toBe(before);
  });

  it("nobody converts their own login: SELF_GRANT, held or not, and nothing changes", async () => {
    const before = (await call("GET", "/v1/change-requests?status=all", admin)).body.items.length as number;
    for (const role of ["hooks-admin", "hooks-low"]) {
      const own = await convert(admin, role, ["admin@example.com"]);
      expect(own, role).toMatchObject({ status: 403, code: "SELF_GRANT" });
      expect(await eligible(role)).not.toContain("admin");
    }
    expect((await call("GET", "/v1/change-requests?status=all", admin)).body.items.length).toBe(before);
    expect(await removals()).toEqual(["carol@example.com"]);
  });

  it("a held conversion of the approver's own login cannot be approved by them: SELF_GRANT, nothing removed", async () => {
    endpoint.state.accounts.push({ login: "admin2@example.com", privilege: "Admin group member", entitlement: ADMINS });
    try {
      const held = await convert(admin, "hooks-admin", ["admin2@example.com"]);
      expect(held.status, JSON.stringify(held.body)).toBe(202);
      const id = held.body.changeRequest.id as string;
      // The stored removals are not the API's to show (nor to change: it takes no plan).
      expect(JSON.stringify((await call("GET", `/v1/change-requests/${id}`, admin2)).body)).not.toContain("followUp");
      const own = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
      expect(own).toMatchObject({ status: 403, code: "SELF_GRANT" });
      expect(await eligible("hooks-admin")).not.toContain("admin2");
      expect(await removals()).toEqual(["carol@example.com"]);
    } finally {
      endpoint.state.accounts = endpoint.state.accounts.filter((a) => a.login !== "admin2@example.com");
    }
  });

  it("below the four-eyes tiers a conversion applies at once, and another admin may convert the admin's login", async () => {
    const low = await convert(admin2, "hooks-low", ["admin@example.com"]);
    expect(low.status, JSON.stringify(low.body)).toBe(200);
    expect(low.body.changeRequest).toBeUndefined();
    expect(await eligible("hooks-low")).toEqual(["admin"]);
    expect(await removals()).toEqual(["carol@example.com", "admin@example.com"]);
  });
});

describe("a held conversion at a real PostgreSQL database: the approval alone removes the standing login", () => {
  const hex = randomBytes(4).toString("hex");
  const database = `stint_fe_${hex}`;
  const reader = `stint_fe_reader_${hex}`;
  const user = `dave${hex}`;
  const login = `stint_fe_${user}`;
  let root: pg.Client;
  let server: TestServer;
  let admin: string;

  const isMember = async () =>
    (
      await root.query(
        `select 1 from pg_auth_members m join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member
          where r.rolname = $1 and u.rolname = $2`,
        [reader, login],
      )
    ).rowCount === 1;

  async function call(method: "GET" | "POST", url: string, auth: string, body?: unknown) {
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization: auth },
      ...(body !== undefined ? { payload: body as object } : {}),
    });
    return { status: res.statusCode, body: res.body ? res.json() : undefined };
  }

  beforeAll(async () => {
    root = new pg.Client({ connectionString: `${PG_ROOT_URL}/postgres` });
    await root.connect();
    await root.query(`create database ${database}`);
    await root.query(`create role ${reader} nologin`);
    // Standing access: the login is a member of the role, outside Stint.
    await root.query(`create role ${login} login in role ${reader}`);
    server = await testServer("pglite", {
      env: { STINT_FOUR_EYES_TIERS: "high,critical", STINT_RECONCILE_INTERVAL: "0" },
    });
    admin = server.adminAuth;
    await server.userWithRoles(user, ["user"]);
    const applied = await call("POST", "/v1/config/apply", admin, {
      yaml: `apiVersion: stint/v1
policies:
  - name: self
    mfa: { required: false }
    maxDuration: 8h
targets:
  - name: fe-db
    kind: postgres
    address: ${PG_ROOT_URL}/${database}?sslmode=disable
    identity: { template: "stint_fe_{{name}}" }
    options: { ignore: [postgres], privilegedRoles: [${reader}] }
roles:
  - name: fe-db-reader
    target: fe-db
    entitlement: { role: ${reader} }
    policy: self
    risk: high
`,
    });
    expect(applied.body, JSON.stringify(applied.body)).toMatchObject({ applied: true });
  });

  afterAll(async () => {
    await server?.cleanup();
    if (!root) return;
    await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
    for (const role of [login, reader]) await root.query(`drop role if exists ${role}`).catch(() => undefined);
    await root.end();
  });

  it("held, approved by a second admin, and the login is no longer a member: its user is eligible instead", async () => {
    const admin2 = await server.userWithRoles(`admin2${hex}`, ["admin"]);
    const held = await call("POST", "/v1/targets/fe-db/discovery/conversions", admin, {
      role: "fe-db-reader",
      logins: [login],
      reason: REASON,
    });
    expect(held.status, JSON.stringify(held.body)).toBe(202);
    expect(held.body.converted).toMatchObject([{ login, principal: user, eligibility: "created" }]);
    for (let i = 0; i < 10; i++) if ((await server.outbox.runOnce()).claimed === 0) break;
    expect(await isMember()).toBe(true);

    const approved = await call(
      "POST",
      `/v1/change-requests/${held.body.changeRequest.id as string}/approve`,
      admin2,
      {},
    );
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body.status).toBe("applied");
    // No second run of the conversion: the outbox carries the removal to the database.
    for (let i = 0; i < 10; i++) if ((await server.outbox.runOnce()).claimed === 0) break;
    expect(await isMember()).toBe(false);
    const eligibility = (await call("GET", "/v1/eligibilities?role=fe-db-reader", admin)).body.items as {
      principal: string;
      status: string;
    }[];
    expect(eligibility.filter((e) => e.status !== "removed").map((e) => e.principal)).toEqual([user]);
    // Discovery no longer finds it.
    const found = (await call("GET", "/v1/targets/fe-db/discovery", admin)).body.items as { login: string }[];
    expect(found.map((a) => a.login)).not.toContain(login);
  });
});
