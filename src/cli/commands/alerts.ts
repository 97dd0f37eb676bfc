/** Anomaly alerts: the newest alerts, one alert in full, and acknowledging one (auditor, security, admin). */
import { type Command, InvalidArgumentError, Option } from "commander";
import { alert, alertList, alertRuleNames, type AlertDto } from "../../contract/alerts.js";
import { reason as reasonSchema } from "../../contract/common.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { type Column, emit, renderTable } from "../output.js";
import { clientFor } from "./shared.js";

const COLUMNS: readonly Column<AlertDto>[] = [
  { header: "ID", value: (a) => a.id },
  { header: "RAISED", value: (a) => a.raisedAt },
  { header: "SEVERITY", value: (a) => a.severity },
  { header: "RULE", value: (a) => a.rule },
  { header: "WHO", value: (a) => a.principal },
  { header: "TITLE", value: (a) => a.title },
  { header: "STATUS", value: (a) => (a.status === "open" ? "open" : `acknowledged by ${a.acknowledgedBy ?? "?"}`) },
];

function uuidArgument(value: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value))
    throw new InvalidArgumentError("must be an alert id as `stint alerts list` shows it");
  return value;
}

function limitArgument(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 500) throw new InvalidArgumentError("must be a whole number from 1 to 500");
  return n;
}

function details(a: AlertDto): string {
  const lines = [
    `${a.severity.toUpperCase()} ${a.rule}: ${a.title}`,
    a.text,
    "",
    `id:          ${a.id}`,
    `status:      ${a.status}${a.acknowledgedBy ? ` (by ${a.acknowledgedBy} at ${a.acknowledgedAt ?? "?"}${a.ackNote ? `: ${a.ackNote}` : ""})` : ""}`,
    `who:         ${a.principal ?? "-"}`,
    `about:       ${a.subject ?? "-"}`,
    `raised:      ${a.raisedAt} (audit event ${a.eventSeq} at ${a.eventTime})`,
    `action:      ${a.action}${a.reviewItemId ? ` (review item ${a.reviewItemId})` : ""}`,
  ];
  return `${lines.join("\n")}\n`;
}

export function registerAlertCommands(program: Command, ctx: CliContext): void {
  const alerts = program
    .command("alerts")
    .description("anomaly alerts raised from the audit log (auditor, security, admin)");
  alerts
    .command("list")
    .description("the newest alerts first")
    .addOption(new Option("--status <status>", "only open or acknowledged alerts").choices(["open", "acknowledged"]))
    .addOption(new Option("--rule <rule>", "only this rule's alerts").choices([...alertRuleNames]))
    .option("--user <name>", "only alerts about this user or approver")
    .option("--limit <n>", "at most this many (1-500, default 100)", limitArgument)
    .addHelpText(
      "after",
      "\nExamples:\n  stint alerts list --status open\n  stint alerts list --rule breakGlass --json\n",
    )
    .action(async (options: { status?: string; rule?: string; user?: string; limit?: number }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/alerts", {
        query: {
          ...(options.status ? { status: options.status } : {}),
          ...(options.rule ? { rule: options.rule } : {}),
          ...(options.user ? { principal: options.user } : {}),
          ...(options.limit ? { limit: String(options.limit) } : {}),
        },
        schema: alertList,
      });
      emit(ctx, json, raw, () => (data.items.length > 0 ? renderTable(COLUMNS, data.items) : "No alerts.\n"));
    });
  alerts
    .command("show")
    .description("one alert in full")
    .argument("<id>", "the alert id (stint alerts list)", uuidArgument)
    .action(async (id: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/alerts/${segment(id)}`, { schema: alert });
      emit(ctx, json, raw, () => details(data));
    });
  alerts
    .command("ack")
    .description("acknowledge an alert: seen and dealt with (recorded in the audit log)")
    .argument("<id>", "the alert id (stint alerts list)", uuidArgument)
    .option("--note <text>", "what was found or done")
    .addHelpText("after", '\nExample:\n  stint alerts ack 0193… --note "on-call lead confirmed the incident"\n')
    .action(async (id: string, options: { note?: string }, command: Command) => {
      const { json } = globalOptions(command);
      let note: string | undefined;
      if (options.note !== undefined) {
        const parsed = reasonSchema.safeParse(options.note);
        if (!parsed.success) throw usageError(`--note ${parsed.error.issues[0]?.message ?? "is not valid"}`);
        note = parsed.data;
      }
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", `/v1/alerts/${segment(id)}/ack`, {
        body: note !== undefined ? { note } : {},
        schema: alert,
      });
      emit(ctx, json, raw, () => `${data.id}: acknowledged by ${data.acknowledgedBy ?? "?"}\n`);
    });
}
