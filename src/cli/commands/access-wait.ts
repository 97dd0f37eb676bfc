/** `stint activate --wait`: following a request until it is active, denied, ended or the time is up. */
import { setTimeout as sleep } from "node:timers/promises";
import { activationRequest, type ActivationRequestDto } from "../../contract/requests.js";
import { segment, type ApiClient } from "../client.js";
import type { CliContext } from "../context.js";
import { CliError, EXIT_CODES, isCliError } from "../exit-codes.js";
import { formatError, note, renderJson, sanitize } from "../output.js";
import { denialOf, describeProgress, humanSpan } from "./access-wording.js";

type RequestState = ActivationRequestDto["state"];

/**
 * How long `stint activate --wait` waits before asking again, after `asked` questions: soon at first (an
 * auto-approved role is active within tens of milliseconds, and a requester should not wait a second
 * for nothing), then once a second while a request waits for a person.
 */
export function pollDelay(asked: number): number {
  return Math.min(1000, 50 * 2 ** Math.max(0, asked));
}
/** States a request never leaves. */
const FINAL_STATES: readonly RequestState[] = ["denied", "cancelled", "expired", "revoked", "deactivated", "failed"];

/**
 * Ends the command with `error` after the request has been shown: with --json the request's JSON
 * on stdout, the error line on stderr either way.
 */
function finish(ctx: CliContext, json: boolean, raw: unknown, error: CliError): never {
  if (json) ctx.stdout.write(renderJson(raw));
  ctx.stderr.write(formatError(error));
  throw new CliError(error.code, error.message, { exitCode: error.exitCode, reported: true });
}

/**
 * Polls the request every second until it is active (returns it), ends otherwise (throws: exit 5
 * when denied, 1 for any other end) or the time is up (exit 1). Progress goes to stderr.
 */
export async function waitUntilActive(
  ctx: CliContext,
  client: ApiClient,
  first: { data: ActivationRequestDto; raw: unknown },
  timeoutMs: number,
  json: boolean,
): Promise<{ data: ActivationRequestDto; raw: unknown }> {
  const deadline = ctx.now() + timeoutMs;
  let current = first;
  let lastProgress = "";
  let unreachableNoted = false;
  let asked = 0;
  for (;;) {
    const request = current.data;
    if (request.state === "active") return current;
    if (request.state === "denied") {
      const { by, reason } = denialOf(request);
      finish(ctx, json, current.raw, new CliError("REQUEST_DENIED", `denied by ${by}: ${reason}`, { exitCode: 5 }));
    }
    if (FINAL_STATES.includes(request.state)) {
      const why = request.endReason ? `: ${request.endReason}` : "";
      finish(
        ctx,
        json,
        current.raw,
        new CliError("REQUEST_ENDED", `the request ended ${request.state}${why}`, { exitCode: 1 }),
      );
    }
    const progress =
      request.state === "pending" ? `waiting for approval: ${describeProgress(request)}` : `${request.state}…`;
    if (!json && progress !== lastProgress) note(ctx, sanitize(progress));
    lastProgress = progress;
    if (ctx.now() >= deadline) {
      finish(
        ctx,
        json,
        current.raw,
        new CliError(
          "WAIT_TIMEOUT",
          `request ${request.id} is still ${request.state} after ${humanSpan(timeoutMs)}; it stays open ` +
            `(\`stint requests --mine\` follows it, \`stint cancel ${request.id}\` withdraws it)`,
          { exitCode: 1 },
        ),
      );
    }
    await sleep(pollDelay(asked++));
    try {
      current = await client.request("GET", `/v1/activation-requests/${segment(request.id)}`, {
        schema: activationRequest,
      });
    } catch (error) {
      // A server restarting or a network blip is no reason to give up the wait.
      if (!(isCliError(error) && error.exitCode === EXIT_CODES.unreachable)) throw error;
      if (!unreachableNoted && !json) note(ctx, `${error.message}; still trying`);
      unreachableNoted = true;
    }
  }
}

// ---------------------------------------------------------------------------
