/**
 * The tests' pools of databases (pglite-pool.ts, pg-pool.ts): a store handed out again must be the migrated
 * template as a new copy is, whatever the test before did to its rows, sequences, session and listeners; one whose
 * schema a test changed is never handed out again; on PostgreSQL, what the test before left connected reaches
 * nothing of the next test's.
 */
import { describe, expect, it } from "vitest";
import { sql } from "kysely";
import pg from "pg";
import { ENGINES, freshStore, type TestStore } from "./engines.js";
import { counts } from "./pglite-pool.js";
import { pgCounts } from "./pg-pool.js";
import type { Engine } from "../lib/db.js";

const poolCounts = (engine: Engine) =>
  engine === "pglite" ? { ...counts } : { ...pgCounts, cloned: pgCounts.created };

/** Every user table's row count and the rows of the tables the template fills, as one comparable text. */
async function contents(store: TestStore["store"]): Promise<string> {
  const { rows } = await sql<{ summary: string }>`
    select string_agg(format('%s=%s', c.relname,
             (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %I.%I', n.nspname, c.relname),
                                                   false, true, '')))[1]::text), ',' order by c.relname) as summary
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind = 'r' and n.nspname = 'public'`.execute(store.db);
  const head = await sql<{ head: string }>`select (select json_agg(h)::text from audit_head h) ||
      (select json_agg(s)::text from audit_sequencer s) as head`.execute(store.db);
  return `${rows[0]?.summary ?? ""} ${head.rows[0]?.head ?? ""}`;
}

describe.each(ENGINES)("the tests' pool of databases on %s", (engine: Engine) => {
  it("hands out a used instance again only as the template left it: rows, sequences, session and listeners", async () => {
    const first = await freshStore(engine);
    const template = await contents(first.store);
    // What a test leaves behind: rows in many tables, the template's rows changed, a setting, a lock, a listener.
    await sql`insert into schema_migrations (name) values ('9999_left_behind.sql')`.execute(first.store.db);
    await sql`update audit_head set seq = seq + 1000, hash = repeat('f', 64)`.execute(first.store.db);
    await sql`delete from audit_sequencer`.execute(first.store.db);
    await sql`set statement_timeout = 1234`.execute(first.store.db);
    await sql`select pg_advisory_lock(424242)`.execute(first.store.db);
    const heard: string[] = [];
    await first.store.listen("pool_probe", (payload) => heard.push(payload));
    expect(await contents(first.store)).not.toBe(template);
    await first.cleanup();

    const before = poolCounts(engine);
    const second = await freshStore(engine);
    try {
      expect(poolCounts(engine).reused, "the second store is the first one's database, reset").toBe(before.reused + 1);
      expect(await contents(second.store)).toBe(template);
      const timeout = await sql<{ t: string }>`select current_setting('statement_timeout') as t`.execute(
        second.store.db,
      );
      expect(timeout.rows[0]?.t).toBe("0");
      const locks = await sql<{
        n: number;
      }>`select count(*)::int as n from pg_locks where locktype = 'advisory'`.execute(second.store.db);
      expect(locks.rows[0]?.n).toBe(0);
      const mine: string[] = [];
      await second.store.listen("pool_probe", (payload) => mine.push(payload));
      await sql`select pg_notify('pool_probe', 'to the second store')`.execute(second.store.db);
      for (let i = 0; i < 100 && mine.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(mine).toEqual(["to the second store"]);
      expect(heard, "the first store's listener, left behind, hears nothing of the second").toEqual([]);
    } finally {
      await second.cleanup();
    }
  });

  it("never hands out again an instance whose schema a test changed", async () => {
    const first = await freshStore(engine);
    await sql`create function pool_refuse() returns trigger language plpgsql as $$ begin raise exception 'no'; end $$`.execute(
      first.store.db,
    );
    await sql`create trigger pool_refuse before insert on schema_migrations for each row execute function pool_refuse()`.execute(
      first.store.db,
    );
    const before = poolCounts(engine);
    await first.cleanup();
    expect(poolCounts(engine).discarded).toBe(before.discarded + 1);

    const second = await freshStore(engine);
    try {
      const triggers = await sql<{
        n: number;
      }>`select count(*)::int as n from pg_trigger where tgname = 'pool_refuse'`.execute(second.store.db);
      expect(triggers.rows[0]?.n).toBe(0);
      await sql`insert into schema_migrations (name) values ('9999_allowed.sql')`.execute(second.store.db);
    } finally {
      await second.cleanup();
    }
  });

  it.runIf(engine === "postgres")(
    "cuts what the test before left connected, and its database's old name leads nowhere",
    async () => {
      const first = await freshStore(engine);
      const leftOpen = new pg.Client({ connectionString: first.url });
      const errors: Error[] = [];
      leftOpen.on("error", (error) => errors.push(error));
      await leftOpen.connect();
      await first.cleanup();
      const second = await freshStore(engine);
      try {
        await expect(leftOpen.query("select 1")).rejects.toThrow();
        const again = new pg.Client({ connectionString: first.url });
        await expect(again.connect()).rejects.toThrow(/does not exist/);
        await again.end().catch(() => undefined);
        expect(second.url).not.toBe(first.url);
      } finally {
        await leftOpen.end().catch(() => undefined);
        await second.cleanup();
      }
    },
  );
});
