/**
 * Pure rules of the PostgreSQL connector: what an address, options, entitlement
 * and login may look like, identifier quoting, the SQL each operation sends, and
 * how a failure is classified. No IO here (eslint enforces it).
 */
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { ConnectorError, refused, unavailable } from "../connector.types.js";
import { sessionOptionProblems } from "../session-options.rules.js";
import { tlsCaProblems } from "../tls-ca.rules.js";

/** Logins and role names Stint accepts; ASCII, so 63 characters fit PostgreSQL's 63-byte NAMEDATALEN limit. */
export const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.@-]{0,62}$/;

/** Names PostgreSQL treats as keywords in role positions, never real roles. */
const RESERVED_NAMES = ["public", "none", "current_role", "current_user", "session_user"];

export const ATTRIBUTES = ["SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION"] as const;
export type Attribute = (typeof ATTRIBUTES)[number];

/** The pg_roles column that says whether a role has an attribute (a fixed map, never user input). */
export const ATTRIBUTE_COLUMNS: Readonly<Record<Attribute, string>> = {
  SUPERUSER: "rolsuper",
  CREATEROLE: "rolcreaterole",
  CREATEDB: "rolcreatedb",
  BYPASSRLS: "rolbypassrls",
  REPLICATION: "rolreplication",
};

/** `dynamic`: the role mints a login per activation (createLogin) instead of granting to an existing one. */
export type PostgresEntitlement =
  { kind: "role"; role: string; dynamic?: boolean } | { kind: "attribute"; attribute: Attribute };

export interface PostgresOptions {
  /** End the login's backends after a revoke. */
  terminateSessions: boolean;
  /** Roles whose direct members discovery reports. */
  privilegedRoles: string[];
  /** Logins discovery leaves out. */
  ignore: string[];
}

export const DEFAULT_OPTIONS: Readonly<PostgresOptions> = { terminateSessions: true, privilegedRoles: [], ignore: [] };

/**
 * Options keys besides DEFAULT_OPTIONS': session (the proxy's login), tls, auth, databases, preCreatedLogins (how
 * many dynamic logins to keep created ahead of demand: postgres.precreated.ts).
 */
const OTHER_OPTION_KEYS = ["session", "tls", "auth", "databases", "preCreatedLogins"];

/**
 * Sign-in methods a target may opt into besides SCRAM-SHA-256 with channel binding (always
 * accepted): "scram-sha-256" without channel binding over TLS, "md5" and "password" (cleartext).
 * Without TLS (sslmode=disable) there is no channel to bind, so SCRAM-SHA-256 is then accepted too.
 */
export const WEAK_AUTH_METHODS = ["scram-sha-256", "md5", "password"] as const;
export type WeakAuthMethod = (typeof WEAK_AUTH_METHODS)[number];

/** How Stint signs in to a target (the connector and the session proxy alike). */
export interface UpstreamSecurity {
  /** null: no TLS (sslmode=disable, an explicit opt-in). */
  tls: { mode: "require" | "verify-ca" | "verify-full"; ca: string | null } | null;
  /** Accepted besides SCRAM-SHA-256-PLUS. */
  allow: WeakAuthMethod[];
}

/** Double-quotes an identifier, doubling embedded quotes (as libpq's PQescapeIdentifier does). */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.includes("\0")) throw new Error("an identifier must be non-empty and free of NUL");
  return `"${name.replaceAll('"', '""')}"`;
}

function nameProblems(what: string, name: string): string[] {
  if (!NAME_PATTERN.test(name))
    return [
      `${what} ${JSON.stringify(name)} must start with a letter or _ and contain only letters, digits, _ . @ - (at most 63 characters)`,
    ];
  if (RESERVED_NAMES.includes(name.toLowerCase())) return [`${what} ${JSON.stringify(name)} is a reserved word`];
  return [];
}

export function loginProblems(login: string): string[] {
  const problems = nameProblems("login", login);
  if (problems.length === 0 && login.toLowerCase().startsWith("pg_"))
    problems.push(`login ${JSON.stringify(login)} starts with pg_, which PostgreSQL reserves for its own roles`);
  return problems;
}

export function entitlementProblems(entitlement: Record<string, unknown>): string[] {
  const keys = Object.keys(entitlement).filter((key) => key !== "dynamic");
  const unknown = keys.filter((key) => key !== "role" && key !== "attribute");
  if (unknown.length > 0)
    return [
      `entitlement has unknown field(s) ${unknown.join(", ")}: use { role: "<role>" } or { attribute: "<ATTR>" }`,
    ];
  if (keys.length !== 1) return ['entitlement needs exactly one of { role: "<role>" } or { attribute: "<ATTR>" }'];
  if (entitlement.dynamic !== undefined && typeof entitlement.dynamic !== "boolean")
    return ["entitlement.dynamic must be true or false"];
  // A login minted with SUPERUSER (or CREATEROLE, BYPASSRLS) would be a superuser nobody reviewed: use a role.
  if (entitlement.dynamic === true && "attribute" in entitlement)
    return ['entitlement.dynamic needs a role ({ role: "<role>", dynamic: true }), not an attribute'];
  if ("role" in entitlement) {
    if (typeof entitlement.role !== "string") return ["entitlement.role must be a string (a role name)"];
    return nameProblems("entitlement.role", entitlement.role);
  }
  if (typeof entitlement.attribute !== "string" || !(ATTRIBUTES as readonly string[]).includes(entitlement.attribute))
    return [`entitlement.attribute must be one of ${ATTRIBUTES.join(", ")}`];
  return [];
}

/** The entitlement in typed form; throws a refusal when it is not valid (callers check first). */
export function parseEntitlement(entitlement: Record<string, unknown>): PostgresEntitlement {
  const problems = entitlementProblems(entitlement);
  if (problems.length > 0) throw refused(problems.join("; "));
  if (typeof entitlement.role !== "string") return { kind: "attribute", attribute: entitlement.attribute as Attribute };
  return entitlement.dynamic === true
    ? { kind: "role", role: entitlement.role, dynamic: true }
    : { kind: "role", role: entitlement.role };
}

/** The role a dynamic login is granted; throws a refusal unless the entitlement is `{ role, dynamic: true }`. */
export function parseDynamicRole(entitlement: Record<string, unknown>): string {
  const parsed = parseEntitlement(entitlement);
  if (parsed.kind !== "role" || parsed.dynamic !== true)
    throw refused('a dynamic login needs an entitlement { role: "<role>", dynamic: true }');
  return parsed.role;
}

/**
 * A string literal for SQL, as node-postgres' escapeLiteral writes it: single quotes and
 * backslashes doubled, and E'' when there is a backslash, so the result means the same whatever
 * standard_conforming_strings says. NUL cannot be in a PostgreSQL string (and would cut the query).
 */
export function quoteLiteral(value: string): string {
  if (value.includes("\0")) throw new Error("a literal must be free of NUL");
  const body = value.replaceAll("'", "''").replaceAll("\\", "\\\\");
  return value.includes("\\") ? ` E'${body}'` : `'${body}'`;
}

/** Problems with a password Stint is asked to set (never repeating it). */
export function passwordProblems(password: string): string[] {
  if (password.length === 0) return ["the password must not be empty (PostgreSQL never accepts an empty one)"];
  if (password.includes("\0")) return ["the password must not contain NUL"];
  return [];
}

/** PostgreSQL's default iteration count (scram_iterations, PostgreSQL 16+). */
export const SCRAM_ITERATIONS = 4096;

/**
 * The SCRAM-SHA-256 secret PostgreSQL stores for a password (RFC 5802/7677, the format of
 * pg_authid.rolpassword), so the password itself never reaches the server, its statement log or
 * pg_stat_activity. Null for passwords outside printable ASCII, where PostgreSQL would first apply
 * SASLprep (not done here): those are sent as a literal for the server to hash.
 */
export function scramSecret(password: string, salt: Buffer, iterations = SCRAM_ITERATIONS): string | null {
  if (!scramHashable(password)) return null;
  return scramSecretOf(pbkdf2Sync(password, salt, iterations, 32, "sha256"), salt, iterations);
}

/** Whether scramSecret can hash the password here (printable ASCII: SASLprep leaves it as it is). */
export const scramHashable = (password: string) => /^[\x20-\x7e]+$/.test(password);

/** The SCRAM-SHA-256 secret from the salted password (PBKDF2-HMAC-SHA-256 of the password, `salt`, `iterations`). */
export function scramSecretOf(salted: Buffer, salt: Buffer, iterations = SCRAM_ITERATIONS): string {
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** Marks a login createLogin minted, so that it never takes over, or drops, a login someone else made. */
export const DYNAMIC_LOGIN_COMMENT = "stint: dynamic login";

/**
 * The start of a PL/pgSQL block of createLogin's or dropLogin's: looks at `login` (into the block's `found` and
 * `note`, and `also`'s column into its variable) and refuses, with SQLSTATE `code` and `refusal`, a login that
 * exists without Stint's mark (someone else made it).
 */
function madeByStintSql(
  login: string,
  check: { also?: { select: string; into: string }; code: string; refusal: string },
): string {
  const { also } = check;
  return `
  SELECT r.oid IS NOT NULL, pg_catalog.shobj_description(r.oid, 'pg_authid')${also ? `,\n         ${also.select}` : ""}
    INTO found, note${also ? `, ${also.into}` : ""}
    FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_roles r ON r.rolname = ${quoteLiteral(login)};
  IF found AND note IS DISTINCT FROM ${quoteLiteral(DYNAMIC_LOGIN_COMMENT)} THEN
    RAISE EXCEPTION USING ERRCODE = '${check.code}', MESSAGE = ${quoteLiteral(check.refusal)};
  END IF;`;
}

/** `passwordLiteral` is already quoted (see quoteLiteral); `validUntil` is quoted here. */
export function createLoginSql(login: string, passwordLiteral: string, validUntil: Date, exists: boolean): string {
  const verb = exists ? "ALTER" : "CREATE";
  return `${verb} ROLE ${quoteIdent(login)} WITH LOGIN PASSWORD ${passwordLiteral.trim()} VALID UNTIL ${quoteLiteral(validUntil.toISOString())}`;
}

/**
 * createLogin's one round trip: one simple query, so one transaction that does not wait for the target's WAL flush
 * (a login a target crash then loses fails to sign in: fail closed). A PL/pgSQL block looks at the login first:
 * one someone else made is refused (SQLSTATE 42710, nothing changed); a missing one is created (NOLOGIN) and
 * marked as Stint's; CONNECT on the admin's database is granted when neither the login nor PUBLIC has it. Then,
 * outside the block, the password and validity are set and the role granted. The password (already a SCRAM
 * secret where one can be computed) is never in the block, so no PL/pgSQL error context can repeat it.
 * `passwordLiteral` is quoted already (see quoteLiteral).
 */
export function createLoginBatchSql(login: string, role: string, passwordLiteral: string, validUntil: Date): string {
  const name = quoteLiteral(login);
  const body = `
DECLARE
  found boolean;
  note text;
  can_connect boolean;
BEGIN${madeByStintSql(login, {
    also: {
      select:
        "pg_catalog.has_database_privilege(COALESCE(r.rolname, 'public'), pg_catalog.current_database(), 'CONNECT')",
      into: "can_connect",
    },
    code: "42710",
    refusal: `login ${login} exists and was not created by Stint: a dynamic login needs a fresh name`,
  })}
  IF NOT found THEN
    CREATE ROLE ${quoteIdent(login)};
    COMMENT ON ROLE ${quoteIdent(login)} IS ${quoteLiteral(DYNAMIC_LOGIN_COMMENT)};
  END IF;
  IF NOT can_connect THEN
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %I', pg_catalog.current_database(), ${name});
  END IF;
END`;
  return [
    "SET LOCAL synchronous_commit TO off",
    `DO ${dollarQuoted(body)}`,
    createLoginSql(login, passwordLiteral, validUntil, true),
    provisionSql(login, { kind: "role", role }),
  ].join(";\n");
}

/**
 * dropLogin's one round trip: one simple query, two transactions. In the first, a PL/pgSQL block looks at the login
 * (one someone else made is refused, nothing changed; a missing one is left alone) and makes Stint's NOLOGIN; its
 * COMMIT makes that visible before any session is ended, so none starts between the terminate and the drop. In the
 * second, a block ends the login's sessions, waiting up to `waitMs` for each to exit (PostgreSQL 14+; null: no
 * wait) — one still there fails the call with SQLSTATE 55P03 (retried) before anything is dropped — and revokes a
 * CONNECT that createLogin gave (it would keep DROP ROLE from working); then DROP ROLE, outside the blocks, fails in
 * PostgreSQL's words when the login owns objects. An error in the first transaction leaves its block open (aborted):
 * the caller rolls it back before using the connection again.
 */
export function dropLoginBatchSql(login: string, waitMs: number | null): string {
  const name = quoteLiteral(login);
  const terminate =
    waitMs === null
      ? "pg_catalog.pg_terminate_backend(pid)"
      : `pg_catalog.pg_terminate_backend(pid, ${Math.max(1, Math.trunc(waitMs))})`;
  const disable = `
DECLARE
  found boolean;
  note text;
BEGIN${madeByStintSql(login, { code: "42939", refusal: `login ${login} was not created by Stint: not dropping it` })}
  IF found THEN
    EXECUTE pg_catalog.format('ALTER ROLE %I WITH NOLOGIN', ${name});
  END IF;
END`;
  const end = `
DECLARE
  lingering bigint;
BEGIN
  SELECT count(*) FILTER (WHERE NOT ended) INTO lingering
    FROM (SELECT ${terminate} AS ended FROM pg_catalog.pg_stat_activity
           WHERE usename = ${name} AND pid <> pg_catalog.pg_backend_pid()) AS sessions;
  IF lingering > 0 THEN
    RAISE EXCEPTION USING ERRCODE = '55P03',
      MESSAGE = lingering || ' session(s) of ' || ${name} || ' did not end in time';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) acl, pg_catalog.pg_roles r
              WHERE d.datname = pg_catalog.current_database() AND r.rolname = ${name} AND acl.grantee = r.oid
                AND acl.privilege_type = 'CONNECT') THEN
    EXECUTE pg_catalog.format('REVOKE CONNECT ON DATABASE %I FROM %I', pg_catalog.current_database(), ${name});
  END IF;
END`;
  return [
    "BEGIN",
    `DO ${dollarQuoted(disable)}`,
    "COMMIT",
    `DO ${dollarQuoted(end)}`,
    `DROP ROLE IF EXISTS ${quoteIdent(login)}`,
  ].join(";\n");
}

/** `text` dollar-quoted with a tag it does not contain. */
export function dollarQuoted(text: string): string {
  let tag = "$stint$";
  for (let n = 0; text.includes(tag) || text.endsWith(tag.slice(0, -1)); n++) tag = `$stint${n}$`;
  return `${tag}${text}${tag}`;
}

function authOptionProblems(value: unknown): string[] {
  if (value === undefined) return [];
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return ["options.auth must be a mapping such as { allow: [md5] }"];
  const record = value as Record<string, unknown>;
  const problems = Object.keys(record)
    .filter((key) => key !== "allow")
    .map((key) => `options.auth.${key} is not an auth setting (known: allow)`);
  const allow = record.allow;
  if (
    allow !== undefined &&
    (!Array.isArray(allow) || allow.some((m) => !(WEAK_AUTH_METHODS as readonly unknown[]).includes(m)))
  )
    problems.push(`options.auth.allow must be a list of ${WEAK_AUTH_METHODS.join(", ")}`);
  return problems;
}

function databasesProblems(value: unknown): string[] {
  if (value === undefined) return [];
  if (
    !Array.isArray(value) ||
    value.some((name) => typeof name !== "string" || name === "" || name.length > 63 || name.includes("\0"))
  )
    return ["options.databases must be a list of database names"];
  return [];
}

export function optionProblems(options: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const known = [...Object.keys(DEFAULT_OPTIONS), ...OTHER_OPTION_KEYS];
  for (const key of Object.keys(options))
    if (!known.includes(key)) problems.push(`options.${key} is not a postgres option (known: ${known.join(", ")})`);
  problems.push(...sessionOptionProblems(options.session));
  problems.push(...tlsCaProblems(options.tls, "known: ca; the mode is the address's sslmode"));
  problems.push(...authOptionProblems(options.auth));
  problems.push(...databasesProblems(options.databases));
  const pre = options.preCreatedLogins;
  if (pre !== undefined && !(Number.isInteger(pre) && (pre as number) >= 0 && (pre as number) <= 32))
    problems.push("options.preCreatedLogins must be a whole number from 0 to 32");
  if (options.terminateSessions !== undefined && typeof options.terminateSessions !== "boolean")
    problems.push("options.terminateSessions must be true or false");
  for (const key of ["privilegedRoles", "ignore"] as const) {
    const value = options[key];
    if (value === undefined) continue;
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string")) {
      problems.push(`options.${key} must be a list of role names`);
      continue;
    }
    for (const name of value as string[]) problems.push(...nameProblems(`options.${key} entry`, name));
  }
  return problems;
}

/** Options with defaults filled in; throws a refusal when they are not valid. */
export function parseOptions(options: Record<string, unknown>): PostgresOptions {
  const problems = optionProblems(options);
  if (problems.length > 0) throw refused(problems.join("; "));
  return {
    terminateSessions: (options.terminateSessions as boolean | undefined) ?? DEFAULT_OPTIONS.terminateSessions,
    privilegedRoles: [...((options.privilegedRoles as string[] | undefined) ?? [])],
    ignore: [...((options.ignore as string[] | undefined) ?? [])],
  };
}

/** libpq's names; verify-full (chain and host name) unless the address says otherwise. */
export type SslMode = "disable" | "require" | "verify-ca" | "verify-full";

export interface PostgresAddress {
  host: string;
  port: number;
  user: string;
  database: string;
  ssl: SslMode;
  applicationName: string;
}

const SSL_MODES: readonly string[] = ["disable", "require", "verify-ca", "verify-full"];
const QUERY_KEYS = ["sslmode", "application_name"];

/**
 * Problems with a target address: a postgres:// URL naming a user and a host, without a password
 * (the password is the target's credential), and no query parameters but sslmode and application_name.
 * Messages never repeat the address, which might hold a secret.
 */
export function checkAddress(address: string): string[] {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return ["the address must be a URL such as postgres://postgres@db.example.com:5432/app"];
  }
  const problems: string[] = [];
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:")
    problems.push("the address must start with postgres:// or postgresql://");
  if (url.password !== "")
    problems.push("the address must not contain a password: store it as the target's credential");
  if (url.username === "") problems.push("the address must name the admin user, as in postgres://postgres@host/app");
  if (url.hostname === "") problems.push("the address must name a host");
  for (const key of new Set(url.searchParams.keys()))
    if (!QUERY_KEYS.includes(key))
      problems.push(`the address may carry only ${QUERY_KEYS.join(" and ")} as parameters, not ${key}`);
  const sslmode = url.searchParams.get("sslmode");
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) problems.push(`sslmode must be one of ${SSL_MODES.join(", ")}`);
  if (url.pathname.length > 1 && url.pathname.slice(1).includes("/"))
    problems.push("the address path must be just the database name");
  return problems;
}

/** The parts of a valid address; throws a refusal listing the problems otherwise. */
export function parseAddress(address: string): PostgresAddress {
  const problems = checkAddress(address);
  if (problems.length > 0) throw refused(problems.join("; "));
  const url = new URL(address);
  const user = decodeURIComponent(url.username);
  const host = decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, "$1");
  return {
    host,
    port: url.port === "" ? 5432 : Number(url.port),
    user,
    database: url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : user,
    ssl: (url.searchParams.get("sslmode") as SslMode | null) ?? "verify-full",
    applicationName: url.searchParams.get("application_name") ?? "stint",
  };
}

/**
 * How to sign in to a target: TLS as its address's sslmode says (verify-full by default) with the
 * CA bundle of options.tls.ca (else the system's), and the weaker methods options.auth.allow opts into.
 */
export function upstreamSecurity(address: PostgresAddress, options: Record<string, unknown>): UpstreamSecurity {
  const tls = (options.tls ?? {}) as { ca?: string };
  const auth = (options.auth ?? {}) as { allow?: WeakAuthMethod[] };
  const allow = [...new Set(auth.allow ?? [])];
  if (address.ssl === "disable") {
    // Without TLS there is no channel to bind: plain SCRAM is then the strongest there is.
    if (!allow.includes("scram-sha-256")) allow.push("scram-sha-256");
    return { tls: null, allow };
  }
  return { tls: { mode: address.ssl, ca: tls.ca ?? null }, allow };
}

/**
 * What a target's definition weakens, for people applying it (plan notes): each an opt-in that
 * lets a network attacker read or capture what Stint sends. Empty for a valid target that opts into nothing.
 */
export function securityWarnings(address: string | null, options: Record<string, unknown>): string[] {
  if (address === null || checkAddress(address).length > 0 || optionProblems(options).length > 0) return [];
  const parsed = parseAddress(address);
  const warnings: string[] = [];
  if (parsed.ssl === "disable")
    warnings.push(
      "sslmode=disable: Stint talks to this database in clear (queries, results and any password it is asked for)",
    );
  else if (parsed.ssl === "require")
    warnings.push("sslmode=require: the server certificate is not checked, so anyone in the path can pose as it");
  else if (parsed.ssl === "verify-ca")
    warnings.push("sslmode=verify-ca: the server certificate's host name is not checked");
  const allow = ((options.auth as { allow?: string[] } | undefined)?.allow ?? []).filter(
    (m, i, all) => all.indexOf(m) === i,
  );
  if (allow.includes("password"))
    warnings.push("options.auth.allow: password sends the target's password itself when the server asks for it");
  if (allow.includes("md5"))
    warnings.push("options.auth.allow: md5 answers with a replayable hash of the target's password");
  if (allow.includes("scram-sha-256") && parsed.ssl !== "disable")
    warnings.push("options.auth.allow: scram-sha-256 lets the sign-in go without channel binding");
  return warnings;
}

export function provisionSql(login: string, entitlement: PostgresEntitlement): string {
  return entitlement.kind === "role"
    ? `GRANT ${quoteIdent(entitlement.role)} TO ${quoteIdent(login)}`
    : `ALTER ROLE ${quoteIdent(login)} WITH ${entitlement.attribute}`;
}

/** With `grantedBy`, removes the membership a particular grantor gave (PostgreSQL 16 keeps one per grantor). */
export function revokeSql(login: string, entitlement: PostgresEntitlement, grantedBy?: string): string {
  if (entitlement.kind === "attribute") return `ALTER ROLE ${quoteIdent(login)} WITH NO${entitlement.attribute}`;
  const by = grantedBy === undefined ? "" : ` GRANTED BY ${quoteIdent(grantedBy)}`;
  return `REVOKE ${quoteIdent(entitlement.role)} FROM ${quoteIdent(login)}${by}`;
}

/** Sorted (by code point, not locale) and without duplicates, as `observe` promises. */
export function sortedUnique(names: Iterable<string>): string[] {
  return [...new Set(names)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * SQLSTATE classes and codes that mean "try again later": connection exceptions, insufficient
 * resources, shutdown/startup, a cancelled statement (our timeout), lock timeouts, serialization failures.
 */
const TRANSIENT_CLASSES = ["08", "53", "58"];
const TRANSIENT_CODES = ["57P01", "57P02", "57P03", "57P04", "57014", "55P03", "40001", "40P01"];
const NETWORK_CODES = [
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
];

export interface FailureContext {
  /** host:port, for messages. */
  where: string;
  /** Removed from every message. */
  credential: string | null;
  /** Also removed from every message: a password being set, its SCRAM secret, its quoted literal. */
  secrets?: string[];
}

function redact(message: string, context: FailureContext): string {
  let redacted = message;
  for (const secret of [context.credential, ...(context.secrets ?? [])])
    if (secret) redacted = redacted.replaceAll(secret, "***");
  return redacted;
}

/**
 * A ConnectorError for anything a call threw: the server's own message when it answered (refused,
 * unless its SQLSTATE says to retry), unavailable when it could not be reached or timed out.
 */
export function classifyFailure(error: unknown, context: FailureContext): ConnectorError {
  if (error instanceof ConnectorError) return new ConnectorError(error.reason, redact(error.message, context));
  const fields = (typeof error === "object" && error !== null ? error : {}) as {
    code?: unknown;
    message?: unknown;
    severity?: unknown;
  };
  const message = redact(typeof fields.message === "string" ? fields.message : String(error), context);
  const code = typeof fields.code === "string" ? fields.code : "";
  // A server error carries a five-character SQLSTATE and a severity.
  if (/^[0-9A-Z]{5}$/.test(code) && typeof fields.severity === "string") {
    const transient = TRANSIENT_CLASSES.includes(code.slice(0, 2)) || TRANSIENT_CODES.includes(code);
    return transient ? unavailable(`${context.where}: ${message}`) : refused(message);
  }
  if (NETWORK_CODES.includes(code)) return unavailable(`cannot reach ${context.where} (${code})`);
  if (message.startsWith("SASL:") || message.includes("password must be"))
    return refused(`${context.where} asks for a password and none was accepted: set the target's credential`);
  if (/timeout/i.test(message)) return unavailable(`${context.where} did not answer in time (${message})`);
  if (/^Connection terminated/.test(message)) return unavailable(`the connection to ${context.where} was lost`);
  // A TLS mismatch or a certificate that does not verify will not fix itself on retry.
  if (/SSL|TLS|certificate/i.test(message)) return refused(`${context.where}: TLS failed (${message})`);
  return unavailable(`${context.where}: unexpected failure (${message})`);
}
