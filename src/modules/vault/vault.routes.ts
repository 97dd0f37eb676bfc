/** Thin handlers for the vault and its operator. A secret's path is one URL-encoded segment. */
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import type { z } from "zod";
import type { App } from "../../http/app.js";
import { fastFailure } from "../../http/fast-path.js";
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
      // Typed per route by Fastify; these are written for the zod schemas they are given.
      validatorCompiler: secretValueValidator as never,
      serializerCompiler: secretValueSerializer as never,
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      // A read the fast path began and that failed (its audit batch): that error, not a second read.
      fastFailure(req.raw);
      return vault.read(req.actor, req.callContext, req.params.path, req.query.version);
    },
  );
  // The plain read decided from memory goes out before Fastify sees the request (http/fast-path.ts: same
  // answer, same headers, its audit event committed first); anything else, refusals included, comes to the
  // route above, which answers a failure of the fast path's read with its error.
  // A read from memory answers with the one object kept per version: its body is written once.
  const bodies = new WeakMap<object, string>();
  app.fastGet("/v1/secrets/:path/value", (param, actor, request) => {
    const path = plainSecretPath(param);
    if (path === undefined) return undefined;
    return vault.readFromMemoryOnly(actor, request.context(), path).then((read) => {
      if (read === null) return undefined;
      const kept = bodies.get(read);
      if (kept !== undefined) return kept;
      // Recorded already: an answer of another shape is the route's serializer's error, not a second read.
      const json = secretValueJson(read);
      if (json === undefined) throw new Error("a secret read's answer does not match its schema");
      if (Object.isFrozen(read)) bodies.set(read, json);
      return json;
    });
  });
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

type SecretValue = z.infer<typeof c.secretValue>;

const SECRET_PATH = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;
const KINDS: ReadonlySet<unknown> = new Set(c.secretKind.options);

/** The own enumerable keys of `data` (an object). */
function keyCount(data: object): number {
  let keys = 0;
  for (const key in data) if (Object.hasOwn(data, key)) keys++;
  return keys;
}

/**
 * The secret path a read's URL segment names when it is plainly one (lower-case letters, digits, `._-`, its
 * slashes sent as `%2F`: what the parameters' validator takes at once), else undefined: Fastify's to decode.
 */
export function plainSecretPath(segment: string): string | undefined {
  if (!PLAIN_SEGMENT.test(segment)) return undefined;
  const path = segment.replace(/%2f/gi, "/");
  return SECRET_PATH.test(path) ? path : undefined;
}
const PLAIN_SEGMENT = /^(?:[a-z0-9._-]|%2[fF])+$/;

/**
 * A read's parameters (the path, nothing else) and query (none: the current version) checked by a
 * pattern and a count instead of zod's object walk; anything else goes to zod, which answers as on any
 * route (same value, same errors). A test holds it to zod's verdict on arbitrary input.
 */
export const secretValueValidator: typeof validatorCompiler = (route) => {
  const checked = validatorCompiler(route);
  if (route.httpPart === "params")
    return (data: unknown) => {
      if (typeof data === "object" && data !== null && keyCount(data) === 1) {
        const { path } = data as Record<string, unknown>;
        if (typeof path === "string" && path.length <= 200 && SECRET_PATH.test(path)) return { value: { path } };
      }
      return checked(data);
    };
  if (route.httpPart === "querystring")
    return (data: unknown) =>
      typeof data === "object" && data !== null && keyCount(data) === 0 ? { value: {} } : checked(data);
  return checked;
};

/**
 * A read's answer written from its four listed fields, their types checked, instead of parsed by zod on
 * its way out: nothing unlisted can leak, and an answer of another shape goes to zod, which refuses it as
 * on any route. The zod schema stays the route's schema (the OpenAPI document is unchanged).
 */
export const secretValueSerializer: typeof serializerCompiler = (route) => {
  const checked = serializerCompiler(route);
  if (route.httpStatus !== "200") return checked;
  return (data: unknown) => secretValueJson(data) ?? checked(data);
};

function secretValueJson(data: unknown): string | undefined {
  const answer = data as SecretValue;
  if (
    typeof answer !== "object" ||
    answer === null ||
    typeof answer.path !== "string" ||
    !Number.isSafeInteger(answer.version) ||
    !KINDS.has(answer.kind) ||
    typeof answer.value !== "string"
  )
    return undefined;
  return (
    `{"path":${JSON.stringify(answer.path)},"version":${answer.version},"kind":"${answer.kind}",` +
    `"value":${JSON.stringify(answer.value)}}`
  );
}
