/**
 * Notifications: what happened (a `Notification`), and where it goes (channels).
 * The zod schemas are the edge: channel config when it is loaded, notifications
 * when they are enqueued and again when a worker reads them back from the outbox.
 */
import { z } from "zod";

/** The events Stint notifies about; other dotted names are allowed for future use. */
export const NOTIFICATION_EVENTS = [
  "request.submitted",
  "request.approved",
  "request.denied",
  "request.escalated",
  "request.expiring",
  "request.expired",
  "breakglass.used",
] as const;
export type KnownNotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

export const SEVERITIES = ["info", "warning", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Printable text: no control characters except newline and tab. */
const printable = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
    .refine((s) => !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(s), "must not contain control characters");

/** One line: titles, labels and e-mail subjects never carry a line break. */
const singleLine = (max: number) => printable(max).refine((s) => !/[\r\n]/.test(s), "must be a single line");

/** Only http(s) links: they become buttons and `<a href>`, so `javascript:` and friends must never get through. */
const httpUrl = z
  .string()
  .max(2000)
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === "https:" || url.protocol === "http:") && url.username === "" && url.password === "";
    } catch {
      return false;
    }
  }, "must be an http(s) URL without credentials");

const email = z.email().max(254);

export const notificationSchema = z.strictObject({
  event: z.string().regex(/^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$/, "must be a dotted event name"),
  severity: z.enum(SEVERITIES),
  title: singleLine(150),
  /** A plain human sentence (or a few); never markup. */
  text: printable(2000),
  fields: z
    .array(z.strictObject({ label: singleLine(60), value: printable(500) }))
    .max(20)
    .optional(),
  /** e.g. approve/deny links. They are stored in the outbox row: never a credential, and never a token outside the fragment. */
  links: z
    .array(
      z.strictObject({
        label: singleLine(40),
        url: httpUrl,
        /** How chat buttons show it: approve is `primary`, deny is `danger`. */
        style: z.enum(["primary", "danger"]).optional(),
      }),
    )
    .max(5)
    .optional(),
  /** E-mail addresses, used by e-mail channels only. */
  recipients: z.array(email).max(50).optional(),
  occurredAt: z.iso.datetime({ offset: true }),
});

export type Notification = z.output<typeof notificationSchema>;
export type NotificationField = NonNullable<Notification["fields"]>[number];
export type NotificationLink = NonNullable<Notification["links"]>[number];

const channelName = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,63}$/, "must start with a letter and use only a-z, 0-9, '.', '_' or '-' (at most 64)");

export const webhookChannelSchema = z.strictObject({
  name: channelName,
  kind: z.literal("webhook"),
  url: httpUrl,
  /** HMAC-SHA256 key for the `Stint-Signature` header. */
  secret: z.string().min(16, "must be at least 16 characters").max(512),
});

export const slackChannelSchema = z.strictObject({
  name: channelName,
  kind: z.literal("slack"),
  /** A Slack incoming webhook URL; it is a credential (anyone holding it can post). */
  url: httpUrl,
});

export const teamsChannelSchema = z.strictObject({
  name: channelName,
  kind: z.literal("teams"),
  /** A Microsoft Teams incoming webhook (or Workflows) URL; it is a credential too. */
  url: httpUrl,
});

export const emailChannelSchema = z.strictObject({
  name: channelName,
  kind: z.literal("email"),
  host: z.string().min(1).max(253),
  port: z.number().int().min(1).max(65535),
  /** TLS from the first byte (port 465). Otherwise STARTTLS is used when the server offers it. */
  secure: z.boolean().optional(),
  /**
   * Refuse to send unless the connection is (or becomes) TLS. Defaults to true when a
   * password is set, so credentials never cross the network in clear.
   */
  requireTls: z.boolean().optional(),
  from: z.string().min(3).max(320),
  username: z.string().min(1).max(320).optional(),
  password: z.string().min(1).max(1024).optional(),
  /** Always sent to these, in addition to the notification's own recipients. */
  to: z.array(email).max(50).optional(),
});

export const channelConfigSchema = z.discriminatedUnion("kind", [
  webhookChannelSchema,
  slackChannelSchema,
  teamsChannelSchema,
  emailChannelSchema,
]);

export const notificationsConfigSchema = z.strictObject({
  channels: z
    .array(channelConfigSchema)
    .max(100)
    .refine(
      (channels) => new Set(channels.map((c) => c.name)).size === channels.length,
      "channel names must be unique",
    ),
});

export type WebhookChannel = z.output<typeof webhookChannelSchema>;
export type SlackChannel = z.output<typeof slackChannelSchema>;
export type TeamsChannel = z.output<typeof teamsChannelSchema>;
export type EmailChannel = z.output<typeof emailChannelSchema>;
export type ChannelConfig = z.output<typeof channelConfigSchema>;
export type ChannelKind = ChannelConfig["kind"];
export type NotificationsConfig = z.output<typeof notificationsConfigSchema>;

/** The outbox kind of one delivery (one notification to one channel). */
export const NOTIFY_DELIVER = "notify.deliver";

/** The outbox payload of a delivery: the channel by name (its secrets stay in config), and the notification. */
export interface DeliveryPayload {
  channel: string;
  notification: Notification;
}

export const deliveryPayloadSchema = z.strictObject({ channel: channelName, notification: notificationSchema });

/** An e-mail as rendered from a notification. */
export interface EmailMessage {
  subject: string;
  text: string;
  html: string;
}

export interface EnqueueNotificationResult {
  /** Channels that got a new outbox row. */
  enqueued: string[];
  /** Channels whose row already existed for this dedupe key (nothing was written). */
  duplicates: string[];
  /** Channels left out, and why. */
  skipped: { channel: string; reason: "unknown-channel" | "no-recipients" }[];
}
