import { fileURLToPath } from "node:url";
import type { Transaction } from "kysely";
import { openStore, type Store, type StoreOptions } from "../lib/db.js";
import type { Database } from "./schema.js";

export type { Database } from "./schema.js";
export type AppStore = Store<Database>;
export type Tx = Transaction<Database>;

/** The committed SQL migrations, next to the package root (works from src/ and dist/). */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations", import.meta.url));

export async function openAppStore(options: StoreOptions): Promise<AppStore> {
  return openStore<Database>(options);
}
