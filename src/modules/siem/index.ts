/** SIEM streaming: wires the deliverers of the configured destinations and their status route. */
export { createSiemService, type SiemService } from "./siem.service.js";
export { registerSiemRoutes } from "./siem.routes.js";
export { siemConfigSchema, type SiemConfig, type SiemDestination } from "./siem.types.js";
