/** SIEM streaming: wires the deliverers of the configured destinations and their status route. */
export { createSiemService, type SiemService } from "./siem.service.js";
export { registerSiemRoutes } from "./siem.routes.js";
export { siemConfigSchema, type SiemConfig, type SiemDestination } from "./siem.types.js";
/**
 * For other readers of the chained log (anomaly alerts): a cursor and lease of their own in `siem_cursors`, under a
 * consumer name no destination can take, and the chained events after a seq.
 */
export { advance, ensureCursor, eventsAfter, lagFrom, readCursor, releaseLease, takeLease } from "./siem.store.js";
