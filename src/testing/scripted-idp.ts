/**
 * Test support: an OpenID provider whose ID tokens say exactly what the test scripts (claims a real provider
 * sends or leaves out: another tenant's `iss`, an `amr` without `auth_time`…), for attacks on single sign-on.
 * It serves discovery per path segment (`/<segment>/v2.0/.well-known/openid-configuration`, Entra ID's layout),
 * one key set, and a token endpoint that answers a code the test registered with `grants`; `signInScripted`
 * plays the browser: Stint's start, the provider's redirect back with that code, Stint's callback, the redeem.
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { FastifyInstance } from "fastify";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyLike } from "jose";
import { pkce, redeemSsoCode } from "./oidc-provider.js";

export interface ScriptedIdp {
  clientId: string;
  /** Serves the provider's endpoints (give it to an http or https server). */
  handle(req: IncomingMessage, res: ServerResponse): void;
}

export interface ScriptedIdpOptions {
  /** Where the provider is, e.g. `https://login.microsoftonline.com` or `http://127.0.0.1:PORT`. */
  origin: () => string;
  /** The `issuer` the discovery document at `/<segment>/v2.0` names. */
  issuerNamed: (segment: string) => string;
  /** The `iss` of an ID token with these claims. */
  tokenIssuer: (claims: Record<string, unknown>) => string;
}

/** Codes the provider issued, with the nonce and claims of the ID token each is exchanged for. */
const grants = new WeakMap<ScriptedIdp, Map<string, { nonce: string; claims: Record<string, unknown> }>>();

export async function scriptedIdp(options: ScriptedIdpOptions): Promise<ScriptedIdp> {
  const keys = await generateKeyPair("RS256", { extractable: true });
  const signingKey: KeyLike = keys.privateKey;
  const jwk: JWK = { ...(await exportJWK(keys.publicKey)), kid: randomUUID(), use: "sig" };
  const issued = new Map<string, { nonce: string; claims: Record<string, unknown> }>();
  const clientId = randomUUID();

  async function idToken(grant: { nonce: string; claims: Record<string, unknown> }): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ ...grant.claims, nonce: grant.nonce })
      .setProtectedHeader({ alg: "RS256", kid: jwk.kid!, typ: "JWT" })
      .setIssuer(options.tokenIssuer(grant.claims))
      .setAudience(clientId)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + 3600)
      .sign(signingKey);
  }

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const origin = options.origin();
    const url = new URL(req.url ?? "/", origin);
    res.setHeader("content-type", "application/json");
    const discovery = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(url.pathname);
    if (discovery) {
      const base = `${origin}/${discovery[1]!}`;
      res.end(
        JSON.stringify({
          issuer: options.issuerNamed(discovery[1]!),
          authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
          token_endpoint: `${base}/oauth2/v2.0/token`,
          jwks_uri: `${origin}/common/discovery/v2.0/keys`,
          response_types_supported: ["code"],
          subject_types_supported: ["pairwise"],
          id_token_signing_alg_values_supported: ["RS256"],
          code_challenge_methods_supported: ["S256"],
        }),
      );
      return;
    }
    if (url.pathname === "/common/discovery/v2.0/keys") {
      res.end(JSON.stringify({ keys: [jwk] }));
      return;
    }
    if (url.pathname.endsWith("/oauth2/v2.0/token") && req.method === "POST") {
      let body = "";
      for await (const chunk of req) body += String(chunk);
      const grant = issued.get(new URLSearchParams(body).get("code") ?? "");
      if (!grant) {
        res.writeHead(400).end(JSON.stringify({ error: "invalid_grant" }));
        return;
      }
      const token = await idToken(grant);
      res.end(JSON.stringify({ token_type: "Bearer", access_token: randomUUID(), expires_in: 3600, id_token: token }));
      return;
    }
    res.writeHead(404).end("{}");
  }

  const idp: ScriptedIdp = { clientId, handle: (req, res) => void answer(req, res) };
  grants.set(idp, issued);
  return idp;
}

/**
 * A browser signing in through Stint's provider `provider` as the person `claims` say (already signed in at the
 * provider): the start's refusal, the callback's `sso_error`, or whether the one-time code became a session
 * (with its access token).
 */
export async function signInScripted(
  app: Pick<FastifyInstance, "inject">,
  idp: ScriptedIdp,
  provider: string,
  claims: Record<string, unknown>,
): Promise<
  | { start: { error: { code: string; message: string } } }
  | { error: string | null }
  | { session: boolean; accessToken?: string }
> {
  const client = pkce();
  const start = await app.inject({
    method: "GET",
    url: `/v1/auth/sso/${provider}/login?code_challenge=${client.challenge}`,
  });
  if (start.statusCode !== 302) return { start: start.json<{ error: { code: string; message: string } }>() };
  const authorize = new URL(start.headers.location as string);
  const code = randomBytes(16).toString("hex");
  grants.get(idp)!.set(code, { nonce: authorize.searchParams.get("nonce")!, claims });
  const query = new URLSearchParams({ code, state: authorize.searchParams.get("state")! });
  const back = await app.inject({ method: "GET", url: `/v1/auth/sso/${provider}/callback?${query}` });
  const fragment = new URLSearchParams(new URL(back.headers.location as string).hash.slice(1));
  const handoff = fragment.get("sso_code");
  if (!handoff) return { error: fragment.get("sso_error") };
  const redeemed = await redeemSsoCode(app, handoff, client.verifier);
  if (redeemed.statusCode !== 200) return { session: false };
  return { session: true, accessToken: redeemed.json<{ accessToken: string }>().accessToken };
}
