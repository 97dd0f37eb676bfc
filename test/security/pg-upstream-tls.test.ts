/**
 * Class: credentials sent to a database in clear (issue 12, finding 2).
 *
 * Stint signs in to PostgreSQL targets with passwords it keeps: the connector as the target's admin,
 * the session proxy as the session login. Both must reach the database over TLS that verifies the
 * server (verify-full by default, with the target's own CA bundle), sign in only by SCRAM-SHA-256
 * bound to that TLS channel, and never answer a cleartext or MD5 password request unless the target
 * explicitly opted into it. The real database is a throwaway cluster with TLS (a CA made by the
 * test), ssl=on and `hostssl … scram-sha-256`; the hostile ones are TCP listeners in this file that
 * speak just enough of the protocol and keep every byte they hear.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/logger.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type SessionGate,
  type UpstreamPostgres,
} from "../../src/modules/sessions/sessions.types.js";
import { createPgProxy, type PgProxy } from "../../src/proxies/pg/pg-proxy.js";
import { frame } from "../../src/testing/pg-proxy-harness.js";
import { createTestCa, startPostgres, type PostgresInstance } from "../../src/testing/postgres-instance.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const hex = randomBytes(4).toString("hex");
const alice = `alice${hex}`;
const SESSION_LOGIN = "app_ops";
const SESSION_PASSWORD = `session-${randomUUID()}`;
const DATABASE = "appdb";

/** A listener that speaks enough PostgreSQL to ask for a password the way it is told, and keeps what it hears. */
interface FakeUpstream {
  port: number;
  /** Everything received after the startup packet (where a password would be). */
  heard: Buffer;
  /** The SASL mechanism the client chose, if it got that far. */
  chosen: string | null;
  close(): Promise<void>;
}

type FakeAuth = "cleartext" | "md5" | "scram-only" | "scram-and-plus";

async function startFakeUpstream(auth: FakeAuth, tls?: { cert: string; key: string }): Promise<FakeUpstream> {
  const sockets = new Set<Socket>();
  const fake: FakeUpstream = { port: 0, heard: Buffer.alloc(0), chosen: null, close: async () => {} };
  const authRequest = (): Buffer => {
    if (auth === "cleartext") return Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]);
    if (auth === "md5") return Buffer.from([0x52, 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]);
    const names = auth === "scram-only" ? ["SCRAM-SHA-256"] : ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"];
    const body = Buffer.concat([
      Buffer.from([0, 0, 0, 10]),
      ...names.map((n) => Buffer.from(`${n}\0`)),
      Buffer.from([0]),
    ]);
    return frame("R", body);
  };
  const serve = (socket: Socket, secured: boolean) => {
    let buffer = Buffer.alloc(0);
    let started = false;
    const onData = (chunk: Buffer) => {
      if (started) {
        fake.heard = Buffer.concat([fake.heard, chunk]);
        if (chunk[0] === 0x70 && fake.chosen === null) {
          const end = chunk.indexOf(0, 5);
          fake.chosen = chunk.subarray(5, end).toString();
          // Heard what it wanted: a refusal ends the sign-in at once.
          socket.end(frame("E", Buffer.from("SFATAL\0C28P01\0Mfake upstream\0\0")));
        }
        return;
      }
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length < 8) return;
      const code = buffer.readInt32BE(4);
      if (code === 80877103 && !secured) {
        if (!tls) {
          socket.write("N");
          buffer = buffer.subarray(8);
          return;
        }
        socket.off("data", onData);
        socket.write("S");
        const secure = new TLSSocket(socket, { isServer: true, cert: tls.cert, key: tls.key });
        secure.on("error", () => undefined);
        serve(secure, true);
        return;
      }
      started = true;
      socket.write(authRequest());
    };
    socket.on("data", onData);
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    serve(socket, false);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.port = (server.address() as { port: number }).port;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return fake;
}

/** The gate's part for the fake upstreams only (the real cluster goes through the real server's gate). */
function fixedGate(upstream: () => UpstreamPostgres): Pick<SessionGate, "openPostgres"> {
  return {
    openPostgres: async (input) => {
      if (input.password !== "fake-token") throw new SessionRefusedError("BAD_CREDENTIALS", "no");
      const session: BrokeredSession<UpstreamPostgres> = {
        id: randomUUID(),
        user: "alice",
        role: "r",
        target: "fake",
        policy: { recording: "optional", portForwarding: false, queryParameters: false },
        upstream: upstream(),
        recorder: { output: () => {}, input: () => {}, resize: () => {}, event: () => {}, query: () => {} },
        signal: new AbortController().signal,
        countBytes: () => {},
        end: async () => {},
      };
      return session;
    },
  };
}

async function connectThrough(port: number, user: string, password: string): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port, user, password, database: DATABASE });
  client.on("error", () => {});
  await client.connect();
  return client;
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => null,
    (error: unknown) => error as Error,
  );
  expect(outcome, "expected a failure").not.toBeNull();
  return outcome as Error;
}

describe("PostgreSQL upstream TLS and sign-in (finding 2)", () => {
  let instance: PostgresInstance;
  let h: TargetsHarness;
  let proxy: PgProxy;
  let proxyPort: number;
  let fakeProxy: PgProxy;
  let fakeProxyPort: number;
  let fakeUpstream: UpstreamPostgres;
  let otherCa: Awaited<ReturnType<typeof createTestCa>>;
  let ca: string;
  const logger = createLogger({ level: "silent" });

  beforeAll(async () => {
    instance = await startPostgres({ tls: true });
    ca = instance.tls!.ca;
    otherCa = await createTestCa("somebody else's CA");
    const admin = new pg.Client({
      host: "127.0.0.1",
      port: instance.port,
      user: "postgres",
      password: instance.adminPassword,
      ssl: { ca },
    });
    await admin.connect();
    await admin.query(`CREATE ROLE ${SESSION_LOGIN} LOGIN PASSWORD '${SESSION_PASSWORD}'`);
    await admin.query(`CREATE DATABASE ${DATABASE} OWNER ${SESSION_LOGIN}`);
    await admin.end();

    h = await targetsHarness();
    proxy = createPgProxy({ gate: h.server.sessions.gate, logger, port: 0 });
    proxyPort = (await proxy.listen()).port;
    h.server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: proxyPort });
    await h.createUser(alice);
    await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("tls-self")}
targets:
  - name: tls-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:${instance.port}/${DATABASE}
    credential: { secret: targets/tls-db/admin }
    identity: { map: { ${alice}: ${SESSION_LOGIN} } }
    options:
      tls: { ca: ${JSON.stringify(ca)} }
      session: { login: ${SESSION_LOGIN}, secret: targets/tls-db/session }
  - name: wrong-name-db
    kind: postgres
    address: postgres://postgres@127.0.0.2:${instance.port}/${DATABASE}
    credential: { secret: targets/wrong-name-db/admin }
    options:
      tls: { ca: ${JSON.stringify(ca)} }
  - name: untrusted-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:${instance.port}/${DATABASE}
    credential: { secret: targets/untrusted-db/admin }
    options:
      tls: { ca: ${JSON.stringify(otherCa.cert)} }
roles:
  - name: tls-db-owner
    target: tls-db
    entitlement: { role: pg_read_all_data }
    policy: tls-self
    risk: low
eligibility:
  - role: tls-db-owner
    users: [${alice}]
`);
    for (const name of ["tls-db", "wrong-name-db", "untrusted-db"]) {
      const set = await h.admin("PUT", `/v1/targets/${name}/credential`, { secret: instance.adminPassword });
      expect(set.status, JSON.stringify(set.body)).toBe(200);
    }
    const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("targets/tls-db/session")}`, {
      kind: "password",
      value: SESSION_PASSWORD,
      platformRoles: ["admin"],
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);

    fakeProxy = createPgProxy({ gate: fixedGate(() => fakeUpstream), logger, port: 0 });
    fakeProxyPort = (await fakeProxy.listen()).port;
  });

  afterAll(async () => {
    await proxy?.close();
    await fakeProxy?.close();
    await h?.server.cleanup();
    await instance?.stop();
  });

  it("the connector signs in to a TLS + SCRAM cluster with verify-full against the target's CA", async () => {
    const res = await h.admin("POST", "/v1/targets/tls-db/test");
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.ok, JSON.stringify(res.body)).toBe(true);
    expect(res.body.detail).toContain("superuser");
  });

  it("a session through the proxy reaches the cluster over verified TLS (channel-bound SCRAM)", async () => {
    const request = await h.activate(alice, "tls-db-owner");
    expect(request.state, JSON.stringify(request)).toBe("active");
    const token = await h.as(alice, "POST", "/v1/db/tokens", { role: "tls-db-owner" });
    expect(token.status, JSON.stringify(token.body)).toBe(200);
    const client = await connectThrough(proxyPort, `${alice}%tls-db-owner`, String(token.body.password));
    try {
      const { rows } = await client.query(
        "SELECT current_user AS who, ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE pid = pg_backend_pid()",
      );
      expect(rows).toEqual([{ who: SESSION_LOGIN, ssl: true }]);
    } finally {
      await client.end();
    }
  });

  it("refuses a server certificate for another host name, and one from a CA the target does not trust", async () => {
    for (const name of ["wrong-name-db", "untrusted-db"]) {
      const res = await h.admin("POST", `/v1/targets/${name}/test`);
      expect(res.body.ok, name).toBe(false);
      expect(String(res.body.detail), name).toMatch(/TLS failed/);
    }
    for (const [host, trusted] of [
      ["127.0.0.2", ca],
      ["127.0.0.1", otherCa.cert],
    ] as const) {
      fakeUpstream = {
        kind: "postgres",
        host,
        address: host,
        port: instance.port,
        database: DATABASE,
        user: SESSION_LOGIN,
        password: SESSION_PASSWORD,
        tls: { mode: "verify-full", ca: trusted },
        allowAuth: [],
      };
      const error = await failure(connectThrough(fakeProxyPort, "alice%r", "fake-token"));
      expect(error.message).toMatch(/no secure connection/);
    }
  });

  it.each(["cleartext", "md5"] as const)(
    "a server asking for a %s password never receives it (connector and proxy)",
    async (auth) => {
      const fake = await startFakeUpstream(auth);
      try {
        // The connector, as the target's admin (sslmode=disable so the fake need not speak TLS).
        const name = `fake-${auth}`;
        const created = await h.admin("POST", "/v1/targets", {
          name,
          kind: "postgres",
          address: `postgres://postgres@127.0.0.1:${fake.port}/x?sslmode=disable`,
          credential: { secret: `targets/${name}/admin` },
        });
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        const set = await h.admin("PUT", `/v1/targets/${name}/credential`, { secret: instance.adminPassword });
        expect(set.status, JSON.stringify(set.body)).toBe(200);
        const tested = await h.admin("POST", `/v1/targets/${name}/test`);
        expect(tested.body.ok, JSON.stringify(tested.body)).toBe(false);
        expect(String(tested.body.detail)).toContain("options.auth.allow");

        // The proxy, as the session login.
        fakeUpstream = {
          kind: "postgres",
          host: "127.0.0.1",
          address: "127.0.0.1",
          port: fake.port,
          database: DATABASE,
          user: SESSION_LOGIN,
          password: SESSION_PASSWORD,
          tls: null,
          allowAuth: ["scram-sha-256"],
        };
        const error = await failure(connectThrough(fakeProxyPort, "alice%r", "fake-token"));
        expect(error.message).toContain("options.auth.allow");

        expect(fake.heard.includes(0x70), "no password message ('p') at all").toBe(false);
        expect(fake.heard.toString("latin1")).not.toContain(instance.adminPassword);
        expect(fake.heard.toString("latin1")).not.toContain(SESSION_PASSWORD);
      } finally {
        await fake.close();
      }
    },
  );

  it("over TLS the proxy binds SCRAM to the channel, and refuses a server that offers no binding", async () => {
    const issued = await otherCa.issue(["127.0.0.1"]);
    for (const auth of ["scram-and-plus", "scram-only"] as const) {
      const fake = await startFakeUpstream(auth, issued);
      try {
        fakeUpstream = {
          kind: "postgres",
          host: "127.0.0.1",
          address: "127.0.0.1",
          port: fake.port,
          database: DATABASE,
          user: SESSION_LOGIN,
          password: SESSION_PASSWORD,
          tls: { mode: "verify-full", ca: otherCa.cert },
          allowAuth: [],
        };
        await failure(connectThrough(fakeProxyPort, "alice%r", "fake-token"));
        if (auth === "scram-and-plus") {
          expect(fake.chosen).toBe("SCRAM-SHA-256-PLUS");
          expect(fake.heard.toString("latin1")).toContain("p=tls-server-end-point,,");
        } else {
          // A downgrade to unbound SCRAM is not accepted without the target's opt-in.
          expect(fake.chosen).toBeNull();
          expect(fake.heard.includes(0x70)).toBe(false);
        }
      } finally {
        await fake.close();
      }
    }
  });

  it("the plan warns about every opt-in that weakens the sign-in", async () => {
    const res = await h.admin("POST", "/v1/config/diff", {
      yaml: `
apiVersion: stint/v1
targets:
  - name: legacy-db
    kind: postgres
    address: postgres://postgres@legacy.example.com/app?sslmode=disable
    options: { auth: { allow: [md5] } }
`,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const notes = (res.body.notes as string[]).join("\n");
    expect(notes).toContain("warning: target legacy-db: sslmode=disable");
    expect(notes).toContain("md5");
  });
});
