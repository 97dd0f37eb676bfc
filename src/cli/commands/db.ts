/**
 * `stint db creds ROLE`: the database login Stint minted for your active activation of a role
 * with `dynamic: true`. The password is printed only here (stdout), never logged by Stint.
 */
import type { Command } from "commander";
import { dbCredentials } from "../../contract/grants.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { emit, note } from "../output.js";
import { checkName, clientFor } from "./shared.js";

export function registerDbCommands(program: Command, ctx: CliContext): void {
  const db = program.command("db").description("databases reached through Stint");
  db.command("creds")
    .description("the login minted for your active activation of a role with dynamic credentials")
    .argument("<role>", "the role you activated")
    .addHelpText(
      "after",
      "\nThe login exists until the activation ends; then it is dropped and its sessions end.\n" +
        '\nExamples:\n  stint db creds app-db-reader\n  eval "$(stint db creds app-db-reader --json | jq -r \'"export PGUSER=\\(.user) PGPASSWORD=\\(.password)"\')"\n',
    )
    .action(async (roleName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const role = checkName("role", roleName);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/me/roles/${segment(role)}/credentials`, {
        schema: dbCredentials,
      });
      emit(ctx, json, raw, () =>
        [
          `host:     ${data.host}`,
          `port:     ${data.port}`,
          ...(data.database ? [`database: ${data.database}`] : []),
          `user:     ${data.user}`,
          `password: ${data.password}`,
          `expires:  ${data.expiresAt}`,
          "",
        ].join("\n"),
      );
      if (!json) note(ctx, "The login is dropped when the activation ends; do not store the password.");
    });
}
