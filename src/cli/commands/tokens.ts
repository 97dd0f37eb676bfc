/** API tokens for service identities (CI jobs, automation): create, list, revoke. */
import type { Command } from "commander";
import type { z } from "zod";
import { apiToken, createdToken, tokenList } from "../../contract/identity.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { type Column, emit, note, renderTable, sanitize, warn } from "../output.js";
import { checkName, clientFor, durationArgument } from "./shared.js";

type ApiToken = z.infer<typeof apiToken>;

function tokenStatus(token: ApiToken, now: number): string {
  if (token.revokedAt) return "revoked";
  return Date.parse(token.expiresAt) <= now ? "expired" : "active";
}

/** The minter, and whether they left: `alice`, `alice (disabled)`; `-` when Stint itself minted it. */
function minterText(token: ApiToken): string {
  if (!token.minter) return "-";
  return token.minter.status === "active" ? token.minter.name : `${token.minter.name} (${token.minter.status})`;
}

export function registerTokenCommands(program: Command, ctx: CliContext): void {
  const tokens = program.command("tokens").description("API tokens for service identities");

  tokens
    .command("create")
    .description("create an API token that acts as a service identity; it is shown only once")
    .argument("<name>", "lower-case token name, e.g. the job that uses it")
    .requiredOption("--for <service>", "the service identity the token acts as")
    .option("--expires-in <duration>", "lifetime: 30s, 15m, 2h, 1d …", durationArgument, "30d")
    .addHelpText(
      "after",
      "\nThe token alone goes to stdout, so it can be captured; everything else goes to stderr.\n" +
        "\nExample:\n  TOKEN=$(stint tokens create github-deploy --for deploy-bot --expires-in 7d)\n",
    )
    .action(async (tokenName: string, options: { for: string; expiresIn: string }, command: Command) => {
      const { json } = globalOptions(command);
      const checked = checkName("token name", tokenName);
      const service = checkName("service", options.for);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/tokens", {
        body: { name: checked, principal: service, expiresIn: options.expiresIn },
        schema: createdToken,
      });
      if (!json)
        note(ctx, `Created token ${data.name} (id ${data.id}) for ${data.principal}, expires ${data.expiresAt}.`);
      warn(ctx, "this token is shown only once and cannot be shown again; store it now.");
      emit(ctx, json, raw, () => `${sanitize(data.token)}\n`);
    });

  tokens
    .command("list")
    .alias("ls")
    .description("list API tokens (never their secrets) and who minted them")
    .option("--minted-by <user>", "only the tokens this person minted (a leaver's, say)")
    .option("--minter-left", "only the tokens whose minter is disabled or deprovisioned (they stay valid)")
    .addHelpText(
      "after",
      "\nA token outlives its minter leaving; MINTED BY says `(disabled)` or `(deprovisioned)` then.\n" +
        "\nExamples:\n  stint tokens list --minted-by alice\n  stint tokens list --minter-left --json\n",
    )
    .action(async (options: { mintedBy?: string; minterLeft?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const mintedBy = options.mintedBy === undefined ? undefined : checkName("--minted-by", options.mintedBy);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/tokens", {
        query: { mintedBy, minter: options.minterLeft ? "left" : undefined },
        schema: tokenList,
      });
      const now = ctx.now();
      const columns: readonly Column<ApiToken>[] = [
        { header: "ID", value: (token) => token.id },
        { header: "NAME", value: (token) => token.name },
        { header: "FOR", value: (token) => token.principal },
        { header: "MINTED BY", value: (token) => minterText(token) },
        { header: "STATUS", value: (token) => tokenStatus(token, now) },
        { header: "EXPIRES", value: (token) => token.expiresAt },
        { header: "LAST USED", value: (token) => token.lastUsedAt },
      ];
      emit(ctx, json, raw, () => (data.items.length === 0 ? "No tokens.\n" : renderTable(columns, data.items)));
    });

  tokens
    .command("revoke")
    .description("revoke an API token at once")
    .argument("<id>", "the token's id (see `stint tokens list`)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { raw } = await client.request("DELETE", `/v1/tokens/${segment(id)}`);
      emit(ctx, json, raw, () => `Revoked token ${id}.\n`);
    });
}
