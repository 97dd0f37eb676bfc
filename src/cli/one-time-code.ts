/**
 * One-time codes (TOTP) without the command line: argv is readable by every local user (`ps`,
 * /proc/<pid>/cmdline) and stays in shell history, and a code read there is good until its 30-second step
 * ends, so someone holding the password (a shared CI account) races the CLI to it. A code comes from one
 * line of stdin (`-` in its place, or `--code-stdin`), from $STINT_TOTP_CODE (the process's environment is
 * readable by its own user only), or from a prompt that does not echo. One given in argv is still taken,
 * so existing scripts keep working, with a warning that says what to use instead.
 */
import type { CliContext } from "./context.js";
import { usageError } from "./exit-codes.js";
import { warn } from "./output.js";
import { isInteractive, readFromTerminal, readStdinLine } from "./prompt.js";

export const TOTP_CODE_ENV = "STINT_TOTP_CODE";

export interface CodeSource {
  /** What argv holds for the code (`-`: read stdin), if anything. */
  given: string | undefined;
  /** `--code-stdin` was passed. */
  fromStdin?: boolean;
  /** How the user names it, for messages: "--otp", "the code". */
  flag: string;
  /** How to pass it on stdin instead, for the warning: "--otp -". */
  stdinHint: string;
  /** Take $STINT_TOTP_CODE when argv names none (default true; false where the caller uses it only when asked). */
  useEnv?: boolean;
}

async function fromStdin(ctx: CliContext, flag: string): Promise<string> {
  const line = await readStdinLine(ctx);
  if (line === null || line.trim() === "") throw usageError(`${flag} was to be read from stdin, which held no code`);
  return line;
}

/**
 * The code from stdin, argv (with a warning) or $STINT_TOTP_CODE, spaces removed; undefined when none of
 * them holds one (the caller prompts, or does without).
 */
export async function oneTimeCode(ctx: CliContext, source: CodeSource): Promise<string | undefined> {
  let text: string | undefined;
  if (source.fromStdin && source.given !== undefined && source.given !== "-")
    throw usageError(`give the code on stdin or as ${source.flag}, not both`);
  if (source.fromStdin || source.given === "-") text = await fromStdin(ctx, source.flag);
  else if (source.given !== undefined) {
    warn(
      ctx,
      `a one-time code on the command line is visible to every user of this machine (ps) and kept in shell history; pass ${source.stdinHint} and the code on stdin, or set ${TOTP_CODE_ENV}`,
    );
    text = source.given;
  } else if (source.useEnv !== false && ctx.env[TOTP_CODE_ENV]) text = ctx.env[TOTP_CODE_ENV];
  return text?.replace(/\s+/g, "");
}

/** Asks for the code at the terminal without echoing it; "" when the user just presses Enter. */
export async function promptOneTimeCode(ctx: CliContext, label = "One-time code: "): Promise<string> {
  if (!isInteractive(ctx))
    throw usageError(`stdin is not a terminal, so stint cannot ask for the one-time code; set ${TOTP_CODE_ENV}`);
  return (await readFromTerminal(ctx, label, false)).replace(/\s+/g, "");
}
