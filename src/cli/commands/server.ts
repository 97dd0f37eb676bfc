/** `stint server`: runs the Stint server in this process (src/main.ts does the work). */
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { CliError } from "../exit-codes.js";

interface ServerEntry {
  runServer(options: { configFile?: string }): Promise<void>;
}

/** Config problems come back as lines; any of these shapes means "bad configuration" (exit 2). */
function configProblem(error: unknown): CliError | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, name, problems, message } = error as {
    code?: unknown;
    name?: unknown;
    problems?: unknown;
    message?: unknown;
  };
  const isConfig = code === "CONFIG_INVALID" || name === "ConfigError" || Array.isArray(problems);
  if (!isConfig) return undefined;
  const lines = Array.isArray(problems) ? problems.map(String) : [];
  const text = lines.length > 0 ? `the configuration is not valid:\n  ${lines.join("\n  ")}` : String(message);
  return new CliError("CONFIG_INVALID", text);
}

export function registerServerCommand(program: Command, _ctx: CliContext): void {
  program
    .command("server")
    .description("run the Stint server (API, workers, scheduler) in the foreground")
    .option("--config <file>", "YAML configuration file; STINT_* environment variables override it")
    .addHelpText("after", "\nExample:\n  STINT_DATA_DIR=/var/lib/stint stint server --config /etc/stint/stint.yaml\n")
    .action(async (options: { config?: string }) => {
      // A variable specifier: the server entry is built separately and loaded only when needed,
      // so the other commands start fast and never load the server's dependencies.
      const entry = "../../main.js";
      const { runServer } = (await import(entry)) as ServerEntry;
      try {
        await runServer(options.config !== undefined ? { configFile: options.config } : {});
      } catch (error) {
        throw configProblem(error) ?? error;
      }
    });
}
