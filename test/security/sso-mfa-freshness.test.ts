/**
 * The provider's MFA and its age (security review).
 *
 * A provider whose `amr` holds a value of `mfaAmr` counts as MFA in Stint "at its `auth_time`". An ID token
 * without `auth_time` says the person's session at the provider once passed MFA, not when: OpenID providers send
 * it only when asked (`max_age`, `require_auth_time`; panva's oidc-provider, Google and Entra ID by default do
 * not). Stint took such a token's MFA as done *now*, so a silent single sign-on through a provider session hours
 * old (a browser left signed in, a stolen provider cookie) met a role's `mfa: { maxAge: 10m }` with no second
 * factor for hours. A future `auth_time` was taken as now too. Now the provider's MFA counts only at an
 * `auth_time` that is not ahead of Stint's clock (beyond the skew a node may have); without one the session
 * steps up with Stint's own factor, as any session without MFA does.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedRole } from "../../src/testing/pim.js";
import { scriptedIdp, signInScripted, type ScriptedIdp } from "../../src/testing/scripted-idp.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
let work: string;
let http: Server;
let idp: ScriptedIdp;
let origin = "";

/** Alice signs in through the provider (MFA in her provider session) and asks for the MFA-guarded role. */
async function activateAfterSignIn(claims: Record<string, unknown>): Promise<{ status: number; code?: string }> {
  const signedIn = await signInScripted(server.app, idp, "corp", {
    sub: "alice-sub",
    preferred_username: "alice",
    amr: ["pwd", "mfa"],
    ...claims,
  });
  expect(signedIn).toMatchObject({ session: true });
  const { accessToken } = signedIn as { accessToken: string };
  const res = await server.app.inject({
    method: "POST",
    url: "/v1/activation-requests",
    headers: { authorization: `Bearer ${accessToken}` },
    payload: { role: "prod-admin", duration: "5m", reason: "INC-4242 checking the payroll database" },
  });
  const body = res.json<{ error?: { code: string } }>();
  // Activated: ended at once, so the next case starts from nothing active.
  if (res.statusCode < 300) {
    const ended = await server.app.inject({
      method: "POST",
      url: "/v1/me/roles/prod-admin/deactivate",
      headers: { authorization: `Bearer ${accessToken}` },
    });
    expect(ended.statusCode, ended.body).toBe(200);
  }
  return { status: res.statusCode, ...(body.error ? { code: body.error.code } : {}) };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-mfa-"));
  idp = await scriptedIdp({
    origin: () => origin,
    issuerNamed: (segment) => `${origin}/${segment}/v2.0`,
    tokenIssuer: () => `${origin}/corp/v2.0`,
  });
  http = createServer(idp.handle);
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp
    issuer: ${origin}/corp/v2.0
    clientId: ${idp.clientId}
    mfaAmr: [mfa]
`,
  );
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: "http://stint.test" },
  });
  // The first sign-in creates alice; then she is made eligible for a role that needs MFA within 10 minutes.
  expect(
    await signInScripted(server.app, idp, "corp", { sub: "alice-sub", preferred_username: "alice" }),
  ).toMatchObject({ session: true });
  await seedRole(server, {
    name: "prod-admin",
    policy: { mfa: { required: true, maxAge: "10m" } },
    eligibleUsers: ["alice"],
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await new Promise<void>((resolve) => (http ? http.close(() => resolve()) : resolve()));
  await rm(work, { recursive: true, force: true });
});

describe("the provider's MFA counts at its auth_time", () => {
  it("an amr without auth_time is not MFA done now: the role asks for a fresh factor", async () => {
    // Before the fix: 201, the role activated on an MFA of unknown age.
    expect(await activateAfterSignIn({})).toEqual({ status: 401, code: "MFA_STEP_UP_REQUIRED" });
  });

  it("an auth_time ahead of the clock is not believed either", async () => {
    const inAnHour = Math.floor(Date.now() / 1000) + 3600;
    expect(await activateAfterSignIn({ auth_time: inAnHour })).toEqual({ status: 401, code: "MFA_STEP_UP_REQUIRED" });
  });

  it("an MFA at an auth_time within the role's maxAge counts; an older one does not", async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await activateAfterSignIn({ auth_time: now - 3 * 3600 })).toEqual({
      status: 401,
      code: "MFA_STEP_UP_REQUIRED",
    });
    const fresh = await activateAfterSignIn({ auth_time: now - 60 });
    expect(fresh.status).toBeLessThan(300);
  });
});
