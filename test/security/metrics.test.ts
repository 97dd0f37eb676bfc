/**
 * Issue 12, finding 15: `/metrics` was public and ran database queries on every scrape, so anyone who
 * could reach the API could read operational figures and load the database at will. Now a scrape needs
 * the configured scrape token (STINT_METRICS_TOKEN, for Prometheus) or a signed-in admin, security or
 * auditor (the Dashboards page); and the figures read from the database are refreshed at most once per
 * STINT_METRICS_REFRESH, however often anyone scrapes.
 */
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, RootOperationNode } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppStore } from "../../src/db/index.js";
import { manualClock } from "../../src/lib/clock.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const SCRAPE_TOKEN = "scrape-token-for-the-metrics-test-0123456789";
const clock = manualClock("2026-03-02T10:00:00Z");
let server: TestServer;
let databaseReads = 0;

/** Counts the queries the server sends through `store.db` (where the metrics' gauges read from). */
const counter: KyselyPlugin = {
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    databaseReads++;
    return args.node;
  },
  transformResult: async (args: PluginTransformResultArgs) => args.result,
};

function counting(store: AppStore): AppStore {
  const db = store.db.withPlugin(counter);
  return {
    engine: store.engine,
    db,
    transaction: (fn) => store.transaction(fn),
    migrate: (dir) => store.migrate(dir),
    ping: () => store.ping(),
    listen: (channel, onMessage) => store.listen(channel, onMessage),
    close: () => store.close(),
  };
}

const scrape = (authorization?: string) =>
  server.app.inject({ method: "GET", url: "/metrics", headers: authorization ? { authorization } : {} });

beforeAll(async () => {
  server = await testServer("pglite", {
    clock,
    env: { STINT_METRICS_TOKEN: SCRAPE_TOKEN, STINT_METRICS_REFRESH: "30s" },
    wrapStore: counting,
  });
});
afterAll(async () => server?.cleanup());

describe("metrics endpoint (issue 12 finding 15)", () => {
  it("refuses an unauthenticated scrape, a wrong token and a plain user", async () => {
    const anonymous = await scrape();
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json()).toMatchObject({ error: { code: "UNAUTHENTICATED" } });
    expect(anonymous.body).not.toContain("stint_outbox_depth");
    const wrong = await scrape(`Bearer ${SCRAPE_TOKEN.slice(0, -1)}x`);
    expect(wrong.statusCode).toBe(401);
    const user = await scrape(await server.userWithRoles("metrics-user", ["user"]));
    expect(user.statusCode).toBe(403);
    expect(user.body).not.toContain("stint_outbox_depth");
  });

  it("answers the scrape token and the roles that see the dashboards", async () => {
    const scraper = await scrape(`Bearer ${SCRAPE_TOKEN}`);
    expect(scraper.statusCode).toBe(200);
    expect(scraper.headers["content-type"]).toMatch(/^text\/plain/);
    expect(scraper.body).toContain("stint_outbox_depth");
    expect(scraper.body).toContain("stint_http_requests_total");
    for (const role of ["admin", "security", "auditor"] as const) {
      const res = await scrape(await server.userWithRoles(`metrics-${role}`, [role]));
      expect(res.statusCode, role).toBe(200);
      expect(res.body).toContain("stint_outbox_depth");
    }
  });

  it("reads the database once per refresh interval, not once per scrape", async () => {
    const token = `Bearer ${SCRAPE_TOKEN}`;
    clock.advance(60_000); // whatever earlier scrapes read is stale now
    const before = databaseReads;
    expect((await scrape(token)).statusCode).toBe(200);
    const perRefresh = databaseReads - before;
    expect(perRefresh).toBeGreaterThan(0); // the gauges do read the database…
    const afterFirst = databaseReads;
    const many = await Promise.all(Array.from({ length: 20 }, () => scrape(token)));
    for (let i = 0; i < 20; i++) many.push(await scrape(token));
    expect(many.every((r) => r.statusCode === 200)).toBe(true);
    expect(databaseReads - afterFirst).toBe(0); // …but 40 more scrapes within the interval read nothing
    clock.advance(31_000);
    await scrape(token);
    expect(databaseReads - afterFirst).toBe(perRefresh); // one refresh once the interval has passed
  });
});
