/**
 * Invites (finding 89): `stint users invite NAME` (admin) issues a one-time code for a user without a password;
 * `stint invite accept` redeems it, the user choosing their own password, as `stint setup` does for the first admin.
 */
import type { Command } from "commander";
import { ok } from "../../contract/common.js";
import { inviteIssued, type InviteIssuedDto } from "../../contract/identity.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { emit } from "../output.js";
import { readPassword } from "../prompt.js";
import { checkNewPassword } from "./auth.js";
import { checkName, clientFor, warnIfPlainHttp } from "./shared.js";

/** What the administrator passes on to the user: the code (shown this once) and how to redeem it. */
export function inviteText(name: string, invite: InviteIssuedDto): string {
  return (
    `Invite code for ${name} (shown once; valid until ${invite.expiresAt}): ${invite.code}\n` +
    `Give it to ${name} over a channel you trust; they run: stint invite accept --user ${name}\n`
  );
}

/** `stint users invite NAME`: a new invite (the previous code stops working). */
export function registerUsersInvite(users: Command, ctx: CliContext): void {
  users
    .command("invite")
    .description("issue a one-time invite for a user without a password (replaces an earlier one)")
    .argument("<name>", "user name")
    .action(async (userName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      client.requireSession();
      const { data, raw } = await client.request("POST", `/v1/users/${segment(userName)}/invite`, {
        schema: inviteIssued,
      });
      emit(ctx, json, raw, () => inviteText(userName, data));
    });
}

export function registerInviteCommands(program: Command, ctx: CliContext): void {
  const invite = program.command("invite").description("redeem an invite: choose your own password");
  invite
    .command("accept")
    .description("choose your password with the one-time invite code an administrator gave you")
    .requiredOption("--user <name>", "your user name")
    .option("--code <code>", "the invite code (asked for, hidden, when omitted)")
    .option("--password-stdin", "read the new password as one line from stdin instead of prompting (needs --code)")
    .addHelpText("after", "\nExample:\n  stint invite accept --user alice\n")
    .action(async (options: { user: string; code?: string; passwordStdin?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const username = checkName("user name", options.user);
      if (options.passwordStdin && options.code === undefined) throw usageError("--password-stdin needs --code");
      const client = await clientFor(ctx, command, false);
      warnIfPlainHttp(ctx, client.server);
      const code = options.code ?? (await readPassword(ctx, { passwordStdin: false, label: "Invite code: " })).trim();
      const password = checkNewPassword(
        await readPassword(ctx, {
          passwordStdin: options.passwordStdin === true,
          label: `New password for ${username}: `,
          confirm: true,
        }),
      );
      const { raw } = await client.request("POST", "/v1/invites/redeem", {
        body: { username, code, password },
        auth: false,
        schema: ok,
      });
      emit(ctx, json, raw, () => `Password of ${username} set. Sign in with: stint login --user ${username}\n`);
    });
}
