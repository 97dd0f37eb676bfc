/**
 * The deliverer on PostgreSQL: one node of a cluster delivers a destination (the lease), the other takes
 * over from the cursor; HEC indexer acknowledgement is waited for before the cursor moves.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { NO_CONTEXT } from "../authz/authz.types.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { hecReceiver, type HecReceiver } from "../../testing/siem-receivers.js";
import { createSiemService } from "./siem.service.js";
import { siemDestinationSchema } from "./siem.types.js";
import { untilValue } from "../../testing/until.js";

const TOKEN = "service-test-hec-token";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function setup(destination: Record<string, unknown>): Promise<{ server: TestServer; receiver: HecReceiver }> {
  const dir = await mkdtemp(path.join(tmpdir(), "stint-siem-svc-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const receiver = await hecReceiver(TOKEN);
  cleanups.push(() => receiver.close());
  const tokenFile = path.join(dir, "token");
  await writeFile(tokenFile, TOKEN);
  const configFile = path.join(dir, "stint.yaml");
  await writeFile(
    configFile,
    stringify({
      siem: {
        destinations: [
          {
            name: "splunk",
            kind: "hec",
            url: receiver.url,
            tokenFile,
            format: "json",
            retryCapMs: 500,
            ...destination,
          },
        ],
      },
    }),
  );
  const server = await testServer("postgres", { env: { STINT_CONFIG_FILE: configFile } });
  cleanups.push(() => server.cleanup());
  return { server, receiver };
}

async function record(server: TestServer, n: number) {
  for (let i = 0; i < n; i++)
    await server.audit.record({ kind: "system", name: "siem-test" }, NO_CONTEXT, {
      action: "test.event",
      outcome: "success",
      details: { i },
    });
}

describe("SIEM deliverer", () => {
  it("one node of two delivers a destination; the other takes over from the cursor when it stops", async () => {
    const { server, receiver } = await setup({ batchSize: 5 });
    const destination = server.config.siem.destinations[0]!;
    const nodeB = createSiemService({
      store: server.store,
      audit: server.audit,
      destinations: [destination],
      holder: "node-b",
      pollMs: 50,
    });
    cleanups.push(() => nodeB.stop());
    await server.siem.start();
    await nodeB.start();
    await record(server, 30);
    await server.audit.catchUp();
    const head = async () => (await server.siem.status())[0]!.headSeq;
    await untilValue("the destination to catch up", async () => {
      const s = (await nodeB.status())[0]!;
      return s.deliveredSeq === (await head()) || undefined;
    });
    const [a, b] = [(await server.siem.status())[0]!, (await nodeB.status())[0]!];
    // Exactly one of the two delivers, and both see the same holder.
    expect([a.deliveringHere, b.deliveringHere].filter(Boolean)).toHaveLength(1);
    expect(a.holder).toBe(b.holder);
    const first = a.deliveringHere ? server.siem : nodeB;
    const second = a.deliveringHere ? nodeB : server.siem;
    await first.stop();
    await record(server, 20);
    await server.audit.catchUp();
    await untilValue("the other node to take over and catch up", async () => {
      const s = (await second.status())[0]!;
      return s.deliveringHere && s.deliveredSeq === (await head()) ? s : undefined;
    });
    const events = receiver
      .accepted()
      .filter((e) => e.fields.stint_type === "event")
      .map((e) => Number(e.fields.stint_seq));
    // Two nodes, one stream: every event exactly once, in chain order.
    expect(events).toEqual(Array.from({ length: await head() }, (_, i) => i + 1));
  }, 60_000);

  it("with indexer acknowledgement, a batch counts only once the ack endpoint says it was indexed", async () => {
    const { server, receiver } = await setup({ ack: true, batchSize: 50 });
    await server.siem.start();
    await record(server, 12);
    const status = await untilValue("the destination to catch up", async () => {
      const s = (await server.siem.status())[0]!;
      return s.deliveredSeq === s.headSeq && s.headSeq >= 12 ? s : undefined;
    });
    expect(status.lastError).toBeNull();
    // Every POST got an ackId, and each was polled until true (the receiver says false to the first query).
    expect(receiver.ackRequests.length).toBeGreaterThanOrEqual(2 * receiver.requests.length);
    const channels = new Set(receiver.ackRequests.map((r) => r.channel));
    expect(channels.size).toBe(1);
    expect([...channels][0]).toMatch(/^[0-9a-f-]{36}$/);
    await server.siem.stop();
  }, 60_000);

  it("a destination that starts at the head gets only what is chained after it was first seen", async () => {
    const { server, receiver } = await setup({ startAt: "head" });
    await record(server, 5);
    await server.audit.catchUp();
    const before = (await server.siem.status())[0]!.headSeq;
    await server.siem.start();
    await record(server, 3);
    await server.audit.catchUp();
    await untilValue("the destination to catch up", async () => {
      const s = (await server.siem.status())[0]!;
      return s.deliveredSeq === s.headSeq && s.headSeq >= before + 3 ? s : undefined;
    });
    const seqs = receiver
      .accepted()
      .filter((e) => e.fields.stint_type === "event")
      .map((e) => Number(e.fields.stint_seq));
    expect(seqs).toEqual([before + 1, before + 2, before + 3]);
    await server.siem.stop();
  }, 60_000);

  it("a HEC token that cannot be read stops the start, saying where it looked", () => {
    const destination = siemDestinationSchema.parse({
      name: "splunk",
      kind: "hec",
      url: "https://splunk.example.com:8088/services/collector/event",
      tokenEnv: "STINT_TEST_MISSING_HEC_TOKEN",
      format: "json",
    });
    const deps = { store: {} as never, audit: {} as never, holder: "h", destinations: [destination] };
    expect(() => createSiemService({ ...deps, env: {} })).toThrow(
      "SIEM destination splunk: the HEC token is empty ($STINT_TEST_MISSING_HEC_TOKEN)",
    );
    expect(() => createSiemService({ ...deps, env: { STINT_TEST_MISSING_HEC_TOKEN: "has space" } })).toThrow(
      /printable ASCII without spaces$/,
    );
    const file = siemDestinationSchema.parse({ ...destination, tokenEnv: undefined, tokenFile: "/nonexistent/token" });
    expect(() => createSiemService({ ...deps, destinations: [file] })).toThrow(
      "SIEM destination splunk: cannot read tokenFile /nonexistent/token (ENOENT)",
    );
  });

  it("refuses a HEC URL that would send the token in clear over the network, and a token set twice", () => {
    const base = { name: "x", kind: "hec", format: "json", tokenEnv: "T" };
    expect(
      siemDestinationSchema.safeParse({ ...base, url: "http://splunk.example.com:8088/services/collector" }).success,
    ).toBe(false);
    expect(siemDestinationSchema.safeParse({ ...base, url: "https://user:pw@splunk.example.com/" }).success).toBe(
      false,
    );
    expect(siemDestinationSchema.safeParse({ ...base, url: "http://127.0.0.1:8088/services/collector" }).success).toBe(
      true,
    );
    expect(
      siemDestinationSchema.safeParse({ ...base, url: "https://splunk.example.com/", tokenFile: "/f" }).success,
    ).toBe(false);
  });
});
