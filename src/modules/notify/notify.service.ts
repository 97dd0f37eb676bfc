/**
 * Notifications go out through the outbox: `enqueueNotification` writes one
 * `notify.deliver` row per channel in the caller's transaction, and the handler
 * from `notifyHandlers` delivers one row (HTTP POST or SMTP). A failed delivery
 * throws, so the outbox retries it with backoff and dead-letters it in the end.
 */
import type { AddressPolicy } from "../../lib/address-policy.js";
import { isIP } from "node:net";
import { AddressRefusedError, resolveAllowedAddress, type Resolve } from "../../lib/address-guard.js";
import { PinnedFetchError, pinnedFetch } from "../../lib/pinned-fetch.js";
import type { Kysely } from "kysely";
import { createTransport, type SendMailOptions, type Transporter } from "nodemailer";
import type { Database } from "../../db/index.js";
import { systemClock, type Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { sha256Hex } from "../../lib/security.js";
import type { HandlerContext, OutboxHandlers, OutboxService } from "../outbox/index.js";
import {
  emailMessage,
  IDEMPOTENCY_HEADER,
  SIGNATURE_HEADER,
  slackPayload,
  teamsPayload,
  webhookBody,
  webhookSignatureHeader,
} from "./notify.rules.js";
import {
  channelConfigSchema,
  deliveryPayloadSchema,
  notificationSchema,
  NOTIFY_DELIVER,
  type ChannelConfig,
  type DeliveryPayload,
  type EmailChannel,
  type EnqueueNotificationResult,
  type Notification,
} from "./notify.types.js";

export interface EnqueueNotificationOptions {
  /** Channel names to use; all configured channels when left out. */
  channels?: readonly string[] | undefined;
  /**
   * What makes this notification unique, e.g. `request.approved:${requestId}`. The outbox
   * key is `notify:${dedupeKey}:${channel}`, so enqueueing the same thing twice sends it once.
   */
  dedupeKey: string;
}

export interface Notifier {
  enqueueNotification(
    tx: Kysely<Database>,
    outbox: Pick<OutboxService, "enqueue">,
    notification: Notification,
    options: EnqueueNotificationOptions,
  ): Promise<EnqueueNotificationResult>;
}

/**
 * Each delivery's one address check is where its connection is opened: webhook, Slack and Teams requests go
 * through `pinnedFetch` (src/lib/pinned-fetch.ts: the host resolved once, judged by `addressPolicy`, the socket
 * opened to that address), e-mail through `resolveAllowedAddress` and a transport connecting to its answer.
 * There is no `fetch` option: a fetch passed in opens its own connection (a test double none, a proxy-aware
 * one to its proxy, which resolves the name again), so no check made here could bind the address it reaches.
 * Tests pass `resolve`, which the check itself consults.
 */
export interface NotifyHandlerOptions {
  /** Per delivery: HTTP request, or each SMTP stage (connect, greeting, idle socket). Default 10 s. */
  timeoutMs?: number | undefined;
  /** For the signature timestamp. */
  clock?: Clock | undefined;
  logger?: Pick<Logger, "warn"> | undefined;
  /** Where deliveries may connect (STINT_ALLOW_NETWORKS / STINT_DENY_NETWORKS); the built-in blocks by default. */
  addressPolicy?: AddressPolicy | undefined;
  /** The resolver (tests); the system's by default. */
  resolve?: Resolve | undefined;
}

/** Answers are read only for Slack's short error code; anything past this is cut off. */
const MAX_ANSWER_BYTES = 1024 * 1024;

const DEDUPE_KEY = /^[\x21-\x7e]{1,120}$/;

/** Validates channel config once; a bad entry is a configuration error, reported without its values. */
export function parseChannels(channels: readonly unknown[]): ChannelConfig[] {
  const parsed = channels.map((channel, i) => {
    const result = channelConfigSchema.safeParse(channel);
    if (!result.success) {
      const problems = result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
      throw new Error(`notification channel #${i + 1} is not valid: ${problems.join("; ")}`);
    }
    return result.data;
  });
  const seen = new Set<string>();
  for (const channel of parsed) {
    if (seen.has(channel.name)) throw new Error(`notification channel "${channel.name}" is configured twice`);
    seen.add(channel.name);
  }
  return parsed;
}

function byName(channels: readonly unknown[]): Map<string, ChannelConfig> {
  return new Map(parseChannels(channels).map((c) => [c.name, c]));
}

function emailRecipients(channel: EmailChannel, notification: Notification): string[] {
  const all = [...(channel.to ?? []), ...(notification.recipients ?? [])];
  return [...new Map(all.map((address) => [address.toLowerCase(), address])).values()];
}

export function createNotifier(deps: { channels: readonly unknown[] }): Notifier {
  const channels = byName(deps.channels);

  return {
    async enqueueNotification(tx, outbox, notification, options) {
      const checked = notificationSchema.safeParse(notification);
      if (!checked.success) {
        const problems = checked.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
        throw new Error(`notification is not valid: ${problems.join("; ")}`);
      }
      if (!DEDUPE_KEY.test(options.dedupeKey))
        throw new Error("notification dedupeKey must be 1..120 printable characters without spaces");
      const n = checked.data;
      const result: EnqueueNotificationResult = { enqueued: [], duplicates: [], skipped: [] };
      for (const name of new Set(options.channels ?? [...channels.keys()])) {
        const channel = channels.get(name);
        if (!channel) {
          result.skipped.push({ channel: name, reason: "unknown-channel" });
          continue;
        }
        if (channel.kind === "email" && emailRecipients(channel, n).length === 0) {
          result.skipped.push({ channel: name, reason: "no-recipients" });
          continue;
        }
        // Addresses only travel in rows that need them.
        const { recipients, ...withoutRecipients } = n;
        const payload: DeliveryPayload = {
          channel: name,
          notification:
            channel.kind === "email" && recipients ? { ...withoutRecipients, recipients } : withoutRecipients,
        };
        const added = await outbox.enqueue(tx, {
          kind: NOTIFY_DELIVER,
          idempotencyKey: `notify:${options.dedupeKey}:${name}`,
          payload: { ...payload },
          // A slow channel holds up only its own deliveries.
          lane: `channel:${name}`,
        });
        (added ? result.enqueued : result.duplicates).push(name);
      }
      return result;
    },
  };
}

// ---------------------------------------------------------------- delivery

/** Why a request did not get an answer, without the URL (chat webhook URLs are credentials). */
function unreachable(label: string, error: unknown, signal: AbortSignal, context: HandlerContext, timeoutMs: number) {
  if (context.signal.aborted) return new Error(`${label}: delivery was cancelled`);
  if (signal.aborted) return new Error(`${label} did not answer within ${timeoutMs} ms`);
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === "string" && /^[A-Z0-9_]{1,40}$/.test(cause.code) ? ` (${cause.code})` : "";
  return new Error(`${label} could not be reached${code}`);
}

async function post(
  fetchImpl: typeof globalThis.fetch,
  label: string,
  channel: { kind: string; url: string },
  body: string,
  headers: Record<string, string>,
  context: HandlerContext,
  timeoutMs: number,
): Promise<void> {
  const signal = AbortSignal.any([context.signal, AbortSignal.timeout(timeoutMs)]);
  let response: Response;
  try {
    response = await fetchImpl(channel.url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "Stint-Notify/1", ...headers },
      body,
      signal,
      // A redirect would re-send a signed body somewhere nobody configured.
      redirect: "error",
    });
  } catch (error) {
    if (error instanceof PinnedFetchError && error.kind === "refused")
      throw new Error(`${label} refused by the address policy: ${error.message}`);
    throw unreachable(label, error, signal, context, timeoutMs);
  }
  if (response.ok) {
    await response.body?.cancel().catch(() => undefined);
    return;
  }
  let detail = "";
  if (channel.kind === "slack") {
    // Slack answers with a short error code such as `invalid_payload` or `no_service`.
    const text = await response.text().catch(() => "");
    if (/^[a-z_]{1,40}$/.test(text)) detail = ` (${text})`;
  } else {
    await response.body?.cancel().catch(() => undefined);
  }
  throw new Error(`${label} answered ${response.status}${detail}`);
}

/** The domain of the sender, for a Message-ID that stays the same across retries. */
function messageIdDomain(from: string): string {
  const match = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from);
  return match?.[1] ?? "stint.invalid";
}

function emailError(label: string, error: unknown, context: HandlerContext): Error {
  if (context.signal.aborted) return new Error(`${label}: delivery was cancelled`);
  // Only the code and the SMTP status: server messages can echo what was sent.
  const e = error as { code?: unknown; responseCode?: unknown } | undefined;
  const code = typeof e?.code === "string" && /^[A-Z0-9_]{1,40}$/.test(e.code) ? e.code : "error";
  const status = typeof e?.responseCode === "number" ? ` ${e.responseCode}` : "";
  return new Error(`${label} failed: ${code}${status}`);
}

/**
 * The outbox handlers for notifications: `{ "notify.deliver": … }`. Channel secrets come
 * from `channels` at delivery time; the outbox row only names the channel.
 */
export function notifyHandlers(channels: readonly unknown[], options: NotifyHandlerOptions = {}): OutboxHandlers {
  const configured = byName(channels);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1)
    throw new RangeError("notify timeoutMs must be a positive integer");
  const fetchImpl = pinnedFetch({
    ...(options.addressPolicy ? { policy: options.addressPolicy } : {}),
    ...(options.resolve ? { resolve: options.resolve } : {}),
    timeoutMs,
    maxBytes: MAX_ANSWER_BYTES,
  });
  const clock = options.clock ?? systemClock;
  const transports = new Map<string, { address: string; transport: Transporter }>();

  /** A transport that connects to `address` (judged already); TLS still checks the certificate against the name. */
  function transportFor(channel: EmailChannel, address: string): Transporter {
    const cached = transports.get(channel.name);
    if (cached?.address === address) return cached.transport;
    cached?.transport.close();
    const transport = createTransport({
      host: address,
      ...(isIP(channel.host) === 0 ? { tls: { servername: channel.host } } : {}),
      port: channel.port,
      secure: channel.secure ?? false,
      requireTLS: channel.requireTls ?? channel.password !== undefined,
      ...(channel.username !== undefined
        ? { auth: { user: channel.username, ...(channel.password !== undefined ? { pass: channel.password } : {}) } }
        : {}),
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      logger: false,
      debug: false,
    });
    transports.set(channel.name, { address, transport });
    return transport;
  }

  async function sendEmail(channel: EmailChannel, n: Notification, context: HandlerContext, label: string) {
    const to = emailRecipients(channel, n);
    if (to.length === 0) return; // Nothing to do; enqueue normally skips these.
    const message = emailMessage(n);
    const mail: SendMailOptions & { signal?: AbortSignal } = {
      from: channel.from,
      to,
      subject: message.subject,
      text: message.text,
      html: message.html,
      messageId: `<notify.${sha256Hex(context.idempotencyKey).slice(0, 32)}@${messageIdDomain(channel.from)}>`,
      headers: { "X-Stint-Event": n.event },
      signal: context.signal,
    };
    let address: string;
    try {
      address = await resolveAllowedAddress(channel.host, options.addressPolicy, options.resolve);
    } catch (error) {
      if (error instanceof AddressRefusedError)
        throw new Error(`${label} refused by the address policy: ${error.message}`);
      throw new Error(`${label} failed: EDNS`);
    }
    let info: { rejected?: unknown[] };
    try {
      info = (await transportFor(channel, address).sendMail(mail)) as { rejected?: unknown[] };
    } catch (error) {
      throw emailError(label, error, context);
    }
    // Some recipients accepted: retrying would send them a second copy, so this counts as done.
    if (info.rejected && info.rejected.length > 0)
      options.logger?.warn(
        { channel: channel.name, rejected: info.rejected.length, idempotencyKey: context.idempotencyKey },
        "notification e-mail rejected for some recipients",
      );
  }

  return {
    [NOTIFY_DELIVER]: async (payload, context) => {
      const parsed = deliveryPayloadSchema.safeParse(payload);
      if (!parsed.success) throw new Error(`${NOTIFY_DELIVER} payload is not valid`);
      const { channel: name, notification: n } = parsed.data;
      const channel = configured.get(name);
      if (!channel) throw new Error(`notification channel "${name}" is not configured`);
      const label = `${channel.kind} "${name}"`;
      // Judged on what the name resolves to now, by the connection itself (pinnedFetch, sendEmail): no earlier check.
      switch (channel.kind) {
        case "webhook": {
          const body = webhookBody(n);
          await post(
            fetchImpl,
            label,
            channel,
            body,
            {
              [SIGNATURE_HEADER]: webhookSignatureHeader(channel.secret, clock.now(), body),
              [IDEMPOTENCY_HEADER]: context.idempotencyKey,
              "Stint-Event": n.event,
            },
            context,
            timeoutMs,
          );
          return;
        }
        case "slack":
          return post(fetchImpl, label, channel, JSON.stringify(slackPayload(n)), {}, context, timeoutMs);
        case "teams":
          return post(fetchImpl, label, channel, JSON.stringify(teamsPayload(n)), {}, context, timeoutMs);
        case "email":
          return sendEmail(channel, n, context, label);
      }
    },
  };
}
