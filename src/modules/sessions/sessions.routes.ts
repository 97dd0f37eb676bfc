/** Thin handlers for brokered sessions, recordings, kill, database tokens and SSH certificates. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/sessions.js";
import type { SessionService } from "./sessions.service.js";

export function registerSessionRoutes(app: App, deps: { sessions: SessionService }) {
  const { sessions } = deps;
  const tags = ["sessions"];

  // Sessions and recordings answer 404 to callers without sessions.read, so these routes only need a sign-in.
  app.get(
    "/v1/sessions",
    {
      config: { requirement: "authenticated" },
      schema: { tags, querystring: c.sessionListQuery, response: { 200: c.sessionList } },
    },
    async (req) => ({
      items: await sessions.list(req.actor, {
        live: req.query.live === "true",
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      }),
    }),
  );

  app.get(
    "/v1/sessions/:id",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.sessionParams, response: { 200: c.session } },
    },
    async (req) => sessions.show(req.actor, req.params.id),
  );

  app.get(
    "/v1/sessions/:id/recording",
    { config: { requirement: "authenticated" }, schema: { tags, params: c.sessionParams } },
    async (req, reply) => {
      const recording = await sessions.recording(req.actor, req.callContext, req.params.id);
      reply.header("content-type", recording.contentType);
      reply.header("x-content-sha256", recording.sha256);
      reply.header("cache-control", "no-store");
      return reply.send(recording.stream);
    },
  );

  app.post(
    "/v1/sessions/:id/kill",
    {
      config: { requirement: "sessions.kill" },
      schema: { tags, params: c.sessionParams, body: c.killBody, response: { 200: c.session } },
    },
    async (req) => sessions.kill(req.actor, req.callContext, req.params.id, req.body.reason),
  );

  app.post(
    "/v1/db/tokens",
    {
      config: { requirement: "authenticated" },
      schema: { tags, body: c.dbTokenBody, response: { 200: c.dbToken } },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return sessions.issueDatabaseToken(req.actor, req.callContext, { role: req.body.role, once: req.body.once });
    },
  );

  app.post(
    "/v1/ssh/certificates",
    {
      config: { requirement: "authenticated" },
      schema: { tags, body: c.sshCertificateBody, response: { 200: c.sshCertificate } },
    },
    async (req) =>
      sessions.issueSshCertificate(req.actor, req.callContext, { publicKey: req.body.publicKey, role: req.body.role }),
  );

  // Public like the CA key: hosts that trust the CA fetch it without a Stint identity (sshd RevokedKeys).
  app.get("/v1/ssh/krl", { config: { requirement: "public" }, schema: { tags } }, async (_req, reply) => {
    const krl = await sessions.sshKrl();
    reply.header("content-type", "application/octet-stream");
    reply.header("cache-control", "no-store");
    return reply.send(krl);
  });

  app.get(
    "/v1/ssh/ca",
    { config: { requirement: "public" }, schema: { tags, response: { 200: c.sshInfo } } },
    async () => sessions.sshInfo(),
  );
}
