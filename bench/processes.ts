/**
 * Programs the benchmarks start beside Stint: running a command without blocking the event loop (the proxies under
 * test live in the bench's process) and Debian's pgbouncer as a peer.
 */
import { execFile, spawn } from "node:child_process";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { freePort, waitForPort } from "../src/testing/sshd.js";

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop; `onStderr` sees its stderr as it comes. */
export function exec(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; onStderr?: (text: string) => void } = {},
) {
  return new Promise<Ran>((resolve) => {
    const child = execFile(
      file,
      args,
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (options.onStderr) child.stderr?.on("data", (chunk: Buffer | string) => options.onStderr!(String(chunk)));
  });
}

/** `exec`, throwing (with the end of its stderr) when the program fails. */
export async function mustExec(what: string, file: string, args: string[], options: Parameters<typeof exec>[2] = {}) {
  const ran = await exec(file, args, options);
  if (ran.code !== 0) throw new Error(`${what} failed (exit ${ran.code}): ${ran.stderr.trim().slice(-800)}`);
  return ran;
}

/** Registers a cleanup the bench runs at its end. */
export type Defer = (what: string, run: () => Promise<unknown>) => void;

/**
 * Debian's pgbouncer (`binary`) on a free port in front of `database` at 127.0.0.1:`pgPort`, with `poolMode` and
 * `poolSize` server connections; config and logs in a temp dir, stopped and removed by `defer`'s cleanups. Throws
 * with the end of its log when it does not start.
 */
export async function startPgbouncer(spec: {
  binary: string;
  database: string;
  pgPort: number;
  poolMode: "session" | "transaction";
  poolSize: number;
  defer: Defer;
}): Promise<{ port: number; pid: number }> {
  const { binary, database, defer } = spec;
  const dir = await mkdtemp(path.join(os.tmpdir(), "stint-bench-pgbouncer-"));
  defer("remove the pgbouncer dir", () => rm(dir, { recursive: true, force: true }));
  // pgbouncer refuses to run as root: as root, run it as the postgres OS user (setpriv execs, so the pid is its own).
  let command = binary;
  let prefix: string[] = [];
  if (process.getuid?.() === 0) {
    const uid = Number((await mustExec("id -u postgres", "id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await mustExec("id -g postgres", "id", ["-g", "postgres"])).stdout.trim());
    await chown(dir, uid, gid);
    command = "setpriv";
    prefix = ["--reuid", String(uid), "--regid", String(gid), "--init-groups", binary];
  }
  const port = await freePort();
  const config = path.join(dir, "pgbouncer.ini");
  await writeFile(
    config,
    [
      "[databases]",
      `${database} = host=127.0.0.1 port=${spec.pgPort} dbname=${database} user=postgres`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = any",
      `pool_mode = ${spec.poolMode}`,
      `default_pool_size = ${spec.poolSize}`,
      "max_client_conn = 100",
      "ignore_startup_parameters = extra_float_digits",
      `logfile = ${path.join(dir, "pgbouncer.log")}`,
      `pidfile = ${path.join(dir, "pgbouncer.pid")}`,
      "",
    ].join("\n"),
  );
  await chmod(config, 0o644);
  const child = spawn(command, [...prefix, config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (chunk: Buffer) => (log = (log + chunk.toString()).slice(-2000)));
  let running = true;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", (error) => {
      log += String(error);
      resolve();
    });
  });
  void exited.then(() => (running = false));
  defer("stop pgbouncer", async () => {
    if (!running) return;
    child.kill("SIGTERM");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
    if (running) child.kill("SIGKILL");
  });
  try {
    await waitForPort(port, () => running, 10_000, "pgbouncer");
  } catch (error) {
    throw new Error(`pgbouncer did not start (${(error as Error).message}): ${log.trim().slice(-400)}`);
  }
  return { port, pid: child.pid! };
}
