/** Access review campaigns: my inbox, a campaign's items and progress, decisions, closing, and an evidence export. */
import { Argument, type Command, InvalidArgumentError, Option } from "commander";
import {
  campaignDetail,
  campaignList,
  reviewItem,
  reviewItemList,
  type CampaignDto,
  type ReviewItemDto,
} from "../../contract/reviews.js";
import { reason as reasonSchema } from "../../contract/common.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { type Column, emit, renderTable } from "../output.js";
import { clientFor } from "./shared.js";

const ITEM_COLUMNS: readonly Column<ReviewItemDto>[] = [
  { header: "ID", value: (i) => i.id },
  { header: "ROLE", value: (i) => i.role ?? i.kind },
  { header: "MEMBER", value: (i) => i.member ?? i.subject },
  { header: "EVIDENCE", value: (i) => i.evidence?.recommendationText ?? i.reason },
  { header: "DUE", value: (i) => i.dueAt },
  {
    header: "STATE",
    value: (i) => (i.status === "open" ? `open (missed: ${i.onMissed ?? "keep"})` : (i.outcome ?? "closed")),
  },
];

const CAMPAIGN_COLUMNS: readonly Column<CampaignDto>[] = [
  { header: "ID", value: (c) => c.id },
  { header: "NAME", value: (c) => c.name },
  { header: "STATUS", value: (c) => c.status },
  { header: "PROGRESS", value: (c) => `${c.progress.decided}/${c.progress.total}` },
  { header: "DUE", value: (c) => c.dueAt },
];

function uuidArgument(value: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value))
    throw new InvalidArgumentError("must be an id as `stint reviews list` shows it");
  return value;
}

const CSV_FIELDS = [
  "id",
  "role",
  "member",
  "status",
  "outcome",
  "reviewers",
  "closedBy",
  "closedAt",
  "decisionReason",
  "recommendation",
  "lastActivationAt",
  "activationsInPeriod",
  "lastSignInAt",
] as const;

function csvCell(value: unknown): string {
  const text = value === null || value === undefined ? "" : Array.isArray(value) ? value.join(" ") : String(value);
  // Quote always; a leading = + - @ is prefixed so a spreadsheet does not run it as a formula.
  const safe = /^[=+\-@]/.test(text) ? `'${text}` : text;
  return `"${safe.replace(/"/g, '""')}"`;
}

export function itemsCsv(items: readonly ReviewItemDto[]): string {
  const rows = items.map((i) =>
    [
      i.id,
      i.role,
      i.member,
      i.status,
      i.outcome,
      i.reviewers,
      i.closedBy,
      i.closedAt,
      i.decisionReason,
      i.evidence?.recommendation,
      i.evidence?.lastActivationAt,
      i.evidence?.activationsInPeriod,
      i.evidence?.lastSignInAt,
    ]
      .map(csvCell)
      .join(","),
  );
  return `${[CSV_FIELDS.join(","), ...rows].join("\n")}\n`;
}

export function registerReviewCommands(program: Command, ctx: CliContext): void {
  const reviews = program.command("reviews").description("access review campaigns: your inbox, decisions, campaigns");
  reviews
    .command("list")
    .description("the review items waiting for you (or, with --campaigns, every campaign)")
    .option("--campaigns", "list campaigns instead of your items (auditor, security, admin)")
    .addHelpText("after", "\nExample:\n  stint reviews list\n  stint reviews list --campaigns\n")
    .action(async (options: { campaigns?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      if (options.campaigns) {
        const { data, raw } = await client.request("GET", "/v1/reviews/campaigns", { schema: campaignList });
        emit(ctx, json, raw, () =>
          data.items.length === 0 ? "No review campaigns.\n" : renderTable(CAMPAIGN_COLUMNS, data.items),
        );
        return;
      }
      const { data, raw } = await client.request("GET", "/v1/reviews/items", { schema: reviewItemList });
      emit(ctx, json, raw, () =>
        data.items.length === 0 ? "Nothing waiting for your review.\n" : renderTable(ITEM_COLUMNS, data.items),
      );
    });
  reviews
    .command("show")
    .description("a campaign: its progress and every item with its evidence and outcome")
    .argument("<campaign>", "the campaign id", uuidArgument)
    .action(async (campaign: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/reviews/campaigns/${segment(campaign)}`, {
        schema: campaignDetail,
      });
      emit(
        ctx,
        json,
        raw,
        () =>
          `${data.name} (${data.status}): ${data.progress.decided} of ${data.progress.total} decided, due ${data.dueAt}\n` +
          (data.items.length > 0 ? renderTable(ITEM_COLUMNS, data.items) : "No items.\n"),
      );
    });
  reviews
    .command("decide")
    .description(
      "keep or remove the access a review item is about (remove ends it at once); acknowledge or escalate a break-glass item",
    )
    .argument("<item>", "the item id (stint reviews list)", uuidArgument)
    .addArgument(
      new Argument("<decision>", "keep or remove (eligibility), acknowledge or escalate (break-glass)").choices([
        "keep",
        "remove",
        "acknowledge",
        "escalate",
      ]),
    )
    .requiredOption("--reason <text>", "why, or the finding for a break-glass item (recorded in the audit log)")
    .addHelpText(
      "after",
      '\nExamples:\n  stint reviews decide 0192… remove --reason "moved to another team"\n' +
        '  stint reviews decide 0193… acknowledge --reason "restart of the primary during INC-4242, as logged"\n',
    )
    .action(async (item: string, decision: string, options: { reason: string }, command: Command) => {
      const { json } = globalOptions(command);
      const reason = reasonSchema.safeParse(options.reason);
      if (!reason.success) throw usageError(`--reason ${reason.error.issues[0]?.message ?? "is not valid"}`);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", `/v1/reviews/items/${segment(item)}/decision`, {
        body: { decision, reason: reason.data },
        schema: reviewItem,
      });
      emit(ctx, json, raw, () => `${data.subject}: ${data.outcome ?? data.status}\n`);
    });
  reviews
    .command("close")
    .description("close a campaign now: undecided items are applied as at the due date (security, admin)")
    .argument("<campaign>", "the campaign id", uuidArgument)
    .action(async (campaign: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", `/v1/reviews/campaigns/${segment(campaign)}/close`, {
        schema: campaignDetail,
      });
      emit(ctx, json, raw, () => `${data.name} closed: ${data.progress.total} item(s).\n`);
    });
  reviews
    .command("export")
    .description("a campaign's items, decisions and evidence as CSV (default) or JSON, for auditors")
    .argument("<campaign>", "the campaign id", uuidArgument)
    .addOption(new Option("--format <format>", "csv or json").choices(["csv", "json"]).default("csv"))
    .action(async (campaign: string, options: { format: "csv" | "json" }, command: Command) => {
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/reviews/campaigns/${segment(campaign)}`, {
        schema: campaignDetail,
      });
      ctx.stdout.write(options.format === "json" ? `${JSON.stringify(raw, null, 2)}\n` : itemsCsv(data.items));
    });
}
