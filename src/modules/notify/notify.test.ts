import { createHmac } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { SMTPServer } from "smtp-server";
import { afterEach, describe, expect, it } from "vitest";
import { auditHarness } from "../../testing/harness.js";
import { createOutboxRunner } from "../../workers/outbox-runner.js";
import { createOutboxService, outboxStore } from "../outbox/index.js";
import {
  createNotifier,
  emailMessage,
  notificationSchema,
  notifyHandlers,
  parseChannels,
  signWebhook,
  slackPayload,
  teamsPayload,
  verifyWebhookSignature,
  webhookBody,
  webhookSignatureHeader,
  type ChannelConfig,
  type Notification,
} from "./index.js";

const WEBHOOK_SECRET = "whsec_test_0123456789abcdef";
const SMTP_USER = "stint";
const SMTP_PASSWORD = "smtp-pass-5up3r-s3cret";
const SLACK_TOKEN_PATH = "/services/T000/B000/XXXXslackTOKENxxxx";

const submitted: Notification = {
  event: "request.submitted",
  severity: "warning",
  title: "alice asks for prod-db-admin for 2h",
  text: "alice wants prod-db-admin on prod-postgres for 2h to investigate INC-4711.",
  fields: [
    { label: "Role", value: "prod-db-admin" },
    { label: "Duration", value: "2h" },
    { label: "Ticket", value: "INC-4711" },
  ],
  links: [
    { label: "Approve", url: "https://stint.example.com/requests/0195a1b2/approve", style: "primary" },
    { label: "Deny", url: "https://stint.example.com/requests/0195a1b2/deny", style: "danger" },
  ],
  recipients: ["bob@example.com", "carol@example.com"],
  occurredAt: "2026-03-01T09:00:00.000Z",
};

// ---------------------------------------------------------------- real local receivers

interface Recorded {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface HttpReceiver {
  port: number;
  requests: Recorded[];
  /** What the next requests get; "hang" never answers. */
  answer: { status: number; body: string } | "hang";
  url(path: string): string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];

async function httpReceiver(): Promise<HttpReceiver> {
  let server: http.Server | undefined;
  const receiver: HttpReceiver = {
    port: 0,
    requests: [],
    answer: { status: 200, body: "ok" },
    url: (path) => `http://127.0.0.1:${receiver.port}${path}`,
    async start() {
      const s = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          receiver.requests.push({
            method: req.method ?? "",
            path: req.url ?? "",
            headers: req.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          });
          const answer = receiver.answer;
          if (answer === "hang") return;
          res.writeHead(answer.status, { "content-type": "text/plain" }).end(answer.body);
        });
      });
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(receiver.port, "127.0.0.1", () => resolve());
      });
      receiver.port = (s.address() as AddressInfo).port;
      server = s;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    },
  };
  await receiver.start();
  cleanups.push(() => receiver.stop());
  return receiver;
}

interface Mail {
  from: string;
  to: string[];
  user: string | undefined;
  raw: string;
}

interface SmtpReceiver {
  port: number;
  mails: Mail[];
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function smtpReceiver(): Promise<SmtpReceiver> {
  let server: SMTPServer | undefined;
  const receiver: SmtpReceiver = {
    port: 0,
    mails: [],
    async start() {
      const s = new SMTPServer({
        // Plain SMTP on loopback: no STARTTLS offered, AUTH allowed without TLS.
        disabledCommands: ["STARTTLS"],
        allowInsecureAuth: true,
        authOptional: true,
        logger: false,
        onAuth(auth, _session, callback) {
          if (auth.username === SMTP_USER && auth.password === SMTP_PASSWORD)
            return callback(null, { user: SMTP_USER });
          const error = Object.assign(new Error("Invalid username or password"), { responseCode: 535 });
          return callback(error);
        },
        onData(stream, session, callback) {
          const chunks: Buffer[] = [];
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("end", () => {
            const from = session.envelope.mailFrom;
            receiver.mails.push({
              from: from ? from.address : "",
              to: session.envelope.rcptTo.map((r) => r.address),
              user: session.user,
              raw: Buffer.concat(chunks).toString("utf8"),
            });
            callback();
          });
        },
      });
      await new Promise<void>((resolve, reject) => {
        s.server.once("error", reject);
        s.listen(receiver.port, "127.0.0.1", () => resolve());
      });
      receiver.port = (s.server.address() as AddressInfo).port;
      server = s;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
  await receiver.start();
  cleanups.push(() => receiver.stop());
  return receiver;
}

/** Headers unfolded and quoted-printable undone: good enough to find text in a MIME message. */
function decodeQp(raw: string): string {
  const unfolded = raw.replace(/\r\n[ \t]/g, " ").replace(/=\r?\n/g, "");
  const bytes: number[] = [];
  for (let i = 0; i < unfolded.length; i++) {
    const hex = unfolded.slice(i + 1, i + 3);
    if (unfolded[i] === "=" && /^[0-9A-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(...Buffer.from(unfolded[i]!, "utf8"));
  }
  return Buffer.from(bytes).toString("utf8");
}

// ---------------------------------------------------------------- harness

let harness: Awaited<ReturnType<typeof auditHarness>> | undefined;

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await harness?.cleanup();
  harness = undefined;
});

async function setup(engine: "pglite" | "postgres", channels: ChannelConfig[], options: { timeoutMs?: number } = {}) {
  harness = await auditHarness(engine);
  const h = harness;
  const outbox = createOutboxService({ store: h.store, clock: h.clock, audit: h.audit });
  const notifier = createNotifier({ channels });
  const runner = createOutboxRunner({
    store: h.store,
    clock: h.clock,
    audit: h.audit,
    handlers: notifyHandlers(channels, { clock: h.clock, timeoutMs: options.timeoutMs ?? 5_000 }),
    registry: new Registry(),
    leaseMs: 30_000,
    random: () => 0.999,
    backoff: { baseMs: 1_000, capMs: 60_000 },
  });
  const notify = (notification: Notification, dedupeKey: string, only?: string[]) =>
    h.store.transaction((tx) => notifier.enqueueNotification(tx, outbox, notification, { dedupeKey, channels: only }));
  const job = async (key: string) => outboxStore.findByIdempotencyKey(h.store.db, key);
  return { ...h, outbox, notifier, runner, notify, job };
}

async function allReceivers() {
  const hook = await httpReceiver();
  const chat = await httpReceiver();
  const smtp = await smtpReceiver();
  const channels: ChannelConfig[] = [
    { name: "ops-hook", kind: "webhook", url: hook.url("/hooks/stint"), secret: WEBHOOK_SECRET },
    { name: "ops-slack", kind: "slack", url: chat.url(SLACK_TOKEN_PATH) },
    { name: "ops-teams", kind: "teams", url: chat.url("/teams/webhookb2/abc") },
    {
      name: "ops-mail",
      kind: "email",
      host: "127.0.0.1",
      port: smtp.port,
      from: "Stint <stint@example.com>",
      username: SMTP_USER,
      password: SMTP_PASSWORD,
      requireTls: false,
      to: ["security@example.com"],
    },
  ];
  return { hook, chat, smtp, channels };
}

// ---------------------------------------------------------------- delivery through the outbox

describe.each(["pglite", "postgres"] as const)("notifications through the outbox on %s", (engine) => {
  it("delivers one notification to a webhook, Slack, Teams and e-mail", async () => {
    const { hook, chat, smtp, channels } = await allReceivers();
    const t = await setup(engine, channels);

    const result = await t.notify(submitted, "request.submitted:0195a1b2");
    expect(result).toEqual({
      enqueued: ["ops-hook", "ops-slack", "ops-teams", "ops-mail"],
      duplicates: [],
      skipped: [],
    });
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 4, done: 4, retried: 0 });

    // Webhook: the signed JSON body and the idempotency key.
    expect(hook.requests).toHaveLength(1);
    const webhook = hook.requests[0]!;
    expect(webhook).toMatchObject({ method: "POST", path: "/hooks/stint" });
    expect(webhook.headers["content-type"]).toBe("application/json");
    expect(webhook.headers["idempotency-key"]).toBe("notify:request.submitted:0195a1b2:ops-hook");
    const signature = String(webhook.headers["stint-signature"]);
    expect(signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, signature, webhook.body, t.clock.now())).toBe(true);
    expect(verifyWebhookSignature("another-secret-entirely", signature, webhook.body, t.clock.now())).toBe(false);
    expect(JSON.parse(webhook.body)).toEqual({
      type: "stint.notification",
      version: 1,
      event: "request.submitted",
      severity: "warning",
      title: submitted.title,
      text: submitted.text,
      fields: submitted.fields,
      links: submitted.links!.map(({ label, url }) => ({ label, url })),
      occurredAt: submitted.occurredAt,
    });
    expect(webhook.body).not.toContain("bob@example.com");

    // Slack and Teams share one receiver; tell them apart by path.
    expect(chat.requests).toHaveLength(2);
    const slack = chat.requests.find((r) => r.path === SLACK_TOKEN_PATH)!;
    const slackBody = JSON.parse(slack.body) as { text: string; blocks: Record<string, unknown>[] };
    expect(slackBody.blocks[0]).toEqual({
      type: "header",
      text: { type: "plain_text", text: submitted.title, emoji: true },
    });
    const actions = slackBody.blocks.find((b) => b.type === "actions") as { elements: Record<string, unknown>[] };
    expect(actions.elements).toEqual([
      expect.objectContaining({ type: "button", url: submitted.links![0]!.url, style: "primary" }),
      expect.objectContaining({ type: "button", url: submitted.links![1]!.url, style: "danger" }),
    ]);
    expect(slack.headers["stint-signature"]).toBeUndefined();

    const teams = chat.requests.find((r) => r.path === "/teams/webhookb2/abc")!;
    const teamsBody = JSON.parse(teams.body);
    expect(teamsBody).toMatchObject({
      type: "message",
      attachments: [
        {
          contentType: "application/vnd.microsoft.card.adaptive",
          content: {
            type: "AdaptiveCard",
            version: "1.4",
            body: expect.arrayContaining([
              { type: "RichTextBlock", inlines: [expect.objectContaining({ type: "TextRun", text: submitted.title })] },
            ]),
            actions: [
              { type: "Action.OpenUrl", title: "Approve", url: submitted.links![0]!.url },
              { type: "Action.OpenUrl", title: "Deny", url: submitted.links![1]!.url },
            ],
          },
        },
      ],
    });

    // E-mail: authenticated, to the channel's list and the notification's recipients.
    expect(smtp.mails).toHaveLength(1);
    const mail = smtp.mails[0]!;
    expect(mail.user).toBe(SMTP_USER);
    expect(mail.from).toBe("stint@example.com");
    expect(mail.to.sort()).toEqual(["bob@example.com", "carol@example.com", "security@example.com"]);
    const message = decodeQp(mail.raw);
    expect(message).toContain(`Subject: [Stint] Warning: ${submitted.title}`);
    expect(message).toMatch(/^To: .*bob@example\.com.*carol@example\.com/m);
    expect(message).toContain(submitted.text);
    expect(message).toContain(`Approve: ${submitted.links![0]!.url}`);
    expect(message).toContain("Content-Type: text/html");

    // Done rows stay done: another pass sends nothing.
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 0 });
    expect(hook.requests).toHaveLength(1);
    expect(chat.requests).toHaveLength(2);
    expect(smtp.mails).toHaveLength(1);
    expect(await t.job("notify:request.submitted:0195a1b2:ops-mail")).toMatchObject({ status: "done", attempts: 1 });
  });
});

describe("notifications through the outbox", () => {
  it("a receiver that is down gets them after it comes back, exactly once", async () => {
    const { hook, smtp, channels } = await allReceivers();
    const t = await setup("pglite", channels);
    await hook.stop();
    await smtp.stop();

    expect(
      (
        await t.notify({ ...submitted, event: "breakglass.used", severity: "critical" }, "bg:1", [
          "ops-hook",
          "ops-mail",
        ])
      ).enqueued,
    ).toEqual(["ops-hook", "ops-mail"]);
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 2, done: 0, retried: 2 });
    const failedHook = (await t.job("notify:bg:1:ops-hook"))!;
    const failedMail = (await t.job("notify:bg:1:ops-mail"))!;
    expect(failedHook).toMatchObject({ status: "pending", attempts: 1 });
    expect(failedHook.lastError).toBe('webhook "ops-hook" could not be reached (ECONNREFUSED)');
    expect(failedMail).toMatchObject({ status: "pending", attempts: 1 });
    expect(failedMail.lastError).toMatch(/^email "ops-mail" failed: E[A-Z]+/);
    for (const error of [failedHook.lastError, failedMail.lastError]) {
      expect(error).not.toContain(WEBHOOK_SECRET);
      expect(error).not.toContain(SMTP_PASSWORD);
      expect(error).not.toContain("127.0.0.1");
    }

    // Not due yet: nothing is attempted.
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 0 });

    // Back on the same ports, and past the retry time.
    await hook.start();
    await smtp.start();
    const due = Math.max(failedHook.nextAttemptAt.getTime(), failedMail.nextAttemptAt.getTime());
    t.clock.set(new Date(due + 1));
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 2, done: 2 });

    expect(hook.requests).toHaveLength(1);
    expect(hook.requests[0]!.headers["idempotency-key"]).toBe("notify:bg:1:ops-hook");
    expect(
      verifyWebhookSignature(
        WEBHOOK_SECRET,
        String(hook.requests[0]!.headers["stint-signature"]),
        hook.requests[0]!.body,
        t.clock.now(),
      ),
    ).toBe(true);
    expect(smtp.mails).toHaveLength(1);
    expect(decodeQp(smtp.mails[0]!.raw)).toContain(`Subject: [Stint] Critical: ${submitted.title}`);
    expect(await t.job("notify:bg:1:ops-hook")).toMatchObject({ status: "done", attempts: 2 });
    expect(await t.job("notify:bg:1:ops-mail")).toMatchObject({ status: "done", attempts: 2 });

    t.clock.advance(3_600_000);
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 0 });
    expect(hook.requests).toHaveLength(1);
    expect(smtp.mails).toHaveLength(1);
  });

  it("enqueues once per dedupe key, only on commit, and skips unknown or recipient-less channels", async () => {
    const { channels } = await allReceivers();
    const mailWithoutList = { ...(channels[3] as Extract<ChannelConfig, { kind: "email" }>), name: "bare-mail" };
    delete (mailWithoutList as { to?: string[] }).to;
    const t = await setup("pglite", [...channels, mailWithoutList]);

    const first = await t.notify(submitted, "request.approved:1", ["ops-hook", "ops-hook", "nope", "bare-mail"]);
    expect(first).toEqual({
      enqueued: ["ops-hook", "bare-mail"],
      duplicates: [],
      skipped: [{ channel: "nope", reason: "unknown-channel" }],
    });
    const again = await t.notify(submitted, "request.approved:1", ["ops-hook"]);
    expect(again).toEqual({ enqueued: [], duplicates: ["ops-hook"], skipped: [] });

    const { recipients: _recipients, ...noRecipients } = submitted;
    expect(await t.notify(noRecipients, "request.approved:2", ["bare-mail", "ops-mail"])).toEqual({
      enqueued: ["ops-mail"],
      duplicates: [],
      skipped: [{ channel: "bare-mail", reason: "no-recipients" }],
    });

    // Addresses travel only in e-mail rows.
    expect((await t.job("notify:request.approved:1:ops-hook"))!.payload).toEqual({
      channel: "ops-hook",
      notification: noRecipients,
    });

    await expect(
      t.store.transaction(async (tx) => {
        await t.notifier.enqueueNotification(tx, t.outbox, submitted, { dedupeKey: "rolled-back" });
        throw new Error("the change failed");
      }),
    ).rejects.toThrow("the change failed");
    expect(await t.job("notify:rolled-back:ops-hook")).toBeUndefined();

    await expect(
      t.store.transaction((tx) =>
        t.notifier.enqueueNotification(
          tx,
          t.outbox,
          { ...submitted, links: [{ label: "x", url: "javascript:alert(1)" }] },
          {
            dedupeKey: "bad",
          },
        ),
      ),
    ).rejects.toThrow(/notification is not valid: links\.0\.url/);
  });

  it("a non-2xx answer, a timeout or a refused login fails the attempt with a short message and no secrets", async () => {
    const { hook, chat, smtp, channels } = await allReceivers();
    const wrongPassword = {
      ...(channels[3] as Extract<ChannelConfig, { kind: "email" }>),
      name: "bad-mail",
      password: "not-the-password-123",
    };
    // Long enough for a loaded CI machine to get the receivers' real answers; the hang below waits it out.
    const t = await setup("pglite", [...channels, wrongPassword], { timeoutMs: 2_000 });
    hook.answer = { status: 500, body: `internal error, secret=${WEBHOOK_SECRET}` };
    chat.answer = { status: 404, body: "no_service" };

    await t.notify(submitted, "e:1", ["ops-hook", "ops-slack", "bad-mail"]);
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 3, retried: 3 });
    expect((await t.job("notify:e:1:ops-hook"))!.lastError).toBe('webhook "ops-hook" answered 500');
    expect((await t.job("notify:e:1:ops-slack"))!.lastError).toBe('slack "ops-slack" answered 404 (no_service)');
    const badMail = (await t.job("notify:e:1:bad-mail"))!.lastError!;
    expect(badMail).toBe('email "bad-mail" failed: EAUTH 535');
    expect(badMail).not.toContain("not-the-password-123");
    expect(smtp.mails).toHaveLength(0);

    chat.answer = "hang";
    await t.notify(submitted, "e:2", ["ops-teams"]);
    expect(await t.runner.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    expect((await t.job("notify:e:2:ops-teams"))!.lastError).toBe('teams "ops-teams" did not answer within 2000 ms');
  });
});

// ---------------------------------------------------------------- pure rules

describe("webhook signatures", () => {
  const now = new Date("2026-03-01T09:00:00Z");
  const body = webhookBody(submitted);
  const header = webhookSignatureHeader(WEBHOOK_SECRET, now, body);

  it("is HMAC-SHA256 over `${t}.${body}`, as documented", () => {
    const t = Math.floor(now.getTime() / 1000);
    const expected = createHmac("sha256", WEBHOOK_SECRET).update(`${t}.${body}`).digest("hex");
    expect(signWebhook(WEBHOOK_SECRET, t, body)).toBe(expected);
    expect(header).toBe(`t=${t},v1=${expected}`);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, body, now)).toBe(true);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, Buffer.from(body), now)).toBe(true);
  });

  it("rejects a tampered body and a wrong secret", () => {
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, body.replace("alice", "mallory"), now)).toBe(false);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, `${body} `, now)).toBe(false);
    expect(verifyWebhookSignature("whsec_wrong_0123456789abcdef", header, body, now)).toBe(false);
  });

  it("rejects stale and far-future timestamps, within the tolerance it accepts", () => {
    const later = (sec: number) => new Date(now.getTime() + sec * 1000);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, body, later(300))).toBe(true);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, body, later(301))).toBe(false);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, body, later(-301))).toBe(false);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, header, body, later(3_600), 7_200)).toBe(true);
    // Re-stamping an old signature with a fresh t does not help.
    const v1 = header.split("v1=")[1]!;
    expect(
      verifyWebhookSignature(WEBHOOK_SECRET, `t=${now.getTime() / 1000 + 3600},v1=${v1}`, body, later(3_600)),
    ).toBe(false);
  });

  it("rejects malformed headers and accepts any one valid v1 (secret rotation)", () => {
    const t = Math.floor(now.getTime() / 1000);
    const good = signWebhook(WEBHOOK_SECRET, t, body);
    const other = signWebhook("whsec_old_0123456789abcdef", t, body);
    for (const bad of [
      "",
      "garbage",
      `v1=${good}`,
      `t=${t}`,
      `t=abc,v1=${good}`,
      `t=${t},v1=${good.toUpperCase()}`,
      `t=${t},t=${t},v1=${good}`,
    ])
      expect(verifyWebhookSignature(WEBHOOK_SECRET, bad, body, now), bad).toBe(false);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, `t=${t},v1=${other},v1=${good}`, body, now)).toBe(true);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, `t=${t}, v0=abc, v1=${good}`, body, now)).toBe(true);
  });
});

describe("rendering", () => {
  const hostile: Notification = {
    ...submitted,
    title: `<script>alert("t")</script> & co`,
    text: `mallory says <script>alert(1)</script> <!channel> <https://evil.example|click>`,
    fields: [{ label: "Reason", value: `<img src=x onerror="alert(2)">` }],
    links: [{ label: `Approve "now"`, url: `https://stint.example.com/a?x="><script>` }],
  };

  it("e-mail HTML escapes every piece of notification text", () => {
    const message = emailMessage(hostile);
    expect(message.html).not.toContain("<script>");
    expect(message.html).not.toContain("<img");
    expect(message.html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(message.html).toContain("&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt; &amp; co");
    expect(message.html).toContain(`href="https://stint.example.com/a?x=&quot;&gt;&lt;script&gt;"`);
    expect(message.subject).toBe(`[Stint] Warning: ${hostile.title}`);
    expect(message.text).toContain(hostile.text);
    expect(emailMessage({ ...submitted, severity: "info" }).subject).toBe(`[Stint] ${submitted.title}`);
  });

  it("Slack text is escaped so it cannot mention @channel or forge links", () => {
    const payload = JSON.stringify(slackPayload(hostile));
    expect(payload).not.toContain("<!channel>");
    expect(payload).not.toContain("<https://evil.example");
    expect(payload).toContain("&lt;!channel&gt;");
  });

  it("Teams gets an Adaptive Card of plain text (no Markdown) with fields and colour by severity", () => {
    const card = (
      teamsPayload({ ...submitted, severity: "critical" }) as { attachments: { content: { body: unknown[] } }[] }
    ).attachments[0]!.content;
    expect(card.body).toContainEqual({
      type: "RichTextBlock",
      inlines: [expect.objectContaining({ type: "TextRun", text: submitted.title, color: "Attention" })],
    });
    for (const f of submitted.fields!)
      expect(card.body).toContainEqual({
        type: "RichTextBlock",
        inlines: [
          { type: "TextRun", text: `${f.label}: `, weight: "Bolder" },
          { type: "TextRun", text: f.value },
        ],
      });
    expect(JSON.stringify(card.body)).not.toMatch(/"TextBlock"|"FactSet"/);
  });

  it("the notification schema refuses non-http links, multi-line titles and control characters", () => {
    expect(notificationSchema.safeParse(submitted).success).toBe(true);
    for (const bad of [
      { ...submitted, links: [{ label: "x", url: "javascript:alert(1)" }] },
      { ...submitted, links: [{ label: "x", url: "https://user:pw@example.com/" }] },
      { ...submitted, title: "line one\nBcc: someone@example.com" },
      { ...submitted, text: "bell\u0007" },
      { ...submitted, recipients: ["not an address"] },
      { ...submitted, event: "Request Submitted" },
    ])
      expect(notificationSchema.safeParse(bad).success).toBe(false);
  });

  it("channel config is validated, and errors do not echo secrets", () => {
    expect(() => parseChannels([{ name: "h", kind: "webhook", url: "https://x.example", secret: "short" }])).toThrow(
      /channel #1 is not valid: secret/,
    );
    expect(() =>
      parseChannels([
        { name: "s", kind: "slack", url: "https://hooks.slack.com/services/a" },
        { name: "s", kind: "teams", url: "https://example.webhook.office.com/b" },
      ]),
    ).toThrow('notification channel "s" is configured twice');
    try {
      parseChannels([{ name: "h", kind: "webhook", url: "ftp://x", secret: "a-secret-that-is-long-enough" }]);
    } catch (error) {
      expect((error as Error).message).not.toContain("a-secret-that-is-long-enough");
    }
  });
});
