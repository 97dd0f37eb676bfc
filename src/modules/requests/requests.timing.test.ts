/**
 * Request timing (issue 16, acceptance 3) on each engine, one server per engine on a manual clock: a pending
 * request expires after its policy's requestTtl (not before; audited; the requester hears of it at a local
 * webhook receiver; approvers can no longer decide it), and a request with a start time 30 s ahead becomes
 * active at that time and not before, its duration counted from then. Attack cases: a start in the past,
 * absurdly far, on a break-glass role, deciding an expired request, and a scheduled request whose eligibility
 * goes away before its start.
 */
import { createServer, type Server } from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../lib/clock.js";
import { ENGINES } from "../../testing/engines.js";
import { actAs, seedRole, seedUser } from "../../testing/pim.js";
import { ADMIN_PASSWORD, testServer, type TestServer } from "../../testing/server.js";

const noMfa = { mfa: { required: false, maxAge: "10m" }, justification: { minLength: 5 } };
const byManager = { approval: { stages: [{ approvers: { manager: true }, count: 1 }] } };

describe.each(ENGINES)("request timing on %s", (engine) => {
  const clock = manualClock("2026-03-02T10:00:00Z");
  let server: TestServer;
  let receiver: Server;
  const received: { event: string; title: string; fields: { label: string; value: string }[] }[] = [];

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        received.push(JSON.parse(body) as (typeof received)[number]);
        res.end("ok");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const port = (receiver.address() as { port: number }).port;
    const file = path.join(mkdtempSync(path.join(tmpdir(), "stint-timing-")), "stint.yaml");
    writeFileSync(
      file,
      `notifications:\n  channels:\n    - { name: ops, kind: webhook, url: "http://127.0.0.1:${port}/hook", secret: "webhook-secret-for-tests-0123456789" }\n`,
    );
    server = await testServer(engine, { clock, env: { STINT_CONFIG_FILE: file } });
    await seedUser(server, "carol");
    await seedUser(server, "mallory");
    for (const name of ["alice", "bob", "dave", "erin"]) await seedUser(server, name, { manager: "carol" });
    const users = ["alice", "bob", "dave", "erin"];
    await seedRole(server, {
      name: "ttl-db",
      policy: { ...noMfa, ...byManager, requestTtl: "10m" },
      eligibleUsers: users,
    });
    await seedRole(server, { name: "ttl-default", policy: { ...noMfa, ...byManager }, eligibleUsers: users });
    await seedRole(server, {
      name: "later",
      policy: { ...noMfa, defaultDuration: "1h", maxStartDelay: "1d" },
      eligibleUsers: users,
    });
    await seedRole(server, {
      name: "later-approved",
      policy: { ...noMfa, ...byManager, defaultDuration: "2h" },
      eligibleUsers: users,
    });
    await seedRole(server, { name: "glass", policy: { ...noMfa, breakGlass: true }, eligibleUsers: users });
    await seedRole(server, {
      name: "lenient",
      risk: "low",
      policy: {
        ...noMfa,
        requestTtl: "10m",
        approval: { stages: [{ approvers: { manager: true }, count: 1, timeout: "1h", onTimeout: "approve" }] },
      },
      eligibleUsers: users,
    });
    await seedRole(server, {
      name: "weekdays",
      policy: {
        ...noMfa,
        maxStartDelay: "8d",
        windows: [{ days: ["mon", "tue", "wed", "thu", "fri"], from: "08:00", to: "18:00", timeZone: "UTC" }],
        outsideWindow: "deny",
      },
      eligibleUsers: users,
    });
  }, 60_000);

  afterAll(async () => {
    await server?.cleanup();
    await new Promise((r) => receiver?.close(r));
  });

  const as = (name: string) => actAs(server, name);
  /** Runs the outbox until it has nothing left (a channel's lane takes one delivery at a time). */
  const deliver = async () => {
    for (let i = 0; i < 50 && (await server.outbox.runOnce()).claimed > 0; i++);
  };
  const row = (id: string) =>
    server.store.db.selectFrom("activation_requests").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
  /** The request's chained audit events of one action (on PostgreSQL the sequencer chains them: caught up first). */
  const auditOf = async (id: string, action: string) => {
    await server.audit.catchUp();
    return server.store.db
      .selectFrom("audit_events")
      .select(["action", "outcome", "reason", "details", "actor"])
      .where("subject", "=", `request:${id}`)
      .where("action", "=", action)
      .execute();
  };
  const grantsOf = (id: string) =>
    server.store.db.selectFrom("grants").select("state").where("request_id", "=", id).execute();
  const check = async (principal: string, role: string) =>
    (
      await server.app.inject({
        method: "GET",
        url: `/v1/check?principal=${principal}&role=${role}`,
        headers: { authorization: await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD) },
      })
    ).json() as { allowed: boolean };

  it("a pending request with requestTtl 10m expires at 10m, not before: audited, the requester notified, approvers refused", async () => {
    const submittedAt = clock.now();
    const submitted = await as("alice")("POST", "/v1/activation-requests", {
      role: "ttl-db",
      reason: "replica lag investigation",
    });
    expect([submitted.status, submitted.body.state]).toEqual([201, "pending"]);
    const id = submitted.body.id as string;
    expect(submitted.body.pendingExpiresAt).toBe(new Date(submittedAt.getTime() + 10 * 60_000).toISOString());

    clock.advance(10 * 60_000 - 1);
    expect((await server.scheduler.runOnce()).expiredPending).toBe(0);
    expect((await row(id)).state).toBe("pending");

    clock.advance(1);
    expect((await server.scheduler.runOnce()).expiredPending).toBe(1);
    const expired = await row(id);
    expect([expired.state, expired.activated_at, expired.ended_by]).toEqual(["expired", null, "system"]);
    expect(expired.end_reason).toBe("no decision within the policy's requestTtl (10m)");
    expect(new Date(expired.ended_at!).getTime()).toBe(clock.now().getTime());
    expect(await grantsOf(id)).toEqual([]);
    // Audited once, as the undecided kind of expiry.
    const audit = await auditOf(id, "request.expired");
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ outcome: "success", details: { pending: true, requestTtl: "10m" } });
    // A second pass finds nothing more to do.
    expect((await server.scheduler.runOnce()).expiredPending).toBe(0);
    expect(await auditOf(id, "request.expired")).toHaveLength(1);

    // The requester hears of it through the outbox, at the webhook receiver.
    await deliver();
    const notice = received.find(
      (n) => n.event === "request.expired" && n.fields.some((f) => f.label === "Request" && f.value === id),
    );
    expect(notice?.title).toBe("The request for ttl-db by alice expired without a decision");

    // Approvers can no longer decide it; someone uninvolved learns nothing.
    const late = await as("carol")("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([late.status, late.body.error?.code]).toEqual([409, "REQUEST_EXPIRED"]);
    const deny = await as("carol")("POST", `/v1/activation-requests/${id}/denials`, { reason: "too late anyway" });
    expect(deny.body.error?.code).toBe("REQUEST_EXPIRED");
    const stranger = await as("mallory")("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([stranger.status, stranger.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    const cancel = await as("alice")("POST", `/v1/activation-requests/${id}/cancel`);
    expect(cancel.body.error?.code).toBe("REQUEST_EXPIRED");
    expect((await row(id)).state).toBe("expired");
    // Carol's and mallory's approvals, both refused and audited.
    expect((await auditOf(id, "request.approved")).map((e) => e.outcome)).toEqual(["denied", "denied"]);
    // The role can be asked for again.
    const again = await as("alice")("POST", "/v1/activation-requests", { role: "ttl-db", reason: "second attempt" });
    expect(again.body.state).toBe("pending");
    await as("alice")("POST", `/v1/activation-requests/${again.body.id as string}/cancel`);
  });

  it("an approval arriving past the TTL before any scheduler pass expires the request then, and refuses", async () => {
    const id = (await as("bob")("POST", "/v1/activation-requests", { role: "ttl-db", reason: "vacuum the queue" })).body
      .id as string;
    clock.advance(10 * 60_000);
    const late = await as("carol")("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect([late.status, late.body.error?.code]).toEqual([409, "REQUEST_EXPIRED"]);
    expect((await row(id)).state).toBe("expired");
    expect(await auditOf(id, "request.expired")).toHaveLength(1);
    expect(await grantsOf(id)).toEqual([]);
    expect((await check("bob", "ttl-db")).allowed).toBe(false);
  });

  it("without requestTtl a request waits 24h; the TTL counts from submission even for a later start", async () => {
    const start = new Date(clock.now().getTime() + 20 * 60_000);
    const scheduled = await as("dave")("POST", "/v1/activation-requests", {
      role: "ttl-db",
      reason: "tonight's migration window",
      startAt: start.toISOString(),
    });
    expect(scheduled.body).toMatchObject({ state: "pending", startAt: start.toISOString() });
    const waiting = await as("dave")("POST", "/v1/activation-requests", {
      role: "ttl-default",
      reason: "rotate the keys",
    });
    clock.advance(10 * 60_000);
    await server.scheduler.runOnce();
    // Ten minutes after submission, though its start is twenty minutes out.
    expect((await row(scheduled.body.id as string)).state).toBe("expired");
    expect((await row(waiting.body.id as string)).state).toBe("pending");
    clock.advance(24 * 3600_000 - 10 * 60_000 - 1);
    await server.scheduler.runOnce();
    expect((await row(waiting.body.id as string)).state).toBe("pending");
    clock.advance(1);
    await server.scheduler.runOnce();
    expect((await row(waiting.body.id as string)).state).toBe("expired");
  });

  it("a request starting in 30 s becomes active at that time, not before, for its full duration", async () => {
    const startAt = new Date(clock.now().getTime() + 30_000);
    const submitted = await as("erin")("POST", "/v1/activation-requests", {
      role: "later",
      reason: "scheduled maintenance",
      startAt: startAt.toISOString(),
    });
    expect(submitted.status).toBe(201);
    expect(submitted.body).toMatchObject({ state: "approved", startAt: startAt.toISOString(), activatedAt: null });
    const id = submitted.body.id as string;
    expect(await auditOf(id, "request.scheduled")).toHaveLength(1);
    const mine = await as("erin")("GET", "/v1/me/roles");
    expect(
      (mine.body.items as { role: string; state: string; startAt: string }[]).find((r) => r.role === "later"),
    ).toMatchObject({ state: "approved", startAt: startAt.toISOString() });
    expect((await check("erin", "later")).allowed).toBe(false);

    clock.advance(30_000 - 1);
    expect((await server.scheduler.runOnce()).started).toBe(0);
    expect((await row(id)).state).toBe("approved");
    expect(await grantsOf(id)).toEqual([]);
    expect((await check("erin", "later")).allowed).toBe(false);

    clock.advance(1);
    expect((await server.scheduler.runOnce()).started).toBe(1);
    const active = await row(id);
    expect(active.state).toBe("active");
    expect(new Date(active.activated_at!).toISOString()).toBe(startAt.toISOString());
    expect(new Date(active.expires_at!).getTime()).toBe(startAt.getTime() + 3600_000);
    expect(await grantsOf(id)).toEqual([{ state: "active" }]);
    expect((await check("erin", "later")).allowed).toBe(true);
    expect(await auditOf(id, "request.start_due")).toHaveLength(1);
    expect(await auditOf(id, "request.activated")).toHaveLength(1);
    expect((await server.scheduler.runOnce()).started).toBe(0);
    await as("erin")("POST", "/v1/me/roles/later/deactivate");
  });

  it("approved ahead through its stage, a request stays approved until its start; cancellable before it", async () => {
    const startAt = new Date(clock.now().getTime() + 3600_000);
    const id = (
      await as("alice")("POST", "/v1/activation-requests", {
        role: "later-approved",
        reason: "quarter-end close",
        startAt: startAt.toISOString(),
      })
    ).body.id as string;
    clock.advance(5 * 60_000);
    const approved = await as("carol")("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect(approved.body).toMatchObject({ state: "approved", activatedAt: null, pendingExpiresAt: null });
    expect(await auditOf(id, "request.approved")).toMatchObject([{ details: { startAt: startAt.toISOString() } }]);
    await deliver();
    expect(received.some((n) => n.event === "request.approved" && n.title.includes(startAt.toISOString()))).toBe(true);
    clock.advance(3600_000 - 5 * 60_000);
    expect((await server.scheduler.runOnce()).started).toBe(1);
    const active = await row(id);
    expect([active.state, new Date(active.expires_at!).getTime()]).toEqual(["active", startAt.getTime() + 7200_000]);
    await as("alice")("POST", "/v1/me/roles/later-approved/deactivate");

    // Another, cancelled before its start: the scheduler never starts it.
    const next = await as("alice")("POST", "/v1/activation-requests", {
      role: "later",
      reason: "next week's cutover",
      startAt: new Date(clock.now().getTime() + 60_000).toISOString(),
    });
    const cancelled = await as("alice")("POST", `/v1/activation-requests/${next.body.id as string}/cancel`);
    expect(cancelled.body.state).toBe("cancelled");
    clock.advance(60_000);
    expect((await server.scheduler.runOnce()).started).toBe(0);
    expect(await grantsOf(next.body.id as string)).toEqual([]);
  });

  it("refuses a start in the past, absurdly far, not a time, or on a break-glass role; a start within the skew is now", async () => {
    const now = clock.now().getTime();
    const cases: [string, unknown, number, string][] = [
      ["later", new Date(now - 5 * 60_000).toISOString(), 400, "START_IN_PAST"],
      ["later", new Date(now + 25 * 3600_000).toISOString(), 400, "START_TOO_FAR"], // maxStartDelay 1d
      ["later-approved", "9999-12-31T00:00:00Z", 400, "START_TOO_FAR"], // default 30d
      ["later", "tomorrow morning", 400, "VALIDATION_FAILED"],
      ["later", "2026-03-02T10:00:00", 400, "VALIDATION_FAILED"], // no offset: ambiguous
      ["later", 1_900_000_000, 400, "VALIDATION_FAILED"],
      ["glass", new Date(now + 60_000).toISOString(), 400, "START_NOT_ALLOWED"],
    ];
    for (const [role, startAt, status, code] of cases) {
      const res = await as("bob")("POST", "/v1/activation-requests", { role, reason: "attack the start", startAt });
      expect([role, startAt, res.status, res.body.error?.code]).toEqual([role, startAt, status, code]);
    }
    const far = await as("bob")("POST", "/v1/activation-requests", {
      role: "later",
      reason: "attack the start",
      startAt: new Date(now + 25 * 3600_000).toISOString(),
    });
    expect(far.body.error).toMatchObject({ details: { maxStartDelay: "1d" } });
    await server.audit.catchUp();
    const refusals = await server.store.db
      .selectFrom("audit_events")
      .select("reason")
      .where("action", "=", "request.submitted")
      .where("outcome", "=", "denied")
      .where("actor", "=", "bob")
      .execute();
    expect(refusals.length).toBeGreaterThanOrEqual(4);
    expect(
      await server.store.db
        .selectFrom("activation_requests as r")
        .innerJoin("principals as p", "p.id", "r.requester_id")
        .select("r.id")
        .where("p.name", "=", "bob")
        .where("r.state", "in", ["approved", "active"])
        .execute(),
    ).toEqual([]);
    const skewed = await as("bob")("POST", "/v1/activation-requests", {
      role: "later",
      reason: "clock a little ahead",
      startAt: new Date(now - 30_000).toISOString(),
    });
    expect(skewed.body).toMatchObject({ state: "active", startAt: null });
    await as("bob")("POST", "/v1/me/roles/later/deactivate");
  });

  it("a scheduled request whose eligibility is removed before its start never activates", async () => {
    const startAt = new Date(clock.now().getTime() + 10 * 60_000).toISOString();
    // Through the API: removing the eligibility cancels the scheduled request in the same transaction.
    const viaApi = await as("dave")("POST", "/v1/activation-requests", {
      role: "later",
      reason: "planned work",
      startAt,
    });
    expect(viaApi.body.state).toBe("approved");
    const eligibility = await server.store.db
      .selectFrom("eligibilities as e")
      .innerJoin("principals as p", "p.id", "e.principal_id")
      .innerJoin("roles as r", "r.id", "e.role_id")
      .select("e.id")
      .where("p.name", "=", "dave")
      .where("r.name", "=", "later")
      .executeTakeFirstOrThrow();
    const removed = await server.app.inject({
      method: "DELETE",
      url: `/v1/eligibilities/${eligibility.id}`,
      headers: { authorization: await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD) },
    });
    expect(removed.statusCode).toBe(200);
    expect((await row(viaApi.body.id as string)).state).toBe("cancelled");

    // Behind the API's back (a row changed in the database): the start itself checks the basis again.
    const behind = await as("erin")("POST", "/v1/activation-requests", {
      role: "later",
      reason: "planned work",
      startAt,
    });
    expect(behind.body.state).toBe("approved");
    await server.store.db
      .updateTable("eligibilities")
      .set({ removed_at: clock.now() })
      .where("principal_id", "=", (await row(behind.body.id as string)).requester_id)
      .where("role_id", "=", (await row(behind.body.id as string)).role_id)
      .execute();
    clock.advance(10 * 60_000);
    expect((await server.scheduler.runOnce()).started).toBe(1);
    for (const id of [viaApi.body.id as string, behind.body.id as string]) {
      const r = await row(id);
      expect([r.state, r.activated_at]).toEqual(["cancelled", null]);
      expect(await grantsOf(id)).toEqual([]);
      expect(await auditOf(id, "request.activated")).toEqual([]);
    }
    expect((await check("dave", "later")).allowed).toBe(false);
    expect((await check("erin", "later")).allowed).toBe(false);
  });

  it("passes running at once (as on several nodes) start each due request once and expire each lapsed one once", async () => {
    const startAt = new Date(clock.now().getTime() + 60_000).toISOString();
    const starting: string[] = [];
    const lapsing: string[] = [];
    // (dave and erin lost their eligibility for "later" above.)
    for (const name of ["alice", "bob"]) {
      const r = await as(name)("POST", "/v1/activation-requests", { role: "later", reason: "parallel start", startAt });
      expect(r.body.state).toBe("approved");
      starting.push(r.body.id as string);
    }
    for (const name of ["alice", "bob", "dave"]) {
      const p = await as(name)("POST", "/v1/activation-requests", { role: "ttl-db", reason: "parallel lapse" });
      expect(p.body.state).toBe("pending");
      lapsing.push(p.body.id as string);
    }
    clock.advance(10 * 60_000);
    const [startedA, startedB, startedC] = await Promise.all([
      server.requests.startScheduledDue(1),
      server.requests.startScheduledDue(1),
      server.requests.startScheduledDue(5),
    ]);
    const [expiredA, expiredB] = await Promise.all([
      server.requests.expirePendingDue(2),
      server.requests.expirePendingDue(5),
    ]);
    // Whatever a pass left (rows another held), the next one finishes.
    const rest = await server.scheduler.runOnce();
    expect(startedA + startedB + startedC + rest.started).toBe(2);
    expect(expiredA + expiredB + rest.expiredPending).toBe(3);
    for (const id of starting) {
      expect((await row(id)).state).toBe("active");
      expect(await grantsOf(id)).toEqual([{ state: "active" }]);
      expect(await auditOf(id, "request.activated")).toHaveLength(1);
    }
    for (const id of lapsing) {
      expect((await row(id)).state).toBe("expired");
      expect(await auditOf(id, "request.expired")).toHaveLength(1);
    }
    for (const name of ["alice", "bob"]) await as(name)("POST", "/v1/me/roles/later/deactivate");
  });

  it("a later start is judged by the activation windows of its start time, and they are checked again then", async () => {
    // The next Saturday noon and the next weekday 09:00 (UTC) after now, whatever the clock stands at.
    const next = (test: (d: Date) => boolean) => {
      const d = new Date(clock.now());
      d.setUTCMinutes(0, 0, 0);
      do d.setUTCHours(d.getUTCHours() + 1);
      while (!test(d));
      return d;
    };
    const saturdayNoon = next((d) => d.getUTCDay() === 6 && d.getUTCHours() === 12);
    const weekdayNine = next((d) => d.getUTCDay() >= 1 && d.getUTCDay() <= 5 && d.getUTCHours() === 9);
    const closed = await as("alice")("POST", "/v1/activation-requests", {
      role: "weekdays",
      reason: "weekend work",
      startAt: saturdayNoon.toISOString(),
    });
    expect([closed.status, closed.body.error?.code]).toEqual([403, "OUTSIDE_WINDOW"]);
    const open = await as("alice")("POST", "/v1/activation-requests", {
      role: "weekdays",
      reason: "weekday work",
      startAt: weekdayNine.toISOString(),
    });
    expect(open.body).toMatchObject({ state: "approved", startAt: weekdayNine.toISOString() });
    clock.set(weekdayNine);
    expect((await server.scheduler.runOnce()).started).toBe(1);
    expect((await row(open.body.id as string)).state).toBe("active");
    await as("alice")("POST", "/v1/me/roles/weekdays/deactivate");
  });

  it("when the scheduler was away past both, the time to live wins over a later stage timeout that would approve", async () => {
    const id = (await as("bob")("POST", "/v1/activation-requests", { role: "lenient", reason: "nightly batch" })).body
      .id as string;
    clock.advance(2 * 3600_000);
    const pass = await server.scheduler.runOnce();
    expect(pass.expiredPending).toBeGreaterThanOrEqual(1);
    const r = await row(id);
    expect([r.state, r.activated_at]).toEqual(["expired", null]);
    expect(await grantsOf(id)).toEqual([]);
    expect(await auditOf(id, "request.approved")).toEqual([]);
    // The stage-deadline step alone (its claim got the row first) expires it too rather than approving it.
    const other = (await as("dave")("POST", "/v1/activation-requests", { role: "lenient", reason: "nightly batch" }))
      .body.id as string;
    clock.advance(2 * 3600_000);
    expect(await server.requests.processDeadlines()).toBeGreaterThanOrEqual(1);
    expect([(await row(other)).state, await grantsOf(other)]).toEqual(["expired", []]);
    expect(await auditOf(other, "request.expired")).toHaveLength(1);
  });
});
