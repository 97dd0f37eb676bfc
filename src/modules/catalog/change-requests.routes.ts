/** Thin handlers for four-eyes change requests: contract schemas in, service call, contract schemas out. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/change-requests.js";
import type { ChangeRequestService } from "./change-requests.service.js";

export function registerChangeRequestRoutes(app: App, deps: { changeRequests: ChangeRequestService }) {
  const { changeRequests } = deps;
  const read = { requirement: "catalog.read" } as const;
  const write = { requirement: "catalog.write" } as const;

  app.get(
    "/v1/change-requests",
    {
      config: read,
      schema: { tags: ["config"], querystring: c.changeRequestQuery, response: { 200: c.changeRequestList } },
    },
    async (req) => ({ items: await changeRequests.list(req.actor, req.query.status) }),
  );
  app.get(
    "/v1/change-requests/:id",
    { config: read, schema: { tags: ["config"], params: c.changeRequestParams, response: { 200: c.changeRequest } } },
    async (req) => changeRequests.get(req.actor, req.params.id),
  );
  // Approve and deny: the same shape, an optional reason.
  for (const decision of ["approve", "deny"] as const)
    app.post(
      `/v1/change-requests/:id/${decision}`,
      {
        config: write,
        schema: {
          tags: ["config"],
          params: c.changeRequestParams,
          body: c.changeRequestDecision.nullish(),
          response: { 200: c.changeRequest },
        },
      },
      async (req) => changeRequests[decision](req.actor, req.params.id, req.body?.reason, req.callContext),
    );
}
