/**
 * Single sign-on through Entra ID's multi-tenant endpoints (security review).
 *
 * `https://login.microsoftonline.com/organizations/v2.0` (or `common`) is a valid issuer URL, and its discovery
 * document names the issuer `https://login.microsoftonline.com/{tenantid}/v2.0`. openid-client accepts that for
 * this one origin and then takes an ID token of *any* tenant (the `{tenantid}` filled from the token's own `tid`),
 * all signed by Microsoft's one key set. Stint checked nothing more: a provider configured so let every Microsoft
 * tenant's people sign in, and the attacker's own tenant writes their `email` (Entra sends no `email_verified`,
 * which Stint takes at its word), so `allowedEmailDomains: [contoso.com]` let in `eve@contoso.com` of tenant
 * `evil`. Now the discovery document must name the configured issuer exactly (the provider is refused, with a
 * sentence saying why), and a token's `iss` must be the configured issuer; a tenant's own issuer works as before.
 *
 * The "network": login.microsoftonline.com resolves to 127.0.0.1 and its connections reach a local https server
 * with a certificate of a test CA; Stint's code (address policy, pinned fetch, openid-client) runs unchanged.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ConnectionOptions } from "node:tls";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { scriptedIdp, signInScripted, type ScriptedIdp } from "../../src/testing/scripted-idp.js";
import { makePki } from "../../src/testing/siem-receivers.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const ENTRA = "login.microsoftonline.com";

vi.mock("node:dns/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:dns/promises")>();
  const lookup = ((host: string, options: unknown) =>
    host === "login.microsoftonline.com"
      ? Promise.resolve([{ address: "127.0.0.1", family: 4 }])
      : real.lookup(host, options as never)) as typeof real.lookup;
  return { ...real, default: { ...real, lookup }, lookup };
});

const PUBLIC_URL = "http://stint.test";
const CONTOSO = randomUUID();
const EVIL = randomUUID();

let server: TestServer;
let work: string;
let entra: https.Server;
let idp: ScriptedIdp;

const signIn = (provider: string, claims: Record<string, unknown>) => signInScripted(server.app, idp, provider, claims);

const principal = (name: string) =>
  server.store.db.selectFrom("principals").select(["name", "email"]).where("name", "=", name).executeTakeFirst();

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-entra-"));
  const pki = makePki(work, "entra", { dns: [ENTRA], ips: [] });
  // Entra ID: a tenant's own endpoint names its issuer; `organizations` and `common` name the `{tenantid}` template.
  idp = await scriptedIdp({
    origin: () => `https://${ENTRA}`,
    issuerNamed: (segment) => `https://${ENTRA}/${segment === CONTOSO ? CONTOSO : "{tenantid}"}/v2.0`,
    tokenIssuer: (claims) => `https://${ENTRA}/${String(claims.tid)}/v2.0`,
  });
  entra = https.createServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) }, idp.handle);
  await new Promise<void>((resolve) => entra.listen(0, "127.0.0.1", resolve));
  const port = (entra.address() as AddressInfo).port;
  // Connections to login.microsoftonline.com:443 reach the local server, whose certificate the test CA signed.
  const agent = https.globalAgent as unknown as { createConnection(o: ConnectionOptions, cb: unknown): unknown };
  const connect = agent.createConnection.bind(agent);
  agent.createConnection = (options, cb) =>
    connect(options.servername === ENTRA ? { ...options, port, ca: readFileSync(pki.caFile) } : options, cb);

  await writeFile(path.join(work, "client-secret"), "entra-client-secret-for-tests\n");
  const provider = (id: string, segment: string) => `  - id: ${id}
    displayName: Contoso (${id})
    issuer: https://${ENTRA}/${segment}/v2.0
    clientId: ${idp.clientId}
    clientSecretFile: ${path.join(work, "client-secret")}
    allowedEmailDomains: [contoso.com]
`;
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:\n${provider("entra-any", "organizations")}${provider("entra", CONTOSO)}`,
  );
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await new Promise<void>((resolve) => (entra ? entra.close(() => resolve()) : resolve()));
  await rm(work, { recursive: true, force: true });
});

/** Eve, an administrator of her own tenant, gives her account the address she wants. */
const eve = {
  tid: EVIL,
  sub: "eve-sub",
  oid: randomUUID(),
  preferred_username: "eve@evil.onmicrosoft.com",
  email: "eve@contoso.com",
  name: "Eve",
  ver: "2.0",
};

describe("Entra ID tenants", () => {
  it("a provider on a multi-tenant endpoint is refused: another tenant's person does not sign in", async () => {
    const attempt = await signIn("entra-any", eve);
    // Before the fix: { session: true }, a Stint user `eve.evil.onmicrosoft.com` with the address eve@contoso.com.
    expect(attempt).toEqual({
      start: {
        error: expect.objectContaining({
          code: "SSO_PROVIDER_UNAVAILABLE",
          message: expect.stringContaining("{tenantid}"),
        }) as unknown,
      },
    });
    expect(await principal("eve.evil.onmicrosoft.com")).toBeUndefined();
  });

  it("a provider on the tenant's own issuer signs its people in, and no other tenant's", async () => {
    const alice = { ...eve, tid: CONTOSO, sub: "alice-sub", preferred_username: "alice@contoso.com" };
    expect(await signIn("entra", { ...alice, email: "alice@contoso.com" })).toMatchObject({ session: true });
    expect(await principal("alice.contoso.com")).toEqual({ name: "alice.contoso.com", email: "alice@contoso.com" });
    expect(await signIn("entra", eve)).toEqual({ error: "SSO_ISSUER_MISMATCH" });
    expect(await principal("eve.evil.onmicrosoft.com")).toBeUndefined();
  });
});
