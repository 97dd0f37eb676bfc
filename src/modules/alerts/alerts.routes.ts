/** Thin handlers for anomaly alerts: contract schemas in, service call, contract schemas out. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/alerts.js";
import type { AlertService } from "./alerts.service.js";

export function registerAlertRoutes(app: App, deps: { alerts: AlertService }) {
  const { alerts } = deps;
  const tags = ["alerts"];
  app.get(
    "/v1/alerts",
    {
      config: { requirement: "alerts.read" },
      schema: { tags, querystring: c.alertQuery, response: { 200: c.alertList } },
    },
    async (req) => ({ items: await alerts.list(req.actor, req.query) }),
  );
  app.get(
    "/v1/alerts/:id",
    { config: { requirement: "alerts.read" }, schema: { tags, params: c.alertIdParam, response: { 200: c.alert } } },
    async (req) => alerts.get(req.actor, req.params.id),
  );
  app.post(
    "/v1/alerts/:id/ack",
    {
      config: { requirement: "alerts.ack" },
      schema: { tags, params: c.alertIdParam, body: c.ackInput, response: { 200: c.alert } },
    },
    async (req) => alerts.ack(req.actor, req.params.id, req.body.note ?? null, req.callContext),
  );
}
