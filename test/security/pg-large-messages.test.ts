/**
 * Class: the PostgreSQL proxy's memory bounds must not cost legitimate large or pipelined traffic
 * (the usability side of pg-oversized-frames.test.ts). With the default bounds (16 MiB a client
 * message held whole, 1 MiB held before the relay):
 *
 * - A Bind carrying a 20 MiB bytea parameter (node-postgres, a Buffer parameter) is relayed and
 *   recorded in the query log, read in pieces: the proxy never holds the parameter whole (a heap
 *   measured after a GC while all but the last 256 KiB of a 48 MiB Bind have been sent).
 * - A 20 MiB simple Query is still refused with 54000 (a statement is judged and logged whole).
 * - A client pipelining megabytes of queries right after its password, while the proxy still signs
 *   in, is paused (TCP backpressure) rather than cut off, and gets every answer once the relay runs.
 *
 * Real Stint server and gate, real proxy, real cluster (TLS + SCRAM), node-postgres and raw sockets.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodePasswordMessage, encodeQuery, encodeStartupMessage, encodeSync } from "../../src/lib/pg-wire.js";
import { cstring, int16, int32, typed } from "../../src/lib/pg-wire/buffers.js";
import type { QueryLogEntry } from "../../src/modules/sessions/sessions.types.js";
import type { PgProxyDeps } from "../../src/proxies/pg/pg-proxy.js";
import { createFrameScanner, type Frame } from "../../src/proxies/pg/wire-stream.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";

const MiB = 1024 * 1024;
const BYTEA_OID = 17;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Bytes held in Buffers by this process (the proxy runs in it) after a full collection. */
function heldBuffers(): number {
  gc();
  return process.memoryUsage().arrayBuffers;
}

describe("large and pipelined messages through the PostgreSQL proxy", () => {
  let pgh: PgProxyHarness;
  const queries: QueryLogEntry[] = [];
  /** The gate answers when this resolves (a slow gate: the client's bytes wait in the handshake inbox). */
  let gateOpen: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    // The real gate, slowed at will, with the query log tapped.
    const gate: PgProxyDeps["gate"] = {
      async openPostgres(input) {
        await gateOpen;
        const session = await pgh.h.server.sessions.gate.openPostgres(input);
        const query = session.recorder.query.bind(session.recorder);
        session.recorder.query = (entry) => {
          queries.push(entry);
          query(entry);
        };
        return session;
      },
    };
    pgh = await pgProxyHarness({ recording: "optional", queryParameters: true, proxy: { gate } });
    await pgh.admin.query(`GRANT CREATE ON SCHEMA public TO ${pgh.login}`).catch(() => undefined);
  });

  afterAll(async () => {
    await pgh?.close();
  });

  /** A raw client: signed in up to the password (sent with `afterPassword` right behind it). */
  async function rawSession(afterPassword: Buffer[] = []) {
    const socket = connect({ host: "127.0.0.1", port: pgh.proxyPort });
    socket.on("error", () => undefined);
    const scanner = createFrameScanner({ startup: false });
    const frames: Frame[] = [];
    let wake = (): void => undefined;
    socket.on("data", (chunk: Buffer) => {
      frames.push(...scanner.push(chunk));
      wake();
    });
    socket.on("close", () => wake());
    /** Resolves when `done(frames)` holds; rejects if the connection closes first. */
    const until = async (what: string, done: (frames: Frame[]) => boolean): Promise<void> => {
      while (!done(frames)) {
        if (socket.destroyed) throw new Error(`the connection closed before ${what}: ${describe(frames)}`);
        await new Promise<void>((resolve) => (wake = resolve));
      }
    };
    await once(socket, "connect");
    socket.write(encodeStartupMessage({ user: `${pgh.user}%${pgh.role}`, database: pgh.database }));
    await until("the password request", (f) => f.some((frame) => frame.type === "R"));
    socket.write(encodePasswordMessage(await pgh.token()));
    for (const piece of afterPassword) socket.write(piece);
    return { socket, frames, until };
  }

  const describe = (frames: Frame[]): string =>
    frames
      .filter((f) => f.type === "E")
      .map((f) => f.body?.toString("latin1").replace(/\0/g, " "))
      .join("; ");
  const count = (frames: Frame[], type: string): number => frames.filter((f) => f.type === type).length;

  /**
   * Writes `piece` `times` times, waiting for drains; with `untilStalled`, stops early when no drain
   * comes within a second (the proxy stopped reading). Returns how many were written.
   */
  async function write(socket: Socket, piece: Buffer, times: number, untilStalled: boolean): Promise<number> {
    let written = 0;
    for (let i = 0; i < times && !socket.destroyed; i++) {
      written += 1;
      if (socket.write(piece)) continue;
      const drained = once(socket, "drain").then(() => true);
      if (!(await (untilStalled ? Promise.race([drained, delay(1_000).then(() => false)]) : drained))) break;
    }
    return written;
  }

  it("a 20 MiB bytea parameter (node-postgres, extended protocol) round-trips and is logged", async () => {
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    await client.connect();
    const value = Buffer.alloc(20 * MiB);
    const note = "n".repeat(100_000);
    for (let i = 0; i < value.length; i += 4096) value.writeUInt32BE(i, i);
    try {
      await client.query("CREATE TABLE IF NOT EXISTS blobs (id serial PRIMARY KEY, b bytea, note text)");
      const inserted = await client.query<{ id: number; n: number }>(
        "INSERT INTO blobs (b, note) VALUES ($1, $2) RETURNING id, length(b) AS n",
        [value, note],
      );
      expect(inserted.rows[0]!.n).toBe(value.length);
      const read = await client.query<{ b: Buffer }>("SELECT b FROM blobs WHERE id = $1", [inserted.rows[0]!.id]);
      expect(read.rows[0]!.b.equals(value)).toBe(true);
    } finally {
      await client.end();
    }
    // The query log has the statement and its parameters described (binary: its length; text: its
    // length and first 64 KiB), rows from the tag.
    expect(queries).toContainEqual(
      expect.objectContaining({
        statement: "INSERT INTO blobs (b, note) VALUES ($1, $2) RETURNING id, length(b) AS n",
        parameters: [`<binary ${value.length} bytes>`, `<text 100000 bytes, first 65536: ${note.slice(0, 65536)}>`],
        command: "INSERT",
        rows: 1,
        error: null,
      }),
    );
  });

  it("a Bind's parameter passes in pieces: the proxy never holds it whole", async () => {
    const size = 48 * MiB;
    const { socket, frames, until } = await rawSession();
    await until("ReadyForQuery", (f) => count(f, "Z") === 1);
    // Parse, then a Bind whose one binary bytea value is written from one reused 256 KiB piece.
    const head = Buffer.concat([cstring(""), cstring(""), int16(1), int16(1), int16(1), int32(size)]);
    const tail = int16(0);
    socket.write(typed("P", cstring(""), cstring("SELECT length($1) AS n"), int16(1), int32(BYTEA_OID)));
    socket.write(Buffer.concat([Buffer.from("B"), int32(4 + head.length + size + tail.length), head]));
    const piece = Buffer.alloc(256 * 1024, 0x5a);
    const before = heldBuffers();
    const pieces = size / piece.length;
    for (let i = 0; i < pieces - 1; i++) if (!socket.write(piece)) await once(socket, "drain");
    // All but the last piece sent (the kernel's buffers hold a few MiB): kept whole, 40+ MiB would be held now.
    await delay(200);
    const grown = heldBuffers() - before;
    expect(grown).toBeLessThan(16 * MiB);
    socket.write(piece);
    socket.write(Buffer.concat([tail, typed("E", cstring(""), int32(0)), encodeSync()]));
    await until("the answer", (f) => count(f, "Z") === 2);
    const row = frames.find((f) => f.type === "D")!;
    expect(row.body!.toString("latin1", 6)).toBe(String(size));
    socket.end();
  });

  it("a 20 MiB simple Query is still refused with 54000", async () => {
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    const failed = new Promise<Error & { code?: string }>((resolve) => client.on("error", resolve));
    await client.connect();
    const error = await client.query(`SELECT length('${"x".repeat(20 * MiB)}')`).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(error?.code).toBe("54000");
    expect(error?.message).toMatch(/the client's 'Q' message of \d+ bytes exceeds the Stint proxy's limit of 16777216/);
    await failed;
  });

  it("a client pipelining MiBs of queries right after its password gets every answer", async () => {
    // 8 MiB of queries behind the password, sent while the proxy signs in upstream.
    const query = encodeQuery(`SELECT length('${"q".repeat(256 * 1024)}') AS n`);
    const times = 32;
    const { frames, until } = await rawSession(Array.from({ length: times }, () => query));
    await until("every answer", (f) => count(f, "Z") === times + 1);
    expect(count(frames, "C")).toBe(times);
    expect(count(frames, "E")).toBe(0);
  });

  it("while the gate decides, a flooding client is paused at the bound, then served", async () => {
    let open!: () => void;
    gateOpen = new Promise<void>((resolve) => (open = resolve));
    const query = encodeQuery(`SELECT length('${"f".repeat(256 * 1024 - 32)}') AS n`);
    const times = 128; // 32 MiB
    try {
      const { socket, frames, until } = await rawSession();
      const before = heldBuffers();
      const written = await write(socket, query, times, true);
      // Paused: the flood stalled before its end, and the proxy holds about its bound, not the flood.
      expect(written).toBeLessThan(times);
      expect(heldBuffers() - before).toBeLessThan(16 * MiB);
      expect(socket.destroyed).toBe(false);
      open();
      expect(await write(socket, query, times - written, false)).toBe(times - written);
      await until("every answer", (f) => count(f, "Z") === times + 1);
      expect(count(frames, "C")).toBe(times);
      socket.end();
    } finally {
      open();
      gateOpen = Promise.resolve();
    }
  });
});
