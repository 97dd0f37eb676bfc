/**
 * `stint step-up`: renews the session's MFA time before a role or secret that asks for a recent check.
 * With a one-time code (`--otp`) directly; with a passkey (`--webauthn`) through the browser: the server
 * opens a hand-off, the CLI prints its link and match code, the person confirms on the Stint web page
 * (signed in as the same user) with their passkey, and the CLI polls until it is done.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { principal, stepUpResult } from "../../contract/identity.js";
import { stepUpHandoff, stepUpHandoffStatus } from "../../contract/passkeys.js";
import { parseDuration } from "../../lib/duration.js";
import { segment, type ApiClient } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { CliError, isCliError, usageError } from "../exit-codes.js";
import { emit, note, renderKeyValues, sanitize } from "../output.js";
import { oneTimeCode, promptOneTimeCode, TOTP_CODE_ENV } from "../one-time-code.js";
import { isInteractive } from "../prompt.js";
import { clientFor, durationArgument } from "./shared.js";

const POLL_MS = 1000;

/**
 * Hands the session's passkey step-up to the browser and waits: the link and the match code go to stderr
 * (stdout stays for --json). Resolves when the page confirmed it; throws when it expired or time is up.
 */
export async function stepUpInBrowser(
  ctx: CliContext,
  client: ApiClient,
  timeoutMs: number,
): Promise<{ completedAt: string; raw: unknown }> {
  const { data: handoff } = await client.request("POST", "/v1/auth/step-up-handoffs", { schema: stepUpHandoff });
  note(ctx, `Open this link in a browser signed in to Stint as you, and confirm with your passkey:`);
  note(ctx, `  ${sanitize(handoff.url)}`);
  note(ctx, `The page must show the code ${sanitize(handoff.matchCode)}. Waiting…`);
  const deadline = Math.min(ctx.now() + timeoutMs, new Date(handoff.expiresAt).getTime());
  for (;;) {
    const { data, raw } = await client.request("GET", `/v1/auth/step-up-handoffs/${segment(handoff.id)}`, {
      schema: stepUpHandoffStatus,
    });
    if (data.status === "completed") return { completedAt: data.completedAt!, raw };
    if (data.status === "expired" || ctx.now() >= deadline)
      throw new CliError("STEP_UP_TIMEOUT", "the passkey step-up was not confirmed in time; run the command again", {
        exitCode: 1,
      });
    await sleep(POLL_MS);
  }
}

/** POST /v1/auth/step-up: a fresh one-time code renews the session's MFA time. */
async function stepUp(client: ApiClient, otp: string): Promise<void> {
  const code = otp.replace(/\s+/g, "");
  if (code === "") throw usageError("--otp needs the code the authenticator app shows");
  await client.request("POST", "/v1/auth/step-up", { body: { otp: code }, schema: stepUpResult });
}

/**
 * Sends a request that a policy may refuse for want of a recent MFA check (an activation, an extension, an
 * approval). With --otp the step-up comes first; at a terminal, MFA_STEP_UP_REQUIRED turns into a prompt for
 * the code and one more try.
 */
export async function withStepUp<T>(
  ctx: CliContext,
  client: ApiClient,
  given: string | undefined,
  send: () => Promise<T>,
): Promise<T> {
  // $STINT_TOTP_CODE only when the policy asks: a code spent on a role that needs none would be gone.
  const otp = await oneTimeCode(ctx, { given, flag: "--otp", stdinHint: "`--otp -`", useEnv: false });
  if (otp !== undefined) await stepUp(client, otp);
  try {
    return await send();
  } catch (error) {
    if (isCliError(error) && error.code === "WEBAUTHN_REQUIRED") {
      // The policy wants a passkey: at a terminal the browser confirms it (the CLI prints the link and waits).
      if (!isInteractive(ctx))
        throw new CliError(error.code, `${error.message.replace(/\.$/, "")}; run \`stint step-up --webauthn\` first`, {
          exitCode: error.exitCode,
          ...(error.status !== undefined ? { status: error.status } : {}),
        });
      await stepUpInBrowser(ctx, client, 5 * 60_000);
      return send();
    }
    if (!(isCliError(error) && error.code === "MFA_STEP_UP_REQUIRED")) throw error;
    // Nobody can type a one-time code without an authenticator app: say how to get one instead.
    const me = await client
      .request("GET", "/v1/me", { schema: principal })
      .then((answer) => answer.data)
      .catch(() => undefined);
    if (me && !me.mfaEnrolled)
      throw new CliError(
        error.code,
        `${error.message.replace(/\.$/, "")}; you have no authenticator app enrolled: run \`stint mfa enroll\` first (a passkey also counts: \`stint step-up --webauthn\`)`,
        { exitCode: error.exitCode, ...(error.status !== undefined ? { status: error.status } : {}) },
      );
    const fromEnv = otp === undefined ? ctx.env[TOTP_CODE_ENV]?.replace(/\s+/g, "") : undefined;
    if (!fromEnv && (otp !== undefined || !isInteractive(ctx))) {
      throw new CliError(
        error.code,
        `${error.message.replace(/\.$/, "")}; add --otp - (the code on stdin) or set ${TOTP_CODE_ENV}`,
        { exitCode: error.exitCode, ...(error.status !== undefined ? { status: error.status } : {}) },
      );
    }
    const code = fromEnv || (await promptOneTimeCode(ctx, "This needs a recent MFA check. One-time code: "));
    if (code === "") throw error;
    await stepUp(client, code);
    return send();
  }
}

interface StepUpOptions {
  otp?: string;
  webauthn?: boolean;
  timeout: string;
}

export function registerStepUpCommand(program: Command, ctx: CliContext): void {
  program
    .command("step-up")
    .description("renew this session's MFA check: a one-time code, or your passkey through the browser")
    .option("--otp <code>", "- to read a fresh one-time code from stdin (asked for at a terminal without it)")
    .option("--webauthn", "confirm with a passkey: prints a link to a Stint page and waits until it is confirmed")
    .option("--timeout <duration>", "with --webauthn: give up waiting after this long (exit 1)", durationArgument, "5m")
    .addHelpText(
      "after",
      "\nExamples:\n  stint step-up                # asks for the code\n  echo 492039 | stint step-up --otp -\n  stint step-up --webauthn     # for roles whose policy requires a passkey\n",
    )
    .action(async (options: StepUpOptions, command: Command) => {
      const { json } = globalOptions(command);
      if (options.otp !== undefined && options.webauthn) throw usageError("give --otp or --webauthn, not both");
      const client = await clientFor(ctx, command);
      if (options.webauthn) {
        const done = await stepUpInBrowser(ctx, client, parseDuration(options.timeout));
        emit(ctx, json, done.raw, () => renderKeyValues([["mfa", `passkey, ${done.completedAt}`]]));
        return;
      }
      let code = await oneTimeCode(ctx, { given: options.otp, flag: "--otp", stdinHint: "`--otp -`" });
      if (code === undefined) {
        if (!isInteractive(ctx))
          throw usageError(`give --otp - (the code on stdin), set ${TOTP_CODE_ENV}, or --webauthn`);
        code = await promptOneTimeCode(ctx);
      }
      if (code === "") throw usageError("--otp needs the code the authenticator app shows");
      const { data, raw } = await client.request("POST", "/v1/auth/step-up", {
        body: { otp: code },
        schema: stepUpResult,
      });
      emit(ctx, json, raw, () => renderKeyValues([["mfa", `one-time code, ${data.mfaAt}`]]));
    });
}
