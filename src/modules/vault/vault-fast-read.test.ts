/**
 * A secret read served by the HTTP fast path (http/fast-path.ts, ahead of Fastify): the plain read decided
 * from memory answers what the route answers (body, headers) after its audit event committed; a caller
 * memory must refuse (a disabled user) gets the route's refusal; and a read whose audit write fails gives
 * nothing away and is not read a second time: the route answers the fast path's error (app.inject never
 * meets the fast path: it is the reference here).
 */
import { connect, type AddressInfo } from "node:net";
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, RootOperationNode } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppStore } from "../../db/index.js";
import { listenWithFastPath } from "../../testing/fast-path.js";
import { seedUser } from "../../testing/pim.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { insertsInto } from "../../testing/statements.js";

const SECRET = "ledger/db/reader";
const URL = `/v1/secrets/${encodeURIComponent(SECRET)}/value`;
const VALUE = "fast-path-secret-value";

/** Audit writes tried, and whether they fail (the store refuses them: a real error from the driver's path). */
const audit = { attempts: 0, fail: false };
const failingAudit: KyselyPlugin = {
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    if (insertsInto(args.node, "audit_pending")) {
      audit.attempts++;
      if (audit.fail) throw new Error("the store refused the audit write (test)");
    }
    return args.node;
  },
  transformResult: async (args: PluginTransformResultArgs) => args.result,
};
const wrap = (store: AppStore): AppStore => ({
  ...store,
  db: store.db.withPlugin(failingAudit),
  transaction: (fn) => store.transaction((tx) => fn(tx.withPlugin(failingAudit))),
});

let server: TestServer;
let base: string;
let probe: Awaited<ReturnType<typeof listenWithFastPath>>;

beforeAll(async () => {
  server = await testServer("pglite", { wrapStore: wrap });
  for (const name of ["fast-rita", "fast-sam"]) await seedUser(server, name);
  const put = await server.app.inject({
    method: "PUT",
    url: `/v1/secrets/${encodeURIComponent(SECRET)}`,
    headers: { authorization: server.adminAuth },
    payload: { kind: "password", value: VALUE, platformRoles: ["user"] },
  });
  expect(put.statusCode).toBe(200);
  probe = await listenWithFastPath(server);
  base = probe.base;
}, 60_000);

afterAll(async () => {
  await server?.cleanup();
});

const reads = async () => (await server.audit.read({ action: "secret.read", limit: 10_000 })).length;
const comparable = (body: string) => body.replace(/"correlationId":"[^"]*"/, '"correlationId":"…"');

/** The read over HTTP (fast path in front) and through app.inject (Fastify only). */
const both = (authorization: string, url = URL) => probe.both(url, { authorization });

describe("a secret read's fast path", () => {
  it("answers the plain read from memory as the route does, each read with its committed audit event", async () => {
    const rita = await server.login("fast-rita");
    await both(rita); // the token and the secret are read from the database once
    const before = await reads();
    const { http, inject, fast } = await both(rita);
    expect(fast).toBe(true);
    expect(http.status).toBe(200);
    expect(http.body).toBe(inject.body);
    expect(http.headers).toEqual(inject.headers);
    expect(JSON.parse(http.body)).toMatchObject({ path: SECRET, version: 1, value: VALUE });
    expect((await reads()) - before).toBe(2);
    // Anything unusual is the route's: a query, an unescaped slash, an escape the fast path does not decode.
    for (const url of [`${URL}?version=1`, `/v1/secrets/ledger/db/reader/value`, URL.replace("ledger", "%6Cedger")]) {
      const other = await both(rita, url);
      expect(other.fast, url).toBe(false);
      expect(other.http.status, url).toBe(other.inject.status);
      expect(comparable(other.http.body), url).toBe(comparable(other.inject.body));
    }
  });

  it("refuses a disabled user as the route does, with no value", async () => {
    const sam = await server.login("fast-sam");
    await both(sam);
    expect((await both(sam)).fast).toBe(true);
    const disabled = await server.app.inject({
      method: "POST",
      url: "/v1/users/fast-sam/disable",
      headers: { authorization: server.adminAuth },
      payload: { reason: "left the company" },
    });
    expect(disabled.statusCode).toBe(200);
    const { http, inject, fast } = await both(sam);
    expect(fast).toBe(false);
    expect(http.status).toBeGreaterThanOrEqual(400);
    expect(http.status).toBe(inject.status);
    expect(comparable(http.body)).toBe(comparable(inject.body));
    expect(http.headers).toEqual(inject.headers);
    expect(http.body).not.toContain(VALUE);
  });

  it("records the read of a caller who hung up before the answer, and goes on serving", async () => {
    const rita = await server.login("fast-rita");
    await both(rita);
    const before = await reads();
    const { port } = server.app.server.address() as AddressInfo;
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", resolve));
    socket.write(`GET ${URL} HTTP/1.1\r\nHost: x\r\nAuthorization: ${rita}\r\n\r\n`);
    socket.destroy();
    for (let i = 0; i < 100 && (await reads()) === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await reads()) - before).toBe(1);
    expect((await both(rita)).http.body).toContain(VALUE);
  });

  it("gives nothing away when the read's audit write fails, and does not read a second time", async () => {
    const rita = await server.login("fast-rita");
    await both(rita);
    const before = await reads();
    audit.fail = true;
    audit.attempts = 0;
    const res = await fetch(base + URL, { headers: { authorization: rita } });
    const body = await res.text();
    const attempts = audit.attempts;
    const ref = await server.app.inject({ method: "GET", url: URL, headers: { authorization: rita } });
    audit.fail = false;
    expect(attempts).toBe(1);
    expect(res.status).toBe(500);
    expect(body).not.toContain(VALUE);
    expect(res.status).toBe(ref.statusCode);
    expect(comparable(body)).toBe(comparable(ref.body));
    expect(await reads()).toBe(before);
    expect((await both(rita)).http.body).toContain(VALUE);
  });
});
