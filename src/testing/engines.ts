/**
 * Test support: a fresh, migrated store on each engine. PostgreSQL gets a new
 * database per call (127.0.0.1:5432, user postgres), dropped on cleanup.
 */
import pg from "pg";
import { randomBytes } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import { openAppStore, MIGRATIONS_DIR, type AppStore, type Database } from "../db/index.js";
import { PGLITE_PARSERS, migrate, storeOverPglite, type Engine } from "../lib/db.js";

export const ENGINES: Engine[] = ["pglite", "postgres"];
export const PG_ADMIN_URL = process.env.STINT_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export async function createPgDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `stint_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

export interface TestStore {
  store: AppStore;
  url?: string;
  cleanup: () => Promise<void>;
}

export async function freshStore(engine: Engine, options: { migrate?: boolean } = {}): Promise<TestStore> {
  if (engine === "pglite") {
    if (options.migrate === false) {
      const store = await openAppStore({ dataDir: "memory://" });
      return { store, cleanup: () => store.close() };
    }
    // Cloning a migrated in-memory template is several times faster than creating and migrating anew.
    const template = await pgliteTemplate();
    const store = storeOverPglite<Database>((await template.clone()) as PGlite);
    return { store, cleanup: () => store.close() };
  }
  const database = await createPgDatabase();
  const store = await openAppStore({ databaseUrl: database.url });
  if (options.migrate !== false) await store.migrate(MIGRATIONS_DIR);
  return {
    store,
    url: database.url,
    cleanup: async () => {
      await store.close();
      await database.drop();
    },
  };
}

let template: Promise<PGlite> | undefined;

/** One migrated, never-written PGlite per test process, cloned for each fresh store. */
function pgliteTemplate(): Promise<PGlite> {
  template ??= (async () => {
    const pglite = await PGlite.create(undefined, { parsers: PGLITE_PARSERS });
    await migrate(storeOverPglite<Database>(pglite).db, MIGRATIONS_DIR);
    return pglite;
  })();
  return template;
}
