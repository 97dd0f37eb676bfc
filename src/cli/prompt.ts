/**
 * Reading what the user types. Passwords never come from argv: either a prompt that does not echo
 * (when stdin is a terminal) or one line of stdin with `--password-stdin`.
 */
import { StringDecoder } from "node:string_decoder";
import type { CliContext, CliInput } from "./context.js";
import { CliError, usageError } from "./exit-codes.js";

export function isInteractive(ctx: CliContext): boolean {
  return ctx.stdin.isTTY === true && typeof ctx.stdin.setRawMode === "function";
}

/** Reads stdin line by line, pausing it in between so a half-read pipe never keeps the process alive. */
class LineReader {
  private buffer = "";
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private readonly decoder = new StringDecoder("utf8");

  constructor(private readonly stream: CliInput) {
    stream.on("data", (chunk: Buffer | string) => {
      this.buffer += typeof chunk === "string" ? chunk : this.decoder.write(chunk);
      this.notify();
    });
    stream.on("end", () => {
      this.buffer += this.decoder.end();
      this.ended = true;
      this.notify();
    });
    stream.on("error", (error: Error) => {
      this.failure = error;
      this.notify();
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async readLine(): Promise<string | null> {
    try {
      for (;;) {
        const newline = this.buffer.indexOf("\n");
        if (newline >= 0) {
          const line = this.buffer.slice(0, newline);
          this.buffer = this.buffer.slice(newline + 1);
          return line.endsWith("\r") ? line.slice(0, -1) : line;
        }
        if (this.failure) throw new CliError("USAGE", `Cannot read stdin: ${this.failure.message}`);
        if (this.ended) {
          const rest = this.buffer;
          this.buffer = "";
          return rest === "" ? null : rest;
        }
        const arrived = new Promise<void>((resolve) => (this.wake = resolve));
        this.stream.resume();
        await arrived;
      }
    } finally {
      this.stream.pause();
    }
  }
}

const readers = new WeakMap<CliInput, LineReader>();

/** The next line of stdin without its line ending, or null at end of input. */
export async function readStdinLine(ctx: CliContext): Promise<string | null> {
  let reader = readers.get(ctx.stdin);
  if (!reader) {
    reader = new LineReader(ctx.stdin);
    readers.set(ctx.stdin, reader);
  }
  return reader.readLine();
}

/** Reads one line from the terminal in raw mode; echoes it only when `echo` is set. */
export function readFromTerminal(ctx: CliContext, question: string, echo: boolean): Promise<string> {
  const stdin = ctx.stdin;
  if (!isInteractive(ctx)) return Promise.reject(usageError("stdin is not a terminal, so stint cannot prompt"));
  ctx.stderr.write(question);
  const decoder = new StringDecoder("utf8");
  return new Promise<string>((resolve, reject) => {
    let value = "";
    const finish = (error: Error | undefined): void => {
      stdin.removeListener("data", onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      ctx.stderr.write("\n");
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (chunk: Buffer | string): void => {
      const text = typeof chunk === "string" ? chunk : decoder.write(chunk);
      for (const char of text) {
        if (char === "\r" || char === "\n") return finish(undefined);
        if (char === "\u0003") return finish(new CliError("INTERRUPTED", "interrupted"));
        if (char === "\u0004") {
          if (value === "") return finish(usageError("no input given"));
          continue;
        }
        if (char === "\u007f" || char === "\b") {
          if (value !== "") {
            value = Array.from(value).slice(0, -1).join("");
            if (echo) ctx.stderr.write("\b \b");
          }
          continue;
        }
        if (char === "\u0015") {
          if (echo) ctx.stderr.write("\b \b".repeat(Array.from(value).length));
          value = "";
          continue;
        }
        if (char < " ") continue;
        value += char;
        if (echo) ctx.stderr.write(char);
      }
    };
    stdin.setRawMode?.(true);
    stdin.on("data", onData);
    stdin.resume();
  });
}

/** Asks a visible question on the terminal (user names, one-time codes). */
export async function ask(ctx: CliContext, question: string): Promise<string> {
  return (await readFromTerminal(ctx, question, true)).trim();
}

export interface PasswordOptions {
  /** Read the password as one line of stdin instead of prompting. */
  passwordStdin: boolean;
  /** The prompt, e.g. "Password: ". */
  label: string;
  /** Ask twice and compare (for new passwords). */
  confirm?: boolean;
  /** An empty answer at the prompt means "no password" instead of an error. */
  allowEmpty?: boolean;
}

/** A password from `--password-stdin` or a no-echo prompt; never from argv. */
export async function readPassword(ctx: CliContext, options: PasswordOptions): Promise<string> {
  if (options.passwordStdin) {
    const line = await readStdinLine(ctx);
    if (line === null || line === "") throw usageError("--password-stdin was given but stdin held no password");
    return line;
  }
  if (!isInteractive(ctx)) {
    throw usageError("stdin is not a terminal, so stint cannot prompt for the password; use --password-stdin");
  }
  const password = await readFromTerminal(ctx, options.label, false);
  if (password === "") {
    if (options.allowEmpty) return "";
    throw usageError("no password given");
  }
  if (options.confirm) {
    const again = await readFromTerminal(ctx, "Repeat to confirm: ", false);
    if (again !== password) throw usageError("the two passwords differ");
  }
  return password;
}
