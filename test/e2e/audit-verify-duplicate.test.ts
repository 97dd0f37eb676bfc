/**
 * `stint audit verify` against a log a database writer doctored without breaking a single hash: the primary key on
 * seq dropped and an exact copy of an event inserted, on the edge of verify's pages (its last event, then the first
 * one past it), and one event removed there. The CLI names the seq and exits 3, on both engines.
 */
import { sql } from "kysely";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VERIFY_PAGE } from "../../src/modules/audit/audit.store.js";
import type { Actor } from "../../src/modules/authz/authz.types.js";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { ENGINES } from "../../src/testing/engines.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { injectFetch } from "./inject-fetch.js";

const writer: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-0000000a11ce",
  name: "writer",
  principalKind: "user",
  roles: [],
};

describe.each(ENGINES)("stint audit verify names a duplicated or removed seq at a page edge on %s", (engine) => {
  let server: TestServer;
  let dir: string;

  beforeAll(async () => {
    server = await testServer(engine);
    dir = await mkdtemp(path.join(tmpdir(), "stint-verify-dup-"));
    // Past one of verify's pages.
    for (let n = 0; n <= VERIFY_PAGE; n += 500)
      await server.audit.record(
        writer,
        { correlationId: "dup", sourceIp: null, userAgent: null },
        Array.from({ length: 500 }, (_, k) => ({
          action: "x.fill",
          outcome: "success" as const,
          details: { n: n + k },
        })),
      );
    await server.audit.catchUp();
    await sql`alter table audit_events drop constraint audit_events_pkey`.execute(server.store.db);
    await sql`alter table audit_events drop constraint audit_events_id_key`.execute(server.store.db);
  });
  afterAll(async () => {
    await server?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const verify = () =>
    runCliCaptured(["audit", "verify"], {
      env: {
        STINT_CONFIG_DIR: dir,
        HOME: dir,
        STINT_SERVER: "http://stint.test",
        STINT_TOKEN: server.adminAuth.replace(/^Bearer /, ""),
      },
      fetch: injectFetch(() => server.app),
    });
  const run = (statement: string) => sql.raw(statement).execute(server.store.db);

  it("says which seq has a second row, and which one is missing, and exits 3", async () => {
    const clean = await verify();
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(/^OK: \d+ events verified/);
    for (const seq of [VERIFY_PAGE, VERIFY_PAGE + 1]) {
      await run(`insert into audit_events select * from audit_events where seq = ${seq}`);
      const doubled = await verify();
      expect(doubled.stdout).toBe(`BROKEN at seq ${seq}: event ${seq} is duplicated: a second row has seq ${seq}\n`);
      expect(doubled.code).toBe(3);
      await run(`delete from audit_events where ctid in (select ctid from audit_events where seq = ${seq} limit 1)`);
      expect((await verify()).code).toBe(0);
    }
    await run(`delete from audit_events where seq = ${VERIFY_PAGE}`);
    const removed = await verify();
    expect(removed.stdout).toBe(`BROKEN at seq ${VERIFY_PAGE}: event ${VERIFY_PAGE} is missing\n`);
    expect(removed.code).toBe(3);
  });
});
