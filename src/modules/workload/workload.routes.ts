/** Thin handlers: contract schemas in, service call, contract schemas out. */
import { z } from "zod";
import type { App } from "../../http/app.js";
import { ok } from "../../contract/common.js";
import * as c from "../../contract/workload.js";
import type { WorkloadService } from "./workload.service.js";

const serviceParam = z.strictObject({ name: z.string().min(1).max(64) });
const trustParams = z.strictObject({ name: z.string().min(1).max(64), trust: z.string().min(1).max(64) });
const FORM_BODY_LIMIT = 32 * 1024;

export function registerWorkloadRoutes(app: App, deps: { workload: WorkloadService }) {
  const { workload } = deps;

  // RFC 8693 clients send a form; JSON works too. The form parser exists only in this scope.
  void app.register(async (scope: App) => {
    scope.addContentTypeParser(
      /^application\/x-www-form-urlencoded\s*(;|$)/i,
      { parseAs: "string", bodyLimit: FORM_BODY_LIMIT },
      (_req, body, done) => {
        const params = new URLSearchParams(body as string);
        const fields: Record<string, string> = {};
        for (const [key, value] of params) {
          if (Object.hasOwn(fields, key)) {
            done(null, { __duplicate: key });
            return;
          }
          fields[key] = value;
        }
        done(null, fields);
      },
    );
    scope.post(
      "/v1/auth/token-exchange",
      {
        config: { requirement: "public" },
        schema: { tags: ["auth"], body: c.tokenExchangeRequest, response: { 200: c.tokenExchangeResult } },
      },
      async (req, reply) => {
        const result = await workload.exchange(
          { subjectToken: req.body.subject_token, service: req.body.service },
          req.callContext,
        );
        // RFC 6749 §5.1: token responses are not cached.
        reply.header("cache-control", "no-store");
        return {
          access_token: result.accessToken,
          issued_token_type: c.ACCESS_TOKEN_TYPE,
          token_type: "Bearer" as const,
          expires_in: result.expiresIn,
          expires_at: result.expiresAt,
          service: result.service,
        };
      },
    );
  });

  app.get(
    "/v1/services/:name/trusts",
    {
      config: { requirement: "tokens.read" },
      schema: { tags: ["tokens"], params: serviceParam, response: { 200: c.trustList } },
    },
    async (req) => ({ items: await workload.listTrusts(req.actor, req.params.name) }),
  );

  app.post(
    "/v1/services/:name/trusts",
    {
      config: { requirement: "tokens.write" },
      schema: { tags: ["tokens"], params: serviceParam, body: c.createTrustRequest, response: { 201: c.trust } },
    },
    async (req, reply) => {
      reply.code(201);
      return workload.createTrust(req.actor, req.params.name, req.body, req.callContext);
    },
  );

  app.delete(
    "/v1/services/:name/trusts/:trust",
    {
      config: { requirement: "tokens.write" },
      schema: { tags: ["tokens"], params: trustParams, response: { 200: ok } },
    },
    async (req) => {
      await workload.deleteTrust(req.actor, req.params.name, req.params.trust, req.callContext);
      return { ok: true as const };
    },
  );
}
