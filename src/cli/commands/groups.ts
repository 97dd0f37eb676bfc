/** Groups of principals, used for eligibility and approvers: create, list, add, remove. */
import type { Command } from "commander";
import { isHeldWrite } from "../../contract/catalog-api.js";
import { group, groupList } from "../../contract/identity.js";
import type { z } from "zod";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { type Column, emit, renderTable } from "../output.js";
import { checkName, clientFor } from "./shared.js";

const GROUP_COLUMNS: readonly Column<z.infer<typeof group>>[] = [
  { header: "NAME", value: (entry) => entry.name },
  { header: "MEMBERS", value: (entry) => entry.members },
  { header: "DESCRIPTION", value: (entry) => entry.description },
];

export function registerGroupCommands(program: Command, ctx: CliContext): void {
  const groups = program.command("groups").description("groups of users and services");

  groups
    .command("create")
    .description("create a group")
    .argument("<name>", "lower-case group name")
    .option("--description <text>", "what the group is for")
    .addHelpText("after", '\nExample:\n  stint groups create dba --description "database administrators"\n')
    .action(async (groupName: string, options: { description?: string }, command: Command) => {
      const { json } = globalOptions(command);
      const checked = checkName("group name", groupName);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/groups", {
        body: { name: checked, ...(options.description !== undefined ? { description: options.description } : {}) },
        schema: group,
      });
      emit(ctx, json, raw, () => `Created group ${data.name}.\n`);
    });

  groups
    .command("list")
    .alias("ls")
    .description("list groups and their members")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/groups", { schema: groupList });
      emit(ctx, json, raw, () => (data.items.length === 0 ? "No groups.\n" : renderTable(GROUP_COLUMNS, data.items)));
    });

  groups
    .command("add")
    .description("add a user or service to a group")
    .argument("<group>", "group name")
    .argument("<principal>", "user or service name")
    .addHelpText("after", "\nExample:\n  stint groups add dba alice\n")
    .action(async (groupName: string, principalName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const member = checkName("principal", principalName);
      const client = await clientFor(ctx, command);
      const { raw } = await client.request("POST", `/v1/groups/${segment(groupName)}/members`, {
        body: { principal: member },
      });
      const held = isHeldWrite(raw) ? raw.changeRequest : null;
      emit(ctx, json, raw, () =>
        held
          ? `Held for a second admin (four-eyes: adding ${member} to ${groupName} widens access at risk ${held.tier}); ` +
            "nothing was changed.\n" +
            `Change request ${held.id}, pending until ${held.expiresAt}: another admin runs \`stint changes approve ${held.id}\`.\n`
          : `Added ${member} to ${groupName}.\n`,
      );
    });

  groups
    .command("remove")
    .alias("rm")
    .description("remove a user or service from a group")
    .argument("<group>", "group name")
    .argument("<principal>", "user or service name")
    .action(async (groupName: string, principalName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { raw } = await client.request(
        "DELETE",
        `/v1/groups/${segment(groupName)}/members/${segment(principalName)}`,
      );
      emit(ctx, json, raw, () => `Removed ${principalName} from ${groupName}.\n`);
    });
}
