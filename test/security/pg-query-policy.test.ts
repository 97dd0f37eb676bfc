/**
 * Class: a read-only role writing anyway through the PostgreSQL proxy (issue 18, acceptance 1).
 *
 * The whole path is real: a Stint server whose role has `session.queries: { allow: [select] }`, the
 * proxy asking its gate, the machine's PostgreSQL, psql and node-postgres. The session login OWNS
 * the table and may SET ROLE to a writer, COPY to programs and files: without the policy every
 * statement of the bypass corpus would change something. Each must come back 42501 from the policy
 * (or, for writes hidden in a function a SELECT calls, 25006 from the read-only login, the second
 * layer), the database must be exactly as before (checked directly), the refusals must be in the
 * audit log and the query log, and the matching read corpus must return what it returns directly.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRecording } from "../../src/contract/recording.js";
import { createLogger } from "../../src/lib/logger.js";
import { createPgProxy, type PgProxy } from "../../src/proxies/pg/pg-proxy.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const HEX = randomBytes(4).toString("hex");
const DATABASE = `qp_${HEX}`;
const LOGIN = `qp_login_${HEX}`;
const WRITER = `qp_writer_${HEX}`;
const GROUP = `qp_group_${HEX}`;
const USER = `ro${HEX}`;
const ROLE = "app-db-readonly";
const MACHINE_PG = { host: "127.0.0.1", port: 5432 };

/** A statement that must not change anything. `layer: "either"`: a write hidden in a function the
 *  parse tree cannot see into; the read-only login (25006) may be the layer that stops it. */
interface Bypass {
  sql: string;
  layer?: "either";
  /** Not for psql scripts (psql splits on semicolons itself; these are sent as one string elsewhere). */
  onlyDriver?: true;
}

const DML = [
  "DELETE FROM accounts WHERE id = 1",
  "UPDATE accounts SET balance = 0 WHERE id = 2",
  "INSERT INTO accounts VALUES (99, 'mallory', 1000000)",
  "DELETE FROM accounts",
  "UPDATE accounts SET balance = balance * 2",
  "MERGE INTO accounts a USING (VALUES (1)) v(id) ON a.id = v.id WHEN MATCHED THEN DELETE",
  "INSERT INTO accounts SELECT id + 100, owner, balance FROM accounts",
  "TRUNCATE accounts",
  "INSERT INTO accounts VALUES (98, 'x', 1) ON CONFLICT (id) DO UPDATE SET balance = 0",
  "DELETE FROM ONLY public.accounts WHERE true",
];

/** Case, whitespace, comment, quoting and escape tricks applied to each base DML statement. */
const DISGUISES: ((sql: string) => string)[] = [
  (sql) => sql.toLowerCase(),
  (sql) => sql.replace(/ /g, "\n\t  "),
  (sql) => `/* SELECT 1; */ ${sql}`,
  (sql) => `-- SELECT only\n${sql}`,
  (sql) => sql.replace(/accounts/, `/* a /* nested */ comment */ "accounts"`),
  (sql) => sql.replace(/accounts/, `U&"\\0061ccounts"`),
  (sql) => sql.replace(/^(\w+)/, (verb) => [...verb].map((c, i) => (i % 2 ? c.toLowerCase() : c)).join("")),
  (sql) => `  ${sql.replace(/accounts/, "public.accounts")} ;  `,
];

const CORPUS: Bypass[] = [
  ...DML.map((sql) => ({ sql })),
  ...DML.slice(0, 6).flatMap((sql) => DISGUISES.map((disguise) => ({ sql: disguise(sql) }))),
  // Data-changing CTEs, nested, in EXPLAIN, in COPY, in a cursor, in PREPARE.
  { sql: "WITH d AS (DELETE FROM accounts WHERE id = 1 RETURNING *) SELECT * FROM d" },
  {
    sql: "WITH a AS (WITH b AS (UPDATE accounts SET balance = 0 WHERE id = 3 RETURNING id) SELECT * FROM b) SELECT * FROM a",
  },
  { sql: "WITH x AS (SELECT 1), y AS (INSERT INTO accounts VALUES (97, 'y', 1) RETURNING id) SELECT * FROM x, y" },
  {
    sql: "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3), d AS (DELETE FROM accounts WHERE id IN (SELECT n FROM r) RETURNING 1) SELECT count(*) FROM d",
  },
  { sql: "EXPLAIN ANALYZE DELETE FROM accounts WHERE id = 1" },
  { sql: "EXPLAIN (ANALYZE, BUFFERS) UPDATE accounts SET balance = 0 WHERE id = 1" },
  { sql: "explain analyze with d as (delete from accounts where id = 2 returning *) select * from d" },
  { sql: "EXPLAIN ANALYZE INSERT INTO accounts VALUES (96, 'z', 1)" },
  { sql: "COPY (DELETE FROM accounts WHERE id = 1 RETURNING *) TO STDOUT" },
  { sql: "DECLARE c1 CURSOR FOR WITH d AS (DELETE FROM accounts WHERE id = 1 RETURNING *) SELECT * FROM d" },
  { sql: "SELECT * FROM accounts FOR UPDATE" },
  { sql: "SELECT * FROM accounts WHERE id = 1 FOR NO KEY UPDATE NOWAIT" },
  // COPY in and out of the server.
  { sql: "COPY accounts FROM STDIN" },
  { sql: "COPY accounts TO PROGRAM 'cat > /dev/null'" },
  { sql: "copy accounts from program 'echo 95,p,1' with (format csv)" },
  { sql: `COPY accounts TO '/tmp/stint-qp-${HEX}.csv'` },
  { sql: `COPY (SELECT 1) TO '/tmp/stint-qp-${HEX}-2.csv'` },
  // DO blocks, dollar quoting.
  { sql: "DO $$ BEGIN DELETE FROM accounts WHERE id = 1; END $$" },
  { sql: "DO $body$ BEGIN EXECUTE 'UPDATE accounts SET balance = 0'; END $body$" },
  { sql: "do language plpgsql $x$begin insert into accounts values (94, 'do', 1); end$x$" },
  { sql: "SELECT $$ harmless $$; DELETE FROM accounts WHERE id = 1", onlyDriver: true },
  { sql: "SELECT $a$;$a$ AS semi; UPDATE accounts SET balance = 1 WHERE id = 1", onlyDriver: true },
  // Multi-statement strings (one Query message).
  { sql: "SELECT 1; DELETE FROM accounts WHERE id = 1", onlyDriver: true },
  { sql: "SELECT 1;DELETE FROM accounts", onlyDriver: true },
  { sql: "BEGIN; DELETE FROM accounts WHERE id = 1; COMMIT", onlyDriver: true },
  { sql: "SET LOCAL statement_timeout = '1s'; UPDATE accounts SET balance = 0 WHERE id = 1", onlyDriver: true },
  { sql: "SELECT 1 \\; DELETE FROM accounts WHERE id = 4" },
  // Prepared statements.
  { sql: "PREPARE del1 (int) AS DELETE FROM accounts WHERE id = $1" },
  { sql: "EXECUTE del1(1)" },
  { sql: "PREPARE upd1 AS UPDATE accounts SET balance = 0 WHERE id = 1; EXECUTE upd1", onlyDriver: true },
  { sql: "EXECUTE upd1" },
  // Who the session runs as, and its read-only mode.
  { sql: `SET ROLE ${WRITER}` },
  { sql: `SET SESSION ROLE ${WRITER}` },
  { sql: `SET SESSION AUTHORIZATION ${WRITER}` },
  { sql: "RESET ROLE" },
  { sql: `SELECT set_config('role', '${WRITER}', false)` },
  { sql: "SET default_transaction_read_only = off" },
  { sql: "SET LOCAL transaction_read_only TO off" },
  { sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE" },
  { sql: "BEGIN READ WRITE" },
  { sql: "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE" },
  { sql: "SET TRANSACTION READ WRITE" },
  { sql: "RESET ALL" },
  { sql: "SELECT set_config('default_transaction_read_only', 'off', false)" },
  { sql: "SELECT set_config(current_user, 'x', false)" },
  { sql: "SET client_encoding = 'SJIS'" },
  { sql: "SET standard_conforming_strings = off" },
  // With standard_conforming_strings off the server would end the string at \' and run the DELETE.
  { sql: "SET standard_conforming_strings = off; SELECT 'a\\'' ; DELETE FROM accounts; --'", onlyDriver: true },
  // Schema and privileges.
  { sql: "DROP TABLE accounts" },
  { sql: "ALTER TABLE accounts ADD COLUMN note text" },
  { sql: "CREATE TABLE stolen (x int)" },
  { sql: "CREATE TABLE stolen2 AS SELECT * FROM accounts" },
  { sql: "SELECT * INTO stolen3 FROM accounts" },
  { sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ DELETE FROM accounts RETURNING 1 $$" },
  { sql: "CREATE INDEX ON accounts (owner)" },
  { sql: "GRANT ALL ON accounts TO PUBLIC" },
  { sql: `ALTER ROLE ${LOGIN} SET default_transaction_read_only = off` },
  { sql: "COMMENT ON TABLE accounts IS 'owned'" },
  { sql: "CREATE TEMP TABLE t_tmp (x int)" },
  { sql: "ALTER SEQUENCE accounts_seq RESTART 1000" },
  // Server-side operations and escape hatches.
  { sql: "VACUUM accounts" },
  { sql: "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE" },
  { sql: "NOTIFY accounts_changed" },
  { sql: "CALL bump_proc()" },
  { sql: "SELECT pg_terminate_backend(0)" },
  { sql: 'SELECT U&"pg_termin\\0061te_backend"(0)' },
  { sql: "SELECT pg_catalog.pg_read_file('/etc/hostname')" },
  { sql: "SELECT lo_import('/etc/hostname')" },
  { sql: "SELECT lo_export(0, '/tmp/stint-lo')" },
  { sql: "SELECT dblink_exec('dbname=postgres', 'DROP TABLE x')" },
  { sql: "SELECT * FROM PG_LS_DIR('.')" },
  // Large objects and notifications: a read-only transaction would let these through.
  { sql: "SELECT lo_create(0)" },
  { sql: "SELECT lo_from_bytea(0, 'stolen')" },
  { sql: "SELECT pg_notify('accounts_changed', 'x')" },
  // Writes inside functions a SELECT calls: the parse tree cannot see them; the login is read-only.
  { sql: "SELECT bump()", layer: "either" },
  { sql: "SELECT bump() FROM accounts", layer: "either" },
  { sql: "SELECT count(*) FROM accounts WHERE bump() > 0", layer: "either" },
  { sql: "VALUES ((SELECT wipe()))", layer: "either" },
  { sql: "SELECT * FROM wipe()", layer: "either" },
  { sql: "SELECT nextval('accounts_seq')", layer: "either" },
  { sql: "SELECT setval('accounts_seq', 5000)", layer: "either" },
  { sql: "DECLARE c2 CURSOR WITH HOLD FOR SELECT bump()", layer: "either" },
  // Does not parse: refused, never guessed at.
  { sql: "DELETE FROM accounts WHERE" },
  { sql: "SELECT 1 /* unterminated", onlyDriver: true },
  { sql: "DE/**/LETE FROM accounts" },
];

/** Reads that must pass and return what they return directly. */
const READS = [
  "SELECT * FROM accounts ORDER BY id",
  "SELECT id, owner FROM accounts WHERE balance > 100 ORDER BY id",
  "select count(*), sum(balance) from accounts",
  "SELECT a.id, b.id AS other FROM accounts a JOIN accounts b ON a.id < b.id ORDER BY 1, 2",
  "WITH rich AS (SELECT * FROM accounts WHERE balance > 100) SELECT owner FROM rich ORDER BY owner",
  "WITH a AS (WITH b AS (SELECT id FROM accounts) SELECT * FROM b) SELECT max(id) FROM a",
  "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
  "VALUES (1, 'one'), (2, 'two')",
  "TABLE accounts",
  "SELECT $$;DELETE FROM accounts;$$ AS text",
  "SELECT 'DELETE FROM accounts WHERE id = 1' AS text",
  "/* DELETE FROM accounts */ SELECT 1 AS one",
  "-- DROP TABLE accounts\nSELECT 2 AS two",
  "SELECT U&'\\0041\\0042' AS ab",
  'SELECT owner FROM U&"\\0061ccounts" ORDER BY id',
  "sElEcT\n\towner\nFROM\taccounts\nORDER BY id DESC",
  "SELECT owner, rank() OVER (ORDER BY balance DESC) FROM accounts ORDER BY owner",
  "SELECT * FROM accounts WHERE owner LIKE 'a%' ORDER BY id",
  "SELECT id FROM accounts WHERE id IN (SELECT id FROM accounts WHERE balance < 1000) ORDER BY id",
  "SELECT current_user = session_user AS same",
  "SELECT set_config('application_name', 'reader', false)",
  "SELECT current_setting('application_name')",
  "SHOW search_path",
  "SELECT lower(owner) FROM accounts ORDER BY 1",
  "SELECT md5(string_agg(owner, ',' ORDER BY id)) FROM accounts",
  "SELECT json_agg(a ORDER BY id) FROM accounts a",
  "SELECT generate_series(1, 3) AS g",
  "SELECT 1 AS one; SELECT 2 AS two",
  "EXPLAIN (COSTS OFF) SELECT * FROM accounts WHERE id = 1",
  "SELECT pg_typeof(balance) FROM accounts LIMIT 1",
  "SELECT last_value FROM accounts_seq",
  "SELECT has_table_privilege('accounts', 'DELETE') AS could",
  "SELECT count(*) FROM pg_stat_activity WHERE false",
  "SELECT owner FROM accounts ORDER BY id LIMIT 2 OFFSET 1",
];

function psqlScript(statements: string[]): string {
  return statements.map((sql, i) => `\\echo @@${i}\n${sql.replace(/;?\s*$/, "")};\n`).join("");
}

/** psql on a script: stdout and stderr in one stream, in order. */
function runPsql(port: number, user: string, password: string, file: string, options?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "sh",
      [
        "-c",
        'exec psql -X -A -t -v VERBOSITY=verbose -h 127.0.0.1 -p "$1" -d "$2" -f "$3" 2>&1',
        "psql",
        String(port),
        DATABASE,
        file,
      ],
      {
        env: {
          PATH: process.env.PATH,
          PGUSER: user,
          PGPASSWORD: password,
          PGCONNECT_TIMEOUT: "10",
          PGSSLMODE: "disable",
          PGPASSFILE: "/nonexistent/stint-test-pgpass",
          ...(options === undefined ? {} : { PGOPTIONS: options }),
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** psql output cut at the @@n markers. */
function segments(output: string): Map<number, string> {
  const parts = new Map<number, string>();
  const pieces = output.split(/^@@(\d+)$/m);
  for (let i = 1; i < pieces.length; i += 2) parts.set(Number(pieces[i]), pieces[i + 1]!.trim());
  return parts;
}

const DIRECT_OPTIONS = "-c standard_conforming_strings=on";
const REFUSED = /^refused by Stint query policy \(rule [a-z_]+\): /;

describe("query policy on the PostgreSQL proxy: a read-only role (issue 18)", () => {
  let admin: pg.Client;
  let adminDb: pg.Client;
  let h: TargetsHarness;
  let proxy: PgProxy;
  let proxyPort: number;
  let dir: string;

  async function snapshot(): Promise<Record<string, unknown>> {
    const { rows } = await adminDb.query(`
      SELECT (SELECT md5(string_agg(format('%s|%s|%s', id, owner, balance), ',' ORDER BY id)) FROM accounts) AS data,
             (SELECT count(*) FROM accounts) AS n,
             (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class
               WHERE relnamespace = 'public'::regnamespace) AS relations,
             (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
               WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped) AS columns,
             (SELECT last_value FROM accounts_seq) AS seq,
             (SELECT count(*) FROM pg_largeobject_metadata) AS large_objects,
             (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace) AS functions,
             (SELECT relacl::text FROM pg_class WHERE oid = 'accounts'::regclass) AS acl,
             (SELECT obj_description('accounts'::regclass)) AS comment,
             (SELECT rolconfig::text FROM pg_roles WHERE rolname = '${LOGIN}') AS role_config`);
    return rows[0] as Record<string, unknown>;
  }

  async function token(): Promise<string> {
    const res = await h.as(USER, "POST", "/v1/db/tokens", { role: ROLE });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return String(res.body.password);
  }

  function viaProxy(password: string): pg.Client {
    const client = new pg.Client({
      ...MACHINE_PG,
      port: proxyPort,
      user: `${USER}%${ROLE}`,
      password,
      database: DATABASE,
    });
    client.on("error", () => {});
    return client;
  }

  /** `statement` through the proxy in a session of its own: refused by the query policy (42501). */
  async function refusedViaProxy(statement: string): Promise<void> {
    const client = viaProxy(await token());
    await client.connect();
    expect(
      await client.query(statement).then(
        () => null,
        (e: Error & { code?: string }) => e.code,
      ),
    ).toBe("42501");
    await client.end();
  }

  /** The audit log's session.query_refused events so far: refused statements and cut results. */
  function refusalEvents() {
    return h.server.store.db
      .selectFrom("audit_events")
      .selectAll()
      .where("action", "=", "session.query_refused")
      .execute();
  }

  /** Straight to the server as the session login (with the settings the proxy signs in with). */
  function direct(): pg.Client {
    const client = new pg.Client({ ...MACHINE_PG, user: LOGIN, database: DATABASE, options: DIRECT_OPTIONS });
    client.on("error", () => {});
    return client;
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-qp-"));
    admin = new pg.Client({ ...MACHINE_PG, user: "postgres", database: "postgres" });
    await admin.connect();
    await admin.query(`CREATE ROLE ${WRITER} NOLOGIN`);
    await admin.query(`CREATE ROLE ${GROUP} NOLOGIN`);
    // The session login could do all of it: owner of the table, may become the writer, may run programs.
    await admin.query(
      `CREATE ROLE ${LOGIN} LOGIN PASSWORD 'unused-${HEX}' IN ROLE ${WRITER}, pg_execute_server_program, pg_write_server_files, pg_read_server_files`,
    );
    await admin.query(`CREATE DATABASE ${DATABASE} OWNER ${LOGIN}`);
    // The login's own default reads '…\'…' strings the old way: the proxy must sign in with it on.
    await admin.query(`ALTER ROLE ${LOGIN} SET standard_conforming_strings = off`);
    adminDb = new pg.Client({ ...MACHINE_PG, user: "postgres", database: DATABASE });
    await adminDb.connect();
    await adminDb.query(`
      SET ROLE ${LOGIN};
      CREATE SEQUENCE accounts_seq;
      CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL);
      INSERT INTO accounts VALUES (1, 'alice', 120), (2, 'bob', 80), (3, 'carol', 5000), (4, 'dave', 0), (5, 'erin', 101);
      CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS $$ UPDATE accounts SET balance = balance + 1 RETURNING 1 $$;
      CREATE FUNCTION wipe() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM accounts; RETURN; END $$;
      CREATE PROCEDURE bump_proc() LANGUAGE sql AS $$ UPDATE accounts SET balance = 0 $$;
      RESET ROLE;`);

    h = await targetsHarness();
    proxy = createPgProxy({ gate: h.server.sessions.gate, logger: createLogger({ level: "silent" }), port: 0 });
    proxyPort = (await proxy.listen()).port;
    h.server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: proxyPort });
    await h.createUser(USER);
    await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("read-only-self")}
    session: { recording: required, queries: { allow: [select], maxRows: 100 } }
targets:
  - name: app-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${DATABASE}?sslmode=disable
    credential: { secret: targets/app-db/admin }
    identity: { map: { ${USER}: ${LOGIN} } }
    options:
      session: { login: ${LOGIN}, secret: targets/app-db/session }
roles:
  - name: ${ROLE}
    target: app-db
    entitlement: { role: ${GROUP} }
    policy: read-only-self
    risk: low
eligibility:
  - role: ${ROLE}
    users: [${USER}]
`);
    // The machine's server trusts local connections: the passwords are never checked, only required.
    expect((await h.admin("PUT", "/v1/targets/app-db/credential", { secret: `admin-${HEX}` })).status).toBe(200);
    const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("targets/app-db/session")}`, {
      kind: "password",
      value: `unused-${HEX}`,
      platformRoles: ["admin"],
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const request = await h.activate(USER, ROLE, "1h");
    expect(request.state, JSON.stringify(request)).toBe("active");
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await h?.server.cleanup();
    await adminDb?.end().catch(() => undefined);
    await admin?.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`).catch(() => undefined);
    for (const role of [LOGIN, WRITER, GROUP]) await admin?.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await admin?.end().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it("the corpus is the size the issue asks for", () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(100);
    expect(READS.length).toBeGreaterThanOrEqual(30);
  });

  it("the bypass corpus, through node-postgres (simple and extended protocol) and psql: every statement refused, nothing changed", async () => {
    const before = await snapshot();
    // Positive control: directly, as the same login, the first statements would change the table.
    const control = direct();
    await control.connect();
    await control.query("BEGIN");
    expect((await control.query(DML[0]!)).rowCount).toBe(1);
    await control.query("ROLLBACK");
    await control.end();

    const client = viaProxy(await token());
    await client.connect();
    const failures: string[] = [];
    const expectRefused = (what: string, entry: Bypass, error: (Error & { code?: string }) | null) => {
      if (error === null) return failures.push(`${what}: passed: ${entry.sql}`);
      const byPolicy = error.code === "42501" && REFUSED.test(error.message);
      const byReadOnly = entry.layer === "either" && error.code === "25006";
      if (!byPolicy && !byReadOnly) failures.push(`${what}: ${error.code} ${error.message}: ${entry.sql}`);
      return 0;
    };
    const attempt = (query: string | pg.QueryConfig) =>
      client.query(query).then(
        () => null,
        (error: Error & { code?: string }) => error,
      );
    for (const entry of CORPUS) {
      const sql = entry.sql.replace(" \\; ", "; ");
      expectRefused("simple", entry, await attempt(sql));
      // Extended protocol: the same statement as a Parse (one statement per Parse).
      if (!entry.onlyDriver && !sql.includes(";") && !/^\s*(PREPARE|EXECUTE)/i.test(sql))
        expectRefused(
          "extended",
          entry,
          await attempt({ text: sql, values: [], queryMode: "extended" } as pg.QueryConfig),
        );
    }
    // A named extended-protocol statement, with parameters.
    expectRefused(
      "named",
      { sql: "DELETE FROM accounts WHERE id = $1" },
      await attempt({ name: "del_named", text: "DELETE FROM accounts WHERE id = $1", values: [1] }),
    );
    expect(failures, failures.join("\n")).toEqual([]);

    // The session goes on, and an error inside a transaction block acts as PostgreSQL's own do.
    await client.query("BEGIN");
    expect((await attempt("DELETE FROM accounts WHERE id = 1"))?.code).toBe("42501");
    expect((await attempt("SELECT 1"))?.code).toBe("25P02");
    await client.query("ROLLBACK");
    expect((await client.query("SELECT count(*)::int AS n FROM accounts")).rows).toEqual([{ n: 5 }]);
    // The second layer is there: the login itself is read-only.
    expect((await client.query("SHOW default_transaction_read_only")).rows).toEqual([
      { default_transaction_read_only: "on" },
    ]);
    // The server reads strings as the policy's parser does, whatever the login's default: one string
    // here (with standard_conforming_strings off the server would end it at \' and run the DELETE).
    expect((await client.query("SELECT 'a\\'' ; DELETE FROM accounts; --' AS s")).rows).toEqual([
      { s: "a\\' ; DELETE FROM accounts; --" },
    ]);
    await client.end();

    const script = path.join(dir, "bypass.sql");
    // psql reads the rest of a script as COPY data after COPY … FROM STDIN fails (directly too): last.
    const fromStdin = (entry: Bypass) => /FROM STDIN/i.test(entry.sql);
    const psqlCorpus = [
      ...CORPUS.filter((entry) => !entry.onlyDriver && !fromStdin(entry)),
      ...CORPUS.filter((entry) => fromStdin(entry)),
    ];
    await writeFile(script, psqlScript(psqlCorpus.map((entry) => entry.sql)));
    const output = segments(await runPsql(proxyPort, `${USER}%${ROLE}`, await token(), script));
    psqlCorpus.forEach((entry, i) => {
      const text = output.get(i) ?? "(no output)";
      const ok =
        /ERROR:\s+42501: refused by Stint query policy \(rule [a-z_]+\)/.test(text) ||
        (entry.layer === "either" && /ERROR:\s+25006:/.test(text));
      if (!ok) failures.push(`psql: ${text.slice(0, 300)}: ${entry.sql}`);
    });
    expect(failures, failures.join("\n")).toEqual([]);

    expect(await snapshot()).toEqual(before);
  }, 60_000);

  it("the read corpus passes and returns the same rows as direct (node-postgres both protocols, psql)", async () => {
    const through = viaProxy(await token());
    const straight = direct();
    await through.connect();
    await straight.connect();
    const rowsOf = async (client: pg.Client, query: string | pg.QueryConfig) => {
      const result = (await client.query(query)) as pg.QueryResult | pg.QueryResult[];
      return Array.isArray(result) ? result.map((r) => r.rows) : result.rows;
    };
    for (const sql of READS) {
      expect(await rowsOf(through, sql), sql).toEqual(await rowsOf(straight, sql));
      if (!sql.includes(";")) {
        const extended = { text: sql, values: [], queryMode: "extended" } as pg.QueryConfig;
        expect(await rowsOf(through, extended), `extended: ${sql}`).toEqual(await rowsOf(straight, extended));
      }
    }
    // Parameters, named statements, PREPARE/EXECUTE and a cursor.
    for (const client of [through, straight]) {
      await client.query("PREPARE rich (int) AS SELECT owner FROM accounts WHERE balance > $1 ORDER BY owner");
    }
    const session = async (client: pg.Client) => [
      await rowsOf(client, { text: "SELECT owner FROM accounts WHERE id = $1", values: [3] }),
      await rowsOf(client, { name: "by_id", text: "SELECT owner FROM accounts WHERE id = $1", values: [2] }),
      await rowsOf(client, { name: "by_id", text: "SELECT owner FROM accounts WHERE id = $1", values: [4] }),
      await rowsOf(client, "EXECUTE rich(100)"),
      await rowsOf(client, "BEGIN READ ONLY"),
      await rowsOf(client, "DECLARE c CURSOR FOR SELECT id FROM accounts ORDER BY id"),
      await rowsOf(client, "FETCH 2 FROM c"),
      await rowsOf(client, "MOVE 1 IN c"),
      await rowsOf(client, "FETCH ALL FROM c"),
      await rowsOf(client, "CLOSE c"),
      await rowsOf(client, "COMMIT"),
      await rowsOf(client, "DEALLOCATE rich"),
    ];
    expect(await session(through)).toEqual(await session(straight));
    await through.end();
    await straight.end();

    const script = path.join(dir, "reads.sql");
    await writeFile(script, psqlScript([...READS, "COPY (SELECT * FROM accounts ORDER BY id) TO STDOUT"]));
    const [viaPsql, directPsql] = await Promise.all([
      runPsql(proxyPort, `${USER}%${ROLE}`, await token(), script),
      runPsql(MACHINE_PG.port, LOGIN, "unused", script, DIRECT_OPTIONS),
    ]);
    expect(viaPsql).not.toMatch(/ERROR/);
    expect(segments(viaPsql).size).toBe(READS.length + 1);
    expect(viaPsql).toBe(directPsql);
  }, 60_000);

  it("refusals are in the audit log and in the session's query log", async () => {
    const marker = `DELETE FROM accounts WHERE owner = 'audit-${HEX}'`;
    await refusedViaProxy(marker);

    const events = await refusalEvents();
    const mine = events.find((event) => JSON.stringify(event.details).includes(`audit-${HEX}`));
    expect(mine, `${events.length} refusal events`).toBeDefined();
    expect(mine!.outcome).toBe("denied");
    expect(mine!.details).toMatchObject({ rule: "statement_kind", protocol: "simple", statement: marker });
    expect(mine!.reason).toMatch(/DELETE needs dml/);

    // The session's recording holds the statement with the refusal as its result.
    let recordingKey: string | null = null;
    for (let i = 0; i < 200 && recordingKey === null; i++) {
      const ended = await h.server.store.db
        .selectFrom("audit_events")
        .selectAll()
        .where("action", "=", "session.ended")
        .where("subject", "=", mine!.subject)
        .executeTakeFirst();
      recordingKey = (ended?.details as { recording?: { key: string } } | undefined)?.recording?.key ?? null;
      if (recordingKey === null) await sleep(25);
    }
    expect(recordingKey).not.toBeNull();
    const recording = parseRecording(readFileSync(path.join(h.server.config.blobDir, recordingKey!), "utf8"));
    if (recording.kind !== "postgres") throw new Error("not a query log");
    expect(recording.queries).toContainEqual(
      expect.objectContaining({
        statement: marker,
        error: expect.stringMatching(/^42501: refused by Stint query policy \(rule statement_kind\)/) as unknown,
      }),
    );
  }, 30_000);

  it("a refused statement carrying a password is audited without it (the audit log feeds the SIEM)", async () => {
    const secret = `Pw-${HEX}-never-in-audit`;
    const statement = `ALTER ROLE ${LOGIN} PASSWORD '${secret}'`;
    await refusedViaProxy(statement);

    const events = await refusalEvents();
    const mine = events.find((event) => JSON.stringify(event.details).includes(`ALTER ROLE ${LOGIN} PASSWORD`));
    expect(mine, `${events.length} refusal events`).toBeDefined();
    expect(mine!.details).toMatchObject({ statement: `ALTER ROLE ${LOGIN} PASSWORD '<redacted>'` });
    expect(JSON.stringify(events)).not.toContain(secret);
  }, 30_000);

  it("maxRows: a longer result is cut after 100 rows with 54000 (both protocols, COPY out), a shorter one passes, the session goes on, audited", async () => {
    const client = viaProxy(await token());
    await client.connect();
    const rowsSeen: number[] = [];
    for (const query of [
      { text: "SELECT g FROM generate_series(1, 1000) AS g" },
      { text: "SELECT g FROM generate_series(1, $1::int) AS g", values: [1000] },
    ]) {
      // node-postgres rejects the query when the error comes; the rows before it reach the row event.
      let seen = 0;
      const submitted = client.query(new pg.Query(query));
      submitted.on("row", () => (seen += 1));
      const error = await new Promise<Error & { code?: string }>((resolve, reject) => {
        submitted.on("error", resolve);
        submitted.on("end", () => reject(new Error(`the ${seen}-row result was not cut`)));
      });
      expect(error.code).toBe("54000");
      expect(error.message).toMatch(/rule max_rows\): more than 100 rows; only the first 100 were sent/);
      rowsSeen.push(seen);
    }
    expect(rowsSeen).toEqual([100, 100]);
    // A result within the limit passes unchanged, and the session goes on after the cut.
    const small = await client.query("SELECT g FROM generate_series(1, 50) AS g");
    expect(small.rows.map((row: { g: number }) => row.g)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const exact = await client.query({ text: "SELECT g FROM generate_series(1, $1::int) AS g", values: [100] });
    expect(exact.rowCount).toBe(100);
    await client.end();

    // COPY … TO STDOUT lines count as rows (psql: the first 100 lines, then the error, then the next statement).
    const script = path.join(dir, "max-rows.sql");
    await writeFile(
      script,
      psqlScript(["COPY (SELECT g FROM generate_series(1, 1000) g) TO STDOUT", "SELECT 'after'"]),
    );
    const output = segments(await runPsql(proxyPort, `${USER}%${ROLE}`, await token(), script));
    const lines = (output.get(0) ?? "").split("\n");
    expect(lines.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => String(i + 1)));
    expect(lines[100]).toMatch(/ERROR:\s+54000: result cut by Stint query policy \(rule max_rows\)/);
    expect(output.get(1)?.trim()).toBe("after");

    const events = await refusalEvents();
    const cuts = events.filter((event) => (event.details as { rule?: string }).rule === "max_rows");
    expect(cuts.length).toBeGreaterThanOrEqual(2);
    expect(cuts[0]!.details).toMatchObject({ rule: "max_rows", protocol: "result" });
    expect(cuts[0]!.reason).toBe("the result has more than 100 rows");
  }, 30_000);
});
