/**
 * Workload identity: the issuer's discovery document and key set are fetched through the address policy
 * (a jwks_uri at the metadata service or in STINT_DENY_NETWORKS, a redirect there: refused without connecting),
 * and an issuer that is silent, endless or huge fails alone. Set-up: test/e2e/workload-issuer.ts.
 */
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  apiTokensOfService,
  exchange,
  exchangeEvents,
  hex,
  jobToken,
  startIssuer,
  startRawServer,
  workloadServer,
} from "./workload-issuer.js";

const wl = workloadServer();

describe("workload identity: issuer fetches go through the address policy", () => {
  const ATTACKED = `ci${hex}x`;
  /** Connections made to an address STINT_DENY_NETWORKS lists (there must be none). */
  let deniedConnections = 0;
  let denied: NetServer;
  let deniedUrl = "";
  let trustCount = 0;

  beforeAll(async () => {
    denied = createNetServer((socket) => {
      deniedConnections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => denied.listen(0, "127.0.0.2", resolve));
    deniedUrl = `127.0.0.2:${(denied.address() as AddressInfo).port}`;
    expect((await wl.h.admin("POST", "/v1/users", { name: ATTACKED, kind: "service" })).status).toBe(201);
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => denied?.close(() => resolve()));
  });

  /** A trust of the attacked service identity on `url`, so that its tokens are looked at. */
  async function trustIssuer(url: string) {
    const res = await wl.h.admin("POST", `/v1/services/${ATTACKED}/trusts`, {
      name: `t${++trustCount}`,
      issuer: url,
      audiences: ["stint"],
      conditions: { repository: "acme/app" },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  }

  async function deniedEvent(issuerUrl: string) {
    return (await exchangeEvents()).find((e) => e.outcome === "denied" && e.details.issuer === issuerUrl);
  }

  it("refuses a jwks_uri at the metadata service or in STINT_DENY_NETWORKS, connecting nowhere and keeping nothing", async () => {
    let jwksUri = "https://169.254.169.254/latest/meta-data/jwks";
    const evil = await startIssuer({ jwksUri: () => jwksUri });
    evil.publish([wl.keyA]);
    try {
      await trustIssuer(evil.url);
      const before = await apiTokensOfService(ATTACKED);
      const metadata = await exchange(await jobToken(wl.keyA, { iss: evil.url }));
      expect(metadata.status, JSON.stringify(metadata.body)).toBe(502);
      expect(metadata.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");
      expect(metadata.body.error?.message).toContain("169.254.169.254");
      expect((await deniedEvent(evil.url))?.details).toMatchObject({ code: "WORKLOAD_ISSUER_REFUSED" });

      // An issuer itself at a denied address is not contacted either.
      const deniedIssuer = `https://${deniedUrl}`;
      await trustIssuer(deniedIssuer);
      const walled = await exchange(await jobToken(wl.keyA, { iss: deniedIssuer }));
      expect(walled.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");

      jwksUri = `https://${deniedUrl}/jwks`;
      const deny = await exchange(await jobToken(wl.keyA, { iss: evil.url }));
      expect(deny.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");
      expect(deny.body.error?.message).toContain("STINT_DENY_NETWORKS");
      expect(deniedConnections).toBe(0);
      expect(evil.hits.filter((u) => u.includes("jwks"))).toEqual([]);
      expect(await apiTokensOfService(ATTACKED)).toBe(before);

      // Nothing of the refused document was kept: once it names its own key set, the next exchange
      // reads the discovery document again and works.
      jwksUri = `${evil.url}/jwks`;
      const discoveries = evil.hits.length;
      const fixed = await exchange(await jobToken(wl.keyA, { iss: evil.url }));
      expect(fixed.status, JSON.stringify(fixed.body)).toBe(200);
      expect(evil.hits.length).toBeGreaterThan(discoveries);
    } finally {
      await evil.close();
    }
  });

  it("follows no redirect: one to an address STINT_DENY_NETWORKS lists is refused without connecting there", async () => {
    const redirecting = await startRawServer((req, res) => {
      res.writeHead(302, { location: `http://${deniedUrl}${req.url ?? "/"}` });
      res.end();
    });
    try {
      await trustIssuer(redirecting.url);
      const res = await exchange(await jobToken(wl.keyA, { iss: redirecting.url }));
      expect(res.status, JSON.stringify(res.body)).toBe(502);
      expect(res.body.error?.code).toBe("WORKLOAD_ISSUER_REFUSED");
      expect(res.body.error?.message).toContain("redirect");
      expect(redirecting.requests).toBe(1);
      expect(deniedConnections).toBe(0);
      expect((await deniedEvent(redirecting.url))?.details).toMatchObject({ code: "WORKLOAD_ISSUER_REFUSED" });
    } finally {
      await redirecting.close();
    }
  });

  it("a silent issuer, an endless answer and a huge one fail alone: other issuers' jobs exchange meanwhile", async () => {
    // Accepts the connection and never answers.
    const silent = await startRawServer(() => undefined);
    // Answers the headers and the start of a document, then nothing more.
    const endless = await startRawServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"issuer": "');
    });
    // Streams a 16 MiB document (no content-length).
    const huge = await startRawServer((_req, res) => {
      res.on("error", () => undefined);
      res.writeHead(200, { "content-type": "application/json" });
      const chunk = `"${"x".repeat(64 * 1024 - 2)}",`;
      res.write("[");
      let sent = 0;
      const pump = () => {
        while (sent < 256 && res.write(chunk)) sent++;
        if (sent < 256) res.once("drain", pump);
        else res.end('""]');
      };
      pump();
    });
    try {
      for (const s of [silent, endless, huge]) await trustIssuer(s.url);
      const tokens = await Promise.all([silent, endless, huge].map((s) => jobToken(wl.keyA, { iss: s.url })));
      const settled = new Set<string>();
      const pending = [silent, endless, huge].map((s, i) => exchange(tokens[i]!).finally(() => settled.add(s.url)));
      // A job of a working issuer is exchanged while the silent and endless ones are still waiting.
      const meanwhile = await exchange(await jobToken(wl.keyA));
      expect(meanwhile.status, JSON.stringify(meanwhile.body)).toBe(200);
      expect(settled.has(silent.url)).toBe(false);
      expect(settled.has(endless.url)).toBe(false);
      // Each ends at the deadline (or the size cap) with the issuer's code, none hangs.
      for (const res of await Promise.all(pending)) {
        expect(res.status, JSON.stringify(res.body)).toBe(502);
        expect(res.body.error?.code).toBe("WORKLOAD_ISSUER_UNAVAILABLE");
      }
      for (const s of [silent, endless, huge])
        expect((await deniedEvent(s.url))?.details).toMatchObject({ code: "WORKLOAD_ISSUER_UNAVAILABLE" });
      const messages = (await Promise.all(pending)).map((r) => r.body.error?.message ?? "");
      expect(messages[0]).toContain("no answer within");
      expect(messages[1]).toContain("no answer within");
      expect(messages[2]).toContain("larger than");
    } finally {
      for (const s of [silent, endless, huge]) await s.close();
    }
  });
});
