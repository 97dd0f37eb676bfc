/**
 * Single sign-on on two nodes over one PostgreSQL database: a sign-in started on node A is finished by a callback
 * that reaches node B (the state, nonce and verifier are in the database), its one-time code is redeemed on A, and
 * the same callback replayed on A is refused. A device grant started on A is polled on B (the provider's device
 * code is sealed with the shared master key), pending until the person confirms, then a session.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAppStore } from "../../src/db/index.js";
import { createLogger } from "../../src/lib/logger.js";
import { createServer, type Server } from "../../src/server.js";
import { browseThrough, startOidcProvider, type TestProvider } from "../../src/testing/oidc-provider.js";
import { TEST_SCRYPT, testServer, type TestServer } from "../../src/testing/server.js";

const PUBLIC_URL = "http://stint.test";
const masterKey = randomBytes(32);

let work: string;
let idp: TestProvider;
let nodeA: TestServer;
let nodeB: Server;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-nodes-"));
  idp = await startOidcProvider({ redirectUris: [`${PUBLIC_URL}/v1/auth/sso/corp/callback`] });
  idp.accounts.set("sub-erin", { preferred_username: "erin", email: "erin@example.com", groups: ["sre"] });
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecret: ${idp.clientSecret}
    scopes: [openid, email, profile, groups]
    groupsClaim: groups
`,
  );
  nodeA = await testServer("postgres", {
    masterKey,
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
  nodeB = await createServer({
    config: nodeA.config,
    logger: createLogger({ level: "silent" }),
    masterKey,
    vaultKey: randomBytes(32),
    scrypt: TEST_SCRYPT,
    store: await openAppStore({ databaseUrl: nodeA.databaseUrl }),
  });
  await nodeB.app.ready();
}, 180_000);

afterAll(async () => {
  await nodeB?.close();
  await nodeA?.cleanup();
  await idp?.close();
  await rm(work, { recursive: true, force: true });
});

describe("single sign-on across nodes", () => {
  it("started on A, called back on B, redeemed on A; the replayed callback is refused on A", async () => {
    const verifier = randomBytes(32).toString("base64url");
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    const start = await nodeA.app.inject({ method: "GET", url: `/v1/auth/sso/corp/login?code_challenge=${challenge}` });
    expect(start.statusCode, start.body).toBe(302);
    const callback = await browseThrough(start.headers.location as string, "sub-erin", idp.issuer);
    const onB = await nodeB.app.inject({ method: "GET", url: `${callback.pathname}${callback.search}` });
    const fragment = new URLSearchParams(new URL(onB.headers.location as string).hash.slice(1));
    expect(fragment.get("sso_code"), fragment.toString()).toBeTruthy();
    const redeemed = await nodeA.app.inject({
      method: "POST",
      url: "/v1/auth/sso/redeem",
      payload: { code: fragment.get("sso_code"), codeVerifier: verifier },
    });
    expect(redeemed.statusCode, redeemed.body).toBe(200);
    expect(redeemed.json<{ principal: { name: string; groups: string[] } }>().principal).toMatchObject({
      name: "erin",
      groups: ["sre"],
    });
    const replay = await nodeA.app.inject({ method: "GET", url: `${callback.pathname}${callback.search}` });
    expect(new URL(replay.headers.location as string).hash).toBe("#sso_error=SSO_STATE_INVALID");
  });

  it("the first sign-ins of one new person on both nodes at once make one user, both signed in", async () => {
    idp.accounts.set("sub-fay", { preferred_username: "fay", email: "fay@example.com", groups: ["fresh-group"] });
    const challenge = createHash("sha256").update(randomBytes(32)).digest("base64url");
    const callbacks: URL[] = [];
    for (const node of [nodeA, nodeB]) {
      const start = await node.app.inject({
        method: "GET",
        url: `/v1/auth/sso/corp/login?code_challenge=${challenge}`,
      });
      callbacks.push(await browseThrough(start.headers.location as string, "sub-fay", idp.issuer));
    }
    const answers = await Promise.all(
      [nodeA, nodeB].map((node, i) =>
        node.app.inject({ method: "GET", url: `${callbacks[i]!.pathname}${callbacks[i]!.search}` }),
      ),
    );
    for (const answer of answers)
      expect(new URL(answer.headers.location as string).hash, answer.body).toMatch(/^#sso_code=/);
    const users = await nodeA.store.db.selectFrom("principals").select("id").where("name", "=", "fay").execute();
    expect(users).toHaveLength(1);
    const groups = await nodeA.store.db
      .selectFrom("groups")
      .select("source")
      .where("name", "=", "fresh-group")
      .execute();
    expect(groups).toEqual([{ source: "oidc" }]);
  });

  it("a device grant started on A is polled on B: pending, then a session once confirmed", async () => {
    const started = await nodeA.app.inject({ method: "POST", url: "/v1/auth/sso/corp/device", payload: {} });
    expect(started.statusCode, started.body).toBe(200);
    const device = started.json<{ deviceCode: string; verificationUriComplete: string }>();
    const early = await nodeB.app.inject({
      method: "POST",
      url: "/v1/auth/sso/device/token",
      payload: { deviceCode: device.deviceCode },
    });
    expect(early.statusCode).toBe(400);
    expect(early.json<{ error: { code: string; details: { interval: number } } }>().error).toMatchObject({
      code: "SSO_AUTHORIZATION_PENDING",
      details: { interval: expect.any(Number) as number },
    });
    await browseThrough(device.verificationUriComplete, "sub-erin", idp.issuer);
    // The provider asks clients to wait its interval between polls.
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    const done = await nodeB.app.inject({
      method: "POST",
      url: "/v1/auth/sso/device/token",
      payload: { deviceCode: device.deviceCode },
    });
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json<{ principal: { name: string } }>().principal.name).toBe("erin");
    const again = await nodeA.app.inject({
      method: "POST",
      url: "/v1/auth/sso/device/token",
      payload: { deviceCode: device.deviceCode },
    });
    expect(again.json<{ error: { code: string } }>().error.code).toBe("SSO_CODE_INVALID");
  });
});
