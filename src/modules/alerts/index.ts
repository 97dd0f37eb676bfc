/** Anomaly alerts: rules over the audit stream, their alerts, notifications and actions. */
export {
  createAlertService,
  ALERTS_ACTOR,
  ALERTS_REVOKE,
  type AlertService,
  type AlertNotice,
} from "./alerts.service.js";
export { registerAlertRoutes } from "./alerts.routes.js";
export { alertsConfigSchema, type AlertsConfig } from "./alerts.types.js";
