import type { App } from "../../http/app.js";
import * as c from "../../contract/siem.js";
import { authorize } from "../authz/authz.rules.js";
import type { SiemService } from "./siem.service.js";

export function registerSiemRoutes(app: App, deps: { siem: Pick<SiemService, "status"> }) {
  app.get(
    "/v1/siem/destinations",
    {
      config: { requirement: "audit.read" },
      schema: { tags: ["siem"], response: { 200: c.siemDestinationList } },
    },
    async (req) => {
      authorize(req.actor, "audit.read");
      return { items: await deps.siem.status() };
    },
  );
}
