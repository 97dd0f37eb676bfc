/**
 * Four-eyes on changes to access itself (issue 16, acceptance 6), on PGlite and PostgreSQL, through the CLI and the
 * API of an in-process server: an admin's `stint apply` that adds eligibility to a critical role is held as a change
 * request; the same admin cannot approve it; a second admin approves and only then does the eligibility exist; a
 * narrowing change applies at once; all audited. Attacks: the author approving (refused, audited), non-admins
 * approving, a replayed approval, approving after the catalog changed (stale), a widening change hidden in a mixed
 * plan (the whole plan is held), an approval that would make the approver eligible (SELF_GRANT), expiry.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliContext } from "../../src/cli/context.js";
import { runCli } from "../../src/cli/program.js";
import { loadConfig } from "../../src/config/config.js";
import { manualClock } from "../../src/lib/clock.js";
import { ENGINES } from "../../src/testing/engines.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { injectFetch } from "./inject-fetch.js";

interface Answer {
  status: number;
  code: string | undefined;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const BASE = `apiVersion: stint/v1
policies:
  - name: strict
    maxDuration: 2h
    approval:
      stages:
        - approvers: { users: [carol] }
targets:
  - name: vault-db
    kind: internal
roles:
  - name: crown-jewels
    target: vault-db
    policy: strict
    risk: critical
  - name: wiki-editor
    target: vault-db
    policy: strict
    risk: low
eligibility:
  - role: wiki-editor
    users: [bob]
`;

/** The base file with more eligibility lines (each `- role: …` entry as YAML). */
const withEligibility = (...entries: string[]) => `${BASE}${entries.map((e) => `${e}\n`).join("")}`;
const ALICE_CRITICAL = "  - role: crown-jewels\n    users: [alice]";
/** The file as the whole truth: what it does not list is deleted. */
const pruned = (text: string) => text.replace("apiVersion: stint/v1\n", "apiVersion: stint/v1\nprune: true\n");

describe.each(ENGINES)("four-eyes on %s", (engine) => {
  const clock = manualClock(new Date());
  let server: TestServer;
  let admin: string;
  let admin2: string;
  let security: string;
  let auditor: string;
  let user: string;
  let dir: string;

  async function call(method: string, url: string, auth: string, body?: unknown): Promise<Answer> {
    const res = await server.app.inject({
      method: method as "GET",
      url,
      headers: { authorization: auth },
      ...(body !== undefined ? { payload: body as object } : {}),
    });
    const parsed = res.body ? res.json() : undefined;
    return { status: res.statusCode, code: parsed?.error?.code, body: parsed };
  }

  async function cli(auth: string, argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const stdin = new PassThrough();
    stdin.end();
    const ctx: CliContext = {
      stdin: Object.assign(stdin, { isTTY: false }),
      stdout: { write: (chunk) => out.push(String(chunk)) > 0 },
      stderr: { write: (chunk) => err.push(String(chunk)) > 0 },
      env: {
        STINT_CONFIG_DIR: dir,
        HOME: dir,
        STINT_SERVER: "http://127.0.0.1:8420",
        STINT_TOKEN: auth.replace(/^Bearer /, ""),
      },
      fetch: injectFetch(() => server.app),
      now: () => Date.now(),
      version: "0.0.0-test",
    };
    const code = await runCli(argv, ctx);
    return { code, stdout: out.join(""), stderr: err.join("") };
  }

  async function fileOf(name: string, text: string): Promise<string> {
    const file = path.join(dir, `${engine}-${name}.yaml`);
    await writeFile(file, text);
    return file;
  }

  /** Live eligibility of the critical role, as "user:name". */
  async function eligibleForCritical(): Promise<string[]> {
    const list = await call("GET", "/v1/eligibilities?role=crown-jewels", auditor);
    expect(list.status).toBe(200);
    return (list.body.items as { principal: string | null; group: string | null; status: string }[])
      .filter((e) => e.status !== "removed")
      .map((e) => (e.principal ? `user:${e.principal}` : `group:${e.group}`))
      .sort();
  }

  async function events(action: string, subject?: string) {
    await server.audit.catchUp();
    const all = await server.audit.read({ afterSeq: 0, limit: 5000 });
    return all.filter((e) => e.action === action && (subject === undefined || e.subject === subject));
  }

  /** Applies a file as `auth` through the API; returns the change request id when it was held. */
  async function applyHeld(auth: string, text: string): Promise<string> {
    const applied = await call("POST", "/v1/config/apply", auth, { yaml: text });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    expect(applied.body).toMatchObject({ applied: false, changeRequest: { status: "pending", tier: "critical" } });
    return applied.body.changeRequest.id as string;
  }

  beforeAll(async () => {
    server = await testServer(engine, { clock, env: { STINT_FOUR_EYES_TIERS: "high,critical" } });
    admin = server.adminAuth;
    dir = await mkdtemp(path.join(tmpdir(), "stint-four-eyes-"));
    for (const name of ["alice", "bob", "carol"])
      expect((await call("POST", "/v1/users", admin, { name })).status).toBe(201);
    // The base catalog creates roles and low-risk eligibility only: nothing widens at a four-eyes tier.
    const base = await call("POST", "/v1/config/apply", admin, { yaml: BASE });
    expect(base.body).toMatchObject({ applied: true });
    expect(base.body.changeRequest).toBeUndefined();
    // While nobody else could approve (the bootstrap admin alone), a widening file applies at once, audited.
    const alone = await call("POST", "/v1/config/apply", admin, {
      yaml: withEligibility("  - role: crown-jewels\n    users: [bob]"),
    });
    expect(alone.body).toMatchObject({ applied: true });
    expect(alone.body.changeRequest).toBeUndefined();
    expect(alone.body.notes.join("\n")).toContain("four-eyes waived");
    expect(await events("config.four_eyes_waived")).toMatchObject([{ actor: "admin", details: { tier: "critical" } }]);
    expect((await call("POST", "/v1/config/apply", admin, { yaml: pruned(BASE) })).body.applied).toBe(true);
    admin2 = await server.userWithRoles("admin2", ["admin"]);
    security = await server.userWithRoles("sec", ["security"]);
    auditor = await server.userWithRoles("aud", ["auditor"]);
    user = await server.userWithRoles("usr", ["user"]);
  });

  afterAll(async () => {
    await server?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("acceptance 6: held, not approvable by its author, applied by a second admin; narrowing at once; audited", async () => {
    // The admin's apply adds eligibility to a critical role: held, and the CLI says so with the id.
    const file = await fileOf("widen", withEligibility(ALICE_CRITICAL));
    const applied = await cli(admin, ["apply", "-f", file]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain("+ eligibility crown-jewels/user:alice");
    expect(applied.stdout).toContain("Held for a second admin (four-eyes: this widens access at risk critical).");
    const id = /Change request ([0-9a-f-]{36}), pending until/.exec(applied.stdout)?.[1];
    expect(id).toBeDefined();
    expect(await eligibleForCritical()).toEqual([]);

    // Listed for the other admins with the diff and why it is held.
    const listed = await cli(admin2, ["changes", "list"]);
    expect(listed.stdout).toMatch(new RegExp(`${id} +pending +critical +admin +\\+1 ~0 -0`));
    const shown = await cli(admin2, ["changes", "show", id!]);
    expect(shown.stdout).toContain("Widens access:\n  eligibility crown-jewels/user:alice (critical): new eligibility");
    expect(shown.stdout).toContain("+ eligibility crown-jewels/user:alice");
    expect((await call("GET", `/v1/change-requests/${id}`, admin)).body.canApprove).toBe(false);
    expect((await call("GET", `/v1/change-requests/${id}`, admin2)).body.canApprove).toBe(true);

    // The same admin cannot approve it: refused, audited, and still nothing.
    const own = await cli(admin, ["changes", "approve", id!]);
    expect(own.code).toBe(5);
    expect(own.stderr).toContain("CHANGE_REQUEST_SELF_APPROVAL");
    expect(await eligibleForCritical()).toEqual([]);
    expect(await events("change_request.approved", `change-request:${id}`)).toMatchObject([
      { actor: "admin", outcome: "denied", reason: "CHANGE_REQUEST_SELF_APPROVAL" },
    ]);

    // A second admin approves: only now does the eligibility exist.
    const approved = await cli(admin2, ["changes", "approve", id!, "--reason", "reviewed with the team"]);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toBe(`Applied change request ${id}: 1 change.\n`);
    expect(await eligibleForCritical()).toEqual(["user:alice"]);
    const after = await call("GET", `/v1/change-requests/${id}`, auditor);
    expect(after.body).toMatchObject({ status: "applied", decidedBy: "admin2", reason: "reviewed with the team" });

    expect(await events("change_request.created", `change-request:${id}`)).toMatchObject([
      { actor: "admin", outcome: "success", details: { tier: "critical" } },
    ]);
    // One action name for the approval and the refused attempt before it; the outcome tells them apart.
    expect(await events("change_request.approved", `change-request:${id}`)).toMatchObject([
      { actor: "admin", outcome: "denied", reason: "CHANGE_REQUEST_SELF_APPROVAL" },
      { actor: "admin2", outcome: "success", details: { author: "admin" } },
    ]);
    expect(await events("eligibility.create", "eligibility:crown-jewels/user:alice")).toMatchObject([
      { actor: "admin2", details: { source: "config", changeRequest: id, author: "admin" } },
    ]);

    // A narrowing change (prune the eligibility away) applies at once: no change request.
    const narrow = await fileOf("narrow", `${pruned(BASE)}`);
    const narrowed = await cli(admin, ["apply", "-f", narrow]);
    expect(narrowed.code, narrowed.stderr).toBe(0);
    expect(narrowed.stdout).toContain("- eligibility crown-jewels/user:alice");
    expect(narrowed.stdout).toContain("Applied 1 change.");
    expect(await eligibleForCritical()).toEqual([]);
    expect(await events("eligibility.remove", "eligibility:crown-jewels/user:alice")).toMatchObject([
      { actor: "admin", outcome: "success" },
    ]);
  });

  it("refuses non-admins and replays; never applies twice", async () => {
    const id = await applyHeld(admin, withEligibility(ALICE_CRITICAL));
    for (const who of [user, auditor]) {
      const refused = await call("POST", `/v1/change-requests/${id}/approve`, who, {});
      expect(refused).toMatchObject({ status: 403, code: "FORBIDDEN" });
    }
    expect(await eligibleForCritical()).toEqual([]);
    expect((await call("POST", `/v1/change-requests/${id}/approve`, security, {})).body.status).toBe("applied");
    expect(await eligibleForCritical()).toEqual(["user:alice"]);
    const before = (await events("eligibility.create")).length;
    for (const who of [security, admin2]) {
      const replay = await call("POST", `/v1/change-requests/${id}/approve`, who, {});
      expect(replay).toMatchObject({ status: 409, code: "CHANGE_REQUEST_NOT_PENDING" });
    }
    expect((await events("eligibility.create")).length).toBe(before);
    expect(
      (await events("change_request.approved", `change-request:${id}`)).filter(
        (e) => e.reason === "CHANGE_REQUEST_NOT_PENDING",
      ),
    ).toHaveLength(2);
    // Back to the base (narrowing: at once).
    await call("POST", "/v1/config/apply", admin, {
      yaml: pruned(BASE),
    });
    expect(await eligibleForCritical()).toEqual([]);
  });

  it("refuses an approval after the catalog changed (stale); the author applies again", async () => {
    const id = await applyHeld(admin, withEligibility(ALICE_CRITICAL));
    // Someone changes the catalog meanwhile (a neutral change applies at once).
    const moved = await call("POST", "/v1/config/apply", security, {
      yaml: BASE.replace("maxDuration: 2h", "maxDuration: 2h\n    description: reviewed"),
    });
    expect(moved.body).toMatchObject({ applied: true });
    const stale = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
    expect(stale).toMatchObject({ status: 409, code: "CHANGE_REQUEST_STALE" });
    expect(await eligibleForCritical()).toEqual([]);
    expect((await call("GET", `/v1/change-requests/${id}`, admin2)).body.status).toBe("stale");
    expect(await events("change_request.stale", `change-request:${id}`)).toMatchObject([
      { actor: "admin2", outcome: "failed" },
    ]);
    const again = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
    expect(again.code).toBe("CHANGE_REQUEST_NOT_PENDING");
    // The author applies the file again (against today's catalog) and a second admin approves the new request.
    const fresh = await applyHeld(
      admin,
      withEligibility(ALICE_CRITICAL).replace("maxDuration: 2h", "maxDuration: 2h\n    description: reviewed"),
    );
    expect((await call("POST", `/v1/change-requests/${fresh}/approve`, admin2, {})).body.status).toBe("applied");
    expect(await eligibleForCritical()).toEqual(["user:alice"]);
    await call("POST", "/v1/config/apply", admin, {
      yaml: `${pruned(BASE)}`,
    });
    expect(await eligibleForCritical()).toEqual([]);
  });

  it("holds the whole of a mixed plan: the narrowing part waits with the widening one", async () => {
    const mixed = withEligibility(ALICE_CRITICAL).replace("maxDuration: 2h", "maxDuration: 1h");
    const plan = await call("POST", "/v1/config/diff", admin, { yaml: mixed });
    expect(plan.body.summary).toMatchObject({ create: 1, update: 1 });
    const id = await applyHeld(admin, mixed);
    // Nothing of it happened: the policy still says 2h, and nobody is eligible.
    expect((await call("GET", "/v1/policies/strict", auditor)).body.spec.maxDuration).toBe("2h");
    expect(await eligibleForCritical()).toEqual([]);
    const shown = (await call("GET", `/v1/change-requests/${id}`, admin2)).body;
    expect(shown.assessment.map((a: { kind: string; effect: string }) => `${a.kind}:${a.effect}`).sort()).toEqual([
      "eligibility:widens",
      "policy:neutral",
    ]);
    // Withdrawn by its author: denied, audited as withdrawn, never applied.
    const withdrawn = await cli(admin, ["changes", "deny", id, "--reason", "split it"]);
    expect(withdrawn.stdout).toBe(`Change request ${id}: denied.\n`);
    expect(await events("change_request.withdrawn", `change-request:${id}`)).toHaveLength(1);
    expect((await call("POST", `/v1/change-requests/${id}/approve`, admin2, {})).code).toBe(
      "CHANGE_REQUEST_NOT_PENDING",
    );
    expect((await call("GET", "/v1/policies/strict", auditor)).body.spec.maxDuration).toBe("2h");
  });

  it("refuses an approval that would make the approver eligible (SELF_GRANT); another admin may", async () => {
    const id = await applyHeld(admin, withEligibility("  - role: crown-jewels\n    users: [admin2]"));
    const self = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
    expect(self).toMatchObject({ status: 403, code: "SELF_GRANT" });
    expect(await eligibleForCritical()).toEqual([]);
    expect((await call("GET", `/v1/change-requests/${id}`, admin2)).body.status).toBe("pending");
    expect((await call("POST", `/v1/change-requests/${id}/approve`, security, {})).body.status).toBe("applied");
    expect(await eligibleForCritical()).toEqual(["user:admin2"]);
    await call("POST", "/v1/config/apply", admin, {
      yaml: `${pruned(BASE)}`,
    });
  });

  it("holds one-object writes that widen access at a covered tier (API, admin forms); narrowing ones apply", async () => {
    const created = await call("POST", "/v1/eligibilities", admin2, { role: "crown-jewels", principal: "alice" });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    expect(created.body.changeRequest).toMatchObject({ status: "pending", tier: "critical" });
    const held = (await call("GET", `/v1/change-requests/${created.body.changeRequest.id}`, admin)).body;
    expect(held.assessment).toMatchObject([{ kind: "eligibility", effect: "widens", reasons: ["new eligibility"] }]);
    expect(await eligibleForCritical()).toEqual([]);
    // Low risk is not covered: at once.
    expect((await call("POST", "/v1/eligibilities", admin2, { role: "wiki-editor", principal: "alice" })).status).toBe(
      201,
    );
    const policy = (await call("GET", "/v1/policies/strict", admin2)).body;
    const looser = await call("PUT", "/v1/policies/strict", admin2, {
      name: "strict",
      ...(policy.description ? { description: policy.description } : {}),
      spec: { ...policy.spec, maxDuration: "8h" },
    });
    expect(looser.status).toBe(202);
    const why = (await call("GET", `/v1/change-requests/${looser.body.changeRequest.id}`, admin)).body;
    expect(JSON.stringify(why.assessment)).toContain("maximum duration longer (2h → 8h)");
    const stricter = await call("PUT", "/v1/policies/strict", admin2, {
      name: "strict",
      ...(policy.description ? { description: policy.description } : {}),
      spec: { ...policy.spec, maxDuration: "90m", defaultDuration: "1h" },
    });
    expect(stricter.status, JSON.stringify(stricter.body)).toBe(200);
    const role = (await call("GET", "/v1/roles/crown-jewels", admin2)).body;
    const lowered = await call("PUT", "/v1/roles/crown-jewels", admin2, {
      name: role.name,
      target: role.target,
      policy: role.policy,
      risk: "low",
      owners: role.owners,
      entitlement: role.entitlement,
    });
    expect(lowered.status).toBe(202);
    expect((await call("GET", "/v1/roles/crown-jewels", auditor)).body.risk).toBe("critical");
  });

  it("expires a request nobody decided", async () => {
    const id = await applyHeld(admin, withEligibility(ALICE_CRITICAL));
    clock.advance(7 * 86_400_000 + 1000);
    // Access tokens live minutes: sign in again on the moved clock.
    admin2 = await server.login("admin2");
    auditor = await server.login("aud");
    expect((await call("GET", `/v1/change-requests/${id}`, admin2)).body.status).toBe("expired");
    const late = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
    expect(late).toMatchObject({ status: 409, code: "CHANGE_REQUEST_EXPIRED" });
    expect(await eligibleForCritical()).toEqual([]);
    expect(await events("change_request.expired", `change-request:${id}`)).toHaveLength(1);
    const listed = await call("GET", "/v1/change-requests?status=expired", auditor);
    expect(listed.body.items.map((c: { id: string }) => c.id)).toContain(id);
  });
});

describe("four-eyes configuration", () => {
  it("reads fourEyes from the environment", () => {
    const parsed = loadConfig({ STINT_FOUR_EYES_TIERS: "none", STINT_FOUR_EYES_ALONE: "hold" });
    expect(parsed.ok && parsed.config.fourEyes).toMatchObject({ tiers: [], alone: "hold", expireAfter: 604_800_000 });
    const defaults = loadConfig({});
    expect(defaults.ok && defaults.config.fourEyes).toMatchObject({ tiers: ["high", "critical"], alone: "apply" });
    const bad = loadConfig({ STINT_FOUR_EYES_TIERS: "severe" });
    expect(bad.ok).toBe(false);
  });
});
