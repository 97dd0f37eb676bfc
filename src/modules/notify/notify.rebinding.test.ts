import http from "node:http";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { afterEach, describe, expect, it } from "vitest";
import type { Resolve } from "../../lib/address-guard.js";
import type { HandlerContext } from "../outbox/index.js";
import { notifyHandlers, type ChannelConfig } from "./index.js";

// DNS rebinding: `localhost` answers 127.0.0.2 (allowed) at the first lookup and 127.0.0.1 (denied) after it.
// Only the resolver the address check consults (the `resolve` option) is fooled; a client resolving the name
// itself at connect time (fetch, nodemailer) reaches the trap on 127.0.0.1. A delivery that checks once and
// connects to what it checked reaches 127.0.0.2; one that looks the name up twice (a pre-send check, then the
// pinned connect) sees the denied answer the second time and fails.
let lookups = 0;
const rebinding: Resolve = async () => {
  lookups++;
  return [{ address: lookups === 1 ? "127.0.0.2" : "127.0.0.1", family: 4 }];
};

const policy = { allow: [], deny: ["127.0.0.1/32"] };
const notification = {
  event: "request.submitted",
  severity: "warning",
  title: "alice asks",
  text: "approve",
  occurredAt: "2026-01-01T00:00:00.000Z",
};
const context = (key: string) =>
  ({ jobId: "1", idempotencyKey: key, attempt: 1, signal: new AbortController().signal }) as HandlerContext;
const deliver = (channels: ChannelConfig[], name: string, options: Parameters<typeof notifyHandlers>[1] = {}) =>
  notifyHandlers(channels, { addressPolicy: policy, timeoutMs: 2_000, ...options })["notify.deliver"]!(
    { channel: name, notification },
    context(`notify:k:${name}`),
  );

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  lookups = 0;
  for (const close of closers.splice(0)) await close();
});

interface Listener {
  listen(port: number, host: string, callback: () => void): unknown;
  close(callback: () => void): unknown;
  once(event: "error", callback: (error: Error) => void): unknown;
}

/** Two listeners on one port: the allowed 127.0.0.2 and the trap on the denied 127.0.0.1. */
async function pair<T extends Listener>(make: () => T, address: (server: T) => AddressInfo) {
  for (let attempt = 0; ; attempt++) {
    const allowed = make();
    await new Promise<void>((resolve) => allowed.listen(0, "127.0.0.2", resolve));
    const port = address(allowed).port;
    const trap = make();
    const bound = await new Promise<boolean>((resolve) => {
      trap.once("error", () => resolve(false));
      trap.listen(port, "127.0.0.1", () => resolve(true));
    });
    closers.push(() => new Promise((resolve) => allowed.close(() => resolve())));
    if (bound) {
      closers.push(() => new Promise((resolve) => trap.close(() => resolve())));
      return { port, allowed, trap };
    }
    if (attempt === 5) throw new Error("no port free on both 127.0.0.1 and 127.0.0.2");
  }
}

function httpPair() {
  const hits = { allowed: 0, trap: 0 };
  const server = (which: keyof typeof hits) => () =>
    http.createServer((req, res) => {
      hits[which]++;
      res.end("ok");
    });
  let n = 0;
  return pair(
    () => server(n++ % 2 === 0 ? "allowed" : "trap")(),
    (s) => s.address() as AddressInfo,
  ).then((p) => ({ ...p, hits }));
}

function smtpPair() {
  const hits = { allowed: 0, trap: 0 };
  let n = 0;
  return pair(
    () => {
      const which = n++ % 2 === 0 ? "allowed" : "trap";
      const smtp = new SMTPServer({ authOptional: true, disabledCommands: ["STARTTLS"], logger: false });
      smtp.on("connect", () => hits[which]++);
      return smtp;
    },
    (s) => s.server.address() as AddressInfo,
  ).then((p) => ({ ...p, hits }));
}

const hook = (port: number): ChannelConfig[] => [
  { name: "hook", kind: "webhook", url: `http://localhost:${port}/hook`, secret: "whsec_0123456789abcdef" },
];
const mail = (port: number): ChannelConfig[] => [
  { name: "mail", kind: "email", host: "localhost", port, from: "stint@example.com", to: ["a@example.com"] },
];

describe("notify: a name re-pointed between the check and the connection (DNS rebinding)", () => {
  it("a webhook goes to the address that was judged, looked up once, never to the re-pointed one", async () => {
    const { port, hits } = await httpPair();
    await deliver(hook(port), "hook", { resolve: rebinding });
    expect(hits).toEqual({ allowed: 1, trap: 0 });
    expect(lookups).toBe(1);
  });

  it("an e-mail goes to the address that was judged, looked up once, never to the re-pointed one", async () => {
    const { port, hits } = await smtpPair();
    await deliver(mail(port), "mail", { resolve: rebinding });
    expect(hits).toEqual({ allowed: 1, trap: 0 });
    expect(lookups).toBe(1);
  });
});

describe("notify: the connection's own check is the only one, and it refuses on every path", () => {
  // Through the `resolve` option (the one the check consults): the name answers the denied address only.
  const denied = async () => [{ address: "127.0.0.1", family: 4 }];

  it.each(["webhook", "slack", "teams"] as const)("%s: refused, nothing reaches the denied address", async (kind) => {
    const { port, hits } = await httpPair();
    const url = `http://localhost:${port}/hook`;
    const channels = [
      kind === "webhook" ? { name: "c", kind, url, secret: "whsec_0123456789abcdef" } : { name: "c", kind, url },
    ] as ChannelConfig[];
    await expect(deliver(channels, "c", { resolve: denied })).rejects.toThrow(
      `${kind} "c" refused by the address policy: localhost resolves to`,
    );
    expect(hits).toEqual({ allowed: 0, trap: 0 });
  });

  it("email: refused, nothing reaches the denied address", async () => {
    const { port, hits } = await smtpPair();
    await expect(deliver(mail(port), "mail", { resolve: denied })).rejects.toThrow(
      /email "mail" refused by the address policy: localhost resolves to/,
    );
    expect(hits).toEqual({ allowed: 0, trap: 0 });
  });
});
