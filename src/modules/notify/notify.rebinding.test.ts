import http from "node:http";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { HandlerContext } from "../outbox/index.js";
import { notifyHandlers, type ChannelConfig } from "./index.js";

// DNS rebinding: the name answers a public address at the first lookup (the check) and loopback after it.
// Only the system resolver is fooled here (no resolver is passed in), so code that looks the name up a
// second time at connect time (the old check-then-send) reaches the listener on 127.0.0.1.
const lookups = new Map<string, number>();
vi.mock("node:dns/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:dns/promises")>();
  const lookup = async (host: string, options?: unknown) => {
    if (host !== "localhost") return real.lookup(host, options as never);
    const n = (lookups.get(host) ?? 0) + 1;
    lookups.set(host, n);
    return [{ address: n === 1 ? "93.184.216.34" : "127.0.0.1", family: 4 }];
  };
  return { ...real, default: { ...real, lookup }, lookup };
});

const policy = { allow: [], deny: ["127.0.0.0/8"] };
const notification = {
  event: "request.submitted",
  severity: "warning",
  title: "alice asks",
  text: "approve",
  occurredAt: "2026-01-01T00:00:00.000Z",
};
const context = (key: string) =>
  ({ jobId: "1", idempotencyKey: key, attempt: 1, signal: new AbortController().signal }) as HandlerContext;
const deliver = (channels: ChannelConfig[], name: string) =>
  notifyHandlers(channels, { addressPolicy: policy, timeoutMs: 2_000 })["notify.deliver"]!(
    { channel: name, notification },
    context(`notify:k:${name}`),
  );

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  lookups.clear();
  for (const close of closers.splice(0)) await close();
});

describe("notify: a name re-pointed between the check and the connection (DNS rebinding)", () => {
  it("a webhook is not sent to the forbidden address", async () => {
    let requests = 0;
    const server = http.createServer((req, res) => {
      requests++;
      res.end("ok");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    const channels = [
      { name: "hook", kind: "webhook", url: `http://localhost:${port}/hook`, secret: "whsec_0123456789abcdef" },
    ] as ChannelConfig[];
    await expect(deliver(channels, "hook")).rejects.toThrow(
      /webhook "hook" refused by the address policy: localhost resolves to/,
    );
    expect(requests).toBe(0);
  });

  it("an e-mail is not sent to the forbidden address", async () => {
    let connections = 0;
    const smtp = new SMTPServer({ authOptional: true, disabledCommands: ["STARTTLS"], logger: false });
    smtp.on("connect", () => connections++);
    await new Promise<void>((resolve) => smtp.listen(0, "127.0.0.1", () => resolve()));
    closers.push(() => new Promise((resolve) => smtp.close(() => resolve())));
    const port = (smtp.server.address() as AddressInfo).port;
    const channels = [
      { name: "mail", kind: "email", host: "localhost", port, from: "stint@example.com", to: ["a@example.com"] },
    ] as ChannelConfig[];
    await expect(deliver(channels, "mail")).rejects.toThrow(
      /email "mail" refused by the address policy: localhost resolves to/,
    );
    expect(connections).toBe(0);
  });
});
