/** Multi-factor authentication for your own account: enroll an authenticator app, confirm it. */
import type { Command } from "commander";
import { recoveryCodes, totpEnrollment } from "../../contract/identity.js";
import type { ApiClient } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { isCliError, usageError } from "../exit-codes.js";
import { emit, note, renderKeyValues, sanitize } from "../output.js";
import { oneTimeCode, promptOneTimeCode, TOTP_CODE_ENV } from "../one-time-code.js";
import { isInteractive } from "../prompt.js";
import { clientFor } from "./shared.js";

const ATTEMPTS_AT_PROMPT = 3;

function checkCode(text: string): string {
  const code = text.replace(/\s+/g, "");
  if (!/^\d{6}$/.test(code)) throw usageError("the code must be the 6 digits the authenticator app shows");
  return code;
}

async function confirm(client: ApiClient, code: string) {
  return client.request("POST", "/v1/me/mfa/totp/confirm", { body: { code }, schema: recoveryCodes });
}

/** Recovery codes go to stdout one per line; the warning about them to stderr. */
function showRecoveryCodes(ctx: CliContext, codes: readonly string[]): string {
  note(ctx, "MFA is on. Recovery codes follow: each works once, and they are NOT shown again; store them safely.");
  return codes.map((code) => `${sanitize(code)}\n`).join("");
}

export function registerMfaCommands(program: Command, ctx: CliContext): void {
  const mfa = program.command("mfa").description("multi-factor authentication for your account");

  mfa
    .command("enroll")
    .description("start enrolling an authenticator app (TOTP); at a terminal, asks for the first code")
    .addHelpText(
      "after",
      "\nExample:\n  stint mfa enroll          # then scan the URI or type the secret into the app\n",
    )
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/me/mfa/totp", { schema: totpEnrollment });
      emit(ctx, json, raw, () =>
        renderKeyValues([
          ["secret", data.secret],
          ["uri", data.otpauthUri],
        ]),
      );
      // With --json the caller drives the flow: it runs `stint mfa confirm` itself.
      if (json || !isInteractive(ctx)) {
        if (!json)
          note(ctx, "Add the secret to your authenticator app, then run `stint mfa confirm` (it asks for the code).");
        return;
      }
      note(ctx, "Add the secret (or the URI) to your authenticator app, then type the code it shows.");
      for (let attempt = 1; ; attempt += 1) {
        const answer = await promptOneTimeCode(ctx, "Code: ");
        if (answer === "") {
          note(ctx, "Not confirmed yet: run `stint mfa confirm` when ready.");
          return;
        }
        try {
          const confirmed = await confirm(client, checkCode(answer));
          ctx.stdout.write(showRecoveryCodes(ctx, confirmed.data.recoveryCodes));
          return;
        } catch (error) {
          const retry = isCliError(error) && (error.code === "MFA_INVALID" || error.code === "USAGE");
          if (!retry || attempt >= ATTEMPTS_AT_PROMPT) throw error;
          note(ctx, `${error.message.replace(/\.$/, "")}. Try again, or press Enter to stop.`);
        }
      }
    });

  mfa
    .command("confirm")
    .description("finish enrolment with a code from the app; prints the recovery codes once")
    .argument("[code]", "- to read the code from stdin (a code typed here is visible to other users: ps)")
    .option("--code-stdin", "read the code as one line from stdin")
    .addHelpText(
      "after",
      `\nThe code comes from stdin (\`-\` or --code-stdin), $${TOTP_CODE_ENV}, or a prompt that does not echo.\n` +
        "\nExamples:\n  stint mfa confirm                 # asks for the code\n  echo 492039 | stint mfa confirm -\n",
    )
    .action(async (code: string | undefined, options: { codeStdin?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      client.requireSession();
      const source = { given: code, fromStdin: options.codeStdin === true, flag: "the code", stdinHint: "`-`" };
      let text = await oneTimeCode(ctx, source);
      if (text === undefined) {
        if (!isInteractive(ctx))
          throw usageError(
            `stdin is not a terminal, so stint cannot ask for the code: pipe it with \`stint mfa confirm -\` or set ${TOTP_CODE_ENV}`,
          );
        text = await promptOneTimeCode(ctx, "Code: ");
      }
      const { data, raw } = await confirm(client, checkCode(text));
      if (json) note(ctx, "warning: the recovery codes are not shown again; store them safely.");
      emit(ctx, json, raw, () => showRecoveryCodes(ctx, data.recoveryCodes));
    });
}
