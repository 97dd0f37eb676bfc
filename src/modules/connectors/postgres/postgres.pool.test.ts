/**
 * The PostgreSQL connector's pool of admin connections (../connection-pool.ts), against a throwaway
 * PostgreSQL 15 cluster that checks passwords over TLS (src/testing/postgres-instance.ts): operations reuse
 * one backend, concurrency stays within the pool's size, a backend the server ends is replaced without the
 * caller noticing, idle connections close, and a rotated admin credential is used from the next operation
 * on while the old one serves nothing any more.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import net from "node:net";
import pg from "pg";
import { ConnectorError, type ConnectorTarget } from "../connector.types.js";
import { DEFAULT_POOL_SETTINGS } from "../connection-pool.js";
import { startPostgres, type PostgresInstance } from "../../../testing/postgres-instance.js";
import { postgresConnector as connector, postgresPools } from "./postgres.connector.js";
import { eventually } from "../../../testing/until.js";

const hex = randomBytes(4).toString("hex");
const readers = `stint_p_${hex}_readers`;
const member = `stint_p_${hex}_member`;
/** An admin login of its own (CREATEROLE), whose password the rotation test changes. */
const adminLogin = `stint_p_${hex}_admin`;
let adminPassword = `pw-${randomBytes(12).toString("hex")}`;

let instance: PostgresInstance;
let root: pg.Client;
let apps = 0;

/** A target with an application_name of its own, so that its backends can be counted. */
function targetFor(overrides: Partial<ConnectorTarget> = {}): { target: ConnectorTarget; appName: string } {
  const appName = `stint_p_${hex}_${++apps}`;
  return {
    appName,
    target: {
      name: `pool-${appName}`,
      address: `postgres://${adminLogin}@127.0.0.1:${instance.port}/postgres?application_name=${appName}`,
      options: { tls: { ca: instance.tls!.ca } },
      credential: adminPassword,
      ...overrides,
    },
  };
}

/** The test's own superuser client (replaced after the restart test). */
async function connectRoot(): Promise<pg.Client> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port: instance.port,
    user: "postgres",
    password: instance.adminPassword,
    database: "postgres",
    ssl: { ca: instance.tls!.ca },
  });
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

async function backends(appName: string): Promise<{ pid: number; state: string }[]> {
  return (
    await root.query<{ pid: number; state: string }>(
      "SELECT pid, state FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
      [appName],
    )
  ).rows;
}

const observe = (target: ConnectorTarget) => connector.observe(target, { role: readers });

beforeAll(async () => {
  instance = await startPostgres({ tls: true });
  root = await connectRoot();
  await root.query(`CREATE ROLE ${adminLogin} LOGIN CREATEROLE PASSWORD '${adminPassword}'`);
  await root.query(`CREATE ROLE ${readers} NOLOGIN`);
  await root.query(`CREATE ROLE ${member} LOGIN`);
  await root.query(`GRANT ${readers} TO ${adminLogin} WITH ADMIN OPTION`);
}, 60_000);

afterEach(() => postgresPools.configure(DEFAULT_POOL_SETTINGS));

afterAll(async () => {
  await postgresPools.closeAll();
  await root?.end().catch(() => undefined);
  await instance?.stop();
});

describe("postgres connector: pooled admin connections", () => {
  it("sequential operations reuse one backend", async () => {
    const { target, appName } = targetFor();
    await connector.test(target);
    const [first] = await backends(appName);
    expect(first).toBeDefined();
    for (let i = 0; i < 10; i++) {
      await connector.provision(target, { login: member, entitlement: { role: readers } });
      expect(await observe(target)).toContain(member);
      await connector.revoke(target, { login: member, entitlement: { role: readers } });
    }
    expect(await observe(target)).not.toContain(member);
    // The same process all along, and idle between calls.
    expect(await backends(appName)).toEqual([{ pid: first!.pid, state: "idle" }]);
  });

  it("concurrent operations use at most the pool's size of connections, and all succeed", async () => {
    const { target, appName } = targetFor();
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await backends(appName)).length);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const results = await Promise.all(Array.from({ length: 16 }, () => observe(target)));
    sampling = false;
    await sampler;
    expect(results).toHaveLength(16);
    peak = Math.max(peak, (await backends(appName)).length);
    expect(peak).toBeGreaterThanOrEqual(1);
    expect(peak).toBeLessThanOrEqual(DEFAULT_POOL_SETTINGS.max);
    expect(postgresPools.stats().find((s) => s.scope === `postgres:${target.name}`)).toMatchObject({ busy: 0 });
  });

  it("a backend ended by pg_terminate_backend is replaced: the next operation succeeds on a new one", async () => {
    const { target, appName } = targetFor();
    await observe(target);
    const [before] = await backends(appName);
    await root.query("SELECT pg_terminate_backend($1, 5000)", [before!.pid]);
    expect(await observe(target)).toEqual([adminLogin]);
    const after = await backends(appName);
    expect(after).toHaveLength(1);
    expect(after[0]!.pid).not.toBe(before!.pid);
  });

  it("a connection found dead only when used is retried once on a new connection", async () => {
    // A relay in front of the server that, once armed, cuts every connection it already carries at the next
    // byte the client sends: the pooled connection looks alive until the operation writes to it.
    const relayed = new Set<net.Socket>();
    let armed = false;
    let opened = 0;
    const relay = net.createServer((client) => {
      opened += 1;
      const server = net.connect(instance.port, "127.0.0.1");
      const armedAtOpen = armed;
      relayed.add(client);
      client.on("data", (chunk) => {
        if (armed && !armedAtOpen) {
          client.destroy();
          server.destroy();
        } else server.write(chunk);
      });
      server.on("data", (chunk) => client.write(chunk));
      client.on("error", () => server.destroy());
      server.on("error", () => client.destroy());
      client.on("close", () => server.destroy());
      server.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = relay.address() as net.AddressInfo;
      const { target } = targetFor();
      // The certificate names 127.0.0.1, so TLS through the relay still verifies.
      const relayedTarget = { ...target, address: target.address.replace(`:${instance.port}/`, `:${port}/`) };
      await observe(relayedTarget);
      expect(opened).toBe(1);
      armed = true;
      expect(await observe(relayedTarget)).toEqual([adminLogin]);
      expect(opened).toBe(2);
      // Only once: a failure on the new connection is the caller's.
      await connector.provision(relayedTarget, { login: member, entitlement: { role: readers } });
      expect(await observe(relayedTarget)).toEqual([adminLogin, member].sort());
      await connector.revoke(relayedTarget, { login: member, entitlement: { role: readers } });
    } finally {
      for (const socket of relayed) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    }
  });

  it("an idle connection is closed after the idle time", async () => {
    postgresPools.configure({ idleMs: 300 });
    const { target, appName } = targetFor();
    await Promise.all([observe(target), observe(target), observe(target)]);
    expect((await backends(appName)).length).toBeGreaterThanOrEqual(1);
    expect(await eventually(async () => (await backends(appName)).length === 0)).toBe(true);
    expect(postgresPools.stats().find((s) => s.scope === `postgres:${target.name}`)).toBeUndefined();
    // And the next call opens a new one.
    await observe(target);
    expect(await backends(appName)).toHaveLength(1);
  });

  it("a rotated admin credential is used from the next operation on; the old one serves nothing", async () => {
    const { target, appName } = targetFor();
    await observe(target);
    const [before] = await backends(appName);
    // The vault's rotation of the admin's own secret: through the connector, signed in with the old password.
    const rotated = `pw-${randomBytes(12).toString("hex")}`;
    await connector.setPassword(target, { login: adminLogin, password: rotated });
    const oldPassword = adminPassword;
    adminPassword = rotated;

    const next = { ...target, credential: rotated };
    expect(await observe(next)).toEqual([adminLogin]);
    // The connection signed in with the old password is closed, and a new one serves the new credential.
    expect(await eventually(async () => !(await backends(appName)).some((b) => b.pid === before!.pid))).toBe(true);
    const [after] = await backends(appName);
    expect(after!.pid).not.toBe(before!.pid);

    // A call still holding the old password signs in afresh, and the server refuses it.
    const stale = await observe(target).then(
      () => null,
      (e: unknown) => e,
    );
    expect(stale).toBeInstanceOf(ConnectorError);
    expect((stale as ConnectorError).reason).toBe("refused");
    expect((stale as Error).message).not.toContain(oldPassword);
    expect((stale as Error).message).not.toContain(rotated);
  });

  it("a changed address gets a pool of its own; the old pool's connections close", async () => {
    const { target, appName } = targetFor();
    await observe(target);
    expect(await backends(appName)).toHaveLength(1);
    const otherApp = `${appName}_moved`;
    const moved = { ...target, address: target.address.replace(appName, otherApp) };
    await observe(moved);
    expect(await eventually(async () => (await backends(appName)).length === 0)).toBe(true);
    expect(await backends(otherApp)).toHaveLength(1);
  });

  it("a server restart is survived: the pool's dead connections go, the next operation opens a new one", async () => {
    const { target, appName } = targetFor();
    await Promise.all([observe(target), observe(target)]);
    await instance.restart({ downMs: 200 });
    await root.end().catch(() => undefined);
    root = await connectRoot();
    expect(await observe(target)).toEqual([adminLogin]);
    expect(await backends(appName)).toHaveLength(1);
  });

  it("closeAll closes every pooled connection", async () => {
    const { target, appName } = targetFor();
    await Promise.all([observe(target), observe(target)]);
    expect((await backends(appName)).length).toBeGreaterThanOrEqual(1);
    await postgresPools.closeAll();
    expect(postgresPools.stats()).toEqual([]);
    expect(await eventually(async () => (await backends(appName)).length === 0)).toBe(true);
  });
});

describe("postgres connector: pooled connections and the process", () => {
  it("an idle pooled connection does not keep the process alive", async () => {
    const { target } = targetFor();
    const script = `
      import { postgresConnector } from ${JSON.stringify(new URL("./postgres.connector.ts", import.meta.url).pathname)};
      const target = JSON.parse(process.env.TARGET);
      await postgresConnector.observe(target, { role: process.env.ROLE });
      console.log("observed");
    `;
    const started = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      env: { ...process.env, TARGET: JSON.stringify(target), ROLE: readers },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(output).toContain("observed");
    expect(code).toBe(0);
    // Well before the 30 s idle close: nothing but the idle connection could have held it.
    expect(Date.now() - started).toBeLessThan(DEFAULT_POOL_SETTINGS.idleMs - 5_000);
  }, 40_000);
});
