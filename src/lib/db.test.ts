import { afterEach, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { ENGINES, freshStore, type TestStore } from "../testing/engines.js";
import { migrate, PREPARED } from "./db.js";
import { MIGRATIONS_DIR } from "../db/index.js";

describe.each(ENGINES)("store on %s", (engine) => {
  let t: TestStore | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it("applies the migrations once and records them", async () => {
    t = await freshStore(engine);
    const again = await t.store.migrate(MIGRATIONS_DIR);
    expect(again).toEqual([]);
    const rows = await t.store.db.selectFrom("audit_head").selectAll().execute();
    expect(rows).toEqual([{ id: 1, seq: 0, hash: "0".repeat(64) }]);
  });

  it("two nodes migrating at once apply each file exactly once", async () => {
    t = await freshStore(engine, { migrate: false });
    const [a, b] = await Promise.all([migrate(t.store.db, MIGRATIONS_DIR), migrate(t.store.db, MIGRATIONS_DIR)]);
    expect([...a, ...b].sort()).toEqual([...new Set([...a, ...b])].sort());
    expect(a.length + b.length).toBeGreaterThan(0);
    const applied = await sql<{ n: number }>`select count(*)::int as n from schema_migrations`.execute(t.store.db);
    expect(applied.rows[0]?.n).toBe(a.length + b.length);
  });

  it("delivers a NOTIFY to listeners when its transaction commits, never when it rolls back", async () => {
    t = await freshStore(engine);
    const got: string[] = [];
    const arrived = new Promise<void>((resolve) => {
      void t!.store.listen("stint_test_bus", (payload) => {
        got.push(payload);
        if (payload === "committed") resolve();
      });
    });
    // Give the dedicated PostgreSQL connection a moment to LISTEN before anything is sent.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(
      t.store.transaction(async (tx) => {
        await sql`select pg_notify('stint_test_bus', 'rolled back')`.execute(tx);
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    await t.store.transaction(async (tx) => {
      await sql`select pg_notify('stint_test_bus', 'committed')`.execute(tx);
    });
    await arrived;
    expect(got).toEqual(["committed"]);
    await expect(t.store.listen("bad name; drop", () => undefined)).rejects.toThrow(/channel/);
  });

  it("commits a transaction as a whole and rolls back as a whole", async () => {
    t = await freshStore(engine);
    const now = new Date();
    const insert = (tx: Parameters<Parameters<TestStore["store"]["transaction"]>[0]>[0], name: string) =>
      tx.insertInto("groups").values({ id: crypto.randomUUID(), name, created_at: now }).execute();
    await t.store.transaction(async (tx) => {
      await insert(tx, "a");
      await insert(tx, "b");
    });
    await expect(
      t.store.transaction(async (tx) => {
        await insert(tx, "c");
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    await expect(
      t.store.transaction(async (tx) => {
        await insert(tx, "d");
        await insert(tx, "a"); // unique violation
      }),
    ).rejects.toThrow();
    const names = (await t.store.db.selectFrom("groups").select("name").orderBy("name").execute()).map((r) => r.name);
    expect(names).toEqual(["a", "b"]);
  });

  it("serializes concurrent transactions without losing updates", async () => {
    t = await freshStore(engine);
    const store = t.store;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        store.transaction(async (tx) => {
          const head = await tx.selectFrom("audit_head").select("seq").forUpdate().executeTakeFirstOrThrow();
          await tx
            .updateTable("audit_head")
            .set({ seq: head.seq + 1 })
            .execute();
        }),
      ),
    );
    const head = await store.db.selectFrom("audit_head").select("seq").executeTakeFirstOrThrow();
    expect(head.seq).toBe(20);
  });

  it("returns bigint and timestamptz columns with the same types on both engines", async () => {
    t = await freshStore(engine);
    const row = await sql<{ big: number; at: Date }>`select 9007199254740::bigint as big, now() as at`.execute(
      t.store.db,
    );
    expect(row.rows[0]?.big).toBe(9007199254740);
    expect(row.rows[0]?.at).toBeInstanceOf(Date);
  });

  it("prepares a statement marked PREPARED once per connection (PostgreSQL), and answers it the same", async () => {
    t = await freshStore(engine);
    const prepared = await t.store.transaction(async (tx) => {
      const answers: number[] = [];
      for (const n of [1, 2, 3]) {
        const marked = await sql<{ n: number }>`select ${sql.raw(PREPARED)} ${n}::int + 1 as n`.execute(tx);
        const plain = await sql<{ n: number }>`select ${n}::int + 2 as n`.execute(tx);
        answers.push(marked.rows[0]!.n, plain.rows[0]!.n);
      }
      expect(answers).toEqual([2, 3, 3, 4, 4, 5]);
      if (engine !== "postgres") return [];
      const { rows } = await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(tx);
      return rows.map((row) => row.statement);
    });
    if (engine === "postgres") expect(prepared).toEqual([`select ${PREPARED} $1::int + 1 as n`]);
  });
});
