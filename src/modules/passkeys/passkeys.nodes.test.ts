/**
 * Passkeys on two nodes over one PostgreSQL database: a challenge issued by node A is answered on node B;
 * the same answer sent to both nodes at once is accepted exactly once (the challenge row lock); and a
 * passkey step-up on B counts on A at once for a role whose policy requires the passkey.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAppStore } from "../../db/index.js";
import { createLogger } from "../../lib/logger.js";
import { createServer, type Server } from "../../server.js";
import { passwordFor, testServer, totpNow, TEST_SCRYPT, type TestServer } from "../../testing/server.js";
import { createSoftAuthenticator, type SoftCredential } from "../../testing/soft-authenticator.js";

const ORIGIN = "https://stint.test";
const authenticator = createSoftAuthenticator({ origin: ORIGIN, rpId: "stint.test" });
const masterKey = randomBytes(32);
let nodeA: TestServer;
let nodeB: Server;
let key: SoftCredential;
let recoveryCode: string;

interface Options {
  challengeId: string;
  options: { challenge: string };
}

async function call(node: Server, method: "GET" | "POST", url: string, auth?: string, payload?: object) {
  const res = await node.app.inject({
    method,
    url,
    ...(auth ? { headers: { authorization: auth } } : {}),
    ...(payload ? { payload } : {}),
  });
  const body = res.json<Record<string, unknown>>();
  return { status: res.statusCode, body, code: (body.error as { code?: string } | undefined)?.code };
}

async function loginOptions(node: Server): Promise<Options> {
  const first = await call(node, "POST", "/v1/auth/login", undefined, {
    username: "ola",
    password: passwordFor("ola"),
  });
  expect(first.code).toBe("MFA_REQUIRED");
  return (first.body.error as { details: { webauthn: Options } }).details.webauthn;
}

const loginWith = (node: Server, issued: Options, response: unknown) =>
  call(node, "POST", "/v1/auth/login", undefined, {
    username: "ola",
    password: passwordFor("ola"),
    webauthn: { challengeId: issued.challengeId, response },
  });

beforeAll(async () => {
  nodeA = await testServer("postgres", { masterKey, env: { STINT_PUBLIC_URL: ORIGIN } });
  nodeB = await createServer({
    config: nodeA.config,
    logger: createLogger({ level: "silent" }),
    masterKey,
    vaultKey: randomBytes(32),
    scrypt: TEST_SCRYPT,
    store: await openAppStore({ databaseUrl: nodeA.databaseUrl }),
  });
  await nodeB.app.ready();
  const auth = await nodeA.userWithRoles("ola", ["user"]);
  const applied = await call(nodeA, "POST", "/v1/config/apply", nodeA.adminAuth, {
    yaml: `apiVersion: stint/v1
policies:
  - name: passkey-only
    mfa: { required: true, maxAge: 10m, methods: [webauthn] }
    justification: { minLength: 5 }
targets:
  - name: stint
    kind: internal
roles:
  - name: vault-root
    target: stint
    risk: high
    policy: passkey-only
eligibility:
  - role: vault-root
    users: [ola]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  // An authenticator app first, whose recovery codes sign in without a passkey check.
  const started = await call(nodeA, "POST", "/v1/me/mfa/totp", auth);
  const confirmed = await call(nodeA, "POST", "/v1/me/mfa/totp/confirm", auth, {
    code: totpNow(started.body.secret as string),
  });
  expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
  const codes = confirmed.body.recoveryCodes as string[];
  recoveryCode = codes[0]!;
  // Adding the passkey beside it needs a fresh second factor: a session signed in with another recovery code.
  const fresh = await nodeA.login("ola", passwordFor("ola"), codes[1]!);
  const issued = await call(nodeA, "POST", "/v1/me/webauthn/registration-options", fresh);
  const { challengeId, options } = issued.body as unknown as Options;
  const made = authenticator.register(options);
  // Registered on B with A's challenge.
  const done = await call(nodeB, "POST", "/v1/me/webauthn/credentials", fresh, {
    challengeId,
    name: "key",
    response: made.response,
  });
  expect(done.status, JSON.stringify(done.body)).toBe(201);
  key = made.credential;
}, 120_000);

afterAll(async () => {
  await nodeB?.close();
  await nodeA?.cleanup();
});

describe("passkeys on two nodes", () => {
  it("answers on B a sign-in challenge A issued; the answer is refused on A afterwards", async () => {
    const issued = await loginOptions(nodeA);
    const answer = authenticator.assert(key, issued.options);
    expect((await loginWith(nodeB, issued, answer)).status).toBe(200);
    expect((await loginWith(nodeA, issued, answer)).code).toBe("WEBAUTHN_CHALLENGE_INVALID");
  });

  it("accepts one answer sent to both nodes at once exactly once", async () => {
    for (let round = 0; round < 5; round++) {
      const issued = await loginOptions(nodeA);
      const answer = authenticator.assert(key, issued.options);
      const results = await Promise.all([loginWith(nodeA, issued, answer), loginWith(nodeB, issued, answer)]);
      expect(results.map((r) => r.status).sort()).toEqual([200, 401]);
      expect(results.find((r) => r.status === 401)!.code).toBe("WEBAUTHN_CHALLENGE_INVALID");
    }
  });

  it("a passkey step-up on B counts on A (whose memory held the session without it) for a passkey-only role", async () => {
    // ola signs in on A with a recovery code: a second factor, but no passkey check.
    const auth0 = await nodeA.login("ola", passwordFor("ola"), recoveryCode);
    const refused = await call(nodeA, "POST", "/v1/activation-requests", auth0, {
      role: "vault-root",
      reason: "check",
    });
    expect(refused.code).toBe("WEBAUTHN_REQUIRED");
    const options = await call(nodeB, "POST", "/v1/auth/webauthn/step-up-options", auth0, {});
    const { challengeId, options: o } = options.body as unknown as Options;
    const stepped = await call(nodeB, "POST", "/v1/auth/webauthn/step-up", auth0, {
      challengeId,
      response: authenticator.assert(key, o),
    });
    expect(stepped.status, JSON.stringify(stepped.body)).toBe(200);
    // A hears of the change through the access index (its heartbeat bound is 1 s); allow 3 s.
    const deadline = Date.now() + 3000;
    let activated = await call(nodeA, "POST", "/v1/activation-requests", auth0, {
      role: "vault-root",
      reason: "check",
    });
    while (activated.status !== 201 && Date.now() < deadline) {
      expect(activated.code).toBe("WEBAUTHN_REQUIRED");
      await new Promise((resolve) => setTimeout(resolve, 100));
      activated = await call(nodeA, "POST", "/v1/activation-requests", auth0, { role: "vault-root", reason: "check" });
    }
    expect(activated.status, JSON.stringify(activated.body)).toBe(201);
  });
});
