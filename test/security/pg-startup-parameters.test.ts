/**
 * Class: the client steering the upstream session (issue 12, finding 10).
 *
 * Through the PostgreSQL proxy a user reaches one database as the target's session login, with the
 * settings the database gives that login. The startup packet is the client's: it must not pick
 * another database, and must not pass settings the server applies before any check of ours
 * (`options=-c role=…`, or any setting sent as a startup parameter). Real server, real proxy, real
 * cluster (TLS + SCRAM), real drivers: node-postgres and postgres.js (which sends any parameter given).
 */
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";

describe("client-chosen upstream database and startup parameters (finding 10)", () => {
  let pgh: PgProxyHarness;

  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "optional", targetOptions: "\n      databases: [otherdb]" });
    // What the database gives the session login: read-only transactions, unless it can override that.
    await pgh.admin.query(`ALTER ROLE ${pgh.login} SET default_transaction_read_only = on`);
  });

  afterAll(async () => {
    await pgh?.close();
  });

  async function settingsVia(config: pg.ClientConfig) {
    const client = new pg.Client(config);
    client.on("error", () => {});
    await client.connect();
    try {
      const { rows } = await client.query<Record<string, string>>(
        `SELECT current_database() AS database, current_user AS "user", current_setting('default_transaction_read_only') AS ro,
                current_setting('application_name') AS app, current_setting('search_path') AS path`,
      );
      return rows[0]!;
    } finally {
      await client.end();
    }
  }

  it("the database is the target's; another one is refused unless the target lists it", async () => {
    const token = await pgh.token();
    // No database given (libpq then asks for one named like the user): the target's.
    expect((await settingsVia(pgh.clientConfig(token, { database: `${pgh.user}%${pgh.role}` }))).database).toBe(
      pgh.database,
    );
    // The maintenance database (or any other) is not the client's choice.
    const refused = await settingsVia(pgh.clientConfig(token, { database: "postgres" })).then(
      () => null,
      (error: Error) => error,
    );
    expect(refused?.message).toMatch(/reaches only the database appdb .*not postgres/);
    // A database the target allows in options.databases.
    expect((await settingsVia(pgh.clientConfig(token, { database: "otherdb" }))).database).toBe("otherdb");
  });

  it("options=-c … is refused; allowed parameters pass", async () => {
    const token = await pgh.token();
    for (const options of ["-c role=postgres", "-c default_transaction_read_only=off"]) {
      const refused = await settingsVia(pgh.clientConfig(token, { options })).then(
        () => null,
        (error: Error) => error,
      );
      expect(refused?.message, options).toContain("does not pass on the options startup parameter");
    }
    const seen = await settingsVia(pgh.clientConfig(token, { application_name: "psql-ann" }));
    expect(seen).toMatchObject({ user: pgh.login, ro: "on", app: "psql-ann" });
  });

  it("a setting sent as a startup parameter does not reach the server (postgres.js sends any)", async () => {
    const token = await pgh.token();
    const sql = postgres({
      host: "127.0.0.1",
      port: pgh.proxyPort,
      user: `${pgh.user}%${pgh.role}`,
      password: token,
      database: pgh.database,
      max: 1,
      // Sent as startup parameters as given (the typings know only some names).
      connection: {
        default_transaction_read_only: "off",
        role: "postgres",
        session_authorization: "postgres",
        search_path: "pg_catalog, public",
      } as unknown as postgres.ConnectionParameters,
      onnotice: () => {},
    });
    try {
      const [row] = await sql`
        SELECT current_user AS "user", current_setting('default_transaction_read_only') AS ro,
               current_setting('search_path') AS path`;
      // The role's own setting stands; search_path is on the allow-list and passes.
      expect(row).toEqual({ user: pgh.login, ro: "on", path: "pg_catalog, public" });
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});
