/**
 * Single sign-on and e-mail addresses the provider itself says it has not verified (`email_verified: false`).
 *
 * Many providers let a person type any address: a self-service sign-up (Auth0, Cognito, Keycloak with
 * registration on), or a profile page that changes the address and marks it unverified until a link is clicked.
 * Stint took the claim as the person's address all the same, at the first sign-in and at every later one. The
 * address is not decoration: target logins come from it (`identity.template: "{{emailLocal}}"`), so Mallory typing
 * `bob@example.com` (or `root@…`) at the provider was mapped to Bob's (or root's) login at every target she
 * activated a role on; and with `usernameClaim: email` the unverified address became her Stint name, squatting the
 * account (and whatever eligibility names it) of the person who really owns that address. Now an unverified
 * address is never kept (nor changes the one kept), and one that would name the user is refused.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loginFor } from "../../src/modules/connectors/index.js";
import { ssoSession, startOidcProvider, type TestProvider } from "../../src/testing/oidc-provider.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const PUBLIC_URL = "http://stint.test";
const callbackOf = (provider: string) => `${PUBLIC_URL}/v1/auth/sso/${provider}/callback`;
/** A target whose logins are the part of the address before the @. */
const EMAIL_LOCAL = { template: "{{emailLocal}}", map: {} };

let idp: TestProvider;
let server: TestServer;
let work: string;

/** Signs in through the provider `provider` as the account `login`: the fragment the web UI gets back. */
async function signIn(provider: string, login: string) {
  const result = await ssoSession(server.app, provider, idp, login);
  return { error: "error" in result ? result.error : null };
}

async function principal(name: string) {
  return server.store.db.selectFrom("principals").select(["name", "email"]).where("name", "=", name).executeTakeFirst();
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-email-"));
  idp = await startOidcProvider({ redirectUris: [callbackOf("corp"), callbackOf("mail")] });
  await writeFile(path.join(work, "client-secret"), `${idp.clientSecret}\n`);
  const provider = (id: string, usernameClaim: string) => `  - id: ${id}
    displayName: Corp ${id}
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecretFile: ${path.join(work, "client-secret")}
    scopes: [openid, email, profile]
    usernameClaim: ${usernameClaim}
`;
  // No allowedEmailDomains: the providers' own word on an address is all there is.
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:\n${provider("corp", "preferred_username")}${provider("mail", "email")}`,
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

describe("an e-mail address the provider has not verified", () => {
  it("is not kept at the first sign-in, so it maps to no one else's login at a target", async () => {
    idp.accounts.set("sub-mallory", {
      preferred_username: "mallory",
      email: "bob@example.com",
      email_verified: false,
    });
    expect((await signIn("corp", "sub-mallory")).error).toBeNull();
    const mallory = (await principal("mallory"))!;
    expect(mallory.email).toBeNull();
    // Before the fix: { login: "bob" }, Bob's login at the target.
    expect(loginFor(EMAIL_LOCAL, mallory)).not.toEqual({ login: "bob" });
  });

  it("does not replace the verified address of a linked user", async () => {
    idp.accounts.set("sub-trent", { preferred_username: "trent", email: "trent@example.com", email_verified: true });
    expect((await signIn("corp", "sub-trent")).error).toBeNull();
    expect((await principal("trent"))?.email).toBe("trent@example.com");
    // Trent changes his address at the provider's profile page to root's; the provider marks it unverified.
    idp.accounts.set("sub-trent", { preferred_username: "trent", email: "root@example.com", email_verified: false });
    expect((await signIn("corp", "sub-trent")).error).toBeNull();
    const trent = (await principal("trent"))!;
    expect(trent.email).toBe("trent@example.com");
    expect(loginFor(EMAIL_LOCAL, trent)).toEqual({ login: "trent" });
  });

  it("never names a user (usernameClaim: email): refused, nobody created; a verified one is", async () => {
    idp.accounts.set("sub-eve", { email: "carol@example.com", email_verified: false });
    expect((await signIn("mail", "sub-eve")).error).toBe("SSO_CLAIM_MISSING");
    expect(await principal("carol.example.com")).toBeUndefined();
    idp.accounts.set("sub-carol", { email: "carol@example.com", email_verified: true });
    expect((await signIn("mail", "sub-carol")).error).toBeNull();
    expect(await principal("carol.example.com")).toEqual({ name: "carol.example.com", email: "carol@example.com" });
  });
});
