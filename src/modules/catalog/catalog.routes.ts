/** Thin handlers for the catalog and configuration as code: contract schemas in, service call, contract schemas out. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/catalog-api.js";
import { ok } from "../../contract/common.js";
import type { z } from "zod";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { CatalogService } from "./catalog.service.js";

const read = { requirement: "catalog.read" } as const;
const write = { requirement: "catalog.write" } as const;

export function registerCatalogRoutes(app: App, deps: { catalog: CatalogService }) {
  const { catalog } = deps;

  // Targets, policies and roles: one shape each, named by `:ref` (name or id); each kind declares its path, its
  // schemas and the service's calls, which take the route's arguments as they come.
  registerNamedKind(
    app,
    "/v1/targets",
    { input: c.targetInput, item: c.target, list: c.targetList },
    {
      list: catalog.listTargets,
      get: catalog.getTarget,
      create: catalog.createTarget,
      update: catalog.updateTarget,
      remove: catalog.deleteTarget,
    },
  );
  registerNamedKind(
    app,
    "/v1/policies",
    { input: c.policyInput, item: c.policy, list: c.policyList },
    {
      list: catalog.listPolicies,
      get: catalog.getPolicy,
      create: catalog.createPolicy,
      update: catalog.updatePolicy,
      remove: catalog.deletePolicy,
    },
  );
  registerNamedKind(
    app,
    "/v1/roles",
    { input: c.roleInput, item: c.role, list: c.roleList },
    {
      list: catalog.listRoles,
      get: catalog.getRole,
      create: catalog.createRole,
      update: catalog.updateRole,
      remove: catalog.deleteRole,
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
    {
      config: write,
      schema: { tags: ["catalog"], body: c.eligibilityInput, response: { 201: c.eligibility, 202: c.heldWrite } },
    },
    async (req, reply) => {
      const result = await catalog.createEligibility(req.actor, req.body, req.callContext);
      reply.code(c.isHeldWrite(result) ? 202 : 201);
      return result;
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
      schema: {
        tags: ["catalog"],
        params: c.idParam,
        body: c.eligibilityUpdate,
        response: { 200: c.eligibility, 202: c.heldWrite },
      },
    },
    async (req, reply) => {
      const result = await catalog.updateEligibility(req.actor, req.params.id, req.body, req.callContext);
      if (c.isHeldWrite(result)) reply.code(202);
      return result;
    },
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

/** What a named catalog kind's routes call: read with `catalog.read`, write with `catalog.write`. */
interface NamedKindCalls<I, O> {
  list(actor: Actor): Promise<O[]>;
  get(actor: Actor, ref: string): Promise<O>;
  create(actor: Actor, input: I, context: CallContext): Promise<O | c.HeldWriteDto>;
  /** `{ changeRequest }` (202) when four-eyes holds the change for a second admin. */
  update(actor: Actor, ref: string, input: I, context: CallContext): Promise<O | c.HeldWriteDto>;
  remove(actor: Actor, ref: string, context: CallContext): Promise<void>;
}

/**
 * The five routes of a kind named by `:ref`: GET the list, POST (201), GET/PUT/DELETE one; a POST or PUT that
 * four-eyes holds answers 202 with `{ changeRequest }`. The contract's
 * schemas validate the input and shape the answers, as for every route.
 */
function registerNamedKind<I extends z.ZodType, O>(
  app: App,
  path: string,
  // The answers' schemas are plain ZodType: they shape what is sent, the calls' types are checked at the call.
  schemas: { input: I; item: z.ZodType; list: z.ZodType },
  calls: NamedKindCalls<z.infer<I>, O>,
) {
  const { input, item, list } = schemas;
  const one = `${path}/:ref`;
  app.get(path, { config: read, schema: { tags: ["catalog"], response: { 200: list } } }, async (req) => ({
    items: await calls.list(req.actor),
  }));
  app.post(
    path,
    { config: write, schema: { tags: ["catalog"], body: input, response: { 201: item, 202: c.heldWrite } } },
    async (req, reply) => {
      const result = await calls.create(req.actor, req.body as z.infer<I>, req.callContext);
      reply.code(c.isHeldWrite(result) ? 202 : 201);
      return result;
    },
  );
  app.get(
    one,
    { config: read, schema: { tags: ["catalog"], params: c.refParam, response: { 200: item } } },
    async (req) => calls.get(req.actor, req.params.ref),
  );
  app.put(
    one,
    {
      config: write,
      schema: { tags: ["catalog"], params: c.refParam, body: input, response: { 200: item, 202: c.heldWrite } },
    },
    async (req, reply) => {
      const result = await calls.update(req.actor, req.params.ref, req.body as z.infer<I>, req.callContext);
      if (c.isHeldWrite(result)) reply.code(202);
      return result;
    },
  );
  app.delete(
    one,
    { config: write, schema: { tags: ["catalog"], params: c.refParam, response: { 200: ok } } },
    async (req) => {
      await calls.remove(req.actor, req.params.ref, req.callContext);
      return { ok: true as const };
    },
  );
}
