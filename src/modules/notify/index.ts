/** The notify module: notifications as outbox rows, delivered to webhooks, Slack, Teams and e-mail. */
export * from "./notify.types.js";
export {
  DEFAULT_SIGNATURE_TOLERANCE_SEC,
  IDEMPOTENCY_HEADER,
  SIGNATURE_HEADER,
  emailMessage,
  escapeHtml,
  escapeSlack,
  parseSignatureHeader,
  signWebhook,
  slackPayload,
  teamsPayload,
  verifyWebhookSignature,
  webhookBody,
  webhookSignatureHeader,
} from "./notify.rules.js";
export {
  createNotifier,
  notifyHandlers,
  parseChannels,
  type EnqueueNotificationOptions,
  type Notifier,
  type NotifyHandlerOptions,
} from "./notify.service.js";
