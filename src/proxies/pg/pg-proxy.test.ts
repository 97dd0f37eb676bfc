/**
 * The PostgreSQL proxy against real servers and real clients: psql and node-postgres, through the
 * proxy to a throwaway cluster that checks passwords with SCRAM-SHA-256, compared with the same
 * clients connected directly. The only stand-in is the SessionGate (the sessions module's decision):
 * `createTestGate` in src/testing/pg-proxy-gate.ts maps one Stint user and token to the cluster and keeps
 * what gets recorded. Here: psql sessions, TLS, refusals, upstream sign-in, the local tunnel, shutdown;
 * node-postgres pools, pipelining, backpressure and ending sessions in pg-proxy.clients.test.ts; a plain
 * TCP upstream in pg-proxy.plain-upstream.test.ts.
 */
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { describe, expect, it } from "vitest";
import {
  GSSENC_REQUEST_CODE,
  encodeAuthenticationCleartextPassword,
  encodeSslRequest,
  encodeStartupMessage,
} from "../../lib/pg-wire.js";
import { int32, untyped } from "../../lib/pg-wire/buffers.js";
import {
  DATABASE,
  REFUSAL,
  STINT_USER,
  TOKEN,
  TUNNEL_PASSWORD,
  UPSTREAM_PASSWORD,
  UPSTREAM_USER,
  backendKey,
  createTestGate,
  psql,
  sendCancel,
  tlsUpstreamFixture,
  waitFor,
} from "../../testing/pg-proxy-gate.js";
import { selfSignedCertificate } from "../../testing/self-signed.js";
import { createLocalTunnel } from "./local-tunnel.js";
import { createPgProxy } from "./pg-proxy.js";

describe("PostgreSQL proxy", () => {
  const fx = tlsUpstreamFixture();

  it("psql runs queries through the proxy, signed in upstream with SCRAM; the query log lists them", async () => {
    const before = fx.gate.sessions.length;
    const run = await psql(
      fx.proxyPort,
      [
        "-c",
        "SELECT current_user",
        "-c",
        "CREATE TABLE items (id int PRIMARY KEY, name text)",
        "-c",
        "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "-c",
        "SELECT count(*) FROM items",
        "-c",
        "SHOW application_name",
      ],
      { PGAPPNAME: "stint-test" },
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("app_user\n3\nstint-test\n");

    expect(fx.gate.calls.at(-1)).toEqual({
      user: STINT_USER,
      password: TOKEN,
      database: DATABASE,
      clientAddress: "127.0.0.1",
    });
    const [record] = fx.sessionsSince(before);
    expect(record).toBeDefined();
    if (record === undefined) return;
    await waitFor("the session's end", () => record.ends.length > 0);
    expect(record.ends).toEqual([{ reason: "client_closed" }]);
    expect(record.queries.map(({ statement, command, rows, error }) => ({ statement, command, rows, error }))).toEqual([
      { statement: "SELECT current_user", command: "SELECT", rows: 1, error: null },
      {
        statement: "CREATE TABLE items (id int PRIMARY KEY, name text)",
        command: "CREATE TABLE",
        rows: null,
        error: null,
      },
      { statement: "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')", command: "INSERT", rows: 3, error: null },
      { statement: "SELECT count(*) FROM items", command: "SELECT", rows: 1, error: null },
      { statement: "SHOW application_name", command: "SHOW", rows: null, error: null },
    ]);
    for (const entry of record.queries) expect(entry.durationMs).toBeGreaterThanOrEqual(0);
    expect(record.bytes.up).toBeGreaterThan(0);
    expect(record.bytes.down).toBeGreaterThan(0);
    expect(fx.proxy.liveSessions()).toBe(0);
  });

  it("psql COPY FROM STDIN and TO STDOUT, and an error, through the proxy", async () => {
    const before = fx.gate.sessions.length;
    const child = spawn(
      "psql",
      ["-X", "-q", "-h", "127.0.0.1", "-p", String(fx.proxyPort), "-d", DATABASE, "-c", "COPY items FROM STDIN"],
      { env: { PATH: process.env.PATH, PGUSER: STINT_USER, PGPASSWORD: TOKEN }, stdio: ["pipe", "pipe", "pipe"] },
    );
    child.stdin.end("10\tten\n11\televen\n");
    const [code] = (await once(child, "close")) as [number];
    expect(code).toBe(0);
    const out = await psql(fx.proxyPort, ["-c", "COPY (SELECT * FROM items WHERE id >= 10 ORDER BY id) TO STDOUT"]);
    expect(out.stdout).toBe("10\tten\n11\televen\n");
    const failed = await psql(fx.proxyPort, ["-c", "SELECT 1/0"]);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain("division by zero");

    const queries = fx.sessionsSince(before).flatMap((s) => s.queries);
    expect(queries.map(({ command, rows, error }) => ({ command, rows, error }))).toEqual([
      { command: "COPY", rows: 2, error: null },
      { command: "COPY", rows: 2, error: null },
      { command: null, rows: null, error: "22012: division by zero" },
    ]);
  });

  it("answers SSLRequest and GSSENCRequest with 'N', then asks for the password in clear", async () => {
    const socket = connect({ host: "127.0.0.1", port: fx.proxyPort });
    await once(socket, "connect");
    const read = async () => (await once(socket, "data"))[0] as Buffer;
    socket.write(untyped(int32(GSSENC_REQUEST_CODE)));
    expect((await read()).toString("latin1")).toBe("N");
    socket.write(encodeSslRequest());
    expect((await read()).toString("latin1")).toBe("N");
    socket.write(encodeStartupMessage({ user: STINT_USER, database: DATABASE }));
    expect(await read()).toEqual(encodeAuthenticationCleartextPassword());
    socket.destroy();
  });

  it("with a certificate: psql with sslmode=require is served over TLS, a plaintext startup is refused", async () => {
    const certificate = await selfSignedCertificate();
    const secure = createPgProxy({
      gate: fx.gate.gate,
      logger: fx.logger,
      port: 0,
      tls: certificate,
    });
    const { port } = await secure.listen();
    try {
      const before = fx.gate.sessions.length;
      const ok = await psql(
        port,
        ["-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()", "-c", "select 'over tls'"],
        {
          PGSSLMODE: "require",
        },
      );
      expect(ok.stderr).toBe("");
      expect(ok.stdout).toContain("over tls");
      expect(fx.gate.sessions.length).toBe(before + 1);
      const plain = await psql(port, ["-c", "select 1"], { PGSSLMODE: "disable" });
      expect(plain.code).not.toBe(0);
      expect(plain.stderr).toContain("accepts only TLS connections");
      expect(fx.gate.sessions.length).toBe(before + 1);
      // `stint db proxy`'s tunnel asks for TLS and gets it.
      const tunnel = createLocalTunnel({
        listenPort: 0,
        proxyHost: "127.0.0.1",
        proxyPort: port,
        user: STINT_USER,
        password: () => Promise.resolve(TOKEN),
        localPassword: TUNNEL_PASSWORD,
        // As the server names it (src/proxies/index.ts): the proxy shows that certificate, so it passes.
        proxyCertificateSha256: new X509Certificate(certificate.cert).fingerprint256,
      });
      const tunnelPort = (await tunnel.listen()).port;
      try {
        const viaTunnel = await psql(tunnelPort, ["-w", "-c", "SELECT 'tunnelled'"], {
          PGPASSWORD: TUNNEL_PASSWORD,
          PGSSLMODE: "disable",
        });
        expect(viaTunnel.stderr).toBe("");
        expect(viaTunnel.stdout).toBe("tunnelled\n");
      } finally {
        await tunnel.close();
      }
      // The proxy answers 'S'.
      const socket = connect({ host: "127.0.0.1", port });
      await once(socket, "connect");
      socket.write(encodeSslRequest());
      expect(((await once(socket, "data"))[0] as Buffer).toString("latin1")).toBe("S");
      socket.destroy();
    } finally {
      await secure.close();
    }
  });

  it("a wrong token: psql fails with the gate's message and no session is opened", async () => {
    const upstreamBackends = async () =>
      (await fx.admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1", [UPSTREAM_USER]))
        .rows[0] as { n: number };
    await waitFor("earlier sessions' backends to exit", async () => (await upstreamBackends()).n === 0);
    const before = fx.gate.sessions.length;
    const calls = fx.gate.calls.length;
    const run = await psql(fx.proxyPort, ["-c", "SELECT 1"], { PGPASSWORD: "not-the-token" });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(REFUSAL);
    expect(fx.gate.calls.slice(calls)).toMatchObject([{ user: STINT_USER, password: "not-the-token" }]);
    expect(fx.gate.sessions.length).toBe(before);
    expect(await upstreamBackends()).toEqual({ n: 0 });
  });

  it("an upstream that refuses the credential: a clear error, never the upstream password", async () => {
    const saved = fx.upstream;
    fx.upstream = { ...saved, password: "wrong-upstream-password" };
    const before = fx.gate.sessions.length;
    try {
      const run = await psql(fx.proxyPort, ["-c", "SELECT 1"]);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toContain(`the database at 127.0.0.1:${fx.instance.port} refused the session`);
      expect(run.stderr).toContain("password authentication failed");
      expect(run.stderr).not.toContain("wrong-upstream-password");
      fx.upstream = { ...saved, port: 1 };
      const unreachable = await psql(fx.proxyPort, ["-c", "SELECT 1"]);
      expect(unreachable.stderr).toContain("could not connect to the database at 127.0.0.1:1");
    } finally {
      fx.upstream = saved;
    }
    const opened = fx.sessionsSince(before);
    await waitFor("both ends", () => opened.every((s) => s.ends.length > 0));
    expect(opened.map((s) => s.ends[0]?.reason)).toEqual(["error", "error"]);
  });

  it("signs in upstream with MD5 or a cleartext password only when the target opted into it (finding 2)", async () => {
    const hbaFile = ((await fx.admin.query("SHOW hba_file")).rows[0] as { hba_file: string }).hba_file;
    const original = await readFile(hbaFile, "utf8");
    await writeFile(
      hbaFile,
      `host all md5_user 127.0.0.1/32 md5\nhost all clear_user 127.0.0.1/32 password\n${original}`,
    );
    await fx.admin.query("SELECT pg_reload_conf()");
    await fx.admin.query("SET password_encryption = 'md5'");
    await fx.admin.query(`CREATE ROLE md5_user LOGIN PASSWORD '${UPSTREAM_PASSWORD}'`);
    await fx.admin.query("RESET password_encryption");
    await fx.admin.query(`CREATE ROLE clear_user LOGIN PASSWORD '${UPSTREAM_PASSWORD}'`);
    const stored = await fx.admin.query(
      "SELECT rolname, left(rolpassword, 3) AS kind FROM pg_authid WHERE rolname IN ('md5_user', 'clear_user') ORDER BY rolname",
    );
    expect(stored.rows).toEqual([
      { rolname: "clear_user", kind: "SCR" },
      { rolname: "md5_user", kind: "md5" },
    ]);
    await delay(300); // the reload is asynchronous
    const saved = fx.upstream;
    try {
      for (const [user, method] of [
        ["md5_user", "md5"],
        ["clear_user", "password"],
      ] as const) {
        fx.upstream = { ...saved, user };
        const refused = await psql(fx.proxyPort, ["-c", "SELECT current_user"]);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toContain(`options.auth.allow: [${method}]`);
        fx.upstream = { ...saved, user, allowAuth: [method] };
        const run = await psql(fx.proxyPort, ["-c", "SELECT current_user"]);
        expect(run.stderr).toBe("");
        expect(run.stdout).toBe(`${user}\n`);
      }
    } finally {
      fx.upstream = saved;
    }
  });

  it("the local tunnel: psql with the tunnel's own password, never the token", async () => {
    const tunnel = createLocalTunnel({
      listenPort: 0,
      proxyHost: "127.0.0.1",
      proxyPort: fx.proxyPort,
      user: STINT_USER,
      password: () => Promise.resolve(TOKEN),
      localPassword: TUNNEL_PASSWORD,
    });
    const { port } = await tunnel.listen();
    try {
      const run = await psql(port, ["-w", "-c", "SELECT current_user"], {
        PGPASSWORD: TUNNEL_PASSWORD,
        PGUSER: "alice",
      });
      expect(run.stderr).toBe("");
      expect(run.stdout).toBe("app_user\n");
      expect(fx.gate.calls.at(-1)).toMatchObject({ user: STINT_USER, password: TOKEN });
      const calls = fx.gate.calls.length;
      const without = await psql(port, ["-w", "-c", "SELECT 1"], { PGPASSWORD: undefined, PGUSER: "alice" });
      expect(without.code).not.toBe(0);
      expect(fx.gate.calls.length).toBe(calls);

      // A cancel through the tunnel reaches the server.
      const client = new pg.Client({
        host: "127.0.0.1",
        port,
        user: "alice",
        password: TUNNEL_PASSWORD,
        database: DATABASE,
      });
      await client.connect();
      const sleeping = client.query("SELECT pg_sleep(30)").then(
        () => "not cancelled",
        (e: pg.DatabaseError) => e.code,
      );
      await delay(300);
      await sendCancel(port, backendKey(client));
      expect(await sleeping).toBe("57014");
      await client.end();
    } finally {
      await tunnel.close();
    }
  });

  it("close() ends live sessions with reason shutdown", async () => {
    const gate = createTestGate(() => fx.upstream);
    const own = createPgProxy({ gate: gate.gate, logger: fx.logger, port: 0 });
    const { port } = await own.listen();
    const client = new pg.Client({ host: "127.0.0.1", port, user: STINT_USER, password: TOKEN, database: DATABASE });
    const errors: string[] = [];
    client.on("error", (error) => errors.push(error.message));
    await client.connect();
    expect(own.liveSessions()).toBe(1);
    await own.close();
    expect(own.liveSessions()).toBe(0);
    expect(gate.sessions[0]?.ends).toEqual([{ reason: "shutdown" }]);
    await waitFor("the client's error", () => errors.length > 0);
    expect(errors[0]).toContain("shutting down");
    await client.end().catch(() => {});
  });

  it("never logs the token or the upstream password", () => {
    expect(fx.logLines.length).toBeGreaterThan(0);
    const all = fx.logLines.join("");
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain(UPSTREAM_PASSWORD);
  });
});
