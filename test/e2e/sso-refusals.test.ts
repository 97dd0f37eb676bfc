/**
 * Single sign-on refusals a real provider will not produce on demand (issue 15, acceptance 2): a provider on
 * loopback (discovery, JWKS, token endpoint over real HTTP, keys generated here) answers the code exchange with
 * an ID token crafted with jose: another issuer, another audience, a forged signature, expired, another
 * sign-in's nonce. Each is refused with its own error code, audited as a denied auth.login, and creates nothing
 * (no principal, no link, no group); an untouched token signs in, so the refusals are the tokens' doing.
 */
import { randomBytes, createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyLike } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";

const PUBLIC_URL = "http://stint.test";
const CLIENT_ID = "stint-app";

type Mutation = "none" | "issuer" | "audience" | "signature" | "expired" | "nonce";

let work: string;
let server: TestServer;
let provider: Server;
let issuer = "";
let signing: { privateKey: KeyLike; jwk: JWK };
let forger: KeyLike;
let mutation: Mutation = "none";
/** The nonce of the last authorization request (what Stint sent). */
let lastNonce = "";
let subjectCounter = 0;

async function idToken(nonce: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  subjectCounter += 1;
  const claims = {
    nonce: mutation === "nonce" ? "a-nonce-of-another-sign-in" : nonce,
    preferred_username: `crafted${subjectCounter}`,
    email: `crafted${subjectCounter}@example.com`,
    groups: [`crafted-group-${subjectCounter}`],
  };
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: "RS256", kid: "k1" })
    .setSubject(`sub-${subjectCounter}`)
    .setIssuer(mutation === "issuer" ? "http://127.0.0.1:1/another-issuer" : issuer)
    .setAudience(mutation === "audience" ? "another-client" : CLIENT_ID)
    .setIssuedAt(mutation === "expired" ? now - 7200 : now)
    .setExpirationTime(mutation === "expired" ? now - 3600 : now + 300);
  return jwt.sign(mutation === "signature" ? forger : signing.privateKey);
}

function pkceChallenge(): string {
  return createHash("sha256").update(randomBytes(32).toString("base64url")).digest("base64url");
}

/** Starts a sign-in at Stint and plays the provider's redirect back with a code: Stint then calls /token. */
async function attempt(): Promise<URLSearchParams> {
  const start = await server.app.inject({
    method: "GET",
    url: `/v1/auth/sso/crafted/login?code_challenge=${pkceChallenge()}`,
  });
  expect(start.statusCode, start.body).toBe(302);
  const authorize = new URL(start.headers.location as string);
  lastNonce = authorize.searchParams.get("nonce")!;
  const state = authorize.searchParams.get("state")!;
  const back = await server.app.inject({
    method: "GET",
    url: `/v1/auth/sso/crafted/callback?code=an-authorization-code&state=${encodeURIComponent(state)}`,
  });
  expect(back.statusCode).toBe(302);
  return new URLSearchParams(new URL(back.headers.location as string).hash.slice(1));
}

async function counts() {
  const count = async (table: "principals" | "oidc_identities" | "groups") =>
    Number(
      (
        await server.store.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<string>().as("n"))
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    principals: await count("principals"),
    links: await count("oidc_identities"),
    groups: await count("groups"),
  };
}

async function deniedCodes(): Promise<string[]> {
  const res = await server.app.inject({
    method: "GET",
    url: "/v1/audit/events?action=auth.login&limit=200",
    headers: { authorization: server.adminAuth },
  });
  return res
    .json<{ items: { outcome: string; details: Record<string, unknown> }[] }>()
    .items.filter((e) => e.outcome === "denied" && e.details.method === "oidc")
    .map((e) => String(e.details.code));
}

beforeAll(async () => {
  const pair = await generateKeyPair("RS256");
  signing = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "RS256" } };
  forger = (await generateKeyPair("RS256")).privateKey;
  provider = createServer((req, res) => {
    const url = new URL(req.url ?? "/", issuer);
    res.setHeader("content-type", "application/json");
    if (url.pathname === "/.well-known/openid-configuration") {
      res.end(
        JSON.stringify({
          issuer,
          authorization_endpoint: `${issuer}/authorize`,
          token_endpoint: `${issuer}/token`,
          jwks_uri: `${issuer}/jwks`,
          response_types_supported: ["code"],
          subject_types_supported: ["public"],
          id_token_signing_alg_values_supported: ["RS256"],
          code_challenge_methods_supported: ["S256"],
        }),
      );
    } else if (url.pathname === "/jwks") {
      res.end(JSON.stringify({ keys: [signing.jwk] }));
    } else if (url.pathname === "/token" && req.method === "POST") {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        const form = new URLSearchParams(body);
        if (form.get("client_id") !== CLIENT_ID || form.get("client_secret") !== "crafted-secret") {
          res.statusCode = 401;
          res.end(JSON.stringify({ error: "invalid_client" }));
          return;
        }
        void idToken(lastNonce).then((token) =>
          res.end(
            JSON.stringify({ access_token: "an-access-token", token_type: "Bearer", expires_in: 300, id_token: token }),
          ),
        );
      });
    } else {
      res.statusCode = 404;
      res.end("{}");
    }
  });
  await new Promise<void>((resolve) => provider.listen(0, "127.0.0.1", resolve));
  issuer = `http://127.0.0.1:${(provider.address() as AddressInfo).port}`;
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-crafted-"));
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: crafted
    displayName: Crafted
    issuer: ${issuer}
    clientId: ${CLIENT_ID}
    clientSecretEnv: STINT_TEST_CRAFTED_SECRET
    groupsClaim: groups
`,
  );
  process.env.STINT_TEST_CRAFTED_SECRET = "crafted-secret";
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await new Promise<void>((resolve) => provider?.close(() => resolve()));
  await rm(work, { recursive: true, force: true });
});

describe("ID tokens that must not sign anyone in (each its own code, nothing created)", () => {
  const cases: [Mutation, string][] = [
    ["issuer", "SSO_ISSUER_MISMATCH"],
    ["audience", "SSO_AUDIENCE_MISMATCH"],
    ["signature", "SSO_BAD_SIGNATURE"],
    ["expired", "SSO_TOKEN_EXPIRED"],
    ["nonce", "SSO_NONCE_MISMATCH"],
  ];
  for (const [kind, code] of cases) {
    it(`${kind}: refused with ${code}, audited, nothing created`, async () => {
      mutation = kind;
      const before = await counts();
      const result = await attempt();
      expect(result.get("sso_error")).toBe(code);
      expect(result.get("sso_code")).toBeNull();
      expect(await counts()).toEqual(before);
      expect((await deniedCodes()).filter((c) => c === code)).toHaveLength(1);
    });
  }

  it("a state Stint never issued is SSO_STATE_INVALID and the provider is not asked", async () => {
    mutation = "none";
    const before = await counts();
    const back = await server.app.inject({
      method: "GET",
      url: "/v1/auth/sso/crafted/callback?code=an-authorization-code&state=forged-state",
    });
    expect(new URLSearchParams(new URL(back.headers.location as string).hash.slice(1)).get("sso_error")).toBe(
      "SSO_STATE_INVALID",
    );
    expect(await counts()).toEqual(before);
  });

  it("the provider's own refusal (the person cancelled: error=access_denied) is SSO_PROVIDER_DENIED, audited", async () => {
    const before = await counts();
    const start = await server.app.inject({
      method: "GET",
      url: `/v1/auth/sso/crafted/login?code_challenge=${pkceChallenge()}`,
    });
    const state = new URL(start.headers.location as string).searchParams.get("state")!;
    const back = await server.app.inject({
      method: "GET",
      url: `/v1/auth/sso/crafted/callback?error=access_denied&state=${encodeURIComponent(state)}`,
    });
    expect(new URLSearchParams(new URL(back.headers.location as string).hash.slice(1)).get("sso_error")).toBe(
      "SSO_PROVIDER_DENIED",
    );
    expect(await counts()).toEqual(before);
    expect(await deniedCodes()).toContain("SSO_PROVIDER_DENIED");
  });

  it("the same provider's untouched token signs in (the refusals above are the tokens' doing)", async () => {
    mutation = "none";
    const before = await counts();
    const result = await attempt();
    expect(result.get("sso_error")).toBeNull();
    expect(result.get("sso_code")).toBeTruthy();
    const after = await counts();
    expect(after.principals).toBe(before.principals + 1);
    expect(after.links).toBe(before.links + 1);
  });
});
