/**
 * Issue 13, finding 6: the edges of the HTTP API, against a real listening server (a socket, not
 * app.inject, where the edge is the socket's): an over-long URL gets the error envelope, endpoints
 * that take no body refuse one, deeply nested JSON is refused before it is parsed, and an unseal
 * share is checked even when the vault is already unsealed.
 */
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

/** Sends raw request bytes and reads the whole answer (the server may close the connection). */
function raw(port: number, head: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    socket.on("data", (chunk) => (data += chunk.toString("latin1")));
    socket.on("error", (error) => (data ? undefined : reject(error)));
    socket.on("close", () => {
      const [headers = "", body = ""] = data.split("\r\n\r\n");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1] ?? 0);
      const contentType = /\r\ncontent-type: ([^\r]+)/i.exec(headers)?.[1];
      resolve({ status, contentType, body });
    });
    socket.write(head);
  });
}

function post(port: number, path: string, auth: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: auth };
    if (body !== undefined) headers["content-type"] = "application/json";
    const req = httpRequest({ host: "127.0.0.1", port, path, method: "POST", headers }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => (text += chunk.toString()));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], body: text }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

const codeOf = (answer: Answer) => (JSON.parse(answer.body) as { error?: { code?: string } }).error?.code;

describe("HTTP edges (issue 13 finding 6)", () => {
  let server: TestServer;
  let port: number;
  let auth: string;
  let shares: string[] = [];

  beforeAll(async () => {
    server = await testServer("pglite");
    await server.app.listen({ host: "127.0.0.1", port: 0 });
    port = (server.app.server.address() as AddressInfo).port;
    auth = server.adminAuth;
  }, 120_000);

  afterAll(async () => {
    await server?.cleanup();
  });

  it("answers a 100 KB path or query with the error envelope (431 HEADERS_TOO_LARGE), not an empty body", async () => {
    for (const target of [`/v1/${"a".repeat(100_000)}`, `/v1/users?q=${"b".repeat(100_000)}`]) {
      const answer = await raw(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      expect(answer.status).toBe(431);
      expect(answer.contentType).toMatch(/^application\/json/);
      expect(codeOf(answer)).toBe("HEADERS_TOO_LARGE");
    }
    // The server still answers afterwards.
    expect((await raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).status).toBe(200);
  });

  it("refuses deeply nested JSON before parsing it, on any endpoint", async () => {
    const deep = `${"[".repeat(10_000)}${"]".repeat(10_000)}`;
    const answer = await post(port, "/v1/users", auth, `{"name":${deep}}`);
    expect(answer.status).toBe(400);
    expect(codeOf(answer)).toBe("VALIDATION_FAILED");
    expect(JSON.parse(answer.body).error.message).toMatch(/nested too deeply/);
  });

  it("endpoints that take no body refuse null, [] and deep JSON and do nothing (/v1/operator/seal)", async () => {
    const init = await post(port, "/v1/operator/init", auth, JSON.stringify({ shares: 3, threshold: 2 }));
    expect(init.status, init.body).toBe(200);
    shares = (JSON.parse(init.body) as { shares: string[] }).shares;
    const status = async () =>
      (await server.app.inject({ method: "GET", url: "/v1/operator/status", headers: { authorization: auth } })).json<{
        sealed: boolean;
      }>();
    expect((await status()).sealed).toBe(false);
    for (const body of ["null", "[]", "0", '"x"', '{"force":true}', `${"[".repeat(10_000)}${"]".repeat(10_000)}`]) {
      const answer = await post(port, "/v1/operator/seal", auth, body);
      expect(answer.status, `${body.slice(0, 20)}: ${answer.body}`).toBe(400);
      expect(["VALIDATION_FAILED", "BAD_JSON"]).toContain(codeOf(answer));
      expect((await status()).sealed, body.slice(0, 20)).toBe(false);
    }
    // No body, or an empty object, is what a bodiless endpoint takes.
    expect((await post(port, "/v1/operator/seal", auth, "{}")).status).toBe(200);
    expect((await status()).sealed).toBe(true);
  });

  it("checks an unseal share when the vault is already unsealed instead of answering 200", async () => {
    // The vault is sealed by the previous test, with `shares` (threshold 2).
    const unseal = (share: string) => post(port, "/v1/operator/unseal", auth, JSON.stringify({ share }));
    const garbage = ["garbage-share-value", "stint-share-zz", `stint-share-${"ab".repeat(5)}`];
    for (const share of garbage) expect(codeOf(await unseal(share)), share).toBe("VALIDATION_FAILED");
    expect((await unseal(shares[0]!)).status).toBe(200);
    const done = await unseal(shares[1]!);
    expect(JSON.parse(done.body)).toMatchObject({ sealed: false });

    for (const share of garbage) {
      const answer = await unseal(share);
      expect(answer.status, `${share}: ${answer.body}`).toBe(400);
      expect(codeOf(answer)).toBe("VALIDATION_FAILED");
    }
    // A well-formed share when there is nothing to unseal is a clear conflict, not a silent success.
    const again = await unseal(shares[2]!);
    expect(again.status, again.body).toBe(409);
    expect(codeOf(again)).toBe("CONFLICT");
    expect(JSON.parse(again.body).error.message).toMatch(/already unsealed/);
  });
});
