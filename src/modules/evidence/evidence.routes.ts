/** Thin handler for the evidence report: the contract's query in, JSON (the report) or CSV out. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/evidence.js";
import type { EvidenceService } from "./evidence.service.js";

export function registerEvidenceRoutes(app: App, deps: { evidence: EvidenceService }) {
  const { evidence } = deps;
  app.get(
    "/v1/evidence",
    { config: { requirement: "evidence.read" }, schema: { tags: ["evidence"], querystring: c.evidenceQuery } },
    async (req, reply) => {
      const result = await evidence.report(req.actor, req.query, req.callContext);
      reply.header("cache-control", "no-store");
      if (result.format === "json") {
        reply.header("x-stint-report-sha256", result.report.sha256);
        return c.evidenceReport.parse(result.report);
      }
      reply.header("x-stint-report-sha256", result.sha256);
      reply.header("content-disposition", 'attachment; filename="stint-evidence.csv"');
      reply.type("text/csv; charset=utf-8");
      return reply.send(result.csv);
    },
  );
}
