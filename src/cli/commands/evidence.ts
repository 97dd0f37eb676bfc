/**
 * The evidence report for auditors: who had privileged access to a role or target between two dates, approved by
 * whom, with what justification, what they did (sessions, recordings' hashes), and the SLIs. The server audits
 * the report's SHA-256; this command prints it on stderr so the file handed on can be matched to the audit log.
 */
import { createHash } from "node:crypto";
import { type Command, Option } from "commander";
import { evidenceReport } from "../../contract/evidence.js";
import { writeWithBackpressure } from "../bounded-body.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { note } from "../output.js";
import { clientFor, sinceToIso } from "./shared.js";

/** A point in time: an ISO time, a date (midnight UTC), or a duration ago (30d). */
function timeOption(flag: string, text: string, now: number): string {
  try {
    return sinceToIso(text, now);
  } catch {
    throw usageError(
      `${flag} "${text}" is neither a date (2027-01-31), an ISO time with an offset, nor a duration ago (30d)`,
    );
  }
}

export function registerEvidenceCommands(program: Command, ctx: CliContext): void {
  program
    .command("evidence")
    .description(
      "who had privileged access, approved by whom, why, and what they did, with the SLIs (auditor, security, admin)",
    )
    .requiredOption("--from <time>", "start of the period: 2027-01-01, an ISO time, or a duration ago (90d)")
    .option("--to <time>", "end of the period (exclusive); default now")
    .option("--role <role>", "only this role")
    .option("--target <target>", "only this target")
    .addOption(new Option("--format <format>", "json or csv").choices(["json", "csv"]).default("json"))
    .addHelpText(
      "after",
      "\nThe report's SHA-256 is printed on stderr and recorded in the audit log (evidence.report).\n" +
        "\nExamples:\n  stint evidence --role prod-db-admin --from 2027-01-01 --to 2027-04-01 --format csv > q1.csv\n" +
        "  stint evidence --target app-db --from 30d\n",
    )
    .action(
      async (
        options: { from: string; to?: string; role?: string; target?: string; format: "json" | "csv" },
        command: Command,
      ) => {
        globalOptions(command);
        const now = ctx.now();
        const query: Record<string, string> = {
          from: timeOption("--from", options.from, now),
          to: options.to === undefined ? new Date(now).toISOString() : timeOption("--to", options.to, now),
          format: options.format,
        };
        if (options.role) query.role = options.role;
        if (options.target) query.target = options.target;
        if (Date.parse(query.from!) >= Date.parse(query.to!)) throw usageError("--from must be before --to");
        const client = await clientFor(ctx, command);
        if (options.format === "csv") {
          // Written as it comes (one chunk in memory), hashed on the way: a report has no size to cap it by.
          const body = await client.stream("/v1/evidence", query);
          const hash = createHash("sha256");
          for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
            hash.update(chunk);
            await writeWithBackpressure(ctx.stdout, chunk);
          }
          note(ctx, `SHA-256 ${hash.digest("hex")} (recorded in the audit log)`);
          return;
        }
        const { data, raw } = await client.request("GET", "/v1/evidence", { query, schema: evidenceReport });
        ctx.stdout.write(`${JSON.stringify(raw, null, 2)}\n`);
        note(ctx, `${data.activations.length} activation(s); SHA-256 ${data.sha256} (recorded in the audit log)`);
      },
    );
}
