/**
 * The webhook connector against a real HTTP endpoint (node:http on 127.0.0.1) that
 * verifies the signature like a customer would and keeps who holds what.
 */
import canonicalize from "canonicalize";
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verifyWebhookSignature } from "../../notify/index.js";
import { ConnectorError, type ConnectorTarget } from "../connector.types.js";
import { DOES_NOT_REPORT_ACCOUNTS, DOES_NOT_REPORT_HOLDERS, webhookConnector } from "./webhook.connector.js";

const suffix = randomBytes(4).toString("hex");
const SECRET = `whsec_${randomBytes(24).toString("hex")}`;
const API_KEY = `key_${randomBytes(12).toString("hex")}`;

interface Received {
  path: string;
  action: string;
  login: string | null;
  entitlement: Record<string, unknown> | null;
  id: string;
  idempotencyKey: string | undefined;
  apiKey: string | undefined;
  connection: string | undefined;
  body: Record<string, unknown>;
}

interface Endpoint {
  url: string;
  received: Received[];
  /** login → canonical JSON of each entitlement held */
  holders: Map<string, Set<string>>;
  close(): Promise<void>;
}

const key = (entitlement: unknown) => canonicalize(entitlement) as string;

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": typeof body === "string" ? "text/plain" : "application/json" });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

/** A customer's endpoint; `secret` is the one it verifies with. */
async function startEndpoint(secret: string): Promise<Endpoint> {
  const received: Received[] = [];
  const holders = new Map<string, Set<string>>();
  const failedOnce = new Set<string>();

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer) => {
    const header = req.headers[SIGNATURE_HEADER.toLowerCase()];
    if (typeof header !== "string" || !verifyWebhookSignature(secret, header, raw, new Date()))
      return send(res, 401, { error: { message: "signature does not match" } });
    const body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
    const path = req.url ?? "/";
    const call: Received = {
      path,
      action: body.action as string,
      login: body.login as string | null,
      entitlement: body.entitlement as Record<string, unknown> | null,
      id: body.id as string,
      idempotencyKey: req.headers[IDEMPOTENCY_HEADER.toLowerCase()] as string | undefined,
      apiKey: req.headers["x-api-key"] as string | undefined,
      connection: req.headers.connection,
      body,
    };
    received.push(call);

    if (path === "/slow") return; // never answers
    if (path === "/down") return send(res, 500, "internal error: database is down");
    if (path === "/throttled") return send(res, 429, { error: { message: "slow down" } });
    if (path === "/redirect") {
      res.writeHead(307, { location: "https://elsewhere.example.com/" });
      return res.end();
    }
    if (path === "/echo") return send(res, 400, `bad request; your secret was ${secret} and key ${API_KEY}`);
    if (path === "/garbage") return send(res, 200, { holders: "everyone", accounts: [{ login: "" }] });
    if (path === "/big" && call.action === "revoke")
      return send(res, 503, `<html>${"overloaded ".repeat(20_000)}</html>`);
    if (path === "/flaky" && !failedOnce.has(call.id)) {
      failedOnce.add(call.id);
      return send(res, 503, { error: { message: "try again" } });
    }
    if (path === "/no-reports" && (call.action === "observe" || call.action === "discover"))
      return send(res, 501, { error: { message: "not implemented" } });

    switch (call.action) {
      case "test":
        return send(res, 200, { detail: "test IAM bridge v2" });
      case "provision": {
        if (call.entitlement?.group === "missing")
          return send(res, 404, { error: { message: 'group "missing" does not exist' } });
        const held = holders.get(call.login as string) ?? new Set<string>();
        held.add(key(call.entitlement));
        holders.set(call.login as string, held);
        if (path === "/big") return send(res, 200, { log: "granted ".repeat(50_000) });
        return send(res, 204, "");
      }
      case "revoke":
        holders.get(call.login as string)?.delete(key(call.entitlement));
        return send(res, 200, { ok: true });
      case "observe":
        return send(res, 200, {
          holders: [...holders].filter(([, held]) => held.has(key(call.entitlement))).map(([login]) => login),
        });
      case "discover":
        return send(res, 200, {
          accounts: [...holders].flatMap(([login, held]) =>
            [...held].map((e) => ({
              login,
              privilege: `member of ${(JSON.parse(e) as { group: string }).group}`,
              entitlement: JSON.parse(e) as unknown,
              lastActivity: "2026-03-01T10:00:00+01:00",
            })),
          ),
        });
      default:
        return send(res, 400, { error: { message: `unknown action ${String(call.action)}` } });
    }
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handle(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    holders,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port that nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

let endpoint: Endpoint;
let impostor: Endpoint; // verifies with another secret
const errors: ConnectorError[] = [];

const target = (path = "/iam", overrides: Partial<ConnectorTarget> = {}): ConnectorTarget => ({
  name: `wh-${suffix}`,
  address: `${endpoint.url}${path}`,
  options: { headers: { "X-Api-Key": API_KEY } },
  credential: SECRET,
  ...overrides,
});

/** The ConnectorError a call fails with (also kept, to check no message holds a secret). */
async function failure(promise: Promise<unknown>): Promise<ConnectorError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  expect((error as Error).message).not.toContain(SECRET);
  errors.push(error as ConnectorError);
  return error as ConnectorError;
}

const since = (n: number) => endpoint.received.slice(n);

beforeAll(async () => {
  endpoint = await startEndpoint(SECRET);
  impostor = await startEndpoint(`whsec_${randomBytes(24).toString("hex")}`);
});

afterAll(async () => {
  await endpoint?.close();
  await impostor?.close();
});

describe("webhook connector against a real endpoint", () => {
  const alice = `alice-${suffix}@example.com`;
  const bob = `bob-${suffix}@example.com`;
  const admins = { group: `admins-${suffix}`, scope: { project: "prod", level: 2 } };

  it("test() sends a signed call and shows the endpoint's detail", async () => {
    const n = endpoint.received.length;
    expect(await webhookConnector.test(target())).toEqual({ detail: "test IAM bridge v2" });
    const [call] = since(n);
    expect(call).toMatchObject({ action: "test", login: null, entitlement: null, apiKey: API_KEY });
    expect(call?.connection).toBe("close");
    expect(call?.body).toMatchObject({ version: 1, target: `wh-${suffix}` });
    expect(new Date(call?.body.sentAt as string).toISOString()).toBe(call?.body.sentAt);
  });

  it("provisions, observes and revokes end to end, idempotently", async () => {
    await webhookConnector.provision(target(), { login: alice, entitlement: admins });
    await webhookConnector.provision(target(), { login: bob, entitlement: admins });
    expect(endpoint.holders.get(alice)?.has(key(admins))).toBe(true);
    expect(await webhookConnector.observe(target(), admins)).toEqual([alice, bob].sort());

    // Provisioning what is there succeeds and changes nothing.
    await webhookConnector.provision(target(), { login: alice, entitlement: admins });
    expect(endpoint.holders.get(alice)?.size).toBe(1);

    await webhookConnector.revoke(target(), { login: alice, entitlement: admins });
    expect(await webhookConnector.observe(target(), admins)).toEqual([bob]);
    // Revoking what is gone succeeds too.
    await webhookConnector.revoke(target(), { login: alice, entitlement: admins });
    expect(await webhookConnector.observe(target(), admins)).toEqual([bob]);

    const accounts = await webhookConnector.discover(target());
    expect(accounts).toContainEqual({
      login: bob,
      privilege: `member of admins-${suffix}`,
      entitlement: admins,
      lastActivity: "2026-03-01T09:00:00.000Z",
    });
    expect(accounts.some((a) => a.login === alice)).toBe(false);

    await webhookConnector.revoke(target(), { login: bob, entitlement: admins });
    expect(await webhookConnector.observe(target(), admins)).toEqual([]);
  });

  it("sends the same idempotency key on every attempt of the same change, and only then", async () => {
    const entitlement = { group: `ops-${suffix}`, scope: { a: 1, b: 2 } };
    const n = endpoint.received.length;
    await webhookConnector.provision(target(), { login: alice, entitlement });
    // Same change with the keys written in another order: still the same change.
    await webhookConnector.provision(target(), {
      login: alice,
      entitlement: { scope: { b: 2, a: 1 }, group: entitlement.group },
    });
    await webhookConnector.provision(target(), { login: bob, entitlement });
    await webhookConnector.revoke(target(), { login: alice, entitlement });
    await webhookConnector.revoke(target(), { login: alice, entitlement });
    await webhookConnector.observe(target(), entitlement);
    await webhookConnector.observe(target(), entitlement);
    const [p1, p2, pBob, r1, r2, o1, o2] = since(n);
    for (const call of since(n)) expect(call.idempotencyKey).toBe(call.id);
    expect(p1?.id).toMatch(/^provision:[0-9a-f]{64}$/);
    expect(p2?.id).toBe(p1?.id);
    expect(pBob?.id).not.toBe(p1?.id);
    expect(r1?.id).toMatch(/^revoke:[0-9a-f]{64}$/);
    expect(r2?.id).toBe(r1?.id);
    // Reads are never deduplicated: each has its own key.
    expect(o1?.id).not.toBe(o2?.id);
    await webhookConnector.revoke(target(), { login: bob, entitlement });
  });

  it("a retry after a 503 carries the same key and completes the change", async () => {
    const entitlement = { group: `flaky-${suffix}` };
    const n = endpoint.received.length;
    const first = await failure(webhookConnector.provision(target("/flaky"), { login: alice, entitlement }));
    expect(first.reason).toBe("unavailable");
    expect(first.message).toContain("503");
    expect(first.message).toContain("try again");
    expect(endpoint.holders.get(alice)?.has(key(entitlement)) ?? false).toBe(false);

    await webhookConnector.provision(target("/flaky"), { login: alice, entitlement });
    const [attempt1, attempt2] = since(n);
    expect(attempt2?.idempotencyKey).toBe(attempt1?.idempotencyKey);
    expect(attempt2?.body).toMatchObject({ action: "provision", login: alice, entitlement });
    expect(endpoint.holders.get(alice)?.has(key(entitlement))).toBe(true);
    await webhookConnector.revoke(target(), { login: alice, entitlement });
  });

  it("a signature the endpoint cannot verify is refused (401), and nothing changes", async () => {
    const entitlement = { group: `sig-${suffix}` };
    const forged = { ...target(), address: `${impostor.url}/iam` };
    const error = await failure(webhookConnector.provision(forged, { login: alice, entitlement }));
    expect(error.reason).toBe("refused");
    expect(error.message).toBe("the endpoint answered 401: signature does not match");
    expect(impostor.received).toEqual([]);
    expect(impostor.holders.size).toBe(0);
    expect((await failure(webhookConnector.test(forged))).reason).toBe("refused");
  });

  it("refuses every call without a signing secret, before sending anything", async () => {
    const n = endpoint.received.length;
    for (const credential of [null, "", "short"]) {
      const unsigned = target("/iam", { credential });
      for (const call of [
        webhookConnector.test(unsigned),
        webhookConnector.provision(unsigned, { login: alice, entitlement: admins }),
        webhookConnector.revoke(unsigned, { login: alice, entitlement: admins }),
        webhookConnector.observe(unsigned, admins),
        webhookConnector.discover(unsigned),
      ]) {
        const error = await failure(call);
        expect(error.reason).toBe("refused");
        expect(error.message).toMatch(/signing secret/);
      }
    }
    expect(since(n)).toEqual([]);
  });

  it("refuses plain http to anything but loopback, before sending anything", async () => {
    const error = await failure(webhookConnector.test(target("/iam", { address: "http://example.com/hook" })));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("must use https");
  });

  it("passes on the endpoint's own reason for a refusal", async () => {
    const error = await failure(
      webhookConnector.provision(target(), { login: alice, entitlement: { group: "missing" } }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toBe('the endpoint answered 404: group "missing" does not exist');
  });

  it("classifies 500 and 429 as unavailable, and a redirect as refused", async () => {
    const down = await failure(webhookConnector.provision(target("/down"), { login: alice, entitlement: admins }));
    expect(down.reason).toBe("unavailable");
    expect(down.message).toBe("the endpoint answered 500: internal error: database is down");
    const throttled = await failure(
      webhookConnector.revoke(target("/throttled"), { login: alice, entitlement: admins }),
    );
    expect(throttled.reason).toBe("unavailable");
    const redirect = await failure(webhookConnector.test(target("/redirect")));
    expect(redirect.reason).toBe("refused");
    expect(redirect.message).toContain("redirect");
  });

  it("reads long answers only as far as it needs", async () => {
    const entitlement = { group: `big-${suffix}` };
    // A long 2xx body does not undo a change that was made.
    await webhookConnector.provision(target("/big"), { login: alice, entitlement });
    expect(endpoint.holders.get(alice)?.has(key(entitlement))).toBe(true);
    // A long error page is still a 503, quoted in part.
    const error = await failure(webhookConnector.revoke(target("/big"), { login: alice, entitlement }));
    expect(error.reason).toBe("unavailable");
    expect(error.message).toMatch(/^the endpoint answered 503: <html>overloaded overloaded/);
    expect(error.message.length).toBeLessThan(400);
    await webhookConnector.revoke(target(), { login: alice, entitlement });
  });

  it("a closed port is unavailable", async () => {
    const port = await closedPort();
    const error = await failure(webhookConnector.test(target("/iam", { address: `http://127.0.0.1:${port}/iam` })));
    expect(error.reason).toBe("unavailable");
    expect(error.message).toContain(`127.0.0.1:${port}`);
  });

  it("an endpoint that does not answer in time is unavailable", async () => {
    const slow = target("/slow", { options: { timeout: "300ms" } });
    const error = await failure(webhookConnector.provision(slow, { login: alice, entitlement: admins }));
    expect(error.reason).toBe("unavailable");
    expect(error.message).toMatch(/did not answer within 300ms/);
  });

  it("stops when the caller aborts", async () => {
    const controller = new AbortController();
    const pending = webhookConnector.observe(target("/slow"), admins, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    const error = await failure(pending);
    expect(error.reason).toBe("unavailable");
    expect(error.message).toMatch(/cancelled/);
  });

  it("an endpoint that answers 501 does not report holders or standing access", async () => {
    const observe = await failure(webhookConnector.observe(target("/no-reports"), admins));
    expect(observe.reason).toBe("refused");
    expect(observe.message).toBe(DOES_NOT_REPORT_HOLDERS);
    const discover = await failure(webhookConnector.discover(target("/no-reports")));
    expect(discover.reason).toBe("refused");
    expect(discover.message).toBe(DOES_NOT_REPORT_ACCOUNTS);
    // The same endpoint still provisions.
    await webhookConnector.provision(target("/no-reports"), { login: alice, entitlement: admins });
    await webhookConnector.revoke(target("/no-reports"), { login: alice, entitlement: admins });
  });

  it("a body it cannot read is refused", async () => {
    const observe = await failure(webhookConnector.observe(target("/garbage"), admins));
    expect(observe.reason).toBe("refused");
    expect(observe.message).toMatch(/^the endpoint answered with a body Stint cannot read: holders/);
    const discover = await failure(webhookConnector.discover(target("/garbage")));
    expect(discover.message).toMatch(/^the endpoint answered with a body Stint cannot read: accounts/);
  });

  it("hides the secret and header values even when the endpoint echoes them", async () => {
    const error = await failure(webhookConnector.test(target("/echo")));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("[redacted]");
    expect(error.message).not.toContain(API_KEY);
  });

  it("checks logins and entitlements before calling", async () => {
    const n = endpoint.received.length;
    const badLogin = await failure(webhookConnector.provision(target(), { login: "a\nb", entitlement: admins }));
    expect(badLogin.reason).toBe("refused");
    const big = { blob: "x".repeat(17 * 1024) };
    const badEntitlement = await failure(webhookConnector.revoke(target(), { login: alice, entitlement: big }));
    expect(badEntitlement.reason).toBe("refused");
    expect(since(n)).toEqual([]);
  });

  it("no error message above contained the secret", () => {
    expect(errors.length).toBeGreaterThan(20);
    for (const error of errors) expect(error.message).not.toContain(SECRET);
  });
});
