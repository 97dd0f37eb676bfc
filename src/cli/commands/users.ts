/** Managing principals (people and services): create, list, show, update, disable, enable, passwords. */
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { reason as reasonSchema } from "../../contract/common.js";
import { z } from "zod";
import { isHeldWrite, type ChangeRequestRefDto } from "../../contract/catalog-api.js";
import {
  createdUser,
  heldUserWrite,
  platformRole,
  principal,
  principalList,
  type PrincipalDto,
} from "../../contract/identity.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { type Column, emit, renderTable } from "../output.js";
import { isInteractive, readPassword } from "../prompt.js";
import { checkNewPassword, describePrincipal } from "./auth.js";
import { checkName, clientFor } from "./shared.js";
import { inviteText, registerUsersInvite } from "./invite.js";

const ROLES = platformRole.options.join(", ");

/** `--role` may repeat and may hold a comma-separated list. */
function collectRoles(value: string, previous: string[] | undefined): string[] {
  const roles = value
    .split(",")
    .map((role) => role.trim())
    .filter((role) => role !== "");
  for (const role of roles) {
    if (!platformRole.safeParse(role).success) throw new InvalidArgumentError(`"${role}" is not one of ${ROLES}`);
  }
  return [...new Set([...(previous ?? []), ...roles])];
}

/** An empty string clears a field (sends null). */
function orNull(value: string | undefined): string | null | undefined {
  if (value === undefined) return undefined;
  return value.trim() === "" ? null : value;
}

/** A user write's answer: the user, or (202) the user as it is now and the change request holding approver roles. */
const userOrHeld = z.union([heldUserWrite, principal]);

/** What a write four-eyes held says (finding 81): nothing of it happened yet, and who may approve it. */
function heldText(what: string, held: ChangeRequestRefDto): string {
  return (
    `Held for a second approver (four-eyes: ${what}).\n` +
    `Change request ${held.id}, pending until ${held.expiresAt}: another admin or security user runs ` +
    `\`stint changes approve ${held.id}\`.\n`
  );
}

const USER_COLUMNS: readonly Column<PrincipalDto>[] = [
  { header: "NAME", value: (user) => user.name },
  { header: "KIND", value: (user) => user.kind },
  { header: "STATUS", value: (user) => user.status },
  // A disable from before who disabled was kept is an administrator's, as `users show` says.
  {
    header: "DISABLED BY",
    value: (user) => (user.status === "disabled" ? (user.disabledBy ?? "an administrator") : null),
  },
  { header: "ROLES", value: (user) => user.platformRoles },
  { header: "MFA", value: (user) => user.mfaEnrolled },
  { header: "EMAIL", value: (user) => user.email },
  { header: "GROUPS", value: (user) => user.groups },
];

interface CreateOptions {
  email?: string;
  manager?: string;
  displayName?: string;
  service?: boolean;
  role?: string[];
  passwordStdin?: boolean;
  invite?: boolean;
}

interface UpdateOptions {
  email?: string;
  manager?: string;
  displayName?: string;
  role?: string[];
}

export function registerUserCommands(program: Command, ctx: CliContext): void {
  const users = program.command("users").description("people and service identities (admin)");

  users
    .command("create")
    .description("create a user, or a service identity with --service")
    .argument("<name>", "lower-case name: a-z, 0-9, '.', '_' or '-'")
    .option("--email <email>", "email address")
    .option("--manager <name>", "the user's manager (a user name)")
    .option("--display-name <text>", "full name to show")
    .option("--service", "a non-human identity (for API tokens); it has no password")
    .option("--role <role>", `platform role, repeatable: ${ROLES} (default: user)`, collectRoles)
    .option("--password-stdin", "read an initial password as one line from stdin")
    .option("--invite", "no password: print a one-time invite code with which the user chooses their own")
    .addHelpText(
      "after",
      "\nA person created at a terminal is asked for an initial password (Enter leaves it unset), unless --invite.\n" +
        "\nExamples:\n  stint users create alice --email alice@example.com --manager bob --role security\n" +
        "  stint users create deploy-bot --service\n" +
        "  stint users create carol --invite\n",
    )
    .action(async (userName: string, options: CreateOptions, command: Command) => {
      const { json } = globalOptions(command);
      const userNameChecked = checkName("user name", userName);
      if (options.manager !== undefined) checkName("manager", options.manager);
      const kind = options.service ? "service" : "user";
      if (kind === "service" && options.passwordStdin) throw usageError("a service identity has no password");
      if (options.invite && (kind === "service" || options.passwordStdin))
        throw usageError("--invite is for a person without a password (not with --service or --password-stdin)");
      const client = await clientFor(ctx, command);
      client.requireSession();
      let password: string | undefined;
      if (options.passwordStdin) {
        password = checkNewPassword(await readPassword(ctx, { passwordStdin: true, label: "" }));
      } else if (kind === "user" && !options.invite && isInteractive(ctx)) {
        const answer = await readPassword(ctx, {
          passwordStdin: false,
          label: `Initial password for ${userNameChecked} (Enter to leave unset): `,
          confirm: true,
          allowEmpty: true,
        });
        if (answer !== "") password = checkNewPassword(answer);
      }
      const { data, raw } = await client.request("POST", "/v1/users", {
        body: {
          name: userNameChecked,
          kind,
          ...(options.email !== undefined ? { email: options.email } : {}),
          ...(options.displayName !== undefined ? { displayName: options.displayName } : {}),
          ...(options.manager !== undefined ? { manager: options.manager } : {}),
          ...(password !== undefined ? { password } : {}),
          ...(options.role ? { platformRoles: options.role } : {}),
          ...(options.invite ? { invite: true } : {}),
        },
        schema: z.union([heldUserWrite, createdUser]),
      });
      const invite = data.invite ? inviteText(userNameChecked, data.invite) : "";
      emit(
        ctx,
        json,
        raw,
        () =>
          ("changeRequest" in data
            ? `Created ${data.user.kind} ${data.user.name} with the platform roles ${data.user.platformRoles.join(", ")}. ` +
              heldText(`the roles ${(options.role ?? []).join(", ")} approve change requests`, data.changeRequest)
            : `Created ${data.kind} ${data.name}.\n`) + invite,
      );
    });

  users
    .command("list")
    .alias("ls")
    .description("list users and service identities")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/users", { schema: principalList });
      emit(ctx, json, raw, () => (data.items.length === 0 ? "No users.\n" : renderTable(USER_COLUMNS, data.items)));
    });

  users
    .command("show")
    .description("show one user or service identity")
    .argument("<name>", "user name")
    .action(async (userName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/users/${segment(userName)}`, { schema: principal });
      emit(ctx, json, raw, () => describePrincipal(data));
    });

  users
    .command("update")
    .description("change a user's email, display name, manager or platform roles")
    .argument("<name>", "user name")
    .option("--email <email>", "new email address ('' clears it)")
    .option("--display-name <text>", "new display name ('' clears it)")
    .option("--manager <name>", "new manager ('' clears it)")
    .option("--role <role>", `replace the platform roles, repeatable: ${ROLES}`, collectRoles)
    .addHelpText("after", "\nExample:\n  stint users update alice --manager carol --role user --role auditor\n")
    .action(async (userName: string, options: UpdateOptions, command: Command) => {
      const { json } = globalOptions(command);
      const manager = orNull(options.manager);
      if (manager) checkName("manager", manager);
      const body = {
        ...(options.email !== undefined ? { email: orNull(options.email) } : {}),
        ...(options.displayName !== undefined ? { displayName: orNull(options.displayName) } : {}),
        ...(manager !== undefined ? { manager } : {}),
        ...(options.role ? { platformRoles: options.role } : {}),
      };
      if (Object.keys(body).length === 0) {
        throw usageError("nothing to change: give --email, --display-name, --manager or --role");
      }
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("PATCH", `/v1/users/${segment(userName)}`, {
        body,
        schema: userOrHeld,
      });
      emit(ctx, json, raw, () =>
        "changeRequest" in data
          ? `Updated ${data.user.name}, but not its platform roles. ` +
            heldText(
              `the roles ${(options.role ?? []).join(", ")} include one that approves change requests`,
              data.changeRequest,
            )
          : `Updated ${data.name}.\n`,
      );
    });

  users
    .command("disable")
    .description("disable a user: they can no longer sign in, and their sessions end")
    .argument("<name>", "user name")
    .requiredOption("--reason <text>", "why (recorded in the audit log)")
    .addHelpText("after", '\nExample:\n  stint users disable mallory --reason "left the company (HR-1234)"\n')
    .action(async (userName: string, options: { reason: string }, command: Command) => {
      const { json } = globalOptions(command);
      const reason = reasonSchema.safeParse(options.reason);
      if (!reason.success) throw usageError(`--reason ${reason.error.issues[0]?.message ?? "is not valid"}`);
      const client = await clientFor(ctx, command);
      const { raw } = await client.request("POST", `/v1/users/${segment(userName)}/disable`, {
        body: { reason: reason.data },
      });
      emit(ctx, json, raw, () => `Disabled ${userName}.\n`);
    });

  users
    .command("enable")
    .description("enable a disabled user again")
    .argument("<name>", "user name")
    .action(async (userName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { raw } = await client.request("POST", `/v1/users/${segment(userName)}/enable`);
      emit(ctx, json, raw, () => `Enabled ${userName}.\n`);
    });

  registerUsersInvite(users, ctx);

  users
    .command("set-password")
    .description("set another user's password (admin)")
    .argument("<name>", "user name")
    .option("--password-stdin", "read the password as one line from stdin instead of prompting")
    .addHelpText("after", "\nExample:\n  stint users set-password alice --password-stdin < ./alice-initial-password\n")
    .action(async (userName: string, options: { passwordStdin?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      client.requireSession();
      const password = checkNewPassword(
        await readPassword(ctx, {
          passwordStdin: options.passwordStdin === true,
          label: `New password for ${userName}: `,
          confirm: true,
        }),
      );
      const { raw } = await client.request("PUT", `/v1/users/${segment(userName)}/password`, { body: { password } });
      emit(ctx, json, raw, () =>
        isHeldWrite(raw)
          ? `Password of ${userName} not set yet. ` +
            heldText(`${userName} approves, and whoever knows the password can sign in as them`, raw.changeRequest)
          : `Password of ${userName} set.\n`,
      );
    });
}
