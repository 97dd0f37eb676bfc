/**
 * The machine's one MariaDB server is shared by every test file that uses it, and
 * one test stops and restarts it (the revocation outage). Files that use MariaDB
 * hold this lock for their whole run, so none of them sees the outage by surprise.
 * The lock is a PostgreSQL advisory lock: it spans processes and dies with its holder.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { ADVISORY_LOCKS } from "../lib/advisory-locks.js";
import { PG_ADMIN_URL } from "./engines.js";

const run = promisify(execFile);

export const MARIADB_URL = "mysql://root@127.0.0.1:3306?sslmode=disable";

/** Waits for the lock; call the returned function to release it. */
export async function holdMariadb(): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL });
  await client.connect();
  await client.query("select pg_advisory_lock($1)", [ADVISORY_LOCKS.mariadbTests]);
  return async () => {
    await client.query("select pg_advisory_unlock($1)", [ADVISORY_LOCKS.mariadbTests]).catch(() => undefined);
    await client.end().catch(() => undefined);
  };
}

export async function mariadbAnswers(): Promise<boolean> {
  try {
    await run("mariadb-admin", ["-h", "127.0.0.1", "-u", "root", "ping"], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/** Stops the server (and waits until it no longer answers). */
export async function stopMariadb(): Promise<void> {
  await run("mariadb-admin", ["-h", "127.0.0.1", "-u", "root", "shutdown"], { timeout: 60_000 });
  for (let i = 0; i < 120 && (await mariadbAnswers()); i++) await new Promise((r) => setTimeout(r, 250));
}

/** Starts it with the command this machine uses, and waits until it answers. */
export async function startMariadb(): Promise<void> {
  await run("start-stop-daemon", ["--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"]);
  for (let i = 0; i < 240; i++) {
    if (await mariadbAnswers()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("MariaDB did not come back within 60 s");
}
