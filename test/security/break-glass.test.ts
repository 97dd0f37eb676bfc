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
const urlOf = (path: string) => `/v1/secrets/${encodeURIComponent(path)}`;
let server: TestServer;
let totpSecret: string;

const call = apiCaller(() => server);

/** Sam signed in with a one-time code of a time step not used yet (a code is accepted once): MFA-fresh. */
async function samFresh(): Promise<string> {
  clock.advance(MINUTE);
  return server.login("sam", passwordFor("sam"), totpNow(totpSecret, clock.now().getTime()));
}
const admin = () => server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);

/** A break-glass password of its own for one test, none revealed yet. */
async function breakGlassSecret(path: string): Promise<string> {
  const put = await call(await admin(), "PUT", urlOf(path), {
    kind: "password",
    generate: { length: 40 },
    platformRoles: ["security"],
    breakGlass: true,
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  return path;
}

/** Sam reveals `path`; the reply is read after the sign-in, so `rotationDueAt` is measured from the reveal. */
async function reveal(path: string): Promise<ApiReply> {
  const auth = await samFresh();
  const res = await call(auth, "POST", `${urlOf(path)}/reveal`, { reason: "prod database down, SSO unavailable" });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res;
}

beforeAll(async () => {
  server = await testServer("pglite", { clock });
  const sam = await server.userWithRoles("sam", ["security"]);
  totpSecret = String((await call(sam, "POST", "/v1/me/mfa/totp")).body.secret);
  const confirmed = await call(sam, "POST", "/v1/me/mfa/totp/confirm", {
    code: totpNow(totpSecret, clock.now().getTime()),
  });
  expect(confirmed.status).toBe(200);
}, 60_000);
afterAll(async () => server?.cleanup());

describe("break-glass: the rotation after a reveal", () => {
  it("revealing again before the hour is up does not postpone the rotation of the revealed password", async () => {
    const path = await breakGlassSecret("emergency/root");
    const first = await reveal(path);
    const firstDue = Date.parse(String(first.body.rotationDueAt));
    expect(firstDue - clock.now().getTime()).toBe(60 * MINUTE);

    // 50 minutes later the revealer asks again (one more alarm) to keep the password they hold.
    clock.advance(50 * MINUTE);
    const second = await reveal(path);
    expect(second.body.value, "the same password, not rotated yet").toBe(first.body.value);
    expect(Date.parse(String(second.body.rotationDueAt)), "the rotation stays when the first reveal set it").toBe(
      firstDue,
    );

    // An hour after the first reveal the scheduler rotates it: the first revealed value is no longer current.
    clock.advance(11 * MINUTE);
    await server.scheduler.runOnce();
    const meta = await call(await admin(), "GET", urlOf(path));
    expect(meta.body.currentVersion, "rotated an hour after the first reveal").toBe(2);
    const third = await reveal(path);
    expect(third.body.value).not.toBe(first.body.value);
  });

  it("a reveal does not postpone a rotation that is due sooner (a schedule's, or a failed one's retry)", async () => {
    const path = await breakGlassSecret("emergency/replica");
    const soon = new Date(clock.now().getTime() + 10 * MINUTE);
    await server.store.db.updateTable("secrets").set({ rotation_due_at: soon }).where("path", "=", path).execute();
    const res = await reveal(path);
    expect(Date.parse(String(res.body.rotationDueAt))).toBe(soon.getTime());
  });
});
