/**
 * Workload identity attacked with forged job tokens (security review). Two loopback issuers, each trusted by
 * its own service identity, publish RSA keys; the attacker holds a key of their own and, in one case, the
 * signing key of the second issuer (a self-hosted CI they run). Every attack must mint nothing.
 *
 * - Keys named by the token (`jku`, `x5u`, an embedded `jwk`): never fetched, never used; only the keys the
 *   token's issuer publishes now verify it.
 * - Algorithm confusion: HS256 with the issuer's public key (its JWK or PEM) as the HMAC secret.
 * - Issuer confusion: the second issuer's key signing a token that claims the first issuer.
 * - Audience confusion: a token of the first issuer for the second trust's audience, naming that service.
 * - Clock: a token issued in the future beyond the tolerance; a replay after the token's expiry, once the
 *   record of its first use could have been swept (the record outlives the tolerance that still accepts it).
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTHeaderParameters } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

type Key = Awaited<ReturnType<typeof generateKeyPair>> & { kid: string; jwk: JWK };
interface JwksServer {
  url: string;
  hits: number;
  close(): Promise<void>;
}

const clock = manualClock(new Date());
let server: TestServer;
let a: JwksServer;
let b: JwksServer;
let attacker: JwksServer;
let keyA: Key;
let keyB: Key;
let keyX: Key;

async function key(kid: string): Promise<Key> {
  const pair = await generateKeyPair("RS256", { extractable: true });
  return { ...pair, kid, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: "RS256", use: "sig" } };
}

/** An issuer on loopback: discovery naming its own /jwks, which publishes `keys`; counts every request. */
async function issuerServing(keys: Key[]): Promise<JwksServer> {
  let url = "";
  const served = { hits: 0 };
  const http: HttpServer = createServer((req, res) => {
    served.hits++;
    res.setHeader("content-type", "application/json");
    if (req.url === "/.well-known/openid-configuration")
      res.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/jwks` }));
    else res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    url,
    get hits() {
      return served.hits;
    },
    close: () => new Promise<void>((resolve) => http.close(() => resolve())),
  };
}

interface Forged {
  iss?: string;
  aud?: string;
  iat?: number;
  exp?: number;
  jti?: string;
  header?: Partial<JWTHeaderParameters>;
}

function claims(over: Forged) {
  const now = Math.floor(clock.now().getTime() / 1000);
  return new SignJWT({ repository: "acme/app" })
    .setIssuer(over.iss ?? a.url)
    .setAudience(over.aud ?? "stint-a")
    .setSubject("repo:acme/app:ref:refs/heads/main")
    .setIssuedAt(over.iat ?? now)
    .setExpirationTime(over.exp ?? now + 300)
    .setJti(over.jti ?? randomUUID());
}

const signed = (k: Key, over: Forged = {}) =>
  claims(over)
    .setProtectedHeader({ alg: "RS256", kid: k.kid, ...over.header })
    .sign(k.privateKey);

async function exchange(token: string, service?: string) {
  const res = await server.app.inject({
    method: "POST",
    url: "/v1/auth/token-exchange",
    payload: {
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      subject_token: token,
      subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
      ...(service ? { service } : {}),
    },
  });
  return { status: res.statusCode, body: res.json<{ accessToken?: string; error?: { code: string } }>() };
}

async function refused(token: string, code: string, service?: string) {
  const res = await exchange(token, service);
  expect(res.body.accessToken, "no token minted").toBeUndefined();
  expect(res.body.error?.code).toBe(code);
}

beforeAll(async () => {
  [keyA, keyB, keyX] = await Promise.all([key("key-a"), key("key-b"), key("key-x")]);
  [a, b, attacker] = await Promise.all([issuerServing([keyA]), issuerServing([keyB]), issuerServing([keyX])]);
  server = await testServer("pglite", { clock });
  for (const [service, issuer, audience] of [
    ["ci-a", a.url, "stint-a"],
    ["ci-b", b.url, "stint-b"],
  ] as const) {
    const created = await server.app.inject({
      method: "POST",
      url: "/v1/users",
      headers: { authorization: server.adminAuth },
      payload: { name: service, kind: "service" },
    });
    expect(created.statusCode, created.body).toBe(201);
    const trust = await server.app.inject({
      method: "POST",
      url: `/v1/services/${service}/trusts`,
      headers: { authorization: server.adminAuth },
      payload: { name: "deploys", issuer, audiences: [audience], conditions: { repository: "acme/app" } },
    });
    expect(trust.statusCode, trust.body).toBe(201);
  }
  // The genuine job of each issuer is exchanged: the set-up works, and both issuers' keys are cached.
  expect((await exchange(await signed(keyA))).status).toBe(200);
  expect((await exchange(await signed(keyB, { iss: b.url, aud: "stint-b" }))).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await server?.cleanup();
  await Promise.all([a?.close(), b?.close(), attacker?.close()]);
});

describe("workload identity: keys the token names", () => {
  it("a jku or x5u header naming the attacker's key set is never fetched; the attacker's key verifies nothing", async () => {
    await refused(await signed(keyX, { header: { jku: `${attacker.url}/jwks` } }), "WORKLOAD_TOKEN_INVALID");
    await refused(await signed(keyX, { header: { x5u: `${attacker.url}/cert.pem` } }), "WORKLOAD_TOKEN_INVALID");
    // The kid of the issuer's own key, signed by the attacker's: a bad signature.
    await refused(
      await signed(keyX, { header: { kid: "key-a", jku: `${attacker.url}/jwks` } }),
      "WORKLOAD_TOKEN_INVALID",
    );
    expect(attacker.hits, "Stint never asked the attacker's server").toBe(0);
  });

  it("an embedded jwk header (the attacker's public key) is not trusted", async () => {
    await refused(await signed(keyX, { header: { jwk: keyX.jwk, kid: undefined } }), "WORKLOAD_TOKEN_INVALID");
    await refused(await signed(keyX, { header: { jwk: keyX.jwk, kid: "key-a" } }), "WORKLOAD_TOKEN_INVALID");
  });

  it("HS256 keyed with the issuer's public key (JWK or PEM) is refused: public keys sign nothing", async () => {
    const pem = await exportSPKI(keyA.publicKey);
    for (const secret of [new TextEncoder().encode(pem), new TextEncoder().encode(JSON.stringify(keyA.jwk))]) {
      const token = await claims({}).setProtectedHeader({ alg: "HS256", kid: "key-a" }).sign(secret);
      await refused(token, "WORKLOAD_TOKEN_INVALID");
    }
    const none = `${Buffer.from('{"alg":"none","kid":"key-a"}').toString("base64url")}.${(await signed(keyA)).split(".")[1]}.`;
    await refused(none, "WORKLOAD_TOKEN_INVALID");
  });
});

describe("workload identity: two issuers", () => {
  it("the second issuer's key cannot sign for the first (its kid or the first one's)", async () => {
    await refused(await signed(keyB, { iss: a.url }), "WORKLOAD_TOKEN_INVALID");
    await refused(await signed(keyB, { iss: a.url, header: { kid: "key-a" } }), "WORKLOAD_TOKEN_INVALID");
    await refused(await signed(keyB, { iss: a.url }), "WORKLOAD_TOKEN_INVALID", "ci-b");
  });

  it("a token of the first issuer for the second trust's audience gets neither identity", async () => {
    await refused(await signed(keyA, { aud: "stint-b" }), "WORKLOAD_TOKEN_INVALID", "ci-b");
    await refused(await signed(keyA, { aud: "stint-b" }), "WORKLOAD_TOKEN_INVALID");
    // Both audiences: only the first issuer's trust can match, so naming the second service finds none.
    const both = await claims({})
      .setAudience(["stint-a", "stint-b"])
      .setProtectedHeader({ alg: "RS256", kid: "key-a" })
      .sign(keyA.privateKey);
    await refused(both, "WORKLOAD_NO_TRUST", "ci-b");
  });
});

describe("workload identity: clocks", () => {
  it("a token issued beyond the tolerance in the future is refused; within it, accepted", async () => {
    const now = Math.floor(clock.now().getTime() / 1000);
    await refused(await signed(keyA, { iat: now + 600, exp: now + 900 }), "WORKLOAD_TOKEN_EXPIRED");
    expect((await exchange(await signed(keyA, { iat: now + 30, exp: now + 330 }))).status).toBe(200);
  });

  it("a token replayed after its expiry, inside the tolerance and after a sweep of used tokens, is refused", async () => {
    const now = Math.floor(clock.now().getTime() / 1000);
    const token = await signed(keyA, { exp: now + 60 });
    expect((await exchange(token)).status).toBe(200);
    // 30 s past its exp: still inside the 60 s tolerance. Another job's exchange sweeps the uses past their keeping.
    clock.advance(90_000);
    expect((await exchange(await signed(keyA))).status).toBe(200);
    await refused(token, "WORKLOAD_TOKEN_REPLAYED");
    clock.advance(60_000);
    await refused(token, "WORKLOAD_TOKEN_EXPIRED");
  });
});

describe("workload identity: a disabled service identity (a leaver's pipeline)", () => {
  it("mints nothing more, and what it minted before stops working; enabled again, it mints", async () => {
    const before = await exchange(await signed(keyA));
    expect(before.status).toBe(200);
    const admin = (url: string, payload: object) =>
      server.app.inject({ method: "POST", url, headers: { authorization: server.adminAuth }, payload });
    expect((await admin("/v1/users/ci-a/disable", { reason: "the team that ran it left" })).statusCode).toBe(200);

    await refused(await signed(keyA), "WORKLOAD_NO_TRUST");
    const me = await server.app.inject({
      method: "GET",
      url: "/v1/me",
      headers: { authorization: `Bearer ${before.body.accessToken}` },
    });
    expect(me.statusCode).toBe(401);

    expect((await admin("/v1/users/ci-a/enable", {})).statusCode).toBe(200);
    expect((await exchange(await signed(keyA))).status).toBe(200);
  });
});
