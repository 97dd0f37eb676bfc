/**
 * Test support: supervises a server process a fixture started (slapd, a throwaway PostgreSQL):
 * keeps the tail of its output for error messages, knows whether it runs, stops it politely then
 * firmly, and, if a test file forgets `stop()`, kills it and removes its directory when the worker exits.
 */
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

export interface ChildServer {
  /** The last 4000 characters it wrote. */
  log(): string;
  running(): boolean;
  /** Sends `signal`, waits up to `graceMs`, then SIGKILL; resolves once it has exited. */
  stop(): Promise<void>;
}

export function superviseChild(
  child: ChildProcess,
  options: { dir: string; signal: NodeJS.Signals; graceMs: number },
): ChildServer {
  let log = "";
  const keep = (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let running = true;
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      running = false;
      resolve();
    }),
  );
  const onExit = () => {
    if (running) child.kill("SIGKILL");
    rmSync(options.dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  return {
    log: () => log,
    running: () => running,
    async stop() {
      process.removeListener("exit", onExit);
      if (!running) return;
      child.kill(options.signal);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, options.graceMs)))]);
      clearTimeout(timer);
      if (running) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}
