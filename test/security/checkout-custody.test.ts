/**
 * Check-outs attacked by their borrower (security review, finding 45).
 *
 * A secret checked out with `rotateOnCheckin` is given a new value at its check-in, since the borrower saw
 * the old one. A borrower who simply never checked in kept it: the check-out's end returned it with no new
 * value, and the password they took away stayed the current one for as long as nobody else checked it in.
 * A borrower disabled mid check-out (a leaver), or whose activation ended, kept the check-out itself, and with
 * it everyone else locked out of the secret and the value unchanged, until its end. Now a check-out ends with
 * the access that allowed it, and one returned at its end or so is rotated as a check-in would have been
 * (scheduled at once, rotated in the same pass).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { apiCaller } from "../../src/testing/api-call.js";
import { ADMIN_PASSWORD, testServer, type TestServer } from "../../src/testing/server.js";
import { selfServicePolicy } from "../../src/testing/targets-harness.js";

const MINUTE = 60_000;
const clock = manualClock(new Date());
let server: TestServer;

const call = apiCaller(() => server);

const admin = () => server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);
const url = (path: string) => `/v1/secrets/${encodeURIComponent(path)}`;

/**
 * An exclusive secret rotated at check-in, that users (or, given `roles`, those with an active activation
 * of one) may check out for at most 30 minutes.
 */
async function exclusiveSecret(path: string, roles?: string[]): Promise<void> {
  const put = await call(await admin(), "PUT", url(path), {
    kind: "password",
    generate: { length: 32 },
    ...(roles ? { roles, platformRoles: ["admin"] } : { platformRoles: ["user", "admin"] }),
    checkout: { exclusive: true, maxDuration: "30m", rotateOnCheckin: true },
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
}

async function checkout(auth: string, path: string): Promise<string> {
  const res = await call(auth, "POST", `${url(path)}/checkout`, { reason: "fix the legacy batch host" });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return String(res.body.value);
}

/** The value an admin reads after taking the check-out in turn (as the next borrower would see it). */
async function currentValue(path: string): Promise<{ value: string; version: number }> {
  const auth = await admin();
  const taken = await call(auth, "POST", `${url(path)}/checkout`, { reason: "next borrower" });
  expect(taken.status, JSON.stringify(taken.body)).toBe(200);
  const meta = await call(auth, "GET", url(path));
  return { value: String(taken.body.value), version: Number(meta.body.currentVersion) };
}

beforeAll(async () => {
  server = await testServer("pglite", { clock });
  for (const name of ["mallory", "lena", "tess"]) await server.userWithRoles(name, ["user"]);
  const applied = await call(server.adminAuth, "POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:${selfServicePolicy("self")}
targets:
  - name: stint
    kind: internal
roles:
  - name: legacy-fix
    target: stint
    policy: self
    risk: medium
eligibility:
  - role: legacy-fix
    users: [tess]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
}, 60_000);
afterAll(async () => server?.cleanup());

describe("a check-out rotated at check-in is rotated however it ends", () => {
  it("a borrower who never checks in does not keep the value past the check-out's end", async () => {
    const path = "legacy/batch-root";
    await exclusiveSecret(path);
    const mallory = await server.login("mallory");
    const taken = await checkout(mallory, path);

    clock.advance(31 * MINUTE);
    await server.scheduler.runOnce();

    const now = await currentValue(path);
    expect(now.value).not.toBe(taken);
    expect(now.version).toBe(2);
    const events = await call(await admin(), "GET", "/v1/audit/events?limit=200");
    const actions = (events.body.items as { action: string; subject: string }[])
      .filter((e) => e.subject === `secret:${path}`)
      .map((e) => e.action);
    expect(actions).toContain("secret.rotated");
  });

  it("a leaver disabled mid check-out loses the check-out, and the value they saw is replaced", async () => {
    const path = "legacy/ftp-root";
    await exclusiveSecret(path);
    const lena = await server.login("lena");
    const taken = await checkout(lena, path);

    const disabled = await call(await admin(), "POST", "/v1/users/lena/disable", { reason: "left the company" });
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    clock.advance(MINUTE); // well within the check-out's 30 minutes
    await server.scheduler.runOnce();

    const meta = await call(await admin(), "GET", url(path));
    expect(meta.body.checkedOut).toBeNull();
    const now = await currentValue(path);
    expect(now.value).not.toBe(taken);
    expect(now.version).toBe(2);
  });

  it("a check-out does not outlast the activation that allowed it", async () => {
    const path = "legacy/mainframe-operator";
    await exclusiveSecret(path, ["legacy-fix"]);
    const tess = await server.login("tess");
    const activated = await call(tess, "POST", "/v1/activation-requests", {
      role: "legacy-fix",
      duration: "10m",
      reason: "restart the nightly batch",
    });
    expect(activated.body.state, JSON.stringify(activated.body)).toBe("active");
    const taken = await checkout(tess, path); // for the policy's 30 minutes

    clock.advance(11 * MINUTE); // the activation has ended; the check-out has 19 minutes left
    await server.scheduler.runOnce();

    const meta = await call(await admin(), "GET", url(path));
    expect(meta.body.checkedOut).toBeNull();
    const now = await currentValue(path);
    expect(now.value).not.toBe(taken);
    expect(now.version).toBe(2);
  });
});
