/** Thin handlers: contract schemas in, service call, contract schemas out. */
import type { FastifyReply } from "fastify";
import { z } from "zod";
import type { App } from "../../http/app.js";
import * as c from "../../contract/identity.js";
import { ok } from "../../contract/common.js";
import { heldWrite, type ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { IdentityService } from "./identity.service.js";
import type { DirectoryService, MaybeHeld } from "./directory.service.js";
import type { Principal } from "./identity.types.js";

const nameParam = z.strictObject({ name: z.string().min(1).max(64) });
const tokenIdParam = z.strictObject({ id: z.uuid() });
const memberParams = z.strictObject({ name: z.string().max(64), principal: z.string().max(64) });

export function registerIdentityRoutes(app: App, deps: { identity: IdentityService; directory: DirectoryService }) {
  const { identity, directory } = deps;

  app.post(
    "/v1/setup/check",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], body: c.setupCheckRequest, response: { 200: c.setupCheckResult } },
    },
    async (req) => identity.checkSetupCode(req.body.code, req.callContext),
  );

  app.post(
    "/v1/setup",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], body: c.setupRequest, response: { 201: c.principal } },
    },
    async (req, reply) => {
      reply.code(201);
      return identity.setup(req.body, req.callContext);
    },
  );

  app.post(
    "/v1/auth/login",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], body: c.loginRequest, response: { 200: c.tokenPair } },
    },
    async (req) => identity.login(req.body, req.callContext),
  );

  app.post(
    "/v1/auth/refresh",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], body: c.refreshRequest, response: { 200: c.tokenPair } },
    },
    async (req) => identity.refresh(req.body.refreshToken, req.callContext),
  );

  app.post(
    "/v1/auth/logout",
    {
      config: { requirement: "authenticated" },
      // The body is optional: a request without one arrives as null.
      schema: { tags: ["auth"], body: c.logoutRequest.nullish(), response: { 200: ok } },
    },
    async (req) => {
      await identity.logout(req.actor, req.callContext);
      return { ok: true as const };
    },
  );

  app.post(
    "/v1/auth/step-up",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["auth"], body: c.stepUpRequest, response: { 200: c.stepUpResult } },
    },
    async (req) => identity.stepUp(req.actor, req.body.otp, req.callContext),
  );

  app.get(
    "/v1/me",
    { config: { requirement: "authenticated" }, schema: { tags: ["me"], response: { 200: c.principal } } },
    async (req) => identity.me(req.actor),
  );

  app.post(
    "/v1/me/mfa/totp",
    { config: { requirement: "authenticated" }, schema: { tags: ["me"], response: { 200: c.totpEnrollment } } },
    async (req) => identity.startTotpEnrollment(req.actor, req.callContext),
  );

  app.post(
    "/v1/me/mfa/totp/confirm",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["me"], body: c.totpConfirmRequest, response: { 200: c.recoveryCodes } },
    },
    async (req) => identity.confirmTotpEnrollment(req.actor, req.body.code, req.callContext),
  );

  app.post(
    "/v1/me/password",
    {
      config: { requirement: "authenticated" },
      schema: { tags: ["me"], body: c.changePasswordRequest, response: { 200: ok } },
    },
    async (req) => {
      await identity.changePassword(req.actor, req.body, req.callContext);
      return { ok: true as const };
    },
  );

  app.get(
    "/v1/users",
    { config: { requirement: "users.read" }, schema: { tags: ["users"], response: { 200: c.principalList } } },
    async (req) => ({
      items: await directory.listPrincipals(req.actor),
    }),
  );

  app.post(
    "/v1/users",
    {
      config: { requirement: "users.write" },
      schema: { tags: ["users"], body: c.createUserRequest, response: { 201: c.createdUser, 202: c.heldUserWrite } },
    },
    // 202 when four-eyes holds an approver role: the user is made without it, the change request answered.
    // With `invite: true`, the user and their invite are made in one transaction (create-principal.ts).
    async (req, reply) => {
      const { invite, ...created } = await directory.createPrincipal(req.actor, req.body, req.callContext);
      const answer = heldOr(201, created);
      reply.code(answer.code);
      return invite ? { ...answer.body, invite } : answer.body;
    },
  );

  app.post(
    "/v1/users/:name/invite",
    {
      config: { requirement: "users.write" },
      schema: { tags: ["users"], params: nameParam, response: { 201: c.inviteIssued } },
    },
    // Issues (or reissues, replacing the open one) a one-time invite for a user without a password.
    async (req, reply) => {
      reply.code(201);
      return identity.issueInvite(req.actor, req.params.name, req.callContext);
    },
  );

  app.post(
    "/v1/invites/redeem",
    {
      config: { requirement: "public" },
      schema: { tags: ["auth"], body: c.redeemInviteRequest, response: { 200: ok } },
    },
    // The code travels in the body only, never in a URL.
    async (req) => identity.redeemInvite(req.body, req.callContext),
  );

  app.get(
    "/v1/users/:name",
    {
      config: { requirement: "users.read" },
      schema: { tags: ["users"], params: nameParam, response: { 200: c.principal } },
    },
    async (req) => directory.getPrincipal(req.actor, req.params.name),
  );

  app.patch(
    "/v1/users/:name",
    {
      config: { requirement: "users.write" },
      schema: {
        tags: ["users"],
        params: nameParam,
        body: c.updateUserRequest,
        response: { 200: c.principal, 202: c.heldUserWrite },
      },
    },
    async (req, reply) => {
      const answer = heldOr(
        200,
        await directory.updatePrincipal(req.actor, req.params.name, req.body, req.callContext),
      );
      reply.code(answer.code);
      return answer.body;
    },
  );

  app.post(
    "/v1/users/:name/disable",
    {
      config: { requirement: "users.write" },
      schema: { tags: ["users"], params: nameParam, body: c.disableUserRequest, response: { 200: c.principal } },
    },
    async (req) => directory.setStatus(req.actor, req.params.name, "disabled", req.body.reason, req.callContext),
  );

  app.post(
    "/v1/users/:name/enable",
    {
      config: { requirement: "users.write" },
      schema: { tags: ["users"], params: nameParam, response: { 200: c.principal } },
    },
    async (req) => directory.setStatus(req.actor, req.params.name, "active", undefined, req.callContext),
  );

  app.put(
    "/v1/users/:name/password",
    {
      config: { requirement: "users.write" },
      schema: {
        tags: ["users"],
        params: nameParam,
        body: c.setPasswordRequest,
        response: { 200: ok, 202: heldWrite },
      },
    },
    async (req, reply) =>
      okOrHeld(reply, await directory.setPassword(req.actor, req.params.name, req.body.password, req.callContext)),
  );

  app.get(
    "/v1/groups",
    { config: { requirement: "groups.read" }, schema: { tags: ["groups"], response: { 200: c.groupList } } },
    async (req) => ({
      items: await directory.listGroups(req.actor),
    }),
  );

  app.post(
    "/v1/groups",
    {
      config: { requirement: "groups.write" },
      schema: { tags: ["groups"], body: c.createGroupRequest, response: { 201: c.group } },
    },
    async (req, reply) => {
      reply.code(201);
      return directory.createGroup(req.actor, req.body, req.callContext);
    },
  );

  app.post(
    "/v1/groups/:name/members",
    {
      config: { requirement: "groups.write" },
      schema: {
        tags: ["groups"],
        params: nameParam,
        body: c.groupMemberRequest,
        response: { 200: ok, 202: heldWrite },
      },
    },
    async (req, reply) => {
      const held = await directory.changeMembership(
        req.actor,
        req.params.name,
        req.body.principal,
        "add",
        req.callContext,
      );
      return okOrHeld(reply, held?.changeRequest);
    },
  );

  app.delete(
    "/v1/groups/:name/members/:principal",
    {
      config: { requirement: "groups.write" },
      schema: { tags: ["groups"], params: memberParams, response: { 200: ok } },
    },
    async (req) => {
      await directory.changeMembership(req.actor, req.params.name, req.params.principal, "remove", req.callContext);
      return { ok: true as const };
    },
  );

  app.get(
    "/v1/tokens",
    {
      config: { requirement: "tokens.read" },
      schema: { tags: ["tokens"], querystring: c.tokenListQuery, response: { 200: c.tokenList } },
    },
    async (req) => ({
      items: await directory.listTokens(req.actor, req.query),
    }),
  );

  app.post(
    "/v1/tokens",
    {
      config: { requirement: "tokens.write" },
      schema: { tags: ["tokens"], body: c.createTokenRequest, response: { 201: c.createdToken } },
    },
    async (req, reply) => {
      reply.code(201);
      return directory.createToken(req.actor, req.body, req.callContext);
    },
  );

  app.delete(
    "/v1/tokens/:id",
    {
      config: { requirement: "tokens.write" },
      schema: { tags: ["tokens"], params: tokenIdParam, response: { 200: ok } },
    },
    async (req) => {
      await directory.revokeToken(req.actor, req.params.id, req.callContext);
      return { ok: true as const };
    },
  );
}

/** A write four-eyes may hold: 200 ok when done; held for a second admin, 202 with the change request (nothing changed yet). */
function okOrHeld(reply: FastifyReply, changeRequest: ChangeRequestRefDto | undefined) {
  if (!changeRequest) return { ok: true as const };
  reply.code(202);
  return { changeRequest };
}

/** A user write four-eyes held in part: 202 with the user as it is now and the change request; else `code`. */
function heldOr<Code extends 200 | 201>(code: Code, result: MaybeHeld<Principal>) {
  const { changeRequest, ...user } = result;
  return changeRequest ? { code: 202 as const, body: { user, changeRequest } } : { code, body: user };
}
