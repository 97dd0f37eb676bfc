/** The evidence module: who had privileged access, approved by whom, why, and what they did. */
export { createEvidenceService, type EvidenceService, type EvidenceServiceDeps } from "./evidence.service.js";
export { registerEvidenceRoutes } from "./evidence.routes.js";
