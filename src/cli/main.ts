/**
 * Entry point of the `stint` CLI (bin/stint.js imports the built copy). Runs the command line on
 * the real process and sets the exit code; the command tree lives in program.ts.
 */
import { processContext } from "./context.js";
import { runCli } from "./program.js";

// `stint audit export | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
  process.stderr.write(`error: UNEXPECTED: cannot write to stdout (${error.code ?? error.message})\n`);
  process.exit(1);
});

process.exitCode = await runCli(process.argv.slice(2), processContext());
