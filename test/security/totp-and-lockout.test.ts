/**
 * TOTP reuse and lockout bypass by username case (peers shipped fixes for both: a one-time code accepted twice
 * within its 30-second step, e.g. through a second endpoint or two parallel requests; a lockout keyed on the
 * name as typed, so `Alice` or `alice ` got fresh guesses). On the real PostgreSQL store, so the row locks that
 * serialize two uses of one code are the real ones.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";

const clock = manualClock(new Date());
let server: TestServer;
let secret: string;

/** Each test signs in from its own address, so the per-address throttle of one does not lock out the next. */
let peer = "192.0.2.1";

async function signIn(username: string, password: string, otp?: string) {
  const res = await server.app.inject({
    method: "POST",
    url: "/v1/auth/login",
    remoteAddress: peer,
    payload: { username, password, ...(otp ? { otp } : {}) },
  });
  return {
    status: res.statusCode,
    code: res.statusCode === 200 ? "OK" : res.json<{ error: { code: string } }>().error.code,
    accessToken: res.statusCode === 200 ? res.json<{ accessToken: string }>().accessToken : undefined,
  };
}

const code = () => totpNow(secret, clock.now().getTime());

beforeAll(async () => {
  server = await testServer("postgres", { clock, env: { STINT_LOGIN_MAX_FAILURES: "5" } });
  const auth = await server.userWithRoles("alice", ["user"]);
  await server.userWithRoles("bob", ["user"]);
  await server.userWithRoles("kate", ["user"]);
  const started = await server.app.inject({ method: "POST", url: "/v1/me/mfa/totp", headers: { authorization: auth } });
  secret = started.json<{ secret: string }>().secret;
  const confirmed = await server.app.inject({
    method: "POST",
    url: "/v1/me/mfa/totp/confirm",
    headers: { authorization: auth },
    payload: { code: code() },
  });
  expect(confirmed.statusCode, confirmed.body).toBe(200);
});
afterAll(async () => server?.cleanup());

describe("TOTP reuse and lockout bypass by username case", () => {
  it("a one-time code used to sign in is refused the second time, by sign-in and by step-up", async () => {
    clock.advance(30_000);
    const otp = code();
    const first = await signIn("alice", passwordFor("alice"), otp);
    expect(first.code).toBe("OK");
    expect((await signIn("alice", passwordFor("alice"), otp)).code).toBe("MFA_INVALID");
    const stepUp = await server.app.inject({
      method: "POST",
      url: "/v1/auth/step-up",
      headers: { authorization: `Bearer ${first.accessToken!}` },
      payload: { otp },
    });
    expect(stepUp.statusCode).toBe(401);
    expect(stepUp.json<{ error: { code: string } }>().error.code).toBe("MFA_INVALID");
  });

  it("a code used for step-up cannot then sign in, and the previous step's code is spent too", async () => {
    clock.advance(30_000);
    const session = await signIn("alice", passwordFor("alice"), code());
    clock.advance(30_000);
    const otp = code();
    const stepUp = await server.app.inject({
      method: "POST",
      url: "/v1/auth/step-up",
      headers: { authorization: `Bearer ${session.accessToken!}` },
      payload: { otp },
    });
    expect(stepUp.statusCode, stepUp.body).toBe(200);
    expect((await signIn("alice", passwordFor("alice"), otp)).code).toBe("MFA_INVALID");
    expect((await signIn("alice", passwordFor("alice"), totpNow(secret, clock.now().getTime() - 30_000))).code).toBe(
      "MFA_INVALID",
    );
  });

  it("ten parallel sign-ins with one code: exactly one succeeds", async () => {
    peer = "192.0.2.3";
    clock.advance(30_000);
    const otp = code();
    const results = await Promise.all(Array.from({ length: 10 }, () => signIn("alice", passwordFor("alice"), otp)));
    expect(results.filter((r) => r.code === "OK")).toHaveLength(1);
    // The replays count as failed guesses: past the limit they answer with the lockout.
    for (const r of results.filter((r) => r.code !== "OK")) expect(["MFA_INVALID", "ACCOUNT_LOCKED"]).toContain(r.code);
  });

  it("failures under other spellings of a name count against the same account, and its lockout holds for all", async () => {
    peer = "192.0.2.4";
    // Case, surrounding whitespace and compatibility forms (full-width letters) are one account.
    const spellings = ["BOB", " bob", "bob\t", "Bob", "\uff42\uff4f\uff42"];
    for (const name of spellings) expect((await signIn(name, "wrong password, one guess")).status).toBe(401);
    for (const name of ["bob", ...spellings, "\uff22\uff2f\uff22"]) {
      const attempt = await signIn(name, passwordFor("bob"));
      expect(attempt.code, JSON.stringify(name)).toBe("ACCOUNT_LOCKED");
    }
    const lockouts = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?action=auth.lockout&limit=10",
      headers: { authorization: server.adminAuth },
    });
    const subjects = lockouts.json<{ items: { subject: string }[] }>().items.map((e) => e.subject);
    expect(subjects).toContain("user:bob");
  });

  it("a name whose lower case is another name's (the Kelvin sign K) is that name, lockout included", async () => {
    peer = "192.0.2.5";
    // U+212A KELVIN SIGN lower-cases to an ASCII k.
    for (let i = 0; i < 5; i++) expect((await signIn("\u212Aate", "wrong password, one guess")).status).toBe(401);
    expect((await signIn("kate", passwordFor("kate"))).code).toBe("ACCOUNT_LOCKED");
    clock.advance(16 * 60_000); // past the lockout
    expect((await signIn("kate", passwordFor("kate"))).code).toBe("OK");
  });
});
