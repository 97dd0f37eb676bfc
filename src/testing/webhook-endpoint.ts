/**
 * Test support: a real HTTP endpoint that speaks the webhook connector's contract
 * (docs/connectors/webhook.md), checks every signature, and keeps who holds what.
 * Tests switch its behaviour: answer, fail (500), refuse (403 with a message), or
 * hold provisioning calls until released.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { SIGNATURE_HEADER, verifyWebhookSignature } from "../modules/notify/index.js";

export interface WebhookEndpoint {
  url: string;
  secret: string;
  /** login → JSON of the entitlements it holds */
  holders: Map<string, Set<string>>;
  /** Every call, in order: action, login, id. */
  calls: { action: string; login: string | null; id: string }[];
  mode: "ok" | "down" | "refuse" | "hold";
  refusal: string;
  /** Releases provisioning calls held in mode "hold". */
  release(): void;
  /** Resolves when a call is being held. */
  held(): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookEndpoint(secret: string): Promise<WebhookEndpoint> {
  let releaseHeld: () => void = () => undefined;
  let gate = new Promise<void>((resolve) => (releaseHeld = resolve));
  let onHeld: () => void = () => undefined;
  let heldSignal = new Promise<void>((resolve) => (onHeld = resolve));

  const endpoint: Omit<WebhookEndpoint, "url"> = {
    secret,
    holders: new Map(),
    calls: [],
    mode: "ok",
    refusal: "the IAM role does not exist",
    release() {
      releaseHeld();
      gate = new Promise<void>((resolve) => (releaseHeld = resolve));
    },
    held: () => heldSignal,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const reply = (status: number, value: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    if (!verifyWebhookSignature(secret, String(req.headers[SIGNATURE_HEADER.toLowerCase()] ?? ""), body, new Date()))
      return reply(401, { error: { message: "bad signature" } });
    const call = JSON.parse(body) as {
      action: string;
      login: string | null;
      entitlement: Record<string, unknown> | null;
      id: string;
    };
    endpoint.calls.push({ action: call.action, login: call.login, id: call.id });
    if (endpoint.mode === "down") return reply(500, { error: { message: "maintenance" } });
    if (endpoint.mode === "refuse" && call.action === "provision")
      return reply(403, { error: { message: endpoint.refusal } });
    if (endpoint.mode === "hold" && call.action === "provision") {
      onHeld();
      heldSignal = new Promise<void>((resolve) => (onHeld = resolve));
      await gate;
    }
    const key = JSON.stringify(call.entitlement);
    switch (call.action) {
      case "provision": {
        const held = endpoint.holders.get(call.login!) ?? new Set<string>();
        held.add(key);
        endpoint.holders.set(call.login!, held);
        return reply(200, { ok: true });
      }
      case "revoke":
        endpoint.holders.get(call.login!)?.delete(key);
        return reply(200, { ok: true });
      case "observe":
        return reply(200, {
          holders: [...endpoint.holders].filter(([, set]) => set.has(key)).map(([login]) => login),
        });
      case "discover":
        return reply(200, {
          accounts: [...endpoint.holders].flatMap(([login, set]) =>
            [...set].map((e) => ({ login, privilege: `holds ${e}`, entitlement: JSON.parse(e) as unknown })),
          ),
        });
      default:
        return reply(200, { ok: true });
    }
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(endpoint, { url: `http://127.0.0.1:${port}/stint` }) as WebhookEndpoint;
}
