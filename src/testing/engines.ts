/**
 * Test support: a fresh, migrated store on each engine. PostgreSQL gets a new
 * database per call (127.0.0.1:5432, user postgres), dropped on cleanup.
 */
import pg from "pg";
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { openAppStore, MIGRATIONS_DIR, type AppStore, type Database } from "../db/index.js";
import { PGLITE_PARSERS, migrate, storeOverPglite, type Engine } from "../lib/db.js";

export const ENGINES: Engine[] = ["pglite", "postgres"];
export const PG_ADMIN_URL = process.env.STINT_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export async function createPgDatabase(
  options: { template?: string } = {},
): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `stint_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`create database ${name}${options.template ? ` template ${options.template}` : ""}`);
  } finally {
    await admin.end();
  }
  return {
    url: databaseUrl(name),
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

function databaseUrl(name: string): string {
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

let migrationsKey: Promise<string> | undefined;

/** What a migrated template depends on: every migration's name and text, and PGlite's version. */
function templateKey(): Promise<string> {
  migrationsKey ??= (async () => {
    const hash = createHash("sha256");
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith(".sql")).sort();
    for (const file of files)
      hash
        .update(`${file}\0`)
        .update(await readFile(path.join(MIGRATIONS_DIR, file)))
        .update("\0");
    const pglite = JSON.parse(await readFile(path.join(pglitePackageDir(), "..", "package.json"), "utf8")) as {
      version: string;
    };
    return hash.update(pglite.version).digest("hex").slice(0, 16);
  })();
  return migrationsKey;
}

let pgTemplate: Promise<string> | undefined;

/**
 * A migrated PostgreSQL database that fresh test databases are copied from (CREATE DATABASE … TEMPLATE), made
 * once per set of migrations on this server and never connected to again: copying it is much cheaper than running
 * every migration for every test database. Its name carries the migrations' hash, so a changed migration gets a
 * new template; concurrent test processes each build under a private name and the first rename wins.
 */
function migratedPgTemplate(): Promise<string> {
  pgTemplate ??= (async () => {
    const name = `stint_template_${await templateKey()}`;
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    try {
      const exists = await admin.query("select 1 from pg_database where datname = $1", [name]);
      if (exists.rowCount) return name;
      const building = await createPgDatabase();
      const store = await openAppStore({ databaseUrl: building.url });
      try {
        await store.migrate(MIGRATIONS_DIR);
      } finally {
        await store.close();
      }
      const privateName = new URL(building.url).pathname.slice(1);
      await admin.query(`alter database ${privateName} with allow_connections false`);
      try {
        await admin.query(`alter database ${privateName} rename to ${name}`);
      } catch {
        // Another process renamed its copy first: use that one.
        await building.drop();
      }
      return name;
    } finally {
      await admin.end();
    }
  })();
  return pgTemplate;
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
    const store = storeOverPglite<Database>(await clonePgliteTemplate());
    return { store, cleanup: () => store.close() };
  }
  const database =
    options.migrate === false
      ? await createPgDatabase()
      : await createPgDatabase({ template: await migratedPgTemplate() });
  const store = await openAppStore({ databaseUrl: database.url });
  return {
    store,
    url: database.url,
    cleanup: async () => {
      await store.close();
      await database.drop();
    },
  };
}

interface PgliteTemplate {
  /** The migrated, never-written data directory, as PGlite dumps it (tar). */
  dump: File | Blob;
  /** PGlite's WebAssembly module and file-system bundle, compiled and read once per test process. */
  wasmModule: WebAssembly.Module;
  fsBundle: Blob;
}

let template: Promise<PgliteTemplate> | undefined;

function pglitePackageDir(): string {
  return path.dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
}

/**
 * One migrated, never-written PGlite data directory (a tar dump), shared by the test processes of this machine;
 * each fresh store loads it with the WebAssembly module compiled once per process (PGlite's own clone() dumps and
 * compiles again on every call: ~40% dearer).
 */
function pgliteTemplate(): Promise<PgliteTemplate> {
  template ??= (async () => {
    const dir = pglitePackageDir();
    const [wasm, bundle] = await Promise.all([
      readFile(path.join(dir, "pglite.wasm")),
      readFile(path.join(dir, "pglite.data")),
    ]);
    // The compiler's lib has WebAssembly's types but not its value (no DOM lib): reach it through globalThis.
    const { WebAssembly: wasmApi } = globalThis as unknown as {
      WebAssembly: { compile(bytes: Uint8Array): Promise<WebAssembly.Module> };
    };
    const wasmModule = await wasmApi.compile(wasm);
    const fsBundle = new Blob([bundle]);
    // Migrating takes seconds of CPU: done once per set of migrations on this machine, kept as a file that every
    // test process loads (written under a private name and renamed, so a reader never sees half a file).
    const file = path.join(tmpdir(), `stint-pglite-template-${await templateKey()}.tar`);
    const saved = await readFile(file).catch(() => undefined);
    if (saved) return { dump: new Blob([saved]), wasmModule, fsBundle };
    const pglite = await PGlite.create({ parsers: PGLITE_PARSERS, wasmModule, fsBundle });
    await migrate(storeOverPglite<Database>(pglite).db, MIGRATIONS_DIR);
    const dump = await pglite.dumpDataDir("none");
    await pglite.close();
    const partial = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
    await writeFile(partial, Buffer.from(await dump.arrayBuffer()));
    await rename(partial, file);
    return { dump, wasmModule, fsBundle };
  })();
  return template;
}

async function clonePgliteTemplate(): Promise<PGlite> {
  const { dump, wasmModule, fsBundle } = await pgliteTemplate();
  return PGlite.create({ parsers: PGLITE_PARSERS, loadDataDir: dump, wasmModule, fsBundle });
}
