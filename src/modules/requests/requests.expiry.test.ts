/**
 * Expiry ends each due activation exactly once, whoever runs it and however many run at once: the scheduler of
 * every node calls `expireDue`, which claims due rows with SKIP LOCKED and ends them in one set-based statement
 * (`requestStore.expireDue`). Several concurrent callers here stand for several nodes (on PostgreSQL they run on
 * separate pool connections; PGlite has one connection, so they take turns).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { manualClock } from "../../lib/clock.js";
import { newId } from "../../lib/ids.js";
import { ENGINES } from "../../testing/engines.js";
import { seedRole, seedUser } from "../../testing/pim.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { statementCounter } from "../../testing/statements.js";
import type { Actor } from "../authz/authz.types.js";

const USERS = 6;
const SHORT_ROLES = ["short-1", "short-2"];
const LONG_ROLES = ["long-1", "long-2"];
const policy = (defaultDuration: string) => ({
  defaultDuration,
  maxDuration: "4h",
  mfa: { required: false, maxAge: "10m" },
  justification: { minLength: 10 },
  approval: { stages: [] },
});

describe.each(ENGINES)("expiry of many activations on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  it("concurrent expiry passes end every due activation exactly once, with its grant, its pending extension and one audit event, and leave the others active", async () => {
    const clock = manualClock("2026-03-02T10:00:00Z");
    server = await testServer(engine, { clock });
    const s = server;
    const actors: Actor[] = [];
    for (let u = 0; u < USERS; u++) {
      const name = `user-${u}`;
      await seedUser(s, name, { groups: ["sre"] });
      const { id } = await s.store.db
        .selectFrom("principals")
        .select("id")
        .where("name", "=", name)
        .executeTakeFirstOrThrow();
      actors.push({ kind: "principal", id, name, principalKind: "user", roles: ["user"] });
    }
    for (const name of SHORT_ROLES) await seedRole(s, { name, policy: policy("30m"), eligibleGroups: ["sre"] });
    for (const name of LONG_ROLES) await seedRole(s, { name, policy: policy("2h"), eligibleGroups: ["sre"] });
    const context = { correlationId: "expiry-test", sourceIp: null, userAgent: null };
    const due = new Set<string>();
    const notDue = new Set<string>();
    for (const actor of actors) {
      for (const role of [...SHORT_ROLES, ...LONG_ROLES]) {
        const request = await s.requests.submit(actor, { role, reason: "expiry test activation" }, context);
        expect(request.state).toBe("active");
        (SHORT_ROLES.includes(role) ? due : notDue).add(request.id);
      }
    }
    // A pending extension of one due activation: it has nothing left to extend once that ends.
    const [extended] = [...due];
    const parent = await s.store.db
      .selectFrom("activation_requests")
      .selectAll()
      .where("id", "=", extended!)
      .executeTakeFirstOrThrow();
    const extensionId = newId();
    await s.store.db
      .insertInto("activation_requests")
      .values({
        id: extensionId,
        role_id: parent.role_id,
        requester_id: parent.requester_id,
        extends_request_id: parent.id,
        state: "pending",
        duration_ms: 1_800_000,
        reason: "a little longer please",
        policy_snapshot: JSON.stringify(policy("30m")),
        stages: JSON.stringify([{ name: "owners", approvers: { owners: true }, count: 1 }]),
        submitted_at: clock.now(),
        updated_at: clock.now(),
      })
      .execute();

    clock.advance(31 * 60_000);
    // Three passes at once, a few rows per transaction each, as three nodes' schedulers would.
    const pass = async () => {
      let ended = 0;
      for (;;) {
        const n = await s.requests.expireDue(3);
        ended += n;
        if (n < 3) return ended;
      }
    };
    const counts = await Promise.all([pass(), pass(), pass()]);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(due.size);
    expect(await s.requests.expireDue(100)).toBe(0);

    const rows = await s.store.db
      .selectFrom("activation_requests")
      .leftJoin("grants", "grants.request_id", "activation_requests.id")
      .select(["activation_requests.id", "activation_requests.state", "grants.state as grant_state"])
      .where("activation_requests.extends_request_id", "is", null)
      .execute();
    expect(rows).toHaveLength(due.size + notDue.size);
    for (const row of rows) {
      if (due.has(row.id)) expect(row, row.id).toMatchObject({ state: "expired", grant_state: "revoked" });
      else expect(row, row.id).toMatchObject({ state: "active", grant_state: "active" });
    }
    const extension = await s.store.db
      .selectFrom("activation_requests")
      .select(["state", "ended_by"])
      .where("id", "=", extensionId)
      .executeTakeFirstOrThrow();
    expect(extension).toEqual({ state: "cancelled", ended_by: "system" });

    await s.audit.catchUp();
    const events = await s.audit.read({ limit: 10_000 });
    const expired = events.filter((e) => e.action === "request.expired").map((e) => e.subject);
    expect(expired.sort()).toEqual([...due].map((id) => `request:${id}`).sort());
    const cancelled = events.filter((e) => e.action === "request.cancelled").map((e) => e.subject);
    expect(cancelled).toEqual([`request:${extensionId}`]);
    // Written by the batch template (`appendUniform`): every MAC verified, nothing chained as rejected.
    expect(events.filter((e) => e.action === "audit.pending_rejected")).toEqual([]);
    for (const event of events.filter((e) => e.action === "request.expired"))
      expect(event).toMatchObject({
        actor: "system:system",
        outcome: "success",
        reason: "the activation reached its end time",
        correlationId: "scheduler",
        time: "2026-03-02T10:31:00.000Z",
        details: {
          role: expect.stringMatching(/^short-[12]$/) as string,
          requester: expect.stringMatching(/^user-\d$/) as string,
          activatedAt: "2026-03-02T10:00:00.000Z",
          expiresAt: "2026-03-02T10:30:00.000Z",
          endedAt: "2026-03-02T10:31:00.000Z",
          lateByMs: 60_000,
        },
      });
    expect((await s.audit.verify()).ok).toBe(true);
  });
});

describe.each(ENGINES)("expiry with notification channels on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  it("tells every requester whose activation expired, in a number of statements that does not grow with the batch", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "stint-expiry-notify-"));
    const file = path.join(dir, "stint.yaml");
    writeFileSync(
      file,
      "notifications:\n  channels:\n" +
        '    - { name: ops, kind: webhook, url: "http://127.0.0.1:9/hook", secret: "webhook-secret-for-tests-0123456789" }\n' +
        '    - { name: chat, kind: slack, url: "http://127.0.0.1:9/slack" }\n',
    );
    const clock = manualClock("2026-03-02T10:00:00Z");
    const { wrap, measure } = statementCounter();
    server = await testServer(engine, { clock, env: { STINT_CONFIG_FILE: file }, wrapStore: wrap });
    const s = server;
    const expired = new Map<string, string>();
    const actors: (Actor & { kind: "principal" })[] = [];
    for (let u = 0; u < 8; u++) {
      const name = `user-${u}`;
      await seedUser(s, name, { groups: ["sre"] });
      const { id } = await s.store.db
        .selectFrom("principals")
        .select("id")
        .where("name", "=", name)
        .executeTakeFirstOrThrow();
      actors.push({ kind: "principal", id, name, principalKind: "user", roles: ["user"] });
    }
    await seedRole(s, { name: "short", policy: policy("30m"), eligibleGroups: ["sre"] });
    const context = { correlationId: "expiry-test", sourceIp: null, userAgent: null };
    for (const actor of actors)
      expired.set(
        (await s.requests.submit(actor, { role: "short", reason: "expiry test activation" }, context)).id,
        actor.name,
      );
    const before = await s.store.db.selectFrom("outbox").select("id").where("kind", "=", "notify.deliver").execute();

    clock.advance(31 * 60_000);
    const small = await measure(() => s.requests.expireDue(2));
    const large = await measure(() => s.requests.expireDue(100));
    expect(small.result + large.result).toBe(expired.size);
    // Two activations or six: the same statements (per-row notification writes would add ~3 per activation).
    expect(large.statements, JSON.stringify(large.statements)).toEqual(small.statements);

    const rows = await s.store.db
      .selectFrom("outbox")
      .select(["payload", "lane"])
      .where("kind", "=", "notify.deliver")
      .where(
        "id",
        "not in",
        before.map((row) => row.id),
      )
      .execute();
    const delivered = rows.map((row) => {
      const payload = (typeof row.payload === "string" ? JSON.parse(row.payload) : row.payload) as {
        channel: string;
        notification: { event: string; title: string; fields: { label: string; value: string }[] };
      };
      const request = payload.notification.fields.find((f) => f.label === "Request")!.value;
      return `${payload.channel}:${payload.notification.event}:${request}:${payload.notification.title}`;
    });
    const expected = [...expired].flatMap(([id, name]) =>
      ["ops", "chat"].map((channel) => `${channel}:request.expired:${id}:short for ${name} has expired`),
    );
    expect(delivered.sort()).toEqual(expected.sort());
  });
});
