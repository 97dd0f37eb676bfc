/** Thin handlers for the catalog and configuration as code: contract schemas in, service call, contract schemas out. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/catalog-api.js";
import { ok } from "../../contract/common.js";
import type { CatalogService } from "./catalog.service.js";

export function registerCatalogRoutes(app: App, deps: { catalog: CatalogService }) {
  const { catalog } = deps;
  const read = { requirement: "catalog.read" } as const;
  const write = { requirement: "catalog.write" } as const;

  // Targets
  app.get(
    "/v1/targets",
    { config: read, schema: { tags: ["catalog"], response: { 200: c.targetList } } },
    async (req) => ({
      items: await catalog.listTargets(req.actor),
    }),
  );
  app.post(
    "/v1/targets",
    { config: write, schema: { tags: ["catalog"], body: c.targetInput, response: { 201: c.target } } },
    async (req, reply) => {
      reply.code(201);
      return catalog.createTarget(req.actor, req.body, req.callContext);
    },
  );
  app.get(
    "/v1/targets/:ref",
    { config: read, schema: { tags: ["catalog"], params: c.refParam, response: { 200: c.target } } },
    async (req) => catalog.getTarget(req.actor, req.params.ref),
  );
  app.put(
    "/v1/targets/:ref",
    {
      config: write,
      schema: { tags: ["catalog"], params: c.refParam, body: c.targetInput, response: { 200: c.target } },
    },
    async (req) => catalog.updateTarget(req.actor, req.params.ref, req.body, req.callContext),
  );
  app.delete(
    "/v1/targets/:ref",
    { config: write, schema: { tags: ["catalog"], params: c.refParam, response: { 200: ok } } },
    async (req) => {
      await catalog.deleteTarget(req.actor, req.params.ref, req.callContext);
      return { ok: true as const };
    },
  );

  // Policies
  app.get(
    "/v1/policies",
    { config: read, schema: { tags: ["catalog"], response: { 200: c.policyList } } },
    async (req) => ({ items: await catalog.listPolicies(req.actor) }),
  );
  app.post(
    "/v1/policies",
    { config: write, schema: { tags: ["catalog"], body: c.policyInput, response: { 201: c.policy } } },
    async (req, reply) => {
      reply.code(201);
      return catalog.createPolicy(req.actor, req.body, req.callContext);
    },
  );
  app.get(
    "/v1/policies/:ref",
    { config: read, schema: { tags: ["catalog"], params: c.refParam, response: { 200: c.policy } } },
    async (req) => catalog.getPolicy(req.actor, req.params.ref),
  );
  app.put(
    "/v1/policies/:ref",
    {
      config: write,
      schema: { tags: ["catalog"], params: c.refParam, body: c.policyInput, response: { 200: c.policy } },
    },
    async (req) => catalog.updatePolicy(req.actor, req.params.ref, req.body, req.callContext),
  );
  app.delete(
    "/v1/policies/:ref",
    { config: write, schema: { tags: ["catalog"], params: c.refParam, response: { 200: ok } } },
    async (req) => {
      await catalog.deletePolicy(req.actor, req.params.ref, req.callContext);
      return { ok: true as const };
    },
  );

  // Roles
  app.get("/v1/roles", { config: read, schema: { tags: ["catalog"], response: { 200: c.roleList } } }, async (req) => ({
    items: await catalog.listRoles(req.actor),
  }));
  app.post(
    "/v1/roles",
    { config: write, schema: { tags: ["catalog"], body: c.roleInput, response: { 201: c.role } } },
    async (req, reply) => {
      reply.code(201);
      return catalog.createRole(req.actor, req.body, req.callContext);
    },
  );
  app.get(
    "/v1/roles/:ref",
    { config: read, schema: { tags: ["catalog"], params: c.refParam, response: { 200: c.role } } },
    async (req) => catalog.getRole(req.actor, req.params.ref),
  );
  app.put(
    "/v1/roles/:ref",
    { config: write, schema: { tags: ["catalog"], params: c.refParam, body: c.roleInput, response: { 200: c.role } } },
    async (req) => catalog.updateRole(req.actor, req.params.ref, req.body, req.callContext),
  );
  app.delete(
    "/v1/roles/:ref",
    { config: write, schema: { tags: ["catalog"], params: c.refParam, response: { 200: ok } } },
    async (req) => {
      await catalog.deleteRole(req.actor, req.params.ref, req.callContext);
      return { ok: true as const };
    },
  );

  // Eligibility
  app.get(
    "/v1/eligibilities",
    {
      config: read,
      schema: { tags: ["catalog"], querystring: c.eligibilityQuery, response: { 200: c.eligibilityList } },
    },
    async (req) => ({ items: await catalog.listEligibilities(req.actor, req.query) }),
  );
  app.post(
    "/v1/eligibilities",
    { config: write, schema: { tags: ["catalog"], body: c.eligibilityInput, response: { 201: c.eligibility } } },
    async (req, reply) => {
      reply.code(201);
      return catalog.createEligibility(req.actor, req.body, req.callContext);
    },
  );
  app.get(
    "/v1/eligibilities/:id",
    { config: read, schema: { tags: ["catalog"], params: c.idParam, response: { 200: c.eligibility } } },
    async (req) => catalog.getEligibility(req.actor, req.params.id),
  );
  app.put(
    "/v1/eligibilities/:id",
    {
      config: write,
      schema: { tags: ["catalog"], params: c.idParam, body: c.eligibilityUpdate, response: { 200: c.eligibility } },
    },
    async (req) => catalog.updateEligibility(req.actor, req.params.id, req.body, req.callContext),
  );
  app.delete(
    "/v1/eligibilities/:id",
    {
      config: write,
      // The body is optional: a request without one arrives as null.
      schema: { tags: ["catalog"], params: c.idParam, body: c.eligibilityRemoval.nullish(), response: { 200: ok } },
    },
    async (req) => {
      await catalog.removeEligibility(req.actor, req.params.id, req.body?.reason, req.callContext);
      return { ok: true as const };
    },
  );

  // Configuration as code
  app.get(
    "/v1/config/export",
    { config: read, schema: { tags: ["config"], response: { 200: c.configExport } } },
    async (req) => ({ yaml: await catalog.exportConfig(req.actor) }),
  );
  app.post(
    "/v1/config/diff",
    { config: read, schema: { tags: ["config"], body: c.configRequest, response: { 200: c.configPlan } } },
    async (req) => catalog.diffConfig(req.actor, req.body.yaml),
  );
  app.post(
    "/v1/config/apply",
    { config: write, schema: { tags: ["config"], body: c.configRequest, response: { 200: c.configApplyResult } } },
    async (req) => catalog.applyConfig(req.actor, req.body.yaml, req.callContext),
  );
}
