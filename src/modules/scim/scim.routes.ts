/**
 * SCIM 2.0 at /scim/v2 (RFC 7644): thin handlers around the SCIM service, answering in SCIM's media type and with
 * SCIM's error shape. Authentication is Stint's (a service identity's API token as the bearer); the service decides
 * whether that identity may provision.
 */
import { z } from "zod";
import type { FastifyReply } from "fastify";
import type { App } from "../../http/app.js";
import { isStintError } from "../../lib/errors.js";
import { ScimError, SCHEMA_ERROR } from "./scim.rules.js";
import type { ScimService } from "./scim.service.js";

const SCIM_TYPE = "application/scim+json";
const resource = z.looseObject({ schemas: z.array(z.string()) });
const idParam = z.strictObject({ id: z.string().min(1).max(64) });
const listQuery = z.strictObject({
  filter: z.string().max(1024).optional(),
  startIndex: z.coerce.number().int().optional(),
  count: z.coerce.number().int().optional(),
  attributes: z.string().max(1024).optional(),
  excludedAttributes: z.string().max(1024).optional(),
});

function sendScimError(reply: FastifyReply, status: number, detail: string, scimType?: string) {
  if (status === 401) reply.header("www-authenticate", 'Bearer realm="stint"');
  void reply
    .code(status)
    .type(SCIM_TYPE)
    .send({ schemas: [SCHEMA_ERROR], status: String(status), ...(scimType ? { scimType } : {}), detail });
}

export function registerScimRoutes(app: App, deps: { scim: ScimService }) {
  const { scim } = deps;
  void app.register(async (scope: App) => {
    scope.setErrorHandler((error: unknown, request, reply) => {
      if (error instanceof ScimError) return sendScimError(reply, error.status, error.message, error.scimType);
      if (isStintError(error)) return sendScimError(reply, error.status, error.message);
      const validation = (error as { validation?: unknown }).validation;
      if (validation) return sendScimError(reply, 400, "The request is not valid SCIM.", "invalidSyntax");
      const status = (error as { statusCode?: number }).statusCode;
      if (typeof status === "number" && status >= 400 && status < 500)
        return sendScimError(reply, status, "The request is not valid SCIM.", "invalidSyntax");
      request.log.error({ err: error }, "SCIM request failed");
      return sendScimError(reply, 500, "Something went wrong; it was logged.");
    });
    scope.addHook("onSend", async (_request, reply, payload) => {
      if (String(reply.getHeader("content-type") ?? "").startsWith("application/json")) reply.type(SCIM_TYPE);
      return payload;
    });
    const tags = ["scim"];
    const config = { requirement: "authenticated" as const };
    const ifMatch = (headers: Record<string, unknown>) =>
      typeof headers["if-match"] === "string" ? headers["if-match"] : undefined;

    scope.get(
      "/scim/v2/ServiceProviderConfig",
      { config, schema: { tags, response: { 200: resource } } },
      async () => ({
        schemas: ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        patch: { supported: true },
        bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
        filter: { supported: true, maxResults: 200 },
        changePassword: { supported: false },
        sort: { supported: false },
        etag: { supported: true },
        authenticationSchemes: [
          {
            type: "oauthbearertoken",
            name: "Bearer token",
            description: "A Stint API token of a service identity named in scimServices",
          },
        ],
      }),
    );

    scope.get(
      "/scim/v2/Users",
      { config, schema: { tags, querystring: listQuery, response: { 200: resource } } },
      async (req) => scim.listUsers(req.actor, req.query),
    );
    scope.post(
      "/scim/v2/Users",
      { config, schema: { tags, body: z.unknown(), response: { 201: resource } } },
      async (req, reply) => {
        const created = await scim.createUser(req.actor, req.body, req.callContext);
        reply.code(201).header("location", created.meta.location).header("etag", created.meta.version);
        return created;
      },
    );
    scope.get(
      "/scim/v2/Users/:id",
      { config, schema: { tags, params: idParam, response: { 200: resource } } },
      async (req, reply) => {
        const user = await scim.getUser(req.actor, req.params.id);
        reply.header("etag", user.meta.version);
        return user;
      },
    );
    scope.put(
      "/scim/v2/Users/:id",
      { config, schema: { tags, params: idParam, body: z.unknown(), response: { 200: resource } } },
      async (req, reply) => {
        const user = await scim.replaceUser(req.actor, req.params.id, req.body, ifMatch(req.headers), req.callContext);
        reply.header("etag", user.meta.version);
        return user;
      },
    );
    scope.patch(
      "/scim/v2/Users/:id",
      { config, schema: { tags, params: idParam, body: z.unknown(), response: { 200: resource } } },
      async (req, reply) => {
        const user = await scim.patchUser(req.actor, req.params.id, req.body, ifMatch(req.headers), req.callContext);
        reply.header("etag", user.meta.version);
        return user;
      },
    );
    scope.delete("/scim/v2/Users/:id", { config, schema: { tags, params: idParam } }, async (req, reply) => {
      await scim.deleteUser(req.actor, req.params.id, req.callContext);
      return reply.code(204).send();
    });

    scope.get(
      "/scim/v2/Groups",
      { config, schema: { tags, querystring: listQuery, response: { 200: resource } } },
      async (req) => scim.listGroups(req.actor, req.query),
    );
    scope.post(
      "/scim/v2/Groups",
      { config, schema: { tags, body: z.unknown(), response: { 201: resource } } },
      async (req, reply) => {
        const created = await scim.createGroup(req.actor, req.body, req.callContext);
        reply.code(201).header("location", created.meta.location);
        return created;
      },
    );
    scope.get(
      "/scim/v2/Groups/:id",
      { config, schema: { tags, params: idParam, response: { 200: resource } } },
      async (req) => scim.getGroup(req.actor, req.params.id),
    );
    scope.patch(
      "/scim/v2/Groups/:id",
      { config, schema: { tags, params: idParam, body: z.unknown(), response: { 200: resource } } },
      async (req) => scim.patchGroup(req.actor, req.params.id, req.body, req.callContext),
    );
    scope.delete("/scim/v2/Groups/:id", { config, schema: { tags, params: idParam } }, async (req, reply) => {
      await scim.deleteGroup(req.actor, req.params.id, req.callContext);
      return reply.code(204).send();
    });
  });
}
