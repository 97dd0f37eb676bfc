/**
 * Bad input at the single sign-on routes: a PKCE challenge of the wrong shape, a redirect away from loopback (an
 * open redirect that would hand the one-time code to someone else), unknown fields, SQL and control characters,
 * oversized values, unknown providers, forged states and codes. Each gets its 4xx and stable code in the error
 * envelope (never a 500), leaves no sign-in attempt or handoff behind and creates no principal. The provider's
 * issuer is a closed loopback port: nothing here may need it.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ErrorCode } from "../../src/lib/errors.js";
import { freePort } from "../e2e/support.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const CHALLENGE = "a".repeat(43);
const SQL = "'; drop table principals; --";

let server: TestServer;
let work: string;

interface Case {
  name: string;
  method: "GET" | "POST";
  url: string;
  body?: unknown;
  status: number;
  code: ErrorCode;
}

const CASES: Case[] = [
  { name: "no PKCE challenge", method: "GET", url: "/v1/auth/sso/corp/login", status: 400, code: "VALIDATION_FAILED" },
  {
    name: "a plain challenge (not S256)",
    method: "GET",
    url: "/v1/auth/sso/corp/login?code_challenge=short",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "a redirect to another host (open redirect)",
    method: "GET",
    url: `/v1/auth/sso/corp/login?code_challenge=${CHALLENGE}&redirect_uri=${encodeURIComponent("https://attacker.example/cb")}`,
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "a loopback redirect without a port",
    method: "GET",
    url: `/v1/auth/sso/corp/login?code_challenge=${CHALLENGE}&redirect_uri=${encodeURIComponent("http://127.0.0.1/cb")}`,
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "a loopback redirect with credentials",
    method: "GET",
    url: `/v1/auth/sso/corp/login?code_challenge=${CHALLENGE}&redirect_uri=${encodeURIComponent("http://a:b@127.0.0.1:9/cb")}`,
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "an unknown query parameter",
    method: "GET",
    url: `/v1/auth/sso/corp/login?code_challenge=${CHALLENGE}&prompt=none`,
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "an unknown provider",
    method: "GET",
    url: `/v1/auth/sso/other/login?code_challenge=${CHALLENGE}`,
    status: 404,
    code: "SSO_PROVIDER_UNKNOWN",
  },
  {
    name: "a provider id with SQL",
    method: "GET",
    url: `/v1/auth/sso/${encodeURIComponent(SQL)}/login?code_challenge=${CHALLENGE}`,
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "redeem: unknown field",
    method: "POST",
    url: "/v1/auth/sso/redeem",
    body: { code: "x", codeVerifier: "v".repeat(43), principal: "admin" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "redeem: verifier too short",
    method: "POST",
    url: "/v1/auth/sso/redeem",
    body: { code: "x", codeVerifier: "short" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "redeem: oversized code",
    method: "POST",
    url: "/v1/auth/sso/redeem",
    body: { code: "x".repeat(10_000), codeVerifier: "v".repeat(43) },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "redeem: a code Stint never issued",
    method: "POST",
    url: "/v1/auth/sso/redeem",
    body: { code: SQL, codeVerifier: "v".repeat(43) },
    status: 401,
    code: "SSO_CODE_INVALID",
  },
  {
    name: "redeem: wrong type",
    method: "POST",
    url: "/v1/auth/sso/redeem",
    body: { code: 42, codeVerifier: ["v"] },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "device token: a handle Stint never issued",
    method: "POST",
    url: "/v1/auth/sso/device/token",
    body: { deviceCode: "not-a-handle" },
    status: 401,
    code: "SSO_CODE_INVALID",
  },
  {
    name: "device token: no handle",
    method: "POST",
    url: "/v1/auth/sso/device/token",
    body: {},
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "device start: unknown provider",
    method: "POST",
    url: "/v1/auth/sso/other/device",
    body: {},
    status: 404,
    code: "SSO_PROVIDER_UNKNOWN",
  },
];

async function counts() {
  const n = async (table: "sso_attempts" | "sso_handoffs" | "principals" | "oidc_identities") =>
    Number(
      (
        await server.store.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<string>().as("n"))
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    attempts: await n("sso_attempts"),
    handoffs: await n("sso_handoffs"),
    principals: await n("principals"),
    links: await n("oidc_identities"),
  };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-bad-"));
  // A closed loopback port: any request that reached the provider would fail as unavailable, not pass.
  const closed = await freePort();
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp
    issuer: http://127.0.0.1:${closed}
    clientId: stint
`,
  );
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: "http://stint.test" },
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await rm(work, { recursive: true, force: true });
});

describe("bad input at the single sign-on routes", () => {
  for (const c of CASES) {
    it(`${c.name}: ${c.status} ${c.code}, nothing left behind`, async () => {
      const before = await counts();
      const res = await server.app.inject({ method: c.method, url: c.url, ...(c.body ? { payload: c.body } : {}) });
      expect(res.statusCode, res.body).toBe(c.status);
      expect(res.json<{ error: { code: string; message: string } }>().error.code).toBe(c.code);
      expect(res.body).not.toMatch(/at .+\.(ts|js):\d+/);
      expect(await counts()).toEqual(before);
    });
  }

  it("a callback with a forged state sends the browser back with SSO_STATE_INVALID, to Stint's own page only", async () => {
    const res = await server.app.inject({
      method: "GET",
      url: `/v1/auth/sso/corp/callback?state=${encodeURIComponent(SQL)}&code=x&redirect_uri=https://attacker.example`,
    });
    expect(res.statusCode).toBe(302);
    const location = new URL(res.headers.location as string);
    expect(location.origin).toBe("http://stint.test");
    expect(location.hash).toBe("#sso_error=SSO_STATE_INVALID");
  });

  it("a provider that cannot be reached is SSO_PROVIDER_UNAVAILABLE (502), and nothing is kept", async () => {
    const before = await counts();
    const res = await server.app.inject({ method: "GET", url: `/v1/auth/sso/corp/login?code_challenge=${CHALLENGE}` });
    expect(res.statusCode).toBe(502);
    expect(res.json<{ error: { code: string } }>().error.code).toBe("SSO_PROVIDER_UNAVAILABLE");
    expect(await counts()).toEqual(before);
  });
});
