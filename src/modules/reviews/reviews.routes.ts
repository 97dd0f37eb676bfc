/** Thin handlers for access reviews: contract schemas in, service call, contract schemas out. */
import type { App } from "../../http/app.js";
import * as c from "../../contract/reviews.js";
import type { ReviewService } from "./reviews.service.js";

export function registerReviewRoutes(app: App, deps: { reviews: ReviewService }) {
  const { reviews } = deps;
  const read = { requirement: "reviews.read" } as const;
  const manage = { requirement: "reviews.manage" } as const;
  // Deciding is authorized by being the item's reviewer (checked by the service), not by a platform role.
  const signedIn = { requirement: "authenticated" } as const;
  const tags = ["reviews"];

  app.get(
    "/v1/reviews/campaigns",
    { config: read, schema: { tags, response: { 200: c.campaignList } } },
    async (req) => ({ items: await reviews.listCampaigns(req.actor) }),
  );
  app.post(
    "/v1/reviews/campaigns",
    { config: manage, schema: { tags, body: c.campaignInput, response: { 201: c.campaignDetail } } },
    async (req, reply) => {
      reply.code(201);
      return reviews.createCampaign(req.actor, req.body, req.callContext);
    },
  );
  app.get(
    "/v1/reviews/campaigns/:id",
    { config: read, schema: { tags, params: c.idParam, response: { 200: c.campaignDetail } } },
    async (req) => reviews.getCampaign(req.actor, req.params.id),
  );
  app.post(
    "/v1/reviews/campaigns/:id/close",
    { config: manage, schema: { tags, params: c.idParam, response: { 200: c.campaignDetail } } },
    async (req) => reviews.closeCampaign(req.actor, req.params.id, req.callContext),
  );
  app.get(
    "/v1/reviews/items",
    { config: signedIn, schema: { tags, response: { 200: c.reviewItemList } } },
    async (req) => ({ items: await reviews.inbox(req.actor) }),
  );
  app.post(
    "/v1/reviews/items/:id/decision",
    { config: signedIn, schema: { tags, params: c.idParam, body: c.decisionInput, response: { 200: c.reviewItem } } },
    async (req) => reviews.decide(req.actor, req.params.id, req.body, req.callContext),
  );
}
