/**
 * Break-glass review items worked in the reviewer inbox, and the evidence report over them, through the API on
 * PGlite: who may work an item (never the person who broke the glass), what an acknowledgement and an escalation
 * record, the report's rows, approvers and justifications, its audited hash, and who may read it.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { injectFetch } from "../../../test/e2e/inject-fetch.js";
import { runCliCaptured } from "../../testing/cli-run.js";
import { passwordFor } from "../../testing/server.js";
import { reportHash } from "./evidence.rules.js";
import { targetsHarness, type TargetsHarness } from "../../testing/targets-harness.js";
import type { EvidenceReportDto } from "../../contract/evidence.js";

let h: TargetsHarness;
let receiver: HttpServer;
const work = mkdtempSync(path.join(tmpdir(), "stint-evidence-"));
const hooks: { event: string; title: string; text: string }[] = [];
const from = new Date(Date.now() - 3600_000).toISOString();
let to: string;
let glassId: string;
let approvedId: string;
let itemId: string;

async function cli(argv: string[], user: string) {
  const token = (await h.server.login(user, passwordFor(user))).slice("Bearer ".length);
  return runCliCaptured(argv, {
    env: { STINT_SERVER: "http://stint.test", STINT_TOKEN: token, STINT_CONFIG_DIR: path.join(work, "cli") },
    fetch: injectFetch(() => h.server.app),
    now: () => h.clock.now().getTime(),
  });
}

async function events(action: string) {
  await h.server.audit.catchUp();
  return (await h.server.audit.read({ limit: 5000 })).filter((e) => e.action === action);
}

beforeAll(async () => {
  receiver = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      hooks.push(JSON.parse(body) as (typeof hooks)[number]);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  writeFileSync(
    path.join(work, "stint.yaml"),
    "notifications:\n  channels:\n" +
      `    - { name: security, kind: webhook, url: "http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook", secret: "webhook-secret-for-tests-0123456789" }\n`,
  );
  h = await targetsHarness({ env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml") } });
  await h.server.userWithRoles("sid", ["security"]);
  await h.server.userWithRoles("sue", ["security"]);
  await h.server.userWithRoles("aud", ["auditor"]);
  await h.createUser("ann");
  await h.createUser("olive");
  await h.apply(`
apiVersion: stint/v1
policies:
  - name: glass
    mfa: { required: false }
    maxDuration: 1h
    breakGlass: true
  - name: approved
    mfa: { required: false }
    maxDuration: 1h
    approval:
      stages:
        - approvers: { users: [olive] }
targets:
  - { name: stint, kind: internal }
roles:
  - { name: emergency, target: stint, policy: glass, risk: medium }
  - { name: reports, target: stint, policy: approved, risk: medium }
eligibility:
  - { role: emergency, users: [sid, ann] }
  - { role: reports, users: [ann] }
`);
  const glass = await h.as("sid", "POST", "/v1/activation-requests", {
    role: "emergency",
    duration: "30m",
    reason: "primary database down, failover by hand",
  });
  expect(glass.body.state, JSON.stringify(glass.body)).toBe("active");
  glassId = String(glass.body.id);
  const asked = await h.as("ann", "POST", "/v1/activation-requests", {
    role: "reports",
    duration: "30m",
    reason: "quarter-end ledger export for finance",
  });
  expect(asked.body.state, JSON.stringify(asked.body)).toBe("pending");
  approvedId = String(asked.body.id);
  const approve = await h.as("olive", "POST", `/v1/activation-requests/${approvedId}/approvals`, {
    reason: "export agreed with finance",
  });
  expect(approve.status, JSON.stringify(approve.body)).toBe(200);
  await h.drainOutbox();
  to = new Date(h.clock.now().getTime() + 3600_000).toISOString();
}, 60_000);

afterAll(async () => {
  await h?.server.cleanup();
  await new Promise((resolve) => receiver?.close(resolve));
  rmSync(work, { recursive: true, force: true });
});

describe("break-glass review items in the inbox", () => {
  it("are worked by a reviewer who manages reviews, never by whoever broke the glass, with a finding", async () => {
    const inbox = await h.as("sue", "GET", "/v1/reviews/items");
    const items = inbox.body.items as { id: string; kind: string; subject: string }[];
    const item = items.find((i) => i.subject === `request:${glassId}`)!;
    expect(item).toMatchObject({ kind: "break-glass-activation" });
    itemId = item.id;
    // A plain user does not see it.
    expect(((await h.as("ann", "GET", "/v1/reviews/items")).body.items as unknown[]).length).toBe(0);

    const self = await h.as("sid", "POST", `/v1/reviews/items/${itemId}/decision`, {
      decision: "acknowledge",
      reason: "it was me and it was fine",
    });
    expect(self.status).toBe(403);
    expect(self.body.error?.code).toBe("SELF_REVIEW");
    const refusals = await events("review.decide");
    expect(refusals.some((e) => e.actor === "sid" && e.outcome === "denied" && e.reason === "SELF_REVIEW")).toBe(true);

    const plain = await h.as("ann", "POST", `/v1/reviews/items/${itemId}/decision`, {
      decision: "acknowledge",
      reason: "looks fine to me",
    });
    expect(plain.status).toBe(403);
    expect(plain.body.error?.code).toBe("NOT_A_REVIEWER");

    const keep = await h.as("sue", "POST", `/v1/reviews/items/${itemId}/decision`, {
      decision: "keep",
      reason: "keep?",
    });
    expect(keep.status).toBe(400);
    expect(keep.body.error?.code).toBe("VALIDATION_FAILED");

    const finding = "failover during INC-4242; commands match the incident log";
    const ack = await h.as("sue", "POST", `/v1/reviews/items/${itemId}/decision`, {
      decision: "acknowledge",
      reason: finding,
    });
    expect(ack.status, JSON.stringify(ack.body)).toBe(200);
    expect(ack.body).toMatchObject({
      status: "closed",
      outcome: "acknowledged",
      decisionReason: finding,
      closedBy: "sue",
    });
    const again = await h.as("sue", "POST", `/v1/reviews/items/${itemId}/decision`, {
      decision: "escalate",
      reason: "changed my mind",
    });
    expect(again.body.error?.code).toBe("REVIEW_ITEM_CLOSED");
    const acks = await events("review.acknowledge");
    expect(acks).toEqual([
      expect.objectContaining({ actor: "sue", subject: `request:${glassId}`, reason: finding, outcome: "success" }),
    ]);
  });

  it("an escalation (stint reviews decide … escalate) closes the item as escalated, audited, and notifies", async () => {
    const glass = await h.as("ann", "POST", "/v1/activation-requests", {
      role: "emergency",
      duration: "30m",
      reason: '=HYPERLINK("http://evil") restore from backup',
    });
    expect(glass.body.state, JSON.stringify(glass.body)).toBe("active");
    // Through the CLI: `stint reviews list` shows it (member: who broke the glass), `decide … escalate` works it.
    const listed = await cli(["reviews", "list", "--json"], "sid");
    expect(listed.code, listed.stderr).toBe(0);
    const items = (JSON.parse(listed.stdout) as { items: { id: string; subject: string; member: string }[] }).items;
    const item = items.find((i) => i.subject === `request:${String(glass.body.id)}`)!;
    expect(item.member).toBe("ann");
    const res = await cli(
      ["reviews", "decide", item.id, "escalate", "--reason", "no incident open at that time"],
      "sid",
    );
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe(`request:${String(glass.body.id)}: escalated\n`);
    const after = await h.admin("GET", "/v1/reviews/items");
    expect((after.body.items as { id: string }[]).some((i) => i.id === item.id)).toBe(false);
    expect((await events("review.escalate")).map((e) => e.subject)).toEqual([`request:${String(glass.body.id)}`]);
    await h.drainOutbox();
    const sent = hooks.filter((hook) => hook.event === "review.escalated");
    expect(sent).toHaveLength(1);
    expect(sent[0]!.title).toBe(`Break-glass review escalated: request:${String(glass.body.id)}`);
    expect(sent[0]!.text).toContain("no incident open at that time");
  });
});

describe("the evidence report", () => {
  it("lists exactly the activations of a role in the period, with approvers, justifications and the review", async () => {
    const res = await h.server.app.inject({
      method: "GET",
      url: `/v1/evidence?from=${from}&to=${to}&role=emergency`,
      headers: { authorization: await h.server.login("aud") },
    });
    expect(res.statusCode, res.body).toBe(200);
    const report = res.json<EvidenceReportDto>();
    expect(report.activations.map((a) => a.requester)).toEqual(["sid", "ann"]);
    expect(report.activations[0]).toMatchObject({
      requestId: glassId,
      approval: "break-glass",
      justification: "primary database down, failover by hand",
      decisions: [],
      review: {
        itemId,
        outcome: "acknowledged",
        finding: "failover during INC-4242; commands match the incident log",
        closedBy: "sue",
      },
    });
    expect(report.activations[1]!.review).toMatchObject({ outcome: "escalated" });
    // One break-glass use acknowledged, one escalated.
    expect(report.slis.approvedJustification).toEqual({ numerator: 1, denominator: 2, value: 0.5 });
  });

  it("names approvers and their reasons; its hash is the canonical JSON's and is audited", async () => {
    const res = await h.server.app.inject({
      method: "GET",
      url: `/v1/evidence?from=${from}&to=${to}`,
      headers: { authorization: await h.server.login("aud") },
    });
    const { sha256, ...body } = res.json<EvidenceReportDto>();
    expect(body.activations.map((a) => a.role).sort()).toEqual(["emergency", "emergency", "reports"]);
    const approved = body.activations.find((a) => a.requestId === approvedId)!;
    expect(approved).toMatchObject({
      requester: "ann",
      approval: "approved",
      justification: "quarter-end ledger export for finance",
      decisions: [{ approver: "olive", decision: "approve", reason: "export agreed with finance", stage: 0 }],
    });
    expect(sha256).toBe(reportHash(body));
    expect(res.headers["x-stint-report-sha256"]).toBe(sha256);
    const audited = await events("evidence.report");
    expect(audited.at(-1)).toMatchObject({ actor: "aud", details: expect.objectContaining({ sha256 }) });
  });

  it("as CSV: one row per activation, formulas defused, the CSV's own SHA-256 audited", async () => {
    const res = await h.server.app.inject({
      method: "GET",
      url: `/v1/evidence?from=${from}&to=${to}&format=csv`,
      headers: { authorization: await h.server.login("sue") },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/csv/);
    const sha = createHash("sha256").update(res.body).digest("hex");
    expect(res.headers["x-stint-report-sha256"]).toBe(sha);
    const rows = res.body.split("\r\n\r\n")[0]!.split("\r\n");
    expect(rows).toHaveLength(4);
    expect(res.body).toContain(`"'=HYPERLINK(""http://evil"") restore from backup"`);
    expect(res.body).not.toMatch(/(^|,)"=/m);
    expect((await events("evidence.report")).at(-1)).toMatchObject({
      actor: "sue",
      details: expect.objectContaining({ format: "csv", sha256: sha }),
    });
  });

  it("is refused to plain users and anonymous callers, and to a period that ends before it starts", async () => {
    const url = `/v1/evidence?from=${from}&to=${to}`;
    const user = await h.server.app.inject({
      method: "GET",
      url,
      headers: { authorization: await h.server.login("olive") },
    });
    expect(user.statusCode).toBe(403);
    expect(user.json<{ error: { code: string } }>().error.code).toBe("FORBIDDEN");
    expect((await h.server.app.inject({ method: "GET", url })).statusCode).toBe(401);
    const backwards = await h.server.app.inject({
      method: "GET",
      url: `/v1/evidence?from=${to}&to=${from}`,
      headers: { authorization: await h.server.login("aud") },
    });
    expect(backwards.statusCode).toBe(400);
  });
});
