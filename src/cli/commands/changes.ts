/**
 * Four-eyes change requests (`stint changes list|show|approve|deny`): a configuration file whose plan widens
 * access waits for a second admin; `stint apply` prints its id. The diff shown is the plan `stint diff` shows.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { changeRequest, changeRequestList, type ChangeRequestDto } from "../../contract/change-requests.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { type Column, emit, renderTable, sanitize } from "../output.js";
import { approverMfaColumn, inboxStepUpNote } from "./access-wording.js";
import { renderPlan } from "./config.js";
import { clientFor } from "./shared.js";
import { withStepUp } from "./step-up.js";

const COLUMNS: readonly Column<ChangeRequestDto>[] = [
  { header: "ID", value: (c) => c.id },
  { header: "STATUS", value: (c) => c.status },
  { header: "TIER", value: (c) => c.tier },
  { header: "AUTHOR", value: (c) => c.author },
  {
    header: "CHANGES",
    value: (c) => `+${c.plan.summary.create} ~${c.plan.summary.update} -${c.plan.summary.delete}`,
  },
  { header: "EXPIRES", value: (c) => c.expiresAt },
  // What approving asks of your own MFA now (fourEyes.approverMfa), where you may approve it: a hint.
  { header: "MFA TO APPROVE", value: approverMfaColumn },
];

function idArgument(value: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value))
    throw new InvalidArgumentError("must be an id as `stint changes list` shows it");
  return value;
}

/** A change request for people: who, what state, why it was held, then the diff. */
export function renderChangeRequest(c: ChangeRequestDto): string {
  const lines = [
    `Change request ${c.id}: ${c.status} (${c.tier})`,
    `  by ${sanitize(c.author)} at ${c.createdAt}; expires ${c.expiresAt}`,
  ];
  if (c.decidedBy)
    lines.push(`  decided by ${sanitize(c.decidedBy)} at ${c.decidedAt}${c.reason ? `: ${sanitize(c.reason)}` : ""}`);
  const widening = c.assessment.filter((a) => a.effect === "widens");
  if (widening.length > 0) {
    lines.push("Widens access:");
    for (const a of widening)
      lines.push(`  ${a.kind} ${sanitize(a.name)} (${a.tier ?? "no role"}): ${sanitize(a.reasons.join("; "))}`);
  }
  lines.push("Plan:");
  return `${lines.join("\n")}\n${renderPlan(c.plan)}`;
}

export function registerChangeCommands(program: Command, ctx: CliContext): void {
  const changes = program
    .command("changes")
    .description("four-eyes change requests: applies that widen access, waiting for a second admin");

  changes
    .command("list")
    .alias("ls")
    .description("list change requests (pending ones unless --status says otherwise)")
    .addOption(
      new Option("--status <status>", "which ones")
        .choices(["pending", "applied", "denied", "expired", "stale", "all"])
        .default("pending"),
    )
    .action(async (options: { status: string }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/change-requests?status=${segment(options.status)}`, {
        schema: changeRequestList,
      });
      emit(ctx, json, raw, () =>
        data.items.length === 0
          ? `No ${options.status === "all" ? "" : `${options.status} `}change requests.\n`
          : renderTable(COLUMNS, data.items) +
            inboxStepUpNote(data.items, {
              one: "change request",
              many: "change requests",
              approve: "stint changes approve <id> --otp -",
            }),
      );
    });

  changes
    .command("show")
    .description("show a change request: why it is held and its diff")
    .argument("<id>", "the change request id (stint changes list)", idArgument)
    .action(async (id: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/change-requests/${segment(id)}`, {
        schema: changeRequest,
      });
      emit(ctx, json, raw, () => renderChangeRequest(data));
    });

  for (const [verb, help] of [
    ["approve", "approve another admin's change request: it is applied now, or not at all"],
    ["deny", "deny a change request (its author may withdraw their own): nothing of it is applied"],
  ] as const) {
    const sub = changes
      .command(verb)
      .description(help)
      .argument("<id>", "the change request id (stint changes list)", idArgument)
      .option("--reason <text>", "why (recorded in the audit log)");
    // fourEyes.approverMfa may ask the approving admin for a recent MFA check; a denial needs none.
    if (verb === "approve")
      sub.option(
        "--otp <code>",
        "- to read a fresh one-time code from stdin, where approving needs a recent MFA check",
      );
    sub
      .addHelpText(
        "after",
        `\nExample:\n  stint changes show 0192… && stint changes ${verb} 0192… --reason "reviewed"\n`,
      )
      .action(async (id: string, options: { reason?: string; otp?: string }, command: Command) => {
        const { json } = globalOptions(command);
        const client = await clientFor(ctx, command);
        const { data, raw } = await withStepUp(ctx, client, options.otp, () =>
          client.request("POST", `/v1/change-requests/${segment(id)}/${verb}`, {
            body: options.reason ? { reason: options.reason } : {},
            schema: changeRequest,
          }),
        );
        emit(ctx, json, raw, () =>
          data.status === "applied"
            ? `Applied change request ${data.id}: ${data.plan.changes.length} change${data.plan.changes.length === 1 ? "" : "s"}.\n`
            : `Change request ${data.id}: ${data.status}.\n`,
        );
      });
  }
}
