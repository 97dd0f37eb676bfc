/**
 * Test support: brokered database sessions for a proxy under test, with the real recorder writing to a
 * real blob store (its backlog, backpressure and size limit), without the rest of a Stint server. A
 * required recording that fails aborts the session with `recording_failed`, as the sessions module does.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import mysql from "mysql2/promise";
import pg from "pg";
import { parseRecording } from "../contract/recording.js";
import { createBlobStore, type FinishedBlob } from "../lib/blob-store.js";
import { systemClock } from "../lib/clock.js";
import { createLogger } from "../lib/logger.js";
import { createRecorder, type RecordedBlob } from "../modules/sessions/recorder.js";
import { createMysqlProxy } from "../proxies/mysql/mysql-proxy.js";
import { createPgProxy } from "../proxies/pg/pg-proxy.js";
import type {
  BrokeredSession,
  EndReason,
  QueryLogEntry,
  UpstreamMysql,
  UpstreamPostgres,
} from "../modules/sessions/sessions.types.js";

/** The local PostgreSQL and MariaDB of the test host, as their superusers (no TLS). */
export const PG_UPSTREAM: UpstreamPostgres = {
  kind: "postgres",
  host: "127.0.0.1",
  address: "127.0.0.1",
  port: 5432,
  database: "postgres",
  user: "postgres",
  password: "",
  tls: null,
  allowAuth: ["scram-sha-256"],
};
export const MYSQL_UPSTREAM: UpstreamMysql = {
  kind: "mysql",
  host: "127.0.0.1",
  address: "127.0.0.1",
  port: 3306,
  database: null,
  user: "root",
  password: "",
  tls: null,
};

export interface RecordedSessionEnd {
  reason: EndReason;
  detail: string | undefined;
  /** With `unwritten` when the disk failed after taking lines (recorder.ts). */
  recording: RecordedBlob | null;
}

export interface RecordedDbSessions {
  /** The recordings' directory (their blob store's). */
  dir: string;
  /** A session for the gate to hand the proxy, recording required. */
  open<U extends UpstreamPostgres | UpstreamMysql>(upstream: U): Promise<BrokeredSession<U>>;
  /** The sessions' ends, in the order opened: each resolves once the proxy ended it and its recording closed. */
  ended: Promise<RecordedSessionEnd>[];
  /** The query log's entries as read back (parseRecording: a result with its statement, a statement sent with no result interrupted). */
  entries(recording: FinishedBlob): QueryLogEntry[];
  cleanup(): void;
}

export function recordedDbSessions(
  options: {
    maxBytes?: number;
    /** The sessions' policy keeps bound parameters in the query log (`session.queryParameters`). */
    queryParameters?: boolean;
  } = {},
): RecordedDbSessions {
  const dir = mkdtempSync(path.join(tmpdir(), "stint-db-recordings-"));
  const blobs = createBlobStore(dir);
  const ended: Promise<RecordedSessionEnd>[] = [];
  let count = 0;
  return {
    dir,
    ended,
    async open<U extends UpstreamPostgres | UpstreamMysql>(upstream: U): Promise<BrokeredSession<U>> {
      const id = `db-session-${++count}`;
      const controller = new AbortController();
      const writer = await blobs.create(
        `recordings/${id}.jsonl`,
        options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes },
      );
      const recorder = createRecorder({
        kind: upstream.kind,
        writer,
        meta: {
          session: id,
          user: "ann",
          role: "app-db",
          target: "app-db",
          login: upstream.user,
          startedAt: new Date(),
        },
        clock: systemClock,
        onFailure: (error) => {
          const limit = (error as NodeJS.ErrnoException).code === "EFBIG";
          const message = limit
            ? `This session's recording reached its size limit (${options.maxBytes} bytes, STINT_RECORDING_MAX_BYTES) and recording is required for app-db, so the session is ended.`
            : "Recording is required for app-db and it failed, so the session is ended.";
          controller.abort({ reason: "recording_failed", message });
        },
      });
      let resolveEnd: (end: RecordedSessionEnd) => void = () => undefined;
      ended.push(new Promise((resolve) => (resolveEnd = resolve)));
      let ending: Promise<void> | null = null;
      return {
        id,
        user: "ann",
        role: "app-db",
        target: "app-db",
        policy: { recording: "required", portForwarding: false, queryParameters: options.queryParameters ?? false },
        upstream,
        recorder,
        signal: controller.signal,
        countBytes: () => undefined,
        end: (reason, detail) =>
          (ending ??= recorder.finish().then((recording) => resolveEnd({ reason, detail, recording }))),
      };
    },
    entries(recording) {
      const parsed = parseRecording(readFileSync(path.join(dir, recording.key), "utf8"));
      return parsed.kind === "ssh" ? [] : parsed.queries;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The PostgreSQL and MariaDB/MySQL proxies, their gates opening sessions of `sessions()`; clients through them. */
export interface RecordedDbProxies {
  /** A node-postgres client through the PostgreSQL proxy, connected; its own errors are taken (a test reads its queries'). */
  pgClient(): Promise<pg.Client>;
  /** A mysql2 connection through the MySQL proxy; its own errors are taken likewise. */
  mysqlClient(): Promise<mysql.Connection>;
  close(): Promise<void>;
}

export async function recordedDbProxies(sessions: () => RecordedDbSessions): Promise<RecordedDbProxies> {
  const logger = createLogger({ level: "silent" });
  const pgProxy = createPgProxy({ logger, port: 0, gate: { openPostgres: () => sessions().open(PG_UPSTREAM) } });
  const mysqlProxy = createMysqlProxy({ logger, port: 0, gate: { openMysql: () => sessions().open(MYSQL_UPSTREAM) } });
  const pgPort = (await pgProxy.listen()).port;
  const mysqlPort = (await mysqlProxy.listen()).port;
  return {
    async pgClient() {
      const client = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "ann%app-db", password: "token" });
      client.on("error", () => undefined);
      await client.connect();
      return client;
    },
    async mysqlClient() {
      const connection = await mysql.createConnection({
        host: "127.0.0.1",
        port: mysqlPort,
        user: "ann%app-db",
        password: "token",
        authPlugins: { mysql_clear_password: () => () => Buffer.from("token\0") },
      });
      (connection as unknown as NodeJS.EventEmitter).on("error", () => undefined);
      return connection;
    },
    async close() {
      await pgProxy.close();
      await mysqlProxy.close();
    },
  };
}
