/**
 * Passkeys over HTTP (app.inject) with a software authenticator that builds every byte itself, so each
 * attack can be staged: a replayed or forged challenge, another origin, another RP ID, no user
 * verification, someone else's challenge, an expired one, a cloned authenticator (its counter going back).
 * Then the policy: a role whose policy says `mfa: { methods: [webauthn] }` refuses a TOTP-fresh session
 * (WEBAUTHN_REQUIRED) and accepts a passkey-fresh one; and a CLI session's step-up handed to a browser.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { manualClock } from "../../lib/clock.js";
import { passwordFor, testServer, totpNow, type TestServer } from "../../testing/server.js";
import { createSoftAuthenticator, type SoftCredential } from "../../testing/soft-authenticator.js";

const ORIGIN = "https://stint.test";
const RP_ID = "stint.test";
const clock = manualClock(new Date());
const authenticator = createSoftAuthenticator({ origin: ORIGIN, rpId: RP_ID });
let server: TestServer;
let peer = 10;

type Json = Record<string, unknown>;
interface Options {
  challengeId: string;
  options: { challenge: string; allowCredentials?: { id: string }[] };
}

async function call(method: string, url: string, auth: string | undefined, payload?: unknown) {
  const res = await server.app.inject({
    method: method as "GET",
    url,
    // Each call from its own address: the per-address sign-in throttle of one attack spares the next.
    remoteAddress: `192.0.2.${peer++ % 250}`,
    ...(auth ? { headers: { authorization: auth } } : {}),
    ...(payload !== undefined ? { payload: payload as Json } : {}),
  });
  const body = res.body ? res.json<Json>() : {};
  const code = (body.error as { code?: string } | undefined)?.code;
  return { status: res.statusCode, body, code };
}

/** The last key registered by each user (tests sign in with it). */
const registered = new Map<string, SoftCredential>();

async function registerKey(auth: string, name = "laptop"): Promise<SoftCredential> {
  const options = await call("POST", "/v1/me/webauthn/registration-options", auth);
  expect(options.status, JSON.stringify(options.body)).toBe(200);
  const { challengeId, options: o } = options.body as unknown as Options;
  const made = authenticator.register(o);
  const done = await call("POST", "/v1/me/webauthn/credentials", auth, {
    challengeId,
    name,
    response: made.response,
  });
  expect(done.status, JSON.stringify(done.body)).toBe(201);
  const me = await call("GET", "/v1/me", auth);
  registered.set(me.body.name as string, made.credential);
  return made.credential;
}

/** Password first: MFA_REQUIRED carries the methods and a sign-in challenge. */
async function passwordStep(name: string) {
  const first = await call("POST", "/v1/auth/login", undefined, { username: name, password: passwordFor(name) });
  expect(first.code).toBe("MFA_REQUIRED");
  const details = (first.body.error as { details: { methods: string[]; webauthn?: Options } }).details;
  return details;
}

async function loginWithKey(name: string, credential: SoftCredential, overrides = {}) {
  const details = await passwordStep(name);
  const assertion = authenticator.assert(credential, details.webauthn!.options, overrides);
  const res = await call("POST", "/v1/auth/login", undefined, {
    username: name,
    password: passwordFor(name),
    webauthn: { challengeId: details.webauthn!.challengeId, response: assertion },
  });
  return { ...res, challengeId: details.webauthn!.challengeId, assertion };
}

async function auditActions(action: string) {
  const res = await call("GET", `/v1/audit/events?action=${action}&limit=1000`, server.adminAuth);
  return (res.body.items as { action: string; outcome: string; reason?: string; details?: Json }[]) ?? [];
}

beforeAll(async () => {
  server = await testServer("pglite", {
    clock,
    env: { STINT_PUBLIC_URL: ORIGIN, STINT_LOGIN_MAX_FAILURES: "50", STINT_ACCESS_TOKEN_TTL: "1h" },
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
});

describe("passkey enrolment", () => {
  it("registers several keys, lists, renames and removes them, each audited", async () => {
    const auth = await server.userWithRoles("pat", ["user"]);
    await registerKey(auth, "laptop");
    // A second key needs a fresh MFA now that pat has a factor: sign in with the first key.
    const list = await call("GET", "/v1/me/webauthn/credentials", auth);
    expect((list.body.items as { name: string }[]).map((k) => k.name)).toEqual(["laptop"]);
    const stale = await call("POST", "/v1/me/webauthn/registration-options", auth);
    expect(stale.code).toBe("MFA_STEP_UP_REQUIRED");
    expect(stale.body.error).not.toHaveProperty("stack");
    const [first] = list.body.items as { id: string }[];
    const removeStale = await call("DELETE", `/v1/me/webauthn/credentials/${first!.id}`, auth);
    expect(removeStale.code).toBe("MFA_STEP_UP_REQUIRED");
    // Signed in with the key, pat adds a second one, renames and removes the first.
    const key = (await call("GET", "/v1/me/webauthn/credentials", auth)).body.items as { id: string }[];
    expect(key).toHaveLength(1);
    const credential = registered.get("pat")!;
    const fresh = await loginWithKey("pat", credential);
    const freshAuth = `Bearer ${fresh.body.accessToken as string}`;
    await registerKey(freshAuth, "phone");
    const renamed = await call("PATCH", `/v1/me/webauthn/credentials/${first!.id}`, freshAuth, { name: "old laptop" });
    expect(renamed.body.name).toBe("old laptop");
    expect((await call("DELETE", `/v1/me/webauthn/credentials/${first!.id}`, freshAuth)).status).toBe(200);
    const after = await call("GET", "/v1/me/webauthn/credentials", freshAuth);
    expect((after.body.items as { name: string }[]).map((k) => k.name)).toEqual(["phone"]);
    // Someone else's key id answers like one that does not exist.
    const other = await server.userWithRoles("quinn", ["user"]);
    const phone = (after.body.items as { id: string }[])[0]!.id;
    expect((await call("DELETE", `/v1/me/webauthn/credentials/${phone}`, other)).code).toBe("NOT_FOUND");
    expect((await call("PATCH", `/v1/me/webauthn/credentials/${phone}`, other, { name: "x" })).code).toBe("NOT_FOUND");
    const actions = (await auditActions("webauthn.*")).filter((e) => e.outcome === "success").map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["webauthn.registered", "webauthn.renamed", "webauthn.removed"]));
  });

  it("refuses a registration from another origin, for another RP ID, without user verification, or replayed", async () => {
    const auth = await server.userWithRoles("rex", ["user"]);
    for (const [overrides, code] of [
      [{ origin: "https://evil.test" }, "WEBAUTHN_INVALID"],
      [{ rpId: "evil.test" }, "WEBAUTHN_INVALID"],
      [{ userVerified: false }, "WEBAUTHN_INVALID"],
      [{ challenge: "Zm9yZ2VkLWNoYWxsZW5nZS1ieS10aGUtY2xpZW50" }, "WEBAUTHN_CHALLENGE_INVALID"],
    ] as const) {
      const options = await call("POST", "/v1/me/webauthn/registration-options", auth);
      const { challengeId, options: o } = options.body as unknown as Options;
      const made = authenticator.register(o, overrides);
      const res = await call("POST", "/v1/me/webauthn/credentials", auth, {
        challengeId,
        name: "bad",
        response: made.response,
      });
      expect([res.status, res.code], JSON.stringify(overrides)).toEqual([401, code]);
      // The challenge was used by the refused answer: a good answer to it is refused too.
      const retry = await call("POST", "/v1/me/webauthn/credentials", auth, {
        challengeId,
        name: "retry",
        response: authenticator.register(o).response,
      });
      expect(retry.code).toBe("WEBAUTHN_CHALLENGE_INVALID");
    }
    const list = await call("GET", "/v1/me/webauthn/credentials", auth);
    expect(list.body.items).toEqual([]);
    const denied = (await auditActions("webauthn.registered")).filter((e) => e.outcome === "denied");
    expect(denied.length).toBeGreaterThanOrEqual(8);
  });
});

describe("password + passkey sign-in", () => {
  let key: SoftCredential;

  beforeAll(async () => {
    const auth = await server.userWithRoles("kim", ["user"]);
    key = await registerKey(auth);
  });

  it("asks a passkey-only account for its passkey, then signs in with it (amr hwk)", async () => {
    const details = await passwordStep("kim");
    expect(details.methods).toEqual(["webauthn"]);
    expect(details.webauthn!.options.allowCredentials).toHaveLength(1);
    const res = await loginWithKey("kim", key);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(decodeJwt(res.body.accessToken as string).amr).toEqual(["pwd", "hwk"]);
    const logins = await auditActions("auth.login");
    expect(logins.some((e) => e.outcome === "success" && e.details?.mfa === "webauthn")).toBe(true);
  });

  it("never issues a challenge before the password checked out", async () => {
    const res = await call("POST", "/v1/auth/login", undefined, { username: "kim", password: "wrong password" });
    expect(res.code).toBe("INVALID_CREDENTIALS");
    expect(JSON.stringify(res.body)).not.toContain("challenge");
  });

  it("refuses a replayed answer, a forged challenge, another origin, another RP ID and no user verification", async () => {
    const ok = await loginWithKey("kim", key);
    expect(ok.status).toBe(200);
    const replay = await call("POST", "/v1/auth/login", undefined, {
      username: "kim",
      password: passwordFor("kim"),
      webauthn: { challengeId: ok.challengeId, response: ok.assertion },
    });
    expect(replay.code).toBe("WEBAUTHN_CHALLENGE_INVALID");
    for (const [overrides, code] of [
      [{ challenge: "c2lnbmVkLWZvci1hLWNoYWxsZW5nZS10aGUtc2VydmVyLW5ldmVyLWlzc3VlZA" }, "WEBAUTHN_CHALLENGE_INVALID"],
      [{ origin: "https://stint.test.evil.example" }, "WEBAUTHN_INVALID"],
      [{ rpId: "evil.test" }, "WEBAUTHN_INVALID"],
      [{ userVerified: false }, "WEBAUTHN_INVALID"],
    ] as const) {
      const res = await loginWithKey("kim", key, overrides);
      expect([res.status, res.code], JSON.stringify(overrides)).toEqual([401, code]);
      expect(res.body).not.toHaveProperty("accessToken");
    }
    const denied = (await auditActions("auth.login")).filter((e) => e.outcome === "denied");
    expect(denied.some((e) => e.reason === "challenge already used")).toBe(true);
  });

  it("refuses an answer to someone else's challenge and an expired one", async () => {
    const auth = await server.userWithRoles("lee", ["user"]);
    const leeKey = await registerKey(auth);
    const kimDetails = await passwordStep("kim");
    // lee answers kim's challenge with lee's own key, while signing in as lee.
    const stolen = await call("POST", "/v1/auth/login", undefined, {
      username: "lee",
      password: passwordFor("lee"),
      webauthn: {
        challengeId: kimDetails.webauthn!.challengeId,
        response: authenticator.assert(leeKey, kimDetails.webauthn!.options),
      },
    });
    expect(stolen.code).toBe("WEBAUTHN_CHALLENGE_INVALID");
    const details = await passwordStep("lee");
    clock.advance(5 * 60_000 + 1);
    const late = await call("POST", "/v1/auth/login", undefined, {
      username: "lee",
      password: passwordFor("lee"),
      webauthn: {
        challengeId: details.webauthn!.challengeId,
        response: authenticator.assert(leeKey, details.webauthn!.options),
      },
    });
    expect(late.code).toBe("WEBAUTHN_CHALLENGE_INVALID");
  });

  it("refuses a cloned authenticator (signature counter going back) with its own code, audited", async () => {
    const ok = await loginWithKey("kim", key);
    expect(ok.status).toBe(200);
    const clone = await loginWithKey("kim", key, { counter: 1 });
    expect([clone.status, clone.code]).toEqual([401, "WEBAUTHN_CLONED_AUTHENTICATOR"]);
    const same = await loginWithKey("kim", key, { counter: key.counter });
    expect(same.code).toBe("WEBAUTHN_CLONED_AUTHENTICATOR");
    const events = await auditActions("webauthn.clone_detected");
    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(events[0]!.details).toMatchObject({ presented: 1 });
    // The genuine key, whose counter goes on up, still works.
    expect((await loginWithKey("kim", key)).status).toBe(200);
  });
});

describe("a policy that requires a passkey", () => {
  let totpSecret: string;
  let key: SoftCredential;

  beforeAll(async () => {
    const auth = await server.userWithRoles("max", ["user"]);
    const applied = await call("POST", "/v1/config/apply", server.adminAuth, {
      yaml: `apiVersion: stint/v1
policies:
  - name: passkey-only
    mfa: { required: true, maxAge: 10m, methods: [webauthn] }
    justification: { minLength: 5 }
targets:
  - name: stint
    kind: internal
roles:
  - name: prod-admin
    target: stint
    risk: critical
    policy: passkey-only
eligibility:
  - role: prod-admin
    users: [max]
`,
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    const started = await call("POST", "/v1/me/mfa/totp", auth);
    totpSecret = started.body.secret as string;
    const confirmed = await call("POST", "/v1/me/mfa/totp/confirm", auth, {
      code: totpNow(totpSecret, clock.now().getTime()),
    });
    expect(confirmed.status).toBe(200);
    clock.advance(30_000);
    const fresh = await server.login("max", passwordFor("max"), totpNow(totpSecret, clock.now().getTime()));
    key = await registerKey(fresh);
  });

  it("exports and re-applies mfa.methods unchanged", async () => {
    const exported = await call("GET", "/v1/config/export", server.adminAuth);
    const yaml = exported.body.yaml as string;
    expect(yaml).toMatch(/methods:\s*\n?\s*-?\s*\[?webauthn/);
    const diff = await call("POST", "/v1/config/diff", server.adminAuth, { yaml });
    expect(diff.body.summary).toEqual({ create: 0, update: 0, delete: 0 });
    // Changing the methods is a change the diff shows.
    const widened = yaml.replace(/methods:[^\n]*(\n\s+- webauthn)?/, "methods: [totp, webauthn]");
    expect(widened).not.toBe(yaml);
    const changed = await call("POST", "/v1/config/diff", server.adminAuth, { yaml: widened });
    expect((changed.body.summary as { update: number }).update).toBe(1);
  });

  it("refuses a TOTP-fresh session with WEBAUTHN_REQUIRED and accepts a passkey-fresh one", async () => {
    clock.advance(30_000);
    const details = await passwordStep("max");
    expect(details.methods).toEqual(["totp", "webauthn"]);
    const auth = await server.login("max", passwordFor("max"), totpNow(totpSecret, clock.now().getTime()));
    const refused = await call("POST", "/v1/activation-requests", auth, { role: "prod-admin", reason: "deploy fix" });
    expect([refused.status, refused.code]).toEqual([401, "WEBAUTHN_REQUIRED"]);
    // A TOTP step-up does not help either.
    clock.advance(30_000);
    const totpStep = await call("POST", "/v1/auth/step-up", auth, { otp: totpNow(totpSecret, clock.now().getTime()) });
    expect(totpStep.status).toBe(200);
    const still = await call("POST", "/v1/activation-requests", auth, { role: "prod-admin", reason: "deploy fix" });
    expect(still.code).toBe("WEBAUTHN_REQUIRED");
    // The passkey step-up does.
    const options = await call("POST", "/v1/auth/webauthn/step-up-options", auth, {});
    const { challengeId, options: o } = options.body as unknown as Options;
    const stepped = await call("POST", "/v1/auth/webauthn/step-up", auth, {
      challengeId,
      response: authenticator.assert(key, o),
    });
    expect(stepped.status, JSON.stringify(stepped.body)).toBe(200);
    expect(stepped.body.method).toBe("webauthn");
    const activated = await call("POST", "/v1/activation-requests", auth, { role: "prod-admin", reason: "deploy fix" });
    expect(activated.status, JSON.stringify(activated.body)).toBe(201);
    expect(activated.body.state).toBe("active");
    // Past maxAge the passkey check is stale again.
    const deactivated = await call("POST", "/v1/me/roles/prod-admin/deactivate", auth);
    expect(deactivated.status).toBe(200);
    clock.advance(11 * 60_000);
    const staleAgain = await call("POST", "/v1/activation-requests", auth, {
      role: "prod-admin",
      reason: "deploy fix",
    });
    expect(staleAgain.code).toBe("WEBAUTHN_REQUIRED");
  });

  it("steps up a CLI session through a browser hand-off, for the same user only", async () => {
    clock.advance(30_000);
    const cli = await server.login("max", passwordFor("max"), totpNow(totpSecret, clock.now().getTime()));
    const handoff = await call("POST", "/v1/auth/step-up-handoffs", cli);
    expect(handoff.status).toBe(201);
    const id = handoff.body.id as string;
    expect(handoff.body.url).toBe(`${ORIGIN}/step-up/${id}`);
    // Someone else cannot see it, nor answer for it.
    const other = await server.userWithRoles("nia", ["user"]);
    expect((await call("GET", `/v1/auth/step-up-handoffs/${id}`, other)).code).toBe("NOT_FOUND");
    expect((await call("POST", "/v1/auth/webauthn/step-up-options", other, { handoff: id })).code).toBe("NOT_FOUND");
    // The browser session (signed in with the passkey) answers for the CLI's session.
    const browser = await loginWithKey("max", key);
    const browserAuth = `Bearer ${browser.body.accessToken as string}`;
    const status = await call("GET", `/v1/auth/step-up-handoffs/${id}`, browserAuth);
    expect(status.body).toMatchObject({ status: "pending", matchCode: handoff.body.matchCode });
    const options = await call("POST", "/v1/auth/webauthn/step-up-options", browserAuth, { handoff: id });
    const { challengeId, options: o } = options.body as unknown as Options;
    const done = await call("POST", "/v1/auth/webauthn/step-up", browserAuth, {
      challengeId,
      response: authenticator.assert(key, o),
    });
    expect(done.status).toBe(200);
    expect((await call("GET", `/v1/auth/step-up-handoffs/${id}`, cli)).body.status).toBe("completed");
    const activated = await call("POST", "/v1/activation-requests", cli, { role: "prod-admin", reason: "from cli" });
    expect(activated.status, JSON.stringify(activated.body)).toBe(201);
    // A completed hand-off takes no second answer.
    expect((await call("POST", "/v1/auth/webauthn/step-up-options", browserAuth, { handoff: id })).code).toBe(
      "NOT_FOUND",
    );
  });

  it("refuses an answer for a hand-off that expired or was completed meanwhile, audited", async () => {
    clock.advance(30_000);
    const cli = await server.login("max", passwordFor("max"), totpNow(totpSecret, clock.now().getTime()));
    const browser = await loginWithKey("max", key);
    const browserAuth = `Bearer ${browser.body.accessToken as string}`;
    const answer = async (id: string) => {
      const options = await call("POST", "/v1/auth/webauthn/step-up-options", browserAuth, { handoff: id });
      const { challengeId, options: o } = options.body as unknown as Options;
      return () =>
        call("POST", "/v1/auth/webauthn/step-up", browserAuth, { challengeId, response: authenticator.assert(key, o) });
    };
    const cliActivates = async () =>
      (await call("POST", "/v1/activation-requests", cli, { role: "prod-admin", reason: "from cli" })).code;
    // A challenge issued just before the hand-off expired, answered after it: refused, the CLI not stepped up.
    const late = (await call("POST", "/v1/auth/step-up-handoffs", cli)).body.id as string;
    clock.advance(4 * 60_000);
    const lateAnswer = await answer(late);
    clock.advance(2 * 60_000);
    expect((await call("GET", `/v1/auth/step-up-handoffs/${late}`, cli)).body.status).toBe("expired");
    expect((await lateAnswer()).code).toBe("NOT_FOUND");
    expect(await cliActivates()).toBe("WEBAUTHN_REQUIRED");
    // Two answers prepared while the hand-off was pending: the first completes it, the second is refused.
    const twice = (await call("POST", "/v1/auth/step-up-handoffs", cli)).body.id as string;
    const first = await answer(twice);
    const second = await answer(twice);
    expect((await first()).status).toBe(200);
    expect((await second()).code).toBe("NOT_FOUND");
    const refused = (await auditActions("auth.step_up")).filter((e) => e.outcome === "denied");
    expect(refused.filter((e) => e.reason === "hand-off unknown, expired or done").length).toBeGreaterThanOrEqual(2);
  });
});
