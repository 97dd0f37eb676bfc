/**
 * Single sign-on against a real OpenID Provider (panva's oidc-provider on loopback): the code flow with PKCE
 * through the provider's own login and consent pages, the user created and linked, groups from the claim
 * synced (a dropped group ends what was activated through it, audited), a replayed state, a disallowed e-mail
 * domain, a name taken by a local account and a disabled user refused with their codes and nothing created,
 * the one-time code bound to the client's PKCE verifier, the device grant, and passwords off but for break-glass.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  pkce,
  redeemSsoCode,
  signInThrough,
  startOidcProvider,
  type TestProvider,
} from "../../testing/oidc-provider.js";
import { ADMIN_PASSWORD, testServer, type TestServer } from "../../testing/server.js";

const PUBLIC_URL = "http://stint.test";
const CALLBACK = `${PUBLIC_URL}/v1/auth/sso/corp/callback`;

let idp: TestProvider;
let server: TestServer;
let work: string;

/** A sign-in through the provider `corp` as `login`, up to the fragment Stint's callback gives the web UI. */
const signInThroughProvider = (login: string) => signInThrough(server.app, "corp", idp, login);
const redeem = (code: string, verifier: string) => redeemSsoCode(server.app, code, verifier);

async function principalCount(): Promise<number> {
  const row = await server.store.db
    .selectFrom("principals")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

async function deniedLogins(): Promise<{ reason: string | null; details: Record<string, unknown> }[]> {
  const res = await server.app.inject({
    method: "GET",
    url: "/v1/audit/events?action=auth.login&limit=200",
    headers: { authorization: server.adminAuth },
  });
  const events = res.json<{ items: { outcome: string; reason: string | null; details: Record<string, unknown> }[] }>()
    .items;
  return events.filter((e) => e.outcome === "denied" && e.details.method === "oidc");
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-"));
  idp = await startOidcProvider({ redirectUris: [CALLBACK] });
  await writeFile(path.join(work, "client-secret"), `${idp.clientSecret}\n`);
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp SSO
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecretFile: ${path.join(work, "client-secret")}
    scopes: [openid, email, profile, groups]
    usernameClaim: preferred_username
    groupsClaim: groups
    allowedEmailDomains: [example.com]
passwordSignIn: break-glass
breakGlassUsers: [admin]
`,
  );
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await idp?.close();
  await rm(work, { recursive: true, force: true });
});

describe("single sign-on with a real OpenID Provider", () => {
  it("lists the provider for the sign-in page", async () => {
    const res = await server.app.inject({ method: "GET", url: "/v1/auth/sso/providers" });
    expect(res.json()).toEqual({ items: [{ id: "corp", displayName: "Corp SSO" }] });
  });

  it("creates the user on first sign-in (source oidc) with the groups of the claim, and signs in", async () => {
    idp.accounts.set("sub-alice", {
      preferred_username: "alice",
      email: "alice@example.com",
      email_verified: true,
      name: "Alice Example",
      groups: ["dba", "Oncall Team"],
    });
    const { fragment, client } = await signInThroughProvider("sub-alice");
    const code = fragment.get("sso_code");
    expect(code, fragment.toString()).toBeTruthy();
    const res = await redeem(code!, client.verifier);
    expect(res.statusCode, res.body).toBe(200);
    const pair = res.json<{ accessToken: string; principal: { name: string; groups: string[]; email: string } }>();
    expect(pair.principal.name).toBe("alice");
    expect(pair.principal.email).toBe("alice@example.com");
    expect(pair.principal.groups.sort()).toEqual(["dba", "oncall.team"]);
    const me = await server.app.inject({
      method: "GET",
      url: "/v1/me",
      headers: { authorization: `Bearer ${pair.accessToken}` },
    });
    expect(me.statusCode).toBe(200);
    // The access token says how the session was opened (and so do the ones a refresh gives).
    const amrOf = (token: string) =>
      (JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { amr: string[] }).amr;
    expect(amrOf(pair.accessToken)).toEqual(["oidc"]);
    const refreshed = await server.app.inject({
      method: "POST",
      url: "/v1/auth/refresh",
      payload: { refreshToken: res.json<{ refreshToken: string }>().refreshToken },
    });
    expect(amrOf(refreshed.json<{ accessToken: string }>().accessToken)).toEqual(["oidc"]);
    const row = await server.store.db
      .selectFrom("principals")
      .select(["source"])
      .where("name", "=", "alice")
      .executeTakeFirstOrThrow();
    expect(row.source).toBe("oidc");
    const link = await server.store.db
      .selectFrom("oidc_identities")
      .selectAll()
      .where("subject", "=", "sub-alice")
      .executeTakeFirstOrThrow();
    expect(link.issuer).toBe(idp.issuer);
    const groups = await server.store.db.selectFrom("groups").select(["name", "source"]).orderBy("name").execute();
    expect(groups.filter((g) => g.source === "oidc").map((g) => g.name)).toEqual(["dba", "oncall.team"]);
  });

  it("a one-time code is redeemed once, and only with the verifier of the client that started the sign-in", async () => {
    const { fragment, client } = await signInThroughProvider("sub-alice");
    const code = fragment.get("sso_code")!;
    const wrong = await redeem(code, pkce().verifier);
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe("SSO_CODE_INVALID");
    // The wrong verifier burnt it: the right one is refused now too.
    const late = await redeem(code, client.verifier);
    expect(late.json().error.code).toBe("SSO_CODE_INVALID");
    const again = await signInThroughProvider("sub-alice");
    const ok = await redeem(again.fragment.get("sso_code")!, again.client.verifier);
    expect(ok.statusCode).toBe(200);
    const replay = await redeem(again.fragment.get("sso_code")!, again.client.verifier);
    expect(replay.json().error.code).toBe("SSO_CODE_INVALID");
  });

  it("a group the provider drops is left at the next sign-in, and the activation that came through it ends (audited)", async () => {
    const applied = await server.app.inject({
      method: "POST",
      url: "/v1/config/apply",
      headers: { authorization: server.adminAuth },
      payload: {
        yaml: `apiVersion: stint/v1
policies:
  - name: sso-self
    mfa: { required: false }
    maxDuration: 8h
targets:
  - name: sso-internal
    kind: internal
roles:
  - name: dba-console
    target: sso-internal
    risk: medium
    policy: sso-self
eligibility:
  - role: dba-console
    groups: [dba]
`,
      },
    });
    expect(applied.statusCode, applied.body).toBe(200);
    const signedIn = await signInThroughProvider("sub-alice");
    const pair = (await redeem(signedIn.fragment.get("sso_code")!, signedIn.client.verifier)).json<{
      accessToken: string;
    }>();
    const submitted = await server.app.inject({
      method: "POST",
      url: "/v1/activation-requests",
      headers: { authorization: `Bearer ${pair.accessToken}` },
      payload: { role: "dba-console", duration: "1h", reason: "rotate the replica after incident 4242" },
    });
    expect(submitted.statusCode, submitted.body).toBe(201);
    const id = submitted.json<{ id: string; state: string }>().id;
    expect(submitted.json<{ state: string }>().state).toBe("active");

    idp.accounts.set("sub-alice", {
      ...idp.accounts.get("sub-alice")!,
      groups: ["Oncall Team"],
      name: "Alice Renamed",
    });
    const again = await signInThroughProvider("sub-alice");
    const after = await redeem(again.fragment.get("sso_code")!, again.client.verifier);
    expect(after.json<{ principal: { groups: string[]; displayName: string } }>().principal).toMatchObject({
      groups: ["oncall.team"],
      displayName: "Alice Renamed",
    });
    const request = await server.app.inject({
      method: "GET",
      url: `/v1/activation-requests/${id}`,
      headers: { authorization: server.adminAuth },
    });
    expect(request.json<{ state: string }>().state).toBe("revoked");
    const audit = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?limit=50",
      headers: { authorization: server.adminAuth },
    });
    const events = audit.json<{
      items: { action: string; subject: string | null; details: Record<string, unknown> }[];
    }>().items;
    const removed = events.find((e) => e.action === "group.member_removed" && e.subject === "group:dba");
    expect(removed?.details).toMatchObject({ principal: "alice", source: "oidc" });
    expect(events.some((e) => e.action === "request.revoked" && JSON.stringify(e).includes(id))).toBe(true);
  });

  it("a replayed callback (the same state twice) is refused with SSO_STATE_INVALID and audited", async () => {
    const { callback } = await signInThroughProvider("sub-alice");
    const replay = await server.app.inject({ method: "GET", url: `${callback.pathname}${callback.search}` });
    expect(replay.statusCode).toBe(302);
    expect(new URLSearchParams(new URL(replay.headers.location as string).hash.slice(1)).get("sso_error")).toBe(
      "SSO_STATE_INVALID",
    );
    const forged = new URL(callback.href);
    forged.searchParams.set("state", "a-state-stint-never-issued");
    const refused = await server.app.inject({ method: "GET", url: `${forged.pathname}${forged.search}` });
    expect(new URL(refused.headers.location as string).hash).toContain("sso_error=SSO_STATE_INVALID");
    const denied = await deniedLogins();
    expect(denied.filter((e) => e.details.code === "SSO_STATE_INVALID").length).toBeGreaterThanOrEqual(2);
  });

  it("an e-mail domain that is not allowed is refused (SSO_EMAIL_DOMAIN_DENIED), nothing created", async () => {
    idp.accounts.set("sub-mallory", {
      preferred_username: "mallory",
      email: "mallory@evil.example.org",
      email_verified: true,
      groups: ["evil-group"],
    });
    const before = await principalCount();
    const { fragment } = await signInThroughProvider("sub-mallory");
    expect(fragment.get("sso_error")).toBe("SSO_EMAIL_DOMAIN_DENIED");
    expect(fragment.get("sso_code")).toBeNull();
    expect(await principalCount()).toBe(before);
    const group = await server.store.db
      .selectFrom("groups")
      .select("name")
      .where("name", "=", "evil-group")
      .executeTakeFirst();
    expect(group).toBeUndefined();
    expect((await deniedLogins()).some((e) => e.details.code === "SSO_EMAIL_DOMAIN_DENIED")).toBe(true);
  });

  it("never takes over a local account of the same name (SSO_ACCOUNT_CONFLICT)", async () => {
    const created = await server.app.inject({
      method: "POST",
      url: "/v1/users",
      headers: { authorization: server.adminAuth },
      payload: { name: "bob", password: "tulip orbit canyon lantern" },
    });
    expect(created.statusCode).toBe(201);
    idp.accounts.set("sub-bob-at-idp", { preferred_username: "bob", email: "bob@example.com", groups: [] });
    const { fragment } = await signInThroughProvider("sub-bob-at-idp");
    expect(fragment.get("sso_error")).toBe("SSO_ACCOUNT_CONFLICT");
    const link = await server.store.db
      .selectFrom("oidc_identities")
      .select("principal_id")
      .where("subject", "=", "sub-bob-at-idp")
      .executeTakeFirst();
    expect(link).toBeUndefined();
    const bob = await server.store.db
      .selectFrom("principals")
      .select("source")
      .where("name", "=", "bob")
      .executeTakeFirstOrThrow();
    expect(bob.source).toBe("local");
  });

  it("refuses a disabled user (ACCOUNT_DISABLED)", async () => {
    idp.accounts.set("sub-dave", { preferred_username: "dave", email: "dave@example.com", groups: [] });
    const first = await signInThroughProvider("sub-dave");
    expect(first.fragment.get("sso_code")).toBeTruthy();
    const disabled = await server.app.inject({
      method: "POST",
      url: "/v1/users/dave/disable",
      headers: { authorization: server.adminAuth },
      payload: { reason: "left the company" },
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    // The code issued before the disable is refused too.
    const late = await redeem(first.fragment.get("sso_code")!, first.client.verifier);
    expect(late.json().error.code).toBe("ACCOUNT_DISABLED");
    const second = await signInThroughProvider("sub-dave");
    expect(second.fragment.get("sso_error")).toBe("ACCOUNT_DISABLED");
  });

  it("passwords are off except for the break-glass admin", async () => {
    const bob = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "bob", password: "tulip orbit canyon lantern" },
    });
    expect(bob.statusCode).toBe(403);
    expect(bob.json().error.code).toBe("PASSWORD_SIGNIN_DISABLED");
    const admin = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "admin", password: ADMIN_PASSWORD },
    });
    expect(admin.statusCode).toBe(200);
  });

  it("an unknown provider is SSO_PROVIDER_UNKNOWN; a CLI redirect must be loopback", async () => {
    const unknown = await server.app.inject({
      method: "GET",
      url: `/v1/auth/sso/nope/login?code_challenge=${pkce().challenge}`,
    });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe("SSO_PROVIDER_UNKNOWN");
    const away = await server.app.inject({
      method: "GET",
      url: `/v1/auth/sso/corp/login?code_challenge=${pkce().challenge}&redirect_uri=${encodeURIComponent("https://evil.example/cb")}`,
    });
    expect(away.statusCode).toBe(400);
    expect(away.json().error.code).toBe("VALIDATION_FAILED");
  });
});
