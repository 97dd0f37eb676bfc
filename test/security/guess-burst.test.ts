/**
 * Parallel guesses against the sign-in lockout (PostgreSQL, the real row locks). The lockout counted a failure
 * only after the guess was checked, in a transaction of its own, and the step-up and password-change paths looked
 * at the lock once before checking: a burst of requests all passed that look, and every guess in it was checked.
 * A stolen session (a refresh token, an access token) had its 60 TOTP guesses at step-up checked under a limit of
 * 5, and a password sign-in 33: the lockout bounded nothing. Each guess is now counted before it is checked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { ADMIN_PASSWORD, passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";

const LIMIT = 5;
const BURST = 40;
const clock = manualClock(new Date());
let server: TestServer;
let secret: string;
let alice: string;

/** Six-digit codes that are not the current one (nor its neighbours in the window). */
function wrongCodes(count: number): string[] {
  const near = new Set([-30_000, 0, 30_000].map((d) => totpNow(secret, clock.now().getTime() + d)));
  const codes: string[] = [];
  for (let n = 100_003; codes.length < count; n += 7_919) {
    const code = String(n % 1_000_000).padStart(6, "0");
    if (!near.has(code)) codes.push(code);
  }
  return codes;
}

/** How many guesses were checked and found wrong: each is a denied event with this reason. */
async function checkedGuesses(action: string, reason: string): Promise<number> {
  const admin = await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);
  const res = await server.app.inject({
    method: "GET",
    url: `/v1/audit/events?action=${action}&limit=1000`,
    headers: { authorization: admin },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: { reason: string | null }[] }>().items.filter((e) => e.reason === reason).length;
}

function codeOf(res: { statusCode: number; json: <T>() => T }): string {
  return res.statusCode === 200 ? "OK" : res.json<{ error: { code: string } }>().error.code;
}

beforeAll(async () => {
  server = await testServer("postgres", { clock, env: { STINT_LOGIN_MAX_FAILURES: String(LIMIT) } });
  alice = await server.userWithRoles("alice", ["user"]);
  await server.userWithRoles("bob", ["user"]);
  await server.userWithRoles("carol", ["user"]);
  const started = await server.app.inject({
    method: "POST",
    url: "/v1/me/mfa/totp",
    headers: { authorization: alice },
  });
  secret = started.json<{ secret: string }>().secret;
  const confirmed = await server.app.inject({
    method: "POST",
    url: "/v1/me/mfa/totp/confirm",
    headers: { authorization: alice },
    payload: { code: totpNow(secret, clock.now().getTime()) },
  });
  expect(confirmed.statusCode, confirmed.body).toBe(200);
}, 60_000);
afterAll(async () => server?.cleanup());

describe("parallel guesses cannot outrun the lockout", () => {
  it("a stolen session's burst of step-up codes: at most the limit is checked, the rest refused unchecked", async () => {
    const results = await Promise.all(
      wrongCodes(BURST).map((otp, i) =>
        server.app.inject({
          method: "POST",
          url: "/v1/auth/step-up",
          headers: { authorization: alice },
          remoteAddress: `198.51.100.${i + 1}`,
          payload: { otp },
        }),
      ),
    );
    expect(results.every((r) => ["MFA_INVALID", "ACCOUNT_LOCKED"].includes(codeOf(r)))).toBe(true);
    expect(await checkedGuesses("auth.step_up", "wrong one-time code")).toBeLessThanOrEqual(LIMIT);
    // The lockout holds for the right code too, until it passes.
    const right = { otp: totpNow(secret, clock.now().getTime()) };
    const locked = await server.app.inject({
      method: "POST",
      url: "/v1/auth/step-up",
      headers: { authorization: alice },
      payload: right,
    });
    expect(codeOf(locked)).toBe("ACCOUNT_LOCKED");
  }, 120_000);

  it("a burst of one-time codes at sign-in, each from another address: at most the limit is checked", async () => {
    clock.advance(16 * 60_000); // past the lockout of the test before
    const results = await Promise.all(
      wrongCodes(BURST).map((otp, i) =>
        server.app.inject({
          method: "POST",
          url: "/v1/auth/login",
          remoteAddress: `198.51.101.${i + 1}`,
          payload: { username: "alice", password: passwordFor("alice"), otp },
        }),
      ),
    );
    expect(results.every((r) => ["MFA_INVALID", "ACCOUNT_LOCKED"].includes(codeOf(r)))).toBe(true);
    expect(await checkedGuesses("auth.login", "wrong one-time code")).toBeLessThanOrEqual(LIMIT);
  }, 120_000);

  it("a burst of passwords: at most the limit is checked", async () => {
    const results = await Promise.all(
      Array.from({ length: BURST }, (_, i) =>
        server.app.inject({
          method: "POST",
          url: "/v1/auth/login",
          remoteAddress: `198.51.102.${i + 1}`,
          payload: { username: "bob", password: `guess number ${i} of many` },
        }),
      ),
    );
    expect(results.every((r) => ["INVALID_CREDENTIALS", "ACCOUNT_LOCKED"].includes(codeOf(r)))).toBe(true);
    expect(await checkedGuesses("auth.login", "wrong password")).toBeLessThanOrEqual(LIMIT);
  }, 120_000);

  it("what is no wrong guess is given back: steps-up, MFA prompts and password changes never lock the account", async () => {
    clock.advance(16 * 60_000);
    const session = await server.login("alice", passwordFor("alice"), totpNow(secret, clock.now().getTime()));
    for (let i = 0; i < LIMIT + 2; i++) {
      clock.advance(30_000); // a code is good once per 30-second step
      const prompt = await server.app.inject({
        method: "POST",
        url: "/v1/auth/login",
        payload: { username: "alice", password: passwordFor("alice") },
      });
      expect(codeOf(prompt)).toBe("MFA_REQUIRED");
      const stepUp = await server.app.inject({
        method: "POST",
        url: "/v1/auth/step-up",
        headers: { authorization: session },
        payload: { otp: totpNow(secret, clock.now().getTime()) },
      });
      expect(stepUp.statusCode, stepUp.body).toBe(200);
    }
    const bob = await server.login("bob", passwordFor("bob"));
    for (const [from, to] of [
      [passwordFor("bob"), "#another-password-1"],
      ["#another-password-1", "#another-password-2"],
      ["#another-password-2", "#another-password-3"],
      ["#another-password-3", "#another-password-4"],
      ["#another-password-4", "#another-password-5"],
      ["#another-password-5", "#another-password-6"],
    ]) {
      const changed = await server.app.inject({
        method: "POST",
        url: "/v1/me/password",
        headers: { authorization: bob },
        payload: { currentPassword: from, newPassword: to },
      });
      expect(changed.statusCode, changed.body).toBe(200);
    }
    // Four wrong codes and then the right one: the limit counts failures, not tries.
    clock.advance(30_000);
    for (const otp of wrongCodes(LIMIT - 1)) {
      const wrong = await server.app.inject({
        method: "POST",
        url: "/v1/auth/step-up",
        headers: { authorization: session },
        payload: { otp },
      });
      expect(codeOf(wrong)).toBe("MFA_INVALID");
    }
    const right = await server.app.inject({
      method: "POST",
      url: "/v1/auth/step-up",
      headers: { authorization: session },
      payload: { otp: totpNow(secret, clock.now().getTime()) },
    });
    expect(right.statusCode, right.body).toBe(200);
  }, 120_000);
  it("simultaneous right sign-ins past the limit are all admitted: a claim waits for a fresh lock to be given back", async () => {
    const results = await Promise.all(
      Array.from({ length: 3 * LIMIT }, (_, i) =>
        server.app.inject({
          method: "POST",
          url: "/v1/auth/login",
          remoteAddress: `198.51.103.${i + 1}`,
          payload: { username: "carol", password: passwordFor("carol") },
        }),
      ),
    );
    expect(results.map(codeOf)).toEqual(results.map(() => "OK"));
  }, 120_000);
});
