/** Small helpers the command groups share: the client for a command, option parsers, time input. */
import { type Command, InvalidArgumentError } from "commander";
import { durationText, isoTime, name, reason as reasonSchema } from "../../contract/common.js";
import { parseDuration } from "../../lib/duration.js";
import { createApiClient, isLoopback, type ApiClient } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { warn } from "../output.js";

export function clientFor(ctx: CliContext, command: Command, useEnvToken = true): Promise<ApiClient> {
  return createApiClient(ctx, { serverFlag: globalOptions(command).server, useEnvToken });
}

/** Passwords and tokens over plain HTTP to another machine can be read on the way. */
export function warnIfPlainHttp(ctx: CliContext, server: string): void {
  if (server.startsWith("http://") && !isLoopback(server)) {
    warn(ctx, `${server} is plain HTTP: the password and tokens cross the network unencrypted; use https://`);
  }
}

/** commander argument parser for a whole number in [min, max]. */
export function integerIn(min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    const number = Number(value);
    if (number < min || number > max) throw new InvalidArgumentError(`must be from ${min} to ${max}`);
    return number;
  };
}

/** commander argument parser for a duration written like 30s, 15m, 2h or 1d. */
export function durationArgument(value: string): string {
  if (!durationText.safeParse(value).success) {
    throw new InvalidArgumentError("must be a duration like 30s, 15m, 2h or 1d");
  }
  return value;
}

/** Checks a principal, group or token name before anything is sent or prompted for. */
export function checkName(label: string, value: string): string {
  const parsed = name.safeParse(value);
  if (!parsed.success) throw usageError(`${label} "${value}" ${parsed.error.issues[0]?.message ?? "is not valid"}`);
  return parsed.data;
}

/**
 * `--since`: an ISO 8601 time with offset (`2025-01-31T08:00:00Z`), a date (`2025-01-31`, UTC
 * midnight), or a duration back from now (`24h` = 24 hours ago). Returns an ISO time in UTC.
 */
export function sinceToIso(text: string, now: number): string {
  const trimmed = text.trim();
  if (/^\d+(ms|s|m|h|d)$/.test(trimmed)) {
    return new Date(now - parseDuration(trimmed)).toISOString();
  }
  if (/^\d{4}-\d{2}-\d{2}$/.test(trimmed) && !Number.isNaN(Date.parse(`${trimmed}T00:00:00Z`))) {
    return new Date(`${trimmed}T00:00:00Z`).toISOString();
  }
  if (isoTime.safeParse(trimmed).success) return new Date(trimmed).toISOString();
  throw usageError(
    `--since "${text}" is neither a duration (24h, 7d) nor an ISO time with an offset (2025-01-31T08:00:00Z)`,
  );
}

/** A --reason checked like the API checks it, before anything is sent. */
export function checkReason(value: string): string {
  const parsed = reasonSchema.safeParse(value);
  if (!parsed.success) throw usageError(`--reason ${parsed.error.issues[0]?.message ?? "is not valid"}`);
  return parsed.data;
}

/** commander collector for a repeatable option that must not be empty. */
export function collect(value: string, previous: string[] | undefined): string[] {
  if (value.trim() === "") throw new InvalidArgumentError("must not be empty");
  return [...(previous ?? []), value];
}

/** One trailing line ending (what `echo` and editors add) is not part of a secret; anything else is. */
export function withoutTrailingNewline(text: string): string {
  if (text.endsWith("\r\n")) return text.slice(0, -2);
  if (text.endsWith("\n")) return text.slice(0, -1);
  return text;
}

/** All of stdin, as UTF-8. */
export async function readAll(ctx: CliContext): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of ctx.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  } catch (error) {
    throw usageError(`cannot read stdin: ${(error as Error).message}`);
  }
  return Buffer.concat(chunks).toString("utf8");
}
