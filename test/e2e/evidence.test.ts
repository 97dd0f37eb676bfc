/**
 * The evidence report (issue 16, acceptance 7) on a real PostgreSQL target: two activations of a role in the
 * period, both approved by a person, one of them with a psql session through Stint's PostgreSQL proxy (recorded);
 * an older activation before the period and one of a role on another target in it, which the report must leave
 * out. The report (API and `stint evidence`, JSON and CSV) lists exactly the two, with approvers and
 * justifications, and each recording's SHA-256 is the SHA-256 of the blob in the blob store.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { PassThrough } from "node:stream";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliContext } from "../../src/cli/context.js";
import { runCli } from "../../src/cli/program.js";
import type { EvidenceReportDto } from "../../src/contract/evidence.js";
import { createLogger } from "../../src/lib/logger.js";
import { createPgProxy, type PgProxy } from "../../src/proxies/pg/pg-proxy.js";
import { passwordFor } from "../../src/testing/server.js";
import type { TargetsHarness } from "../../src/testing/targets-harness.js";
import { injectFetch } from "./inject-fetch.js";
import { stintWithPgTarget, type PgTarget } from "./pg-target.js";

const run = promisify(execFile);
const hex = randomBytes(3).toString("hex");
const ann = `ann${hex}`;
const ben = `ben${hex}`;
const database = `stint_ev_${hex}`;
const reader = `stint_ev_reader_${hex}`;

let h: TargetsHarness;
let target: PgTarget | undefined;
let proxy: PgProxy;
let proxyPort: number;
let from: string;
let to: string;
const ids: { old?: string; ann?: string; ben?: string; other?: string } = {};

async function submitAndApprove(user: string, role: string, reason: string, approval: string): Promise<string> {
  const asked = await h.as(user, "POST", "/v1/activation-requests", { role, duration: "1h", reason });
  expect(asked.status, JSON.stringify(asked.body)).toBe(201);
  const id = String(asked.body.id);
  const approved = await h.as("olive", "POST", `/v1/activation-requests/${id}/approvals`, { reason: approval });
  expect(approved.status, JSON.stringify(approved.body)).toBe(200);
  await h.drainOutbox();
  const now = await h.admin("GET", `/v1/activation-requests/${id}`);
  expect(now.body.state, JSON.stringify(now.body)).toBe("active");
  return id;
}

async function cli(argv: string[], user: string) {
  const token = (await h.server.login(user, passwordFor(user))).slice("Bearer ".length);
  const out: Buffer[] = [];
  const err: string[] = [];
  const stdin = new PassThrough();
  stdin.end("");
  const ctx: CliContext = {
    stdin,
    stdout: { write: (chunk) => out.push(Buffer.from(chunk)) > 0 },
    stderr: { write: (chunk) => err.push(String(chunk)) > 0 },
    env: { STINT_SERVER: "http://stint.test", STINT_TOKEN: token, STINT_CONFIG_DIR: "/nonexistent-stint-config" },
    fetch: injectFetch(() => h.server.app),
    now: () => h.clock.now().getTime(),
    version: "0.0.0-test",
  };
  const code = await runCli(argv, ctx);
  return { code, stdout: Buffer.concat(out).toString("utf8"), stderr: err.join("") };
}

beforeAll(async () => {
  ({ h, target } = await stintWithPgTarget({
    target: {
      database,
      reader,
      table: { name: "ledger", column: "entry", value: "opening balance" },
      mintedFor: [ann, ben],
    },
    principals: [ann, ben, "olive"],
    config: (address) => `
apiVersion: stint/v1
policies:
  - name: approved-recorded
    mfa: { required: false }
    maxDuration: 8h
    approval:
      stages:
        - approvers: { users: [olive] }
    session: { recording: required }
targets:
  - name: ledger-db
    kind: postgres
    address: ${address}
  - { name: stint, kind: internal }
roles:
  - name: ledger-reader
    target: ledger-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: approved-recorded
    risk: medium
  - { name: reports, target: stint, policy: approved-recorded, risk: low }
eligibility:
  - { role: ledger-reader, users: [${ann}, ${ben}] }
  - { role: reports, users: [${ann}] }
`,
  }));
  proxy = createPgProxy({ gate: h.server.sessions.gate, logger: createLogger({ level: "silent" }), port: 0 });
  proxyPort = (await proxy.listen()).port;
  h.server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: proxyPort });
  await h.server.userWithRoles("aud", ["auditor"]);
  // Before the period: an activation of ben's, ended.
  ids.old = await submitAndApprove(ben, "ledger-reader", "last month's reconciliation run", "reconciliation ok");
  const ended = await h.as(ben, "POST", "/v1/me/roles/ledger-reader/deactivate", {});
  expect(ended.status, JSON.stringify(ended.body)).toBeLessThan(300);
  await h.drainOutbox();
  h.clock.advance(2 * 86_400_000);
  from = new Date(h.clock.now().getTime() - 3600_000).toISOString();

  ids.ann = await submitAndApprove(ann, "ledger-reader", "audit of ledger entries for INC-7001", "INC-7001 is open");
  ids.ben = await submitAndApprove(ben, "ledger-reader", "month-end close check of the ledger", "month-end, agreed");
  ids.other = await submitAndApprove(ann, "reports", "quarterly report numbers", "reports are due");
  to = new Date(h.clock.now().getTime() + 3600_000).toISOString();
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await h?.server.cleanup();
  await target?.cleanup();
}, 60_000);

describe("the evidence report on a real PostgreSQL target", () => {
  it("a psql session through the proxy is recorded", async () => {
    const token = await h.as(ann, "POST", "/v1/db/tokens", { role: "ledger-reader" });
    expect(token.status, JSON.stringify(token.body)).toBe(200);
    const out = await run(
      "psql",
      [
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-p",
        String(proxyPort),
        "-U",
        `${ann}%ledger-reader`,
        "-d",
        database,
        "-c",
        "select entry from ledger",
      ],
      { env: { ...process.env, PGPASSWORD: String(token.body.password), PGCONNECT_TIMEOUT: "5" } },
    );
    expect(out.stdout).toContain("opening balance");
    // The session ends when psql closes; its row gets the recording's key and hash.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const row = await h.server.store.db
        .selectFrom("sessions")
        .select(["ended_at", "recording_sha256"])
        .where("request_id", "=", ids.ann!)
        .executeTakeFirst();
      if (row?.ended_at && row.recording_sha256) break;
      if (Date.now() > deadline) throw new Error(`the session did not end with a recording: ${JSON.stringify(row)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  it("lists exactly the two activations, approvers, justifications, and hashes that match the blob store", async () => {
    const res = await h.server.app.inject({
      method: "GET",
      url: `/v1/evidence?from=${from}&to=${to}&target=ledger-db`,
      headers: { authorization: await h.server.login("aud") },
    });
    expect(res.statusCode, res.body).toBe(200);
    const report = res.json<EvidenceReportDto>();
    expect(report.scope).toEqual({ from, to, role: null, target: "ledger-db" });
    expect(
      report.activations.map((a) => ({
        id: a.requestId,
        requester: a.requester,
        role: a.role,
        target: a.target,
        justification: a.justification,
        approval: a.approval,
        approvers: a.decisions.map((d) => [d.approver, d.decision, d.reason]),
        sessions: a.sessions.length,
      })),
    ).toEqual([
      {
        id: ids.ann,
        requester: ann,
        role: "ledger-reader",
        target: "ledger-db",
        justification: "audit of ledger entries for INC-7001",
        approval: "approved",
        approvers: [["olive", "approve", "INC-7001 is open"]],
        sessions: 1,
      },
      {
        id: ids.ben,
        requester: ben,
        role: "ledger-reader",
        target: "ledger-db",
        justification: "month-end close check of the ledger",
        approval: "approved",
        approvers: [["olive", "approve", "month-end, agreed"]],
        sessions: 0,
      },
    ]);
    const session = report.activations[0]!.sessions[0]!;
    expect(session).toMatchObject({ kind: "postgres", endReason: "client_closed" });
    const blob = await readFile(path.join(h.server.config.blobDir, session.recording!.key));
    expect(blob.length).toBeGreaterThan(0);
    expect(session.recording!.sha256).toBe(createHash("sha256").update(blob).digest("hex"));
    expect(session.recording!.bytes).toBe(blob.length);
    // Both approved by someone else; the one ended session is recorded.
    expect(report.slis.approvedJustification).toEqual({ numerator: 2, denominator: 2, value: 1 });
    expect(report.slis.recordingCoverage).toEqual({ numerator: 1, denominator: 1, value: 1 });
    expect(report.slis.timeToElevate.count).toBe(2);
    expect(report.slis.approvalLatency.count).toBe(2);
    expect(report.requests).toEqual({ active: 2 });
    expect(report.slis.elevationSuccessRate).toEqual({ numerator: 2, denominator: 2, value: 1 });
  });

  it("stint evidence prints the same report as CSV and JSON, with the SHA-256 the audit log holds", async () => {
    const csv = await cli(["evidence", "--target", "ledger-db", "--from", from, "--to", to, "--format", "csv"], "aud");
    expect(csv.code, csv.stderr).toBe(0);
    const rows = csv.stdout.split("\r\n\r\n")[0]!.split("\r\n");
    expect(rows.slice(1).map((r) => r.split(",")[0])).toEqual([`"${ids.ann}"`, `"${ids.ben}"`]);
    const sha = createHash("sha256").update(csv.stdout).digest("hex");
    expect(csv.stderr).toContain(`SHA-256 ${sha}`);
    await h.server.audit.catchUp();
    const audited = (await h.server.audit.read({ limit: 5000 })).filter((e) => e.action === "evidence.report");
    expect(audited.at(-1)).toMatchObject({ actor: "aud", details: expect.objectContaining({ sha256: sha }) });

    const json = await cli(["evidence", "--role", "ledger-reader", "--from", from, "--to", to], "aud");
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as EvidenceReportDto;
    expect(report.activations.map((a) => a.requestId)).toEqual([ids.ann, ids.ben]);
    expect(json.stderr).toContain(`SHA-256 ${report.sha256}`);

    const denied = await cli(["evidence", "--from", from, "--to", to], ann);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain("FORBIDDEN");
  });
});
