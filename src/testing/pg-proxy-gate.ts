/**
 * Test support for the PostgreSQL proxy's own tests (src/proxies/pg/pg-proxy*.test.ts): the proxy against
 * real servers and real clients, with the sessions module's decision stood in for by `createTestGate`
 * (one Stint user and token mapped to an upstream, recording what the proxy reports), psql run as a
 * child, and `tlsUpstreamFixture()`, a throwaway cluster with TLS and SCRAM holding a login and a
 * database, with the proxy in front of it for the calling `describe`.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { connect } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { createLogger } from "../lib/logger.js";
import { encodeCancelRequest } from "../lib/pg-wire.js";
import { int32 } from "../lib/pg-wire/buffers.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type QueryLogEntry,
  type SessionGate,
  type UpstreamPostgres,
} from "../modules/sessions/sessions.types.js";
import type { QueryRules } from "../contract/query-policy.js";
import { createPgProxy, type PgProxy } from "../proxies/pg/pg-proxy.js";
import { startPostgres, type PostgresInstance } from "./postgres-instance.js";

export const STINT_USER = "alice%pg-read";
export const TOKEN = `stint-db-${randomUUID()}`;
export const TUNNEL_PASSWORD = `tunnel-${randomUUID()}`;
export const UPSTREAM_USER = "app_user";
export const UPSTREAM_PASSWORD = `upstream-${randomUUID()}`;
export const DATABASE = "appdb";
export const REFUSAL = "the Stint token is not valid (expired or revoked); run `stint db token pg-read`";

export interface TestSession {
  session: BrokeredSession<UpstreamPostgres>;
  controller: AbortController;
  queries: QueryLogEntry[];
  ends: { reason: EndReason; detail?: string }[];
  bytes: { up: number; down: number };
}

export type TestGate = ReturnType<typeof createTestGate>;

/** The sessions module's part, reduced to: one user, one token, one upstream (changeable per test). */
export function createTestGate(
  upstream: () => UpstreamPostgres,
  queries: () => QueryRules | undefined = () => undefined,
) {
  const calls: { user: string; password: string; database: string | null; clientAddress: string }[] = [];
  const sessions: TestSession[] = [];
  const gate: Pick<SessionGate, "openPostgres"> = {
    openPostgres: async (input) => {
      calls.push({ ...input });
      if (input.user !== STINT_USER) throw new SessionRefusedError("NOT_ACTIVE", `no active role for ${input.user}`);
      if (input.password !== TOKEN) throw new SessionRefusedError("BAD_CREDENTIALS", REFUSAL);
      const controller = new AbortController();
      const record: TestSession = {
        controller,
        queries: [],
        ends: [],
        bytes: { up: 0, down: 0 },
        session: {
          id: randomUUID(),
          user: "alice",
          role: "pg-read",
          target: "app-db",
          policy: { recording: "required", portForwarding: false, queryParameters: true, queries: queries() },
          upstream: { ...upstream(), database: input.database ?? UPSTREAM_USER },
          recorder: {
            output: () => {},
            input: () => {},
            resize: () => {},
            event: () => {},
            query: (entry) => record.queries.push(entry),
          },
          signal: controller.signal,
          countBytes: (direction, n) => {
            record.bytes[direction] += n;
          },
          end: async (reason, detail) => {
            record.ends.push(detail === undefined ? { reason } : { reason, detail });
          },
        },
      };
      sessions.push(record);
      return record.session;
    },
  };
  return { gate, calls, sessions };
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** psql as the Stint user with the token (unless `env` says otherwise), unaligned and quiet. */
export function psql(
  port: number,
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<Run> & {
  child: ReturnType<typeof spawn>;
} {
  const child = spawn(
    "psql",
    ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-d", DATABASE, ...args],
    {
      env: {
        PATH: process.env.PATH,
        PGUSER: STINT_USER,
        PGPASSWORD: TOKEN,
        PGCONNECT_TIMEOUT: "10",
        PGSSLMODE: "prefer",
        PGPASSFILE: "/nonexistent/stint-test-pgpass",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<Run>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return Object.assign(done, { child });
}

/** What node-postgres keeps of BackendKeyData (not in its types). */
export function backendKey(client: pg.ClientBase): { processId: number; secretKey: number } {
  const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
  return { processId: processID, secretKey };
}

/** A CancelRequest sent by hand with the key the client received, as libpq's PQcancel does. */
export async function sendCancel(port: number, key: { processId: number; secretKey: number }): Promise<void> {
  const socket = connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  socket.end(encodeCancelRequest(key.processId, int32(key.secretKey)));
  await once(socket, "close");
}

/** The socket under a node-postgres client (to stop reading from it). */
export function clientSocket(client: pg.Client): import("node:net").Socket {
  return (client as unknown as { connection: { stream: import("node:net").Socket } }).connection.stream;
}

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export interface TlsUpstreamFixture {
  instance: PostgresInstance;
  admin: pg.Client;
  /** What the gate hands the proxy; a test may replace it and must put it back. */
  upstream: UpstreamPostgres;
  proxy: PgProxy;
  proxyPort: number;
  gate: TestGate;
  logger: ReturnType<typeof createLogger>;
  /** Every line the proxy logged (at debug). */
  logLines: string[];
  /** The sessions the gate opened since `count` were. */
  sessionsSince(count: number): TestSession[];
  /** node-postgres settings for a session through the proxy as the Stint user with the token. */
  proxied(): pg.ClientConfig & { port: number };
}

/**
 * For the calling `describe`: a throwaway cluster with TLS that checks passwords with SCRAM-SHA-256, holding
 * UPSTREAM_USER and DATABASE; the proxy on a free port in front of it, asking `createTestGate`. The fields
 * are there once `beforeAll` has run.
 */
export function tlsUpstreamFixture(): TlsUpstreamFixture {
  const logLines: string[] = [];
  const fixture = {
    logLines,
    logger: createLogger({ level: "debug", destination: { write: (line: string) => logLines.push(line) } }),
    gate: createTestGate(() => fixture.upstream),
    sessionsSince: (count: number) => fixture.gate.sessions.slice(count),
    proxied: () => ({
      host: "127.0.0.1",
      port: fixture.proxyPort,
      user: STINT_USER,
      password: TOKEN,
      database: DATABASE,
    }),
  } as TlsUpstreamFixture;

  beforeAll(async () => {
    fixture.instance = await startPostgres({ tls: true });
    fixture.admin = new pg.Client({
      host: "127.0.0.1",
      port: fixture.instance.port,
      user: "postgres",
      password: fixture.instance.adminPassword,
      database: "postgres",
      ssl: { ca: fixture.instance.tls!.ca },
    });
    await fixture.admin.connect();
    await fixture.admin.query(`CREATE ROLE ${UPSTREAM_USER} LOGIN PASSWORD '${UPSTREAM_PASSWORD}'`);
    await fixture.admin.query(`CREATE DATABASE ${DATABASE} OWNER ${UPSTREAM_USER}`);
    fixture.upstream = {
      kind: "postgres",
      host: "127.0.0.1",
      address: "127.0.0.1",
      port: fixture.instance.port,
      database: DATABASE,
      user: UPSTREAM_USER,
      password: UPSTREAM_PASSWORD,
      tls: { mode: "verify-full", ca: fixture.instance.tls!.ca },
      allowAuth: [],
    };
    fixture.proxy = createPgProxy({ gate: fixture.gate.gate, logger: fixture.logger, port: 0 });
    fixture.proxyPort = (await fixture.proxy.listen()).port;
  });

  afterAll(async () => {
    await fixture.proxy?.close();
    await fixture.admin?.end();
    await fixture.instance?.stop();
  });

  return fixture;
}
