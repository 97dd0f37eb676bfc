/**
 * Four-eyes on one-object writes (issue 16): a POST or PUT through the API (what the admin forms send) that widens
 * access at a four-eyes tier is not refused but held as a change request, like a configuration file: 202 with
 * `{ changeRequest }`, nothing changed; its author cannot approve it; a second admin's approval applies it; a
 * catalog that changed meanwhile makes it stale; narrowing writes apply at once (200/201). The other admins hear of
 * it through the notification outbox (a webhook receiver here), once, with nothing secret in the message.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const SECRET = "four-eyes-webhook-secret-0123456789";
/** An entitlement value: what a role grants stays in Stint, never in a notification. */
const MARKER = "cn=vault-root-7f3a";

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
    risk: high
  - name: wiki-editor
    target: vault-db
    policy: strict
    risk: low
`;

interface Hook {
  event: string;
  title: string;
  text: string;
  fields: { label: string; value: string }[];
}

describe("four-eyes on one-object writes", () => {
  const clock = manualClock(new Date());
  const work = mkdtempSync(path.join(tmpdir(), "stint-four-eyes-writes-"));
  const hooks: Hook[] = [];
  const raw: string[] = [];
  let receiver: HttpServer;
  let server: TestServer;
  let admin: string;
  let admin2: string;
  let auditor: string;

  async function call(method: string, url: string, auth: string, body?: unknown) {
    const res = await server.app.inject({
      method: method as "GET",
      url,
      headers: { authorization: auth },
      ...(body !== undefined ? { payload: body as object } : {}),
    });
    const parsed = res.body ? res.json() : undefined;
    return { status: res.statusCode, code: parsed?.error?.code as string | undefined, body: parsed };
  }

  const eligibleForCrown = async () =>
    (
      (await call("GET", "/v1/eligibilities?role=crown-jewels", auditor)).body.items as {
        status: string;
        principal: string;
      }[]
    )
      .filter((e) => e.status !== "removed")
      .map((e) => e.principal);

  beforeAll(async () => {
    receiver = createHttpServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        raw.push(body);
        hooks.push(JSON.parse(body) as Hook);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    const port = (receiver.address() as AddressInfo).port;
    writeFileSync(
      path.join(work, "stint.yaml"),
      `notifications:
  channels:
    - { name: admins-hook, kind: webhook, url: "http://127.0.0.1:${port}/hook", secret: "${SECRET}" }
`,
    );
    server = await testServer("pglite", {
      clock,
      env: {
        STINT_CONFIG_FILE: path.join(work, "stint.yaml"),
        STINT_FOUR_EYES_TIERS: "high,critical",
        STINT_RECONCILE_INTERVAL: "0",
      },
    });
    admin = server.adminAuth;
    for (const name of ["alice", "carol"]) expect((await call("POST", "/v1/users", admin, { name })).status).toBe(201);
    expect((await call("POST", "/v1/config/apply", admin, { yaml: BASE })).body).toMatchObject({ applied: true });
    admin2 = await server.userWithRoles("admin2", ["admin"]);
    auditor = await server.userWithRoles("aud", ["auditor"]);
    const mail = await call("PATCH", "/v1/users/admin2", admin, { email: "admin2@example.com" });
    expect(mail.status, JSON.stringify(mail.body)).toBe(200);
  });

  afterAll(async () => {
    await server?.cleanup();
    await new Promise<void>((resolve) => receiver?.close(() => resolve()));
    rmSync(work, { recursive: true, force: true });
  });

  it("a POST of eligibility at risk high is held (202), not approvable by its author, applied by a second admin", async () => {
    const held = await call("POST", "/v1/eligibilities", admin, { role: "crown-jewels", principal: "alice" });
    expect(held.status, JSON.stringify(held.body)).toBe(202);
    expect(held.body).toEqual({ changeRequest: expect.objectContaining({ status: "pending", tier: "high" }) });
    const id = held.body.changeRequest.id as string;
    expect(await eligibleForCrown()).toEqual([]);
    const shown = (await call("GET", `/v1/change-requests/${id}`, admin2)).body;
    expect(shown).toMatchObject({ author: "admin", canApprove: true, plan: { summary: { create: 1 } } });
    expect(shown.document).toContain("role: crown-jewels");
    expect(shown.document).not.toContain("prune");

    const own = await call("POST", `/v1/change-requests/${id}/approve`, admin, {});
    expect(own).toMatchObject({ status: 403, code: "CHANGE_REQUEST_SELF_APPROVAL" });
    expect(await eligibleForCrown()).toEqual([]);

    const approved = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body.status).toBe("applied");
    expect(await eligibleForCrown()).toEqual(["alice"]);
  });

  it("a PUT of a role that lowers its risk is held; the role keeps its risk until approved", async () => {
    const role = (await call("GET", "/v1/roles/crown-jewels", admin)).body;
    const input = { name: role.name, target: role.target, policy: role.policy, owners: role.owners };
    const held = await call("PUT", "/v1/roles/crown-jewels", admin, { ...input, risk: "low", entitlement: {} });
    expect(held.status, JSON.stringify(held.body)).toBe(202);
    expect((await call("GET", "/v1/roles/crown-jewels", auditor)).body.risk).toBe("high");
    const id = held.body.changeRequest.id as string;
    expect((await call("POST", `/v1/change-requests/${id}/approve`, admin2, {})).body.status).toBe("applied");
    expect((await call("GET", "/v1/roles/crown-jewels", auditor)).body.risk).toBe("low");
    // Narrowing (raising the risk back) applies at once: 200, no change request.
    const raised = await call("PUT", "/v1/roles/crown-jewels", admin, { ...input, risk: "high", entitlement: {} });
    expect(raised.status, JSON.stringify(raised.body)).toBe(200);
    expect(raised.body).toMatchObject({ name: "crown-jewels", risk: "high" });
    expect(raised.body.changeRequest).toBeUndefined();
  });

  it("refuses a held write once the catalog changed meanwhile (stale)", async () => {
    const policy = (await call("GET", "/v1/policies/strict", admin)).body;
    const looser = await call("PUT", "/v1/policies/strict", admin, {
      name: "strict",
      spec: { ...policy.spec, maxDuration: "8h" },
    });
    expect(looser.status, JSON.stringify(looser.body)).toBe(202);
    const id = looser.body.changeRequest.id as string;
    // A neutral change meanwhile, applied at once.
    const moved = await call("PUT", "/v1/policies/strict", admin2, {
      name: "strict",
      description: "reviewed",
      spec: policy.spec,
    });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    const stale = await call("POST", `/v1/change-requests/${id}/approve`, admin2, {});
    expect(stale).toMatchObject({ status: 409, code: "CHANGE_REQUEST_STALE" });
    expect((await call("GET", "/v1/policies/strict", auditor)).body.spec.maxDuration).toBe("2h");
  });

  it("refuses a rename at a covered tier (a change request cannot rename), with or without other changes", async () => {
    const role = (await call("GET", "/v1/roles/crown-jewels", admin)).body;
    const input = { target: role.target, policy: role.policy, owners: role.owners, entitlement: role.entitlement };
    const requests = (await call("GET", "/v1/change-requests?status=all", auditor)).body.items.length as number;
    const both = await call("PUT", "/v1/roles/crown-jewels", admin, { ...input, name: "jewels", risk: "low" });
    expect(both).toMatchObject({ status: 403, code: "FOUR_EYES_REQUIRED" });
    expect(both.body.error.details).toMatchObject({ tier: "high" });
    expect((await call("GET", "/v1/roles/crown-jewels", auditor)).body.risk).toBe("high");
    const renamed = await call("PUT", "/v1/roles/crown-jewels", admin, { ...input, name: "jewels", risk: "high" });
    expect(renamed).toMatchObject({ status: 403, code: "FOUR_EYES_REQUIRED" });
    expect(renamed.body.error.message).toContain("a change request cannot rename");
    expect((await call("GET", "/v1/roles/jewels", auditor)).status).toBe(404);
    // No change request was made for either.
    expect((await call("GET", "/v1/change-requests?status=all", auditor)).body.items.length).toBe(requests);
  });

  it("narrowing and low-risk writes apply at once", async () => {
    expect((await call("POST", "/v1/eligibilities", admin, { role: "wiki-editor", principal: "alice" })).status).toBe(
      201,
    );
    const policy = (await call("GET", "/v1/policies/strict", admin)).body;
    const stricter = await call("PUT", "/v1/policies/strict", admin, {
      name: "strict",
      description: "reviewed",
      spec: { ...policy.spec, maxDuration: "90m", defaultDuration: "1h" },
    });
    expect(stricter.status, JSON.stringify(stricter.body)).toBe(200);
  });

  it("tells the other admins through the outbox, once per change request, with nothing secret in it", async () => {
    const role = (await call("GET", "/v1/roles/crown-jewels", admin)).body;
    const held = await call("PUT", "/v1/roles/crown-jewels", admin, {
      name: role.name,
      target: role.target,
      policy: role.policy,
      owners: role.owners,
      risk: "high",
      entitlement: { group: MARKER },
    });
    expect(held.status, JSON.stringify(held.body)).toBe(202);
    const id = held.body.changeRequest.id as string;
    // One outbox row for it (a webhook channel; e-mail channels would address admin2, never the author).
    const rows = await server.store.db
      .selectFrom("outbox")
      .select(["payload", "idempotency_key"])
      .where("kind", "=", "notify.deliver")
      .execute();
    const mine = rows.filter((r) => JSON.stringify(r.payload).includes(id));
    expect(mine).toHaveLength(1);
    for (let i = 0; i < 10; i++) if ((await server.outbox.runOnce()).claimed === 0) break;
    const created = hooks.filter((h) => h.event === "change_request.created");
    expect(created.length).toBeGreaterThanOrEqual(4);
    const ours = created.filter((h) => h.fields.some((f) => f.value === id));
    expect(ours).toHaveLength(1);
    expect(ours[0]!.title).toContain("admin asks a second admin");
    expect(ours[0]!.text).toContain(`stint changes approve ${id}`);
    expect(ours[0]!.text).toContain("role crown-jewels: entitlement changed");
    const everything = raw.join("\n");
    for (const secret of [MARKER, SECRET, admin.replace(/^Bearer /, ""), admin2.replace(/^Bearer /, "")])
      expect(everything).not.toContain(secret);
  });
});
