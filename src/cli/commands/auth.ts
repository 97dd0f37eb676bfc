/** Signing in and out: setup, login, logout, whoami, password. */
import type { Command } from "commander";
import { password as passwordSchema } from "../../contract/common.js";
import { principal, tokenPair, type PrincipalDto, type TokenPairDto } from "../../contract/identity.js";
import type { ApiClient } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { deleteCredentials } from "../credentials.js";
import { CliError, EXIT_CODES, isCliError, usageError } from "../exit-codes.js";
import { emit, note, renderKeyValues, warn } from "../output.js";
import { ask, isInteractive, readPassword, readStdinLine } from "../prompt.js";
import { checkName, clientFor, warnIfPlainHttp } from "./shared.js";

/** What `--json` prints after a sign-in: never the tokens themselves. */
function sessionSummary(server: string, pair: TokenPairDto): Record<string, unknown> {
  return {
    server,
    principal: pair.principal,
    accessTokenExpiresAt: pair.accessTokenExpiresAt,
    refreshTokenExpiresAt: pair.refreshTokenExpiresAt,
  };
}

function checkNewPassword(value: string): string {
  const parsed = passwordSchema.safeParse(value);
  if (!parsed.success) throw usageError(`the password ${parsed.error.issues[0]?.message ?? "is not valid"}`);
  return value;
}

/**
 * POST /v1/auth/login. At a terminal, MFA_REQUIRED turns into a prompt for the one-time code;
 * otherwise the error is reported as is (exit 4).
 */
async function signIn(
  ctx: CliContext,
  client: ApiClient,
  username: string,
  password: string,
  otp: string | undefined,
): Promise<TokenPairDto> {
  const attempt = (code: string | undefined) =>
    client.request("POST", "/v1/auth/login", {
      body: { username, password, ...(code ? { otp: code } : {}) },
      auth: false,
      schema: tokenPair,
    });
  try {
    return (await attempt(otp)).data;
  } catch (error) {
    if (!(isCliError(error) && error.code === "MFA_REQUIRED" && otp === undefined && isInteractive(ctx))) throw error;
    const code = (await ask(ctx, "One-time code: ")).replace(/\s+/g, "");
    if (code === "") throw error;
    return (await attempt(code)).data;
  }
}

/** Signs in and saves the session; revokes the previous session on the same server first. */
async function signInAndSave(
  ctx: CliContext,
  client: ApiClient,
  username: string,
  password: string,
  otp: string | undefined,
): Promise<TokenPairDto> {
  const pair = await signIn(ctx, client, username, password, otp);
  const previous = client.credentials();
  if (previous) {
    await client
      .request("POST", "/v1/auth/logout", { body: { refreshToken: previous.refreshToken } })
      .catch(() => undefined);
  }
  await client.saveSession(pair);
  return pair;
}

function describeSignIn(ctx: CliContext, server: string, who: PrincipalDto): string {
  if (!who.mfaEnrolled) note(ctx, "tip: protect this account with `stint mfa enroll`");
  const roles = who.platformRoles.length > 0 ? ` (${who.platformRoles.join(", ")})` : "";
  return `Signed in to ${server} as ${who.name}${roles}.\n`;
}

export function describePrincipal(who: PrincipalDto, server?: string): string {
  return renderKeyValues([
    ["name", who.name],
    ["kind", who.kind],
    ["display name", who.displayName],
    ["email", who.email],
    ["manager", who.manager],
    ["status", who.status],
    ["platform roles", who.platformRoles],
    ["groups", who.groups],
    ["mfa", who.mfaEnrolled ? "enrolled" : "not enrolled"],
    ["id", who.id],
    ["created", who.createdAt],
    ...(server ? ([["server", server]] as const) : []),
  ]);
}

export function registerAuthCommands(program: Command, ctx: CliContext): void {
  program
    .command("setup")
    .description("create the first administrator with the one-time setup code the server printed, then sign in")
    .requiredOption("--code <code>", "the one-time setup code from the server's first start")
    .option("--user <name>", "the administrator's user name", "admin")
    .option("--password-stdin", "read the new password as one line from stdin instead of prompting")
    .addHelpText("after", "\nExample:\n  stint setup --code 7KQ2-XR9P --user admin\n")
    .action(async (options: { code: string; user: string; passwordStdin?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const username = checkName("user name", options.user);
      const client = await clientFor(ctx, command, false);
      warnIfPlainHttp(ctx, client.server);
      const password = checkNewPassword(
        await readPassword(ctx, {
          passwordStdin: options.passwordStdin === true,
          label: `New password for ${username}: `,
          confirm: true,
        }),
      );
      await client.request("POST", "/v1/setup", {
        body: { code: options.code, username, password },
        auth: false,
        schema: principal,
      });
      const pair = await signInAndSave(ctx, client, username, password, undefined);
      emit(ctx, json, sessionSummary(client.server, pair), () =>
        [`Created administrator ${username}.`, describeSignIn(ctx, client.server, pair.principal)].join("\n"),
      );
    });

  program
    .command("login")
    .description("sign in and save the session in the config directory")
    .option("--user <name>", "user name (prompted for at a terminal when omitted)")
    .option("--password-stdin", "read the password as one line from stdin instead of prompting")
    .option("--otp <code>", "one-time code from the authenticator app, if the account has MFA")
    .addHelpText(
      "after",
      "\nExamples:\n  stint login --server https://stint.example.com --user alice\n" +
        "  printf '%s\\n' \"$PASSWORD\" | stint login --user ci-bot --password-stdin --otp 123456\n",
    )
    .action(async (options: { user?: string; passwordStdin?: boolean; otp?: string }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command, false);
      warnIfPlainHttp(ctx, client.server);
      let username = options.user;
      if (username === undefined) {
        if (!isInteractive(ctx)) throw usageError("--user is required when stdin is not a terminal");
        username = await ask(ctx, "User: ");
        if (username === "") throw usageError("no user name given");
      }
      const password = await readPassword(ctx, {
        passwordStdin: options.passwordStdin === true,
        label: `Password for ${username}: `,
      });
      const otp = options.otp?.replace(/\s+/g, "");
      const pair = await signInAndSave(ctx, client, username, password, otp);
      emit(ctx, json, sessionSummary(client.server, pair), () => describeSignIn(ctx, client.server, pair.principal));
    });

  program
    .command("logout")
    .description("end the session on the server and delete the saved credentials")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command, false);
      const saved = client.credentials();
      if (!saved) {
        emit(ctx, json, { ok: true, revoked: false }, () => "Not signed in.\n");
        return;
      }
      let failure: CliError | undefined;
      let revoked = false;
      try {
        // Authenticated (refreshing first if need be): the server ends the session of the caller.
        await client.request("POST", "/v1/auth/logout", { body: { refreshToken: saved.refreshToken } });
        revoked = true;
      } catch (error) {
        // A session the server no longer accepts is as good as ended.
        if (!(isCliError(error) && error.exitCode === EXIT_CODES.unauthenticated)) {
          failure = isCliError(error) ? error : new CliError("UNEXPECTED", String(error));
        }
      }
      await deleteCredentials(ctx.env);
      if (failure) {
        warn(ctx, "the saved credentials were deleted, but the server could not be told to end the session");
        throw failure;
      }
      emit(ctx, json, { ok: true, revoked }, () => `Signed out of ${client.server}.\n`);
    });

  program
    .command("whoami")
    .description("show who you are signed in as")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/me", { schema: principal });
      emit(ctx, json, raw, () => describePrincipal(data, client.server));
    });

  program
    .command("password")
    .alias("passwd")
    .description("change your own password")
    .option("--password-stdin", "read the current password, then the new one, as two lines from stdin")
    .action(async (options: { passwordStdin?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      client.requireSession();
      const passwordStdin = options.passwordStdin === true;
      const currentPassword = await readPassword(ctx, { passwordStdin, label: "Current password: " });
      const newPassword = checkNewPassword(
        passwordStdin
          ? ((await readStdinLine(ctx)) ?? "")
          : await readPassword(ctx, { passwordStdin, label: "New password: ", confirm: true }),
      );
      const { raw } = await client.request("POST", "/v1/me/password", { body: { currentPassword, newPassword } });
      emit(ctx, json, raw, () => "Password changed.\n");
    });
}
