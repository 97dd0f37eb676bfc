/**
 * Test support for the workload identity tests (test/e2e/workload-identity*.test.ts): a local OIDC issuer on
 * loopback (discovery and JWKS over real HTTP, keys generated here) minting GitHub-Actions-shaped job tokens, and
 * `workloadServer()`: a Stint server with a dynamic PostgreSQL target at the machine's PostgreSQL, a service
 * identity trusting the issuer's jobs of acme/app on main (`main-deploys`) and an auto-approved role for it.
 * One server per test file (each e2e file runs in its own process).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyLike } from "jose";
import type pg from "pg";
import { afterAll, beforeAll, expect } from "vitest";
import type { TargetsHarness } from "../../src/testing/targets-harness.js";
import { dynamicPgConfig, stintWithPgTarget, type PgTarget } from "./pg-target.js";

export const hex = randomBytes(4).toString("hex");
const pgDatabase = `stint_wl_${hex}`;
const pgReader = `stint_wl_reader_${hex}`;
export const SERVICE = `ci${hex}`;
const EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";

export interface Issuer {
  url: string;
  /** Requests the issuer answered (discovery and JWKS). */
  hits: string[];
  publish(keys: SigningKey[]): void;
  close(): Promise<void>;
}

export interface SigningKey {
  kid: string;
  privateKey: KeyLike;
  jwk: JWK;
}

export async function signingKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } };
}

/** A loopback issuer; `jwksUri` (default: its own /jwks) is what its discovery document names. */
export async function startIssuer(options: { jwksUri?: () => string } = {}): Promise<Issuer> {
  let published: JWK[] = [];
  const hits: string[] = [];
  let url = "";
  const server: HttpServer = createServer((req, res) => {
    hits.push(req.url ?? "");
    res.setHeader("content-type", "application/json");
    if (req.url === "/.well-known/openid-configuration")
      res.end(
        JSON.stringify({
          issuer: url,
          jwks_uri: options.jwksUri?.() ?? `${url}/jwks`,
          id_token_signing_alg_values_supported: ["RS256"],
        }),
      );
    else if (req.url === "/jwks") res.end(JSON.stringify({ keys: published }));
    else {
      res.statusCode = 404;
      res.end("{}");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    publish: (keys) => (published = keys.map((k) => k.jwk)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A loopback HTTP server answering every request with `handle` (which may never answer). */
export async function startRawServer(handle: (req: IncomingMessage, res: ServerResponse) => void) {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface WorkloadServer {
  h: TargetsHarness;
  /** The machine's PostgreSQL as its superuser. */
  pgRoot: pg.Client;
  /** The issuer `main-deploys` trusts; publishes keyA. */
  issuer: Issuer;
  /** An issuer no trust names; publishes keyA too. */
  stranger: Issuer;
  keyA: SigningKey;
  keyB: SigningKey;
}

const fixture = {} as WorkloadServer;
let target: PgTarget | undefined;

/** For the calling test file: the issuers, keys and Stint server, there once `beforeAll` has run. */
export function workloadServer(): WorkloadServer {
  beforeAll(async () => {
    [fixture.keyA, fixture.keyB] = await Promise.all([signingKey("key-a"), signingKey("key-b")]);
    fixture.issuer = await startIssuer();
    fixture.issuer.publish([fixture.keyA]);
    fixture.stranger = await startIssuer();
    fixture.stranger.publish([fixture.keyA]);

    // 127.0.0.2 stands for an internal network the operator walled off.
    ({ h: fixture.h, target } = await stintWithPgTarget({
      target: {
        database: pgDatabase,
        reader: pgReader,
        table: { name: "releases", column: "version", value: "1.0.0" },
        mintedFor: SERVICE,
      },
      harness: { env: { STINT_WORKLOAD_JWKS_COOLDOWN: "0s", STINT_DENY_NETWORKS: "127.0.0.2/32" } },
      principals: [{ name: SERVICE, kind: "service" }],
      config: (address) =>
        dynamicPgConfig({
          policy: "ci-auto",
          target: "releases-pg",
          address,
          roles: [{ name: "releases-reader", reader: pgReader }],
          users: [SERVICE],
        }),
    }));
    fixture.pgRoot = target.root;
    const trust = await fixture.h.admin("POST", `/v1/services/${SERVICE}/trusts`, {
      name: "main-deploys",
      issuer: fixture.issuer.url,
      audiences: ["stint"],
      conditions: { repository: "acme/app", ref: "refs/heads/main" },
      tokenTtl: "10m",
    });
    expect(trust.status, JSON.stringify(trust.body)).toBe(201);
  });

  afterAll(async () => {
    await fixture.h?.server.cleanup();
    await fixture.issuer?.close();
    await fixture.stranger?.close();
    await target?.cleanup();
  });
  return fixture;
}

/** A GitHub-Actions-shaped job token. */
export async function jobToken(
  key: SigningKey,
  over: { claims?: Record<string, unknown>; iss?: string; aud?: string; iat?: number; exp?: number; jti?: string } = {},
): Promise<string> {
  // The server judges iat and exp by its (manual) clock, which stands still while the file runs.
  const now = Math.floor(fixture.h.clock.now().getTime() / 1000);
  return new SignJWT({
    repository: "acme/app",
    ref: "refs/heads/main",
    environment: "production",
    actor: "octocat",
    ...over.claims,
  })
    .setProtectedHeader({ alg: "RS256", kid: key.kid, typ: "JWT" })
    .setIssuer(over.iss ?? fixture.issuer.url)
    .setAudience(over.aud ?? "stint")
    .setSubject("repo:acme/app:ref:refs/heads/main")
    .setIssuedAt(over.iat ?? now)
    .setExpirationTime(over.exp ?? now + 300)
    .setJti(over.jti ?? randomUUID())
    .sign(key.privateKey);
}

export async function exchange(token: string, options: { form?: boolean; service?: string } = {}) {
  const fields: Record<string, string> = {
    grant_type: EXCHANGE_GRANT,
    subject_token: token,
    subject_token_type: JWT_TYPE,
    ...(options.service ? { service: options.service } : {}),
  };
  const res = await fixture.h.server.app.inject({
    method: "POST",
    url: "/v1/auth/token-exchange",
    ...(options.form === false
      ? { payload: fields }
      : {
          headers: { "content-type": "application/x-www-form-urlencoded" },
          payload: new URLSearchParams(fields).toString(),
        }),
  });
  return {
    status: res.statusCode,
    headers: res.headers,
    body: res.json() as Record<string, unknown> & { error?: { code: string; message: string } },
  };
}

export async function asToken(token: string, method: "GET" | "POST", url: string, payload?: object) {
  const res = await fixture.h.server.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> & { error?: { code: string } } };
}

export async function apiTokensOfService(service = SERVICE): Promise<number> {
  const res = await fixture.h.admin("GET", "/v1/tokens");
  return (res.body.items as { principal: string }[]).filter((t) => t.principal === service).length;
}

export async function exchangeEvents() {
  const res = await fixture.h.admin("GET", "/v1/audit/events?action=auth.token_exchange&limit=200");
  return res.body.items as {
    outcome: string;
    reason: string | null;
    subject: string | null;
    details: Record<string, unknown>;
  }[];
}
