/**
 * Break-glass reveals attacked by the revealer (security review, finding 32).
 *
 * A reveal schedules the secret's rotation an hour later, so the revealed password stops being good. Each
 * reveal set the due time to its own "now + 1 h", overwriting the earlier one: revealing again before the hour
 * was up (one more alarm, but the same password) pushed the rotation back, and a revealer who kept doing so
 * kept the first revealed value valid for as long as they liked. A reveal now never moves a due rotation later.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { apiCaller, type ApiReply } from "../../src/testing/api-call.js";
import { ADMIN_PASSWORD, passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";

const MINUTE = 60_000;
const clock = manualClock(new Date());
const path = "emergency/root";
const url = `/v1/secrets/${encodeURIComponent(path)}`;
let server: TestServer;
let totpSecret: string;

const call = apiCaller(() => server);

/** Sam signed in with a one-time code of the server's current time step: MFA-fresh. */
const samFresh = () => server.login("sam", passwordFor("sam"), totpNow(totpSecret, clock.now().getTime()));
const admin = () => server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);

async function reveal(): Promise<ApiReply> {
  const res = await call(await samFresh(), "POST", `${url}/reveal`, { reason: "prod database down, SSO unavailable" });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res;
}

beforeAll(async () => {
  server = await testServer("pglite", { clock });
  const put = await call(server.adminAuth, "PUT", url, {
    kind: "password",
    generate: { length: 40 },
    platformRoles: ["security"],
    breakGlass: true,
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  const sam = await server.userWithRoles("sam", ["security"]);
  totpSecret = String((await call(sam, "POST", "/v1/me/mfa/totp")).body.secret);
  const confirmed = await call(sam, "POST", "/v1/me/mfa/totp/confirm", {
    code: totpNow(totpSecret, clock.now().getTime()),
  });
  expect(confirmed.status).toBe(200);
  clock.advance(MINUTE); // the next code is of another time step (a code is accepted once)
}, 60_000);
afterAll(async () => server?.cleanup());

describe("break-glass: the rotation after a reveal", () => {
  it("revealing again before the hour is up does not postpone the rotation of the revealed password", async () => {
    const first = await reveal();
    const firstDue = Date.parse(String(first.body.rotationDueAt));
    expect(firstDue - clock.now().getTime()).toBe(60 * MINUTE);

    // 50 minutes later the revealer asks again (one more alarm) to keep the password they hold.
    clock.advance(50 * MINUTE);
    const second = await reveal();
    expect(second.body.value, "the same password, not rotated yet").toBe(first.body.value);
    expect(Date.parse(String(second.body.rotationDueAt)), "the rotation stays when the first reveal set it").toBe(
      firstDue,
    );

    // An hour after the first reveal the scheduler rotates it: the first revealed value is no longer current.
    clock.advance(11 * MINUTE);
    await server.scheduler.runOnce();
    const meta = await call(await admin(), "GET", url);
    expect(meta.body.currentVersion, "rotated an hour after the first reveal").toBe(2);
    const third = await reveal();
    expect(third.body.value).not.toBe(first.body.value);
  });

  it("a reveal does not postpone a rotation that is due sooner (a schedule's, or a failed one's retry)", async () => {
    clock.advance(MINUTE);
    const soon = new Date(clock.now().getTime() + 10 * MINUTE);
    await server.store.db.updateTable("secrets").set({ rotation_due_at: soon }).where("path", "=", path).execute();
    const res = await reveal();
    expect(Date.parse(String(res.body.rotationDueAt))).toBe(soon.getTime());
  });
});
