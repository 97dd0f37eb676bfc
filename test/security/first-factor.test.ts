/**
 * The first second factor of an account is enrolled only from a recent sign-in.
 *
 * The attack: someone holds a session of an account that has no second factor yet, but not its password (a
 * refresh token copied from a laptop or a log, a browser left signed in). Enrolment of a first factor asked for
 * nothing more than the session, so they enrolled an authenticator app (or a passkey) of their own and stepped up
 * with it: a session MFA-fresh for every role whose policy asks for MFA (`mfa: { required: true }`), and the
 * account's only second factor theirs: the owner's next sign-in asked for the thief's code. A first factor now
 * needs a session signed in (password or single sign-on) within the last 15 minutes; a refreshed token keeps the
 * time of the sign-in it came from.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";
import { createSoftAuthenticator } from "../../src/testing/soft-authenticator.js";

const ORIGIN = "https://stint.test";
const clock = manualClock(new Date());
const authenticator = createSoftAuthenticator({ origin: ORIGIN, rpId: "stint.test" });
let server: TestServer;

async function call(url: string, auth: string | undefined, payload?: Record<string, unknown>) {
  const res = await server.app.inject({
    method: "POST",
    url,
    ...(auth ? { headers: { authorization: auth } } : {}),
    ...(payload ? { payload } : {}),
  });
  const body = res.json<Record<string, unknown>>();
  return { status: res.statusCode, body, code: (body.error as { code?: string } | undefined)?.code };
}

/** Signs in with the password: the access token and the refresh token a thief would copy. */
async function signIn(name: string) {
  const res = await call("/v1/auth/login", undefined, { username: name, password: passwordFor(name) });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return { access: `Bearer ${res.body.accessToken as string}`, refresh: res.body.refreshToken as string };
}

/** What the thief does an hour later: refreshes the copied token, for a valid access token of that session. */
async function stolenAnHourLater(refresh: string): Promise<string> {
  clock.advance(60 * 60_000);
  const res = await call("/v1/auth/refresh", undefined, { refreshToken: refresh });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return `Bearer ${res.body.accessToken as string}`;
}

beforeAll(async () => {
  server = await testServer("pglite", {
    clock,
    env: { STINT_PUBLIC_URL: ORIGIN, STINT_LOGIN_MAX_FAILURES: "50" },
  });
  for (const name of ["quinn", "rosa", "sam", "tara"]) await server.userWithRoles(name, ["user"]);
}, 120_000);
afterAll(async () => server?.cleanup());

describe("the first second factor of an account", () => {
  it("a stolen session signed in an hour ago cannot enrol an authenticator app, nor step up with one", async () => {
    const stolen = await stolenAnHourLater((await signIn("quinn")).refresh);
    const started = await call("/v1/me/mfa/totp", stolen);
    if (started.status === 200) {
      // The old behaviour, to the end: the thief's app, a step-up with it, an MFA-fresh session.
      const secret = started.body.secret as string;
      await call("/v1/me/mfa/totp/confirm", stolen, { code: totpNow(secret, clock.now().getTime()) });
      clock.advance(30_000);
      const stepUp = await call("/v1/auth/step-up", stolen, { otp: totpNow(secret, clock.now().getTime()) });
      expect(stepUp.status, "the thief stepped up with an app of their own").not.toBe(200);
    }
    expect(started.status, JSON.stringify(started.body)).toBe(401);
    expect(started.code).toBe("SIGN_IN_AGAIN");
    // Nor a passkey.
    const options = await call("/v1/me/webauthn/registration-options", stolen);
    expect(options.code).toBe("SIGN_IN_AGAIN");
  });

  it("an enrolment started after the sign-in is confirmed only while the sign-in is recent", async () => {
    const { access, refresh } = await signIn("rosa");
    const started = await call("/v1/me/mfa/totp", access);
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    clock.advance(20 * 60_000);
    const refreshed = await call("/v1/auth/refresh", undefined, { refreshToken: refresh });
    const confirmed = await call("/v1/me/mfa/totp/confirm", `Bearer ${refreshed.body.accessToken as string}`, {
      code: totpNow(started.body.secret as string, clock.now().getTime()),
    });
    expect(confirmed.code).toBe("SIGN_IN_AGAIN");
  });

  it("owners signed in again enrol the app or a passkey", async () => {
    const { access } = await signIn("sam");
    const started = await call("/v1/me/mfa/totp", access);
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    const confirmed = await call("/v1/me/mfa/totp/confirm", access, {
      code: totpNow(started.body.secret as string, clock.now().getTime()),
    });
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
    const { access: again } = await signIn("tara");
    const options = await call("/v1/me/webauthn/registration-options", again);
    expect(options.status, JSON.stringify(options.body)).toBe(200);
    const { challengeId, options: o } = options.body as { challengeId: string; options: { challenge: string } };
    const made = authenticator.register(o as never);
    const done = await call("/v1/me/webauthn/credentials", again, {
      challengeId,
      name: "key",
      response: made.response,
    });
    expect(done.status, JSON.stringify(done.body)).toBe(201);
  });
});
