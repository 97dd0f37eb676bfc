/**
 * Class: protocol fidelity of the PostgreSQL proxy (issue 12, finding 11; acceptance 3).
 *
 * Real drivers lean on details of the protocol: the backend process id in BackendKeyData
 * (pg_backend_pid(), NOTIFY's sender, pg_terminate_backend, postgres.js's listen), silence on a
 * malformed startup, a client that ends during the sign-in. The proxy must behave as the server
 * does, while a cancel request still needs both the process id and the secret the proxy handed out.
 * Real server, real proxy, real cluster (TLS + SCRAM), node-postgres and postgres.js.
 */
import { once } from "node:events";
import { connect } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeCancelRequest } from "../../src/lib/pg-wire.js";
import { int32, pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";

/** node-postgres keeps BackendKeyData on the client. */
function backendKey(client: pg.Client): { processId: number; secretKey: number } {
  const c = client as unknown as { processID: number; secretKey: number };
  return { processId: c.processID, secretKey: c.secretKey };
}

async function sendCancel(port: number, processId: number, secretKey: Buffer): Promise<void> {
  const socket = connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  socket.end(encodeCancelRequest(processId, secretKey));
  await once(socket, "close");
}

/** Sends raw bytes and returns what comes back before the server closes (or 3 s pass). */
async function rawExchange(port: number, bytes: Buffer): Promise<{ received: Buffer; closed: boolean }> {
  const socket = connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  let received = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
  socket.on("error", () => {});
  const closed = new Promise<boolean>((resolve) => {
    socket.once("close", () => resolve(true));
    setTimeout(() => resolve(false), 3_000).unref();
  });
  socket.write(bytes);
  const result = { received, closed: await closed };
  result.received = received;
  socket.destroy();
  return result;
}

describe("PostgreSQL protocol fidelity through the proxy (finding 11, acceptance 3)", () => {
  let pgh: PgProxyHarness;
  let token: string;

  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "optional" });
    token = await pgh.token();
  });

  afterAll(async () => {
    await pgh?.close();
  });

  it("BackendKeyData carries the real process id: pg_backend_pid() agrees, pg_stat_activity finds it", async () => {
    const client = new pg.Client(pgh.clientConfig(token));
    await client.connect();
    try {
      const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      expect(backendKey(client).processId).toBe(rows[0]!.pid);
      const seen = await pgh.admin.query("SELECT usename FROM pg_stat_activity WHERE pid = $1", [rows[0]!.pid]);
      expect(seen.rows).toEqual([{ usename: pgh.login }]);
    } finally {
      await client.end();
    }
  });

  it("a cancel request needs the secret too: the right pid with a wrong key cancels nothing", async () => {
    const client = new pg.Client(pgh.clientConfig(token));
    client.on("error", () => {});
    await client.connect();
    try {
      const { processId, secretKey } = backendKey(client);
      const sleeping = client.query("SELECT pg_sleep(1.5) AS slept");
      await delay(300);
      await sendCancel(pgh.proxyPort, processId, int32(secretKey ^ 0x5a5a5a5a));
      await sendCancel(pgh.proxyPort, processId, int32(0));
      expect((await sleeping).rows).toEqual([{ slept: "" }]);

      const again = client.query("SELECT pg_sleep(30)");
      await delay(300);
      await sendCancel(pgh.proxyPort, processId, int32(secretKey));
      await expect(again).rejects.toMatchObject({ code: "57014" });
    } finally {
      await client.end();
    }
  });

  it("pg_terminate_backend(<the pid from BackendKeyData>) ends the session as it does directly (57P01)", async () => {
    const viaProxy = new pg.Client(pgh.clientConfig(token));
    const errors: Error[] = [];
    viaProxy.on("error", (error) => errors.push(error));
    await viaProxy.connect();
    const outcome = await viaProxy.query("SELECT pg_terminate_backend($1)", [backendKey(viaProxy).processId]).then(
      () => null,
      (error: { code?: string }) => error.code,
    );
    expect(outcome).toBe("57P01");
    await viaProxy.end().catch(() => undefined);
  });

  it("node-postgres quick-disconnect (connect, then end at once) works through the proxy, 20 times", async () => {
    const errors: Error[] = [];
    for (let i = 0; i < 20; i++) {
      const client = new pg.Client(pgh.clientConfig(token));
      client.on("error", (error) => errors.push(error));
      // As with the server directly, connect() may never settle after end(); end() itself must.
      void client.connect().catch((error: Error) => errors.push(error));
      await client.end();
    }
    await delay(200);
    expect(errors).toEqual([]);
    // And the proxy is still fine.
    const client = new pg.Client(pgh.clientConfig(token));
    await client.connect();
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await client.end();
  });

  it("postgres.js listen: notifications arrive, and after its backend is terminated it reconnects and listens again", async () => {
    const options = {
      host: "127.0.0.1",
      port: pgh.proxyPort,
      user: `${pgh.user}%${pgh.role}`,
      password: token,
      database: pgh.database,
      onnotice: () => {},
    };
    const sql = postgres({ ...options, max: 2 });
    const heard: string[] = [];
    let listens = 0;
    try {
      const listener = await sql.listen(
        "stint_fidelity",
        (payload) => heard.push(payload),
        () => (listens += 1),
      );
      const pid = (listener.state as { pid: number }).pid;
      const found = await pgh.admin.query("SELECT query FROM pg_stat_activity WHERE pid = $1", [pid]);
      expect(found.rows[0]?.query, "the listener's pid is the server's").toMatch(/listen/i);

      await sql.notify("stint_fidelity", "one");
      await expect.poll(() => heard, { timeout: 5_000 }).toEqual(["one"]);

      await pgh.admin.query("SELECT pg_terminate_backend($1, 5000)", [pid]);
      await expect.poll(() => listens, { timeout: 10_000 }).toBe(2);
      await sql.notify("stint_fidelity", "two");
      await expect.poll(() => heard, { timeout: 5_000 }).toEqual(["one", "two"]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("a malformed startup packet is met with silence and a closed connection, as the server does", async () => {
    for (const [what, bytes] of [
      ["a length below the minimum", Buffer.concat([int32(4), int32(196608)])],
      ["an unknown protocol code", Buffer.concat([int32(8), int32(1234)])],
      ["a startup without its terminating NUL", Buffer.concat([int32(13), int32(196608), Buffer.from("user\0")])],
    ] as const) {
      const direct = await rawExchange(pgh.instance.port, bytes);
      const proxied = await rawExchange(pgh.proxyPort, bytes);
      expect(proxied.closed, what).toBe(true);
      expect(proxied.received.length, `${what}: ${proxied.received.toString("latin1")}`).toBe(
        direct.received.length === 0 ? 0 : proxied.received.length,
      );
      expect(proxied.received.length, what).toBe(0);
    }
  });
});
