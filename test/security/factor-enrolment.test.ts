/**
 * Adding a second factor to an account that already has one needs a fresh MFA check, whatever the factor.
 *
 * The attack: someone holds a victim's session but not their passkey (a stolen refresh token, a browser left
 * signed in, a single sign-on session whose provider's MFA Stint does not count). Adding a passkey is refused
 * to them (it needs MFA within 15 minutes), but enrolling an authenticator app of their own was not: they then
 * stepped up with it and had a session as MFA-fresh as the victim's own, for every role whose policy asks for
 * MFA, and a second factor of their own to sign in with the password later. Enrolment (start and confirm) is
 * now held to the passkeys' rule; the first factor of an account that has none needs a recent sign-in (finding 67).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";
import { createSoftAuthenticator, type SoftCredential } from "../../src/testing/soft-authenticator.js";

const ORIGIN = "https://stint.test";
const clock = manualClock(new Date());
const authenticator = createSoftAuthenticator({ origin: ORIGIN, rpId: "stint.test" });
let server: TestServer;

type Json = Record<string, unknown>;
interface Options {
  challengeId: string;
  options: { challenge: string };
}

async function call(method: "GET" | "POST", url: string, auth: string | undefined, payload?: unknown) {
  const res = await server.app.inject({
    method,
    url,
    ...(auth ? { headers: { authorization: auth } } : {}),
    ...(payload !== undefined ? { payload: payload as Json } : {}),
  });
  const body = res.body ? res.json<Json>() : {};
  return { status: res.statusCode, body, code: (body.error as { code?: string } | undefined)?.code };
}

async function registerKey(auth: string): Promise<SoftCredential> {
  const options = await call("POST", "/v1/me/webauthn/registration-options", auth);
  expect(options.status, JSON.stringify(options.body)).toBe(200);
  const { challengeId, options: o } = options.body as unknown as Options;
  const made = authenticator.register(o);
  const done = await call("POST", "/v1/me/webauthn/credentials", auth, {
    challengeId,
    name: "key",
    response: made.response,
  });
  expect(done.status, JSON.stringify(done.body)).toBe(201);
  return made.credential;
}

/** Signs in with the password and the passkey: a session whose MFA is now. */
async function signInWithKey(name: string, credential: SoftCredential): Promise<string> {
  const first = await call("POST", "/v1/auth/login", undefined, { username: name, password: passwordFor(name) });
  expect(first.code).toBe("MFA_REQUIRED");
  const webauthn = (first.body.error as { details: { webauthn: Options } }).details.webauthn;
  const res = await call("POST", "/v1/auth/login", undefined, {
    username: name,
    password: passwordFor(name),
    webauthn: { challengeId: webauthn.challengeId, response: authenticator.assert(credential, webauthn.options) },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return `Bearer ${res.body.accessToken as string}`;
}

async function totpRow(name: string) {
  return server.store.db
    .selectFrom("mfa_totp")
    .innerJoin("principals", "principals.id", "mfa_totp.principal_id")
    .select(["mfa_totp.confirmed_at"])
    .where("principals.name", "=", name)
    .executeTakeFirst();
}

beforeAll(async () => {
  server = await testServer("pglite", {
    clock,
    env: { STINT_PUBLIC_URL: ORIGIN, STINT_ACCESS_TOKEN_TTL: "2h", STINT_LOGIN_MAX_FAILURES: "50" },
  });
}, 120_000);
afterAll(async () => server?.cleanup());

describe("second-factor enrolment on an account that has one", () => {
  it("a session whose MFA is stale cannot enrol an authenticator app beside the passkey, nor step up with it", async () => {
    const first = await server.userWithRoles("mia", ["user"]);
    const key = await registerKey(first);
    const session = await signInWithKey("mia", key);
    // Twenty minutes later the session is still signed in, but its MFA is no longer fresh: the thief's position.
    clock.advance(20 * 60_000);
    const started = await call("POST", "/v1/me/mfa/totp", session);
    expect(started.status, JSON.stringify(started.body)).toBe(401);
    expect(started.code).toBe("MFA_STEP_UP_REQUIRED");
    expect(await totpRow("mia")).toBeUndefined();
    // Nothing to step up with: the session's MFA stays stale.
    const stepUp = await call("POST", "/v1/auth/step-up", session, { otp: "123456" });
    expect(stepUp.code).toBe("MFA_INVALID");
    const refused = await call("GET", "/v1/audit/events?action=mfa.enrollment_started&limit=50", server.adminAuth);
    const events = refused.body.items as { outcome: string; subject: string }[];
    expect(events.some((e) => e.outcome === "denied" && e.subject === "user:mia")).toBe(true);
  });

  it("an enrolment started while fresh cannot be confirmed once the MFA is stale", async () => {
    const first = await server.userWithRoles("noor", ["user"]);
    const key = await registerKey(first);
    const session = await signInWithKey("noor", key);
    const started = await call("POST", "/v1/me/mfa/totp", session);
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    clock.advance(20 * 60_000);
    const secret = started.body.secret as string;
    const confirmed = await call("POST", "/v1/me/mfa/totp/confirm", session, {
      code: totpNow(secret, clock.now().getTime()),
    });
    expect(confirmed.code).toBe("MFA_STEP_UP_REQUIRED");
    expect((await totpRow("noor"))?.confirmed_at ?? null).toBeNull();
  });

  it("the owner with a fresh passkey check enrols the app; an account without a factor enrols its first", async () => {
    const first = await server.userWithRoles("omar", ["user"]);
    const key = await registerKey(first);
    const session = await signInWithKey("omar", key);
    const started = await call("POST", "/v1/me/mfa/totp", session);
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    const confirmed = await call("POST", "/v1/me/mfa/totp/confirm", session, {
      code: totpNow(started.body.secret as string, clock.now().getTime()),
    });
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);

    // An account without a factor enrols its first from a recent sign-in (test/security/first-factor.test.ts).
    const plain = await server.userWithRoles("pia", ["user"]);
    const own = await call("POST", "/v1/me/mfa/totp", plain);
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    const done = await call("POST", "/v1/me/mfa/totp/confirm", plain, {
      code: totpNow(own.body.secret as string, clock.now().getTime()),
    });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
  });
});
