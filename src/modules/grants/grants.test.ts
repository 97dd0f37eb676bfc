/**
 * The grants service at its edges, against a real HTTP endpoint speaking the
 * webhook connector's contract: bad target definitions are refused with clear
 * errors before anything is saved; credentials are sealed and never returned;
 * a refusing target fails the activation with its words; an unreachable one is
 * retried, then fails; an activation revoked while it is being provisioned
 * leaves nothing behind at the target.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { targetsHarness, type TargetsHarness } from "../../testing/targets-harness.js";
import { startWebhookEndpoint, type WebhookEndpoint } from "../../testing/webhook-endpoint.js";
import { cloudIamCatalog } from "../../testing/webhook-target.js";

const SECRET = `whsec-${randomBytes(16).toString("hex")}`;
const BACKOFF = { baseMs: 100, capMs: 1_000 };
let h: TargetsHarness;
let endpoint: WebhookEndpoint;

async function rowCounts() {
  const db = h.server.store.db;
  const count = async (table: "targets" | "roles" | "target_secrets" | "audit_events") =>
    Number((await db.selectFrom(table).select(db.fn.countAll<string>().as("n")).executeTakeFirstOrThrow()).n);
  return {
    targets: await count("targets"),
    roles: await count("roles"),
    secrets: await count("target_secrets"),
  };
}

/** The grant row of a request, as the store keeps it (the API shows the request, not its grant). */
function grantOf(requestId: unknown) {
  return h.server.store.db
    .selectFrom("grants")
    .select(["state", "last_error", "next_attempt_at"])
    .where("request_id", "=", String(requestId))
    .executeTakeFirstOrThrow();
}

/** Notifications to the "ops" channel, as an on-call tool receives them. */
const alerts: { event: string; title: string }[] = [];
let receiver: Server;

beforeAll(async () => {
  endpoint = await startWebhookEndpoint(SECRET);
  receiver = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      alerts.push(JSON.parse(body) as { event: string; title: string });
      res.end("ok");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const dir = mkdtempSync(path.join(tmpdir(), "stint-grants-"));
  const file = path.join(dir, "stint.yaml");
  const port = (receiver.address() as AddressInfo).port;
  writeFileSync(
    file,
    `notifications:\n  channels:\n    - { name: ops, kind: webhook, url: "http://127.0.0.1:${port}/hook", secret: "${SECRET}" }\n`,
  );
  h = await targetsHarness({ backoff: BACKOFF, env: { STINT_CONFIG_FILE: file } });
  for (const user of ["fay", "gus", "hal", "ivy", "jo"]) await h.createUser(user);
  await h.apply(
    cloudIamCatalog(endpoint.url, {
      role: { name: "iam-admin", risk: "high" },
      users: ["fay", "gus", "hal", "ivy", "jo"],
      signed: true,
      moreTargets: `  - name: undeclared\n    kind: webhook\n    address: ${endpoint.url}\n`,
    }),
  );
});

afterAll(async () => {
  await h?.server.cleanup();
  await endpoint?.close();
  await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
});

describe("target definitions", () => {
  it("refuses a bad address, unknown options, a bad template and a bad entitlement, saving nothing", async () => {
    const before = await rowCounts();
    const cases: { body: Record<string, unknown>; path: string; message: RegExp }[] = [
      {
        body: { name: "db1", kind: "postgres", address: "postgres://admin:hunter2@db:5432/app" },
        path: "body.address",
        message: /password/,
      },
      { body: { name: "db2", kind: "postgres" }, path: "body.address", message: /needs an address/ },
      {
        body: { name: "db3", kind: "postgres", address: "mysql://db:3306", options: {} },
        path: "body.address",
        message: /postgres/,
      },
      {
        body: { name: "h1", kind: "ssh-host", address: "ssh://root@h:22", options: {} },
        path: "body.options",
        message: /hostKey is required/,
      },
      {
        body: { name: "w1", kind: "webhook", address: "http://iam.example.com/hook" },
        path: "body.address",
        message: /https/,
      },
      {
        body: { name: "d1", kind: "ldap", address: "ldap://dc:389", options: { bindDn: "cn=x", colour: "red" } },
        path: "body.options",
        message: /colour/,
      },
      {
        body: { name: "d2", kind: "mysql", address: "mysql://root@db:3306", identity: { template: "{{user}}" } },
        path: "body.identity",
        message: /unknown variable/,
      },
    ];
    for (const c of cases) {
      const res = await h.admin("POST", "/v1/targets", c.body);
      expect(res.status, JSON.stringify(c.body)).toBe(400);
      expect(res.body.error?.code).toBe("VALIDATION_FAILED");
      const issues = (res.body.error as unknown as { details: { issues: { path: string; message: string }[] } }).details
        .issues;
      expect(issues, JSON.stringify(c.body)).toEqual(
        expect.arrayContaining([expect.objectContaining({ path: c.path, message: expect.stringMatching(c.message) })]),
      );
      expect(JSON.stringify(res.body)).not.toContain("hunter2");
    }
    const role = await h.admin("POST", "/v1/roles", {
      name: "bad-entitlement",
      target: "cloud-iam",
      policy: "iam-self",
      risk: "low",
      entitlement: { blob: "x".repeat(20_000) },
    });
    expect(role.status).toBe(400);
    expect(await rowCounts()).toEqual(before);
  });

  it("a file with a bad entitlement is refused with the line of the problem", async () => {
    const res = await h.admin("POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1
targets:
  - name: app-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/app?sslmode=disable
roles:
  - name: app-db-reader
    target: app-db
    entitlement: { table: payroll }
    policy: iam-self
    risk: medium
`,
    });
    expect(res.status).toBe(400);
    const problems = (res.body.error as unknown as { details: { problems: { line: number; path: string }[] } }).details
      .problems;
    expect(problems).toEqual([expect.objectContaining({ line: 9, path: "roles[0].entitlement" })]);
    expect((await h.admin("GET", "/v1/targets/app-db")).status).toBe(404);
  });
});

describe("target credentials", () => {
  it("are sealed at rest, never returned or audited, and needed before the target is used", async () => {
    const missing = await h.admin("POST", "/v1/targets/cloud-iam/test");
    expect(missing.body).toEqual(expect.objectContaining({ ok: false, detail: expect.stringMatching(/not stored/) }));

    const undeclared = await h.admin("PUT", "/v1/targets/undeclared/credential", { secret: SECRET });
    expect(undeclared.status).toBe(409);
    expect((await h.admin("PUT", "/v1/targets/cloud-iam/credential", { secret: "" })).status).toBe(400);

    const stored = await h.admin("PUT", "/v1/targets/cloud-iam/credential", { secret: SECRET });
    expect(stored.status).toBe(200);
    expect(stored.body).toEqual({ secret: "targets/cloud-iam/signing" });
    const row = await h.server.store.db.selectFrom("target_secrets").selectAll().executeTakeFirstOrThrow();
    expect(row.sealed).not.toContain(SECRET);
    expect(Buffer.from(row.sealed.replace(/[-_.]/g, ""), "base64").toString("latin1")).not.toContain(SECRET);

    const target = await h.admin("GET", "/v1/targets/cloud-iam");
    expect(target.body.credential).toEqual({ secret: "targets/cloud-iam/signing", stored: true });
    expect((await h.admin("POST", "/v1/targets/cloud-iam/test")).body).toEqual(expect.objectContaining({ ok: true }));
    const audit = await h.admin("GET", "/v1/audit/events?limit=500");
    expect(JSON.stringify(audit.body)).not.toContain(SECRET);
    expect(JSON.stringify(target.body)).not.toContain(SECRET);
    expect((audit.body.items as { action: string }[]).map((e) => e.action)).toContain("target.credential_set");
  });
});

describe("provisioning outcomes", () => {
  it("activates once the endpoint holds the privilege, with the mapped login", async () => {
    endpoint.mode = "ok";
    const request = await h.activate("fay", "iam-admin");
    expect(request.state).toBe("active");
    expect(endpoint.holders.get("fay@example.com")?.size).toBe(1);
    await h.expireAll();
    expect(endpoint.holders.get("fay@example.com")?.size).toBe(0);
    // One operation id per grant and action: the provision and the revoke of this activation.
    const ids = endpoint.calls.filter((c) => c.login === "fay@example.com").map((c) => c.id);
    expect(ids).toEqual([expect.stringMatching(/^provision:/), expect.stringMatching(/^revoke:/)]);
  });

  it("a refusal fails the activation with the target's own message", async () => {
    endpoint.mode = "refuse";
    const request = await h.activate("gus", "iam-admin");
    expect(request.state).toBe("failed");
    expect(request.endReason).toEqual(expect.stringContaining("the IAM role does not exist"));
    expect(endpoint.holders.has("gus@example.com")).toBe(false);
    // provisionFailed fails the grant in the request's statement: nothing would retry or revoke it later.
    expect(await grantOf(request.id)).toEqual({
      state: "failed",
      last_error: expect.stringContaining("the IAM role does not exist"),
      next_attempt_at: null,
    });
  });

  it("an endpoint that keeps failing is retried, then the activation fails; it never silently stays provisioning", async () => {
    endpoint.mode = "down";
    const submitted = await h.activate("hal", "iam-admin");
    expect(submitted.state).toBe("provisioning");
    for (let i = 0; i < 6; i++) {
      h.clock.advance(BACKOFF.capMs);
      await h.drainOutbox();
    }
    const after = await h.admin("GET", `/v1/activation-requests/${String(submitted.id)}`);
    expect(after.body.state).toBe("failed");
    expect(String(after.body.endReason)).toMatch(/did not answer/);
    expect(await grantOf(submitted.id)).toMatchObject({ state: "failed", next_attempt_at: null });
    expect(endpoint.calls.filter((c) => c.login === "hal@example.com" && c.action === "provision")).toHaveLength(5);
  });

  it("an activation revoked while its provisioning runs leaves nothing at the target", async () => {
    endpoint.mode = "hold";
    const res = await h.as("ivy", "POST", "/v1/activation-requests", {
      role: "iam-admin",
      duration: "1h",
      reason: "rotate the deploy keys after incident 77",
    });
    expect(res.status).toBe(201);
    const running = h.server.outbox.runOnce();
    await endpoint.held();
    const revoked = await h.admin("POST", `/v1/activation-requests/${String(res.body.id)}/revoke`, {
      reason: "wrong account",
    });
    expect(revoked.body.state).toBe("revoked");
    endpoint.mode = "ok";
    endpoint.release();
    await running;
    await h.drainOutbox();
    expect(endpoint.holders.get("ivy@example.com")?.size ?? 0).toBe(0);
    const grants = await h.server.store.db
      .selectFrom("grants")
      .select("state")
      .where("login", "=", "ivy@example.com")
      .execute();
    expect(grants.map((g) => g.state)).toEqual(["revoked"]);
  });
});

describe("operations on targets", () => {
  it("answers clear errors: internal targets, unknown roles, unreachable targets", async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    await h.apply(`
apiVersion: stint/v1
targets:
  - name: stint-itself
    kind: internal
  - name: nowhere
    kind: webhook
    address: http://127.0.0.1:${closedPort}/hook
    credential: { secret: targets/nowhere/signing }
roles:
  - name: nowhere-admin
    target: nowhere
    entitlement: { role: admin }
    policy: iam-self
    risk: low
`);
    expect((await h.admin("POST", "/v1/reconcile", { target: "stint-itself" })).body.error?.code).toBe("CONFLICT");
    expect((await h.admin("POST", "/v1/reconcile", { target: "no-such" })).status).toBe(404);
    const convert = await h.admin("POST", "/v1/targets/cloud-iam/discovery/conversions", {
      role: "no-such-role",
      reason: "phase two migration",
    });
    expect(convert.body.error?.code).toBe("NOT_FOUND");
    await h.admin("PUT", "/v1/targets/nowhere/credential", { secret: SECRET });
    const discovery = await h.admin("GET", "/v1/targets/nowhere/discovery");
    expect(discovery.status).toBe(502);
    expect(discovery.body.error?.code).toBe("TARGET_UNAVAILABLE");
    expect(JSON.stringify(discovery.body)).not.toMatch(/at .*\.js|SECRET|whsec/);
    const reconcile = await h.admin("POST", "/v1/reconcile", { target: "nowhere" });
    expect(reconcile.body.items).toEqual([expect.objectContaining({ target: "nowhere", ok: false })]);
  });
});

describe("alerts", () => {
  it("drift and a failing revocation reach the notification channels", async () => {
    endpoint.mode = "ok";
    endpoint.holders.set("mallory@example.com", new Set([JSON.stringify({ role: "arn:aws:iam::123:role/admin" })]));
    const res = await h.admin("POST", "/v1/reconcile", { target: "cloud-iam" });
    expect(res.body.items).toEqual([
      expect.objectContaining({
        drift: [expect.objectContaining({ login: "mallory@example.com", kind: "unexpected", new: true })],
      }),
    ]);
    await h.drainOutbox();
    expect(alerts).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ event: "drift.detected", title: expect.stringContaining("mallory@example.com") }),
      ]),
    );

    const request = await h.activate("jo", "iam-admin");
    expect(request.state).toBe("active");
    endpoint.mode = "down";
    await h.expireAll();
    expect(alerts).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ event: "grant.revoke_failing", title: expect.stringContaining("jo") }),
      ]),
    );
    endpoint.mode = "ok";
    h.clock.advance(BACKOFF.capMs);
    await h.drainOutbox();
    expect(endpoint.holders.get("jo@example.com")?.size).toBe(0);
  });
});
