/** Thin handlers for grants at targets, reconcile, discovery, conversion, credentials and tests. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/grants.js";
import type { GrantService } from "./grants.service.js";

export function registerGrantRoutes(app: App, deps: { grants: GrantService }) {
  const { grants } = deps;
  const tags = ["targets"];

  app.get(
    "/v1/grants",
    {
      config: { requirement: "grants.read" },
      schema: { tags, querystring: c.grantListQuery, response: { 200: c.grantList } },
    },
    async (req) => ({
      items: await grants.listUnsettled(req.actor, {
        stuck: req.query.stuck === "true",
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      }),
    }),
  );

  app.get(
    "/v1/me/roles/:role/credentials",
    {
      config: { requirement: "authenticated" },
      schema: {
        tags,
        params: c.credentialsParams,
        querystring: c.credentialsQuery,
        response: { 200: c.dbCredentials },
      },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      const wait = req.query.wait ?? 0;
      if (wait === 0) return grants.credentials(req.actor, req.callContext, req.params.role);
      // A caller that hangs up stops the wait.
      const gone = new AbortController();
      const hangUp = () => gone.abort();
      reply.raw.once("close", hangUp);
      try {
        return await grants.credentials(req.actor, req.callContext, req.params.role, {
          waitMs: wait * 1000,
          signal: gone.signal,
        });
      } finally {
        reply.raw.off("close", hangUp);
      }
    },
  );

  app.post(
    "/v1/reconcile",
    {
      config: { requirement: "targets.operate" },
      schema: { tags, body: c.reconcileBody.optional(), response: { 200: c.reconcileReport } },
    },
    async (req) => ({ items: await grants.reconcile(req.actor, req.callContext, req.body?.target) }),
  );

  app.post(
    "/v1/targets/:ref/test",
    {
      config: { requirement: "targets.operate" },
      schema: { tags, params: c.targetParams, response: { 200: c.targetTest } },
    },
    async (req) => grants.testTarget(req.actor, req.params.ref),
  );

  app.get(
    "/v1/targets/:ref/discovery",
    {
      config: { requirement: "targets.operate" },
      schema: { tags, params: c.targetParams, response: { 200: c.discoveryList } },
    },
    async (req) => ({
      target: req.params.ref,
      items: await grants.discover(req.actor, req.callContext, req.params.ref),
    }),
  );

  app.post(
    "/v1/targets/:ref/discovery/conversions",
    {
      config: { requirement: "targets.operate" },
      schema: {
        tags,
        params: c.targetParams,
        body: c.convertBody,
        response: { 200: c.convertResult, 202: c.convertResult },
      },
    },
    async (req, reply) => {
      const result = await grants.convert(req.actor, req.callContext, req.params.ref, {
        role: req.body.role,
        logins: req.body.logins ?? null,
        dryRun: req.body.dryRun,
        reason: req.body.reason,
      });
      // Held for a second admin (four-eyes): accepted, nothing changed yet.
      if (result.changeRequest) reply.code(202);
      return result;
    },
  );

  app.put(
    "/v1/targets/:ref/credential",
    {
      config: { requirement: "targets.operate" },
      schema: { tags, params: c.targetParams, body: c.credentialBody, response: { 200: c.credentialResult } },
    },
    async (req) => grants.setCredential(req.actor, req.callContext, req.params.ref, req.body.secret),
  );

  app.delete(
    "/v1/targets/:ref/credential",
    { config: { requirement: "targets.operate" }, schema: { tags, params: c.targetParams } },
    async (req, reply) => {
      await grants.deleteCredential(req.actor, req.callContext, req.params.ref);
      reply.code(204);
    },
  );
}
