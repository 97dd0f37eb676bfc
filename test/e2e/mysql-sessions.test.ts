/**
 * The MariaDB/MySQL session proxy end to end (issue 18, acceptance 3): a Stint server whose role mints a
 * MariaDB login per activation, the proxy asking the real gate, the machine's MariaDB, the real `mariadb`
 * client and the mysql2 driver, the `stint` CLI (db login, sessions play). Results through the proxy are
 * compared with the same queries run directly; wrong, reused --once, other users', expired and revoked
 * tokens are refused; a revoke ends an open client; and the attacks a proxy must stop: garbage and
 * oversized packets, COM_CHANGE_USER, LOAD DATA LOCAL, the token in clear from another machine.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRecording } from "../../src/contract/recording.js";
import { createLogger } from "../../src/lib/logger.js";
import { createMysqlProxy, type MysqlProxy } from "../../src/proxies/mysql/mysql-proxy.js";
import {
  CLEAR_PASSWORD,
  CLIENT,
  COM,
  MAX_PAYLOAD,
  PROXY_CAPABILITIES,
  encodeHandshakeResponse,
  packet,
  parseErr,
} from "../../src/proxies/mysql/mysql-wire.js";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { holdMariadb, MARIADB_URL } from "../../src/testing/mariadb.js";
import { ADMIN_PASSWORD, passwordFor } from "../../src/testing/server.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";
import { selfSignedCertificate } from "../../src/testing/self-signed.js";
import { injectFetch } from "./inject-fetch.js";

const run = promisify(execFile);
const HEX = randomBytes(4).toString("hex");
const DB = `mp_${HEX}`;
const DB_ROLE = `mp_rw_${HEX}`;
const ANN = `ann${HEX}`;
const BEN = `ben${HEX}`;
const ROLE = "app-maria";
const OTHER_ROLE = "app-maria-other";

let release: (() => Promise<void>) | undefined;
let root: mysql.Connection;
let h: TargetsHarness;
let proxy: MysqlProxy;
let port: number;
let work: string;
let requestId: string;

interface Login {
  kind?: string;
  host: string;
  port: number;
  user: string;
  password: string;
}

async function cli(who: string, args: string[]) {
  const name = who === "admin" ? h.server.config.bootstrapAdminName : who;
  const token = await h.server.login(name, who === "admin" ? ADMIN_PASSWORD : passwordFor(who));
  return runCliCaptured(args, {
    env: {
      STINT_CONFIG_DIR: path.join(work, `cli-${who}`),
      STINT_SERVER: "http://127.0.0.1:8420",
      STINT_TOKEN: token.replace(/^Bearer /, ""),
    },
    fetch: injectFetch(() => h.server.app),
  });
}

async function dbLogin(who: string, role = ROLE, once = false): Promise<Login> {
  const result = await cli(who, ["db", "login", role, "--json", ...(once ? ["--once"] : [])]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Login;
}

/** The mariadb client in batch mode (-B: tab-separated, -N: no header), through the proxy or directly. */
async function mariadb(
  login: Login | "direct",
  sql: string,
  extra: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const target =
    login === "direct"
      ? ["-h", "127.0.0.1", "-P", "3306", "-u", "root"]
      : ["-h", login.host, "-P", String(login.port), "-u", login.user, `-p${login.password}`];
  try {
    const { stdout, stderr } = await run("mariadb", ["--no-defaults", ...target, "-B", "-N", ...extra, DB, "-e", sql], {
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout, stderr: e.stderr };
  }
}

function viaProxy(login: Login, options: mysql.PoolOptions = {}): mysql.PoolOptions {
  return {
    host: login.host,
    port: login.port,
    user: login.user,
    password: login.password,
    database: DB,
    // The proxy asks for the token in clear: mysql2 sends it only when told to.
    authPlugins: { mysql_clear_password: () => () => Buffer.from(`${login.password}\0`) },
    ...options,
  };
}
const DIRECT: mysql.PoolOptions = { host: "127.0.0.1", port: 3306, user: "root", password: "", database: DB };

async function sessionsOf(user: string) {
  const res = await h.admin("GET", "/v1/sessions?limit=1000");
  return (
    res.body.items as { id: string; kind: string; user: string; endedAt: string | null; endReason: string | null }[]
  ).filter((s) => s.user === user && s.kind === "mysql");
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A raw client: greeting, a handshake response carrying the token in clear (mysql_clear_password), the OK. */
async function rawSignIn(
  login: Login,
  to = port,
  host = "127.0.0.1",
): Promise<{ socket: Socket; read: () => Promise<Buffer> }> {
  const socket = connect({ host, port: to });
  let buffer = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  let closed = false;
  socket.on("data", (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    wake?.();
  });
  socket.on("close", () => {
    closed = true;
    wake?.();
  });
  socket.on("error", () => {});
  const read = async (): Promise<Buffer> => {
    for (;;) {
      if (buffer.length >= 4 && buffer.length >= 4 + buffer.readUIntLE(0, 3)) {
        const length = buffer.readUIntLE(0, 3);
        const payload = buffer.subarray(4, 4 + length);
        buffer = buffer.subarray(4 + length);
        return payload;
      }
      if (closed) throw new Error("closed");
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
  await read(); // greeting
  socket.write(
    packet(
      1,
      encodeHandshakeResponse({
        capabilities: (PROXY_CAPABILITIES | CLIENT.CONNECT_WITH_DB) & ~CLIENT.CONNECT_ATTRS,
        maxPacketSize: 1 << 24,
        charset: 45,
        user: login.user,
        authResponse: Buffer.from(`${login.password}\0`),
        database: DB,
        authPlugin: CLEAR_PASSWORD,
      }),
    ),
  );
  return { socket, read };
}

beforeAll(async () => {
  release = await holdMariadb();
  work = await mkdtemp(path.join(tmpdir(), "stint-mysql-"));
  root = await mysql.createConnection({ ...DIRECT, database: undefined, multipleStatements: true });
  await root.query(`
    CREATE DATABASE \`${DB}\`;
    CREATE TABLE \`${DB}\`.items (id INT PRIMARY KEY, name VARCHAR(40), qty INT);
    INSERT INTO \`${DB}\`.items VALUES (1, 'anvil', 3), (2, 'bolt', 120), (3, 'crate', 7), (4, 'drill', NULL), (5, 'émaille ☃', 0);
    CREATE ROLE ${DB_ROLE};
    GRANT SELECT, INSERT, UPDATE, DELETE ON \`${DB}\`.* TO ${DB_ROLE};`);

  h = await targetsHarness({ realTime: true });
  proxy = createMysqlProxy({ gate: h.server.sessions.gate, logger: createLogger({ level: "silent" }), port: 0 });
  port = (await proxy.listen()).port;
  h.server.sessions.setProxyAddress("mysql", { host: "127.0.0.1", port });
  await h.createUser(ANN);
  await h.createUser(BEN);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("maria-self")}
    session: { recording: required }
targets:
  - name: app-maria
    kind: mysql
    address: ${MARIADB_URL}
roles:
  - name: ${ROLE}
    target: app-maria
    entitlement: { role: ${DB_ROLE}, dynamic: true }
    policy: maria-self
    risk: medium
  - name: ${OTHER_ROLE}
    target: app-maria
    entitlement: { role: ${DB_ROLE}, dynamic: true }
    policy: maria-self
    risk: medium
eligibility:
  - role: ${ROLE}
    users: [${ANN}, ${BEN}]
  - role: ${OTHER_ROLE}
    users: [${ANN}]
`);
  const request = await h.activate(ANN, ROLE, "1h");
  expect(request.state, JSON.stringify(request)).toBe("active");
  requestId = String(request.id);
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  // Ends every activation: the connector drops the logins it minted.
  await h?.expireAll().catch(() => undefined);
  await h?.server.cleanup();
  if (root) {
    await root.query(`DROP DATABASE IF EXISTS \`${DB}\``).catch(() => undefined);
    await root.query(`DROP ROLE IF EXISTS ${DB_ROLE}`).catch(() => undefined);
    await root.end().catch(() => undefined);
  }
  await release?.();
  if (work) await rm(work, { recursive: true, force: true });
}, 60_000);

describe("MariaDB/MySQL proxy", () => {
  it("stint db login writes an option file; the mariadb client gets what it gets directly; the query log plays back", async () => {
    const file = path.join(work, "ann.cnf");
    const printed = await cli(ANN, ["db", "login", ROLE, "--defaults-file", file]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toContain(`mariadb --defaults-file='${file}'`);
    expect(printed.stdout).toContain(`user:     ${ANN}%${ROLE}`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, "utf8")).toMatch(/^\[client\]$/m);

    const queries = [
      "select id, name, qty from items order by id",
      "select count(*), sum(qty), group_concat(name order by id) from items",
      "select * from nosuch",
    ];
    for (const sql of queries) {
      const through = await run("mariadb", [`--defaults-file=${file}`, "-B", "-N", DB, "-e", sql]).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
        (e: { stdout: string; stderr: string }) => ({ code: 1, stdout: e.stdout, stderr: e.stderr }),
      );
      const direct = await mariadb("direct", sql);
      expect(through.stdout, sql).toBe(direct.stdout);
      expect(through.code, sql).toBe(direct.code);
      if (direct.code !== 0) expect(through.stderr).toBe(direct.stderr);
    }
    expect((await mariadb("direct", queries[0]!)).stdout).toContain("émaille ☃");

    const session = await waitFor("the sessions to end", async () => {
      const mine = await sessionsOf(ANN);
      return mine.length >= 3 && mine.every((s) => s.endedAt !== null) && mine;
    });
    expect(session.map((s) => s.endReason)).toEqual(["client_closed", "client_closed", "client_closed"]);
    const last = session.find((s) => s.endedAt !== null)!;
    const all = await Promise.all(session.map((s) => cli("admin", ["sessions", "play", s.id])));
    const played = all.map((p) => p.stdout).join("\n");
    for (const sql of queries) expect(played).toContain(sql);
    expect(played).toMatch(/\(\d+\.\d ms\) SELECT 5 rows\nselect id, name, qty from items order by id;/);
    expect(played).toContain("ERROR 42S02: Table");
    // The recording is the query log format `sessions play` reads, kind mysql.
    const recording = await h.admin("GET", `/v1/sessions/${last.id}`);
    expect(recording.body.kind).toBe("mysql");
  });

  it("mysql2: a pool, prepared statements, multi-statements and a 100k-row result are the same as directly", async () => {
    const login = await dbLogin(ANN);
    expect(login).toMatchObject({ kind: "mysql", host: "127.0.0.1", port, user: `${ANN}%${ROLE}` });
    const pool = mysql.createPool(viaProxy(login, { connectionLimit: 4, multipleStatements: true }));
    const direct = mysql.createPool({ ...DIRECT, connectionLimit: 4, multipleStatements: true });
    try {
      const both = async <T>(work: (p: mysql.Pool) => Promise<T>) => {
        const [a, b] = await Promise.all([work(pool), work(direct)]);
        expect(a).toEqual(b);
        return a;
      };
      // Text protocol, in parallel over the pool.
      await both((p) =>
        Promise.all(
          Array.from({ length: 16 }, (_, i) =>
            p.query("select ? as n, name from items where id = ?", [i, (i % 5) + 1]).then(([r]) => r),
          ),
        ),
      );
      // Binary prepared statements: NULL, unicode, numbers.
      await both((p) =>
        Promise.all(
          [1, 2, 3, 4, 5].map((id) =>
            p.execute("select id, name, qty, qty * 1.5 as x from items where id = ?", [id]).then(([r]) => r),
          ),
        ),
      );
      // Multi-statements: several result sets and an OK in one round trip.
      const multi = await both((p) =>
        p
          .query(
            "select count(*) as n from items; select name from items where qty > 5 order by id; update items set qty = qty where id = 1",
          )
          .then(([r]) => JSON.parse(JSON.stringify(r)) as unknown),
      );
      expect((multi as unknown[]).length).toBe(3);
      // A transaction through the pool, rolled back: the table is as before.
      const conn = await pool.getConnection();
      await conn.beginTransaction();
      await conn.execute("update items set qty = 999 where id = 2");
      expect((await conn.query("select qty from items where id = 2"))[0]).toEqual([{ qty: 999 }]);
      await conn.rollback();
      conn.release();
      expect((await root.query(`select qty from \`${DB}\`.items where id = 2`))[0]).toEqual([{ qty: 120 }]);
      // 100,000 rows, text and binary: the same rows (hashed), streamed through.
      const digest = (rows: unknown) => createHash("sha256").update(JSON.stringify(rows)).digest("hex");
      const big = "select seq, md5(seq) as h, repeat('x', seq % 50) as pad from seq_1_to_100000";
      const text = await both((p) => p.query(big).then(([r]) => digest(r)));
      const binary = await both((p) => p.execute(`${big} where seq > ?`, [0]).then(([r]) => digest(r)));
      expect(text).toBe(binary);
      // Errors come back as they do directly.
      const errorOf = (p: mysql.Pool) =>
        p.query("select * from nosuch").then(
          () => null,
          (e: { code: string; sqlState: string }) => [e.code, e.sqlState],
        );
      expect(await errorOf(pool)).toEqual(await errorOf(direct));
    } finally {
      await pool.end();
      await direct.end();
    }
  }, 60_000);

  it("refuses a wrong token, another user's or role's token, a reused --once token, and a bad user form", async () => {
    const mine = await dbLogin(ANN);
    const wrong = await mariadb({ ...mine, password: "stint_not-a-token" }, "select 1");
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("not a valid Stint database token");

    // The PostgreSQL tunnel is not for a MySQL role.
    const tunnel = await cli(ANN, ["db", "proxy", ROLE, "--port", "1"]);
    expect(tunnel.code).toBe(2);
    expect(tunnel.stderr).toContain("--defaults-file");
    // No grant: without an active activation there is no token to be had.
    const none = await cli(BEN, ["db", "login", ROLE]);
    expect(none.code).toBe(7);
    expect(none.stderr).toContain("NOT_ACTIVE");
    await h.activate(BEN, ROLE, "1h");
    const bens = await dbLogin(BEN);
    expect((await mariadb({ ...mine, password: bens.password }, "select 1")).stderr).toContain(
      "not a valid Stint database token",
    );
    await h.activate(ANN, OTHER_ROLE, "1h");
    const other = await dbLogin(ANN, OTHER_ROLE);
    expect((await mariadb({ ...mine, password: other.password }, "select 1")).stderr).toContain(
      "not a valid Stint database token",
    );
    expect((await mariadb({ ...mine, user: ANN }, "select 1")).stderr).toContain("<user>%<role>");

    const once = await dbLogin(ANN, ROLE, true);
    expect((await mariadb(once, "select 'first'")).stdout).toBe("first\n");
    expect((await mariadb(once, "select 'second'")).stderr).toContain("already used");
    // mysql2 without the clear-password plugin allowed: it refuses to send the token itself.
    await expect(mysql.createConnection({ ...viaProxy(mine), authPlugins: {} })).rejects.toThrow(
      /mysql_clear_password/,
    );
  });

  it("attacks: garbage and oversized packets, COM_CHANGE_USER, unknown commands; the proxy carries on", async () => {
    // Before sign-in: an oversized packet header and plain garbage end that connection only.
    for (const junk of [Buffer.from([0xff, 0xff, 0xff, 0x01, 0x41]), randomBytes(300)]) {
      const socket = connect({ host: "127.0.0.1", port });
      socket.on("error", () => {});
      socket.resume(); // read what comes (the greeting, an error) so that the close is seen
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      socket.write(junk);
      await closed;
    }
    const login = await dbLogin(ANN);
    const { socket, read } = await rawSignIn(login);
    expect((await read())[0]).toBe(0x00);
    // COM_CHANGE_USER (to root, no password) and an unknown command: refused, never sent on.
    socket.write(packet(0, Buffer.concat([Buffer.from([COM.CHANGE_USER]), Buffer.from("root\0\0", "latin1")])));
    expect(parseErr(await read()).message).toMatch(/COM_CHANGE_USER/);
    socket.write(packet(0, Buffer.from([0x99, 1, 2, 3])));
    expect(parseErr(await read()).message).toMatch(/not supported/);
    // A 2 MiB statement: refused (the log keeps statements whole, up to 1 MiB), never sent on.
    socket.write(packet(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.alloc(2 << 20, "Z")])));
    expect(parseErr(await read()).message).toMatch(/1 MiB or more/);
    socket.write(packet(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from("select current_user()")])));
    const columns = await read();
    expect(columns[0]).toBe(1);
    await read(); // column definition
    await read(); // EOF
    const row = (await read()).toString("utf8");
    expect(row).toMatch(/stint_/); // still the minted login, not root
    // A packet longer than 16 MiB − 1 announced, then nothing: the session waits; closing ends it.
    const big = Buffer.alloc(4);
    big.writeUIntLE(MAX_PAYLOAD, 0, 3);
    socket.write(big);
    socket.end();
    await waitFor("the raw session to end", async () => (await sessionsOf(ANN)).every((s) => s.endedAt !== null));
    // Others are served as before.
    expect((await mariadb(login, "select 'still serving'")).stdout).toBe("still serving\n");
    const sessions = await sessionsOf(ANN);
    const logs = await Promise.all(
      sessions.map(async (s) => {
        const res = await h.server.app.inject({
          method: "GET",
          url: `/v1/sessions/${s.id}/recording`,
          headers: { authorization: await h.server.login(h.server.config.bootstrapAdminName, ADMIN_PASSWORD) },
        });
        return res.statusCode === 200 ? parseRecording(res.body) : null;
      }),
    );
    const entries = logs.flatMap((r) => (r && r.kind === "mysql" ? r.queries : []));
    expect(entries.map((e) => e.statement)).toContain("/* COM_CHANGE_USER */");
    // Refused commands are audited as the PostgreSQL proxy's policy refusals are.
    const audit = await h.admin("GET", "/v1/audit/events?limit=500");
    const refused = (audit.body.items as { action: string; details: Record<string, unknown> }[]).filter(
      (e) => e.action === "session.query_refused",
    );
    expect(refused.map((e) => [e.details.rule, e.details.statement])).toEqual(
      expect.arrayContaining([
        ["command_refused", "/* COM_CHANGE_USER */"],
        ["command_refused", "/* 0x99 */"],
        ["command_refused", "/* COM_QUERY */"],
      ]),
    );
    expect(entries.some((e) => e.statement.startsWith("ZZZZ"))).toBe(false);
  }, 60_000);

  it("LOAD DATA LOCAL is refused: the client's file never reaches the server", async () => {
    const login = await dbLogin(ANN);
    const file = path.join(work, "secret.csv");
    await writeFile(file, "77\tleaked\t1\n");
    const before = (await mariadb("direct", "select count(*) from items")).stdout;
    const result = await mariadb(login, `LOAD DATA LOCAL INFILE '${file}' INTO TABLE items`, ["--local-infile=1"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/not allowed|refused/i);
    expect((await mariadb("direct", "select count(*) from items")).stdout).toBe(before);
    expect((await mariadb("direct", "select count(*) from items where name = 'leaked'")).stdout).toBe("0\n");
  });

  it("the token in clear is refused from another machine when the proxy has no TLS", async () => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (external === undefined) return; // no second address on this machine to come from
    const open = createMysqlProxy({
      gate: h.server.sessions.gate,
      logger: createLogger({ level: "silent" }),
      host: "0.0.0.0",
      port: 0,
    });
    const { port: openPort } = await open.listen();
    try {
      const login = await dbLogin(ANN);
      const before = (await sessionsOf(ANN)).length;
      const { read } = await rawSignIn(login, openPort, external);
      const answer = await read();
      expect(answer[0]).toBe(0xff);
      expect(parseErr(answer).message).toContain("only from this machine");
      expect((await sessionsOf(ANN)).length).toBe(before);
    } finally {
      await open.close();
    }
  });

  it("with a certificate: the mariadb client and mysql2 sign in over TLS; in clear from another machine they are refused", async () => {
    const certificate = await selfSignedCertificate();
    const secure = createMysqlProxy({
      gate: h.server.sessions.gate,
      logger: createLogger({ level: "silent" }),
      host: "0.0.0.0",
      port: 0,
      tls: certificate,
    });
    const { port: securePort } = await secure.listen();
    try {
      const login = { ...(await dbLogin(ANN)), port: securePort };
      const status = await mariadb(login, "status", ["--ssl"]);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toMatch(/Cipher in use is/);
      const conn = await mysql.createConnection(viaProxy(login, { ssl: { rejectUnauthorized: false } }));
      expect((await conn.query("select count(*) as n from items"))[0]).toEqual([{ n: 5 }]);
      await conn.end();
      const external = Object.values(networkInterfaces())
        .flat()
        .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
      if (external !== undefined) {
        const plain = await mariadb({ ...login, host: external }, "select 1", ["--skip-ssl"]);
        expect(plain.code).not.toBe(0);
        expect(plain.stderr).toContain("only over TLS");
        const tls = await mariadb({ ...login, host: external }, "select 'over tls'", [
          "--ssl",
          "--skip-ssl-verify-server-cert",
        ]);
        expect(tls.stdout).toBe("over tls\n");
      }
    } finally {
      await secure.close();
    }
  });

  it("revoking the activation ends an open mariadb client within a second, and its tokens with it", async () => {
    const login = await dbLogin(ANN);
    const file = path.join(work, "revoke.cnf");
    await writeFile(
      file,
      `[client]\nhost=${login.host}\nport=${login.port}\nuser=${login.user}\npassword=${login.password}\n`,
      { mode: 0o600 },
    );
    const interactive = spawn("mariadb", [`--defaults-file=${file}`, "-n", DB], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    interactive.stdout.on("data", (c: Buffer) => (output += c.toString()));
    interactive.stderr.on("data", (c: Buffer) => (output += c.toString()));
    interactive.stdin.write("select 'still here';\n");
    await waitFor("mariadb to answer", async () => output.includes("still here"));
    // A statement running when the revoke comes: the client is told at once, with the reason.
    const running = spawn("mariadb", [`--defaults-file=${file}`, "-B", "-N", DB, "-e", "select sleep(30)"]);
    let runningOut = "";
    running.stderr.on("data", (c: Buffer) => (runningOut += c.toString()));
    const runningExit = new Promise<number>((resolve) => running.once("exit", () => resolve(Date.now())));
    const client = await mysql.createConnection(viaProxy(login));
    const closed = new Promise<number>((resolve) => client.on("error", () => resolve(Date.now())));
    expect((await client.query("select count(*) as n from items"))[0]).toEqual([{ n: 5 }]);
    await waitFor(
      "the sleep to run",
      async () =>
        (
          (await root.query("select id from information_schema.processlist where info = 'select sleep(30)'"))[0] as {
            id: number;
          }[]
        ).length === 1,
    );

    const revoke = await h.admin("POST", `/v1/activation-requests/${requestId}/revoke`, {
      reason: "access review found no ticket",
    });
    expect(revoke.status, JSON.stringify(revoke.body)).toBe(200);
    const revokedAt = Date.now();
    expect((await closed) - revokedAt).toBeLessThan(1000);
    expect((await runningExit) - revokedAt).toBeLessThan(1000);
    expect(runningOut).toContain("revoked");
    // The statement stopped at the server too (KILL QUERY), not only the client's connection.
    await waitFor(
      "the sleep to stop upstream",
      async () =>
        (
          (await root.query("select id from information_schema.processlist where info = 'select sleep(30)'"))[0] as {
            id: number;
          }[]
        ).length === 0,
      5_000,
    );
    interactive.stdin.write("select 'after';\n");
    interactive.stdin.end();
    await new Promise((resolve) => interactive.once("exit", resolve));
    expect(output).not.toMatch(/^after$/m);
    const ended = await waitFor("the sessions to end", async () => {
      const mine = (await sessionsOf(ANN)).filter((s) => s.endReason === "activation_ended");
      return mine.length >= 3 && mine;
    });
    expect(ended.length).toBeGreaterThanOrEqual(3);
    expect((await mariadb(login, "select 1")).stderr).toContain("has ended");
  }, 60_000);

  it("an expired activation's token is refused", async () => {
    const again = await h.activate(ANN, ROLE, "1h");
    expect(again.state).toBe("active");
    const login = await dbLogin(ANN);
    expect((await mariadb(login, "select 'before expiry'")).stdout).toBe("before expiry\n");
    await h.expireAll();
    const refused = await mariadb(login, "select 1");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("has ended");
  }, 60_000);
});
