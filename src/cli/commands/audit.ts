/** The audit log: verify the hash chain, export it for a SIEM, list recent events. */
import { createWriteStream } from "node:fs";
import { readFile, rename, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { randomBytes } from "node:crypto";
import { type Command, Option } from "commander";
import type { z } from "zod";
import { auditAnchor, auditEvent, auditPage, verifyResult } from "../../contract/audit.js";
import { writeWithBackpressure } from "../bounded-body.js";
import { globalOptions, type CliContext } from "../context.js";
import { CliError } from "../exit-codes.js";
import { type Column, emit, note, renderTable } from "../output.js";
import { clientFor, integerIn, sinceToIso } from "./shared.js";

type AuditEvent = z.infer<typeof auditEvent>;

const EVENT_COLUMNS: readonly Column<AuditEvent>[] = [
  { header: "SEQ", value: (event) => event.seq },
  { header: "TIME", value: (event) => event.time },
  { header: "ACTOR", value: (event) => event.actor },
  { header: "ACTION", value: (event) => event.action },
  { header: "SUBJECT", value: (event) => event.subject },
  { header: "OUTCOME", value: (event) => event.outcome },
  { header: "REASON", value: (event) => event.reason },
];

/** Writes a chunk and waits when the stream asks us to (a slow pipe reader). */
function streamBroke(error: unknown): CliError {
  return new CliError("SERVER_UNREACHABLE", `the export stream broke off: ${(error as Error).message}`);
}

/** Streams into `file` through a 0600 temporary file next to it, renamed into place only when complete. */
async function exportToFile(body: ReadableStream<Uint8Array>, file: string): Promise<void> {
  const target = path.resolve(file);
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString("hex")}.part`);
  let writeFailed = false;
  const destination = createWriteStream(temporary, { flags: "wx", mode: 0o600 });
  destination.once("error", () => (writeFailed = true));
  try {
    await pipeline(Readable.fromWeb(body as NodeReadableStream<Uint8Array>), destination);
    await rename(temporary, target);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    if (writeFailed || (error as NodeJS.ErrnoException).syscall !== undefined) {
      throw new CliError("USAGE", `cannot write ${file}: ${(error as Error).message}`);
    }
    throw streamBroke(error);
  }
}

/** Reads and checks an anchor file (the server's STINT_AUDIT_ANCHOR_FILE, `stint audit anchor`, or an exported line). */
async function readAnchor(file: string): Promise<z.infer<typeof auditAnchor>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new CliError("USAGE", `cannot read ${file}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError("USAGE", `${file} is not an audit anchor: it is not JSON`);
  }
  const result = auditAnchor.safeParse(parsed);
  if (!result.success) {
    const fields = [...new Set(result.error.issues.map((issue) => issue.path.join(".") || "(the file)"))];
    throw new CliError("USAGE", `${file} is not an audit anchor: check ${fields.join(", ")}`);
  }
  return result.data;
}

export function registerAuditCommands(program: Command, ctx: CliContext): void {
  const audit = program.command("audit").description("the hash-chained audit log (auditor, admin)");

  audit
    .command("verify")
    .description(
      "check the hash chain, the required signed checkpoints and an anchor kept elsewhere; exit 3 when broken",
    )
    .option(
      "--anchor <file>",
      "also check that the log still holds this signed head (an anchor file kept outside Stint)",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  stint audit verify\n  stint audit verify --anchor /mnt/worm/stint/anchor-20260301T090000Z.json\n",
    )
    .action(async (options: { anchor?: string }, command: Command) => {
      const { json } = globalOptions(command);
      const anchor = options.anchor === undefined ? undefined : await readAnchor(options.anchor);
      const client = await clientFor(ctx, command);
      const { data, raw } =
        anchor === undefined
          ? await client.request("GET", "/v1/audit/verify", { schema: verifyResult })
          : await client.request("POST", "/v1/audit/verify", { body: { anchor }, schema: verifyResult });
      if (data.ok) {
        emit(
          ctx,
          json,
          raw,
          () =>
            `OK: ${data.count} events verified (head seq ${data.headSeq}, ${data.checkpoints} signed checkpoints)` +
            `${data.anchorSeq === undefined ? "" : `, anchored at seq ${data.anchorSeq}`}` +
            `${data.pending ? `; ${data.pending} newer events still waiting to be chained` : ""}\n`,
        );
        return;
      }
      emit(ctx, json, raw, () => `BROKEN at seq ${data.brokenSeq}: ${data.problem}\n`);
      throw new CliError("AUDIT_CHAIN_BROKEN", data.problem, { reported: true });
    });

  audit
    .command("anchor")
    .description("the latest signed head of the audit log, to keep outside Stint for `audit verify --anchor`")
    .option("--output <file>", "write it to this file (replaced atomically) instead of stdout")
    .addHelpText("after", "\nExample:\n  stint audit anchor --output anchor-$(date -u +%s).json\n")
    .action(async (options: { output?: string }, command: Command) => {
      const client = await clientFor(ctx, command);
      const { data } = await client.request("GET", "/v1/audit/anchor", { schema: auditAnchor });
      const text = `${JSON.stringify(data, null, 2)}\n`;
      if (options.output === undefined) {
        ctx.stdout.write(text);
        return;
      }
      const target = path.resolve(options.output);
      const temporary = path.join(
        path.dirname(target),
        `.${path.basename(target)}.${randomBytes(6).toString("hex")}.part`,
      );
      try {
        await writeFile(temporary, text, { flag: "wx", mode: 0o644 });
        await rename(temporary, target);
      } catch (error) {
        await unlink(temporary).catch(() => undefined);
        throw new CliError("USAGE", `cannot write ${options.output}: ${(error as Error).message}`);
      }
      note(ctx, `Wrote ${options.output} (seq ${data.seq}).`);
    });

  audit
    .command("export")
    .description("stream the audit log as JSON lines, CEF or OCSF, to stdout or a file")
    .addOption(
      new Option("--format <format>", "output format").choices(["jsonl", "cef", "ocsf"] as const).default("jsonl"),
    )
    .option("--since <time>", "only events at or after this time: ISO 8601, a date, or a duration back (24h, 7d)")
    .option("--output <file>", "write to this file (created 0600, complete or not at all) instead of stdout")
    .addHelpText(
      "after",
      "\nExamples:\n  stint audit export --format cef --since 24h >> /var/log/stint.cef\n" +
        "  stint audit export --format ocsf --since 2025-01-01T00:00:00Z --output audit.ocsf.jsonl\n",
    )
    .action(async (options: { format: string; since?: string; output?: string }, command: Command) => {
      const since = options.since === undefined ? undefined : sinceToIso(options.since, ctx.now());
      const client = await clientFor(ctx, command);
      const body = await client.stream("/v1/audit/export", { format: options.format, since });
      if (options.output !== undefined) {
        await exportToFile(body, options.output);
        note(ctx, `Wrote ${options.output}.`);
        return;
      }
      try {
        for await (const chunk of body) await writeWithBackpressure(ctx.stdout, chunk);
      } catch (error) {
        throw streamBroke(error);
      }
    });

  audit
    .command("list")
    .alias("ls")
    .description("list audit events, oldest first")
    .option("--limit <n>", "at most this many events (1-1000)", integerIn(1, 1000), 50)
    .option("--after-seq <seq>", "only events after this sequence number", integerIn(0, Number.MAX_SAFE_INTEGER))
    .option("--since <time>", "only events at or after this time: ISO 8601, a date, or a duration back (24h)")
    .option("--actor <name>", "only events by this actor (alice, system:scheduler)")
    .option("--action <action>", "only this action (request.approved), or a prefix ending with * (request.*)")
    .option("--role <role>", "only events about this role")
    .addHelpText(
      "after",
      "\nExamples:\n  stint audit list --since 1h --limit 20\n  stint audit list --actor carol --action 'request.*' --role prod-db-reader\n",
    )
    .action(
      async (
        options: { limit: number; afterSeq?: number; since?: string; actor?: string; action?: string; role?: string },
        command: Command,
      ) => {
        const { json } = globalOptions(command);
        const since = options.since === undefined ? undefined : sinceToIso(options.since, ctx.now());
        const client = await clientFor(ctx, command);
        const { data, raw } = await client.request("GET", "/v1/audit/events", {
          query: {
            afterSeq: options.afterSeq,
            since,
            actor: options.actor,
            action: options.action,
            role: options.role,
            limit: options.limit,
          },
          schema: auditPage,
        });
        emit(ctx, json, raw, () => (data.items.length === 0 ? "No events.\n" : renderTable(EVENT_COLUMNS, data.items)));
        if (!json && data.nextAfterSeq !== null)
          note(ctx, `More: stint audit list --after-seq ${data.nextAfterSeq} --limit ${options.limit}`);
      },
    );
}
