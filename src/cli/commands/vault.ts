/**
 * The vault: `stint secret` (put, get, list, versions, checkout, checkin) and `stint operator`
 * (status, init, unseal, seal, rotate-key). A secret's value and an unseal share are read from
 * stdin or a prompt that does not echo, never from argv (ps and shell history keep it); a value
 * is printed only by `get` and `checkout`, alone on stdout, so it pipes.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import type { z } from "zod";
import {
  allowanceResult,
  checkinResult,
  checkout as checkoutResult,
  initResult,
  putSecretBody,
  revealResult,
  rotateResult,
  rotateKeyResult,
  secretKind,
  secretList,
  secretMeta,
  secretPathText,
  secretValue,
  secretVersions,
  vaultStatus,
} from "../../contract/vault.js";
import { segment } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { CliError, isCliError, usageError } from "../exit-codes.js";
import { type Column, emit, emitValue, note, renderKeyValues, renderTable, sanitize, warn } from "../output.js";
import { isInteractive, readFromTerminal, readStdinLine } from "../prompt.js";
import {
  checkReason,
  clientFor,
  collect,
  durationArgument,
  integerIn,
  readAll,
  withoutTrailingNewline,
} from "./shared.js";

type SecretMeta = z.infer<typeof secretMeta>;
type SecretVersion = z.infer<typeof secretVersions>["items"][number];

const PLATFORM_ROLES = ["admin", "security", "auditor", "user"] as const;
const MAX_VALUE_LENGTH = 65_536;

/** An ISO time without milliseconds, as people read it. */
function clock(iso: string): string {
  return iso.replace(/\.\d{3}(?=Z$)/, "");
}

/** The API path of a secret: its path is one URL-encoded segment (`prod%2Fdb%2Fadmin`). */
function secretUrl(path: string, suffix = ""): string {
  return `/v1/secrets/${segment(path)}${suffix}`;
}

/** Checks a secret path before anything is read from stdin or sent. */
function checkPath(value: string): string {
  const parsed = secretPathText.safeParse(value);
  if (!parsed.success) throw usageError(`PATH "${value}" ${parsed.error.issues[0]?.message ?? "is not valid"}`);
  return parsed.data;
}

/** The value: stdin to its end, or at a terminal one line without echo. */
async function readValue(ctx: CliContext, path: string): Promise<string> {
  const text = isInteractive(ctx)
    ? await readFromTerminal(ctx, `Value of ${sanitize(path)} (not shown): `, false)
    : await readAll(ctx);
  const value = withoutTrailingNewline(text);
  if (value === "") throw usageError("stdin held no value; nothing was stored");
  if (value.length > MAX_VALUE_LENGTH) {
    throw usageError(`the value is longer than ${MAX_VALUE_LENGTH} characters; nothing was stored`);
  }
  return value;
}

/** One unseal share: one line of stdin, or at a terminal a prompt that does not echo. */
async function readShare(ctx: CliContext): Promise<string> {
  const share = isInteractive(ctx)
    ? await readFromTerminal(ctx, "Unseal share (not shown): ", false)
    : await readStdinLine(ctx);
  if (share === null || share.trim() === "") throw usageError("no unseal share given on stdin");
  return share.trim();
}

// ---------------------------------------------------------------------------
// Tables

function rolesOf(secret: SecretMeta): string[] {
  return [...secret.roles, ...secret.platformRoles.map((role) => `platform:${role}`)];
}

const SECRET_COLUMNS: readonly Column<SecretMeta>[] = [
  { header: "PATH", value: (s) => s.path },
  { header: "KIND", value: (s) => s.kind },
  { header: "VERSION", value: (s) => s.currentVersion },
  { header: "ROLES", value: (s) => rolesOf(s) },
  {
    header: "CHECKED OUT",
    value: (s) => (s.checkedOut ? `${s.checkedOut.holder} until ${clock(s.checkedOut.until)}` : null),
  },
];

const VERSION_COLUMNS: readonly Column<SecretVersion>[] = [
  { header: "VERSION", value: (v) => v.version },
  { header: "SOURCE", value: (v) => v.source },
  { header: "BY", value: (v) => v.createdBy },
  { header: "AT", value: (v) => clock(v.createdAt) },
  { header: "CURRENT", value: (v) => v.current },
];

function renderStatus(status: z.infer<typeof vaultStatus>): string {
  return renderKeyValues([
    ["mode", status.mode],
    ["sealed", status.sealed],
    ["progress", status.threshold === null ? null : `${status.progress}/${status.threshold}`],
    ["key version", status.keyVersion],
  ]);
}

// ---------------------------------------------------------------------------
// Commands

interface PutOptions {
  valueStdin?: boolean;
  generate?: boolean;
  length?: number;
  kind?: z.infer<typeof secretKind>;
  description?: string;
  role?: string[];
  platformRole?: (typeof PLATFORM_ROLES)[number][];
  exclusive?: boolean;
  maxCheckout?: string;
  rotateOnCheckin?: boolean;
  breakGlass?: boolean;
  rotationTarget?: string;
  rotationLogin?: string;
}

function registerSecretCommands(program: Command, ctx: CliContext): void {
  const secret = program
    .command("secret")
    .description("secrets in the vault: store, read, list, check out and check in")
    .addHelpText(
      "after",
      "\nA value is never taken from the command line: `put` reads it from stdin (or a prompt\n" +
        "that does not echo), and only `get` and `checkout` print it, alone on stdout.\n",
    );

  secret
    .command("put")
    .description("store a new version of a secret (value from stdin, or --generate a random one)")
    .argument("<path>", "the secret's path, e.g. prod/db/admin")
    .option("--value-stdin", "read the value from stdin to its end (one trailing newline is dropped)")
    .option("--generate", "have the server make a random value (never printed: use `stint secret get`)")
    .option("--length <n>", "with --generate: its length, 12-256 (default 32)", integerIn(12, 256))
    .addOption(new Option("--kind <kind>", "what the secret is (default: generic)").choices(secretKind.options))
    .option("--description <text>", "what the secret is for")
    .option("--role <role>", "a role whose active activation may read it (repeatable)", collect)
    .addOption(
      new Option(
        "--platform-role <role>",
        `a platform role that may read it without activation: ${PLATFORM_ROLES.join(", ")} (repeatable)`,
      ).argParser((value: string, previous: string[] | undefined) => {
        if (!(PLATFORM_ROLES as readonly string[]).includes(value)) {
          throw new InvalidArgumentError(`must be one of ${PLATFORM_ROLES.join(", ")}`);
        }
        return [...(previous ?? []), value];
      }),
    )
    .option("--exclusive", "one holder at a time: reading it needs a check-out")
    .option("--max-checkout <duration>", "the longest check-out, e.g. 30m or 2h (default 1h)", durationArgument)
    .option("--rotate-on-checkin", "make a new random version at each check-in (password and api-key)")
    .option(
      "--break-glass",
      "an emergency account: revealed only with `stint secret reveal` (reason, fresh MFA, alarms)",
    )
    .option("--rotation-target <target>", "the secret is a login's password at this target (with --rotation-login)")
    .option("--rotation-login <login>", "the login at --rotation-target whose password `stint secret rotate` changes")
    .addHelpText(
      "after",
      "\nGive exactly one of --value-stdin and --generate. Roles and the check-out policy are kept\n" +
        "from the previous version unless given; any of --exclusive, --max-checkout and\n" +
        "--rotate-on-checkin sets the whole policy (the ones not given take their defaults).\n" +
        "\nExamples:\n  printf '%s' \"$DB_PASSWORD\" | stint secret put prod/db/admin --value-stdin --kind password --role prod-db-admin\n" +
        "  stint secret put prod/api/key --generate --length 48 --kind api-key --exclusive --rotate-on-checkin\n",
    )
    .action(async (path: string, options: PutOptions, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      if (options.valueStdin === options.generate) throw usageError("give exactly one of --value-stdin and --generate");
      if (options.length !== undefined && !options.generate) throw usageError("--length goes only with --generate");
      const client = await clientFor(ctx, command);
      client.requireSession(); // before anyone types or pipes a value

      let kind = options.kind;
      if (kind === undefined) {
        // The API resets an omitted kind to generic; keep the existing secret's kind instead.
        kind = await client
          .request("GET", secretUrl(path), { schema: secretMeta })
          .then(({ data }) => data.kind)
          .catch((error: unknown) => {
            if (isCliError(error) && error.code === "NOT_FOUND") return undefined;
            throw error;
          });
      }
      if ((options.rotationTarget === undefined) !== (options.rotationLogin === undefined))
        throw usageError("give --rotation-target and --rotation-login together");
      const policyGiven =
        options.exclusive !== undefined || options.maxCheckout !== undefined || options.rotateOnCheckin !== undefined;
      const body = {
        ...(kind !== undefined ? { kind } : {}),
        ...(options.generate
          ? { generate: options.length !== undefined ? { length: options.length } : {} }
          : { value: await readValue(ctx, path) }),
        ...(options.description !== undefined ? { description: options.description } : {}),
        ...(options.role !== undefined ? { roles: options.role } : {}),
        ...(options.platformRole !== undefined ? { platformRoles: [...new Set(options.platformRole)] } : {}),
        ...(options.breakGlass ? { breakGlass: true } : {}),
        ...(options.rotationTarget !== undefined && options.rotationLogin !== undefined
          ? { rotation: { target: options.rotationTarget, login: options.rotationLogin } }
          : {}),
        ...(policyGiven
          ? {
              checkout: {
                exclusive: options.exclusive === true,
                ...(options.maxCheckout !== undefined ? { maxDuration: options.maxCheckout } : {}),
                rotateOnCheckin: options.rotateOnCheckin === true,
              },
            }
          : {}),
      };
      const checked = putSecretBody.safeParse(body);
      if (!checked.success) {
        const issue = checked.error.issues[0];
        throw usageError(
          `${issue?.path.join(".") || "input"}: ${issue?.message ?? "is not valid"}; nothing was stored`,
        );
      }
      const { data, raw } = await client.request("PUT", secretUrl(path), { body, schema: secretMeta });
      emit(ctx, json, raw, () => {
        const stored = `Stored ${sanitize(data.path)} version ${data.currentVersion}.\n`;
        return options.generate
          ? `${stored}The generated value was not printed: read it with \`stint secret get ${sanitize(data.path)}\`.\n`
          : stored;
      });
    });

  secret
    .command("get")
    .description("print a secret's value alone on stdout (the current version, or --at-version N)")
    .argument("<path>", "the secret's path")
    // Not --version: that is the program's own flag, which commander takes wherever it stands.
    .option("--at-version <n>", "this version instead of the current one", integerIn(1, 1_000_000_000))
    .addHelpText(
      "after",
      "\nYou need a platform role the secret lists, or an active activation of a role it lists.\n" +
        "An exclusive secret needs your check-out first (stint secret checkout).\n" +
        '\nExamples:\n  PGPASSWORD="$(stint secret get prod/db/admin)" psql -h db.internal -U admin\n' +
        "  stint secret get prod/db/admin --at-version 3\n",
    )
    .action(async (path: string, options: { atVersion?: number }, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", secretUrl(path, "/value"), {
        query: { version: options.atVersion },
        schema: secretValue,
      });
      // The value exactly as stored into a pipe or file (keys and certificates intact); at a terminal, controls show as "?".
      emitValue(ctx, json, raw, data.value);
    });

  secret
    .command("list")
    .alias("ls")
    .description("the secrets you may see (not their values)")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/secrets", { schema: secretList });
      emit(ctx, json, raw, () =>
        data.items.length === 0 ? "No secrets you may see.\n" : renderTable(SECRET_COLUMNS, data.items),
      );
    });

  secret
    .command("versions")
    .description("a secret's versions: where each came from, who made it and when")
    .argument("<path>", "the secret's path")
    .action(async (path: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", secretUrl(path, "/versions"), { schema: secretVersions });
      emit(ctx, json, raw, () => renderTable(VERSION_COLUMNS, data.items));
    });

  secret
    .command("checkout")
    .description("check a secret out (exclusive secrets: you alone may read it until check-in); prints its value")
    .argument("<path>", "the secret's path")
    .requiredOption("--reason <text>", "why (recorded in the audit log)")
    .option("--for <duration>", "how long: 30m, 2h … (default and limit: the secret's max check-out)", durationArgument)
    .addHelpText(
      "after",
      '\nExample:\n  stint secret checkout prod/db/admin --for 30m --reason "INC-1234: rotate replication slot"\n',
    )
    .action(async (path: string, options: { reason: string; for?: string }, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      const reason = checkReason(options.reason);
      const client = await clientFor(ctx, command);
      let result;
      try {
        result = await client.request("POST", secretUrl(path, "/checkout"), {
          body: { reason, ...(options.for !== undefined ? { duration: options.for } : {}) },
          schema: checkoutResult,
        });
      } catch (error) {
        throw checkedOutError(path, error);
      }
      const { data, raw } = result;
      emitValue(ctx, json, raw, data.value);
      if (!json) {
        note(
          ctx,
          `Checked out until ${clock(data.until)}; check it in with \`stint secret checkin ${sanitize(data.path)}\`.`,
        );
      }
    });

  secret
    .command("rotate")
    .description("a new value now; a login's password at a target is changed there and proven before it counts")
    .argument("<path>", "the secret's path")
    .action(async (path: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", secretUrl(path, "/rotate"), { schema: rotateResult });
      emit(
        ctx,
        json,
        raw,
        () =>
          `Rotated ${sanitize(data.path)}: version ${data.version} is current; version ${data.previousVersion} stays readable for rollback.\n`,
      );
    });

  secret
    .command("allow")
    .description("let a target's sessions inject this secret, at the target's address as it is now (admin)")
    .argument("<path>", "the secret's path")
    .requiredOption("--target <name>", "the target whose options.session.secret names it")
    .option("--revoke", "take the allowance away instead")
    .addHelpText(
      "after",
      "\nA target's own secrets (targets/<name>/…) need no allowance when their author may read them; an address\n" +
        "change of the target drops allowances until an admin gives them again.\n" +
        "\nExamples:\n  stint secret allow db/app/app_ops --target app-db\n" +
        "  stint secret allow db/app/app_ops --target app-db --revoke\n",
    )
    .action(async (path: string, options: { target: string; revoke?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      const client = await clientFor(ctx, command);
      const url = secretUrl(path, `/targets/${segment(options.target)}`);
      if (options.revoke) {
        const { raw } = await client.request("DELETE", url);
        emit(ctx, json, raw, () => `${sanitize(path)} is no longer allowed for ${sanitize(options.target)}.\n`);
        return;
      }
      const { data, raw } = await client.request("PUT", url, { schema: allowanceResult });
      emit(
        ctx,
        json,
        raw,
        () => `Sessions of ${sanitize(data.target)} may use ${sanitize(data.path)} (at its current address).\n`,
      );
    });

  secret
    .command("reveal")
    .description("break-glass: reveal an emergency secret (needs a reason and MFA within 5 minutes; alerts everyone)")
    .argument("<path>", "the secret's path")
    .requiredOption("--reason <text>", "the emergency (recorded, sent to every channel, reviewed afterwards)")
    .addHelpText(
      "after",
      "\nSign in with a fresh one-time code first: stint login --otp CODE\n" +
        '\nExample:\n  stint secret reveal emergency/root --reason "INC-9: database down, SSO unavailable"\n',
    )
    .action(async (path: string, options: { reason: string }, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      const reason = checkReason(options.reason);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", secretUrl(path, "/reveal"), {
        body: { reason },
        schema: revealResult,
      });
      emitValue(ctx, json, raw, data.value);
      if (!json)
        warn(
          ctx,
          `break-glass reveal recorded and announced; review ${data.reviewId} is open and ${sanitize(data.path)} is rotated at ${clock(data.rotationDueAt)}.`,
        );
    });

  secret
    .command("checkin")
    .description("return your check-out of a secret (a rotating secret gets a new version)")
    .argument("<path>", "the secret's path")
    .action(async (path: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      checkPath(path);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", secretUrl(path, "/checkin"), { schema: checkinResult });
      emit(ctx, json, raw, () =>
        data.rotated
          ? `Checked in ${sanitize(data.path)}. A new version ${data.currentVersion} was made.\n`
          : `Checked in ${sanitize(data.path)}.\n`,
      );
    });
}

/** CHECKED_OUT names who holds the secret and until when, from the error's details. */
function checkedOutError(path: string, error: unknown): unknown {
  if (!isCliError(error) || error.code !== "CHECKED_OUT") return error;
  const holder = typeof error.details?.holder === "string" ? error.details.holder : null;
  const until = typeof error.details?.until === "string" ? clock(error.details.until) : null;
  if (holder === null) return error;
  return new CliError(
    error.code,
    `${path} is checked out by ${holder}${until ? ` until ${until}` : ""}; wait for its check-in or ask ${holder}.`,
    { ...(error.status !== undefined ? { status: error.status } : {}), details: error.details },
  );
}

function registerOperatorCommands(program: Command, ctx: CliContext): void {
  const operator = program
    .command("operator")
    .description("the vault's operator: status, init with unseal shares, unseal, seal, key rotation (admin)");

  operator
    .command("status")
    .description("whether the vault is sealed, and unseal progress")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/operator/status", { schema: vaultStatus });
      emit(ctx, json, raw, () => renderStatus(data));
    });

  operator
    .command("init")
    .description("split a new vault key into unseal shares (shown once); from then on a restart seals the vault")
    .requiredOption("--shares <n>", "how many shares to make (1-10)", integerIn(1, 10))
    .requiredOption("--threshold <k>", "how many shares an unseal needs (1-10, at most --shares)", integerIn(1, 10))
    .addHelpText("after", "\nExample:\n  stint operator init --shares 5 --threshold 3\n")
    .action(async (options: { shares: number; threshold: number }, command: Command) => {
      const { json } = globalOptions(command);
      if (options.threshold > options.shares) throw usageError("--threshold must be at most --shares");
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/operator/init", {
        body: { shares: options.shares, threshold: options.threshold },
        schema: initResult,
      });
      warn(
        ctx,
        `these ${data.shares.length} unseal shares are shown this once and never again. Give each to a different ` +
          `person; any ${data.threshold} of them unseal the vault, fewer reveal nothing.`,
      );
      emit(ctx, json, raw, () => data.shares.map((share) => `${share}\n`).join(""));
    });

  operator
    .command("unseal")
    .description("give one unseal share (from stdin, or a prompt that does not echo)")
    .addHelpText(
      "after",
      "\nEach holder runs it once with their share; the vault opens when the threshold is reached.\n" +
        "\nExample:\n  stint operator unseal < my-share.txt\n",
    )
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      client.requireSession(); // before anyone types a share
      const share = await readShare(ctx);
      const { data, raw } = await client.request("POST", "/v1/operator/unseal", {
        body: { share },
        schema: vaultStatus,
      });
      emit(ctx, json, raw, () =>
        data.sealed ? `Still sealed: ${data.progress}/${data.threshold ?? "?"} shares given.\n` : "Unsealed.\n",
      );
    });

  operator
    .command("seal")
    .description("forget the vault key on this server: secrets answer SEALED until an unseal")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { raw } = await client.request("POST", "/v1/operator/seal", { schema: vaultStatus });
      emit(ctx, json, raw, () => "Sealed.\n");
    });

  operator
    .command("rotate-key")
    .description("a new key-encryption key; every secret's data key is re-wrapped under it")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/operator/rotate-key", { schema: rotateKeyResult });
      emit(ctx, json, raw, () => `Key version ${data.keyVersion}; ${data.rewrapped} data keys re-wrapped.\n`);
    });
}

export function registerVaultCommands(program: Command, ctx: CliContext): void {
  registerSecretCommands(program, ctx);
  registerOperatorCommands(program, ctx);
}
