/**
 * Class: a client exhausting the proxy's memory with one message (trust review of the PostgreSQL proxy).
 *
 * The relay keeps whole the messages the query log or the query policy reads (Query, Parse, Bind, …).
 * The protocol allows 1 GiB per message: a client claiming that much and trickling bytes in would have
 * the proxy (which is also the API server) hold it all. The relay bounds every message it holds; past
 * the bound the session ends at the message's header with FATAL 54000 and a sentence, before any of
 * its body is kept. Real proxy, real cluster, a real client socket writing the hostile frames.
 */
import type { Socket } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQueryGuard } from "../../src/proxies/pg/query-guard.js";
import { FrameTooLargeError, DEFAULT_MAX_CLIENT_FRAME, messageTypes } from "../../src/proxies/pg/wire-stream.js";
import { frameHeader as header, pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";

const MiB = 1024 * 1024;

describe("oversized messages through the PostgreSQL proxy", () => {
  let pgh: PgProxyHarness;

  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "optional", proxy: { maxClientFrame: 4 * MiB } });
  });

  afterAll(async () => {
    await pgh?.close();
  });

  /** Signs in, writes `head`, then up to `flood` bytes in 256 KiB pieces; the error the client gets. */
  async function attack(head: Buffer, flood: number): Promise<{ error: Error & { code?: string }; written: number }> {
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    await client.connect();
    const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
    const errored = new Promise<Error & { code?: string }>((resolve) => client.on("error", resolve));
    let done = false;
    void errored.then(() => (done = true));
    const before = process.memoryUsage().arrayBuffers;
    socket.write(head);
    const piece = Buffer.alloc(256 * 1024, 0x61);
    let written = 0;
    while (!done && written < flood && !socket.destroyed) {
      written += piece.length;
      if (!socket.write(piece)) await Promise.race([new Promise((resolve) => socket.once("drain", resolve)), errored]);
    }
    const error = await errored;
    const grown = process.memoryUsage().arrayBuffers - before;
    // The claim was ~1 GiB and the flood 64 MiB: nothing of the kind was held (generous margin).
    expect(grown).toBeLessThan(32 * MiB);
    socket.destroy();
    return { error, written };
  }

  it("a Query claiming 1 GiB ends the session with 54000 at its header, before its body is kept", async () => {
    const { error, written } = await attack(header("Q", 1024 * MiB - 16), 64 * MiB);
    expect(error.code).toBe("54000");
    expect(error.message).toMatch(/the client's 'Q' message of \d+ bytes exceeds the Stint proxy's limit of 4194304/);
    // The flood stopped long before its end: the proxy answered at the header and stopped reading.
    expect(written).toBeLessThan(64 * MiB);
  });

  it("Parse is bounded too, and what is kept of a Bind (its names); a message under the bound still works", async () => {
    // A Bind passes in pieces whatever its size (pg-large-messages.test.ts), but its portal name is
    // kept: here the whole flood, with no NUL to end it, so it is refused at the bound.
    for (const type of ["P", "B"]) {
      const { error } = await attack(header(type, 5 * MiB), 8 * MiB);
      expect(error.code, type).toBe("54000");
    }
    // 3 MiB of statement text (under the 4 MiB bound) passes and is answered.
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    await client.connect();
    try {
      const big = "x".repeat(3 * MiB);
      const { rows } = await client.query<{ n: number }>(`SELECT length('${big}') AS n`);
      expect(rows[0]!.n).toBe(3 * MiB);
    } finally {
      await client.end();
    }
  });

  it("under a query policy the held messages are bounded the same way; unkept ones (CopyData) stream", () => {
    // Socket-free: the guard's scanners take the proxy's bounds.
    const guard = () =>
      createQueryGuard({
        rules: { allow: ["select"] } as never,
        keepClient: messageTypes("QPBDECF"),
        keepServer: messageTypes("CE"),
        onClientFrame: () => undefined,
        onServerFrame: () => undefined,
        onRefusal: () => undefined,
        maxClientFrame: MiB,
        maxServerFrame: MiB,
      });
    const passed: Buffer[] = [];
    guard().client.push(Buffer.concat([header("d", 2 * MiB), Buffer.alloc(64)]), (piece) => passed.push(piece));
    expect(passed.reduce((n, p) => n + p.length, 0)).toBe(69);
    // A held Query over the bound is refused at its header (the policy never passes a statement unseen).
    expect(() => guard().client.push(header("Q", 2 * MiB), () => undefined)).toThrow(FrameTooLargeError);
    expect(() => guard().server.push(header("E", 2 * MiB), () => undefined)).toThrow(/exceeds the limit of 1048576/);
    expect(DEFAULT_MAX_CLIENT_FRAME).toBe(16 * MiB);
  });
});
