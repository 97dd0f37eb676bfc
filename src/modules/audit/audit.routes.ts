import { Readable } from "node:stream";
import type { App } from "../../http/app.js";
import * as c from "../../contract/audit.js";
import { StintError } from "../../lib/errors.js";
import { authorize } from "../authz/authz.rules.js";
import type { AuditLog } from "./audit.service.js";
import { formatAnchor, formatEvent } from "./audit.export.js";

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

  // POST because the anchor (the signed head an auditor kept outside the database) travels in the body.
  app.post(
    "/v1/audit/verify",
    {
      config: { requirement: "audit.read" },
      schema: { tags: ["audit"], body: c.verifyRequest, response: { 200: c.verifyResult } },
    },
    async (req) => {
      authorize(req.actor, "audit.read");
      return audit.verify(req.body.anchor ? { anchor: req.body.anchor } : {});
    },
  );

  app.get(
    "/v1/audit/anchor",
    { config: { requirement: "audit.read" }, schema: { tags: ["audit"], response: { 200: c.auditAnchor } } },
    async (req) => {
      authorize(req.actor, "audit.read");
      const anchor = await audit.latestAnchor();
      if (!anchor)
        throw new StintError(
          "NOT_FOUND",
          "No audit checkpoint has been signed yet: the server signs the head within STINT_AUDIT_ANCHOR_INTERVAL (60s by default) of new events; ask again then.",
        );
      return anchor;
    },
  );

  app.get(
    "/v1/audit/export",
    { config: { requirement: "audit.read" }, schema: { tags: ["audit"], querystring: c.exportQuery } },
    async (req, reply) => {
      authorize(req.actor, "audit.read");
      const { format } = req.query;
      const since = req.query.since ? new Date(req.query.since) : undefined;
      const options = { productVersion: deps.version };
      // Each signed head follows the event it covers, so the SIEM holds the anchors as well as the events.
      async function* lines() {
        let afterSeq = 0;
        for (;;) {
          const page = await audit.read({ afterSeq, since, limit: 5000 });
          if (page.length === 0) return;
          const anchors = await audit.anchorsBetween(page[0]!.seq, page.at(-1)!.seq);
          let next = 0;
          let chunk = "";
          for (const event of page) {
            chunk += `${formatEvent(format, event, options)}\n`;
            while (next < anchors.length && anchors[next]!.seq <= event.seq)
              chunk += `${formatAnchor(format, anchors[next++]!, options)}\n`;
          }
          yield chunk;
          afterSeq = page.at(-1)!.seq;
        }
      }
      reply.type(format === "cef" ? "text/plain; charset=utf-8" : "application/x-ndjson");
      return reply.send(Readable.from(lines()));
    },
  );
}
