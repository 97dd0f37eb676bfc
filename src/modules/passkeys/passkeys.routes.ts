/** Thin handlers of the passkey API: contract schemas in, service call, contract schemas out. */
import { z } from "zod";
import type { App } from "../../http/app.js";
import { ok } from "../../contract/common.js";
import * as c from "../../contract/passkeys.js";
import type { PasskeyService } from "./passkeys.service.js";

const idParam = z.strictObject({ id: z.uuid() });

export function registerPasskeyRoutes(app: App, deps: { passkeys: PasskeyService }) {
  const { passkeys } = deps;

  app.get(
    "/v1/me/webauthn/credentials",
    { config: { requirement: "authenticated" }, schema: { tags: ["me"], response: { 200: c.passkeyList } } },
    async (req) => ({ items: await passkeys.list(req.actor) }),
  );

  app.post(
    "/v1/me/webauthn/registration-options",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["me"], response: { 200: c.webauthnOptions } },
    },
    async (req) => passkeys.registrationOptions(req.actor, req.callContext),
  );

  app.post(
    "/v1/me/webauthn/credentials",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["me"], body: c.registerPasskeyRequest, response: { 201: c.passkey } },
    },
    async (req, reply) => {
      reply.code(201);
      return passkeys.register(req.actor, req.body, req.callContext);
    },
  );

  app.patch(
    "/v1/me/webauthn/credentials/:id",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["me"], params: idParam, body: c.renamePasskeyRequest, response: { 200: c.passkey } },
    },
    async (req) => passkeys.rename(req.actor, req.params.id, req.body.name, req.callContext),
  );

  app.delete(
    "/v1/me/webauthn/credentials/:id",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["me"], params: idParam, response: { 200: ok } },
    },
    async (req) => {
      await passkeys.remove(req.actor, req.params.id, req.callContext);
      return { ok: true as const };
    },
  );

  app.post(
    "/v1/auth/webauthn/step-up-options",
    {
      config: { requirement: "authenticated" },
      // The body is optional: a request without one arrives as null.
      schema: { tags: ["auth"], body: c.stepUpOptionsRequest.nullish(), response: { 200: c.webauthnOptions } },
    },
    async (req) => passkeys.stepUpOptions(req.actor, { handoff: req.body?.handoff }, req.callContext),
  );

  app.post(
    "/v1/auth/webauthn/step-up",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["auth"], body: c.webauthnAssertion, response: { 200: c.webauthnStepUpResult } },
    },
    async (req) => passkeys.stepUp(req.actor, req.body, req.callContext),
  );

  app.post(
    "/v1/auth/step-up-handoffs",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["auth"], response: { 201: c.stepUpHandoff } },
    },
    async (req, reply) => {
      reply.code(201);
      return passkeys.createHandoff(req.actor, req.callContext);
    },
  );

  app.get(
    "/v1/auth/step-up-handoffs/:id",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["auth"], params: idParam, response: { 200: c.stepUpHandoffStatus } },
    },
    async (req) => passkeys.handoffStatus(req.actor, req.params.id),
  );
}
