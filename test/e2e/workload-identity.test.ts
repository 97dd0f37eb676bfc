/**
 * Workload identity by OIDC token exchange (issue 15, acceptance 5): a local issuer on loopback
 * (test/e2e/workload-issuer.ts) mints CI job tokens; the matching job trades its token for a Stint token,
 * activates an auto-approved role and reads a dynamic PostgreSQL login that works at the machine's PostgreSQL.
 * Tokens of another repository or ref, a replayed jti, an expired token, a token for another audience, a forged
 * signature, an unknown issuer and a key the issuer rotated out are refused, each with its code, audited,
 * creating nothing; a key the issuer rotated in works without a restart. Trusts: what is refused, whose they are.
 * Issuer fetches under the address policy: workload-identity.issuers.test.ts; the CLI: workload-identity.cli.test.ts.
 */
import pg from "pg";
import { describe, expect, it } from "vitest";
import {
  apiTokensOfService,
  asToken,
  exchange,
  exchangeEvents,
  hex,
  jobToken,
  SERVICE,
  signingKey,
  workloadServer,
} from "./workload-issuer.js";

const wl = workloadServer();

describe("workload identity: token exchange", () => {
  it("the matching job gets a short-lived token, activates an auto-approved role and uses a dynamic PostgreSQL login", async () => {
    const token = await jobToken(wl.keyA);
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
    await wl.h.drainOutbox();
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
        issuer: wl.issuer.url,
        trust: "main-deploys",
        claims: expect.objectContaining({ repository: "acme/app", ref: "refs/heads/main" }),
      }),
    });
    // Neither the job's token nor the minted one is in the audit log.
    const all = JSON.stringify((await wl.h.admin("GET", "/v1/audit/events?limit=500")).body);
    expect(all).not.toContain(token.split(".")[2]);
    // The secret is base64url and may itself hold "_": take everything after `stint_<id>_`.
    expect(all).not.toContain(stintToken.slice("stint_".length + 33));

    // The job ends its access when done: the minted login is dropped at the server.
    expect((await asToken(stintToken, "POST", "/v1/me/roles/releases-reader/deactivate")).status).toBe(200);
    await wl.h.drainOutbox();
    const left = await wl.pgRoot.query("select 1 from pg_roles where rolname = $1", [login.user]);
    expect(left.rowCount).toBe(0);
  });

  it("accepts JSON as well as the RFC 8693 form", async () => {
    const res = await exchange(await jobToken(wl.keyA), { form: false });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });

  it("refuses a token from another repository, another ref, another audience, each creating nothing", async () => {
    const before = await apiTokensOfService();
    const otherRepo = await exchange(await jobToken(wl.keyA, { claims: { repository: "mallory/fork" } }));
    expect(otherRepo.status).toBe(403);
    expect(otherRepo.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    const otherRef = await exchange(await jobToken(wl.keyA, { claims: { ref: "refs/heads/feature-x" } }));
    expect(otherRef.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    const otherAud = await exchange(await jobToken(wl.keyA, { aud: "someone-else" }));
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
    const token = await jobToken(wl.keyA, { jti: `run-${hex}-1` });
    expect((await exchange(token)).status).toBe(200);
    const before = await apiTokensOfService();
    const replay = await exchange(token);
    expect(replay.status).toBe(401);
    expect(replay.body.error?.code).toBe("WORKLOAD_TOKEN_REPLAYED");
    // The same jti signed again (a new token) is still a replay: the jti is what is spent.
    const again = await exchange(await jobToken(wl.keyA, { jti: `run-${hex}-1` }));
    expect(again.body.error?.code).toBe("WORKLOAD_TOKEN_REPLAYED");
    expect(await apiTokensOfService()).toBe(before);
    expect((await exchangeEvents()).some((e) => e.reason === "jti already exchanged")).toBe(true);
  });

  it("refuses an expired token, a long-lived one and a forged signature", async () => {
    const now = Math.floor(wl.h.clock.now().getTime() / 1000);
    const expired = await exchange(await jobToken(wl.keyA, { iat: now - 900, exp: now - 300 }));
    expect(expired.status).toBe(401);
    expect(expired.body.error?.code).toBe("WORKLOAD_TOKEN_EXPIRED");
    const longLived = await exchange(await jobToken(wl.keyA, { iat: now - 10, exp: now + 7200 }));
    expect(longLived.body.error?.code).toBe("WORKLOAD_TOKEN_EXPIRED");
    // Signed with a key of the attacker's under the published key's kid.
    const forger = await signingKey("key-a");
    const forged = await exchange(await jobToken(forger));
    expect(forged.status).toBe(401);
    expect(forged.body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
    // An unsigned token ("alg": "none") is no token.
    const [, payload] = (await jobToken(wl.keyA)).split(".");
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${payload}.`;
    expect((await exchange(none)).body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
    expect((await exchange("not-a-jwt")).body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
  });

  it("refuses an issuer no trust names without ever contacting it", async () => {
    const hitsBefore = wl.stranger.hits.length;
    const res = await exchange(await jobToken(wl.keyA, { iss: wl.stranger.url }));
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    expect(wl.stranger.hits.length).toBe(hitsBefore);
  });

  it("picks up a rotated-in key without a restart and refuses the rotated-out one", async () => {
    expect((await exchange(await jobToken(wl.keyA))).status).toBe(200);
    wl.issuer.publish([wl.keyB]);
    const rotatedIn = await exchange(await jobToken(wl.keyB));
    expect(rotatedIn.status, JSON.stringify(rotatedIn.body)).toBe(200);
    const rotatedOut = await exchange(await jobToken(wl.keyA));
    expect(rotatedOut.status).toBe(401);
    expect(rotatedOut.body.error?.code).toBe("WORKLOAD_TOKEN_INVALID");
    wl.issuer.publish([wl.keyA, wl.keyB]);
  });

  it("with two service identities trusting the job, it must name one; a disabled identity gets nothing and its tokens stop", async () => {
    const second = `ci${hex}b`;
    expect((await wl.h.admin("POST", "/v1/users", { name: second, kind: "service" })).status).toBe(201);
    const trust = await wl.h.admin("POST", `/v1/services/${second}/trusts`, {
      name: "any-branch",
      issuer: wl.issuer.url,
      audiences: ["stint"],
      conditions: { repository: "acme/*" },
    });
    expect(trust.status, JSON.stringify(trust.body)).toBe(201);
    const ambiguous = await exchange(await jobToken(wl.keyA));
    expect(ambiguous.status).toBe(409);
    expect(ambiguous.body.error?.code).toBe("WORKLOAD_AMBIGUOUS");
    const named = await exchange(await jobToken(wl.keyA), { service: second });
    expect(named.status, JSON.stringify(named.body)).toBe(200);
    const secondToken = named.body.access_token as string;
    expect((await asToken(secondToken, "GET", "/v1/me")).status).toBe(200);

    expect((await wl.h.admin("POST", `/v1/users/${second}/disable`, { reason: "pipeline retired" })).status).toBe(200);
    expect((await asToken(secondToken, "GET", "/v1/me")).status).toBe(401);
    const afterDisable = await exchange(await jobToken(wl.keyA, { claims: { ref: "refs/heads/other" } }));
    expect(afterDisable.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    expect((await wl.h.admin("DELETE", `/v1/services/${second}/trusts/any-branch`)).status).toBe(200);
  });
});

describe("workload identity: trusts", () => {
  it("refuses a trust that would admit every job of the issuer, a remote plain-http issuer, a bad lifetime", async () => {
    const base = { name: "t", issuer: wl.issuer.url, audiences: ["stint"], conditions: { repository: "acme/app" } };
    for (const [body, path] of [
      [{ ...base, conditions: {} }, "body.conditions"],
      [{ ...base, conditions: { repository: "*" } }, "body.conditions.repository"],
      [{ ...base, issuer: "http://ci.example.com" }, "body.issuer"],
      [{ ...base, tokenTtl: "2h" }, "body.tokenTtl"],
    ] as const) {
      const res = await wl.h.admin("POST", `/v1/services/${SERVICE}/trusts`, body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error?.code).toBe("VALIDATION_FAILED");
      expect(JSON.stringify(res.body)).toContain(path);
    }
    const list = await wl.h.admin("GET", `/v1/services/${SERVICE}/trusts`);
    expect((list.body.items as { name: string }[]).map((t) => t.name)).toEqual(["main-deploys"]);
  });

  it("trusts belong to service identities only, and changes are audited", async () => {
    await wl.h.createUser(`person${hex}`);
    const onUser = await wl.h.admin("POST", `/v1/services/person${hex}/trusts`, {
      name: "x",
      issuer: wl.issuer.url,
      audiences: ["stint"],
      conditions: { repository: "acme/app" },
    });
    expect(onUser.status).toBe(404);
    const events = await wl.h.admin("GET", "/v1/audit/events?action=workload.trust.create&limit=50");
    expect((events.body.items as { subject: string }[]).map((e) => e.subject)).toContain(`service:${SERVICE}`);
  });
});
