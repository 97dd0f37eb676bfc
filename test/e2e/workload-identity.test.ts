/**
 * Workload identity by OIDC token exchange (issue 15, acceptance 5): a local issuer on loopback (discovery and
 * JWKS over real HTTP, keys generated here) mints CI job tokens; the matching job trades its token for a Stint
 * token, activates an auto-approved role and reads a dynamic PostgreSQL login that works at the machine's
 * PostgreSQL. Tokens of another repository or ref, a replayed jti, an expired token, a token for another
 * audience, a forged signature, an unknown issuer and a key the issuer rotated out are refused, each with its
 * code, audited, creating nothing; a key the issuer rotated in works without a restart.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyLike } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD } from "../../src/testing/server.js";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { injectFetch } from "./inject-fetch.js";
import { dynamicPgConfig, stintWithPgTarget, type PgTarget } from "./pg-target.js";
import type { TargetsHarness } from "../../src/testing/targets-harness.js";

const hex = randomBytes(4).toString("hex");
const pgDatabase = `stint_wl_${hex}`;
const pgReader = `stint_wl_reader_${hex}`;
const SERVICE = `ci${hex}`;
const EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";

interface Issuer {
  url: string;
  /** Requests the issuer answered (discovery and JWKS). */
  hits: string[];
  publish(keys: SigningKey[]): void;
  close(): Promise<void>;
}

interface SigningKey {
  kid: string;
  privateKey: KeyLike;
  jwk: JWK;
}

async function signingKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } };
}

/** A loopback issuer; `jwksUri` (default: its own /jwks) is what its discovery document names. */
async function startIssuer(options: { jwksUri?: () => string } = {}): Promise<Issuer> {
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
async function startRawServer(handle: (req: IncomingMessage, res: ServerResponse) => void) {
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

let h: TargetsHarness;
let target: PgTarget | undefined;
let pgRoot: pg.Client;
let issuer: Issuer;
let stranger: Issuer;
let keyA: SigningKey;
let keyB: SigningKey;

/** A GitHub-Actions-shaped job token. */
async function jobToken(
  key: SigningKey,
  over: { claims?: Record<string, unknown>; iss?: string; aud?: string; iat?: number; exp?: number; jti?: string } = {},
): Promise<string> {
  // The server judges iat and exp by its (manual) clock, which stands still while the file runs.
  const now = Math.floor(h.clock.now().getTime() / 1000);
  return new SignJWT({
    repository: "acme/app",
    ref: "refs/heads/main",
    environment: "production",
    actor: "octocat",
    ...over.claims,
  })
    .setProtectedHeader({ alg: "RS256", kid: key.kid, typ: "JWT" })
    .setIssuer(over.iss ?? issuer.url)
    .setAudience(over.aud ?? "stint")
    .setSubject("repo:acme/app:ref:refs/heads/main")
    .setIssuedAt(over.iat ?? now)
    .setExpirationTime(over.exp ?? now + 300)
    .setJti(over.jti ?? randomUUID())
    .sign(key.privateKey);
}

async function exchange(token: string, options: { form?: boolean; service?: string } = {}) {
  const fields: Record<string, string> = {
    grant_type: EXCHANGE_GRANT,
    subject_token: token,
    subject_token_type: JWT_TYPE,
    ...(options.service ? { service: options.service } : {}),
  };
  const res = await h.server.app.inject({
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

async function asToken(token: string, method: "GET" | "POST", url: string, payload?: object) {
  const res = await h.server.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> & { error?: { code: string } } };
}

async function apiTokensOfService(service = SERVICE): Promise<number> {
  const res = await h.admin("GET", "/v1/tokens");
  return (res.body.items as { principal: string }[]).filter((t) => t.principal === service).length;
}

async function exchangeEvents() {
  const res = await h.admin("GET", "/v1/audit/events?action=auth.token_exchange&limit=200");
  return res.body.items as {
    outcome: string;
    reason: string | null;
    subject: string | null;
    details: Record<string, unknown>;
  }[];
}

beforeAll(async () => {
  [keyA, keyB] = await Promise.all([signingKey("key-a"), signingKey("key-b")]);
  issuer = await startIssuer();
  issuer.publish([keyA]);
  stranger = await startIssuer();
  stranger.publish([keyA]);

  // 127.0.0.2 stands for an internal network the operator walled off.
  ({ h, target } = await stintWithPgTarget({
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
  pgRoot = target.root;
  const trust = await h.admin("POST", `/v1/services/${SERVICE}/trusts`, {
    name: "main-deploys",
    issuer: issuer.url,
    audiences: ["stint"],
    conditions: { repository: "acme/app", ref: "refs/heads/main" },
    tokenTtl: "10m",
  });
  expect(trust.status, JSON.stringify(trust.body)).toBe(201);
});

afterAll(async () => {
  await h?.server.cleanup();
  await issuer?.close();
  await stranger?.close();
  await target?.cleanup();
});

describe("workload identity: token exchange", () => {
  it("the matching job gets a short-lived token, activates an auto-approved role and uses a dynamic PostgreSQL login", async () => {
    const token = await jobToken(keyA);
    const res = await exchange(token);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.headers["cache-control"]).toBe("no-store");
    expect(res.body).toMatchObject({
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      token_type: "Bearer",
      expires_in: 600,
      service: SERVICE,
    });
    const stintToken = res.body.access_token as string;
    expect(stintToken).toMatch(/^stint_[0-9a-f]{32}_/);

    const me = await asToken(stintToken, "GET", "/v1/me");
    expect(me.body).toMatchObject({ name: SERVICE, kind: "service" });
    const submitted = await asToken(stintToken, "POST", "/v1/activation-requests", {
      role: "releases-reader",
      duration: "15m",
      reason: "deploy pipeline run 1234 for acme/app",
    });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    await h.drainOutbox();
    const creds = await asToken(stintToken, "GET", "/v1/me/roles/releases-reader/credentials");
    expect(creds.status, JSON.stringify(creds.body)).toBe(200);
    const login = creds.body as { host: string; port: number; database: string; user: string; password: string };
    const client = new pg.Client({
      host: login.host,
      port: login.port,
      database: login.database,
      user: login.user,
      password: login.password,
    });
    client.on("error", () => undefined);
    await client.connect();
    expect((await client.query("select version from releases")).rows).toEqual([{ version: "1.0.0" }]);
    await client.end();

    const events = await exchangeEvents();
    const accepted = events.find((e) => e.outcome === "success");
    expect(accepted).toMatchObject({
      subject: `service:${SERVICE}`,
      details: expect.objectContaining({
        issuer: issuer.url,
        trust: "main-deploys",
        claims: expect.objectContaining({ repository: "acme/app", ref: "refs/heads/main" }),
      }),
    });
    // Neither the job's token nor the minted one is in the audit log.
    const all = JSON.stringify((await h.admin("GET", "/v1/audit/events?limit=500")).body);
    expect(all).not.toContain(token.split(".")[2]);
    // The secret is base64url and may itself hold "_": take everything after `stint_<id>_`.
    expect(all).not.toContain(stintToken.slice("stint_".length + 33));

    // The job ends its access when done: the minted login is dropped at the server.
    expect((await asToken(stintToken, "POST", "/v1/me/roles/releases-reader/deactivate")).status).toBe(200);
    await h.drainOutbox();
    const left = await pgRoot.query("select 1 from pg_roles where rolname = $1", [login.user]);
    expect(left.rowCount).toBe(0);
  });

  it("accepts JSON as well as the RFC 8693 form", async () => {
    const res = await exchange(await jobToken(keyA), { form: false });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });

  it("refuses a token from another repository, another ref, another audience, each creating nothing", async () => {
    const before = await apiTokensOfService();
    const otherRepo = await exchange(await jobToken(keyA, { claims: { repository: "mallory/fork" } }));
    expect(otherRepo.status).toBe(403);
    expect(otherRepo.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    const otherRef = await exchange(await jobToken(keyA, { claims: { ref: "refs/heads/feature-x" } }));
    expect(otherRef.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    const otherAud = await exchange(await jobToken(keyA, { aud: "someone-else" }));
    expect(otherAud.status).toBe(401);
    expect(otherAud.body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
    expect(await apiTokensOfService()).toBe(before);
    const denied = (await exchangeEvents()).filter((e) => e.outcome === "denied");
    expect(denied.map((e) => e.reason)).toEqual(
      expect.arrayContaining(["no trust matches the claims", "claim aud does not check out"]),
    );
    expect(denied.find((e) => e.reason === "no trust matches the claims")?.details).toMatchObject({
      claims: expect.objectContaining({ repository: "mallory/fork" }),
    });
  });

  it("accepts a jti once: the replay is refused and audited", async () => {
    const token = await jobToken(keyA, { jti: `run-${hex}-1` });
    expect((await exchange(token)).status).toBe(200);
    const before = await apiTokensOfService();
    const replay = await exchange(token);
    expect(replay.status).toBe(401);
    expect(replay.body.error?.code).toBe("WORKLOAD_TOKEN_REPLAYED");
    // The same jti signed again (a new token) is still a replay: the jti is what is spent.
    const again = await exchange(await jobToken(keyA, { jti: `run-${hex}-1` }));
    expect(again.body.error?.code).toBe("WORKLOAD_TOKEN_REPLAYED");
    expect(await apiTokensOfService()).toBe(before);
    expect((await exchangeEvents()).some((e) => e.reason === "jti already exchanged")).toBe(true);
  });

  it("refuses an expired token, a long-lived one and a forged signature", async () => {
    const now = Math.floor(h.clock.now().getTime() / 1000);
    const expired = await exchange(await jobToken(keyA, { iat: now - 900, exp: now - 300 }));
    expect(expired.status).toBe(401);
    expect(expired.body.error?.code).toBe("WORKLOAD_TOKEN_EXPIRED");
    const longLived = await exchange(await jobToken(keyA, { iat: now - 10, exp: now + 7200 }));
    expect(longLived.body.error?.code).toBe("WORKLOAD_TOKEN_EXPIRED");
    // Signed with a key of the attacker's under the published key's kid.
    const forger = await signingKey("key-a");
    const forged = await exchange(await jobToken(forger));
    expect(forged.status).toBe(401);
    expect(forged.body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
    // An unsigned token ("alg": "none") is no token.
    const [, payload] = (await jobToken(keyA)).split(".");
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${payload}.`;
    expect((await exchange(none)).body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
    expect((await exchange("not-a-jwt")).body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
  });

  it("refuses an issuer no trust names without ever contacting it", async () => {
    const hitsBefore = stranger.hits.length;
    const res = await exchange(await jobToken(keyA, { iss: stranger.url }));
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    expect(stranger.hits.length).toBe(hitsBefore);
  });

  it("picks up a rotated-in key without a restart and refuses the rotated-out one", async () => {
    expect((await exchange(await jobToken(keyA))).status).toBe(200);
    issuer.publish([keyB]);
    const rotatedIn = await exchange(await jobToken(keyB));
    expect(rotatedIn.status, JSON.stringify(rotatedIn.body)).toBe(200);
    const rotatedOut = await exchange(await jobToken(keyA));
    expect(rotatedOut.status).toBe(401);
    expect(rotatedOut.body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
    issuer.publish([keyA, keyB]);
  });

  it("with two service identities trusting the job, it must name one; a disabled identity gets nothing and its tokens stop", async () => {
    const second = `ci${hex}b`;
    expect((await h.admin("POST", "/v1/users", { name: second, kind: "service" })).status).toBe(201);
    const trust = await h.admin("POST", `/v1/services/${second}/trusts`, {
      name: "any-branch",
      issuer: issuer.url,
      audiences: ["stint"],
      conditions: { repository: "acme/*" },
    });
    expect(trust.status, JSON.stringify(trust.body)).toBe(201);
    const ambiguous = await exchange(await jobToken(keyA));
    expect(ambiguous.status).toBe(409);
    expect(ambiguous.body.error?.code).toBe("WORKLOAD_AMBIGUOUS");
    const named = await exchange(await jobToken(keyA), { service: second });
    expect(named.status, JSON.stringify(named.body)).toBe(200);
    const secondToken = named.body.access_token as string;
    expect((await asToken(secondToken, "GET", "/v1/me")).status).toBe(200);

    expect((await h.admin("POST", `/v1/users/${second}/disable`, { reason: "pipeline retired" })).status).toBe(200);
    expect((await asToken(secondToken, "GET", "/v1/me")).status).toBe(401);
    const afterDisable = await exchange(await jobToken(keyA, { claims: { ref: "refs/heads/other" } }));
    expect(afterDisable.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    expect((await h.admin("DELETE", `/v1/services/${second}/trusts/any-branch`)).status).toBe(200);
  });
});

describe("workload identity: issuer fetches go through the address policy", () => {
  const ATTACKED = `ci${hex}x`;
  /** Connections made to an address STINT_DENY_NETWORKS lists (there must be none). */
  let deniedConnections = 0;
  let denied: NetServer;
  let deniedUrl = "";
  let trustCount = 0;

  beforeAll(async () => {
    denied = createNetServer((socket) => {
      deniedConnections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => denied.listen(0, "127.0.0.2", resolve));
    deniedUrl = `127.0.0.2:${(denied.address() as AddressInfo).port}`;
    expect((await h.admin("POST", "/v1/users", { name: ATTACKED, kind: "service" })).status).toBe(201);
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => denied?.close(() => resolve()));
  });

  /** A trust of the attacked service identity on `url`, so that its tokens are looked at. */
  async function trustIssuer(url: string) {
    const res = await h.admin("POST", `/v1/services/${ATTACKED}/trusts`, {
      name: `t${++trustCount}`,
      issuer: url,
      audiences: ["stint"],
      conditions: { repository: "acme/app" },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  }

  async function deniedEvent(issuerUrl: string) {
    return (await exchangeEvents()).find((e) => e.outcome === "denied" && e.details.issuer === issuerUrl);
  }

  it("refuses a jwks_uri at the metadata service or in STINT_DENY_NETWORKS, connecting nowhere and keeping nothing", async () => {
    let jwksUri = "https://169.254.169.254/latest/meta-data/jwks";
    const evil = await startIssuer({ jwksUri: () => jwksUri });
    evil.publish([keyA]);
    try {
      await trustIssuer(evil.url);
      const before = await apiTokensOfService(ATTACKED);
      const metadata = await exchange(await jobToken(keyA, { iss: evil.url }));
      expect(metadata.status, JSON.stringify(metadata.body)).toBe(502);
      expect(metadata.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");
      expect(metadata.body.error?.message).toContain("169.254.169.254");
      expect((await deniedEvent(evil.url))?.details).toMatchObject({ code: "WORKLOAD_ISSUER_REFUSED" });

      // An issuer itself at a denied address is not contacted either.
      const deniedIssuer = `https://${deniedUrl}`;
      await trustIssuer(deniedIssuer);
      const walled = await exchange(await jobToken(keyA, { iss: deniedIssuer }));
      expect(walled.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");

      jwksUri = `https://${deniedUrl}/jwks`;
      const deny = await exchange(await jobToken(keyA, { iss: evil.url }));
      expect(deny.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");
      expect(deny.body.error?.message).toContain("STINT_DENY_NETWORKS");
      expect(deniedConnections).toBe(0);
      expect(evil.hits.filter((u) => u.includes("jwks"))).toEqual([]);
      expect(await apiTokensOfService(ATTACKED)).toBe(before);

      // Nothing of the refused document was kept: once it names its own key set, the next exchange
      // reads the discovery document again and works.
      jwksUri = `${evil.url}/jwks`;
      const discoveries = evil.hits.length;
      const fixed = await exchange(await jobToken(keyA, { iss: evil.url }));
      expect(fixed.status, JSON.stringify(fixed.body)).toBe(200);
      expect(evil.hits.length).toBeGreaterThan(discoveries);
    } finally {
      await evil.close();
    }
  });

  it("follows no redirect: one to an address STINT_DENY_NETWORKS lists is refused without connecting there", async () => {
    const redirecting = await startRawServer((req, res) => {
      res.writeHead(302, { location: `http://${deniedUrl}${req.url ?? "/"}` });
      res.end();
    });
    try {
      await trustIssuer(redirecting.url);
      const res = await exchange(await jobToken(keyA, { iss: redirecting.url }));
      expect(res.status, JSON.stringify(res.body)).toBe(502);
      expect(res.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");
      expect(res.body.error?.message).toContain("redirect");
      expect(redirecting.requests).toBe(1);
      expect(deniedConnections).toBe(0);
      expect((await deniedEvent(redirecting.url))?.details).toMatchObject({ code: "WORKLOAD_ISSUER_REFUSED" });
    } finally {
      await redirecting.close();
    }
  });

  it("a silent issuer, an endless answer and a huge one fail alone: other issuers' jobs exchange meanwhile", async () => {
    // Accepts the connection and never answers.
    const silent = await startRawServer(() => undefined);
    // Answers the headers and the start of a document, then nothing more.
    const endless = await startRawServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"issuer": "');
    });
    // Streams a 16 MiB document (no content-length).
    const huge = await startRawServer((_req, res) => {
      res.on("error", () => undefined);
      res.writeHead(200, { "content-type": "application/json" });
      const chunk = `"${"x".repeat(64 * 1024 - 2)}",`;
      res.write("[");
      let sent = 0;
      const pump = () => {
        while (sent < 256 && res.write(chunk)) sent++;
        if (sent < 256) res.once("drain", pump);
        else res.end('""]');
      };
      pump();
    });
    try {
      for (const s of [silent, endless, huge]) await trustIssuer(s.url);
      const tokens = await Promise.all([silent, endless, huge].map((s) => jobToken(keyA, { iss: s.url })));
      const settled = new Set<string>();
      const pending = [silent, endless, huge].map((s, i) => exchange(tokens[i]!).finally(() => settled.add(s.url)));
      // A job of a working issuer is exchanged while the silent and endless ones are still waiting.
      const meanwhile = await exchange(await jobToken(keyA));
      expect(meanwhile.status, JSON.stringify(meanwhile.body)).toBe(200);
      expect(settled.has(silent.url)).toBe(false);
      expect(settled.has(endless.url)).toBe(false);
      // Each ends at the deadline (or the size cap) with the issuer's code, none hangs.
      for (const res of await Promise.all(pending)) {
        expect(res.status, JSON.stringify(res.body)).toBe(502);
        expect(res.body.error?.code).toBe("WORKLOAD_ISSUER_UNAVAILABLE");
      }
      for (const s of [silent, endless, huge])
        expect((await deniedEvent(s.url))?.details).toMatchObject({ code: "WORKLOAD_ISSUER_UNAVAILABLE" });
      const messages = (await Promise.all(pending)).map((r) => r.body.error?.message ?? "");
      expect(messages[0]).toContain("no answer within");
      expect(messages[1]).toContain("no answer within");
      expect(messages[2]).toContain("larger than");
    } finally {
      for (const s of [silent, endless, huge]) await s.close();
    }
  });
});

describe("workload identity: trusts", () => {
  it("refuses a trust that would admit every job of the issuer, a remote plain-http issuer, a bad lifetime", async () => {
    const base = { name: "t", issuer: issuer.url, audiences: ["stint"], conditions: { repository: "acme/app" } };
    for (const [body, path] of [
      [{ ...base, conditions: {} }, "body.conditions"],
      [{ ...base, conditions: { repository: "*" } }, "body.conditions.repository"],
      [{ ...base, issuer: "http://ci.example.com" }, "body.issuer"],
      [{ ...base, tokenTtl: "2h" }, "body.tokenTtl"],
    ] as const) {
      const res = await h.admin("POST", `/v1/services/${SERVICE}/trusts`, body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error?.code).toBe("VALIDATION_FAILED");
      expect(JSON.stringify(res.body)).toContain(path);
    }
    const list = await h.admin("GET", `/v1/services/${SERVICE}/trusts`);
    expect((list.body.items as { name: string }[]).map((t) => t.name)).toEqual(["main-deploys"]);
  });

  it("trusts belong to service identities only, and changes are audited", async () => {
    await h.createUser(`person${hex}`);
    const onUser = await h.admin("POST", `/v1/services/person${hex}/trusts`, {
      name: "x",
      issuer: issuer.url,
      audiences: ["stint"],
      conditions: { repository: "acme/app" },
    });
    expect(onUser.status).toBe(404);
    const events = await h.admin("GET", "/v1/audit/events?action=workload.trust.create&limit=50");
    expect((events.body.items as { subject: string }[]).map((e) => e.subject)).toContain(`service:${SERVICE}`);
  });
});

describe("workload identity: stint login --token-exchange-from-env", () => {
  const SERVER = "http://127.0.0.1:8420";
  /** The CLI's fetch, answered by the in-process server. */
  const bridge = injectFetch(() => h.server.app);

  const cli = (dir: string, argv: string[], env: Record<string, string> = {}, input?: string) =>
    runCliCaptured(argv, {
      env: { STINT_CONFIG_DIR: dir, HOME: dir, STINT_SERVER: SERVER, ...env },
      input,
      fetch: bridge,
      isTTY: false,
    });

  it("signs a pipeline in from the job token in an environment variable, never printing or saving that token", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-cli-wl-"));
    try {
      const jobJwt = await jobToken(keyA);
      const login = await cli(dir, ["login", "--token-exchange-from-env", "CI_JOB_JWT", "--json"], {
        CI_JOB_JWT: jobJwt,
      });
      expect(login.code, login.stderr).toBe(0);
      expect(JSON.parse(login.stdout)).toMatchObject({
        principal: { name: SERVICE, kind: "service" },
        exchanged: true,
      });
      const saved = await readFile(path.join(dir, "credentials.json"), "utf8");
      expect(JSON.parse(saved)).toMatchObject({ exchanged: true, principal: { name: SERVICE } });
      for (const text of [login.stdout, login.stderr, saved]) expect(text).not.toContain(jobJwt.split(".")[2]);

      const whoami = await cli(dir, ["whoami", "--json"]);
      expect(whoami.code, whoami.stderr).toBe(0);
      expect(JSON.parse(whoami.stdout)).toMatchObject({ name: SERVICE });

      // The job token is spent: a second login with it is refused with the server's code.
      const again = await cli(dir, ["login", "--token-exchange-from-env", "CI_JOB_JWT"], { CI_JOB_JWT: jobJwt });
      expect(again.code).not.toBe(0);
      expect(again.stderr).toContain("WORKLOAD_TOKEN_REPLAYED");

      const logout = await cli(dir, ["logout"]);
      expect(logout.code, logout.stderr).toBe(0);
      expect((await cli(dir, ["whoami"])).code).not.toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses an unset variable or a password flag beside it, before calling the server", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-cli-wl-"));
    try {
      const unset = await cli(dir, ["login", "--token-exchange-from-env", "NOT_SET_ANYWHERE"]);
      expect(unset.code).toBe(2);
      expect(unset.stderr).toContain("NOT_SET_ANYWHERE");
      const mixed = await cli(dir, ["login", "--token-exchange-from-env", "CI_JOB_JWT", "--user", "alice"], {
        CI_JOB_JWT: "x.y.z",
      });
      expect(mixed.code).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("an administrator adds, lists and removes a trust with stint trusts", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-cli-wl-"));
    try {
      const admin = h.server.config.bootstrapAdminName;
      const login = await cli(dir, ["login", "--user", admin, "--password-stdin"], {}, `${ADMIN_PASSWORD}\n`);
      expect(login.code, login.stderr).toBe(0);
      const add = await cli(dir, [
        "trusts",
        "add",
        SERVICE,
        "--name",
        "release-tags",
        "--issuer",
        issuer.url,
        "--audience",
        "stint",
        "--claim",
        "repository=acme/app",
        "--claim",
        "ref=refs/tags/v*",
        "--token-ttl",
        "5m",
      ]);
      expect(add.code, add.stderr).toBe(0);
      const list = await cli(dir, ["trusts", "list", SERVICE, "--json"]);
      expect(JSON.parse(list.stdout).items).toContainEqual(
        expect.objectContaining({
          name: "release-tags",
          conditions: { repository: "acme/app", ref: "refs/tags/v*" },
          tokenTtlMs: 300_000,
        }),
      );
      const tagJob = await exchange(await jobToken(keyA, { claims: { ref: "refs/tags/v1.2.3" } }));
      expect(tagJob.status, JSON.stringify(tagJob.body)).toBe(200);
      expect(tagJob.body.expires_in).toBe(300);
      const bad = await cli(dir, [
        "trusts",
        "add",
        SERVICE,
        "--name",
        "x",
        "--issuer",
        issuer.url,
        "--audience",
        "a",
        "--claim",
        "novalue",
      ]);
      expect(bad.code).toBe(2);
      const remove = await cli(dir, ["trusts", "remove", SERVICE, "release-tags"]);
      expect(remove.code, remove.stderr).toBe(0);
      const after = await exchange(await jobToken(keyA, { claims: { ref: "refs/tags/v1.2.4" } }));
      expect(after.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
