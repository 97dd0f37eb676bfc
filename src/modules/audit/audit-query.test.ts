/** GET /v1/audit/events filters and newest-first paging, over a log with a few known events. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "./audit.types.js";
import { testServer, type TestServer } from "../../testing/server.js";

let t: TestServer;

async function events(query: string) {
  const res = await t.app.inject({
    method: "GET",
    url: `/v1/audit/events?${query}`,
    headers: { authorization: t.adminAuth },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: AuditEvent[]; nextAfterSeq: number | null; nextBeforeSeq?: number | null }>();
}

beforeAll(async () => {
  t = await testServer("pglite");
  for (const name of ["qa1", "qa2", "qa3"]) await t.userWithRoles(name, ["user"]);
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/config/apply",
    headers: { authorization: t.adminAuth },
    payload: {
      yaml: "apiVersion: stint/v1\npolicies:\n  - name: p\ntargets:\n  - name: s\n    kind: internal\nroles:\n  - name: audited-role\n    target: s\n    policy: p\n    risk: low\neligibility:\n  - role: audited-role\n    users: [qa1]\n",
    },
  });
  expect(res.statusCode, res.body).toBe(200);
});
afterAll(async () => t?.cleanup());

describe("audit event queries", () => {
  it("filter by actor, exact action, action prefix and role; each answer holds only matching events", async () => {
    const all = (await events("limit=1000")).items;
    expect(all.length).toBeGreaterThan(5);
    const byAdmin = (await events("actor=admin&limit=1000")).items;
    expect(byAdmin.length).toBeGreaterThan(0);
    expect(byAdmin.every((e) => e.actor === "admin")).toBe(true);
    expect(byAdmin.length).toBe(all.filter((e) => e.actor === "admin").length);

    const created = (await events("action=user.create&limit=1000")).items;
    expect(created.map((e) => e.action)).toEqual(all.filter((e) => e.action === "user.create").map((e) => e.action));
    expect(created.length).toBeGreaterThanOrEqual(3);
    const prefix = (await events("action=user.*&limit=1000")).items;
    expect(prefix.length).toBe(all.filter((e) => e.action.startsWith("user.")).length);
    expect(prefix.length).toBeGreaterThan(created.length - 1);
    // "_" and "%" are not wildcards.
    expect((await events("action=user_*&limit=1000")).items).toEqual([]);

    const role = (await events("role=audited-role&limit=1000")).items;
    expect(role.length).toBeGreaterThan(0);
    expect(role.every((e) => e.details.role === "audited-role" || e.subject === "role:audited-role")).toBe(true);
    expect(role.some((e) => e.subject === "role:audited-role")).toBe(true);
  });

  it("pages newest first with beforeSeq, and until excludes later events", async () => {
    const all = (await events("limit=1000")).items;
    const first = await events("order=desc&limit=3");
    expect(first.items.map((e) => e.seq)).toEqual(
      all
        .slice(-3)
        .reverse()
        .map((e) => e.seq),
    );
    expect(first.nextBeforeSeq).toBe(first.items.at(-1)!.seq);
    const second = await events(`beforeSeq=${first.nextBeforeSeq}&limit=3`);
    expect(second.items.map((e) => e.seq)).toEqual(
      all
        .slice(-6, -3)
        .reverse()
        .map((e) => e.seq),
    );
    const cut = all[Math.floor(all.length / 2)]!;
    const until = (await events(`until=${encodeURIComponent(cut.time)}&limit=1000`)).items;
    expect(until.every((e) => Date.parse(e.time) < Date.parse(cut.time))).toBe(true);
  });

  it("refuses filters that are not filters", async () => {
    for (const query of ["action=DROP%20TABLE", "action=a*b", "role=Bad%20Role", "order=sideways", "beforeSeq=0"]) {
      const res = await t.app.inject({
        method: "GET",
        url: `/v1/audit/events?${query}`,
        headers: { authorization: t.adminAuth },
      });
      expect(res.statusCode, query).toBe(400);
      expect(res.json<{ error: { code: string } }>().error.code).toBe("VALIDATION_FAILED");
    }
  });
});
