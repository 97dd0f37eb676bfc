/**
 * buildApp's per-request pipeline, on a small app of its own: each route's authentication hook (made
 * when the route is registered, so nothing is looked up per request), the headers every answer carries,
 * `request.route`, and the refusal of unstorable text whether it arrives percent-escaped, raw or in a body.
 */
import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { StintError } from "../lib/errors.js";
import { createLogger } from "../lib/logger.js";
import { ANONYMOUS, type Actor } from "../modules/authz/authz.types.js";
import { buildApp, requestId, type App, type RouteEntry } from "./app.js";

const ALICE: Actor = {
  kind: "principal",
  id: "00000000-0000-7000-8000-000000000001",
  name: "alice",
  principalKind: "user",
  roles: ["user"],
};

let app: App;
let authentications = 0;
const order: string[] = [];
const seen: (RouteEntry | null)[] = [];

beforeAll(async () => {
  app = await buildApp(
    {
      logger: createLogger({ level: "silent" }),
      trustedProxies: [],
      scrapeToken: "scrape-token-for-the-app-test-0123456789",
      authenticate(request) {
        authentications += 1;
        const header = request.headers.authorization;
        if (header === undefined) return ANONYMOUS;
        if (header === "Bearer alice") return ALICE;
        if (header === "Bearer later") return Promise.resolve(ALICE);
        throw new StintError("UNAUTHENTICATED");
      },
    },
    (scoped) => {
      scoped.get(
        "/echo/:word",
        {
          config: { requirement: "public" },
          schema: { params: z.object({ word: z.string() }), querystring: z.object({ q: z.string().optional() }) },
        },
        async (request) => {
          seen.push(request.route);
          return { word: request.params.word, q: request.query.q ?? null };
        },
      );
      scoped.post(
        "/echo",
        { config: { requirement: "public" }, schema: { body: z.object({ text: z.string() }) } },
        async (request) => ({ text: request.body.text }),
      );
      scoped.get(
        "/mine",
        {
          config: { requirement: "authenticated" },
          onRequest: (request, _reply, done) => {
            order.push(`route hook after authentication: ${request.actor.kind}`);
            done();
          },
        },
        async (request) => {
          seen.push(request.route);
          return { name: request.actor.kind === "principal" ? request.actor.name : null };
        },
      );
      scoped.get("/admin-only", { config: { requirement: "users.write" } }, async () => ({ ok: true }));
      scoped.get("/scraped", { config: { requirement: "metrics.read", scrapeToken: true } }, async () => ({ ok: 1 }));
    },
  );
  await app.ready();
});
afterAll(async () => app?.close());

const UNSTORABLE = "The request must not contain NUL (U+0000) characters or unpaired UTF-16 surrogates.";

describe("each route's authentication hook", () => {
  it("authenticates once per request and refuses what the route's requirement refuses", async () => {
    const before = authentications;
    expect((await app.inject({ method: "GET", url: "/mine" })).statusCode).toBe(401);
    expect(
      (await app.inject({ method: "GET", url: "/mine", headers: { authorization: "Bearer bad" } })).statusCode,
    ).toBe(401);
    const mine = await app.inject({ method: "GET", url: "/mine", headers: { authorization: "Bearer alice" } });
    expect(mine.json()).toEqual({ name: "alice" });
    const later = await app.inject({ method: "GET", url: "/mine", headers: { authorization: "Bearer later" } });
    expect(later.json()).toEqual({ name: "alice" });
    // The HEAD route Fastify derives from a GET has one hook of its own, not the GET's as well.
    expect(
      (await app.inject({ method: "HEAD", url: "/mine", headers: { authorization: "Bearer alice" } })).statusCode,
    ).toBe(200);
    const forbidden = await app.inject({
      method: "GET",
      url: "/admin-only",
      headers: { authorization: "Bearer alice" },
    });
    expect(forbidden.statusCode).toBe(403);
    expect(authentications - before).toBe(6);
  });

  it("runs before the route's own onRequest hooks", async () => {
    order.length = 0;
    await app.inject({ method: "GET", url: "/mine", headers: { authorization: "Bearer alice" } });
    expect(order).toEqual(["route hook after authentication: principal"]);
  });

  it("admits the scrape token only where the route says so", async () => {
    const scraper = { authorization: "Bearer scrape-token-for-the-app-test-0123456789" };
    expect((await app.inject({ method: "GET", url: "/scraped", headers: scraper })).statusCode).toBe(200);
    expect((await app.inject({ method: "GET", url: "/mine", headers: scraper })).statusCode).toBe(401);
  });

  it("tells the handler which route matched, per method", async () => {
    seen.length = 0;
    await app.inject({ method: "GET", url: "/echo/hello" });
    await app.inject({ method: "GET", url: "/mine", headers: { authorization: "Bearer alice" } });
    await app.inject({ method: "HEAD", url: "/mine", headers: { authorization: "Bearer alice" } });
    expect(seen.map((route) => route && `${route.method} ${route.url} ${route.requirement}`)).toEqual([
      "GET /echo/:word public",
      "GET /mine authenticated",
      "HEAD /mine authenticated",
    ]);
    expect(seen[1]).toBe(app.routeTable.find((route) => route.method === "GET" && route.url === "/mine"));
  });
});

describe("headers every answer carries", () => {
  const standing = (headers: Record<string, unknown>) => {
    expect(headers["x-request-id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(headers["x-content-type-options"]).toBe("nosniff");
    expect(headers["cache-control"]).toBe("no-store");
  };

  it("on success, on a refusal, on an unknown route and on an unknown route's unreadable body", async () => {
    standing((await app.inject({ method: "GET", url: "/echo/x" })).headers);
    standing((await app.inject({ method: "GET", url: "/mine" })).headers);
    const unknown = await app.inject({ method: "GET", url: "/nowhere" });
    expect(unknown.statusCode).toBe(404);
    standing(unknown.headers);
    const badJson = await app.inject({
      method: "POST",
      url: "/nowhere",
      payload: "{bad",
      headers: { "content-type": "application/json" },
    });
    expect(badJson.json()).toMatchObject({ error: { code: "BAD_JSON" } });
    standing(badJson.headers);
  });

  it("makes request ids UUIDv7-shaped and never the same twice", () => {
    const ids = Array.from({ length: 20_000 }, () => requestId());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    // Time-ordered: the first 48 bits are the millisecond the id was made.
    expect(Math.abs(parseInt(ids.at(-1)!.replace("-", "").slice(0, 12), 16) - Date.now())).toBeLessThan(60_000);
  });

  it("keeps a well-formed request id the client sent", async () => {
    const res = await app.inject({ method: "GET", url: "/echo/x", headers: { "x-request-id": "client-chosen-id-1" } });
    expect(res.headers["x-request-id"]).toBe("client-chosen-id-1");
  });
});

describe("unstorable text", () => {
  const refused = async (request: InjectOptions) => {
    const res = await app.inject(request);
    expect(res.statusCode, JSON.stringify(request)).toBe(400);
    expect(res.json().error.message).toBe(UNSTORABLE);
  };

  it("is refused percent-escaped in the URL, or in a body", async () => {
    await refused({ method: "GET", url: "/echo/a%00b" });
    await refused({ method: "GET", url: "/echo/x?q=a%00b" });
    await refused({ method: "GET", url: "/echo/x?q=%00" });
    // A raw NUL cannot cross Node's HTTP parser; inject escapes it, as any client must.
    await refused({ method: "GET", url: "/echo/x?q=a\u0000b" });
    await refused({ method: "POST", url: "/echo", payload: { text: "a\u0000b" } });
    await refused({ method: "POST", url: "/echo?q=%00", payload: { text: "fine" } });
  });

  it("lets ordinary text through, escaped or not", async () => {
    expect((await app.inject({ method: "GET", url: "/echo/plain?q=a+b" })).json()).toEqual({ word: "plain", q: "a b" });
    expect((await app.inject({ method: "GET", url: "/echo/caf%C3%A9?q=%E2%9C%93" })).json()).toEqual({
      word: "café",
      q: "✓",
    });
    expect(
      (await app.inject({ method: "POST", url: "/echo", payload: { text: "a\u00e9\ud83d\ude00" } })).json(),
    ).toEqual({ text: "a\u00e9\ud83d\ude00" });
  });
});
