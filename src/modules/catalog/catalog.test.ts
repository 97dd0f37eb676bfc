/**
 * The catalog over HTTP (app.inject) on PGlite and PostgreSQL: CRUD by name or
 * id with audit, deny by default, the risk rule, eligibility, and configuration
 * as code — acceptance 6 (export → apply on an empty instance → diff reports no
 * changes; an invalid file lists each problem with its line and changes
 * nothing), idempotent apply, prune, and the CLI's diff/apply/export against
 * the real server.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDocument } from "yaml";
import type { App } from "../../http/app.js";
import { runCliCaptured } from "../../testing/cli-run.js";
import { ENGINES } from "../../testing/engines.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { SEED_CATALOG_YAML } from "../../testing/seed-catalog.js";

interface Answer {
  status: number;
  code: string | undefined;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function call(server: TestServer, method: string, url: string, auth?: string, body?: unknown): Promise<Answer> {
  const res = await server.app.inject({
    method: method as "GET",
    url,
    headers: auth ? { authorization: auth } : {},
    ...(body !== undefined ? { payload: body as object } : {}),
  });
  const parsed = res.body ? res.json() : undefined;
  return { status: res.statusCode, code: parsed?.error?.code, body: parsed };
}

const TABLES = ["targets", "policies", "roles", "eligibilities", "groups", "group_members", "audit_events"] as const;

/** Row counts of everything configuration as code could touch, and of the audit log. */
async function snapshot(server: TestServer): Promise<Record<string, number>> {
  await server.audit.catchUp(); // committed events, chained (the sequencer's work on PostgreSQL)
  const counts: Record<string, number> = {};
  for (const table of TABLES) {
    const result = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(
      server.store.db,
    );
    counts[table] = Number(result.rows[0]!.n);
  }
  const removed = await sql<{
    n: number;
  }>`select count(*)::int as n from eligibilities where removed_at is not null`.execute(server.store.db);
  counts.removedEligibilities = Number(removed.rows[0]!.n);
  return counts;
}

async function headSeq(server: TestServer): Promise<number> {
  await server.audit.catchUp();
  const result = await sql<{ seq: number }>`select coalesce(max(seq), 0)::int as seq from audit_events`.execute(
    server.store.db,
  );
  return Number(result.rows[0]!.seq);
}

async function eventsAfter(server: TestServer, seq: number) {
  return server.audit.read({ afterSeq: seq, limit: 1000 });
}

/** fetch for the CLI that goes straight into the app (no socket). */
function injectFetch(app: App): typeof fetch {
  return async (input, init) => {
    const url = new URL(String(input));
    const res = await app.inject({
      method: (init?.method ?? "GET") as "GET",
      url: `${url.pathname}${url.search}`,
      headers: Object.fromEntries(new Headers(init?.headers).entries()),
      ...(typeof init?.body === "string" ? { payload: init.body } : {}),
    });
    const headers = new Headers();
    for (const [key, value] of Object.entries(res.headers)) if (value !== undefined) headers.set(key, String(value));
    return new Response(res.body === "" ? null : res.body, { status: res.statusCode, headers });
  };
}

function cli(server: TestServer, auth: string, argv: string[], dir: string) {
  return runCliCaptured(argv, {
    env: {
      STINT_CONFIG_DIR: dir,
      HOME: dir,
      STINT_SERVER: "http://127.0.0.1:8420",
      STINT_TOKEN: auth.replace(/^Bearer /, ""),
    },
    fetch: injectFetch(server.app),
    isTTY: false,
  });
}

const FILE = SEED_CATALOG_YAML;

const INVALID = `apiVersion: stint/v1
groups:
  - name: sre
    members: [alice, zed]
policies:
  - name: fast
    maxDuration: 2 hours
targets:
  - name: stint
    kind: internal
  - name: stint
    kind: internal
roles:
  - name: prod-db-writer
    target: stint
    policy: hgh-risk
    risk: high
eligibility:
  - role: prod-db-writer
    users: [alice]
    until: next week
`;

const INVALID_PROBLEMS = [
  { line: 4, column: 22, path: "groups[0].members[1]", message: 'unknown user "zed"' },
  { line: 7, column: 18, path: "policies[0].maxDuration", message: "must be a duration like 30s, 15m, 2h or 1d" },
  {
    line: 11,
    column: 11,
    path: "targets[1].name",
    message: 'duplicate target name "stint" (first at targets[0])',
  },
  { line: 16, column: 13, path: "roles[0].policy", message: 'unknown policy "hgh-risk"' },
  {
    line: 21,
    column: 12,
    path: "eligibility[0].until",
    message: "must be a date like 2027-11-24 or a time with an offset like 2027-11-24T18:00:00Z",
  },
];

describe.each(ENGINES)("catalog on %s", (engine) => {
  let server: TestServer;
  let admin: string;
  let security: string;
  let auditor: string;
  let user: string;
  let dir: string;

  beforeAll(async () => {
    server = await testServer(engine);
    admin = server.adminAuth;
    security = await server.userWithRoles("sec", ["security"]);
    auditor = await server.userWithRoles("aud", ["auditor"]);
    user = await server.userWithRoles("usr", ["user"]);
    for (const name of ["alice", "bob", "carol"]) {
      expect((await call(server, "POST", "/v1/users", admin, { name })).status).toBe(201);
    }
    dir = await mkdtemp(path.join(tmpdir(), "stint-catalog-"));
  });

  afterAll(async () => {
    await server?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("creates, reads, updates and deletes targets, policies and roles by name or id, auditing each change", async () => {
    const start = await headSeq(server);
    const target = await call(server, "POST", "/v1/targets", security, {
      name: "crm",
      kind: "postgres",
      address: "postgres://stint@db.internal:5432/crm",
      labels: { env: "prod" },
    });
    expect(target.status, JSON.stringify(target.body)).toBe(201);
    expect(target.body).toMatchObject({
      name: "crm",
      kind: "postgres",
      address: "postgres://stint@db.internal:5432/crm",
    });
    expect((await call(server, "GET", `/v1/targets/${target.body.id}`, auditor)).body.name).toBe("crm");
    expect((await call(server, "GET", "/v1/targets/crm", auditor)).body.id).toBe(target.body.id);

    const put = {
      name: "crm",
      kind: "postgres",
      address: "postgres://stint@db.internal:5432/crm",
      labels: { env: "staging" },
    };
    expect((await call(server, "PUT", `/v1/targets/${target.body.id}`, security, put)).body.labels).toEqual({
      env: "staging",
    });
    const afterUpdate = await headSeq(server);
    expect((await call(server, "PUT", "/v1/targets/crm", security, put)).status).toBe(200);
    expect(await headSeq(server), "an unchanged PUT writes no event").toBe(afterUpdate);

    const badPolicy = await call(server, "POST", "/v1/policies", security, {
      name: "crm-policy",
      spec: { approval: { stages: [{ approvers: { groups: ["nobody-group"] } }] } },
    });
    expect(badPolicy.status).toBe(400);
    expect(badPolicy.body.error.details.issues).toEqual([
      { path: "body.spec.approval.stages.0.approvers.groups.0", message: 'unknown group "nobody-group"' },
    ]);
    const policy = await call(server, "POST", "/v1/policies", security, {
      name: "crm-policy",
      description: "CRM access",
      spec: { maxDuration: "2h" },
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(201);
    expect(policy.body.spec).toMatchObject({ defaultDuration: "1h", maxDuration: "2h", mfa: { required: true } });

    const badRole = await call(server, "POST", "/v1/roles", security, {
      name: "crm-admin",
      target: "nowhere",
      policy: "crm-policy",
      risk: "high",
      owners: ["no-such-group"],
    });
    expect(badRole.status).toBe(400);
    expect(badRole.body.error.details.issues).toEqual([
      { path: "body.target", message: 'unknown target "nowhere"' },
      { path: "body.owners.0", message: 'unknown group "no-such-group"' },
    ]);
    const role = await call(server, "POST", "/v1/roles", security, {
      name: "crm-admin",
      target: target.body.id,
      policy: "crm-policy",
      risk: "high",
      entitlement: { role: "crm_admin" },
    });
    expect(role.status, JSON.stringify(role.body)).toBe(201);
    expect(role.body).toMatchObject({ target: "crm", policy: "crm-policy", risk: "high", owners: [] });
    expect((await call(server, "POST", "/v1/roles", security, { ...role.body, id: undefined })).status).toBe(400);
    const again = await call(server, "POST", "/v1/roles", security, {
      name: "crm-admin",
      target: "crm",
      policy: "crm-policy",
      risk: "low",
      entitlement: { role: "crm_admin" },
    });
    expect(again.code).toBe("ALREADY_EXISTS");
    expect((await call(server, "GET", `/v1/roles/${role.body.id}`, auditor)).body.name).toBe("crm-admin");
    expect((await call(server, "GET", "/v1/policies/crm-policy", auditor)).body.roles).toEqual(["crm-admin"]);

    expect((await call(server, "DELETE", "/v1/targets/crm", security)).code).toBe("CONFLICT");
    expect((await call(server, "DELETE", "/v1/policies/crm-policy", security)).code).toBe("CONFLICT");
    expect((await call(server, "DELETE", "/v1/roles/crm-admin", security)).status).toBe(200);
    expect((await call(server, "DELETE", "/v1/policies/crm-policy", security)).status).toBe(200);
    expect((await call(server, "DELETE", `/v1/targets/${target.body.id}`, security)).status).toBe(200);
    expect((await call(server, "GET", "/v1/roles/crm-admin", auditor)).code).toBe("NOT_FOUND");

    const events = await eventsAfter(server, start);
    expect(events.map((e) => `${e.actor} ${e.action} ${e.subject}`)).toEqual([
      "sec target.create target:crm",
      "sec target.update target:crm",
      "sec policy.create policy:crm-policy",
      "sec role.create role:crm-admin",
      "sec role.delete role:crm-admin",
      "sec policy.delete policy:crm-policy",
      "sec target.delete target:crm",
    ]);
    expect(events[1]!.details.fields).toEqual([{ field: "labels.env", from: "prod", to: "staging" }]);
  });

  it("denies by default: users see nothing, auditors only read, groups need an administrator", async () => {
    expect((await call(server, "GET", "/v1/roles", undefined)).code).toBe("UNAUTHENTICATED");
    expect((await call(server, "GET", "/v1/roles", user)).code).toBe("FORBIDDEN");
    expect((await call(server, "GET", "/v1/config/export", user)).code).toBe("FORBIDDEN");
    expect((await call(server, "GET", "/v1/roles", auditor)).status).toBe(200);
    expect((await call(server, "GET", "/v1/config/export", auditor)).status).toBe(200);
    expect((await call(server, "POST", "/v1/targets", auditor, { name: "x", kind: "internal" })).code).toBe(
      "FORBIDDEN",
    );
    expect((await call(server, "POST", "/v1/config/apply", auditor, { yaml: FILE })).code).toBe("FORBIDDEN");
    const before = await snapshot(server);
    const groups = await call(server, "POST", "/v1/config/apply", security, {
      yaml: "apiVersion: stint/v1\ngroups:\n  - { name: sec-made, members: [alice] }\n",
    });
    expect(groups.code, "security may not change groups").toBe("FORBIDDEN");
    expect(await snapshot(server)).toEqual(before);
  });

  it("lets only low-risk roles use a policy that approves on timeout, on role save and on policy save", async () => {
    expect((await call(server, "POST", "/v1/targets", security, { name: "wiki", kind: "internal" })).status).toBe(201);
    const lenientSpec = {
      approval: { stages: [{ approvers: { users: ["carol"] }, timeout: "1h", onTimeout: "approve" }] },
    };
    expect((await call(server, "POST", "/v1/policies", security, { name: "lenient", spec: lenientSpec })).status).toBe(
      201,
    );
    expect((await call(server, "POST", "/v1/policies", security, { name: "strict", spec: {} })).status).toBe(201);

    const high = await call(server, "POST", "/v1/roles", security, {
      name: "wiki-high",
      target: "wiki",
      policy: "lenient",
      risk: "high",
    });
    expect(high.status).toBe(400);
    expect(high.body.error.details.issues[0].path).toBe("body.risk");
    const low = { name: "wiki-low", target: "wiki", policy: "lenient", risk: "low" };
    expect((await call(server, "POST", "/v1/roles", security, low)).status).toBe(201);
    expect((await call(server, "PUT", "/v1/roles/wiki-low", security, { ...low, risk: "medium" })).status).toBe(400);

    const medium = { name: "wiki-medium", target: "wiki", policy: "strict", risk: "medium" };
    expect((await call(server, "POST", "/v1/roles", security, medium)).status).toBe(201);
    const tightened = await call(server, "PUT", "/v1/policies/strict", security, { name: "strict", spec: lenientSpec });
    expect(tightened.status).toBe(400);
    expect(tightened.body.error.message).toContain('role "wiki-medium" uses it');
  });

  it("grants eligibility to users and groups, once each, and updates and removes it", async () => {
    expect((await call(server, "POST", "/v1/targets", security, { name: "ops", kind: "internal" })).status).toBe(201);
    expect((await call(server, "POST", "/v1/policies", security, { name: "ops", spec: {} })).status).toBe(201);
    expect(
      (await call(server, "POST", "/v1/roles", security, { name: "ops", target: "ops", policy: "ops", risk: "medium" }))
        .status,
    ).toBe(201);
    expect((await call(server, "POST", "/v1/groups", admin, { name: "ops-team" })).status).toBe(201);
    const start = await headSeq(server);

    const later = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const alice = await call(server, "POST", "/v1/eligibilities", security, {
      role: "ops",
      principal: "alice",
      endsAt: later,
      reason: "on call this month",
    });
    expect(alice.status, JSON.stringify(alice.body)).toBe(201);
    expect(alice.body).toMatchObject({
      role: "ops",
      principal: "alice",
      group: null,
      status: "active",
      grantedBy: "sec",
    });
    expect((await call(server, "POST", "/v1/eligibilities", security, { role: "ops", principal: "alice" })).code).toBe(
      "ALREADY_EXISTS",
    );
    const team = await call(server, "POST", "/v1/eligibilities", security, { role: "ops", group: "ops-team" });
    expect(team.status).toBe(201);
    const bob = await call(server, "POST", "/v1/eligibilities", security, {
      role: "ops",
      principal: "bob",
      startsAt: later,
    });
    expect(bob.body.status).toBe("scheduled");
    expect(
      (await call(server, "POST", "/v1/eligibilities", security, { role: "ops", principal: "bob", group: "ops-team" }))
        .status,
    ).toBe(400);
    expect((await call(server, "POST", "/v1/eligibilities", security, { role: "ops" })).status).toBe(400);
    const backwards = await call(server, "POST", "/v1/eligibilities", security, {
      role: "ops",
      principal: "carol",
      startsAt: later,
      endsAt: new Date().toISOString(),
    });
    expect(backwards.body.error.details.issues).toEqual([{ path: "body.endsAt", message: "must be after startsAt" }]);

    expect((await call(server, "GET", "/v1/eligibilities?role=ops", auditor)).body.items).toHaveLength(3);
    expect((await call(server, "GET", "/v1/eligibilities?principal=alice", auditor)).body.items).toHaveLength(1);
    expect((await call(server, "GET", "/v1/eligibilities?group=ops-team", auditor)).body.items).toHaveLength(1);

    const update = { endsAt: later, reason: "on call, extended" };
    const updated = await call(server, "PUT", `/v1/eligibilities/${alice.body.id}`, security, update);
    expect(updated.body).toMatchObject({ reason: "on call, extended", endsAt: later });
    const seq = await headSeq(server);
    expect((await call(server, "PUT", `/v1/eligibilities/${alice.body.id}`, security, update)).status).toBe(200);
    expect(await headSeq(server)).toBe(seq);

    // The expiry report of an end date survives other changes, and a new end date can be reported again.
    const reported = () =>
      sql<{ at: Date | null }>`select expiry_reported_at as at from eligibilities where id = ${alice.body.id}`
        .execute(server.store.db)
        .then((r) => r.rows[0]!.at);
    await sql`update eligibilities set expiry_reported_at = now() where id = ${alice.body.id}`.execute(server.store.db);
    await call(server, "PUT", `/v1/eligibilities/${alice.body.id}`, security, { ...update, reason: "reworded" });
    expect(await reported()).not.toBeNull();
    const sooner = new Date(Date.now() + 86_400_000).toISOString();
    await call(server, "PUT", `/v1/eligibilities/${alice.body.id}`, security, { ...update, endsAt: sooner });
    expect(await reported()).toBeNull();

    expect((await call(server, "DELETE", "/v1/roles/ops", security)).code).toBe("CONFLICT");
    const removed = await call(server, "DELETE", `/v1/eligibilities/${team.body.id}`, security, {
      reason: "team disbanded",
    });
    expect(removed.status).toBe(200);
    expect((await call(server, "GET", `/v1/eligibilities/${team.body.id}`, auditor)).code).toBe("NOT_FOUND");

    const events = await eventsAfter(server, start);
    expect(events.map((e) => `${e.action} ${e.subject}`)).toEqual([
      "eligibility.create eligibility:ops/user:alice",
      "eligibility.create eligibility:ops/group:ops-team",
      "eligibility.create eligibility:ops/user:bob",
      "eligibility.update eligibility:ops/user:alice",
      "eligibility.update eligibility:ops/user:alice",
      "eligibility.update eligibility:ops/user:alice",
      "eligibility.remove eligibility:ops/group:ops-team",
    ]);
    expect(events.at(-1)!.reason).toBe("team disbanded");
  });

  it("acceptance 6: export → apply on an empty instance → diff reports no changes; applying twice changes nothing", async () => {
    const first = await call(server, "POST", "/v1/config/apply", admin, { yaml: FILE });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toMatchObject({ applied: true, summary: { create: 6, update: 0, delete: 0 } });
    const seq = await headSeq(server);
    const before = await snapshot(server);
    const second = await call(server, "POST", "/v1/config/apply", admin, { yaml: FILE });
    expect(second.body).toEqual({
      applied: false,
      changes: [],
      summary: { create: 0, update: 0, delete: 0 },
      notes: expect.any(Array),
    });
    expect(await headSeq(server), "a second apply writes no audit event").toBe(seq);
    expect(await snapshot(server)).toEqual(before);

    const exported = (await call(server, "GET", "/v1/config/export", auditor)).body.yaml as string;
    expect(exported).toContain("apiVersion: stint/v1");
    expect(exported).toContain("  - role: prod-db-reader\n    groups: [sre]\n    until: 2027-11-24\n");

    const empty = await testServer(engine);
    try {
      // Users come from the directory, not from the file: the new instance has the same people.
      const users = (await call(server, "GET", "/v1/users", admin)).body.items as { name: string; kind: string }[];
      for (const person of users.filter((u) => u.name !== server.config.bootstrapAdminName)) {
        const made = await call(empty, "POST", "/v1/users", empty.adminAuth, { name: person.name, kind: person.kind });
        expect(made.status, JSON.stringify(made.body)).toBe(201);
      }
      const start = await headSeq(empty);
      const applied = await call(empty, "POST", "/v1/config/apply", empty.adminAuth, { yaml: exported });
      expect(applied.status, JSON.stringify(applied.body)).toBe(200);
      expect(applied.body.applied).toBe(true);
      expect(applied.body.summary.update + applied.body.summary.delete).toBe(0);
      const events = await eventsAfter(empty, start);
      expect(events, "one audit event per change").toHaveLength(applied.body.changes.length);
      expect(events.every((e) => e.details.source === "config")).toBe(true);

      const diff = await call(empty, "POST", "/v1/config/diff", empty.adminAuth, { yaml: exported });
      expect(diff.body).toEqual({ changes: [], summary: { create: 0, update: 0, delete: 0 }, notes: [] });
      expect((await call(empty, "GET", "/v1/config/export", empty.adminAuth)).body.yaml).toBe(exported);
    } finally {
      await empty.cleanup();
    }
  });

  it("acceptance 6: an invalid file lists each problem with its line and changes nothing", async () => {
    const before = await snapshot(server);
    for (const endpoint of ["/v1/config/apply", "/v1/config/diff"]) {
      const res = await call(server, "POST", endpoint, admin, { yaml: INVALID });
      expect(res.status).toBe(400);
      expect(res.code).toBe("VALIDATION_FAILED");
      expect(res.body.error.details.problems).toEqual(INVALID_PROBLEMS);
    }
    const syntax = await call(server, "POST", "/v1/config/apply", admin, {
      yaml: "apiVersion: stint/v1\nroles:\n  - name: a\n    name: b\n",
    });
    expect(syntax.body.error.details.problems).toEqual([
      { line: 4, column: 5, path: "", message: "map keys must be unique" },
    ]);
    // Every reference is fine until the last line: still nothing is applied.
    const lastLineWrong = `${FILE.replace(/prod-db-reader/g, "other-reader")}  - role: missing-role\n    users: [alice]\n`;
    const late = await call(server, "POST", "/v1/config/apply", admin, { yaml: lastLineWrong });
    expect(late.body.error.details.problems).toEqual([
      { line: 37, column: 11, path: "eligibility[1].role", message: 'unknown role "missing-role"' },
    ]);
    expect(await snapshot(server)).toEqual(before);
  });

  it("prunes only with prune: true, only in the sections listed, and refuses a prune that breaks references", async () => {
    expect(
      (
        await call(server, "POST", "/v1/targets", security, {
          name: "spare",
          kind: "webhook",
          address: "https://x.test",
        })
      ).status,
    ).toBe(201);
    const exported = (await call(server, "GET", "/v1/config/export", admin)).body.yaml as string;
    const doc = parseDocument(exported);
    const targets = doc.get("targets") as { items: { get(key: string): unknown }[] };
    targets.items = targets.items.filter((item) => item.get("name") !== "spare");
    const withoutSpare = doc.toString();

    const kept = await call(server, "POST", "/v1/config/diff", admin, { yaml: withoutSpare });
    expect(kept.body.changes).toEqual([]);
    expect(kept.body.notes).toEqual(["1 target not in the file is kept (prune: true would delete it)."]);

    doc.set("prune", true);
    const pruning = doc.toString();
    const plan = await call(server, "POST", "/v1/config/diff", admin, { yaml: pruning });
    expect(plan.body.changes).toEqual([{ action: "delete", kind: "target", name: "spare", fields: [] }]);
    const seq = await headSeq(server);
    expect((await call(server, "POST", "/v1/config/apply", admin, { yaml: pruning })).body.applied).toBe(true);
    expect((await call(server, "GET", "/v1/targets/spare", admin)).code).toBe("NOT_FOUND");
    expect((await eventsAfter(server, seq)).map((e) => `${e.action} ${e.subject}`)).toEqual([
      "target.delete target:spare",
    ]);

    const before = await snapshot(server);
    const breaking = await call(server, "POST", "/v1/config/apply", admin, {
      yaml: "apiVersion: stint/v1\nprune: true\ntargets: []\n",
    });
    expect(breaking.status).toBe(400);
    const problems = breaking.body.error.details.problems as { line: number; column: number; message: string }[];
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.every((p) => p.line === 2 && p.column === 8)).toBe(true);
    expect(problems.map((p) => p.message)).toContain(
      'role "prod-db-reader" (not in this file) uses target "stint", which prune would delete',
    );
    expect(await snapshot(server)).toEqual(before);
  });

  it("CLI: diff, apply and export against the server; problems as FILE:LINE:COL with exit 2", async () => {
    const exportFile = path.join(dir, `${engine}-export.yaml`);
    const exported = await cli(server, admin, ["export", "-o", exportFile], dir);
    expect(exported.code, exported.stderr).toBe(0);
    const text = await readFile(exportFile, "utf8");
    expect(text).toBe((await call(server, "GET", "/v1/config/export", admin)).body.yaml);

    const diff = await cli(server, admin, ["diff", "-f", exportFile], dir);
    expect(diff).toMatchObject({ code: 0, stdout: "No changes.\n" });
    const json = await cli(server, admin, ["diff", "-f", exportFile, "--json"], dir);
    expect(JSON.parse(json.stdout)).toMatchObject({ changes: [], summary: { create: 0 } });

    const changed = path.join(dir, `${engine}-changed.yaml`);
    await writeFile(changed, text.replace("maxExtensions: 1", "maxExtensions: 2"));
    const plan = await cli(server, security, ["diff", "-f", changed], dir);
    expect(plan.stdout).toBe(
      "~ policy high-risk\n    spec.maxExtensions: 1 → 2\nPlan: 0 to create, 1 to change, 0 to delete.\n",
    );
    const apply = await cli(server, security, ["apply", "-f", changed], dir);
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.stdout).toContain("Applied 1 change.");
    expect((await cli(server, security, ["apply", "-f", changed], dir)).stdout).toBe("No changes.\n");

    const invalid = path.join(dir, `${engine}-invalid.yaml`);
    await writeFile(invalid, INVALID);
    const before = await snapshot(server);
    const refused = await cli(server, admin, ["apply", "-f", invalid], dir);
    expect(refused.code).toBe(2);
    const lines = refused.stderr.trimEnd().split("\n");
    expect(lines.slice(0, INVALID_PROBLEMS.length)).toEqual(
      INVALID_PROBLEMS.map((p) => `${invalid}:${p.line}:${p.column}: ${p.path}: ${p.message}`),
    );
    expect(lines.at(-1)).toMatch(/^error: VALIDATION_FAILED: The configuration file has 5 problems/);
    expect(await snapshot(server)).toEqual(before);

    const listed = await cli(server, auditor, ["policies", "list"], dir);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^NAME +MAX +MFA +STAGES +ROLES +DESCRIPTION\n/);
    expect(listed.stdout).toMatch(/\nhigh-risk +2h +yes +1 +prod-db-reader/);
    expect((await cli(server, auditor, ["targets", "list"], dir)).stdout).toMatch(/\nstint +internal/);
    expect((await cli(server, user, ["targets", "list"], dir)).code).toBe(5);
  });
});
