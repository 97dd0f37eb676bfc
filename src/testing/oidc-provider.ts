/**
 * Test support: panva's oidc-provider, a real OpenID Provider, on a loopback port. Its accounts are a map the
 * test changes (claims incl. e-mail and groups); its development interaction pages (a login form that takes any
 * password, then consent) are what a browser or a fetch-driven "browser" goes through. Device flow on.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import Provider from "oidc-provider";
import { expect } from "vitest";

export interface TestAccount {
  email?: string;
  email_verified?: boolean;
  preferred_username?: string;
  name?: string;
  groups?: string[];
  amr?: string[];
}

export interface TestProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  accounts: Map<string, TestAccount>;
  /** Requests the provider received, by path (e.g. `/token`). */
  requests: Map<string, number>;
  close(): Promise<void>;
}

export async function startOidcProvider(options: {
  redirectUris: string[];
  clientId?: string;
  clientSecret?: string;
}): Promise<TestProvider> {
  const accounts = new Map<string, TestAccount>();
  const clientId = options.clientId ?? "stint";
  const clientSecret = options.clientSecret ?? "a-client-secret-for-tests-only-0123456789";
  // Listen first: the issuer carries the port.
  const route: { handler?: (req: IncomingMessage, res: ServerResponse) => void } = {};
  const requests = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://idp").pathname;
    requests.set(path, (requests.get(path) ?? 0) + 1);
    route.handler!(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: options.redirectUris,
        response_types: ["code"],
        grant_types: ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
        token_endpoint_auth_method: "client_secret_post",
      },
    ],
    async findAccount(_ctx: unknown, id: string) {
      const account = accounts.get(id);
      if (!account) return undefined;
      return {
        accountId: id,
        claims: () => ({ sub: id, ...account }),
      };
    },
    claims: {
      openid: ["sub"],
      email: ["email", "email_verified"],
      profile: ["name", "preferred_username"],
      groups: ["groups"],
    },
    scopes: ["openid", "email", "profile", "groups"],
    // The claims go in the ID token itself (Stint reads them there, as Entra ID, Okta and Keycloak allow).
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true } },
    cookies: { keys: ["cookie-key-for-tests-only-0123456789"] },
    pkce: { required: () => true },
    ttl: {
      DeviceCode: 600,
      AuthorizationCode: 60,
      IdToken: 3600,
      AccessToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  });
  route.handler = provider.callback();
  return {
    issuer,
    clientId,
    clientSecret,
    accounts,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Plays the browser through the provider's development interaction pages from an authorization URL: the login
 * form (as `login`), then consent, following redirects with fetch and a cookie jar, until a redirect leaves the
 * provider. Returns that redirect's URL (Stint's callback).
 */
export async function browseThrough(authorizationUrl: string, login: string, issuer: string): Promise<URL> {
  const jar = new Map<string, string>();
  const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  const keep = (res: Response) => {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const eq = pair!.indexOf("=");
      jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
  };
  let url = new URL(authorizationUrl);
  let method = "GET";
  let body: string | undefined;
  for (let step = 0; step < 20; step++) {
    if (!url.href.startsWith(issuer)) return url;
    const res = await fetch(url, {
      method,
      redirect: "manual",
      headers: {
        cookie: cookieHeader(),
        ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}),
      },
      ...(body ? { body } : {}),
    });
    keep(res);
    method = "GET";
    body = undefined;
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get("location")!, url);
      continue;
    }
    const html = await res.text();
    const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
    // A page without a form is where the provider's part ends (the device flow's "signed in" page).
    if (!form) {
      if (res.status === 200) return url;
      throw new Error(`no form at ${url.pathname} (status ${res.status}): ${html.slice(0, 300)}`);
    }
    const fields = new URLSearchParams();
    for (const input of form[2]!.matchAll(/<input[^>]*>/gi)) {
      const name = /name="([^"]+)"/.exec(input[0])?.[1];
      const value = /value="([^"]*)"/.exec(input[0])?.[1] ?? "";
      if (name) fields.set(name, value);
    }
    if (fields.has("login")) fields.set("login", login);
    if (fields.has("password")) fields.set("password", "any-password");
    url = new URL(form[1]!.replaceAll("&amp;", "&"), url);
    method = "POST";
    body = fields.toString();
  }
  throw new Error("the provider's pages did not end in a redirect");
}

/** A PKCE pair, as a client starting a sign-in makes one. */
export function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

type Injects = Pick<FastifyInstance, "inject">;

/**
 * Starts a sign-in at Stint through its SSO provider `provider`, goes through the test IdP `idp`'s pages as the
 * account `login`, and hands the callback back to Stint. The fragment Stint's callback gives the web UI
 * (`sso_code`, or `sso_error`), the callback URL and the PKCE pair the one-time code is bound to.
 */
export async function signInThrough(app: Injects, provider: string, idp: TestProvider, login: string, client = pkce()) {
  const start = await app.inject({
    method: "GET",
    url: `/v1/auth/sso/${provider}/login?code_challenge=${client.challenge}`,
  });
  expect(start.statusCode, start.body).toBe(302);
  const callback = await browseThrough(start.headers.location as string, login, idp.issuer);
  expect(callback.pathname).toBe(`/v1/auth/sso/${provider}/callback`);
  const back = await app.inject({ method: "GET", url: `${callback.pathname}${callback.search}` });
  expect(back.statusCode).toBe(302);
  const fragment = new URLSearchParams(new URL(back.headers.location as string).hash.slice(1));
  return { callback, fragment, client };
}

export function redeemSsoCode(app: Injects, code: string, verifier: string) {
  return app.inject({ method: "POST", url: "/v1/auth/sso/redeem", payload: { code, codeVerifier: verifier } });
}

/** `signInThrough`, then the one-time code redeemed: the session, or the refusal's code (`sso_error`). */
export async function ssoSession(
  app: Injects,
  provider: string,
  idp: TestProvider,
  login: string,
): Promise<{ accessToken: string; refreshToken: string } | { error: string }> {
  const { fragment, client } = await signInThrough(app, provider, idp, login);
  const code = fragment.get("sso_code");
  if (!code) return { error: fragment.get("sso_error") ?? "none" };
  const redeemed = await redeemSsoCode(app, code, client.verifier);
  expect(redeemed.statusCode, redeemed.body).toBe(200);
  return redeemed.json<{ accessToken: string; refreshToken: string }>();
}
