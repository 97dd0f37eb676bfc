/** Thin handlers of single sign-on: contract schemas in, service call, contract schemas (or a redirect) out. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/sso.js";
import { tokenPair } from "../../contract/identity.js";
import type { SsoService } from "./sso.service.js";

export function registerSsoRoutes(app: App, deps: { sso: SsoService }) {
  const { sso } = deps;

  app.get(
    "/v1/auth/sso/providers",
    { config: { requirement: "public" }, schema: { tags: ["auth"], response: { 200: c.providerList } } },
    async () => ({ items: sso.providers() }),
  );

  // The browser goes here (a link, not an API call): it is sent on to the provider.
  app.get(
    "/v1/auth/sso/:provider/login",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], params: c.providerParam, querystring: c.startQuery },
    },
    async (req, reply) => {
      const { authorizationUrl } = await sso.start(req.params.provider, {
        clientChallenge: req.query.code_challenge,
        clientRedirect: req.query.redirect_uri,
      });
      reply.header("cache-control", "no-store");
      return reply.redirect(authorizationUrl, 302);
    },
  );

  // The provider sends the browser back here; the answer is a redirect to the web UI or the CLI's loopback.
  app.get(
    "/v1/auth/sso/:provider/callback",
    { config: { requirement: "public" }, schema: { tags: ["auth"], params: c.providerParam } },
    async (req, reply) => {
      const query = new URLSearchParams(req.url.includes("?") ? req.url.slice(req.url.indexOf("?") + 1) : "");
      const { location } = await sso.callback(req.params.provider, query, req.callContext);
      reply.header("cache-control", "no-store");
      reply.header("referrer-policy", "no-referrer");
      return reply.redirect(location, 302);
    },
  );

  app.post(
    "/v1/auth/sso/redeem",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], body: c.redeemRequest, response: { 200: tokenPair } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return sso.redeem(req.body, req.callContext);
    },
  );

  app.post(
    "/v1/auth/sso/:provider/device",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], params: c.providerParam, response: { 200: c.deviceStartResult } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      const started = await sso.deviceStart(req.params.provider, req.callContext);
      return {
        ...started,
        ...(started.verificationUriComplete === undefined
          ? {}
          : { verificationUriComplete: started.verificationUriComplete }),
      };
    },
  );

  app.post(
    "/v1/auth/sso/device/token",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], body: c.deviceTokenRequest, response: { 200: tokenPair } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return sso.devicePoll(req.body.deviceCode, req.callContext);
    },
  );
}
