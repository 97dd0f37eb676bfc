/** Workload identity trusts: which CI jobs (OIDC issuer, audience, claims) may act as a service identity. */
import type { Command } from "commander";
import { ok } from "../../contract/common.js";
import { trust, trustList, type TrustDto } from "../../contract/workload.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { type Column, emit, renderTable } from "../output.js";
import { checkName, clientFor, durationArgument } from "./shared.js";

/** `--claim repository=acme/app` → ["repository", "acme/app"]; repeated flags collect into a record. */
function claimArgument(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf("=");
  if (at <= 0 || at === value.length - 1) throw usageError(`--claim takes NAME=VALUE (or a glob), not ${value}`);
  const name = value.slice(0, at);
  if (Object.hasOwn(previous, name)) throw usageError(`--claim ${name} is given twice`);
  return { ...previous, [name]: value.slice(at + 1) };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function registerTrustCommands(program: Command, ctx: CliContext): void {
  const trusts = program
    .command("trusts")
    .description("workload identity: the CI jobs (OIDC issuer, audience, claims) a service identity trusts");

  trusts
    .command("list")
    .alias("ls")
    .description("list a service identity's trusts")
    .argument("<service>", "the service identity")
    .action(async (service: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request(
        "GET",
        `/v1/services/${segment(checkName("service", service))}/trusts`,
        {
          schema: trustList,
        },
      );
      const columns: readonly Column<TrustDto>[] = [
        { header: "NAME", value: (t) => t.name },
        { header: "ISSUER", value: (t) => t.issuer },
        { header: "AUDIENCES", value: (t) => t.audiences.join(",") },
        {
          header: "CLAIMS",
          value: (t) =>
            Object.entries(t.conditions)
              .map(([k, v]) => `${k}=${v}`)
              .join(" "),
        },
        { header: "TOKEN TTL", value: (t) => `${Math.round(t.tokenTtlMs / 60_000)}m` },
      ];
      emit(ctx, json, raw, () => (data.items.length === 0 ? "No trusts.\n" : renderTable(columns, data.items)));
    });

  trusts
    .command("add")
    .description(
      "let CI jobs whose OIDC token matches act as a service identity (stint login --token-exchange-from-env)",
    )
    .argument("<service>", "the service identity")
    .requiredOption("--name <name>", "the trust's name, e.g. main-deploys")
    .requiredOption("--issuer <url>", "the OIDC issuer, e.g. https://token.actions.githubusercontent.com")
    .requiredOption("--audience <aud>", "an audience the job's token must carry (repeatable)", collect)
    .requiredOption(
      "--claim <name=value>",
      "a claim that must match, exactly or as a * / ? glob (repeatable)",
      claimArgument,
    )
    .option("--token-ttl <duration>", "lifetime of the Stint token a job gets (1m–60m, default 15m)", durationArgument)
    .addHelpText(
      "after",
      "\nExample (GitHub Actions, deploys from main only):\n" +
        "  stint trusts add deploy-bot --name main-deploys \\\n" +
        "    --issuer https://token.actions.githubusercontent.com --audience https://stint.example.com \\\n" +
        "    --claim repository=acme/app --claim ref=refs/heads/main\n",
    )
    .action(
      async (
        service: string,
        options: { name: string; issuer: string; audience: string[]; claim: Record<string, string>; tokenTtl?: string },
        command: Command,
      ) => {
        const { json } = globalOptions(command);
        const client = await clientFor(ctx, command);
        const { data, raw } = await client.request(
          "POST",
          `/v1/services/${segment(checkName("service", service))}/trusts`,
          {
            body: {
              name: checkName("trust name", options.name),
              issuer: options.issuer,
              audiences: options.audience,
              conditions: options.claim,
              ...(options.tokenTtl !== undefined ? { tokenTtl: options.tokenTtl } : {}),
            },
            schema: trust,
          },
        );
        emit(
          ctx,
          json,
          raw,
          () => `Added trust ${data.name} to ${data.service}: jobs from ${data.issuer} may act as it.\n`,
        );
      },
    );

  trusts
    .command("remove")
    .alias("rm")
    .description(
      "remove a trust (tokens already exchanged live until they expire; revoke them with stint tokens revoke)",
    )
    .argument("<service>", "the service identity")
    .argument("<name>", "the trust's name")
    .action(async (service: string, name: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { raw } = await client.request(
        "DELETE",
        `/v1/services/${segment(checkName("service", service))}/trusts/${segment(name)}`,
        { schema: ok },
      );
      emit(ctx, json, raw, () => `Removed trust ${name} from ${service}.\n`);
    });
}
