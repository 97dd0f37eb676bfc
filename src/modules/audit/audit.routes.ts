import { Readable } from "node:stream";
import type { App } from "../../http/app.js";
import * as c from "../../contract/audit.js";
import { authorize } from "../authz/authz.rules.js";
import type { AuditLog } from "./audit.service.js";
import { formatEvent } from "./audit.export.js";

export function registerAuditRoutes(app: App, deps: { audit: AuditLog; version: string }) {
  const { audit } = deps;

  app.get(
    "/v1/audit/events",
    {
      config: { requirement: "audit.read" },
      schema: { tags: ["audit"], querystring: c.auditQuery, response: { 200: c.auditPage } },
    },
    async (req) => {
      authorize(req.actor, "audit.read");
      const q = req.query;
      const items = await audit.read({
        afterSeq: q.afterSeq,
        order: q.beforeSeq !== undefined ? "desc" : q.order,
        beforeSeq: q.beforeSeq,
        since: q.since ? new Date(q.since) : undefined,
        until: q.until ? new Date(q.until) : undefined,
        actor: q.actor,
        action: q.action,
        role: q.role,
        limit: q.limit,
      });
      const full = items.length === q.limit;
      return q.beforeSeq !== undefined || q.order === "desc"
        ? { items, nextAfterSeq: null, nextBeforeSeq: full ? items.at(-1)!.seq : null }
        : { items, nextAfterSeq: full ? items.at(-1)!.seq : null };
    },
  );

  app.get(
    "/v1/audit/verify",
    { config: { requirement: "audit.read" }, schema: { tags: ["audit"], response: { 200: c.verifyResult } } },
    async (req) => {
      authorize(req.actor, "audit.read");
      return audit.verify();
    },
  );

  app.get(
    "/v1/audit/export",
    { config: { requirement: "audit.read" }, schema: { tags: ["audit"], querystring: c.exportQuery } },
    async (req, reply) => {
      authorize(req.actor, "audit.read");
      const { format } = req.query;
      const since = req.query.since ? new Date(req.query.since) : undefined;
      async function* lines() {
        let afterSeq = 0;
        for (;;) {
          const page = await audit.read({ afterSeq, since, limit: 5000 });
          if (page.length === 0) return;
          yield page.map((event) => `${formatEvent(format, event, { productVersion: deps.version })}\n`).join("");
          afterSeq = page.at(-1)!.seq;
        }
      }
      reply.type(format === "cef" ? "text/plain; charset=utf-8" : "application/x-ndjson");
      return reply.send(Readable.from(lines()));
    },
  );
}
