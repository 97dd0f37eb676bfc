/**
 * Just-in-time access: your eligible roles, activation requests and their decisions, extensions,
 * early ends, the check API and activation tokens.
 */
import { shortId } from "../../contract/short-id.js";
import { type Command, Option } from "commander";
import { reason as reasonSchema } from "../../contract/common.js";
import { activationRequest, activationToken, checkResult, myRoles, requestList } from "../../contract/requests.js";
import { parseDuration } from "../../lib/duration.js";
import { segment, type ApiClient } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { CliError, EXIT_CODES, isCliError, usageError } from "../exit-codes.js";
import { emit, note, renderTable, sanitize } from "../output.js";
import { checkName, clientFor, durationArgument, integerIn } from "./shared.js";
import { withStepUp } from "./step-up.js";
import { parseStart } from "./start-time.js";
import {
  clock,
  describeActive,
  describeOutcome,
  describePolicy,
  describeProgress,
  humanSpan,
  INBOX_COLUMNS,
  inboxStepUpNote,
  REQUEST_COLUMNS,
  ROLE_COLUMNS,
} from "./access-wording.js";
import { pollDelay, waitUntilActive } from "./access-wait.js";

export { describePolicy, humanSpan, pollDelay, shortId };

const DEFAULT_WAIT_TIMEOUT = "10m";
const STATES = activationRequest.shape.state.options;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------
// Input

function checkReason(flag: string, value: string): string {
  const parsed = reasonSchema.safeParse(value);
  if (!parsed.success) throw usageError(`${flag} ${parsed.error.issues[0]?.message ?? "is not valid"}`);
  return parsed.data;
}

/**
 * A request id as typed: the full UUID, or at least 8 hex digits that begin or end exactly one of
 * the requests the caller can list in `scopes` (the tables show the last 8).
 */
async function resolveRequestId(
  client: ApiClient,
  text: string,
  scopes: readonly ("mine" | "inbox" | "all")[],
  nothing = `no request of yours matches "${text}"`,
): Promise<string> {
  const typed = text.trim().toLowerCase();
  if (UUID.test(typed)) return typed;
  const hex = typed.replace(/-/g, "");
  if (!/^[0-9a-f]{8,32}$/.test(hex)) {
    throw usageError(`"${text}" is not a request id: give the UUID, or at least 8 of its hex digits`);
  }
  const seen = new Set<string>();
  for (const scope of scopes) {
    try {
      const { data } = await client.request("GET", "/v1/activation-requests", {
        query: { scope, limit: 500 },
        schema: requestList,
      });
      for (const item of data.items) seen.add(item.id);
    } catch (error) {
      // `all` needs a reader role; the other scopes may still hold the request.
      if (!(isCliError(error) && error.exitCode === EXIT_CODES.forbidden)) throw error;
    }
  }
  const matches = [...seen].filter((id) => {
    const digits = id.replace(/-/g, "");
    return digits.startsWith(hex) || digits.endsWith(hex);
  });
  if (matches.length === 0) throw new CliError("NOT_FOUND", nothing);
  if (matches.length > 1) {
    throw usageError(`"${text}" matches ${matches.length} requests (${matches.join(", ")}); give more digits`);
  }
  return matches[0]!;
}

// Commands

interface ActivateOptions {
  for?: string;
  start?: string;
  reason: string;
  ticket?: string;
  otp?: string;
  wait?: boolean;
  timeout: string;
}

interface RequestsOptions {
  pending?: boolean;
  inbox?: boolean;
  mine?: boolean;
  all?: boolean;
  state?: string;
  role?: string;
  limit: number;
}

export function registerAccessCommands(program: Command, ctx: CliContext): void {
  program
    .command("roles")
    .description("the roles you are eligible for, their policy, and which are active (with time left)")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/me/roles", { schema: myRoles });
      const now = ctx.now();
      emit(ctx, json, raw, () =>
        data.items.length === 0 ? "You are not eligible for any role.\n" : renderTable(ROLE_COLUMNS(now), data.items),
      );
    });

  program
    .command("activate")
    .description("request a role for a while; with --wait, follow it until it is active")
    .argument("<role>", "the role to activate (see `stint roles`)")
    .option("--for <duration>", "how long: 30m, 2h … (default: the role's default duration)", durationArgument)
    .option(
      "--start <time>",
      "start later: +30m, +2h, +1d, or an ISO time (2030-01-02T09:00:00Z); approved ahead, active from then",
    )
    .requiredOption("--reason <text>", "what you will do and why (recorded, shown to approvers)")
    .option("--ticket <id>", "ticket or change reference, e.g. INC-1234")
    .option("--otp <code>", "- to read a fresh one-time code from stdin, for roles that need a recent MFA check")
    .option("--wait", "wait until the request is active (exit 0), denied (exit 5) or ends otherwise (exit 1)")
    .option(
      "--timeout <duration>",
      "with --wait: give up waiting after this long (exit 1)",
      durationArgument,
      DEFAULT_WAIT_TIMEOUT,
    )
    .addHelpText(
      "after",
      '\nExamples:\n  stint activate prod-db-reader --for 1h --reason "investigate slow orders queries" --ticket INC-1234\n' +
        '  stint activate prod-db-reader --reason "restore from backup, CHG-77" --ticket CHG-77 --wait --timeout 30m\n' +
        '  stint activate prod-db-admin --start 2030-01-02T22:00:00Z --for 2h --reason "schema migration, CHG-78"\n',
    )
    .action(async (roleName: string, options: ActivateOptions, command: Command) => {
      const { json } = globalOptions(command);
      const role = checkName("role", roleName);
      const reason = checkReason("--reason", options.reason);
      const timeoutMs = parseDuration(options.timeout);
      const startAt = options.start === undefined ? undefined : parseStart(options.start, ctx.now());
      const client = await clientFor(ctx, command);
      const submitted = await withStepUp(ctx, client, options.otp, () =>
        client.request("POST", "/v1/activation-requests", {
          body: {
            role,
            reason,
            ...(options.for !== undefined ? { duration: options.for } : {}),
            ...(options.ticket !== undefined ? { ticket: options.ticket } : {}),
            ...(startAt !== undefined ? { startAt } : {}),
          },
          schema: activationRequest,
        }),
      );
      if (!options.wait) {
        emit(ctx, json, submitted.raw, () => `${sanitize(describeOutcome(submitted.data, ctx.now()))}\n`);
        if (!json && submitted.data.state === "provisioning") {
          note(ctx, "`stint roles` shows it active once the target holds it; --wait waits for that.");
        }
        if (!json && submitted.data.state === "approved" && submitted.data.startAt) {
          note(ctx, `Withdraw it before then with \`stint cancel ${submitted.data.id}\`.`);
        }
        if (!json && submitted.data.state === "pending") {
          note(
            ctx,
            `Follow it with \`stint requests --mine\` (or submit again with --wait); withdraw it with \`stint cancel ${submitted.data.id}\`.`,
          );
        }
        return;
      }
      if (!json && submitted.data.state !== "active") {
        note(ctx, `Request ${submitted.data.id} submitted. Ctrl-C stops waiting; the request stays open.`);
      }
      const active = await waitUntilActive(ctx, client, submitted, timeoutMs, json);
      emit(ctx, json, active.raw, () => `${sanitize(describeActive(active.data, ctx.now()))}\n`);
    });

  program
    .command("requests")
    .description("activation requests: yours (default), those waiting for your decision, or all")
    .addOption(new Option("--mine", "your own requests (the default)").conflicts(["pending", "inbox", "all"]))
    .addOption(new Option("--pending", "requests waiting for your decision now").conflicts(["inbox", "all"]))
    .addOption(new Option("--inbox", "the same as --pending").conflicts(["all"]))
    .addOption(new Option("--all", "everyone's requests (auditor, security, admin)"))
    .addOption(new Option("--state <state>", "only requests in this state").choices(STATES))
    .option("--role <role>", "only requests for this role")
    .option("--limit <n>", "at most this many (1-500)", integerIn(1, 500), 100)
    .addHelpText("after", "\nExamples:\n  stint requests --pending\n  stint requests --all --state active --json\n")
    .action(async (options: RequestsOptions, command: Command) => {
      const { json } = globalOptions(command);
      const scope = options.pending || options.inbox ? "inbox" : options.all ? "all" : "mine";
      if (options.role !== undefined) checkName("role", options.role);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/activation-requests", {
        query: { scope, state: options.state, role: options.role, limit: options.limit },
        schema: requestList,
      });
      const now = ctx.now();
      const empty = scope === "inbox" ? "Nothing is waiting for your decision.\n" : "No requests.\n";
      emit(ctx, json, raw, () => {
        if (data.items.length === 0) return empty;
        if (scope !== "inbox") return renderTable(REQUEST_COLUMNS(now), data.items);
        // The inbox says ahead what approving asks of your own MFA (a hint: the approval checks again).
        return renderTable(INBOX_COLUMNS(now), data.items) + inboxStepUpNote(data.items);
      });
    });

  program
    .command("approve")
    .description("approve a request that waits for your decision")
    .argument("<id>", "request id (the UUID, or at least 8 of its hex digits)")
    .option("--reason <text>", "why (recorded in the audit log)")
    .option("--otp <code>", "- to read a fresh one-time code from stdin, where approving needs a recent MFA check")
    .addHelpText("after", '\nExample:\n  stint approve 7c1e9a42 --reason "matches INC-1234"\n')
    .action(async (id: string, options: { reason?: string; otp?: string }, command: Command) => {
      const { json } = globalOptions(command);
      const reason = options.reason === undefined ? undefined : checkReason("--reason", options.reason);
      const client = await clientFor(ctx, command);
      const requestId = await resolveRequestId(
        client,
        id,
        ["inbox", "mine", "all"],
        `no request waiting for your decision matches "${id}": it may be decided already (\`stint requests --pending\` lists what waits for you), or give the full id`,
      );
      // A policy may ask the approver for a recent MFA check (approval.mfa; critical roles by default).
      const { data, raw } = await withStepUp(ctx, client, options.otp, () =>
        client.request("POST", `/v1/activation-requests/${segment(requestId)}/approvals`, {
          body: reason === undefined ? {} : { reason },
          schema: activationRequest,
        }),
      );
      emit(ctx, json, raw, () => {
        const now = ctx.now();
        if (data.state === "pending") return `Approval recorded. Now at ${sanitize(describeProgress(data))}.\n`;
        if (data.state === "active") return `Approved. ${sanitize(describeActive(data, now))}\n`;
        return `Approved. ${sanitize(describeOutcome(data, now))}\n`;
      });
    });

  program
    .command("deny")
    .description("deny a request that waits for your decision")
    .argument("<id>", "request id (the UUID, or at least 8 of its hex digits)")
    .requiredOption("--reason <text>", "why (shown to the requester, recorded in the audit log)")
    .addHelpText("after", '\nExample:\n  stint deny 7c1e9a42 --reason "no ticket for this change"\n')
    .action(async (id: string, options: { reason: string }, command: Command) => {
      const { json } = globalOptions(command);
      const reason = checkReason("--reason", options.reason);
      const client = await clientFor(ctx, command);
      const requestId = await resolveRequestId(
        client,
        id,
        ["inbox", "mine", "all"],
        `no request waiting for your decision matches "${id}": it may be decided already (\`stint requests --pending\` lists what waits for you), or give the full id`,
      );
      const { data, raw } = await client.request("POST", `/v1/activation-requests/${segment(requestId)}/denials`, {
        body: { reason },
        schema: activationRequest,
      });
      emit(
        ctx,
        json,
        raw,
        () => `Denied request ${data.id} (${sanitize(data.role)} for ${sanitize(data.requester)}).\n`,
      );
    });

  program
    .command("cancel")
    .description("withdraw your own request while it is pending")
    .argument("<id>", "request id (the UUID, or at least 8 of its hex digits)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const requestId = await resolveRequestId(client, id, ["mine"]);
      const { data, raw } = await client.request("POST", `/v1/activation-requests/${segment(requestId)}/cancel`, {
        schema: activationRequest,
      });
      emit(ctx, json, raw, () => `Cancelled request ${data.id} (${sanitize(data.role)}).\n`);
    });

  program
    .command("extend")
    .description("ask for more time on an active role; the extension goes through the role's policy again")
    .argument("<role>", "an active role of yours")
    .requiredOption("--by <duration>", "how much longer: 30m, 1h …", durationArgument)
    .requiredOption("--reason <text>", "why you need longer")
    .option("--otp <code>", "- to read a fresh one-time code from stdin, for roles that need a recent MFA check")
    .addHelpText(
      "after",
      '\nExample:\n  stint extend prod-db-reader --by 30m --reason "the migration is slower than planned"\n',
    )
    .action(async (roleName: string, options: { by: string; reason: string; otp?: string }, command: Command) => {
      const { json } = globalOptions(command);
      const role = checkName("role", roleName);
      const reason = checkReason("--reason", options.reason);
      const client = await clientFor(ctx, command);
      const { data, raw } = await withStepUp(ctx, client, options.otp, () =>
        client.request("POST", `/v1/me/roles/${segment(role)}/extensions`, {
          body: { by: options.by, reason },
          schema: activationRequest,
        }),
      );
      if (json) {
        emit(ctx, json, raw, () => "");
        return;
      }
      if (data.state === "pending") {
        ctx.stdout.write(
          `Extension ${data.id} of ${sanitize(role)} is pending: ${sanitize(describeProgress(data))}.\n`,
        );
        return;
      }
      if (data.state === "approved" && data.extendsRequestId !== null) {
        const parent = await client.request("GET", `/v1/activation-requests/${segment(data.extendsRequestId)}`, {
          schema: activationRequest,
        });
        ctx.stdout.write(`Extended by ${options.by}: ${sanitize(describeActive(parent.data, ctx.now()))}\n`);
        return;
      }
      ctx.stdout.write(`${sanitize(describeOutcome(data, ctx.now()))}\n`);
    });

  program
    .command("deactivate")
    .description("end your own active role now, before it expires")
    .argument("<role>", "an active role of yours")
    .action(async (roleName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const role = checkName("role", roleName);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", `/v1/me/roles/${segment(role)}/deactivate`, {
        schema: activationRequest,
      });
      emit(ctx, json, raw, () => `Deactivated ${sanitize(data.role)} (request ${data.id}).\n`);
    });

  program
    .command("revoke")
    .description("end someone's active role now (admin, security)")
    .argument("<id>", "request id (the UUID, or at least 8 of its hex digits)")
    .requiredOption("--reason <text>", "why (shown to the holder, recorded in the audit log)")
    .addHelpText("after", '\nExample:\n  stint revoke 7c1e9a42 --reason "suspicious queries, see SEC-88"\n')
    .action(async (id: string, options: { reason: string }, command: Command) => {
      const { json } = globalOptions(command);
      const reason = checkReason("--reason", options.reason);
      const client = await clientFor(ctx, command);
      const requestId = await resolveRequestId(client, id, ["all", "mine"]);
      const { data, raw } = await client.request("POST", `/v1/activation-requests/${segment(requestId)}/revoke`, {
        body: { reason },
        schema: activationRequest,
      });
      emit(
        ctx,
        json,
        raw,
        () => `Revoked ${sanitize(data.role)} of ${sanitize(data.requester)} (request ${data.id}).\n`,
      );
    });

  program
    .command("check")
    .description("does PRINCIPAL hold ROLE right now? exit 0 when it does, 9 when not (5: you may not ask)")
    .argument("<principal>", "user or service name (someone else needs auditor, security or admin)")
    .argument("<role>", "role name")
    .addHelpText("after", "\nExample:\n  stint check alice prod-db-reader && echo allowed\n")
    .action(async (principalName: string, roleName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const principal = checkName("principal", principalName);
      const role = checkName("role", roleName);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/check", {
        query: { principal, role },
        schema: checkResult,
      });
      if (data.allowed) {
        const until = data.expiresAt
          ? ` until ${clock(data.expiresAt)} (${humanSpan(Date.parse(data.expiresAt) - ctx.now())} left)`
          : "";
        emit(ctx, json, raw, () => `allowed: ${principal} holds ${role}${until}\n`);
        return;
      }
      emit(ctx, json, raw, () => `not allowed: ${principal} does not hold ${role} (${sanitize(data.reason)})\n`);
      throw new CliError("NOT_ALLOWED", data.reason, { exitCode: EXIT_CODES.notHeld, reported: true });
    });

  const token = program.command("token").description("short-lived tokens that prove your active roles");
  token
    .command("activation")
    .description("a signed JWT listing your active roles, for services that trust Stint (see /.well-known/jwks.json)")
    .addHelpText(
      "after",
      '\nExample:\n  curl -H "Authorization: Bearer $(stint token activation)" https://reports.internal/\n',
    )
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/tokens/activation", { schema: activationToken });
      emit(ctx, json, raw, () => `${data.token}\n`);
      if (!json) {
        const roles = data.roles.map((role) => role.role).join(", ") || "none";
        note(ctx, `Expires ${clock(data.expiresAt)}; active roles: ${sanitize(roles)}.`);
      }
    });
}
