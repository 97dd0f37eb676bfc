/**
 * Configuration as code (`stint diff -f`, `stint apply -f`, `stint export`) and short listings of
 * the catalog (`stint targets list`, `stint policies list`). A file the server refuses has each
 * problem printed as `FILE:LINE:COL: path: message`, and the command exits 2.
 */
import { readFile, writeFile } from "node:fs/promises";
import type { Command } from "commander";
import type { z } from "zod";
import {
  configApplyResult,
  configExport,
  configPlan,
  configProblem,
  policyList,
  targetList,
  type ConfigPlanDto,
} from "../../contract/catalog-api.js";
import { globalOptions, type CliContext } from "../context.js";
import { CliError, isCliError } from "../exit-codes.js";
import { type Column, emit, note, renderTable, sanitize } from "../output.js";
import { clientFor } from "./shared.js";

type Change = ConfigPlanDto["changes"][number];

const SIGN: Record<Change["action"], string> = { create: "+", update: "~", delete: "-" };

/** A value in a plan line: strings bare, empty things as "(none)", the rest as compact JSON, cut short. */
function show(value: unknown): string {
  if (value === undefined || value === null) return "(none)";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return sanitize(text.length > 100 ? `${text.slice(0, 99)}…` : text);
}

/** The plan for people: one line per change, its fields indented under it, then the totals. */
export function renderPlan(plan: ConfigPlanDto): string {
  const lines: string[] = [];
  for (const change of plan.changes) {
    lines.push(`${SIGN[change.action]} ${change.kind} ${sanitize(change.name)}`);
    for (const field of change.fields) {
      const text = change.action === "create" ? show(field.to) : `${show(field.from)} → ${show(field.to)}`;
      lines.push(`    ${sanitize(field.field)}: ${text}`);
    }
  }
  const { create, update, delete: remove } = plan.summary;
  lines.push(
    plan.changes.length === 0 ? "No changes." : `Plan: ${create} to create, ${update} to change, ${remove} to delete.`,
  );
  // Security warnings (a target opting out of TLS or into cleartext passwords) come already labelled.
  for (const text of plan.notes) lines.push(text.startsWith("warning: ") ? sanitize(text) : `note: ${sanitize(text)}`);
  return `${lines.join("\n")}\n`;
}

async function readStdin(ctx: CliContext): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString("utf8");
}

async function readConfigFile(ctx: CliContext, file: string): Promise<string> {
  if (file === "-") return readStdin(ctx);
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new CliError("USAGE", `cannot read ${file}: ${(error as Error).message}`);
  }
}

/** Prints the problems of a refused file one per line, as compilers do, before the error itself. */
async function reportingProblems<T>(ctx: CliContext, file: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isCliError(error) && error.code === "VALIDATION_FAILED" && Array.isArray(error.details?.problems)) {
      const name = file === "-" ? "<stdin>" : file;
      for (const item of error.details.problems) {
        const problem = configProblem.safeParse(item);
        if (!problem.success) continue;
        const { line, column, path, message } = problem.data;
        ctx.stderr.write(
          `${sanitize(name)}:${line}:${column}: ${path ? `${sanitize(path)}: ` : ""}${sanitize(message)}\n`,
        );
      }
    }
    throw error;
  }
}

const TARGET_COLUMNS: readonly Column<z.infer<typeof targetList>["items"][number]>[] = [
  { header: "NAME", value: (t) => t.name },
  { header: "KIND", value: (t) => t.kind },
  { header: "ADDRESS", value: (t) => t.address },
  { header: "LABELS", value: (t) => Object.entries(t.labels).map(([k, v]) => `${k}=${v}`) },
];

const POLICY_COLUMNS: readonly Column<z.infer<typeof policyList>["items"][number]>[] = [
  { header: "NAME", value: (p) => p.name },
  { header: "MAX", value: (p) => p.spec.maxDuration },
  { header: "MFA", value: (p) => p.spec.mfa.required },
  { header: "STAGES", value: (p) => p.spec.approval.stages.length },
  { header: "ROLES", value: (p) => p.roles },
  { header: "DESCRIPTION", value: (p) => p.description },
];

export function registerConfigCommands(program: Command, ctx: CliContext): void {
  program
    .command("diff")
    .description("show what `stint apply` would change: + create, ~ change, - delete (changes nothing)")
    .requiredOption("-f, --file <file>", "the configuration file (YAML; - reads standard input)")
    .addHelpText(
      "after",
      "\nSee docs/configuration-as-code.md for the file format.\n\nExample:\n  stint diff -f stint.yaml\n",
    )
    .action(async (options: { file: string }, command: Command) => {
      const { json } = globalOptions(command);
      const text = await readConfigFile(ctx, options.file);
      const client = await clientFor(ctx, command);
      const { data, raw } = await reportingProblems(ctx, options.file, () =>
        client.request("POST", "/v1/config/diff", { body: { yaml: text }, schema: configPlan }),
      );
      emit(ctx, json, raw, () => renderPlan(data));
    });

  program
    .command("apply")
    .description("make the catalog what a configuration file says, all at once or not at all")
    .requiredOption("-f, --file <file>", "the configuration file (YAML; - reads standard input)")
    .addHelpText(
      "after",
      "\nApplying the same file twice changes nothing the second time. Only the sections the file lists\n" +
        "are reconciled; things it does not list are deleted only with `prune: true` in the file.\n" +
        "A file that widens access at a four-eyes risk tier is held as a change request for a second\n" +
        "admin (`stint changes`); the whole file waits, narrowing changes in it too.\n" +
        "\nExample:\n  stint diff -f stint.yaml && stint apply -f stint.yaml\n",
    )
    .action(async (options: { file: string }, command: Command) => {
      const { json } = globalOptions(command);
      const text = await readConfigFile(ctx, options.file);
      const client = await clientFor(ctx, command);
      const { data, raw } = await reportingProblems(ctx, options.file, () =>
        client.request("POST", "/v1/config/apply", { body: { yaml: text }, schema: configApplyResult }),
      );
      emit(ctx, json, raw, () => {
        if (data.changeRequest) {
          const held = data.changeRequest;
          return (
            `${renderPlan(data)}Held for a second admin (four-eyes: this widens access at risk ${held.tier}).
` +
            `Change request ${held.id}, pending until ${held.expiresAt}: another admin runs \`stint changes approve ${held.id}\`.
`
          );
        }
        if (!data.applied) return renderPlan(data);
        const count = data.changes.length;
        return `${renderPlan(data)}Applied ${count} change${count === 1 ? "" : "s"}.\n`;
      });
    });

  program
    .command("export")
    .description("write the catalog (groups, policies, targets, roles, eligibility) as a file `stint apply` accepts")
    .option("-o, --output <file>", "write to this file instead of standard output")
    .action(async (options: { output?: string }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/config/export", { schema: configExport });
      if (options.output === undefined) {
        emit(ctx, json, raw, () => data.yaml);
        return;
      }
      try {
        await writeFile(options.output, data.yaml, "utf8");
      } catch (error) {
        throw new CliError("USAGE", `cannot write ${options.output}: ${(error as Error).message}`);
      }
      if (json) emit(ctx, json, { ok: true, file: options.output }, () => "");
      else note(ctx, `Wrote ${options.output}.`);
    });

  const targets = program.command("targets").description("systems where privilege lives (catalog)");
  targets
    .command("list")
    .alias("ls")
    .description("list targets")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/targets", { schema: targetList });
      emit(ctx, json, raw, () => (data.items.length === 0 ? "No targets.\n" : renderTable(TARGET_COLUMNS, data.items)));
    });

  const policies = program.command("policies").description("rules for activating roles (catalog)");
  policies
    .command("list")
    .alias("ls")
    .description("list policies and the roles that use them")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/policies", { schema: policyList });
      emit(ctx, json, raw, () =>
        data.items.length === 0 ? "No policies.\n" : renderTable(POLICY_COLUMNS, data.items),
      );
    });
}
