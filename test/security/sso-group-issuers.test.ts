/**
 * Group claims from two identity providers: whose group is whose.
 *
 * Stint makes a group of each name a provider's `groupsClaim` lists (source `oidc`) and, at every sign-in, joins
 * the user to the `oidc` groups the claim names. The names were one space for every configured provider: with the
 * company's provider and a partner's (or any second one whose administrators, or whose users, can name groups),
 * a partner account whose token said `groups: ["db-admins"]` was joined to the company's `db-admins` group, and so
 * became eligible for whatever that group's eligibility grants. Now an `oidc` group belongs to the issuer whose
 * sign-in created it; another issuer's claim of that name is ignored (`groupsIgnored` in the sign-in event). A
 * group from before owners were kept is adopted only by the issuer all its members sign in through.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signInThrough, startOidcProvider, type TestProvider } from "../../src/testing/oidc-provider.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const PUBLIC_URL = "http://stint.test";
const callbackOf = (provider: string) => `${PUBLIC_URL}/v1/auth/sso/${provider}/callback`;

let corp: TestProvider;
let partner: TestProvider;
let server: TestServer;
let work: string;

/** Signs in through `provider` (its test IdP `idp`) as the account `login`; the sign-in succeeds. */
async function signIn(provider: string, idp: TestProvider, login: string) {
  const { fragment } = await signInThrough(server.app, provider, idp, login);
  expect(fragment.get("sso_error")).toBeNull();
}

async function groupsOf(user: string): Promise<string[]> {
  const rows = await server.store.db
    .selectFrom("group_members")
    .innerJoin("groups", "groups.id", "group_members.group_id")
    .innerJoin("principals", "principals.id", "group_members.principal_id")
    .select("groups.name")
    .where("principals.name", "=", user)
    .orderBy("groups.name")
    .execute();
  return rows.map((r) => r.name);
}

async function lastSignInOf(user: string) {
  const res = await server.app.inject({
    method: "GET",
    url: `/v1/audit/events?action=auth.login&limit=200`,
    headers: { authorization: server.adminAuth },
  });
  const items = res.json<{ items: { outcome: string; subject: string; details: Record<string, unknown> }[] }>().items;
  return items.find((e) => e.outcome === "success" && e.subject === `user:${user}`);
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-groups-"));
  corp = await startOidcProvider({ redirectUris: [callbackOf("corp")] });
  partner = await startOidcProvider({ redirectUris: [callbackOf("partner")] });
  await writeFile(path.join(work, "client-secret"), `${corp.clientSecret}\n`);
  const provider = (id: string, idp: TestProvider) => `  - id: ${id}
    displayName: ${id}
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecretFile: ${path.join(work, "client-secret")}
    scopes: [openid, email, profile, groups]
    groupsClaim: groups
`;
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:\n${provider("corp", corp)}${provider("partner", partner)}`,
  );
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await corp?.close();
  await partner?.close();
  await rm(work, { recursive: true, force: true });
});

describe("group claims of two providers", () => {
  it("a partner account claiming the company's group is not joined to it; its own groups are its issuer's", async () => {
    corp.accounts.set("sub-alice", { preferred_username: "alice", groups: ["db-admins"] });
    await signIn("corp", corp, "sub-alice");
    expect(await groupsOf("alice")).toEqual(["db-admins"]);

    partner.accounts.set("sub-mallory", { preferred_username: "mallory", groups: ["db-admins", "partner-staff"] });
    await signIn("partner", partner, "sub-mallory");
    // Before the fix: ["db-admins", "partner-staff"], eligible for what db-admins may activate.
    expect(await groupsOf("mallory")).toEqual(["partner-staff"]);
    expect((await lastSignInOf("mallory"))?.details.groupsIgnored).toEqual(["db-admins"]);
    // And the other way round: the partner's group is not the company's to fill.
    corp.accounts.set("sub-alice", { preferred_username: "alice", groups: ["db-admins", "partner-staff"] });
    await signIn("corp", corp, "sub-alice");
    expect(await groupsOf("alice")).toEqual(["db-admins"]);
  });

  it("a group from before owners were kept is adopted only by the issuer its members sign in through", async () => {
    // Users and a group of this test's own: bea (corp) in ops-admins, mark (partner) claiming it too.
    corp.accounts.set("sub-bea", { preferred_username: "bea", groups: ["ops-admins"] });
    partner.accounts.set("sub-mark", { preferred_username: "mark", groups: ["ops-admins", "partner-ops"] });
    await signIn("corp", corp, "sub-bea");
    expect(await groupsOf("bea")).toEqual(["ops-admins"]);
    // As an older Stint left it: an oidc group with no owner, its one member bea (linked through corp).
    await server.store.db.updateTable("groups").set({ external_id: null }).where("name", "=", "ops-admins").execute();
    await signIn("partner", partner, "sub-mark");
    expect(await groupsOf("mark")).toEqual(["partner-ops"]);
    await signIn("corp", corp, "sub-bea");
    expect(await groupsOf("bea")).toEqual(["ops-admins"]);
    const group = await server.store.db
      .selectFrom("groups")
      .select("external_id")
      .where("name", "=", "ops-admins")
      .executeTakeFirstOrThrow();
    expect(group.external_id).toBe(`oidc:${corp.issuer}`);
    // Adopted: the partner's claim stays ignored.
    await signIn("partner", partner, "sub-mark");
    expect(await groupsOf("mark")).toEqual(["partner-ops"]);
  });
});
