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
import { givePglite, takePglite } from "./pglite-pool.js";
import { givePgDatabase, takePgDatabase } from "./pg-pool.js";

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
    // The template's own recipe (settledDump) is part of what it depends on.
    return hash.update(`${pglite.version}\0settled-1`).digest("hex").slice(0, 16);
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
    // An instance put back as the template left it (pglite-pool.ts), else a clone of the migrated template: each
    // several times cheaper than the one after it, and than creating and migrating anew.
    const store = storeOverPglite<Database>(await takePglite(clonePgliteTemplate), undefined, givePglite);
    return { store, cleanup: () => store.close() };
  }
  if (options.migrate === false) {
    const database = await createPgDatabase();
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
  // A database given back by an earlier test and put back as the template left it (pg-pool.ts), else a new copy.
  const template = await migratedPgTemplate();
  const name = await takePgDatabase(PG_ADMIN_URL, databaseUrl, async () => {
    const created = await createPgDatabase({ template });
    return new URL(created.url).pathname.slice(1);
  });
  const url = databaseUrl(name);
  const store = await openAppStore({ databaseUrl: url });
  let given: Promise<void> | undefined;
  return {
    store,
    url,
    cleanup: async () => {
      await store.close();
      given ??= givePgDatabase(PG_ADMIN_URL, databaseUrl, name);
      await given;
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
    const dump = await settledDump(await pristineDump(pglite), wasmModule, fsBundle);
    const partial = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
    await writeFile(partial, Buffer.from(await dump.arrayBuffer()));
    await rename(partial, file);
    return { dump, wasmModule, fsBundle };
  })();
  return template;
}

/**
 * The migrated database as a smaller dump that starts faster: PGlite works in `template1` only, so `template0` and
 * `postgres` (half the files) go, and a CHECKPOINT leaves no WAL to replay at each start. Closes `pglite`.
 */
async function pristineDump(pglite: PGlite): Promise<File | Blob> {
  // One statement per call: DROP DATABASE refuses to run in the implicit transaction of a multi-statement string.
  for (const statement of [
    "update pg_database set datistemplate = false, datallowconn = false where datname = 'template0'",
    "drop database template0",
    "drop database postgres",
    "checkpoint",
  ])
    await pglite.exec(statement);
  const dump = await pglite.dumpDataDir("none");
  await pglite.close();
  return dump;
}

/**
 * The dump once started: the first start after the migrations' DDL writes the relation cache's init files
 * (pg_internal.init), which a clone would otherwise rebuild at every start. Measured on the 2-core machine: a clone
 * costs ~0.8–1.0 s of CPU from this dump where it cost ~1.2–2.3 s from the migrations' own.
 */
async function settledDump(dump: File | Blob, wasmModule: WebAssembly.Module, fsBundle: Blob): Promise<File | Blob> {
  const pglite = await PGlite.create({ parsers: PGLITE_PARSERS, loadDataDir: dump, wasmModule, fsBundle });
  await pglite.exec("select count(*) from pg_class");
  await pglite.exec("checkpoint");
  const settled = await pglite.dumpDataDir("none");
  await pglite.close();
  return settled;
}

async function clonePgliteTemplate(): Promise<PGlite> {
  const { dump, wasmModule, fsBundle } = await pgliteTemplate();
  return PGlite.create({ parsers: PGLITE_PARSERS, loadDataDir: dump, wasmModule, fsBundle });
}
