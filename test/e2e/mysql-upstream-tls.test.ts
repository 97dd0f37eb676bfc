/**
 * The MariaDB/MySQL proxy signs in upstream over TLS (issue 18): a MariaDB of its own with SSL on
 * (the machine's has it off), a certificate from a throwaway CA for 127.0.0.1, the session login
 * created `REQUIRE SSL` (so the server itself refuses it in clear). The target says
 * `?sslmode=verify-full` with that CA: the connector grants over TLS, and a session through the
 * proxy reaches the server over TLS (`Ssl_cipher` non-empty, as the server sees it). An address that
 * says nothing means verify-full: towards the machine's MariaDB (SSL off) the proxy and the connector
 * are refused before a byte of the sign-in is sent; `?sslmode=disable` says plain TCP, knowingly.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createServer, type Server, type Socket } from "node:net";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/logger.js";
import { mysqlConnector } from "../../src/modules/connectors/mysql/mysql.connector.js";
import { parseAddress, upstreamTls } from "../../src/modules/connectors/mysql/mysql.rules.js";
import { createMysqlProxy, type MysqlProxy } from "../../src/proxies/mysql/mysql-proxy.js";
import { signInUpstream, UpstreamFailure } from "../../src/proxies/mysql/mysql-upstream.js";
import { CLIENT, PROXY_CAPABILITIES } from "../../src/proxies/mysql/mysql-wire.js";
import { connectTcp } from "../../src/proxies/pg/wire-stream.js";
import { MARIADB_URL } from "../../src/testing/mariadb.js";
import { createTestCa } from "../../src/testing/postgres-instance.js";
import { MYSQL_UPSTREAM } from "../../src/testing/recorded-db-sessions.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const run = promisify(execFile);
const HEX = randomBytes(4).toString("hex");
const USER = `tls${HEX}`;
const ROLE = "maria-tls";
const LOGIN = "app_tls";
const LOGIN_PASSWORD = `app-${HEX}`;
const ADMIN_PASSWORD = `adm-${HEX}`;

let dir: string;
let mariadbd: ChildProcess | null = null;
let port: number;
let h: TargetsHarness;
let proxy: MysqlProxy;
let proxyPort: number;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "stint-mdb-tls-"));
  const ca = await createTestCa();
  const server = await ca.issue(["127.0.0.1"]);
  await writeFile(path.join(dir, "ca.pem"), ca.cert);
  await writeFile(path.join(dir, "cert.pem"), server.cert);
  await writeFile(path.join(dir, "key.pem"), server.key, { mode: 0o600 });
  const asRoot = process.getuid?.() === 0 ? ["--user=root"] : [];
  const datadir = path.join(dir, "data");
  await run("mariadb-install-db", [
    "--no-defaults",
    `--datadir=${datadir}`,
    "--auth-root-authentication-method=normal",
    ...asRoot,
  ]);
  port = 20_000 + Math.floor(Math.random() * 20_000);
  const socketPath = path.join(dir, "mysqld.sock");
  mariadbd = spawn(
    "/usr/sbin/mariadbd",
    [
      "--no-defaults",
      `--datadir=${datadir}`,
      `--port=${port}`,
      "--bind-address=127.0.0.1",
      `--socket=${socketPath}`,
      `--pid-file=${path.join(dir, "mysqld.pid")}`,
      `--log-error=${path.join(dir, "error.log")}`,
      `--ssl-cert=${path.join(dir, "cert.pem")}`,
      `--ssl-key=${path.join(dir, "key.pem")}`,
      `--ssl-ca=${path.join(dir, "ca.pem")}`,
      "--skip-name-resolve",
      ...asRoot,
    ],
    { stdio: "ignore" },
  );
  let root: mysql.Connection | null = null;
  for (let i = 0; i < 200 && root === null; i++) {
    root = await mysql.createConnection({ socketPath, user: "root", multipleStatements: true }).catch(() => null);
    if (root === null) await sleep(100);
  }
  if (root === null) throw new Error("the MariaDB of this test did not start");
  await root.query(`
    CREATE USER stint_admin@'127.0.0.1' IDENTIFIED BY '${ADMIN_PASSWORD}' REQUIRE SSL;
    GRANT ALL ON *.* TO stint_admin@'127.0.0.1' WITH GRANT OPTION;
    CREATE ROLE app_reader;
    CREATE USER ${LOGIN}@'%' IDENTIFIED BY '${LOGIN_PASSWORD}' REQUIRE SSL;
    GRANT SELECT ON mysql.db TO app_reader;
    GRANT app_reader TO stint_admin@'127.0.0.1' WITH ADMIN OPTION;`);
  await root.end();

  h = await targetsHarness({ realTime: true });
  proxy = createMysqlProxy({ gate: h.server.sessions.gate, logger: createLogger({ level: "silent" }), port: 0 });
  proxyPort = (await proxy.listen()).port;
  h.server.sessions.setProxyAddress("mysql", { host: "127.0.0.1", port: proxyPort });
  await h.createUser(USER);
  const caYaml = ca.cert
    .trim()
    .split("\n")
    .map((line) => `          ${line}`)
    .join("\n");
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("maria-tls-self")}
    session: { recording: optional }
targets:
  - name: maria-tls
    kind: mysql
    address: mysql://stint_admin@127.0.0.1:${port}?sslmode=verify-full
    credential: { secret: targets/maria-tls/admin }
    identity: { map: { ${USER}: ${LOGIN} } }
    options:
      accountHost: "%"
      session: { login: ${LOGIN}, secret: targets/maria-tls/session }
      tls:
        ca: |
${caYaml}
roles:
  - name: ${ROLE}
    target: maria-tls
    entitlement: { role: app_reader }
    policy: maria-tls-self
    risk: low
eligibility:
  - role: ${ROLE}
    users: [${USER}]
`);
  expect((await h.admin("PUT", "/v1/targets/maria-tls/credential", { secret: ADMIN_PASSWORD })).status).toBe(200);
  const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("targets/maria-tls/session")}`, {
    kind: "password",
    value: LOGIN_PASSWORD,
    platformRoles: ["admin"],
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  const request = await h.activate(USER, ROLE, "1h");
  expect(request.state, JSON.stringify(request)).toBe("active");
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await h?.server.cleanup();
  if (mariadbd !== null && mariadbd.exitCode === null) {
    const exited = new Promise((resolve) => mariadbd!.once("exit", resolve));
    mariadbd.kill("SIGTERM");
    await Promise.race([exited, sleep(10_000)]);
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("MariaDB/MySQL proxy: TLS towards the server", () => {
  it("a session through the proxy signs in over TLS (verify-full with the target's CA): Ssl_cipher is set", async () => {
    const token = await h.as(USER, "POST", "/v1/db/tokens", { role: ROLE });
    expect(token.status, JSON.stringify(token.body)).toBe(200);
    const { stdout } = await run("mariadb", [
      "-h",
      "127.0.0.1",
      "-P",
      String(proxyPort),
      "-u",
      `${USER}%${ROLE}`,
      `-p${String(token.body.password)}`,
      "--skip-ssl",
      "-B",
      "-N",
      "-e",
      "SHOW SESSION STATUS LIKE 'Ssl_cipher'; SELECT CURRENT_USER()",
    ]);
    const [cipher, user] = stdout.trim().split("\n");
    expect(cipher).toMatch(/^Ssl_cipher\t\S+/);
    expect(user).toBe(`${LOGIN}@%`);
  }, 30_000);

  it("TLS required, the machine's MariaDB (SSL off): refused at its greeting, before any sign-in packet", async () => {
    const { written, attempt } = await signInRecorded({ mode: "require", ca: null });
    await expect(attempt).rejects.toBeInstanceOf(UpstreamFailure);
    await expect(attempt).rejects.toThrow(/does not offer TLS, and its target requires it \(sslmode=require\)/);
    expect(written).toEqual([]);
  }, 30_000);

  it("an address without sslmode is verify-full: the machine's MariaDB (SSL off) is refused, no sign-in byte sent", async () => {
    const address = parseAddress("mysql://root@127.0.0.1:3306");
    if ("problems" in address) throw new Error(address.problems.join("; "));
    const tls = upstreamTls(address, {});
    expect(tls).toEqual({ mode: "verify-full", ca: null });
    const { written, attempt } = await signInRecorded(tls);
    await expect(attempt).rejects.toBeInstanceOf(UpstreamFailure);
    await expect(attempt).rejects.toThrow(/does not offer TLS, and its target requires it \(sslmode=verify-full\)/);
    expect(written).toEqual([]);
  }, 30_000);

  it("the connector too: no sslmode towards a server without TLS is refused before the admin's password goes out; sslmode=disable connects", async () => {
    const tap = await recordingForwarder(3306);
    try {
      const password = `never-sent-${HEX}`;
      const target = { name: "plain-db", options: {}, credential: password };
      const refused = mysqlConnector.test({ ...target, address: `mysql://root@127.0.0.1:${tap.port}` });
      await expect(refused).rejects.toMatchObject({ reason: "unavailable" });
      // What reached the server from Stint's side: nothing (mysql2 stops at the greeting that offers no SSL).
      expect(Buffer.concat(tap.received).toString("latin1")).not.toContain(password);
      expect(Buffer.concat(tap.received)).toHaveLength(0);
      // Explicitly plain TCP, the machine's MariaDB (root without a password) is reached as before.
      const plain = await mysqlConnector.test({
        ...target,
        credential: null,
        address: `mysql://root@127.0.0.1:${tap.port}?sslmode=disable`,
      });
      expect(plain).toBeTruthy();
      expect(Buffer.concat(tap.received).length).toBeGreaterThan(0);
    } finally {
      await tap.close();
    }
  }, 30_000);

  it("a target in clear towards another host carries a warning: in the API's answer and in the plan", async () => {
    const clear = "sslmode=disable: Stint talks to this database in clear";
    const body = { name: "far-db", kind: "mysql", address: "mysql://stint_admin@db.example.com:3306?sslmode=disable" };
    const created = await h.admin("POST", "/v1/targets", body);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.warnings).toEqual([expect.stringContaining(clear)]);
    const verified = await h.admin("PUT", "/v1/targets/far-db", {
      ...body,
      address: "mysql://stint_admin@db.example.com",
    });
    expect(verified.status, JSON.stringify(verified.body)).toBe(200);
    expect(verified.body.warnings).toEqual([]);
    const unchecked = await h.admin("PUT", "/v1/targets/far-db", {
      ...body,
      address: `${body.address.split("?")[0]}?sslmode=require`,
    });
    expect(unchecked.body.warnings).toEqual([expect.stringContaining("the server certificate is not checked")]);
    const plan = await h.admin("POST", "/v1/config/diff", {
      yaml: `apiVersion: stint/v1\ntargets:\n  - name: far-db\n    kind: mysql\n    address: ${body.address}\n`,
    });
    expect(plan.status, JSON.stringify(plan.body)).toBe(200);
    expect(plan.body.notes).toContainEqual(expect.stringContaining(`warning: target far-db: ${clear}`));
    // The machine's own MariaDB in clear is not warned about: loopback traffic does not leave the machine.
    const near = await h.admin("POST", "/v1/targets", { ...body, name: "near-db", address: MARIADB_URL });
    expect(near.status, JSON.stringify(near.body)).toBe(201);
    expect(near.body.warnings).toEqual([]);
    for (const name of ["far-db", "near-db"]) expect((await h.admin("DELETE", `/v1/targets/${name}`)).status).toBe(200);
  });
});

/** signInUpstream towards the machine's MariaDB (SSL off) with `tls`, recording every byte the proxy writes. */
async function signInRecorded(tls: { mode: "require" | "verify-ca" | "verify-full"; ca: string | null } | null) {
  const socket = await connectTcp("127.0.0.1", 3306, 5_000);
  socket.on("error", () => {});
  const written: Buffer[] = [];
  const write = socket.write.bind(socket);
  socket.write = ((chunk: Buffer, ...rest: never[]) => {
    written.push(Buffer.from(chunk));
    return write(chunk, ...rest);
  }) as typeof socket.write;
  const attempt = signInUpstream(
    socket,
    // The local MariaDB as root, with a password that must never be sent, in clear or not as `tls` says.
    { ...MYSQL_UPSTREAM, password: "never-sent", tls },
    { capabilities: PROXY_CAPABILITIES | CLIENT.PROTOCOL_41, maxPacketSize: 1 << 24, charset: 45 },
    { timeoutMs: 5_000, loadDataLocal: false, database: null },
  );
  attempt.then(
    () => socket.destroy(),
    () => socket.destroy(),
  );
  return { written, attempt };
}

/** A TCP forwarder to 127.0.0.1:`port` that keeps what the connecting side sends. */
async function recordingForwarder(
  port: number,
): Promise<{ port: number; received: Buffer[]; close: () => Promise<void> }> {
  const received: Buffer[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    open.add(client);
    client.on("close", () => open.delete(client));
    const upstream = connectTcp("127.0.0.1", port, 5_000);
    client.on("error", () => {});
    upstream.then(
      (socket) => {
        socket.on("error", () => {});
        client.on("data", (chunk: Buffer) => {
          received.push(Buffer.from(chunk));
          socket.write(chunk);
        });
        socket.pipe(client);
        client.on("close", () => socket.destroy());
        socket.on("close", () => client.destroy());
      },
      () => client.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}
