/**
 * Pure notification rules: how a notification looks on each channel, and the
 * webhook signature (Stripe-style: HMAC-SHA256 over `${timestamp}.${body}`).
 * No IO here; the service and the worker do the sending.
 */
import { createHmac } from "node:crypto";
import { constantTimeEqual } from "../../lib/security.js";
import type { EmailMessage, Notification, Severity } from "./notify.types.js";

export const SIGNATURE_HEADER = "Stint-Signature";
export const IDEMPOTENCY_HEADER = "Idempotency-Key";
/** How far a signature timestamp may be from the receiver's clock, by default. */
export const DEFAULT_SIGNATURE_TOLERANCE_SEC = 300;

// ---------------------------------------------------------------- Slack

/** Slack mrkdwn: `&`, `<`, `>` are the control characters; escaped, user text cannot mention `<!channel>` or forge links. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const SEVERITY_LABEL: Record<Severity, string> = { info: "Info", warning: "Warning", critical: "Critical" };

function footer(n: Notification): string {
  return `${SEVERITY_LABEL[n.severity]} · ${n.event} · ${n.occurredAt}`;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A Slack incoming-webhook message: header, text, fields (10 per section), a context line, link buttons. */
export function slackPayload(n: Notification): Record<string, unknown> {
  const blocks: Record<string, unknown>[] = [
    { type: "header", text: { type: "plain_text", text: n.title, emoji: true } },
    { type: "section", text: { type: "mrkdwn", text: escapeSlack(n.text) } },
  ];
  for (const group of chunks(n.fields ?? [], 10)) {
    blocks.push({
      type: "section",
      fields: group.map((f) => ({ type: "mrkdwn", text: `*${escapeSlack(f.label)}*\n${escapeSlack(f.value)}` })),
    });
  }
  blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: escapeSlack(footer(n)) }] });
  if (n.links && n.links.length > 0) {
    blocks.push({
      type: "actions",
      elements: n.links.map((link, i) => ({
        type: "button",
        text: { type: "plain_text", text: link.label, emoji: true },
        url: link.url,
        action_id: `stint-link-${i}`,
        ...(link.style ? { style: link.style } : {}),
      })),
    });
  }
  // `text` is the fallback shown in notifications and by clients that cannot render blocks.
  return { text: escapeSlack(`${n.title}: ${n.text}`), blocks };
}

// ---------------------------------------------------------------- Microsoft Teams

const TEAMS_COLOR: Record<Severity, string> = { info: "Default", warning: "Warning", critical: "Attention" };
const TEAMS_ACTION_STYLE = { primary: "positive", danger: "destructive" } as const;

/**
 * One paragraph of plain text. Teams renders Markdown in a TextBlock and in a FactSet's titles and values
 * (`[Approve](https://…)` is a link there), never in a RichTextBlock's TextRun: text a requester wrote (a
 * reason, a name) shows as written and cannot put a link of its own into Stint's card.
 */
function teamsText(...runs: (Record<string, unknown> & { text: string })[]): Record<string, unknown> {
  return { type: "RichTextBlock", inlines: runs.map((run) => ({ type: "TextRun", ...run })) };
}

/** A Teams incoming-webhook message carrying one Adaptive Card (schema 1.4); all its text is plain (`teamsText`). */
export function teamsPayload(n: Notification): Record<string, unknown> {
  const body: Record<string, unknown>[] = [
    teamsText({ text: n.title, weight: "Bolder", size: "Medium", color: TEAMS_COLOR[n.severity] }),
    teamsText({ text: n.text }),
    ...(n.fields ?? []).map((f) => teamsText({ text: `${f.label}: `, weight: "Bolder" }, { text: f.value })),
    teamsText({ text: footer(n), isSubtle: true, size: "Small" }),
  ];
  const actions = (n.links ?? []).map((link) => ({
    type: "Action.OpenUrl",
    title: link.label,
    url: link.url,
    ...(link.style ? { style: TEAMS_ACTION_STYLE[link.style] } : {}),
  }));
  return {
    type: "message",
    attachments: [
      {
        contentType: "application/vnd.microsoft.card.adaptive",
        contentUrl: null,
        content: {
          $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
          type: "AdaptiveCard",
          version: "1.4",
          body,
          ...(actions.length > 0 ? { actions } : {}),
          msteams: { width: "Full" },
        },
      },
    ],
  };
}

// ---------------------------------------------------------------- Generic webhook

/** The JSON body of a generic webhook (exactly the bytes that are signed). Recipients' addresses are left out. */
export function webhookBody(n: Notification): string {
  return JSON.stringify({
    type: "stint.notification",
    version: 1,
    event: n.event,
    severity: n.severity,
    title: n.title,
    text: n.text,
    fields: n.fields ?? [],
    links: (n.links ?? []).map((l) => ({ label: l.label, url: l.url })),
    occurredAt: n.occurredAt,
  });
}

/** Hex HMAC-SHA256 of `${timestamp}.${body}` under `secret`; `timestamp` is Unix seconds. */
export function signWebhook(secret: string, timestamp: number, body: string | Uint8Array): string {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new RangeError("timestamp must be Unix seconds");
  return createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest("hex");
}

/** The `Stint-Signature` header value: `t=<unix seconds>,v1=<hex>`. */
export function webhookSignatureHeader(secret: string, now: Date, body: string | Uint8Array): string {
  const timestamp = Math.floor(now.getTime() / 1000);
  return `t=${timestamp},v1=${signWebhook(secret, timestamp, body)}`;
}

/** Splits `t=…,v1=…[,v1=…]`; unknown schemes are ignored (room for a future `v2`). */
export function parseSignatureHeader(header: string): { timestamp: number; signatures: string[] } | null {
  if (header.length > 4096) return null;
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t") {
      if (!/^\d{1,12}$/.test(value) || timestamp !== undefined) return null;
      timestamp = Number(value);
    } else if (key === "v1" && /^[0-9a-f]{64}$/.test(value)) {
      signatures.push(value);
    }
  }
  if (timestamp === undefined || signatures.length === 0) return null;
  return { timestamp, signatures };
}

/**
 * Checks a `Stint-Signature` header against the raw request body: some `v1` must equal
 * HMAC-SHA256(secret, `${t}.${body}`) (compared in constant time), and `t` must be within
 * `toleranceSec` of `now` either way, so a captured request cannot be replayed later.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string,
  body: string | Uint8Array,
  now: Date,
  toleranceSec = DEFAULT_SIGNATURE_TOLERANCE_SEC,
): boolean {
  const parsed = parseSignatureHeader(header);
  if (!parsed) return false;
  if (Math.abs(now.getTime() / 1000 - parsed.timestamp) > toleranceSec) return false;
  const expected = signWebhook(secret, parsed.timestamp, body);
  // Check every candidate (no early exit), so timing says nothing about which one matched.
  let match = false;
  for (const candidate of parsed.signatures) match = constantTimeEqual(expected, candidate) || match;
  return match;
}

// ---------------------------------------------------------------- E-mail

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function subjectOf(n: Notification): string {
  const prefix = n.severity === "info" ? "[Stint]" : `[Stint] ${SEVERITY_LABEL[n.severity]}:`;
  // The schema already keeps titles on one line; this keeps subjects single-line whatever the input.
  return `${prefix} ${n.title}`.replace(/[\r\n]+/g, " ");
}

/** Subject, plain text and HTML; every piece of notification text is escaped in the HTML. */
export function emailMessage(n: Notification): EmailMessage {
  const fields = n.fields ?? [];
  const links = n.links ?? [];
  const text = [
    n.title,
    "",
    n.text,
    ...(fields.length > 0 ? ["", ...fields.map((f) => `${f.label}: ${f.value}`)] : []),
    ...(links.length > 0 ? ["", ...links.map((l) => `${l.label}: ${l.url}`)] : []),
    "",
    "-- ",
    footer(n),
  ].join("\n");

  const paragraph = (s: string) => escapeHtml(s).replace(/\r?\n/g, "<br>");
  const html = [
    '<!doctype html><html><body style="font-family:sans-serif;line-height:1.4">',
    `<h2 style="margin:0 0 12px">${escapeHtml(n.title)}</h2>`,
    `<p>${paragraph(n.text)}</p>`,
    fields.length > 0
      ? `<table cellpadding="4" style="border-collapse:collapse">${fields
          .map((f) => `<tr><th align="left">${escapeHtml(f.label)}</th><td>${paragraph(f.value)}</td></tr>`)
          .join("")}</table>`
      : "",
    links.length > 0
      ? `<p>${links.map((l) => `<a href="${escapeHtml(l.url)}">${escapeHtml(l.label)}</a>`).join(" &middot; ")}</p>`
      : "",
    `<p style="color:#666;font-size:12px">${escapeHtml(footer(n))}</p>`,
    "</body></html>",
  ].join("");

  return { subject: subjectOf(n), text, html };
}
