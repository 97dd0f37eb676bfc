/**
 * Class: a database password set through a recorded session, read back by whoever may replay it (finding 91).
 *
 * Finding 90 kept password literals out of audit events; the recording (the query log the PostgreSQL and
 * MySQL proxies write, replayed by `stint sessions play` and the web player, exported as evidence) still held
 * `ALTER ROLE … PASSWORD 'S3cret…'` as typed, so an auditor read a DBA's new password. Now the recorder
 * writes a statement that mentions a password with its quoted literals as `'<redacted>'`, its bound values
 * redacted, and the server's error about it from its first quote on: a replay shows that a password was set,
 * never which. The statements still run: the new password works.
 *
 * Real PostgreSQL (a Stint server, its proxy and the replay API; the cluster checks SCRAM) and MariaDB (the
 * real proxy, recorder and blob store against the machine's server).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import mysql from "mysql2/promise";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { QueryLogEntry } from "../../src/contract/recording.js";
import { REDACTED } from "../../src/lib/sql-redact.js";
import { holdMariadb } from "../../src/testing/mariadb.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";
import {
  MYSQL_UPSTREAM,
  recordedDbProxies,
  recordedDbSessions,
  type RecordedDbProxies,
  type RecordedDbSessions,
} from "../../src/testing/recorded-db-sessions.js";
import { newestEnded, servedRecording } from "../../src/testing/ssh-recordings.js";

const HEX = randomBytes(4).toString("hex");
/** The secrets typed in the sessions: none may appear anywhere in a recording. */
const SECRET = {
  role: `S3cret-role-${HEX}`,
  bound: `S3cret-bound-${HEX}`,
  typo: `S3cret-typo-${HEX}`,
  user: `S3cret-user-${HEX}`,
  changed: `S3cret-changed-${HEX}`,
};

/** The query's error code, or null when it ran. */
const failure = (run: Promise<unknown>): Promise<string | null> =>
  run.then(
    () => null,
    (error: Error & { code?: string }) => error.code ?? error.message,
  );

function expectNoSecret(text: string): void {
  for (const secret of Object.values(SECRET)) expect(text).not.toContain(secret);
}

describe("PostgreSQL: a Stint server's recording of a session that sets passwords, as an auditor replays it", () => {
  let pgh: PgProxyHarness;
  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "required", queryParameters: true });
  }, 120_000);
  afterAll(async () => {
    await pgh?.close();
  });

  it("shows each statement with '<redacted>' in place of the password, bound values too; the password was set", async () => {
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    await client.connect();
    // Extended protocol: the password as a bound parameter of a statement that mentions one.
    const bound = await client.query<{ set: string }>("SELECT set_config('stint.password', $1, false) AS set", [
      SECRET.bound,
    ]);
    expect(bound.rows[0]?.set).toBe(SECRET.bound);
    expect(await failure(client.query(`ALTER ROLE ${pgh.login} PASSWORD '${SECRET.typo}`))).toBe("42601");
    // A statement without the word keeps its literals and bound values as typed.
    await client.query("SELECT $1::text AS kept, 'plain-literal' AS also_kept", ["plain-value"]);
    await client.query(`ALTER ROLE ${pgh.login} PASSWORD '${SECRET.role}'`);
    await client.end();

    const { text, recording } = await servedRecording(pgh.h, await newestEnded(pgh.h, pgh.user));
    if (recording.kind !== "postgres") throw new Error("not a PostgreSQL query log");
    /** The first entry whose statement starts so and that ran (or, `failed`, did not). */
    const byStatement = (start: string, failed = false): QueryLogEntry | undefined =>
      recording.queries.find((entry) => entry.statement.startsWith(start) && (entry.error !== null) === failed);
    // Before: the secrets as typed in the statement, its parameters and the server's error.
    expectNoSecret(text);
    expect(byStatement("ALTER ROLE")).toMatchObject({
      statement: `ALTER ROLE ${pgh.login} PASSWORD ${REDACTED}`,
      command: "ALTER ROLE",
    });
    expect(byStatement("SELECT set_config")).toMatchObject({
      statement: `SELECT set_config(${REDACTED}, $1, false) AS set`,
      parameters: ["<redacted>"],
      command: "SELECT",
    });
    expect(byStatement("ALTER ROLE", true)).toMatchObject({
      statement: `ALTER ROLE ${pgh.login} PASSWORD ${REDACTED}`,
      error: `42601: unterminated quoted string at or near ${REDACTED}`,
    });
    expect(byStatement("SELECT $1::text")).toMatchObject({
      statement: "SELECT $1::text AS kept, 'plain-literal' AS also_kept",
      parameters: ["plain-value"],
    });

    // It ran: the cluster (SCRAM) takes the new password.
    const direct = new pg.Client({
      host: "127.0.0.1",
      port: pgh.instance.port,
      user: pgh.login,
      password: SECRET.role,
      database: pgh.database,
      ssl: { ca: pgh.instance.tls!.ca },
    });
    await direct.connect();
    expect((await direct.query<{ who: string }>("SELECT current_user AS who")).rows[0]?.who).toBe(pgh.login);
    await direct.end();
  }, 120_000);
});

describe("MariaDB: the MySQL proxy's recording of a session that creates a user and changes its password", () => {
  let sessions: RecordedDbSessions;
  let proxies: RecordedDbProxies;
  let releaseMariadb: () => Promise<void>;
  const user = `stint_pw_${HEX}`;
  const account = `'${user}'@'127.0.0.1'`;
  const direct = (password: string) =>
    mysql.createConnection({ host: "127.0.0.1", port: MYSQL_UPSTREAM.port, user, password });

  beforeAll(async () => {
    releaseMariadb = await holdMariadb();
    sessions = recordedDbSessions();
    proxies = await recordedDbProxies(() => sessions);
  }, 60_000);
  afterAll(async () => {
    const root = await mysql.createConnection({ host: "127.0.0.1", port: MYSQL_UPSTREAM.port, user: "root" });
    await root.query(`DROP USER IF EXISTS ${account}`).catch(() => undefined);
    await root.end();
    await proxies?.close();
    sessions?.cleanup();
    await releaseMariadb?.();
  }, 60_000);

  it("shows CREATE USER … IDENTIFIED BY and SET PASSWORD with '<redacted>'; both ran", async () => {
    const client = await proxies.mysqlClient();
    const ended = sessions.ended.at(-1)!;
    await client.query(`CREATE USER ${account} IDENTIFIED BY '${SECRET.user}'`);
    const signIn = await direct(SECRET.user);
    await signIn.end();
    expect(await failure(client.query(`ALTER USER ${account} IDENTIFIED BY '${SECRET.typo}`))).toBe("ER_PARSE_ERROR");
    await client.query(`SET PASSWORD FOR ${account} = PASSWORD('${SECRET.changed}')`);
    await client.end();

    const end = await ended;
    const text = readFileSync(path.join(sessions.dir, end.recording!.key), "utf8");
    const entries = sessions.entries(end.recording!);
    // Before: every secret as typed, in the statements and in MariaDB's syntax error.
    expectNoSecret(text);
    expect(entries.map((entry) => entry.statement)).toEqual(
      expect.arrayContaining([
        `CREATE USER ${REDACTED}@${REDACTED} IDENTIFIED BY ${REDACTED}`,
        `SET PASSWORD FOR ${REDACTED}@${REDACTED} = PASSWORD(${REDACTED})`,
      ]),
    );
    const typo = entries.find((entry) => entry.error !== null && entry.statement.startsWith("ALTER USER"));
    expect(typo?.error).toMatch(/^42000: You have an error in your SQL syntax; .* near '<redacted>'$/);

    // They ran: the changed password signs in, the first no longer does.
    const changed = await direct(SECRET.changed);
    await changed.end();
    expect(await failure(direct(SECRET.user))).toBe("ER_ACCESS_DENIED_ERROR");
  }, 60_000);
});
