/** Issuer fetches under the address policy: the judged address is the one connected to, whatever DNS says later. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fetchIssuerJson, IssuerFetchError } from "./issuer-fetch.js";

let server: Server;
let port = 0;
const hosts: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    hosts.push(req.headers.host ?? "");
    if (req.url === "/redirect") res.writeHead(301, { location: "http://127.0.0.1/elsewhere" }).end();
    else if (req.url === "/big") res.writeHead(200, { "content-length": "100000" }).end("x".repeat(100_000));
    else res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const options = { timeoutMs: 2000, maxBytes: 1024 };

async function failure(promise: Promise<unknown>): Promise<IssuerFetchError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IssuerFetchError);
  return error as IssuerFetchError;
}

describe("fetchIssuerJson", () => {
  it("connects to the address the name resolved to when judged, sending the name as Host", async () => {
    let lookups = 0;
    const resolve = () => {
      lookups++;
      return Promise.resolve([{ address: "127.0.0.1", family: 4 }]);
    };
    const body = await fetchIssuerJson(new URL(`http://issuer.invalid:${port}/doc`), { ...options, resolve });
    expect(body).toEqual({ ok: true });
    expect(lookups).toBe(1);
    expect(hosts.at(-1)).toBe(`issuer.invalid:${port}`);
  });

  it("refuses a name that resolves to the metadata service or a denied network, before connecting", async () => {
    const metadata = () => Promise.resolve([{ address: "169.254.169.254", family: 4 }]);
    const refused = await failure(
      fetchIssuerJson(new URL("https://issuer.invalid/doc"), { ...options, resolve: metadata }),
    );
    expect(refused.kind).toBe("refused");
    expect(refused.message).toContain("metadata");
    const before = hosts.length;
    const denied = await failure(
      fetchIssuerJson(new URL(`http://127.0.0.1:${port}/doc`), {
        ...options,
        policy: { allow: [], deny: ["127.0.0.0/8"] },
      }),
    );
    expect(denied.kind).toBe("refused");
    expect(hosts.length).toBe(before);
  });

  it("follows no redirect and stops at the size cap", async () => {
    const redirect = await failure(fetchIssuerJson(new URL(`http://127.0.0.1:${port}/redirect`), options));
    expect(redirect.kind).toBe("refused");
    const big = await failure(fetchIssuerJson(new URL(`http://127.0.0.1:${port}/big`), options));
    expect(big).toMatchObject({ kind: "unavailable", message: expect.stringContaining("larger than 1024") });
  });
});
