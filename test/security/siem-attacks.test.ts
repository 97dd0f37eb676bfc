/**
 * SIEM streaming under attack or failure (issue 16): a receiver that accepts and never reads (backpressure:
 * Stint's buffer stays bounded, the other destination and the API keep working), a TLS receiver with the
 * wrong certificate (refused, nothing but a TLS handshake ever sent), a HEC receiver answering 500 or slowly
 * (retried, duplicates only of the batch whose answer came too late; the token never logged).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import type { SiemDestinationStatus } from "../../src/contract/siem.js";
import { NO_CONTEXT } from "../../src/modules/authz/authz.types.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { hecReceiver, makePki, type HecReceiver } from "../../src/testing/siem-receivers.js";
import { untilValue } from "../../src/testing/until.js";

/** What this file waits for can take a minute on a loaded host. */
const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined) => untilValue(what, probe, 60_000);

const HEC_TOKEN = "hec-token-that-must-never-be-logged-4f1c";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "stint-siem-attack-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function stintWith(
  dir: string,
  destinations: unknown[],
  options: { logs?: string[] } = {},
): Promise<TestServer & { status(): Promise<SiemDestinationStatus[]> }> {
  const configFile = path.join(dir, "stint.yaml");
  await writeFile(configFile, stringify({ siem: { destinations } }));
  const server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: configFile },
    ...(options.logs && {
      logLevel: "debug",
      logDestination: { write: (line: string) => void options.logs!.push(line) },
    }),
  });
  cleanups.push(() => server.cleanup());
  await server.siem.start();
  return {
    ...server,
    async status() {
      const res = await server.app.inject({
        method: "GET",
        url: "/v1/siem/destinations",
        headers: { authorization: server.adminAuth },
      });
      expect(res.statusCode, res.body).toBe(200);
      return res.json<{ items: SiemDestinationStatus[] }>().items;
    },
  };
}

async function hec(token = HEC_TOKEN): Promise<HecReceiver> {
  const receiver = await hecReceiver(token);
  cleanups.push(() => receiver.close());
  return receiver;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

describe("SIEM backpressure: a receiver that accepts and never reads", () => {
  it("keeps Stint's buffer bounded while the other destination and the API keep working", async () => {
    const dir = await tempDir();
    const sockets: net.Socket[] = [];
    // Accepts every connection and never reads a byte from it.
    const stalled = net.createServer((socket) => {
      socket.pause();
      sockets.push(socket);
    });
    const port = await listen(stalled);
    cleanups.push(async () => sockets.forEach((s) => s.destroy()));
    const receiver = await hec();
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, HEC_TOKEN);
    const server = await stintWith(dir, [
      {
        name: "stalled",
        kind: "syslog",
        transport: "tcp",
        host: "127.0.0.1",
        port,
        format: "json",
        batchSize: 20,
        timeoutMs: 2000,
        retryCapMs: 500,
      },
      { name: "hec", kind: "hec", url: receiver.url, tokenFile, format: "json", batchSize: 20 },
    ]);

    // ~8 MB of audit events (60 KB of details each): more than the kernel's socket buffers hold.
    const big = "x".repeat(60_000);
    let maxBuffered = 0;
    for (let i = 0; i < 140; i++) {
      await server.audit.record({ kind: "system", name: "siem-test" }, NO_CONTEXT, {
        action: "test.bulk",
        outcome: "success",
        details: { i, big },
      });
      // The API answers while the stalled destination waits on its socket.
      if (i % 20 === 0) {
        const me = await server.app.inject({
          method: "GET",
          url: "/v1/me",
          headers: { authorization: server.adminAuth },
        });
        expect(me.statusCode).toBe(200);
        const stalledStatus = (await server.status()).find((d) => d.name === "stalled")!;
        maxBuffered = Math.max(maxBuffered, stalledStatus.bufferedBytes);
      }
    }
    const maxFrame = 60_000 + 2_000;
    const head = (await server.status())[0]!.headSeq;
    // The other destination got everything, in order, while the stalled one was stuck.
    await until("HEC to get every event", async () => {
      const hecStatus = (await server.status()).find((d) => d.name === "hec")!;
      const stalledStatus = (await server.status()).find((d) => d.name === "stalled")!;
      maxBuffered = Math.max(maxBuffered, stalledStatus.bufferedBytes);
      return hecStatus.deliveredSeq === head || undefined;
    });
    const seqs = receiver
      .accepted()
      .filter((e) => e.fields.stint_type === "event")
      .map((e) => Number(e.fields.stint_seq));
    // At least once, in order: deduped, every seq in chain order.
    expect([...new Set(seqs)]).toEqual(Array.from({ length: head }, (_, i) => i + 1));
    // The stalled socket's writes time out: the connection is dropped and retried, not buffered without end.
    const stuck = await until("the stalled destination to report its timeout", async () => {
      const s = (await server.status()).find((d) => d.name === "stalled")!;
      maxBuffered = Math.max(maxBuffered, s.bufferedBytes);
      return s.lastError?.includes("timed out") ? s : undefined;
    });
    expect(stuck.deliveredSeq).toBeLessThan(head);
    // At most the socket's high-water mark (16 KiB) plus one frame waits in Stint's memory.
    console.log(
      `stalled destination: at most ${maxBuffered} bytes buffered in Stint; ${stuck.deliveredSeq} of ${head} counted delivered`,
    );
    expect(maxBuffered).toBeLessThanOrEqual(16_384 + maxFrame);
    const metrics = await server.app.inject({
      method: "GET",
      url: "/metrics",
      headers: { authorization: server.adminAuth },
    });
    expect(metrics.body).toMatch(/^stint_siem_lag_events\{destination="stalled"\} [1-9]\d*$/m);
    expect(metrics.body).toMatch(/^stint_siem_lag_events\{destination="hec"\} 0$/m);
  }, 120_000);
});

describe("SIEM over TLS with the wrong certificate", () => {
  /** A TLS server behind a recording TCP relay: what the client sent, byte for byte. */
  async function tlsReceiver(cert: { certFile: string; keyFile: string }) {
    let secured = 0;
    const server = tls.createServer(
      { cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) },
      (socket) => {
        secured++;
        socket.resume();
      },
    );
    server.on("tlsClientError", () => undefined);
    const tlsPort = await listen(server);
    const sent: Buffer[] = [];
    let connections = 0;
    const relay = net.createServer((client) => {
      connections++;
      const upstream = net.connect(tlsPort, "127.0.0.1");
      client.on("data", (chunk: Buffer) => sent.push(chunk));
      client.pipe(upstream).pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    });
    const port = await listen(relay);
    return { port, sent: () => Buffer.concat(sent), connections: () => connections, secured: () => secured };
  }

  it.each([
    ["a certificate from a CA Stint does not trust", "untrusted"],
    ["a trusted certificate for another name", "wrong-name"],
  ])(
    "refuses %s and sends nothing but the handshake",
    async (_label, kind) => {
      const dir = await tempDir();
      const trusted = makePki(dir, "trusted", { dns: ["siem.test"], ips: ["127.0.0.1"] });
      const other = makePki(dir, "other", { dns: ["siem.test"], ips: ["127.0.0.1"] });
      const receiver = await tlsReceiver(kind === "untrusted" ? other : trusted);
      const server = await stintWith(dir, [
        {
          name: "tls",
          kind: "syslog",
          transport: "tls",
          host: "127.0.0.1",
          port: receiver.port,
          caFile: trusted.caFile,
          serverName: kind === "untrusted" ? "siem.test" : "elsewhere.test",
          format: "json",
          retryCapMs: 500,
        },
      ]);
      await server.userWithRoles("tls-victim", ["user"]);
      const status = await until("the TLS destination to fail", async () => {
        const s = (await server.status())[0]!;
        return s.retries >= 2 && receiver.connections() >= 2 ? s : undefined;
      });
      expect(status.deliveredSeq).toBe(0);
      expect(status.lastError).toMatch(/certificate|altnames|Hostname|self-signed|issuer/i);
      expect(receiver.secured()).toBe(0);
      const bytes = receiver.sent();
      // Only TLS handshake records (content type 22) left Stint; no syslog text, no event.
      expect(bytes.length).toBeGreaterThan(0);
      expect(bytes[0]).toBe(0x16);
      const text = bytes.toString("latin1");
      expect(text).not.toContain("stint@32473");
      expect(text).not.toContain("tls-victim");
      expect(text).not.toMatch(/<\d+>1 /);
    },
    60_000,
  );
});

describe("SIEM to HEC over https", () => {
  it("delivers to a receiver whose certificate the CA file vouches for, and refuses one it does not", async () => {
    const dir = await tempDir();
    const trusted = makePki(dir, "hec-trusted", { dns: ["localhost"], ips: ["127.0.0.1"] });
    const other = makePki(dir, "hec-other", { dns: ["localhost"], ips: ["127.0.0.1"] });
    const good = await hecReceiver(HEC_TOKEN, trusted);
    const bad = await hecReceiver(HEC_TOKEN, other);
    cleanups.push(
      () => good.close(),
      () => bad.close(),
    );
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, HEC_TOKEN);
    const common = { kind: "hec", tokenFile, caFile: trusted.caFile, format: "json", retryCapMs: 500 };
    const server = await stintWith(dir, [
      { ...common, name: "good", url: good.url },
      { ...common, name: "bad", url: bad.url },
    ]);
    await server.userWithRoles("https-user", ["user"]);
    const [goodStatus, badStatus] = await until("the trusted receiver to catch up and the other to fail", async () => {
      const s = await server.status();
      const g = s.find((d) => d.name === "good")!;
      const b = s.find((d) => d.name === "bad")!;
      return g.deliveredSeq === g.headSeq && g.headSeq > 0 && b.retries >= 1 ? [g, b] : undefined;
    });
    expect(goodStatus.lastError).toBeNull();
    expect(good.accepted().length).toBeGreaterThan(0);
    expect(badStatus.deliveredSeq).toBe(0);
    expect(badStatus.lastError).toMatch(/certificate|issuer/i);
    // The untrusted receiver never got a request: the token never reached it.
    expect(bad.requests).toHaveLength(0);
  }, 60_000);
});

describe("SIEM to a HEC receiver that fails and answers slowly", () => {
  it("retries with backoff; duplicates only of the batch whose answer came after the timeout; the token is never logged", async () => {
    const dir = await tempDir();
    const receiver = await hec();
    // 500, 500, a success too late for the client (1.5 s > timeoutMs 1 s), a slow success in time, then fine.
    receiver.behave((n) =>
      n < 2
        ? { status: 500 }
        : n === 2
          ? { status: 200, delayMs: 1500 }
          : n === 3
            ? { status: 200, delayMs: 300 }
            : { status: 200 },
    );
    const logs: string[] = [];
    process.env.STINT_TEST_HEC_TOKEN = HEC_TOKEN;
    cleanups.push(async () => void delete process.env.STINT_TEST_HEC_TOKEN);
    const server = await stintWith(
      dir,
      [
        {
          name: "hec",
          kind: "hec",
          url: receiver.url,
          tokenEnv: "STINT_TEST_HEC_TOKEN",
          format: "cef",
          batchSize: 10,
          timeoutMs: 1000,
          retryCapMs: 800,
        },
      ],
      { logs },
    );
    for (let i = 0; i < 5; i++) await server.userWithRoles(`hec-user-${i}`, ["user"]);
    const head = (await server.status())[0]!.headSeq;
    await until("HEC to get every event", async () => {
      const s = (await server.status())[0]!;
      return s.deliveredSeq === (await server.status())[0]!.headSeq && s.deliveredSeq >= head ? s : undefined;
    });
    expect(receiver.requests.length).toBeGreaterThanOrEqual(5);
    expect(receiver.requests.slice(0, 2).map((r) => r.status)).toEqual([500, 500]);

    const accepted = receiver.accepted().filter((e) => e.fields.stint_type === "event");
    const finalHead = (await server.status())[0]!.headSeq;
    const firstSeen: number[] = [];
    const seen = new Set<string>();
    const duplicates = new Set<string>();
    for (const e of accepted) {
      if (seen.has(e.fields.stint_id!)) duplicates.add(e.fields.stint_id!);
      else firstSeen.push(Number(e.fields.stint_seq));
      seen.add(e.fields.stint_id!);
    }
    expect(firstSeen).toEqual(Array.from({ length: finalHead }, (_, i) => i + 1));
    // At least once, no more: only events of the request answered too late arrived twice.
    const late = new Set(receiver.requests[2]!.events.map((e) => e.fields.stint_id));
    expect(duplicates.size).toBeGreaterThan(0);
    for (const id of duplicates) expect(late.has(id)).toBe(true);
    // The slow answer in time (request 3) caused no resend: its events appear once among accepted requests after it.
    for (const e of receiver.requests[3]!.events)
      expect(accepted.filter((a) => a.fields.stint_id === e.fields.stint_id).length).toBeLessThanOrEqual(
        late.has(e.fields.stint_id) ? 2 : 1,
      );
    // Every request carried the token; no log line ever did.
    expect(receiver.requests.every((r) => r.authorization === `Splunk ${HEC_TOKEN}`)).toBe(true);
    expect(logs.some((line) => line.includes("SIEM delivery failed"))).toBe(true);
    expect(logs.join("\n")).not.toContain(HEC_TOKEN);
    const metrics = await server.app.inject({
      method: "GET",
      url: "/metrics",
      headers: { authorization: server.adminAuth },
    });
    expect(
      Number(/^stint_siem_send_failures_total\{destination="hec"\} (\d+)$/m.exec(metrics.body)?.[1]),
    ).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it("a wrong token is refused by the receiver; the error says so without the token", async () => {
    const dir = await tempDir();
    const receiver = await hec("the-receiver-expects-another-token");
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, `${HEC_TOKEN}\n`);
    const logs: string[] = [];
    const server = await stintWith(
      dir,
      [{ name: "hec", kind: "hec", url: receiver.url, tokenFile, format: "json", retryCapMs: 500 }],
      { logs },
    );
    const status = await until("the HEC destination to fail", async () => {
      const s = (await server.status())[0]!;
      return s.retries >= 1 ? s : undefined;
    });
    expect(status.lastError).toBe("HEC answered HTTP 401 code 4 Invalid token");
    expect(status.deliveredSeq).toBe(0);
    expect(JSON.stringify(await server.status())).not.toContain(HEC_TOKEN);
    expect(logs.join("\n")).not.toContain(HEC_TOKEN);
  }, 60_000);
});
