/**
 * Single sign-on providers are fetched under Stint's address policy: with 127.0.0.0/8 denied, a provider on
 * loopback is never contacted (SSO_PROVIDER_UNAVAILABLE, no request reaches it); a discovery document pointing
 * the token endpoint at the cloud metadata address gets a refusal at the callback, audited once, and no session.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer } from "../../src/testing/server.js";

let work: string;
let provider: Server;
let issuer = "";
const hits: string[] = [];

beforeAll(async () => {
  provider = createServer((req, res) => {
    hits.push(req.url ?? "");
    res.setHeader("content-type", "application/json");
    if (req.url === "/.well-known/openid-configuration")
      res.end(
        JSON.stringify({
          issuer,
          authorization_endpoint: `${issuer}/authorize`,
          token_endpoint: "https://169.254.169.254/latest/meta-data/token",
          jwks_uri: `${issuer}/jwks`,
          response_types_supported: ["code"],
          id_token_signing_alg_values_supported: ["RS256"],
        }),
      );
    else res.end(JSON.stringify({ keys: [] }));
  });
  await new Promise<void>((resolve) => provider.listen(0, "127.0.0.1", resolve));
  issuer = `http://127.0.0.1:${(provider.address() as AddressInfo).port}`;
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-policy-"));
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp
    issuer: ${issuer}
    clientId: stint
`,
  );
}, 60_000);

afterAll(async () => {
  await new Promise<void>((resolve) => provider?.close(() => resolve()));
  await rm(work, { recursive: true, force: true });
});

const challenge = () => createHash("sha256").update(randomBytes(32)).digest("base64url");

describe("single sign-on under the address policy", () => {
  it("a provider on a denied network is never contacted", async () => {
    const server = await testServer("pglite", {
      env: {
        STINT_CONFIG_FILE: path.join(work, "stint.yaml"),
        STINT_PUBLIC_URL: "http://stint.test",
        STINT_DENY_NETWORKS: "127.0.0.0/8",
      },
    });
    try {
      hits.length = 0;
      const res = await server.app.inject({
        method: "GET",
        url: `/v1/auth/sso/corp/login?code_challenge=${challenge()}`,
      });
      expect(res.statusCode).toBe(502);
      expect(res.json<{ error: { code: string; message: string } }>().error).toMatchObject({
        code: "SSO_PROVIDER_UNAVAILABLE",
      });
      expect(hits).toEqual([]);
    } finally {
      await server.cleanup();
    }
  });

  it("a token endpoint at the metadata address is refused at the callback, audited once, no session", async () => {
    const server = await testServer("pglite", {
      env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: "http://stint.test" },
    });
    try {
      const start = await server.app.inject({
        method: "GET",
        url: `/v1/auth/sso/corp/login?code_challenge=${challenge()}`,
      });
      expect(start.statusCode, start.body).toBe(302);
      const state = new URL(start.headers.location as string).searchParams.get("state")!;
      const back = await server.app.inject({
        method: "GET",
        url: `/v1/auth/sso/corp/callback?code=c&state=${encodeURIComponent(state)}`,
      });
      expect(new URL(back.headers.location as string).hash).toBe("#sso_error=SSO_PROVIDER_UNAVAILABLE");
      const audit = await server.app.inject({
        method: "GET",
        url: "/v1/audit/events?action=auth.login&limit=50",
        headers: { authorization: server.adminAuth },
      });
      const denied = audit
        .json<{ items: { outcome: string; reason: string; details: Record<string, unknown> }[] }>()
        .items.filter((e) => e.outcome === "denied" && e.details.method === "oidc");
      expect(denied).toHaveLength(1);
      expect(denied[0]!.details.code).toBe("SSO_PROVIDER_UNAVAILABLE");
      expect(denied[0]!.reason).toMatch(/address policy/);
      const sessions = await server.store.db.selectFrom("sso_handoffs").select("code_hash").execute();
      expect(sessions).toEqual([]);
    } finally {
      await server.cleanup();
    }
  });
});
