/**
 * Rotation of a real PostgreSQL login's password (on a throwaway cluster that
 * checks passwords) and break-glass reveals (fresh MFA, an alarm at a real
 * webhook receiver within a second, a review item, rotation scheduled).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asSuperuser, signsIn, startPostgres, type PostgresInstance } from "../../testing/postgres-instance.js";
import { ADMIN_PASSWORD, passwordFor, testServer, totpNow, type TestServer } from "../../testing/server.js";

type Reply = { status: number; body: Record<string, unknown> & { error?: { code: string; message: string } } };
const enc = encodeURIComponent;

async function call(server: TestServer, auth: string, method: string, url: string, payload?: unknown): Promise<Reply> {
  const res = await server.app.inject({
    method: method as "GET",
    url,
    headers: { authorization: auth },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: res.statusCode, body: res.body ? (res.json() as Reply["body"]) : {} };
}

let server: TestServer;
let instance: PostgresInstance;
let receiver: Server;
const received: { body: Record<string, unknown>; at: number }[] = [];
const admin = () => server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);

beforeAll(async () => {
  receiver = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      received.push({ body: JSON.parse(body) as Record<string, unknown>, at: Date.now() });
      res.end("ok");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const dir = mkdtempSync(path.join(tmpdir(), "stint-vault-ops-"));
  const file = path.join(dir, "stint.yaml");
  writeFileSync(
    file,
    `notifications:\n  channels:\n    - { name: oncall, kind: webhook, url: "http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook", secret: "${randomBytes(16).toString("hex")}" }\n`,
  );
  [server, instance] = await Promise.all([testServer("pglite", { env: { STINT_CONFIG_FILE: file } }), startPostgres()]);
});

afterAll(async () => {
  await server?.cleanup();
  await instance?.stop();
  await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
});

describe("rotation of a PostgreSQL login's password", () => {
  const login = `app_${randomBytes(3).toString("hex")}`;
  const original = `orig-${randomBytes(10).toString("hex")}`;

  it("the old password fails, the new works, and the previous version stays readable for rollback", async () => {
    await asSuperuser(instance, (c) => c.query(`create role ${login} login password '${original}'`));
    expect(await signsIn(instance, login, original)).toBe(true);

    const auth = await admin();
    const applied = await call(server, auth, "POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1
targets:
  - name: scratch-db
    kind: postgres
    address: ${instance.url}?sslmode=disable
    credential: { secret: targets/scratch-db/admin }
`,
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    expect(
      (await call(server, auth, "PUT", "/v1/targets/scratch-db/credential", { secret: instance.adminPassword })).status,
    ).toBe(200);
    const put = await call(server, auth, "PUT", `/v1/secrets/${enc("scratch/app")}`, {
      kind: "password",
      value: original,
      platformRoles: ["admin"],
      rotation: { target: "scratch-db", login },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);

    const rotated = await call(server, auth, "POST", `/v1/secrets/${enc("scratch/app")}/rotate`);
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    expect(rotated.body).toEqual({ path: "scratch/app", version: 2, previousVersion: 1 });
    const current = await call(server, auth, "GET", `/v1/secrets/${enc("scratch/app")}/value`);
    const next = String(current.body.value);
    expect(next).not.toBe(original);
    expect(await signsIn(instance, login, original)).toBe(false);
    expect(await signsIn(instance, login, next)).toBe(true);
    const previous = await call(server, auth, "GET", `/v1/secrets/${enc("scratch/app")}/value?version=1`);
    expect(previous.body.value).toBe(original);
  });

  it("a scheduled rotation runs from the scheduler when it is due, the same way", async () => {
    const auth = await admin();
    const current = String((await call(server, auth, "GET", `/v1/secrets/${enc("scratch/app")}/value`)).body.value);
    const put = await call(server, auth, "PUT", `/v1/secrets/${enc("scratch/app")}`, {
      value: current,
      rotation: { target: "scratch-db", login, every: "30d" },
    });
    expect(put.status).toBe(200);
    const due = Date.parse(String(put.body.rotationDueAt));
    expect(due - Date.now()).toBeGreaterThan(29 * 24 * 3600_000);
    await server.store.db
      .updateTable("secrets")
      .set({ rotation_due_at: new Date(Date.now() - 1000) })
      .where("path", "=", "scratch/app")
      .execute();
    await server.scheduler.runOnce();
    const after = await call(server, auth, "GET", `/v1/secrets/${enc("scratch/app")}`);
    expect(after.body.currentVersion).toBe(4);
    const next = String((await call(server, auth, "GET", `/v1/secrets/${enc("scratch/app")}/value`)).body.value);
    expect(await signsIn(instance, login, current)).toBe(false);
    expect(await signsIn(instance, login, next)).toBe(true);
    expect(Date.parse(String(after.body.rotationDueAt)) - Date.now()).toBeGreaterThan(29 * 24 * 3600_000);
  });

  it("a rotation the target refuses changes nothing, keeps the old password working, and alerts", async () => {
    const auth = await admin();
    const put = await call(server, auth, "PUT", `/v1/secrets/${enc("scratch/ghost")}`, {
      kind: "password",
      value: "ghost-password-1",
      platformRoles: ["admin"],
      rotation: { target: "scratch-db", login: "no_such_login" },
    });
    expect(put.status).toBe(200);
    const res = await call(server, auth, "POST", `/v1/secrets/${enc("scratch/ghost")}/rotate`);
    expect(res.status).toBe(502);
    expect(res.body.error?.message).toMatch(/previous version stays current/);
    const meta = await call(server, auth, "GET", `/v1/secrets/${enc("scratch/ghost")}/versions`);
    expect((meta.body.items as unknown[]).length).toBe(1);
    await server.outbox.runOnce();
    expect(received.map((r) => r.body.event)).toContain("secret.rotation_failed");
  });
});

describe("break-glass", () => {
  it("a reveal needs fresh MFA; it is audited, reaches the on-call receiver within a second, and opens a review", async () => {
    const auth = await admin();
    const put = await call(server, auth, "PUT", `/v1/secrets/${enc("emergency/root")}`, {
      kind: "password",
      generate: { length: 40 },
      platformRoles: ["security"],
      breakGlass: true,
    });
    expect(put.status).toBe(200);
    await server.userWithRoles("sam", ["security"]);
    const plain = await server.login("sam", passwordFor("sam"));
    const refused = await call(server, plain, "POST", `/v1/secrets/${enc("emergency/root")}/reveal`, {
      reason: "prod database down, on-call cannot sign in",
    });
    expect(refused.body.error?.code).toBe("MFA_STEP_UP_REQUIRED");

    const started = await call(server, plain, "POST", "/v1/me/mfa/totp");
    const secret = String(started.body.secret);
    expect((await call(server, plain, "POST", "/v1/me/mfa/totp/confirm", { code: totpNow(secret) })).status).toBe(200);
    const fresh = await server.login("sam", passwordFor("sam"), totpNow(secret, Date.now() + 30_000));

    const before = received.length;
    const sentAt = Date.now();
    const reveal = await call(server, fresh, "POST", `/v1/secrets/${enc("emergency/root")}/reveal`, {
      reason: "prod database down, on-call cannot sign in",
    });
    expect(reveal.status, JSON.stringify(reveal.body)).toBe(200);
    expect(String(reveal.body.value)).toHaveLength(40);
    for (let i = 0; i < 100 && received.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    const alarm = received.slice(before).find((r) => r.body.event === "breakglass.secret_revealed");
    expect(alarm, "the on-call receiver got the alarm").toBeDefined();
    expect(alarm!.at - sentAt).toBeLessThan(1000);
    expect(JSON.stringify(alarm!.body)).not.toContain(String(reveal.body.value));

    const review = await server.store.db
      .selectFrom("review_items")
      .selectAll()
      .where("id", "=", String(reveal.body.reviewId))
      .executeTakeFirstOrThrow();
    expect(review).toMatchObject({ kind: "break-glass-secret", subject: "secret:emergency/root", status: "open" });
    const audit = await call(server, auth, "GET", "/v1/audit/events?limit=500");
    const events = audit.body.items as { action: string; actor: string; reason: string | null }[];
    expect(events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          action: "breakglass.secret_revealed",
          actor: "sam",
          reason: "prod database down, on-call cannot sign in",
        }),
      ]),
    );
    expect(JSON.stringify(audit.body)).not.toContain(String(reveal.body.value));
    const meta = await call(server, auth, "GET", `/v1/secrets/${enc("emergency/root")}`);
    expect(meta.body.rotationDueAt).toBe(reveal.body.rotationDueAt);
  });
});
