/** The reviews module: access review campaigns (recertification). */
export { createReviewService, type ReviewService, type ReviewServiceDeps } from "./reviews.service.js";
export { registerReviewRoutes } from "./reviews.routes.js";
export { breakGlassReviewsOf, openReviewItem, type OpenReviewItem } from "./review-items.store.js";
