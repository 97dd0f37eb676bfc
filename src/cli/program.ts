/**
 * The `stint` command tree and the one place where errors become exit codes. main.ts runs it on
 * the real process; tests run it with a fake context.
 */
import tab from "@bomb.sh/tab/commander";
import { Command, CommanderError } from "commander";
import { registerAccessCommands } from "./commands/access.js";
import { registerAuditCommands } from "./commands/audit.js";
import { registerSiemCommands } from "./commands/siem.js";
import { registerReviewCommands } from "./commands/reviews.js";
import { registerAlertCommands } from "./commands/alerts.js";
import { registerEvidenceCommands } from "./commands/evidence.js";
import { registerAuthCommands } from "./commands/auth.js";
import { registerConfigCommands } from "./commands/config.js";
import { registerChangeCommands } from "./commands/changes.js";
import { registerGroupCommands } from "./commands/groups.js";
import { registerMfaCommands } from "./commands/mfa.js";
import { registerStepUpCommand } from "./commands/step-up.js";
import { registerServerCommand } from "./commands/server.js";
import { registerTargetCommands } from "./commands/targets.js";
import { registerTokenCommands } from "./commands/tokens.js";
import { registerTrustCommands } from "./commands/trusts.js";
import { registerUserCommands } from "./commands/users.js";
import { registerInviteCommands } from "./commands/invite.js";
import { registerVaultCommands } from "./commands/vault.js";
import { registerDbCommands } from "./commands/db.js";
import { registerSessionCommands } from "./commands/sessions.js";
import { registerSshCommands } from "./commands/ssh.js";
import type { CliContext } from "./context.js";
import { checkProfileName, currentProfile } from "./credentials.js";
import { CliError, EXIT_CODES, type ExitCode } from "./exit-codes.js";
import { errorEnvelope, formatError, renderJson, reportError } from "./output.js";

const ROOT_HELP = `
Environment:
  STINT_SERVER      server URL when --server is not given and no sign-in is saved
  STINT_CONFIG_DIR  where credentials.json is kept (default $XDG_CONFIG_HOME/stint or ~/.config/stint)
  STINT_PROFILE     the saved sign-in to use when --profile is not given (stint auth status lists them)
  STINT_TOKEN       an API token (stint tokens create) to use instead of the saved sign-in, e.g. in CI

Exit codes:
  0 ok                 1 unexpected error        2 usage or bad input
  3 audit chain broken 4 not signed in / failed  5 forbidden
  6 not found          7 conflict / exists       8 server or target unreachable, vault sealed
  9 stint check: does not hold the role
`;

/** Whether the command line asks for JSON, read before parsing so even usage errors honour it. */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).includes("--json");
}

export function buildProgram(ctx: CliContext, json = false): Command {
  const program = new Command("stint");
  program
    .description("Stint: just-in-time privileged access")
    .version(ctx.version, "-V, --version", "print the version")
    .option("--server <url>", "Stint server URL (default: the saved sign-in's, $STINT_SERVER, http://127.0.0.1:8420)")
    .option("--json", "machine-readable output: the API's JSON on stdout")
    .option(
      "--profile <name>",
      "which saved sign-in to use ($STINT_PROFILE; default: the one `stint auth switch` chose)",
    )
    .exitOverride()
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError("(add --help for usage)")
    .configureOutput({
      writeOut: (text) => ctx.stdout.write(text),
      writeErr: (text) => ctx.stderr.write(text),
      outputError: (text, write) => {
        const message = text.replace(/^error:\s*/, "").trimEnd();
        if (json) ctx.stdout.write(renderJson(errorEnvelope(new CliError("USAGE", message))));
        write(formatError(new CliError("USAGE", message)));
      },
    })
    .addHelpText("after", ROOT_HELP);

  registerAuthCommands(program, ctx);
  registerMfaCommands(program, ctx);
  registerStepUpCommand(program, ctx);
  registerUserCommands(program, ctx);
  registerInviteCommands(program, ctx);
  registerGroupCommands(program, ctx);
  registerTokenCommands(program, ctx);
  registerTrustCommands(program, ctx);
  registerAccessCommands(program, ctx);
  registerConfigCommands(program, ctx);
  registerChangeCommands(program, ctx);
  registerTargetCommands(program, ctx); // after config: it adds to `stint targets`
  registerVaultCommands(program, ctx);
  registerDbCommands(program, ctx);
  registerSshCommands(program, ctx);
  registerSessionCommands(program, ctx);
  registerAuditCommands(program, ctx);
  registerSiemCommands(program, ctx);
  registerReviewCommands(program, ctx);
  registerAlertCommands(program, ctx);
  registerEvidenceCommands(program, ctx);
  registerServerCommand(program, ctx);
  // Last, so that it sees every command: `stint completion bash|zsh|fish|powershell` prints the shell's script,
  // which asks `stint complete -- <words>` (hidden) for the commands and options that fit.
  tab(program, { completionCommandName: "completion" });
  return program;
}

/** Runs one command line (without the node and script paths) and returns the exit code. */
/** `--profile NAME` as typed (before `--`), read before parsing: every command's credentials depend on it. */
function profileArgument(argv: readonly string[]): string | undefined {
  const end = argv.indexOf("--");
  const args = end === -1 ? argv : argv.slice(0, end);
  let found: string | undefined;
  args.forEach((arg, i) => {
    if (arg === "--profile" && i + 1 < args.length) found = args[i + 1];
    else if (arg.startsWith("--profile=")) found = arg.slice("--profile=".length);
  });
  return found;
}

/**
 * The context with the profile in force written into its environment (`STINT_PROFILE`): from --profile,
 * else $STINT_PROFILE, else the one `stint auth switch` chose, else `default`.
 */
async function withProfile(ctx: CliContext, argv: readonly string[]): Promise<CliContext> {
  const typed = profileArgument(argv);
  const profile = typed !== undefined ? checkProfileName(typed) : await currentProfile(ctx.env);
  const source = typed !== undefined ? "flag" : ctx.env.STINT_PROFILE ? "env" : "chosen";
  return { ...ctx, env: { ...ctx.env, STINT_PROFILE: profile, STINT_PROFILE_SOURCE: source } };
}

export async function runCli(argv: readonly string[], given: CliContext): Promise<ExitCode> {
  const json = wantsJson(argv);
  let ctx = given;
  try {
    ctx = await withProfile(given, argv);
  } catch (error) {
    return reportError(given, json, error);
  }
  const program = buildProgram(ctx, json);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return EXIT_CODES.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander has printed the help, the version or the usage error already. Help that was
      // asked for (--help, `stint help users`) exits 0; help shown for a missing command exits 2.
      return error.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.usage;
    }
    return reportError(ctx, json, error);
  }
}
