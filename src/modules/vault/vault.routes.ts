/** Thin handlers for the vault and its operator. A secret's path is one URL-encoded segment. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/vault.js";
import type { VaultService } from "./vault.service.js";

export function registerVaultRoutes(app: App, deps: { vault: VaultService }) {
  const { vault } = deps;
  const tags = ["vault"];

  app.get(
    "/v1/secrets",
    { config: { requirement: "authenticated" }, schema: { tags, response: { 200: c.secretList } } },
    async (req) => ({ items: await vault.list(req.actor) }),
  );
  app.put(
    "/v1/secrets/:path",
    {
      config: { requirement: "secrets.write" },
      schema: { tags, params: c.secretParams, body: c.putSecretBody, response: { 200: c.secretMeta } },
    },
    async (req) => vault.put(req.actor, req.callContext, req.params.path, req.body),
  );
  app.get(
    "/v1/secrets/:path",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.secretParams, response: { 200: c.secretMeta } },
    },
    async (req) => vault.meta(req.actor, req.params.path),
  );
  app.get(
    "/v1/secrets/:path/value",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.secretParams, querystring: c.secretValueQuery, response: { 200: c.secretValue } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return vault.read(req.actor, req.callContext, req.params.path, req.query.version);
    },
  );
  app.get(
    "/v1/secrets/:path/versions",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.secretParams, response: { 200: c.secretVersions } },
    },
    async (req) => vault.versions(req.actor, req.params.path),
  );
  app.post(
    "/v1/secrets/:path/checkout",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.secretParams, body: c.checkoutBody, response: { 200: c.checkout } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return vault.checkout(req.actor, req.callContext, req.params.path, req.body);
    },
  );
  app.post(
    "/v1/secrets/:path/checkin",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.secretParams, response: { 200: c.checkinResult } },
    },
    async (req) => vault.checkin(req.actor, req.callContext, req.params.path),
  );

  app.post(
    "/v1/secrets/:path/rotate",
    {
      config: { requirement: "secrets.write" },
      schema: { tags, params: c.secretParams, response: { 200: c.rotateResult } },
    },
    async (req) => vault.rotate(req.actor, req.callContext, req.params.path),
  );

  app.put(
    "/v1/secrets/:path/targets/:target",
    {
      config: { requirement: "vault.operate" },
      schema: { tags, params: c.allowanceParams, response: { 200: c.allowanceResult } },
    },
    async (req) => vault.allowForTarget(req.actor, req.callContext, req.params.path, req.params.target),
  );
  app.delete(
    "/v1/secrets/:path/targets/:target",
    { config: { requirement: "vault.operate" }, schema: { tags, params: c.allowanceParams } },
    async (req, reply) => {
      await vault.disallowForTarget(req.actor, req.callContext, req.params.path, req.params.target);
      return reply.code(204).send();
    },
  );

  app.post(
    "/v1/secrets/:path/reveal",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.secretParams, body: c.revealBody, response: { 200: c.revealResult } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return vault.reveal(req.actor, req.callContext, req.params.path, req.body.reason);
    },
  );

  app.get(
    "/v1/operator/status",
    { config: { requirement: "vault.operate" }, schema: { tags, response: { 200: c.vaultStatus } } },
    async () => vault.status(),
  );
  app.post(
    "/v1/operator/init",
    {
      config: { requirement: "vault.operate" },
      schema: { tags, body: c.initBody, response: { 200: c.initResult } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return vault.init(req.actor, req.callContext, req.body);
    },
  );
  app.post(
    "/v1/operator/unseal",
    {
      config: { requirement: "vault.operate" },
      schema: { tags, body: c.unsealBody, response: { 200: c.vaultStatus } },
    },
    async (req) => vault.unseal(req.actor, req.callContext, req.body.share),
  );
  app.post(
    "/v1/operator/seal",
    { config: { requirement: "vault.operate" }, schema: { tags, response: { 200: c.vaultStatus } } },
    async (req) => vault.seal(req.actor, req.callContext),
  );
  app.post(
    "/v1/operator/rotate-key",
    { config: { requirement: "vault.operate" }, schema: { tags, response: { 200: c.rotateKeyResult } } },
    async (req) => vault.rotateKey(req.actor, req.callContext),
  );
}
