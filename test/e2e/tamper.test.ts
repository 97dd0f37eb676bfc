/**
 * Acceptance: an audit row changed or deleted with raw SQL makes
 * `stint audit verify` name that seq and exit non-zero — on both engines.
 * And (issue 12, finding 7) a database writer who re-chains what they edit, or cuts the tail off, is
 * found by `stint audit verify --anchor FILE` with the anchor file the operator shipped off the machine.
 */
import { afterEach, describe, expect, it } from "vitest";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { createPgDatabase } from "../../src/testing/engines.js";
import { rewriteReason, truncateAfter, type Query } from "../../src/testing/audit-writer.js";
import {
  assertBuilt,
  call,
  cli,
  freePort,
  login,
  seedDataDir,
  start,
  waitForHealth,
  type RunningProcess,
} from "./support.js";

const ADMIN_PASSWORD = "tamper-test-root-password";

/**
 * The events the checks below verify, tamper with and cut: `count` users created over the API (one CLI process
 * each cost ~0.45 s of CPU for nothing these tests check; what they check runs through the CLI).
 */
async function createUsers(url: string, prefix: string, count: number): Promise<void> {
  const admin = await login(url, "admin", ADMIN_PASSWORD);
  for (let i = 0; i < count; i++) {
    const created = await call(url, "POST", "/v1/users", admin, { name: `${prefix}${i}`, email: `u${i}@example.com` });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  }
}

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
      await seedDataDir(path.join(work, "data"));
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
    await createUsers(url, "tamper-u", 8);
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

describe.each<Engine>(["pglite", "postgres"])(
  "rewritable audit log by a database writer via the CLI on %s",
  (engine) => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
      cleanups.length = 0;
    });

    it("stint audit verify --anchor exits 3 on a re-chained edit and on a cut tail (finding 7)", async () => {
      assertBuilt();
      const work = mkdtempSync(path.join(tmpdir(), "stint-anchor-"));
      cleanups.push(async () => rmSync(work, { recursive: true, force: true }));
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const anchorFile = path.join(work, "audit-anchor.json");
      const serverEnv: NodeJS.ProcessEnv = {
        STINT_LISTEN: `127.0.0.1:${port}`,
        STINT_DATA_DIR: path.join(work, "data"),
        STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
        STINT_LOG_LEVEL: "warn",
        STINT_AUDIT_ANCHOR_FILE: anchorFile,
        STINT_AUDIT_ANCHOR_INTERVAL: "1s",
      };
      let query: Query;
      if (engine === "postgres") {
        const database = await createPgDatabase();
        cleanups.push(database.drop);
        serverEnv.STINT_DATABASE_URL = database.url;
        const client = new pg.Client({ connectionString: database.url });
        await client.connect();
        cleanups.push(() => client.end());
        query = async (text, params = []) => (await client.query(text, params)).rows as Record<string, unknown>[];
      } else {
        await seedDataDir(path.join(work, "data"));
        query = async () => {
          throw new Error("PGlite: use attack()");
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
      // PGlite is single-process: the server is stopped while the attacker edits its files.
      const attack = async (edit: (q: Query) => Promise<void>) => {
        if (engine === "postgres") {
          // A careful writer holds the head while rewriting, so the running node signs only the finished forgery.
          await query("begin");
          await query("select seq from audit_head where id = 1 for update");
          await edit(query);
          await query("commit");
          return;
        }
        await server!.kill("SIGTERM");
        const db = await PGlite.create(path.join(work, "data", "db"));
        await edit(async (text, params = []) => (await db.query<Record<string, unknown>>(text, params)).rows);
        await db.close();
        await boot();
      };

      const env = { STINT_CONFIG_DIR: path.join(work, "cli"), STINT_SERVER: url };
      expect(
        (await cli(["login", "--user", "admin", "--password-stdin"], { env, input: `${ADMIN_PASSWORD}\n` })).code,
      ).toBe(0);
      await createUsers(url, "anchor-u", 6);
      const head = (await cli(["audit", "verify", "--json"], { env })).stdout;
      const headSeq = (JSON.parse(head) as { headSeq: number }).headSeq;
      // The node signs the head within a second and rewrites the file; the operator ships a copy.
      const deadline = Date.now() + 30_000;
      while ((JSON.parse(readFileSync(anchorFile, "utf8")) as { seq: number }).seq < headSeq) {
        if (Date.now() > deadline) throw new Error("the anchor file never reached the head");
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const shipped = path.join(work, "shipped-anchor.json");
      copyFileSync(anchorFile, shipped);
      const anchoredSeq = (JSON.parse(readFileSync(shipped, "utf8")) as { seq: number }).seq;

      // An auditor can also pull it over the API: the same signed head, or a newer one.
      const pulled = path.join(work, "pulled-anchor.json");
      expect((await cli(["audit", "anchor", "--output", pulled], { env })).code).toBe(0);
      expect((JSON.parse(readFileSync(pulled, "utf8")) as { seq: number }).seq).toBeGreaterThanOrEqual(anchoredSeq);
      expect((await cli(["audit", "verify", "--anchor", pulled], { env })).code).toBe(0);

      const clean = await cli(["audit", "verify", "--anchor", shipped], { env });
      expect(clean.code).toBe(0);
      expect(clean.stdout).toMatch(new RegExp(`anchored at seq ${anchoredSeq}\\b`));

      // The log is shorter than one checkpoint interval: inside the database the rewrite is consistent.
      await attack(async (q) => {
        await q("delete from audit_checkpoints");
        await rewriteReason(q, 6, "it was never here");
      });
      expect((await cli(["audit", "verify"], { env })).code).toBe(0);
      const rewritten = await cli(["audit", "verify", "--anchor", shipped], { env });
      expect(rewritten.code).toBe(3);
      expect(rewritten.stdout).toMatch(new RegExp(`BROKEN at seq ${anchoredSeq}: .*anchored head`));

      await attack(async (q) => {
        await rewriteReason(q, 6, null);
        await truncateAfter(q, 4);
      });
      const cut = await cli(["audit", "verify", "--anchor", shipped, "--json"], { env });
      expect(cut.code).toBe(3);
      expect(JSON.parse(cut.stdout)).toMatchObject({ ok: false, brokenSeq: 5 });
      expect((JSON.parse(cut.stdout) as { problem: string }).problem).toMatch(/events were removed since the anchor/);
    });
  },
);
