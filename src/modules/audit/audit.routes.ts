import { Readable } from "node:stream";
import type { App } from "../../http/app.js";
import * as c from "../../contract/audit.js";
import { StintError } from "../../lib/errors.js";
import { authorize } from "../authz/authz.rules.js";
import type { AuditLog } from "./audit.service.js";
import { formatAnchor, formatEvent } from "./audit.export.js";
import { CSV_HEADER, toCsvLine } from "./audit.csv.js";
import type { EventFilter } from "./audit.store.js";

/** The filters a query names, as the store takes them (only those given). */
function filterOf(q: {
  since?: string | undefined;
  until?: string | undefined;
  actor?: string | undefined;
  action?: string | undefined;
  role?: string | undefined;
  target?: string | undefined;
  outcome?: EventFilter["outcome"];
}): EventFilter {
  const filter: EventFilter = {};
  if (q.since) filter.since = new Date(q.since);
  if (q.until) filter.until = new Date(q.until);
  if (q.actor) filter.actor = q.actor;
  if (q.action) filter.action = q.action;
  if (q.role) filter.role = q.role;
  if (q.target) filter.target = q.target;
  if (q.outcome) filter.outcome = q.outcome;
  return filter;
}

const EXPORT_TYPES = {
  jsonl: { type: "application/x-ndjson", extension: "jsonl" },
  ocsf: { type: "application/x-ndjson", extension: "jsonl" },
  cef: { type: "text/plain; charset=utf-8", extension: "cef" },
  csv: { type: "text/csv; charset=utf-8", extension: "csv" },
} as const;

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
      const filter = filterOf(q);
      const items = await audit.read({
        afterSeq: q.afterSeq,
        order: q.beforeSeq !== undefined ? "desc" : q.order,
        beforeSeq: q.beforeSeq,
        ...filter,
        limit: q.limit,
      });
      const full = items.length === q.limit;
      const page =
        q.beforeSeq !== undefined || q.order === "desc"
          ? { items, nextAfterSeq: null, nextBeforeSeq: full ? items.at(-1)!.seq : null }
          : { items, nextAfterSeq: full ? items.at(-1)!.seq : null };
      if (!q.count) return page;
      // Counted after the page was read (which chained what had committed): the total covers the page.
      const counted = await audit.count(filter, c.AUDIT_COUNT_CAP + 1);
      return { ...page, total: Math.min(counted, c.AUDIT_COUNT_CAP), totalCapped: counted > c.AUDIT_COUNT_CAP };
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
      const filter = filterOf(req.query);
      const filtered = Object.keys(filter).length > 0;
      const options = { productVersion: deps.version };
      // The export covers the chain up to its newest event now; the export's own record comes after it.
      const head = (await audit.read({ order: "desc", limit: 1 }))[0]?.seq ?? 0;
      await audit.record(req.actor, req.callContext, {
        action: "audit.export",
        outcome: "success",
        details: {
          format,
          filters: Object.fromEntries(Object.entries(req.query).filter(([k, v]) => k !== "format" && v !== undefined)),
          upToSeq: head,
        },
      });
      // Each signed head follows the event it covers, so the SIEM holds the anchors as well as the events (the
      // whole chain only: a filtered export has gaps no signed head covers, and CSV is for people).
      const withAnchors = !filtered && format !== "csv";
      async function* lines() {
        if (format === "csv") yield `${CSV_HEADER}\n`;
        let afterSeq = 0;
        for (;;) {
          const page = await audit.read({ afterSeq, ...filter, maxSeq: head, limit: 5000 });
          if (page.length === 0) return;
          const anchors = withAnchors ? await audit.anchorsBetween(page[0]!.seq, page.at(-1)!.seq) : [];
          let next = 0;
          let chunk = "";
          for (const event of page) {
            chunk += `${format === "csv" ? toCsvLine(event) : formatEvent(format, event, options)}\n`;
            while (next < anchors.length && anchors[next]!.seq <= event.seq)
              chunk += `${formatAnchor(format as Exclude<typeof format, "csv">, anchors[next++]!, options)}\n`;
          }
          yield chunk;
          afterSeq = page.at(-1)!.seq;
        }
      }
      const kind = EXPORT_TYPES[format];
      reply.type(kind.type);
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
      reply.header("content-disposition", `attachment; filename="stint-audit-${stamp}.${kind.extension}"`);
      return reply.send(Readable.from(lines()));
    },
  );
}
