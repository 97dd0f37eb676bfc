/**
 * Acceptance: an audit row changed or deleted with raw SQL makes
 * `stint audit verify` name that seq and exit non-zero — on both engines.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { createPgDatabase } from "../../src/testing/engines.js";
import { assertBuilt, cli, freePort, start, waitForHealth, type RunningProcess } from "./support.js";

const ADMIN_PASSWORD = "tamper-test-admin-password";

type Engine = "pglite" | "postgres";

describe.each<Engine>(["pglite", "postgres"])("audit verify after tampering on %s", (engine) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
  });

  it("names the changed seq, then the deleted seq, and exits 3", async () => {
    assertBuilt();
    const work = mkdtempSync(path.join(tmpdir(), "stint-tamper-"));
    cleanups.push(async () => rmSync(work, { recursive: true, force: true }));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const serverEnv: NodeJS.ProcessEnv = {
      STINT_LISTEN: `127.0.0.1:${port}`,
      STINT_DATA_DIR: path.join(work, "data"),
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_LOG_LEVEL: "warn",
    };
    let sqlExec: (text: string) => Promise<void>;
    if (engine === "postgres") {
      const database = await createPgDatabase();
      cleanups.push(database.drop);
      serverEnv.STINT_DATABASE_URL = database.url;
      sqlExec = async (text) => {
        const client = new pg.Client({ connectionString: database.url });
        await client.connect();
        await client.query(text);
        await client.end();
      };
    } else {
      // PGlite is single-process: the server must be stopped while we edit its files.
      sqlExec = async (text) => {
        const db = await PGlite.create(path.join(work, "data", "db"));
        await db.exec(text);
        await db.close();
      };
    }

    let server: RunningProcess | undefined;
    const boot = async () => {
      server = start(process.execPath, ["bin/stint.js", "server"], { env: serverEnv });
      cleanups.push(() => server!.kill("SIGKILL"));
      await waitForHealth(url, 30_000);
      await server.waitFor(/Stint is listening/, 120_000);
    };
    await boot();

    const env = { STINT_CONFIG_DIR: path.join(work, "cli"), STINT_SERVER: url };
    expect(
      (await cli(["login", "--user", "admin", "--password-stdin"], { env, input: `${ADMIN_PASSWORD}\n` })).code,
    ).toBe(0);
    for (let i = 0; i < 8; i++) {
      const created = await cli(["users", "create", `tamper-u${i}`, "--email", `u${i}@example.com`], { env });
      expect(created.code).toBe(0);
    }
    const clean = await cli(["audit", "verify"], { env });
    expect(clean.code).toBe(0);
    const count = Number(/OK: (\d+) events verified/.exec(clean.stdout)?.[1]);
    expect(count).toBeGreaterThanOrEqual(10);

    const alter = async (statement: string) => {
      if (engine === "pglite") {
        await server!.kill("SIGTERM");
        await sqlExec(statement);
        await boot();
      } else {
        await sqlExec(statement);
      }
    };

    await alter(`update audit_events set reason = 'it was never here' where seq = 6`);
    const changed = await cli(["audit", "verify"], { env });
    expect(changed.code).toBe(3);
    expect(changed.stdout + changed.stderr).toMatch(/BROKEN at seq 6\b/);

    await alter(`update audit_events set reason = null where seq = 6; delete from audit_events where seq = 4`);
    const deleted = await cli(["audit", "verify", "--json"], { env });
    expect(deleted.code).toBe(3);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ ok: false, brokenSeq: 4 });
  });
});
