/** Signing in and out: setup, login, logout, whoami, password. */
import type { Command } from "commander";
import { password as passwordSchema } from "../../contract/common.js";
import {
  principal,
  setupCheckResult,
  tokenPair,
  type PrincipalDto,
  type TokenPairDto,
} from "../../contract/identity.js";
import { JWT_TOKEN_TYPES, TOKEN_EXCHANGE_GRANT, tokenExchangeResult } from "../../contract/workload.js";
import type { ApiClient } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { chooseProfile, deleteCredentials, listProfiles, loadCredentials } from "../credentials.js";
import { CliError, EXIT_CODES, isCliError, usageError } from "../exit-codes.js";
import { oneTimeCode, promptOneTimeCode } from "../one-time-code.js";
import { emit, note, renderKeyValues, renderTable, warn } from "../output.js";
import { ask, isInteractive, readPassword, readStdinLine } from "../prompt.js";
import { checkName, clientFor, warnIfPlainHttp } from "./shared.js";
import { deviceLogin, ssoLogin } from "./sso-login.js";

/** What `--json` prints after a sign-in: never the tokens themselves. */
function sessionSummary(server: string, pair: TokenPairDto): Record<string, unknown> {
  return {
    server,
    principal: pair.principal,
    accessTokenExpiresAt: pair.accessTokenExpiresAt,
    refreshTokenExpiresAt: pair.refreshTokenExpiresAt,
  };
}

/**
 * A new password too short for any account is refused before anything is sent, with the code and sentence the
 * server gives for the other password rules (WEAK_PASSWORD, exit 2), whichever command sets it.
 */
export function checkNewPassword(value: string): string {
  const parsed = passwordSchema.safeParse(value);
  if (parsed.success) return value;
  const problem = parsed.error.issues[0]?.message ?? "is not valid";
  if (parsed.error.issues[0]?.code === "too_small") throw new CliError("WEAK_PASSWORD", `The password ${problem}.`);
  throw usageError(`the password ${problem}`);
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
    // A passkey-only account has no code to type: the CLI signs in with TOTP only (passkeys in the web UI).
    const methods = error.details?.methods;
    if (Array.isArray(methods) && !methods.includes("totp")) throw error;
    const code = await promptOneTimeCode(ctx);
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
    ...(who.status === "disabled" ? ([["disabled by", who.disabledBy ?? "an administrator"]] as const) : []),
    ["platform roles", who.platformRoles],
    ["groups", who.groups],
    ["mfa", who.mfaEnrolled ? "enrolled" : "not enrolled"],
    ["id", who.id],
    ["created", who.createdAt],
    ...(server ? ([["server", server]] as const) : []),
  ]);
}

interface LoginOptions {
  user?: string;
  passwordStdin?: boolean;
  otp?: string;
  tokenExchangeFromEnv?: string;
  service?: string;
  sso?: string | boolean;
  device?: string | boolean;
}

/**
 * POST /v1/auth/token-exchange with the job token read from an environment variable (never an argument: the
 * process list would show it), then saves the API token it returns as this server's sign-in.
 */
async function exchangeJobToken(ctx: CliContext, client: ApiClient, variable: string, service: string | undefined) {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(variable)) throw usageError(`${variable} is not an environment variable name`);
  const jobToken = ctx.env[variable];
  if (!jobToken) throw usageError(`the environment variable ${variable} is empty or not set`);
  const { data } = await client.request("POST", "/v1/auth/token-exchange", {
    body: {
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: jobToken,
      subject_token_type: JWT_TOKEN_TYPES[0],
      ...(service !== undefined ? { service: checkName("service", service) } : {}),
    },
    auth: false,
    schema: tokenExchangeResult,
  });
  await client.saveExchanged({
    accessToken: data.access_token,
    expiresAt: data.expires_at,
    principal: { id: "", name: data.service },
  });
  const { data: me } = await client.request("GET", "/v1/me", { schema: principal });
  await client.saveExchanged({
    accessToken: data.access_token,
    expiresAt: data.expires_at,
    principal: { id: me.id, name: me.name },
  });
  return { server: client.server, principal: me, expiresAt: data.expires_at, exchanged: true };
}

export function registerAuthCommands(program: Command, ctx: CliContext): void {
  program
    .command("setup")
    .description("create the first administrator with the one-time setup code the server printed, then sign in")
    .requiredOption("--code <code>", "the one-time setup code from the server's first start")
    .option("--user <name>", "the administrator's user name", "admin")
    .option("--password-stdin", "read the new password as one line from stdin instead of prompting")
    .addHelpText("after", "\nExample:\n  stint setup --code Xq3v9LmR2tKp8WzN4cYb7HdJf0e --user admin\n")
    .action(async (options: { code: string; user: string; passwordStdin?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const username = checkName("user name", options.user);
      const client = await clientFor(ctx, command, false);
      warnIfPlainHttp(ctx, client.server);
      // A mistyped or used code is said before the password is asked for (twice).
      await client.request("POST", "/v1/setup/check", {
        body: { code: options.code },
        auth: false,
        schema: setupCheckResult,
      });
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
    .option("--otp <code>", "- to read the one-time code from stdin (after the password), for accounts with MFA")
    .option(
      "--token-exchange-from-env <var>",
      "CI: trade the OIDC job token in this environment variable for a short-lived token of the service identity that trusts the job",
    )
    .option(
      "--service <name>",
      "with --token-exchange-from-env: the service identity to act as, when several trust the job",
    )
    .option("--sso [provider]", "single sign-on in a browser (the CLI listens on 127.0.0.1 for the way back)")
    .option("--device [provider]", "single sign-on with a code to confirm on any device (no browser here)")
    .addHelpText(
      "after",
      "\nExamples:\n  stint login --server https://stint.example.com --user alice\n" +
        '  printf \'%s\\n%s\\n\' "$PASSWORD" "$CODE" | stint login --user ci-bot --password-stdin --otp -\n' +
        "  stint login --server https://stint.example.com --token-exchange-from-env CI_JOB_JWT\n" +
        "  stint login --server https://stint.example.com --sso\n" +
        "  stint login --server https://stint.example.com --device corp\n",
    )
    .action(async (options: LoginOptions, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command, false);
      warnIfPlainHttp(ctx, client.server);
      if (options.tokenExchangeFromEnv !== undefined) {
        if (options.user !== undefined || options.passwordStdin || options.otp !== undefined)
          throw usageError("--token-exchange-from-env signs in a workload: it takes no --user, password or --otp");
        const summary = await exchangeJobToken(ctx, client, options.tokenExchangeFromEnv, options.service);
        emit(
          ctx,
          json,
          summary,
          () => `Signed in to ${client.server} as ${summary.principal.name} until ${summary.expiresAt}.\n`,
        );
        return;
      }
      if (options.service !== undefined) throw usageError("--service goes with --token-exchange-from-env");
      if (options.sso !== undefined || options.device !== undefined) {
        if (options.sso !== undefined && options.device !== undefined) throw usageError("--sso or --device, not both");
        if (options.user !== undefined || options.passwordStdin || options.otp !== undefined)
          throw usageError("single sign-on takes no --user, password or --otp: the identity provider asks");
        const wanted = options.sso ?? options.device;
        const pair =
          options.sso !== undefined
            ? await ssoLogin(ctx, client, typeof wanted === "string" ? wanted : undefined)
            : await deviceLogin(ctx, client, typeof wanted === "string" ? wanted : undefined);
        const previous = client.credentials();
        if (previous && !previous.exchanged)
          await client
            .request("POST", "/v1/auth/logout", { body: { refreshToken: previous.refreshToken } })
            .catch(() => undefined);
        await client.saveSession(pair);
        emit(ctx, json, sessionSummary(client.server, pair), () => describeSignIn(ctx, client.server, pair.principal));
        return;
      }
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
      // After the password: with --password-stdin and --otp -, the password is stdin's first line, the code its second.
      const otp = await oneTimeCode(ctx, { given: options.otp, flag: "--otp", stdinHint: "`--otp -`" });
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
      if (saved.exchanged) {
        // An exchanged API token has no session to end; it lapses at its expiry (an admin may revoke it sooner).
        await deleteCredentials(ctx.env);
        emit(
          ctx,
          json,
          { ok: true, revoked: false },
          () => `Signed out of ${client.server}; the exchanged token lapses at ${saved.accessTokenExpiresAt}.\n`,
        );
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

  // Profiles: one saved sign-in each, so one shell can act as alice and as carol in turn (like `gh auth`
  // and `kubectl config use-context`).
  const auth = program.command("auth").description("saved sign-ins (profiles): which exist, which is in use");
  auth
    .command("status")
    .description("list the profiles with a saved sign-in: server, user, until when, and which is in use")
    .addHelpText("after", "\nExample:\n  stint login --profile carol --user carol && stint auth status\n")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const inUse = ctx.env.STINT_PROFILE ?? "default";
      const rows: {
        profile: string;
        current: boolean;
        server: string | null;
        user: string | null;
        signedInUntil: string | null;
        expired: boolean;
      }[] = [];
      for (const name of await listProfiles(ctx.env)) {
        const saved = await loadCredentials({ ...ctx.env, STINT_PROFILE: name }).catch(() => null);
        rows.push({
          profile: name,
          current: name === inUse,
          server: saved?.server ?? null,
          user: saved?.principal.name ?? null,
          signedInUntil: saved ? (saved.exchanged ? saved.accessTokenExpiresAt : saved.refreshTokenExpiresAt) : null,
          expired: saved
            ? Date.parse(saved.exchanged ? saved.accessTokenExpiresAt : saved.refreshTokenExpiresAt) <= ctx.now()
            : true,
        });
      }
      emit(ctx, json, { current: inUse, profiles: rows }, () => {
        if (rows.length === 0)
          return `No saved sign-in. Sign in with \`stint login\` (add --profile NAME for another).\n`;
        return renderTable(
          [
            { header: "PROFILE", value: (row: (typeof rows)[number]) => row.profile },
            { header: "IN USE", value: (row) => (row.current ? "yes" : "") },
            { header: "USER", value: (row) => row.user ?? "-" },
            { header: "SERVER", value: (row) => row.server ?? "-" },
            {
              header: "SIGNED IN UNTIL",
              value: (row) => (row.signedInUntil === null ? "-" : row.expired ? "expired" : row.signedInUntil),
            },
          ],
          rows,
        );
      });
      if (!json && !rows.some((row) => row.current))
        note(ctx, `The profile in use, ${inUse}, has no saved sign-in: \`stint login --profile ${inUse}\`.`);
    });
  auth
    .command("switch")
    .description("use profile NAME from now on (when neither --profile nor $STINT_PROFILE says otherwise)")
    .argument("<name>", "a profile with a saved sign-in (see `stint auth status`)")
    .addHelpText(
      "after",
      "\nExample:\n  stint auth switch carol   # then: stint approve ...; stint auth switch default\n",
    )
    .action(async (name: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const profiles = await listProfiles(ctx.env);
      if (!profiles.includes(name))
        throw new CliError(
          "NOT_FOUND",
          `no profile ${JSON.stringify(name)} has a saved sign-in; sign in to it first: stint login --profile ${/^[A-Za-z0-9_-]+$/.test(name) ? name : "NAME"}`,
        );
      await chooseProfile(ctx.env, name);
      const saved = await loadCredentials({ ...ctx.env, STINT_PROFILE: name });
      emit(
        ctx,
        json,
        { current: name },
        () => `Now using profile ${name}${saved ? ` (${saved.principal.name} at ${saved.server})` : ""}.\n`,
      );
      if (ctx.env.STINT_PROFILE_SOURCE === "env")
        note(ctx, "$STINT_PROFILE is set in this shell and wins over the switch.");
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
