/**
 * Live watching's cost (docs/live-sessions.md), in CPU time (the machine is shared: wall time says little).
 *
 * 1. The tax on every session: the recorder's output (into a real blob writer, as a session records) with the
 *    live hub's tap and no watcher, against no tap. Target: at most 10% more CPU per chunk.
 * 2. Fan-out: one line to N real WebSocket watchers (ws, over loopback, clients in this process reading):
 *    CPU per line per watcher, server and clients together. Target: at most 25 µs.
 *
 * Run: node --import tsx bench/live-fanout.bench.ts
 */
import { createRequire } from "node:module";
import { loadavg } from "node:os";
import type { AddressInfo } from "node:net";
import { createRecorder } from "../src/modules/sessions/recorder.js";
import { createLiveHub, type LiveSocket } from "../src/modules/sessions/live-hub.js";
import { systemClock } from "../src/lib/clock.js";
import { createBlobStore } from "../src/lib/blob-store.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

interface WsClient {
  on(event: "message" | "open", listener: (data?: Buffer) => void): void;
  close(): void;
}
interface WsServer {
  on(event: "connection", listener: (socket: LiveSocket) => void): void;
  address(): AddressInfo;
  close(): void;
}
const ws = createRequire(import.meta.url)("ws") as {
  WebSocket: new (url: string) => WsClient;
  WebSocketServer: new (options: { port: number; host: string }, ready: () => void) => WsServer;
};

const meta = { session: "s1", user: "ann", role: "web", target: "web", login: "root", startedAt: new Date() };
const chunk = Buffer.from("drwxr-xr-x  2 root root 4096 Dec  6 04:00 some-directory-name-here\r\n".repeat(2));

const blobDir = mkdtempSync(path.join(tmpdir(), "stint-live-bench-"));
const blobs = createBlobStore(blobDir);
let blobCount = 0;

async function recorderCost(withTap: boolean, chunks: number): Promise<number> {
  const hub = createLiveHub();
  const feed = hub.open({
    id: "s1",
    kind: "ssh",
    user: "ann",
    role: "web",
    target: "web",
    startedAt: new Date(),
    facts: { userId: "u", userManagerId: null, approvers: { users: [], groups: [], manager: false }, moderator: null },
    abort: () => undefined,
  });
  const recorder = createRecorder({
    kind: "ssh",
    writer: await blobs.create(`bench/${blobCount++}.cast`),
    meta,
    clock: systemClock,
    onFailure: () => undefined,
    ...(withTap ? { tap: (line: string) => feed.push(line) } : {}),
  });
  const before = process.cpuUsage();
  for (let i = 0; i < chunks; i++) {
    recorder.output(chunk);
    if (i % 1000 === 999) await new Promise((resolve) => setImmediate(resolve)); // let the writer write
  }
  await recorder.finish();
  const used = process.cpuUsage(before);
  return used.user + used.system;
}

async function fanOutCost(watchers: number, lines: number): Promise<number> {
  const server = await new Promise<WsServer>((resolve) => {
    const s: WsServer = new ws.WebSocketServer({ port: 0, host: "127.0.0.1" }, () => resolve(s));
  });
  const hub = createLiveHub();
  const feed = hub.open({
    id: "s1",
    kind: "ssh",
    user: "ann",
    role: "web",
    target: "web",
    startedAt: new Date(),
    facts: { userId: "u", userManagerId: null, approvers: { users: [], groups: [], manager: false }, moderator: null },
    abort: () => undefined,
  });
  let attached = 0;
  const allAttached = new Promise<void>((resolve) => {
    server.on("connection", (socket) => {
      hub.attach("s1", {
        viewer: { id: `v${attached}`, name: "aud", groups: [], readsSessions: true },
        mode: "watch",
        socket,
      });
      if (++attached === watchers) resolve();
    });
  });
  let received = 0;
  const expected = watchers * lines;
  let done: () => void = () => undefined;
  const allReceived = new Promise<void>((resolve) => (done = resolve));
  const clients: WsClient[] = [];
  for (let i = 0; i < watchers; i++) {
    const client = new ws.WebSocket(`ws://127.0.0.1:${server.address().port}`);
    client.on("message", (data) => {
      if (data && data.toString().startsWith("[") && ++received === expected) done();
    });
    clients.push(client);
  }
  await allAttached;
  const line = `[1.5,"o",${JSON.stringify(chunk.toString())}]\n`;
  const before = process.cpuUsage();
  for (let i = 0; i < lines; i++) {
    feed.push(line);
    if (i % 200 === 199) await new Promise((resolve) => setImmediate(resolve)); // let the sockets drain
  }
  await allReceived;
  const used = process.cpuUsage(before);
  for (const client of clients) client.close();
  server.close();
  return (used.user + used.system) / (lines * watchers);
}

const CHUNKS = 200_000;
await recorderCost(true, 20_000); // warm-up
await recorderCost(false, 20_000);
const plain = Math.min(await recorderCost(false, CHUNKS), await recorderCost(false, CHUNKS));
const tapped = Math.min(await recorderCost(true, CHUNKS), await recorderCost(true, CHUNKS));
const tax = (tapped - plain) / plain;
console.log(
  `load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}`,
);
console.log(
  `recorder output, no tap: ${(plain / CHUNKS).toFixed(2)} µs/chunk; with the hub's tap and no watcher: ${(tapped / CHUNKS).toFixed(2)} µs/chunk (+${(tax * 100).toFixed(1)}%) — ${tax <= 0.1 ? "PASS" : "FAIL"} (target ≤ +10%)`,
);
for (const watchers of [1, 10, 50]) {
  const perLineWatcher = await fanOutCost(watchers, 5_000);
  console.log(
    `fan-out to ${watchers} ws watcher(s): ${perLineWatcher.toFixed(1)} µs CPU per line per watcher (server and clients) — ${perLineWatcher <= 25 ? "PASS" : "FAIL"} (target ≤ 25 µs)`,
  );
}
rmSync(blobDir, { recursive: true, force: true });
