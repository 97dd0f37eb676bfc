/**
 * Class: a network peer between the CLI and Stint's PostgreSQL proxy (a spoofed DNS answer for the proxy's
 * host, a hostile Wi-Fi, a compromised router).
 *
 * `stint db proxy ROLE` signs in to the proxy with the user's database token, sent as the password inside
 * TLS. The tunnel took any certificate (`rejectUnauthorized: false`): whoever answered for the proxy's
 * address, with a certificate of its own, received the token and could open the user's sessions until the
 * activation ended. The server now names the proxy's certificate (its SHA-256) in the token answer, which
 * the CLI gets over the API's own verified HTTPS; the tunnel compares it before anything is sent.
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { TLSSocket } from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../src/testing/cli-run.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";
import { freePort } from "../../src/testing/ports.js";
import { createTestCa } from "../../src/testing/postgres-instance.js";

let pgh: PgProxyHarness;
let dir: string;
let impostor: Server;
let impostorPort: number;
/** Everything the impostor read inside TLS. */
let received = Buffer.alloc(0);
let genuineSha256: string;
let impostorSha256: string;

beforeAll(async () => {
  pgh = await pgProxyHarness();
  await pgh.token(); // activates the role
  dir = await mkdtemp(path.join(tmpdir(), "stint-cli-tunnel-cert-"));
  await saveSignedIn(dir, { name: pgh.user, now: Date.now() });
  const ca = await createTestCa();
  // The genuine proxy's certificate, as the server would name it; the impostor has one of its own.
  genuineSha256 = new X509Certificate((await ca.issue(["127.0.0.1"])).cert).fingerprint256;
  const own = await ca.issue(["127.0.0.1"]);
  impostorSha256 = new X509Certificate(own.cert).fingerprint256;
  impostor = createServer((socket) => {
    socket.on("error", () => undefined);
    socket.once("data", () => {
      socket.write("S"); // yes to the SSLRequest
      const secure = new TLSSocket(socket, { isServer: true, cert: own.cert, key: own.key });
      secure.on("error", () => undefined);
      secure.on("data", (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        // Asks for the password as the real proxy does, once the startup message is in.
        if (chunk[0] === 0 && received.length === chunk.length)
          secure.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
      });
    });
  });
  await new Promise<void>((resolve) => impostor.listen(0, "127.0.0.1", resolve));
  impostorPort = (impostor.address() as AddressInfo).port;
}, 120_000);

afterAll(async () => {
  await new Promise((resolve) => impostor?.close(resolve));
  await pgh?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The real server's token answer, as the signed-in user, with the proxy's address answered by the impostor. */
function fetchVia(rewrite: (body: Record<string, unknown>) => Record<string, unknown>): typeof fetch {
  return async (input, init) => {
    const url = new URL(String(input));
    if (init?.method === "POST" && url.pathname === "/v1/db/tokens") {
      const reply = await pgh.h.as(pgh.user, "POST", url.pathname, JSON.parse(String(init.body)));
      // The harness's proxy runs without TLS: the server says so (null), a field older servers lack.
      expect(reply.body).toHaveProperty("proxyCertificateSha256", null);
      const body = rewrite({ ...(reply.body as Record<string, unknown>), host: "127.0.0.1", port: impostorPort });
      return new Response(JSON.stringify(body), {
        status: reply.status,
        headers: { "content-type": "application/json" },
      });
    }
    return new Response(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: "no route" } }), { status: 404 });
  };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

/** Runs `stint db proxy`, connects one local client with the tunnel's password, and stops the command. */
async function tunnelOnce(args: string[], fetchImpl: typeof fetch) {
  const port = await freePort();
  const signalsBefore = process.listeners("SIGINT");
  const out = { stdout: "", stderr: "" };
  let done = false;
  const running = runCliCaptured(["db", "proxy", pgh.role, "--port", String(port), "--json", ...args], {
    env: { STINT_CONFIG_DIR: dir, HOME: dir },
    fetch: fetchImpl,
    onWrite: (stream, chunk) => (out[stream] += chunk),
  }).finally(() => (done = true));
  let clientError = "";
  try {
    await until("the tunnel to listen or the command to end", () => done || out.stderr.includes("Listening on"));
    if (!done) {
      const { password } = JSON.parse(out.stdout) as { password: string };
      const client = new pg.Client({ host: "127.0.0.1", port, user: pgh.user, password, database: pgh.database });
      client.on("error", () => undefined);
      // The impostor never finishes a sign-in: the client either is refused or waits, so it is ended here.
      await Promise.race([
        client.connect().catch((error: Error) => (clientError = error.message)),
        until("the tunnel to refuse or the token to leave", () => clientError !== "" || received.length > 0),
      ]);
      await until("the client's answer or the token", () => clientError !== "" || received.includes(token()));
      await client.end().catch(() => undefined);
    }
  } finally {
    for (const stop of process.listeners("SIGINT").filter((l) => !signalsBefore.includes(l))) (stop as () => void)();
  }
  return { result: await running, clientError };
}

let issued = "";
const token = () => issued;
const recordToken = (body: Record<string, unknown>) => {
  issued = String(body.password);
  return body;
};

describe("stint db proxy against whoever answers for the proxy", () => {
  it("a proxy with another certificate than the server names gets no token; the CLI says why", async () => {
    received = Buffer.alloc(0);
    const { result, clientError } = await tunnelOnce(
      [],
      fetchVia((body) => recordToken({ ...body, proxyCertificateSha256: genuineSha256 })),
    );
    expect(issued).toMatch(/^stint_/);
    expect(received.includes(issued)).toBe(false);
    expect(received.length).toBe(0);
    expect(clientError).toContain("PROXY_CERT_MISMATCH");
    expect(result.stderr).toContain("PROXY_CERT_MISMATCH");
  }, 120_000);

  it("the control: a proxy showing the certificate the server names gets the token", async () => {
    received = Buffer.alloc(0);
    const { result } = await tunnelOnce(
      [],
      fetchVia((body) => recordToken({ ...body, proxyCertificateSha256: impostorSha256.toLowerCase() })),
    );
    expect(received.includes(issued)).toBe(true);
    expect(result.stderr).not.toContain("PROXY_CERT_MISMATCH");
  }, 120_000);

  it("a server that names no certificate (older): the CLI refuses to start unless told --insecure-proxy", async () => {
    received = Buffer.alloc(0);
    const { result } = await tunnelOnce(
      [],
      fetchVia((body) => {
        const { proxyCertificateSha256: _omitted, ...older } = recordToken(body);
        return older;
      }),
    );
    expect(received.length).toBe(0);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toContain("PROXY_UNVERIFIABLE");
  }, 120_000);
});
