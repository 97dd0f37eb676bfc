/**
 * The pinned fetch identity-provider calls go through: it connects to the address it judged, not to what a
 * name resolves to later (DNS rebinding), refuses what the address policy refuses without connecting, follows
 * no redirect, and gives up at its deadline and its size cap.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Resolve } from "./address-guard.js";
import { pinnedFetch, PinnedFetchError } from "./pinned-fetch.js";

const answers =
  (...addresses: string[]): Resolve =>
  async () =>
    addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));

describe("pinnedFetch", () => {
  let server: Server;
  let port: number;
  const seen: { method: string; url: string; host: string; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        seen.push({ method: req.method!, url: req.url!, host: req.headers.host!, body });
        if (req.url === "/redirect") {
          res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" });
          return res.end();
        }
        if (req.url === "/silent") return; // never answers
        if (req.url === "/huge") {
          res.writeHead(200, { "content-type": "application/json" });
          const chunk = Buffer.alloc(64 * 1024, 0x20);
          for (let i = 0; i < 64; i++) res.write(chunk);
          return res.end();
        }
        res.writeHead(200, { "content-type": "application/json", "x-seen": "yes" });
        res.end(JSON.stringify({ ok: true, method: req.method, body }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("connects to the address it judged, whatever the name would resolve to now", async () => {
    // `idp.invalid` resolves nowhere on this machine: the answer can only come from the judged address.
    const fetcher = pinnedFetch({ timeoutMs: 5_000, maxBytes: 10_000, resolve: answers("127.0.0.1") });
    const res = await fetcher(`http://idp.invalid:${port}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code: "abc" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-seen")).toBe("yes");
    expect(await res.json()).toEqual({ ok: true, method: "POST", body: "grant_type=authorization_code&code=abc" });
    expect(seen.at(-1)).toMatchObject({ host: `idp.invalid:${port}`, url: "/token" });
  });

  it("refuses an address the policy refuses, without connecting", async () => {
    const before = seen.length;
    const metadata = pinnedFetch({ timeoutMs: 5_000, maxBytes: 10_000, resolve: answers("169.254.169.254") });
    await expect(metadata(`http://idp.invalid:${port}/x`)).rejects.toMatchObject({ kind: "refused" });
    const denied = pinnedFetch({
      timeoutMs: 5_000,
      maxBytes: 10_000,
      policy: { allow: [], deny: ["127.0.0.0/8"] },
      resolve: answers("127.0.0.1"),
    });
    await expect(denied(`http://idp.invalid:${port}/x`)).rejects.toBeInstanceOf(PinnedFetchError);
    expect(seen.length).toBe(before);
  });

  it("answers a redirect as it came and follows nothing", async () => {
    const fetcher = pinnedFetch({ timeoutMs: 5_000, maxBytes: 10_000, resolve: answers("127.0.0.1") });
    const res = await fetcher(`http://idp.invalid:${port}/redirect`);
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toContain("169.254.169.254");
  });

  it("gives up at its deadline on a silent server and at its size cap on a huge answer", async () => {
    const fetcher = pinnedFetch({ timeoutMs: 300, maxBytes: 100_000, resolve: answers("127.0.0.1") });
    await expect(fetcher(`http://idp.invalid:${port}/silent`)).rejects.toThrow(/no answer within 300 ms/);
    const capped = pinnedFetch({ timeoutMs: 5_000, maxBytes: 100_000, resolve: answers("127.0.0.1") });
    await expect(capped(`http://idp.invalid:${port}/huge`)).rejects.toThrow(/larger than 100000 bytes/);
  });
});
