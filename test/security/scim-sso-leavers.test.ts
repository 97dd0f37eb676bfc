/**
 * SCIM and single sign-on on one account (Entra ID / Okta: SSO to sign in, SCIM for joiners and leavers).
 *
 * Before, the two never met: an account a sign-in created was invisible to SCIM (its POST got 409), so the
 * identity provider's deprovisioning never reached it and a leaver kept their sessions, refresh tokens and
 * activations; and a SCIM-provisioned person could not sign in at all (`SSO_ACCOUNT_CONFLICT`). Now the provider's
 * `scim: { service, match }` pairs the SCIM service with that issuer: one account per person, whichever came
 * first, and a SCIM deprovision ends it all. A SCIM userName equal to a local account's, or to an account another
 * issuer signs in, links nothing. And SCIM's `active: true` does not undo a Stint administrator's disable.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ssoSession, startOidcProvider, type TestProvider } from "../../src/testing/oidc-provider.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const PUBLIC_URL = "http://stint.test";
const SERVICE = "entra-provisioning";
const OKTA_SERVICE = "okta-provisioning";
const callbackOf = (provider: string) => `${PUBLIC_URL}/v1/auth/sso/${provider}/callback`;

let corp: TestProvider;
let partner: TestProvider;
let okta: TestProvider;
let server: TestServer;
let work: string;
const scimTokens = new Map<string, string>();

interface Session {
  accessToken: string;
  refreshToken: string;
}

type Provider = "corp" | "partner" | "okta";

/** Signs in through `provider` as `login`: the session, or the refusal's code. */
function signIn(provider: Provider, login: string): Promise<Session | { error: string }> {
  return ssoSession(server.app, provider, { corp, partner, okta }[provider], login);
}

async function session(provider: Provider, login: string): Promise<Session> {
  const result = await signIn(provider, login);
  expect("error" in result ? result.error : null).toBeNull();
  return result as Session;
}

async function scim(method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: unknown, service = SERVICE) {
  const res = await server.app.inject({
    method,
    url: `/scim/v2${url}`,
    headers: { authorization: `Bearer ${scimTokens.get(service)}`, "content-type": "application/scim+json" },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });
  return { status: res.statusCode, body: (res.body ? res.json() : {}) as Record<string, unknown> };
}

const newUser = (userName: string, externalId: string) => ({
  schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
  userName,
  externalId,
  active: true,
  emails: [{ value: userName.toLowerCase(), type: "work", primary: true }],
});
const setActive = (value: boolean | string) => ({
  schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
  Operations: [{ op: "Replace", path: "active", value }],
});

/** What the leaver can still do with what they held: read /v1/me, refresh the session. */
async function stillIn(held: Session): Promise<{ me: number; refresh: number }> {
  const me = await server.app.inject({
    method: "GET",
    url: "/v1/me",
    headers: { authorization: `Bearer ${held.accessToken}` },
  });
  const refresh = await server.app.inject({
    method: "POST",
    url: "/v1/auth/refresh",
    payload: { refreshToken: held.refreshToken },
  });
  return { me: me.statusCode, refresh: refresh.statusCode };
}

async function account(name: string) {
  return server.store.db
    .selectFrom("principals")
    .select(["id", "name", "source", "status", "disabled_by"])
    .where("name", "=", name)
    .executeTakeFirst();
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-scim-sso-"));
  corp = await startOidcProvider({ redirectUris: [callbackOf("corp")] });
  partner = await startOidcProvider({ redirectUris: [callbackOf("partner")] });
  okta = await startOidcProvider({ redirectUris: [callbackOf("okta")] });
  await writeFile(path.join(work, "corp-secret"), `${corp.clientSecret}\n`);
  await writeFile(path.join(work, "partner-secret"), `${partner.clientSecret}\n`);
  await writeFile(path.join(work, "okta-secret"), `${okta.clientSecret}\n`);
  const provider = (id: string, idp: TestProvider, extra = "") => `  - id: ${id}
    displayName: ${id}
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecretFile: ${path.join(work, `${id}-secret`)}
${extra}`;
  await writeFile(
    path.join(work, "stint.yaml"),
    `scimServices: [${SERVICE}, ${OKTA_SERVICE}]\nssoProviders:\n` +
      provider("corp", corp, `    scim: { service: ${SERVICE}, match: userName }\n`) +
      provider("partner", partner) +
      provider("okta", okta, `    scim: { service: ${OKTA_SERVICE}, match: externalId }\n`),
  );
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
  const admin = (method: "POST", url: string, payload: object) =>
    server.app.inject({ method, url, headers: { authorization: server.adminAuth }, payload });
  for (const service of [SERVICE, OKTA_SERVICE]) {
    expect((await admin("POST", "/v1/users", { name: service, kind: "service" })).statusCode).toBe(201);
    const token = await admin("POST", "/v1/tokens", { name: "scim", principal: service, expiresIn: "1d" });
    scimTokens.set(service, token.json<{ token: string }>().token);
  }
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await corp?.close();
  await partner?.close();
  await okta?.close();
  await rm(work, { recursive: true, force: true });
});

describe("a leaver single sign-on created is deprovisioned by SCIM", () => {
  it("SCIM's POST takes the account the sign-in made; active:false ends its sessions and refresh tokens", async () => {
    corp.accounts.set("sub-lea", { preferred_username: "Lea.Leaver@corp.example", email: "lea@corp.example" });
    const held = await session("corp", "sub-lea");
    const created = await account("lea.leaver.corp.example");
    expect(created?.source).toBe("oidc");

    // Entra's joiner sync arrives after the first sign-in. Before: 409 uniqueness, the account stayed out of reach.
    const posted = await scim("POST", "/Users", newUser("lea.leaver@corp.example", "oid-lea"));
    expect(posted.status, JSON.stringify(posted.body)).toBe(201);
    expect(posted.body.id).toBe(created!.id);
    expect((await account("lea.leaver.corp.example"))?.source).toBe("scim");
    expect(await stillIn(held)).toEqual({ me: 200, refresh: 200 });

    // The leaver: Entra sends active "False".
    const left = await scim("PATCH", `/Users/${created!.id}`, setActive("False"));
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    expect(await account("lea.leaver.corp.example")).toMatchObject({
      status: "disabled",
      disabled_by: `scim:${SERVICE}`,
    });
    expect(await stillIn(held)).toEqual({ me: 401, refresh: 401 });
    expect(await signIn("corp", "sub-lea")).toEqual({ error: "ACCOUNT_DISABLED" });
  });

  it("SCIM first: the person's sign-in reaches the provisioned account, and DELETE ends it", async () => {
    const posted = await scim("POST", "/Users", newUser("Sam@corp.example", "oid-sam"));
    expect(posted.status).toBe(201);
    // Before: SSO_ACCOUNT_CONFLICT, a SCIM-provisioned person could not sign in.
    corp.accounts.set("sub-sam", { preferred_username: "sam@CORP.example" });
    const held = await session("corp", "sub-sam");
    expect(await account("sam.corp.example")).toMatchObject({ id: posted.body.id, source: "scim" });

    expect((await scim("DELETE", `/Users/${String(posted.body.id)}`)).status).toBe(204);
    expect(await stillIn(held)).toEqual({ me: 401, refresh: 401 });
    expect(await signIn("corp", "sub-sam")).toEqual({ error: "ACCOUNT_DISABLED" });
  });
});

describe("match: externalId (Okta: SCIM's externalId is the token's sub)", () => {
  it("pairs by sub whatever the names, and never the other SCIM service's people", async () => {
    okta.accounts.set("00u-kim", { preferred_username: "kim" });
    const held = await session("okta", "00u-kim");
    const kim = await account("kim");
    // Another SCIM service naming that sub adopts nothing (it provisions for another issuer).
    const wrong = await scim("POST", "/Users", newUser("kim.other@corp.example", "00u-kim"));
    expect(wrong.status).toBe(201);
    expect(wrong.body.id).not.toBe(kim!.id);
    // (externalId is unique among SCIM's users: that service deletes its user first.)
    expect((await scim("DELETE", `/Users/${String(wrong.body.id)}`)).status).toBe(204);
    const posted = await scim("POST", "/Users", newUser("Kim.Lee@okta.example", "00u-kim"), OKTA_SERVICE);
    expect(posted.status, JSON.stringify(posted.body)).toBe(201);
    expect(posted.body.id).toBe(kim!.id);
    expect((await scim("DELETE", `/Users/${kim!.id}`, undefined, OKTA_SERVICE)).status).toBe(204);
    expect(await stillIn(held)).toEqual({ me: 401, refresh: 401 });
    expect(await signIn("okta", "00u-kim")).toEqual({ error: "ACCOUNT_DISABLED" });
  });
});

describe("no takeover through a SCIM userName", () => {
  it("a local account of that name is not linked, nor shown to SCIM, and a sign-in of that name is refused", async () => {
    const local = await account("admin");
    const posted = await scim("POST", "/Users", newUser("admin", "oid-admin"));
    expect(posted.status).toBe(409);
    expect(posted.body.scimType).toBe("uniqueness");
    expect(await account("admin")).toEqual(local);
    corp.accounts.set("sub-mallory", { preferred_username: "admin" });
    expect(await signIn("corp", "sub-mallory")).toEqual({ error: "SSO_ACCOUNT_CONFLICT" });
  });

  it("another issuer's account is not adopted by SCIM, and another issuer's sign-in does not reach SCIM's", async () => {
    partner.accounts.set("sub-pat", { preferred_username: "pat@corp.example" });
    const held = await session("partner", "sub-pat");
    const posted = await scim("POST", "/Users", newUser("pat@corp.example", "oid-pat"));
    expect(posted.status).toBe(409);
    expect(await account("pat.corp.example")).toMatchObject({ source: "oidc", status: "active" });
    const listed = await scim("GET", `/Users?filter=${encodeURIComponent('userName eq "pat@corp.example"')}`);
    expect(listed.body.totalResults).toBe(0);
    expect(await stillIn(held)).toEqual({ me: 200, refresh: 200 });

    // SCIM's own user: a partner account with the same username does not sign in to it.
    expect((await scim("POST", "/Users", newUser("quinn@corp.example", "oid-quinn"))).status).toBe(201);
    partner.accounts.set("sub-quinn", { preferred_username: "quinn@corp.example" });
    expect(await signIn("partner", "sub-quinn")).toEqual({ error: "SSO_ACCOUNT_CONFLICT" });
    // Nor does a second corp subject once the first is linked.
    corp.accounts.set("sub-quinn", { preferred_username: "quinn@corp.example" });
    await session("corp", "sub-quinn");
    corp.accounts.set("sub-quinn-2", { preferred_username: "Quinn@corp.example" });
    expect(await signIn("corp", "sub-quinn-2")).toEqual({ error: "SSO_ACCOUNT_CONFLICT" });
  });
});

describe("SCIM does not undo an administrator's disable", () => {
  it("active:true leaves an admin-disabled user disabled (400 mutability, audited); a SCIM disable SCIM undoes", async () => {
    const posted = await scim("POST", "/Users", newUser("dora@corp.example", "oid-dora"));
    const id = String(posted.body.id);
    const disabled = await server.app.inject({
      method: "POST",
      url: "/v1/users/dora.corp.example/disable",
      headers: { authorization: server.adminAuth },
      payload: { reason: "incident 42" },
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    expect((await account("dora.corp.example"))?.disabled_by).toBe("user:admin");

    // Before: 200, and dora was active again.
    const sync = await scim("PATCH", `/Users/${id}`, setActive("True"));
    expect(sync.status).toBe(400);
    expect(sync.body.scimType).toBe("mutability");
    expect(await account("dora.corp.example")).toMatchObject({ status: "disabled", disabled_by: "user:admin" });
    const denied = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?action=user.enable&limit=50",
      headers: { authorization: server.adminAuth },
    });
    expect(
      denied
        .json<{ items: { outcome: string; subject: string }[] }>()
        .items.some((e) => e.outcome === "denied" && e.subject === "user:dora.corp.example"),
    ).toBe(true);
    // SCIM still deprovisions it (nothing to end), and the admin's disable is the one kept.
    expect((await scim("PATCH", `/Users/${id}`, setActive(false))).status).toBe(200);
    expect((await account("dora.corp.example"))?.disabled_by).toBe("user:admin");

    // A user SCIM disabled, SCIM enables.
    const eve = await scim("POST", "/Users", newUser("eve@corp.example", "oid-eve"));
    expect((await scim("PATCH", `/Users/${String(eve.body.id)}`, setActive(false))).status).toBe(200);
    const back = await scim("PATCH", `/Users/${String(eve.body.id)}`, setActive(true));
    expect(back.status).toBe(200);
    expect(back.body.active).toBe(true);
    expect(await account("eve.corp.example")).toMatchObject({ status: "active", disabled_by: null });
  });
});

describe("SCIM cannot point an account at another person's sign-in (match: externalId)", () => {
  const setExternalId = (value: string) => ({
    schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    Operations: [{ op: "Replace", path: "externalId", value }],
  });
  const nameOf = async (held: Session) =>
    (
      await server.app.inject({
        method: "GET",
        url: "/v1/me",
        headers: { authorization: `Bearer ${held.accessToken}` },
      })
    ).json<{ name: string }>().name;

  it("a new externalId is refused (400 mutability, audited), so another subject's first sign-in is not the user", async () => {
    const bo = await scim("POST", "/Users", newUser("Bo.Ng@okta.example", "00u-bo"), OKTA_SERVICE);
    expect(bo.status, JSON.stringify(bo.body)).toBe(201);
    // A stolen SCIM token points Bo's account (never signed in yet) at the attacker's own subject.
    okta.accounts.set("00u-mal", { preferred_username: "mal" });
    const rekey = await scim("PATCH", `/Users/${String(bo.body.id)}`, setExternalId("00u-mal"), OKTA_SERVICE);
    // Before: 200, and the attacker's first sign-in was Bo's account.
    expect(rekey.status, JSON.stringify(rekey.body)).toBe(400);
    expect(rekey.body.scimType).toBe("mutability");
    expect(await nameOf(await session("okta", "00u-mal"))).toBe("mal");
    okta.accounts.set("00u-bo", { preferred_username: "bo" });
    expect(await nameOf(await session("okta", "00u-bo"))).toBe("bo.ng.okta.example");
    const denied = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?action=user.update&limit=50",
      headers: { authorization: server.adminAuth },
    });
    expect(
      denied
        .json<{ items: { outcome: string; subject: string }[] }>()
        .items.some((e) => e.outcome === "denied" && e.subject === "user:bo.ng.okta.example"),
    ).toBe(true);
  });

  it("where sign-ins match by userName, externalId stays SCIM's to change", async () => {
    const ray = await scim("POST", "/Users", newUser("ray@corp.example", "oid-ray"));
    expect((await scim("PATCH", `/Users/${String(ray.body.id)}`, setExternalId("oid-ray-2"))).status).toBe(200);
  });
});
