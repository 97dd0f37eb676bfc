/**
 * Anomaly alerts end to end (issue 16, acceptance 4), on PGlite and PostgreSQL: real activations on an injected
 * clock. A user's first activation of a role and a break-glass use raise alerts that reach a local webhook
 * receiver (signed), each with an `alert.raised` audit event; the user's normal second activation raises
 * nothing. The configured actions happen: first activation opens a review item, break-glass is revoked. Reading
 * the stream again from the start raises nothing twice. A plain user can neither list nor acknowledge alerts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { SIGNATURE_HEADER, verifyWebhookSignature } from "../../src/modules/notify/index.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import type { AlertDto } from "../../src/contract/alerts.js";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { injectFetch } from "./inject-fetch.js";
import { createAlertService } from "../../src/modules/alerts/index.js";

const SECRET = "alerts-webhook-secret-0123456789";

type AlertItem = AlertDto & Record<string, unknown>;
/** An answer: one alert, a list of them, a request, or an error. */
type Body = Partial<AlertItem> & {
  items: AlertItem[];
  state?: string;
  error?: { code: string; message: string };
};

interface Hook {
  event: string;
  severity: string;
  title: string;
  text: string;
  fields: { label: string; value: string }[];
}

describe.each(["pglite", "postgres"] as const)("anomaly alerts on %s", (engine) => {
  const clock = manualClock(new Date(Date.now() - 3600_000));
  const work = mkdtempSync(path.join(tmpdir(), "stint-alerts-"));
  const hooks: Hook[] = [];
  let badSignatures = 0;
  let receiver: HttpServer;
  let server: TestServer;
  /** Signs in afresh on each call: the injected clock moves by hours, past an access token's life. */
  const alice = "alice";
  const auditor = "audrey";
  const security = "sekou";
  /** Only the alerts' notifications (request notifications go to the same channel). */
  const alertHooks = () => hooks.filter((h) => h.event.startsWith("alert."));
  const requestIds: Record<string, string> = {};

  async function call(who: string, method: string, url: string, payload?: unknown) {
    const res = await server.app.inject({
      method: method as "GET",
      url,
      headers: { authorization: who.startsWith("Bearer ") ? who : await server.login(who) },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: (res.body ? res.json() : {}) as Body };
  }

  /** Chains what committed, runs the consumer until it is caught up, then delivers the outbox. */
  async function pass(): Promise<number> {
    let processed = 0;
    for (let i = 0; i < 20; i++) {
      await server.audit.catchUp();
      const n = await server.alerts.runOnce();
      processed += n;
      if (n === 0) break;
    }
    for (let i = 0; i < 10; i++) if ((await server.outbox.runOnce()).claimed === 0) break;
    return processed;
  }

  async function activate(role: string, reason: string) {
    const res = await call(alice, "POST", "/v1/activation-requests", { role, reason, duration: "1h" });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as { id: string; state: string };
  }

  beforeAll(async () => {
    receiver = createHttpServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        if (
          !verifyWebhookSignature(SECRET, String(req.headers[SIGNATURE_HEADER.toLowerCase()] ?? ""), body, clock.now())
        )
          badSignatures++;
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
    - { name: security-hook, kind: webhook, url: "http://127.0.0.1:${port}/hook", secret: "${SECRET}" }
alerts:
  channels: [security-hook]
  rules:
    firstActivation: { action: review }
    breakGlass: { action: revoke }
`,
    );
    server = await testServer(engine, {
      clock,
      env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_RECONCILE_INTERVAL: "0" },
    });
    await server.userWithRoles(alice, ["user"]);
    await server.userWithRoles(auditor, ["auditor"]);
    await server.userWithRoles(security, ["security"]);
    const apply = await call(server.adminAuth, "POST", "/v1/config/apply", {
      yaml: `
apiVersion: stint/v1
policies:
  - name: self
    mfa: { required: false }
    maxDuration: 8h
  - name: glass
    mfa: { required: false }
    maxDuration: 8h
    breakGlass: true
targets:
  - name: stint
    kind: internal
roles:
  - name: ops-read
    target: stint
    policy: self
    risk: low
  - name: emergency
    target: stint
    policy: glass
    risk: critical
eligibility:
  - role: ops-read
    users: [alice]
  - role: emergency
    users: [alice]
`,
    });
    expect(apply.status, JSON.stringify(apply.body)).toBe(200);
    // Whatever the setup wrote is learned from first: the scenario starts from a caught-up consumer.
    await pass();
  }, 60_000);

  afterAll(async () => {
    await server?.cleanup();
    await new Promise<void>((resolve) => receiver?.close(() => resolve()));
    rmSync(work, { recursive: true, force: true });
  });

  it("a first activation raises one alert that reaches the webhook, audited, with a review item", async () => {
    const first = await activate("ops-read", "checking the nightly batch output");
    expect(first.state).toBe("active");
    requestIds.first = first.id;
    expect(await pass()).toBeGreaterThan(0);

    const list = await call(auditor, "GET", "/v1/alerts");
    expect(list.status).toBe(200);
    expect(list.body.items).toMatchObject([
      { rule: "firstActivation", principal: "alice", subject: `request:${first.id}`, status: "open", action: "review" },
    ]);
    const alert = list.body.items[0]!;
    expect(alert.reviewItemId).toEqual(expect.any(String));
    const items = await server.store.db
      .selectFrom("review_items")
      .selectAll()
      .where("id", "=", alert.reviewItemId)
      .execute();
    expect(items).toMatchObject([{ kind: "anomaly-alert", subject: `request:${first.id}`, status: "open" }]);
    // The item is worked in the reviewers' inbox, as a break-glass one is: never by alice, whose conduct it is.
    const inbox = await call(security, "GET", "/v1/reviews/items");
    expect(inbox.status).toBe(200);
    expect(inbox.body.items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: alert.reviewItemId, kind: "anomaly-alert", member: "alice", status: "open" }),
      ]),
    );
    const own = await call(alice, "POST", `/v1/reviews/items/${alert.reviewItemId}/decision`, {
      decision: "acknowledge",
      reason: "it was me, all fine",
    });
    expect([own.status, (own.body as { error?: { code?: string } }).error?.code]).toEqual([403, "SELF_REVIEW"]);
    const keep = await call(security, "POST", `/v1/reviews/items/${alert.reviewItemId}/decision`, {
      decision: "keep",
      reason: "not a decision for this kind",
    });
    expect(keep.status).toBe(400);
    const acknowledged = await call(security, "POST", `/v1/reviews/items/${alert.reviewItemId}/decision`, {
      decision: "acknowledge",
      reason: "alice joined the batch rota this week: expected",
    });
    expect(acknowledged.status, JSON.stringify(acknowledged.body)).toBe(200);
    expect(acknowledged.body).toMatchObject({ status: "closed", outcome: "acknowledged" });

    expect(await server.registry.getSingleMetricAsString("stint_alerts_raised_total")).toContain(
      'stint_alerts_raised_total{rule="firstActivation"} 1',
    );
    expect(await server.registry.getSingleMetricAsString("stint_alerts_lag_events")).toMatch(
      /stint_alerts_lag_events \d+/,
    );
    expect(alertHooks().map((h) => h.event)).toEqual(["alert.first_activation"]);
    expect(alertHooks()[0]!.title).toContain("alice activated ops-read for the first time");
    expect(badSignatures).toBe(0);
    const raised = (await server.audit.read({ limit: 1000 })).filter((e) => e.action === "alert.raised");
    expect(raised).toMatchObject([
      {
        actor: "system:alerts",
        subject: `alert:${alert.id}`,
        details: { rule: "firstActivation", principal: "alice" },
      },
    ]);
  });

  it("the normal second activation of the same role raises nothing", async () => {
    expect((await call(alice, "POST", "/v1/me/roles/ops-read/deactivate")).status).toBe(200);
    clock.advance(3 * 3600_000);
    const second = await activate("ops-read", "checking the nightly batch output again");
    requestIds.second = second.id;
    expect(await pass()).toBeGreaterThan(0);
    const list = await call(auditor, "GET", "/v1/alerts");
    expect(list.body.items).toHaveLength(1);
    expect(list.body.items.map((a) => a.subject)).not.toContain(`request:${second.id}`);
    expect(alertHooks()).toHaveLength(1);
  });

  it("a break-glass use raises its alert (webhook, audit) and the configured revoke ends the activation", async () => {
    clock.advance(60_000);
    const glass = await activate("emergency", "primary database is down and SSO with it");
    expect(glass.state).toBe("active");
    requestIds.glass = glass.id;
    await pass();

    const list = await call(auditor, "GET", "/v1/alerts?rule=breakGlass");
    expect(list.body.items).toMatchObject([
      {
        rule: "breakGlass",
        severity: "critical",
        principal: "alice",
        subject: `request:${glass.id}`,
        action: "revoke",
      },
    ]);
    const events = alertHooks()
      .map((h) => h.event)
      .sort();
    // Her first use of the emergency role is a first activation too.
    expect(events).toEqual(["alert.break_glass", "alert.first_activation", "alert.first_activation"]);
    const hook = alertHooks().find((h) => h.event === "alert.break_glass")!;
    expect(hook.severity).toBe("critical");
    expect(hook.fields).toContainEqual({ label: "Action", value: "revoke" });
    expect(badSignatures).toBe(0);

    const request = await call(auditor, "GET", `/v1/activation-requests/${glass.id}`);
    expect(request.body.state).toBe("revoked");
    const audit = await server.audit.read({ limit: 1000 });
    expect(audit.filter((e) => e.action === "alert.raised").map((e) => e.details.rule)).toEqual([
      "firstActivation",
      "firstActivation",
      "breakGlass",
    ]);
    // The revoke is the requests module's, by the alerts' system actor.
    expect(audit.filter((e) => e.subject === `request:${glass.id}` && e.actor === "system:alerts")).not.toEqual([]);
  });

  it("reading the whole stream again (cursor back at 0) raises nothing twice", async () => {
    const before = (await call(auditor, "GET", "/v1/alerts")).body.items.length;
    const hooksBefore = alertHooks().length;
    await sql`update siem_cursors set seq = 0 where destination = 'alerts:anomaly'`.execute(server.store.db);
    expect(await pass()).toBeGreaterThan(0);
    expect((await call(auditor, "GET", "/v1/alerts")).body.items).toHaveLength(before);
    expect(alertHooks()).toHaveLength(hooksBefore);
  });

  it("a plain user can neither list, read nor acknowledge alerts; an auditor acknowledges once, audited", async () => {
    const alert = (await call(auditor, "GET", "/v1/alerts?rule=breakGlass")).body.items[0]!;
    expect((await call(alice, "GET", "/v1/alerts")).body.error?.code).toBe("FORBIDDEN");
    expect((await call(alice, "GET", `/v1/alerts/${alert.id}`)).body.error?.code).toBe("FORBIDDEN");
    const refused = await call(alice, "POST", `/v1/alerts/${alert.id}/ack`, { note: "nothing to see" });
    expect(refused.status).toBe(403);
    expect((await call(auditor, "GET", `/v1/alerts/${alert.id}`)).body.status).toBe("open");

    // Bad input is refused before anything changes: an overlong or control-character note, an unknown filter.
    for (const note of ["x".repeat(1001), "fine\u0000DROP", ""])
      expect((await call(auditor, "POST", `/v1/alerts/${alert.id}/ack`, { note })).body.error?.code).toBe(
        "VALIDATION_FAILED",
      );
    expect((await call(auditor, "POST", `/v1/alerts/${alert.id}/ack`, { note: "x", by: "admin" })).status).toBe(400);
    expect((await call(auditor, "GET", "/v1/alerts?rule=lateNight")).status).toBe(400);
    expect((await call(auditor, "GET", "/v1/alerts/not-a-uuid")).status).toBe(400);
    const ack = await call(auditor, "POST", `/v1/alerts/${alert.id}/ack`, { note: "confirmed with the on-call lead" });
    expect(ack.status, JSON.stringify(ack.body)).toBe(200);
    expect(ack.body).toMatchObject({
      status: "acknowledged",
      acknowledgedBy: "audrey",
      ackNote: "confirmed with the on-call lead",
    });
    expect((await call(auditor, "POST", `/v1/alerts/${alert.id}/ack`, {})).body.error?.code).toBe("CONFLICT");
    const acks = (await server.audit.read({ limit: 1000 })).filter((e) => e.action === "alert.acknowledged");
    expect(acks).toMatchObject([{ actor: "audrey", subject: `alert:${alert.id}` }]);
    expect((await call(auditor, "GET", "/v1/alerts?status=open")).body.items.map((a) => a.id)).not.toContain(alert.id);
    expect((await call(auditor, "GET", `/v1/alerts/00000000-0000-7000-8000-000000000000`)).body.error?.code).toBe(
      "NOT_FOUND",
    );
  });

  it("stint alerts list|show|ack: an auditor lists, reads and acknowledges; a user is refused", async () => {
    const stint = async (who: string, argv: string[]) =>
      runCliCaptured(argv, {
        env: {
          STINT_CONFIG_DIR: work,
          HOME: work,
          STINT_SERVER: "http://127.0.0.1:8420",
          STINT_TOKEN: (await server.login(who)).replace(/^Bearer /, ""),
        },
        fetch: injectFetch(() => server.app),
      });
    const list = await stint(auditor, ["alerts", "list", "--status", "open", "--rule", "firstActivation"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/firstActivation\s+alice\s+alice activated ops-read for the first time\s+open/);
    const json = await stint(auditor, ["alerts", "list", "--rule", "firstActivation", "--json"]);
    const first = (JSON.parse(json.stdout) as { items: AlertDto[] }).items.find((a) => a.title.includes("ops-read"))!;
    const show = await stint(auditor, ["alerts", "show", first.id]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`review item ${first.reviewItemId}`);

    const refused = await stint(alice, ["alerts", "ack", first.id, "--note", "mine, all fine"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/not allowed/);
    expect((await stint(alice, ["alerts", "list"])).code).not.toBe(0);

    const ack = await stint(auditor, ["alerts", "ack", first.id, "--note", "new on-call rota, expected"]);
    expect(ack.code, ack.stderr).toBe(0);
    expect(ack.stdout).toBe(`${first.id}: acknowledged by audrey\n`);
    const after = await stint(auditor, ["alerts", "show", first.id, "--json"]);
    expect(JSON.parse(after.stdout)).toMatchObject({ status: "acknowledged", ackNote: "new on-call rota, expected" });
  });

  it("one node consumes: a second node waits while the lease is held, then resumes from the cursor, raising nothing twice", async () => {
    const alertsBefore = (await call(auditor, "GET", "/v1/alerts")).body.items.length;
    const nodeB = createAlertService({
      store: server.store,
      audit: server.audit,
      clock,
      config: server.config.alerts,
      holder: "node-b",
      outbox: { enqueue: async () => true },
      openReviewItem: async () => undefined,
      revoke: async () => undefined,
    });
    // Something new in the stream (the activation before is still active: end it first).
    expect((await call(alice, "POST", "/v1/me/roles/ops-read/deactivate")).status).toBe(200);
    await server.audit.catchUp();
    await server.alerts.runOnce(); // this node holds the lease now (and is caught up)
    expect(
      (
        await call(alice, "POST", "/v1/activation-requests", {
          role: "ops-read",
          reason: "one more look",
          duration: "1h",
        })
      ).status,
    ).toBe(201);
    await server.audit.catchUp();
    expect(await nodeB.runOnce()).toBe(0);
    await server.alerts.stop(); // gives the lease up, as a node shutting down does
    expect(await nodeB.runOnce()).toBeGreaterThan(0);
    expect(await nodeB.runOnce()).toBe(0);
    expect((await call(auditor, "GET", "/v1/alerts")).body.items).toHaveLength(alertsBefore);
    await nodeB.stop();
  });
});
