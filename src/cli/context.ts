/**
 * What a command may touch: the streams, the environment, the network and the clock. main.ts
 * builds the real one; tests pass fakes, so no command reaches for process.* directly.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";

export interface CliInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}

export interface CliOutput {
  write(chunk: string | Uint8Array): boolean;
  isTTY?: boolean;
  once?(event: "drain", listener: () => void): unknown;
}

export interface CliContext {
  stdin: CliInput;
  stdout: CliOutput;
  stderr: CliOutput;
  env: Readonly<Record<string, string | undefined>>;
  fetch: typeof fetch;
  /** Milliseconds since the epoch. */
  now(): number;
  version: string;
}

/** Options every command accepts (declared once on the program, see main.ts). */
export interface GlobalOptions {
  json: boolean;
  server: string | undefined;
}

export function globalOptions(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<{ json?: boolean; server?: string }>();
  return { json: options.json === true, server: options.server };
}

export function cliVersion(): string {
  try {
    const packageJson = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof packageJson.version === "string" ? packageJson.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

export function processContext(): CliContext {
  return {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    fetch: globalThis.fetch,
    now: () => Date.now(),
    version: cliVersion(),
  };
}
