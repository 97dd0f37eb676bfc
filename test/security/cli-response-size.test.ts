/**
 * Class: a malicious server (or an impostor at `--server`, or a proxy in between) exhausting the CLI's memory.
 *
 * The CLI read every answer whole (`response.text()`, the KRL and a recording into a list of chunks) with no
 * limit: an answer of gigabytes, or one that never ends, made `stint` allocate until the machine swapped or the
 * process died (on a CI runner, a jump host shared by others). JSON answers and error bodies are now read up to
 * 32 MiB, a recording up to the size its session declares, and past that the CLI stops reading and says
 * RESPONSE_TOO_LARGE. The servers here are real HTTP servers on loopback; each counts what it got to send.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../src/testing/cli-run.js";

const MiB = 1024 * 1024;
const SESSION_ID = "0190b6a0-0000-7000-8000-0000000000cc";
let dir: string;
let server: Server;
let base: string;
/** Bytes of body each path's answer got onto the socket before the client stopped reading. */
const sent = new Map<string, number>();

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => (res.off("drain", done), res.off("close", done), resolve());
    res.on("drain", done).on("close", done);
  });
}

/** Writes `prefix`, then `total` bytes of `fill` in 1 MiB chunks, then `suffix`; stops when the client goes. */
async function flood(res: ServerResponse, key: string, total: number, fill: string, prefix = "", suffix = "") {
  const chunk = Buffer.alloc(MiB, fill);
  let closed = false;
  res.on("close", () => (closed = true));
  res.write(prefix);
  let count = 0;
  while (count < total && !closed) {
    count += chunk.length;
    sent.set(key, count);
    if (!res.write(chunk)) await drainedOrClosed(res);
  }
  if (!closed) res.end(suffix);
}

const sessionAnswer = {
  id: SESSION_ID,
  kind: "ssh",
  user: "ann",
  role: "r",
  target: "t",
  login: "ann",
  requestId: SESSION_ID,
  clientAddress: null,
  node: "n",
  startedAt: "2030-01-01T00:00:00.000Z",
  endedAt: "2030-01-01T00:01:00.000Z",
  endReason: "closed",
  endDetail: null,
  endedBy: null,
  live: false,
  bytesUp: 1,
  bytesDown: 1,
  recording: { sha256: "ab", bytes: 200, available: true },
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "stint-cli-size-"));
  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x").pathname;
    const key = `${req.method} ${url}`;
    res.on("error", () => undefined);
    if (url === "/v1/ssh/ca") {
      // Valid JSON after 96 MiB of blanks: the old CLI read it all and printed the key.
      res.writeHead(200, { "content-type": "application/json" });
      void flood(res, key, 96 * MiB, " ", "", JSON.stringify({ caPublicKey: "ssh-ed25519 AAAA ca" }));
    } else if (url === "/v1/sessions") {
      // An error whose body never stops (until 96 MiB).
      res.writeHead(500, { "content-type": "text/html" });
      void flood(res, key, 96 * MiB, "x");
    } else if (url === "/v1/ssh/krl") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      void flood(res, key, 96 * MiB, "\0", "SSHKRL\n\0");
    } else if (url === `/v1/sessions/${SESSION_ID}`) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(sessionAnswer));
    } else if (url === `/v1/sessions/${SESSION_ID}/recording`) {
      // The session says 200 bytes; the recording goes on for 40 MiB.
      res.writeHead(200, { "content-type": "application/x-asciicast" });
      void flood(res, key, 40 * MiB, " ", `{"version":2,"width":80,"height":24}\n[0.1,"o","hello"]\n`);
    } else if (url === "/v1/groups") {
      // Declares 4 GiB up front: refused before a byte of it is read.
      res.writeHead(200, { "content-type": "application/json", "content-length": String(4 * 1024 * MiB) });
      void flood(res, key, 64 * MiB, " ");
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await saveSignedIn(dir, { name: "ann", now: Date.now(), server: base });
}, 60_000);

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

const run = (args: string[]) => runCliCaptured([...args, "--server", base], { env: { STINT_CONFIG_DIR: dir } });

describe("the CLI against a server whose answers have no end", () => {
  it("a JSON answer past 32 MiB: RESPONSE_TOO_LARGE, and the rest is never read", async () => {
    const result = await run(["ssh", "ca"]);
    expect(result.stderr).toContain("RESPONSE_TOO_LARGE");
    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain("ssh-ed25519");
    expect(sent.get("GET /v1/ssh/ca")).toBeLessThan(64 * MiB);
  }, 120_000);

  it("an error answer's body is bounded the same way", async () => {
    const result = await run(["sessions", "list"]);
    expect(result.stderr).toContain("RESPONSE_TOO_LARGE");
    expect(sent.get("GET /v1/sessions")).toBeLessThan(64 * MiB);
  }, 120_000);

  it("a declared Content-Length past the limit is refused before the body is read", async () => {
    const result = await run(["groups", "list"]);
    expect(result.stderr).toContain("RESPONSE_TOO_LARGE");
    expect(sent.get("GET /v1/groups") ?? 0).toBeLessThan(32 * MiB);
  }, 120_000);

  it("the KRL download stops at the limit too", async () => {
    const result = await run(["ssh", "krl"]);
    expect(result.stderr).toContain("RESPONSE_TOO_LARGE");
    expect(result.stdout).toBe("");
    expect(sent.get("GET /v1/ssh/krl")).toBeLessThan(64 * MiB);
  }, 120_000);

  it("a recording is read only up to the size its session declares", async () => {
    const result = await run(["sessions", "play", SESSION_ID]);
    expect(result.stderr).toContain("RESPONSE_TOO_LARGE");
    expect(result.stdout).not.toContain("hello");
    expect(sent.get(`GET /v1/sessions/${SESSION_ID}/recording`)).toBeLessThan(32 * MiB);
  }, 120_000);
});
