/** Thin handlers for activation requests, the check API and activation tokens. */
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { NAME_PATTERN } from "../../contract/common.js";
import type { App } from "../../http/app.js";
import type { z } from "zod";
import * as c from "../../contract/requests.js";
import type { RequestService } from "./requests.service.js";
import type { ActivationTokenIssuer } from "./activation-token.js";
import type { ApproverContext } from "./approver-context.js";
import { activationRequestSerializer } from "./request-json.js";

/** The answer of every route that answers an activation request, written by hand (`request-json.ts`). */
const requestAnswer = activationRequestSerializer(serializerCompiler) as never;

export function registerRequestRoutes(
  app: App,
  deps: { requests: RequestService; tokens: ActivationTokenIssuer; approverContext: ApproverContext },
) {
  const { requests } = deps;

  app.get(
    "/v1/me/roles",
    { config: { requirement: "authenticated" }, schema: { tags: ["requests"], response: { 200: c.myRoles } } },
    async (req) => ({
      items: await requests.myRoles(req.actor),
    }),
  );

  app.post(
    "/v1/activation-requests",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["requests"], body: c.submitActivation, response: { 201: c.activationRequest } },
      serializerCompiler: requestAnswer,
    },
    async (req, reply) => {
      reply.code(201);
      return requests.submit(req.actor, req.body, req.callContext);
    },
  );

  app.get(
    "/v1/activation-requests",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["requests"], querystring: c.requestListQuery, response: { 200: c.requestList } },
    },
    async (req) => ({
      items: await requests.list(req.actor, {
        scope: req.query.scope,
        states: req.query.state ? [req.query.state] : undefined,
        role: req.query.role,
        limit: req.query.limit,
      }),
    }),
  );

  app.get(
    "/v1/activation-requests/:id",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["requests"], params: c.requestIdParams, response: { 200: c.activationRequest } },
      serializerCompiler: requestAnswer,
    },
    async (req) => requests.get(req.actor, req.params.id),
  );

  // Authorized by being an approver of the request's current stage (the service checks), not by a platform role.
  app.get(
    "/v1/activation-requests/:id/context",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["requests"], params: c.requestIdParams, response: { 200: c.approverContext } },
    },
    async (req) => deps.approverContext.context(req.actor, req.params.id),
  );

  app.post(
    "/v1/activation-requests/:id/approvals",
    {
      config: { requirement: "authenticated" },
      schema: {
        tags: ["requests"],
        params: c.requestIdParams,
        body: c.approveBody.optional(),
        response: { 200: c.activationRequest },
      },
      serializerCompiler: requestAnswer,
    },
    async (req) =>
      requests.decide(req.actor, req.params.id, "approve", req.body?.reason, req.callContext, req.body?.linkToken),
  );

  app.post(
    "/v1/activation-requests/:id/denials",
    {
      config: { requirement: "authenticated" },
      schema: {
        tags: ["requests"],
        params: c.requestIdParams,
        body: c.denyBody,
        response: { 200: c.activationRequest },
      },
      serializerCompiler: requestAnswer,
    },
    async (req) =>
      requests.decide(req.actor, req.params.id, "deny", req.body.reason, req.callContext, req.body.linkToken),
  );

  app.post(
    "/v1/activation-requests/:id/cancel",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["requests"], params: c.requestIdParams, response: { 200: c.activationRequest } },
      serializerCompiler: requestAnswer,
    },
    async (req) => requests.cancel(req.actor, req.params.id, req.callContext),
  );

  app.post(
    "/v1/activation-requests/:id/revoke",
    {
      config: { requirement: "requests.revoke" },
      schema: {
        tags: ["requests"],
        params: c.requestIdParams,
        body: c.revokeBody,
        response: { 200: c.activationRequest },
      },
      serializerCompiler: requestAnswer,
    },
    async (req) => requests.revoke(req.actor, req.params.id, req.body.reason, req.callContext),
  );

  app.post(
    "/v1/me/roles/:role/deactivate",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["requests"], params: c.roleParams, response: { 200: c.activationRequest } },
      serializerCompiler: requestAnswer,
    },
    async (req) => requests.deactivate(req.actor, req.params.role, req.callContext),
  );

  app.post(
    "/v1/me/roles/:role/extensions",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["requests"], params: c.roleParams, body: c.extendBody, response: { 201: c.activationRequest } },
      serializerCompiler: requestAnswer,
    },
    async (req, reply) => {
      reply.code(201);
      return requests.extend(req.actor, req.params.role, req.body, req.callContext);
    },
  );

  app.get(
    "/v1/check",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["check"], querystring: c.checkQuery, response: { 200: c.checkResult } },
      // Typed per route by Fastify; these are written for the zod schemas they are given.
      validatorCompiler: checkQueryValidator as never,
      serializerCompiler: checkResultSerializer as never,
      // ~200 bytes, never worth compressing: the hottest route carries no compression hooks at all.
      compress: false,
    },
    // Not async: an answer from memory is sent in this turn (no promise); the database's comes as a promise.
    (req) =>
      requests.checkNow(req.actor, req.query.principal, req.query.role) ??
      requests.check(req.actor, req.query.principal, req.query.role),
  );
  // The plain answer from memory goes out before Fastify sees the request (http/fast-path.ts: same answer,
  // same headers; anything else, refusals included, comes to the route above).
  app.fastGet("/v1/check", (query, actor) => {
    const asked = plainCheckQuery(query);
    const answer = asked && requests.checkNow(actor, asked.principal, asked.role);
    return answer ? checkAnswerJson(answer) : undefined;
  });

  app.post(
    "/v1/tokens/activation",
    { config: { requirement: "authenticated" }, schema: { tags: ["check"], response: { 200: c.activationToken } } },
    async (req) => deps.tokens.issue(req.actor),
  );
}

type CheckResult = z.infer<typeof c.checkResult>;

/**
 * The check API's query (`principal` and `role`, both names, nothing else) checked by a loop and a pattern
 * instead of zod's object walk; anything else goes to zod, which answers as on any route (same errors).
 * A test holds it to zod's verdict on arbitrary queries.
 */
export const checkQueryValidator: typeof validatorCompiler = (route) => {
  const checked = validatorCompiler(route);
  if (route.httpPart !== "querystring") return checked;
  return (data: unknown) => {
    if (typeof data === "object" && data !== null) {
      const query = data as Record<string, unknown>;
      let keys = 0;
      for (const key in query) if (Object.hasOwn(query, key)) keys++;
      const { principal, role } = query;
      if (
        keys === 2 &&
        typeof principal === "string" &&
        typeof role === "string" &&
        NAME_PATTERN.test(principal) &&
        NAME_PATTERN.test(role)
      )
        return { value: { principal, role } };
    }
    return checked(data);
  };
};

/**
 * The check API's answer (callers ask it before every privileged action, so it is the hottest route) is
 * written from its six listed fields, their types checked, instead of parsed by zod on its way out (zod's
 * object walk and its date-time and UUID patterns: 3–4% of the server's CPU under load). Nothing unlisted can
 * leak (only these fields are written); an answer of another shape goes to zod, which refuses it as on any
 * route. The zod schema stays the route's schema: the OpenAPI document is unchanged.
 */
export const checkResultSerializer: typeof serializerCompiler = (route) => {
  const checked = serializerCompiler(route);
  if (route.httpStatus !== "200") return checked;
  return (data: unknown) => checkAnswerJson(data) ?? checked(data);
};

/** The check answer's JSON text from its six fields, or undefined when `data` is not of that shape. */
export function checkAnswerJson(data: unknown): string | undefined {
  const answer = data as CheckResult;
  if (
    typeof answer !== "object" ||
    answer === null ||
    typeof answer.principal !== "string" ||
    typeof answer.role !== "string" ||
    typeof answer.allowed !== "boolean" ||
    typeof answer.reason !== "string" ||
    (answer.expiresAt !== null && typeof answer.expiresAt !== "string") ||
    (answer.requestId !== null && typeof answer.requestId !== "string")
  )
    return undefined;
  return (
    `{"principal":${jsonText(answer.principal)},"role":${jsonText(answer.role)},"allowed":${answer.allowed},` +
    `"reason":${jsonText(answer.reason)},"expiresAt":${answer.expiresAt === null ? "null" : jsonText(answer.expiresAt)},` +
    `"requestId":${answer.requestId === null ? "null" : jsonText(answer.requestId)}}`
  );
}

/**
 * The check API's query for the fast path: exactly `principal=<name>&role=<name>` (either order), both
 * names as the contract's pattern has them (no escape, no `+`: the URL's text is the value), else undefined
 * (the route parses and validates it then). A test holds it to the route's verdict.
 */
export function plainCheckQuery(query: string): { principal: string; role: string } | undefined {
  const amp = query.indexOf("&");
  if (amp === -1) return undefined;
  // The two values sliced straight from the query (no slice per field first: this runs on every check).
  let principal: string;
  let role: string;
  if (query.startsWith("principal=") && query.startsWith("role=", amp + 1)) {
    principal = query.slice(10, amp);
    role = query.slice(amp + 6);
  } else if (query.startsWith("role=") && query.startsWith("principal=", amp + 1)) {
    role = query.slice(5, amp);
    principal = query.slice(amp + 11);
  } else return undefined;
  return NAME_PATTERN.test(principal) && NAME_PATTERN.test(role) ? { principal, role } : undefined;
}

/** Text that needs no escaping in JSON (names, reasons, ISO times, UUIDs): quoted as it is, else by JSON.stringify. */
const PLAIN_TEXT = /^[\w .:+-]*$/;
const jsonText = (text: string) => (PLAIN_TEXT.test(text) ? `"${text}"` : JSON.stringify(text));
