/**
 * Test support: a throwaway PostgreSQL 15 cluster that checks passwords (scram-sha-256 for TCP),
 * unlike the machine's server at 127.0.0.1:5432, which trusts every local connection. It lives in a
 * temp dir owned by the `postgres` OS user, listens on 127.0.0.1 at a free high port, and its
 * socket is in the temp dir. Needs Debian's postgresql-15 (/usr/lib/postgresql/15/bin) and root.
 *
 *   const instance = await startPostgres();   // instance.url: postgres://postgres@127.0.0.1:<port>/postgres
 *   new pg.Client({ host: "127.0.0.1", port: instance.port, user: "postgres", password: instance.adminPassword })
 *   (not { connectionString, password }: node-postgres lets the URL's empty password win)
 *   await instance.stop();                    // stops the server and removes the dir
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { superviseChild } from "./child-server.js";
import { chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
const BIN = process.env.STINT_TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export interface PostgresInstance {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`; the password is `adminPassword`, never in the URL. */
  url: string;
  port: number;
  /** The `postgres` superuser's password, random per instance. */
  adminPassword: string;
  /** Stops the server (fast shutdown: open sessions are ended) and removes its directory. */
  stop(): Promise<void>;
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startPostgres(): Promise<PostgresInstance> {
  const user = await postgresUser();
  const dir = await mkdtemp(join(tmpdir(), "stint-pg-"));
  try {
    await chown(dir, user.uid, user.gid);
    const data = join(dir, "data");
    const adminPassword = randomBytes(12).toString("hex");
    const pwfile = join(dir, "pwfile");
    await writeFile(pwfile, `${adminPassword}\n`, { mode: 0o600 });
    await chown(pwfile, user.uid, user.gid);
    // Spawned with the postgres uid/gid (as `runuser -u postgres` would), so the child is the server itself.
    await run(
      join(BIN, "initdb"),
      [
        "-D",
        data,
        "-U",
        "postgres",
        `--pwfile=${pwfile}`,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
      ],
      { uid: user.uid, gid: user.gid, cwd: dir, timeout: 60_000 },
    );
    await rm(pwfile);

    // A port can be taken between freePort() and the server's bind; try a few.
    for (let attempt = 1; ; attempt += 1) {
      const port = await freePort();
      const child = spawn(
        join(BIN, "postgres"),
        [
          "-D",
          data,
          "-p",
          String(port),
          "-k",
          dir,
          "-c",
          "listen_addresses=127.0.0.1",
          "-c",
          "fsync=off",
          "-c",
          "synchronous_commit=off",
          "-c",
          "full_page_writes=off",
          "-c",
          "password_encryption=scram-sha-256",
        ],
        { uid: user.uid, gid: user.gid, cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
      );
      // SIGINT is PostgreSQL's fast shutdown.
      const server = superviseChild(child, { dir, signal: "SIGINT", graceMs: 10_000 });
      const stopServer = () => server.stop();

      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      try {
        await waitForConnection(port, adminPassword, server.running, 30_000);
      } catch (error) {
        await stopServer();
        if (attempt < 3 && /could not bind|already in use/i.test(server.log())) continue;
        throw new Error(`postgres did not start: ${(error as Error).message}\n${server.log()}`);
      }
      return {
        url,
        port,
        adminPassword,
        stop: async () => {
          await stopServer();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function waitForConnection(port: number, password: string, running: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!running()) throw new Error("the server exited");
    const client = new pg.Client({
      host: "127.0.0.1",
      port,
      user: "postgres",
      database: "postgres",
      password,
      connectionTimeoutMillis: 2_000,
    });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    } finally {
      await client.end().catch(() => {});
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
