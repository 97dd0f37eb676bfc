/**
 * Grants at real targets: reconciliation (`stint reconcile`), grants on their way to or from a
 * target (`stint grants`), discovery of standing access and its conversion to eligibility
 * (`stint discover`), and two subcommands of `stint targets`: `test` and `credential`.
 * A target's credential is read from stdin or a file, never from argv (ps and shell history).
 */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import type { z } from "zod";
import {
  convertResult,
  credentialBody,
  credentialResult,
  discoveryList,
  grantList,
  reconcileReport,
  targetTest,
} from "../../contract/grants.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { CliError, EXIT_CODES, usageError } from "../exit-codes.js";
import { type Column, emit, formatError, renderTable, sanitize } from "../output.js";
import { isInteractive, readFromTerminal } from "../prompt.js";
import { checkReason, clientFor, collect, integerIn, readAll, withoutTrailingNewline } from "./shared.js";

type TargetReport = z.infer<typeof reconcileReport>["items"][number];
type Grant = z.infer<typeof grantList>["items"][number];
type Discovered = z.infer<typeof discoveryList>["items"][number];
type Conversion = z.infer<typeof convertResult>;

const MAX_SECRET_LENGTH = credentialBody.shape.secret.maxLength ?? 16_384;

/** An ISO time without milliseconds, as people read it. */
function clock(iso: string | null): string | null {
  return iso === null ? null : iso.replace(/\.\d{3}(?=Z$)/, "");
}

/** Long text from a target (errors, privileges) cut for a table cell; --json has it whole. */
function short(text: string | null, max = 100): string | null {
  if (text === null) return null;
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

// ---------------------------------------------------------------------------
// Tables

const DRIFT_COLUMNS: readonly Column<TargetReport["drift"][number]>[] = [
  { header: "ROLE", value: (d) => d.role },
  { header: "LOGIN", value: (d) => d.login },
  { header: "KIND", value: (d) => d.kind },
  { header: "ACTION", value: (d) => d.action },
  { header: "NEW", value: (d) => d.new },
  { header: "SINCE", value: (d) => clock(d.since) },
];

const RESOLVED_COLUMNS: readonly Column<TargetReport["resolved"][number]>[] = [
  { header: "ROLE", value: (r) => r.role },
  { header: "LOGIN", value: (r) => r.login },
  { header: "KIND", value: (r) => r.kind },
];

const GRANT_COLUMNS: readonly Column<Grant>[] = [
  { header: "ROLE", value: (g) => g.role },
  { header: "PRINCIPAL", value: (g) => g.principal },
  { header: "TARGET", value: (g) => g.target },
  { header: "LOGIN", value: (g) => g.login },
  { header: "STATE", value: (g) => g.state },
  { header: "ATTEMPTS", value: (g) => g.attempts },
  { header: "LAST ERROR", value: (g) => short(g.lastError) },
  { header: "SINCE", value: (g) => clock(g.since) },
];

const DISCOVERED_COLUMNS: readonly Column<Discovered>[] = [
  { header: "LOGIN", value: (a) => a.login },
  { header: "PRIVILEGE", value: (a) => short(a.privilege) },
  { header: "STINT USER", value: (a) => a.principal },
  { header: "LAST ACTIVITY", value: (a) => clock(a.lastActivity) },
];

const CONVERTED_COLUMNS: readonly Column<Conversion["converted"][number]>[] = [
  { header: "LOGIN", value: (c) => c.login },
  { header: "STINT USER", value: (c) => c.principal },
  { header: "PRIVILEGE", value: (c) => short(c.privilege) },
  { header: "ELIGIBILITY", value: (c) => c.eligibility },
];

const SKIPPED_COLUMNS: readonly Column<Conversion["skipped"][number]>[] = [
  { header: "LOGIN", value: (s) => s.login },
  { header: "REASON", value: (s) => s.reason },
];

// ---------------------------------------------------------------------------
// Wording

/** One target's reconciliation: a status line, roles skipped, the drift table, what resolved. */
export function renderTargetReport(report: TargetReport): string {
  const name = `${sanitize(report.target)} (${sanitize(report.kind)})`;
  if (!report.ok) return `${name}: could not be read: ${sanitize(report.error ?? "no reason given")}\n`;
  const read = report.roles.filter((role) => role.skipped === null).length;
  let text = `${name}: ok, ${plural(read, "role")} read\n`;
  for (const role of report.roles) {
    if (role.skipped !== null) text += `  skipped ${sanitize(role.role)}: ${sanitize(role.skipped)}\n`;
  }
  text += report.drift.length === 0 ? "No drift.\n" : renderTable(DRIFT_COLUMNS, report.drift);
  if (report.resolved.length > 0) text += `Resolved:\n${renderTable(RESOLVED_COLUMNS, report.resolved)}`;
  return text;
}

function renderConversion(target: string, result: Conversion): string {
  const blocks: string[] = [];
  const role = sanitize(result.role);
  if (result.converted.length > 0) {
    const verb = result.dryRun || result.changeRequest ? "Would convert" : "Converted";
    blocks.push(`${verb} to eligibility for ${role}:\n${renderTable(CONVERTED_COLUMNS, result.converted)}`);
  }
  if (result.skipped.length > 0) blocks.push(`Skipped:\n${renderTable(SKIPPED_COLUMNS, result.skipped)}`);
  const count = plural(result.converted.length, "login");
  if (result.changeRequest) {
    const held = result.changeRequest;
    blocks.push(
      `Held for a second admin (four-eyes: making ${count} eligible for ${role} widens access at risk ${held.tier}); ` +
        "nothing was changed, the standing privilege stays.\n" +
        `Change request ${held.id}, pending until ${held.expiresAt}: another admin runs \`stint changes approve ${held.id}\`; ` +
        "the approval makes the eligibility and removes the standing privilege.\n",
    );
  } else if (result.dryRun) {
    blocks.push(
      result.converted.length === 0
        ? "Dry run: nothing was changed, and nothing would be converted.\n"
        : `Dry run: nothing was changed. Without --dry-run, ${count} would become eligible for ${role} ` +
            `and lose the standing privilege at ${sanitize(target)}.\n`,
    );
  } else {
    blocks.push(
      result.converted.length === 0
        ? "Nothing was converted.\n"
        : `${count} now eligible for ${role}; the standing privilege is being removed at ${sanitize(target)} ` +
            "by the outbox, in the background.\n",
    );
  }
  return blocks.join("\n");
}

// ---------------------------------------------------------------------------
// Input

/**
 * The credential: from --from-file, else stdin to its end. At a terminal, a prompt that does not
 * echo reads one line (a password); a multi-line key goes through --from-file or a pipe.
 */
async function readSecret(ctx: CliContext, target: string, file: string | undefined): Promise<string> {
  let text: string;
  if (file !== undefined) {
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      // The error names the file and the reason (ENOENT, EACCES), never its content.
      throw usageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`);
    }
  } else if (isInteractive(ctx)) {
    text = await readFromTerminal(ctx, `Credential of ${sanitize(target)} (not shown): `, false);
  } else {
    text = await readAll(ctx);
  }
  const secret = withoutTrailingNewline(text);
  const from = file !== undefined ? file : "stdin";
  if (secret === "") throw usageError(`${from} held no credential; nothing was stored`);
  if (secret.length > MAX_SECRET_LENGTH) {
    throw usageError(`the credential is longer than ${MAX_SECRET_LENGTH} characters; nothing was stored`);
  }
  return secret;
}

// ---------------------------------------------------------------------------
// Commands

interface DiscoverOptions {
  convert?: boolean;
  toRole?: string;
  login?: string[];
  dryRun?: boolean;
  reason?: string;
}

interface CredentialOptions {
  fromFile?: string;
  delete?: boolean;
}

export function registerTargetCommands(program: Command, ctx: CliContext): void {
  program
    .command("reconcile")
    .description("compare what Stint granted with what the targets hold now, and report drift")
    .argument("[target]", "only this target (default: every target)")
    .addHelpText(
      "after",
      "\nDrift is reported, not an error: the exit code is 0 when every target could be read, and 8\n" +
        "when one could not.\n\nExamples:\n  stint reconcile\n  stint reconcile app-db --json\n",
    )
    .action(async (target: string | undefined, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/reconcile", {
        body: target === undefined ? {} : { target },
        schema: reconcileReport,
      });
      emit(ctx, json, raw, () =>
        data.items.length === 0 ? "No targets to reconcile.\n" : data.items.map(renderTargetReport).join("\n"),
      );
      const unread = data.items.filter((item) => !item.ok).map((item) => item.target);
      if (unread.length > 0) {
        const error = new CliError(
          "TARGET_UNAVAILABLE",
          `${plural(unread.length, "target")} could not be read: ${unread.join(", ")}`,
          { exitCode: EXIT_CODES.unreachable },
        );
        ctx.stderr.write(formatError(error));
        throw new CliError(error.code, error.message, { exitCode: error.exitCode, reported: true });
      }
    });

  program
    .command("grants")
    .description("grants on their way to or from a target (provisioning, revoking); --stuck: only those in trouble")
    .option("--stuck", "only grants whose last attempt failed or that have waited over a minute")
    .option("--limit <n>", "at most this many (1-1000)", integerIn(1, 1000), 200)
    .addHelpText("after", "\nExample:\n  stint grants --stuck\n")
    .action(async (options: { stuck?: boolean; limit: number }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/grants", {
        query: { stuck: options.stuck ? "true" : undefined, limit: options.limit },
        schema: grantList,
      });
      const empty = options.stuck ? "No stuck grants.\n" : "No grants provisioning or revoking.\n";
      emit(ctx, json, raw, () => (data.items.length === 0 ? empty : renderTable(GRANT_COLUMNS, data.items)));
    });

  program
    .command("discover")
    .description("standing privileged access at a target; with --convert, turn it into just-in-time eligibility")
    .argument("<target>", "the target (see `stint targets list`)")
    .option("--convert", "make the standing access eligibility for --to-role, and remove it at the target")
    .option("--to-role <role>", "with --convert: the role whose eligibility replaces the standing access")
    .option("--login <login>", "with --convert: only this login (repeatable; default: all the role grants)", collect)
    .option("--dry-run", "with --convert: show what would be converted, change nothing")
    .option("--reason <text>", "with --convert: why (recorded with the eligibility and in the audit log)")
    .addHelpText(
      "after",
      "\nExamples:\n  stint discover app-db\n" +
        '  stint discover app-db --convert --to-role app-db-admin --dry-run --reason "phase 2: JIT only"\n' +
        '  stint discover app-db --convert --to-role app-db-admin --login carol --reason "phase 2: JIT only"\n',
    )
    .action(async (target: string, options: DiscoverOptions, command: Command) => {
      const { json } = globalOptions(command);
      if (!options.convert) {
        const stray = [
          options.toRole !== undefined && "--to-role",
          options.login !== undefined && "--login",
          options.dryRun && "--dry-run",
          options.reason !== undefined && "--reason",
        ].filter(Boolean);
        if (stray.length > 0) {
          throw usageError(`${stray.join(", ")} ${stray.length === 1 ? "goes" : "go"} only with --convert`);
        }
        const client = await clientFor(ctx, command);
        const { data, raw } = await client.request("GET", `/v1/targets/${segment(target)}/discovery`, {
          schema: discoveryList,
        });
        emit(ctx, json, raw, () =>
          data.items.length === 0
            ? `No standing privileged access found at ${sanitize(data.target)}.\n`
            : renderTable(DISCOVERED_COLUMNS, data.items),
        );
        return;
      }
      if (options.toRole === undefined) throw usageError("--convert needs --to-role ROLE");
      if (options.reason === undefined) throw usageError("--convert needs --reason TEXT");
      const reason = checkReason(options.reason);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", `/v1/targets/${segment(target)}/discovery/conversions`, {
        body: {
          role: options.toRole,
          ...(options.login !== undefined ? { logins: options.login } : {}),
          dryRun: options.dryRun === true,
          reason,
        },
        schema: convertResult,
      });
      emit(ctx, json, raw, () => renderConversion(target, data));
    });

  const targets = program.commands.find((command) => command.name() === "targets");
  if (!targets) throw new Error("registerConfigCommands must run first: it creates `stint targets`");

  targets
    .command("test")
    .description("check that Stint can reach and administer a target (exit 8 when it cannot)")
    .argument("<name>", "the target")
    .addHelpText("after", "\nExample:\n  stint targets test app-db || echo 'app-db is not usable'\n")
    .action(async (name: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", `/v1/targets/${segment(name)}/test`, { schema: targetTest });
      const target = sanitize(data.target);
      if (data.ok) {
        emit(ctx, json, raw, () => `${target}: ok — ${sanitize(data.detail)}\n`);
        return;
      }
      // Like `stint check`: the answer is the output; the exit code says it is not usable.
      emit(ctx, json, raw, () => `${target}: ${sanitize(data.detail)}\n`);
      throw new CliError("TARGET_UNAVAILABLE", data.detail, { exitCode: EXIT_CODES.unreachable, reported: true });
    });

  targets
    .command("credential")
    .description("store a target's admin credential (read from stdin or --from-file), or --delete it")
    .argument("<name>", "the target")
    .option("--from-file <file>", "read the credential from this file instead of stdin")
    .option("--delete", "delete the stored credential")
    .addHelpText(
      "after",
      "\nThe credential is never taken from the command line. Standard input is read to its end and\n" +
        "one trailing newline is dropped; at a terminal, one line is read without echo.\n" +
        "\nExamples:\n  stint targets credential app-db < app-db-admin.txt\n" +
        "  stint targets credential ssh-hosts --from-file ./stint_admin_ed25519\n" +
        "  stint targets credential app-db --delete\n",
    )
    .action(async (name: string, options: CredentialOptions, command: Command) => {
      const { json } = globalOptions(command);
      const target = sanitize(name);
      if (options.delete) {
        if (options.fromFile !== undefined) throw usageError("--delete and --from-file do not go together");
        const client = await clientFor(ctx, command);
        const { raw } = await client.request("DELETE", `/v1/targets/${segment(name)}/credential`);
        emit(ctx, json, raw, () => `Deleted the credential of ${target}.\n`);
        return;
      }
      const client = await clientFor(ctx, command);
      client.requireSession(); // before anyone types or pipes a secret
      const secret = await readSecret(ctx, name, options.fromFile);
      const { data, raw } = await client.request("PUT", `/v1/targets/${segment(name)}/credential`, {
        body: { secret },
        schema: credentialResult,
      });
      emit(ctx, json, raw, () => `Stored the credential of ${target} at ${sanitize(data.secret)}.\n`);
    });
}
