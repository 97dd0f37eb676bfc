/**
 * Pure rules of the MariaDB/MySQL connector: what an address, options, login and
 * entitlement may look like, how names are quoted into SQL, how server errors are
 * classified. No IO here; mysql.connector.ts does the talking.
 */
import { ConnectorError, refused, unavailable } from "../connector.types.js";
import { sessionOptionProblems } from "../session-options.rules.js";

/** User, role, database and table names are restricted to characters that need no escaping anywhere. */
const LOGIN_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$/;
const ROLE_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,127}$/;
const OBJECT_NAME_PATTERN = /^[A-Za-z0-9_$][A-Za-z0-9_$-]{0,63}$/;
const HOST_PATTERN = /^[A-Za-z0-9_.%:/-]{1,255}$/;
/** Names MariaDB gives a special meaning to where a role is expected. */
const RESERVED_ROLES = new Set(["NONE", "PUBLIC", "CURRENT_ROLE", "CURRENT_USER", "ALL"]);

export const DEFAULT_PORT = 3306;

/**
 * TLS towards the database, as the PostgreSQL targets' sslmode, and with their default: `verify-full` (TLS, the
 * certificate checked against options.tls.ca or the system's CAs, and the host name). `disable` is an explicit opt-out.
 */
export const SSL_MODES = ["disable", "require", "verify-ca", "verify-full"] as const;
export type MysqlSslMode = (typeof SSL_MODES)[number];

export interface MysqlAddress {
  host: string;
  port: number;
  user: string;
  /** The address's `?sslmode=`; `verify-full` when absent. */
  ssl: MysqlSslMode;
}

/** TLS towards the database (null: none): the mode, and the CA bundle of options.tls.ca (else the system's). */
export interface MysqlTls {
  mode: Exclude<MysqlSslMode, "disable">;
  ca: string | null;
}

export interface MysqlOptions {
  accountHost: string;
  privilegedRoles: string[];
  ignore: string[];
  terminateSessions: boolean;
  /** The schema that holds each dynamic login's expiry event (see createLogin). */
  expirySchema: string;
}

/** `dynamic`: the role mints an account per activation (createLogin) instead of granting to an existing one. */
export type MysqlEntitlement =
  | { kind: "role"; role: string; dynamic: boolean }
  | { kind: "privileges"; privileges: string[]; on: GrantObject; dynamic: boolean };

/** `*.*` (db and table null), `db.*` (table null) or `db.table`. */
export interface GrantObject {
  db: string | null;
  table: string | null;
}

// ---------------------------------------------------------------- address

/** Problems with a target address (`mysql://user@host:port` or `mariadb://…`); empty when fine. */
export function checkAddress(address: string): string[] {
  const parsed = parseAddress(address);
  return "problems" in parsed ? parsed.problems : [];
}

export function parseAddress(address: string): MysqlAddress | { problems: string[] } {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return { problems: ["address must be a URL like mysql://root@127.0.0.1:3306"] };
  }
  const problems: string[] = [];
  if (url.protocol !== "mysql:" && url.protocol !== "mariadb:")
    problems.push(`address must start with mysql:// or mariadb://, not ${url.protocol}//`);
  // Never echo the password back: it is exactly what must not be in messages.
  if (url.password !== "") problems.push("address must not contain a password; set the target's credential instead");
  const user = decodeURIComponent(url.username);
  if (user === "") problems.push("address must name the admin user, as in mysql://root@127.0.0.1:3306");
  else if (!LOGIN_PATTERN.test(user)) problems.push("address user may only contain letters, digits, _ . -");
  if (url.hostname === "") problems.push("address must name a host");
  if (url.hash !== "") problems.push("address must not have a fragment");
  for (const key of new Set(url.searchParams.keys()))
    if (key !== "sslmode") problems.push(`address may carry only sslmode as a parameter, not ${key}`);
  const sslmode = url.searchParams.get("sslmode");
  if (sslmode !== null && !(SSL_MODES as readonly string[]).includes(sslmode))
    problems.push(`sslmode must be one of ${SSL_MODES.join(", ")}`);
  if (url.pathname !== "" && url.pathname !== "/")
    problems.push("address must not name a database; the connector works across databases");
  if (problems.length > 0) return { problems };
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  return {
    host,
    port: url.port === "" ? DEFAULT_PORT : Number(url.port),
    user,
    ssl: (sslmode as MysqlSslMode | null) ?? "verify-full",
  };
}

/** TLS towards a target: as its address's sslmode says, with options.tls.ca; null only for sslmode=disable. */
export function upstreamTls(address: MysqlAddress, options: Record<string, unknown>): MysqlTls | null {
  if (address.ssl === "disable") return null;
  const ca = (options.tls as { ca?: unknown } | undefined)?.ca;
  return { mode: address.ssl, ca: typeof ca === "string" ? ca : null };
}

/**
 * What a target's definition weakens, for people applying it (plan notes): TLS off towards a host that is not
 * this machine (passwords and queries in clear on the network), and the TLS choices that let someone in the
 * path pose as the server. No sslmode is verify-full, so it is not warned about.
 */
export function securityWarnings(address: string | null, _options: Record<string, unknown>): string[] {
  if (address === null) return [];
  const parsed = parseAddress(address);
  if ("problems" in parsed) return [];
  if (parsed.ssl === "disable" && !isLoopbackHost(parsed.host))
    return [
      "sslmode=disable: Stint talks to this database in clear (its passwords, queries and results cross the network)",
    ];
  if (parsed.ssl === "require")
    return ["sslmode=require: the server certificate is not checked, so anyone in the path can pose as it"];
  if (parsed.ssl === "verify-ca") return ["sslmode=verify-ca: the server certificate's host name is not checked"];
  return [];
}

/** localhost, 127.0.0.0/8, ::1 and IPv4-mapped loopback: traffic to them does not leave the machine. */
function isLoopbackHost(host: string): boolean {
  const lower = host.toLowerCase();
  return (
    lower === "localhost" ||
    lower === "::1" ||
    /^127(\.\d{1,3}){3}$/.test(lower) ||
    /^::ffff:127(\.\d{1,3}){3}$/.test(lower) ||
    /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(lower)
  );
}

// ---------------------------------------------------------------- options

export function checkOptions(options: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const known = new Set([
    "accountHost",
    "privilegedRoles",
    "ignore",
    "terminateSessions",
    "session",
    "tls",
    "expirySchema",
  ]);
  for (const key of Object.keys(options))
    if (!known.has(key)) problems.push(`options.${key} is not a MySQL option (use ${[...known].join(", ")})`);
  const { accountHost, privilegedRoles, ignore, terminateSessions } = options;
  if (accountHost !== undefined && (typeof accountHost !== "string" || !HOST_PATTERN.test(accountHost)))
    problems.push('options.accountHost must be a host pattern such as "%", "localhost" or "10.0.%"');
  if (privilegedRoles !== undefined) {
    if (!Array.isArray(privilegedRoles)) problems.push("options.privilegedRoles must be a list of role names");
    else
      for (const role of privilegedRoles)
        if (typeof role !== "string" || roleProblems(role).length > 0)
          problems.push(`options.privilegedRoles has an invalid role name: ${JSON.stringify(role)}`);
  }
  if (ignore !== undefined) {
    if (!Array.isArray(ignore)) problems.push("options.ignore must be a list of logins");
    else
      for (const login of ignore)
        if (typeof login !== "string" || login === "")
          problems.push(`options.ignore has an invalid login: ${JSON.stringify(login)}`);
  }
  const { tls } = options;
  if (
    tls !== undefined &&
    (typeof tls !== "object" ||
      tls === null ||
      Object.keys(tls).some((key) => key !== "ca") ||
      ((tls as { ca?: unknown }).ca !== undefined && typeof (tls as { ca?: unknown }).ca !== "string"))
  )
    problems.push("options.tls must be { ca: <PEM CA bundle> }");
  if (terminateSessions !== undefined && typeof terminateSessions !== "boolean")
    problems.push("options.terminateSessions must be true or false");
  const { expirySchema } = options;
  if (expirySchema !== undefined && (typeof expirySchema !== "string" || !/^[A-Za-z0-9_$]{1,64}$/.test(expirySchema)))
    problems.push("options.expirySchema must be a schema name (letters, digits, _ and $, at most 64)");
  // The login the MySQL session proxy signs in as, and the vault path of its password.
  problems.push(...sessionOptionProblems(options.session));
  return problems;
}

/** Options with defaults filled in; call after checkOptions found nothing. */
export function readOptions(options: Record<string, unknown>): MysqlOptions {
  return {
    accountHost: typeof options.accountHost === "string" ? options.accountHost : "%",
    privilegedRoles: Array.isArray(options.privilegedRoles) ? (options.privilegedRoles as string[]) : [],
    ignore: Array.isArray(options.ignore) ? (options.ignore as string[]) : [],
    terminateSessions: typeof options.terminateSessions === "boolean" ? options.terminateSessions : true,
    expirySchema: typeof options.expirySchema === "string" ? options.expirySchema : "mysql",
  };
}

// ---------------------------------------------------------------- logins and entitlements

export function checkLogin(login: string): string[] {
  return LOGIN_PATTERN.test(login)
    ? []
    : [`login ${JSON.stringify(login)} must be 1-80 letters, digits, _ . - (starting with a letter, digit or _)`];
}

function roleProblems(role: string): string[] {
  if (!ROLE_PATTERN.test(role)) return [`role ${JSON.stringify(role)} may only contain letters, digits, _ . $ -`];
  if (RESERVED_ROLES.has(role.toUpperCase())) return [`role ${JSON.stringify(role)} is a reserved word`];
  return [];
}

/** Privileges that exist only on `*.*`. */
const GLOBAL_ONLY = new Set([
  "RELOAD",
  "SHUTDOWN",
  "PROCESS",
  "FILE",
  "SHOW DATABASES",
  "SUPER",
  "REPLICATION SLAVE",
  "REPLICATION CLIENT",
  "CREATE USER",
  "CREATE TABLESPACE",
]);
/** Privileges that may be granted on a single table. */
const TABLE_LEVEL = new Set([
  "SELECT",
  "INSERT",
  "UPDATE",
  "DELETE",
  "CREATE",
  "DROP",
  "REFERENCES",
  "INDEX",
  "ALTER",
  "CREATE VIEW",
  "SHOW VIEW",
  "TRIGGER",
  "DELETE HISTORY",
  "GRANT OPTION",
  "ALL PRIVILEGES",
]);
const SCHEMA_LEVEL = new Set([
  ...TABLE_LEVEL,
  "CREATE TEMPORARY TABLES",
  "LOCK TABLES",
  "EXECUTE",
  "CREATE ROUTINE",
  "ALTER ROUTINE",
  "EVENT",
]);
/** The privilege names an entitlement may use; they go into SQL as keywords, so only these. */
export const PRIVILEGES: ReadonlySet<string> = new Set([...SCHEMA_LEVEL, ...GLOBAL_ONLY]);

/** "select", "all", " Show  view" → "SELECT", "ALL PRIVILEGES", "SHOW VIEW". */
export function normalizePrivilege(name: string): string {
  const upper = name.trim().replace(/\s+/g, " ").toUpperCase();
  return upper === "ALL" ? "ALL PRIVILEGES" : upper;
}

export function parseGrantObject(on: string): GrantObject | null {
  if (on === "*.*") return { db: null, table: null };
  const dot = on.indexOf(".");
  if (dot < 0) return null;
  const db = on.slice(0, dot);
  const table = on.slice(dot + 1);
  if (!OBJECT_NAME_PATTERN.test(db)) return null;
  if (table === "*") return { db, table: null };
  return OBJECT_NAME_PATTERN.test(table) ? { db, table } : null;
}

export function checkEntitlement(entitlement: Record<string, unknown>): string[] {
  const parsed = parseEntitlement(entitlement);
  return "problems" in parsed ? parsed.problems : [];
}

export function parseEntitlement(entitlement: Record<string, unknown>): MysqlEntitlement | { problems: string[] } {
  const keys = Object.keys(entitlement)
    .filter((key) => key !== "dynamic")
    .sort()
    .join(",");
  const dynamic = entitlement.dynamic ?? false;
  if (typeof dynamic !== "boolean") return { problems: ["entitlement.dynamic must be true or false"] };
  if (keys === "role") {
    const role = entitlement.role;
    if (typeof role !== "string") return { problems: ["entitlement.role must be a role name"] };
    const problems = roleProblems(role);
    return problems.length > 0 ? { problems } : { kind: "role", role, dynamic };
  }
  if (keys === "on,privileges") {
    const problems: string[] = [];
    const on = typeof entitlement.on === "string" ? parseGrantObject(entitlement.on) : null;
    if (on === null)
      problems.push('entitlement.on must be "*.*", "db.*" or "db.table" (letters, digits, _ $ - in names)');
    const list = entitlement.privileges;
    if (!Array.isArray(list) || list.length === 0 || list.some((p) => typeof p !== "string"))
      return { problems: [...problems, "entitlement.privileges must be a non-empty list of privilege names"] };
    const privileges = [...new Set((list as string[]).map(normalizePrivilege))].sort();
    for (const privilege of privileges) {
      if (!PRIVILEGES.has(privilege)) problems.push(`entitlement.privileges: ${JSON.stringify(privilege)} is unknown`);
      else if (on !== null && on.db !== null && GLOBAL_ONLY.has(privilege))
        problems.push(`entitlement.privileges: ${privilege} can only be granted on *.*`);
      else if (on !== null && on.table !== null && !TABLE_LEVEL.has(privilege))
        problems.push(`entitlement.privileges: ${privilege} cannot be granted on a single table`);
    }
    if (privileges.length === 1 && privileges[0] === "GRANT OPTION")
      problems.push("entitlement.privileges must name more than GRANT OPTION");
    return problems.length > 0 ? { problems } : { kind: "privileges", privileges, on: on!, dynamic };
  }
  return {
    problems: [
      'entitlement must be { role: "<role>" } or { privileges: ["SELECT", ...], on: "db.*" }, optionally with dynamic: true',
    ],
  };
}

// ---------------------------------------------------------------- SQL

/** A backquoted identifier. Names are pattern-checked already; quoting is the second line of defence. */
export function quoteIdentifier(name: string): string {
  if (name.includes("\0")) throw new Error("identifier contains NUL");
  return "`" + name.replace(/`/g, "``") + "`";
}

/**
 * A single-quoted string literal correct with and without NO_BACKSLASH_ESCAPES: it refuses
 * backslashes (whose meaning depends on sql_mode) and doubles quotes.
 */
export function quoteString(value: string): string {
  if (value.includes("\\") || value.includes("\0")) throw new Error("string literal contains a backslash or NUL");
  return "'" + value.replace(/'/g, "''") + "'";
}

/**
 * A password as a string literal. Unlike quoteString it must take any password, backslashes
 * included, so it needs to know whether the session treats `\\` as an escape (sql_mode without
 * NO_BACKSLASH_ESCAPES). Errors never repeat the password.
 */
export function quotePassword(password: string, backslashEscapes: boolean): string {
  const problem = passwordProblem(password);
  if (problem !== null) throw new Error(problem);
  const quoted = password.replace(/'/g, "''");
  return `'${backslashEscapes ? quoted.replace(/\\/g, "\\\\") : quoted}'`;
}

/** Why a password cannot be set as is (never repeating it), or null. */
export function passwordProblem(password: string): string | null {
  if (password === "") return "the password must not be empty";
  if (password.includes("\0")) return "the password must not contain a NUL character";
  // A lone surrogate would be sent as U+FFFD, so the account would get another password than asked.
  if (/\p{Cs}/u.test(password)) return "the password must be well-formed Unicode";
  return null;
}

export function accountSql(user: string, host: string): string {
  return `${quoteString(user)}@${quoteString(host)}`;
}

/**
 * In a database-level GRANT, `_` and `%` in the database name are wildcards; escaping `_`
 * keeps `app_db.*` from also matching `appXdb` (names cannot contain `%`). MariaDB stores
 * and reports the escaped form, so observe compares against it too.
 */
export function schemaGrantName(db: string): string {
  return db.replace(/_/g, "\\_");
}

export function grantObjectSql(on: GrantObject): string {
  if (on.db === null) return "*.*";
  if (on.table === null) return `${quoteIdentifier(schemaGrantName(on.db))}.*`;
  return `${quoteIdentifier(on.db)}.${quoteIdentifier(on.table)}`;
}

/** GRANT OPTION goes in a WITH clause: `GRANT ALL PRIVILEGES, GRANT OPTION` is a syntax error. */
export function grantPrivilegesSql(privileges: string[], on: GrantObject, user: string, host: string): string {
  const rest = privileges.filter((privilege) => privilege !== "GRANT OPTION");
  const withGrant = rest.length < privileges.length ? " WITH GRANT OPTION" : "";
  return `GRANT ${privilegeListSql(rest)} ON ${grantObjectSql(on)} TO ${accountSql(user, host)}${withGrant}`;
}

/** One statement per part, since `REVOKE ALL PRIVILEGES, GRANT OPTION ON …` is a syntax error too. */
export function revokePrivilegesSql(privileges: string[], on: GrantObject, user: string, host: string): string[] {
  const rest = privileges.filter((privilege) => privilege !== "GRANT OPTION");
  const parts = rest.length < privileges.length ? [rest, ["GRANT OPTION"]] : [rest];
  return parts
    .filter((part) => part.length > 0)
    .map((part) => `REVOKE ${privilegeListSql(part)} ON ${grantObjectSql(on)} FROM ${accountSql(user, host)}`);
}

function privilegeListSql(privileges: string[]): string {
  for (const privilege of privileges) if (!PRIVILEGES.has(privilege)) throw new Error(`unknown privilege ${privilege}`);
  return privileges.join(", ");
}

/** `'alice'@'%'` as information_schema writes a GRANTEE; null for anything else. */
export function parseGrantee(grantee: string): { user: string; host: string } | null {
  const match = /^'((?:[^']|'')*)'@'((?:[^']|'')*)'$/.exec(grantee);
  return match ? { user: match[1]!.replace(/''/g, "'"), host: match[2]!.replace(/''/g, "'") } : null;
}

/** `root@127.0.0.1` as CURRENT_USER() returns it → `'root'@'127.0.0.1'` as in information_schema. */
export function granteeOfCurrentUser(currentUser: string): string {
  const at = currentUser.lastIndexOf("@");
  const user = at < 0 ? currentUser : currentUser.slice(0, at);
  const host = at < 0 ? "" : currentUser.slice(at + 1);
  return `'${user.replace(/'/g, "''")}'@'${host.replace(/'/g, "''")}'`;
}

// ---------------------------------------------------------------- discovery

/** The global privileges discovery looks for, by mysql.user column. */
const ADMIN_COLUMNS: Record<string, string> = {
  Super_priv: "SUPER",
  Create_user_priv: "CREATE USER",
  Grant_priv: "GRANT OPTION",
};

/**
 * What a mysql.user row's `*_priv` columns grant that discovery cares about, or null when
 * nothing: ALL PRIVILEGES (every column but Grant_priv set), or SUPER / CREATE USER / GRANT OPTION.
 */
export function adminPrivileges(columns: Record<string, unknown>): { privilege: string; privileges: string[] } | null {
  const privColumns = Object.keys(columns).filter((column) => column.endsWith("_priv"));
  const held = (column: string) => String(columns[column]).toUpperCase() === "Y";
  if (!Object.keys(ADMIN_COLUMNS).some((column) => column in columns && held(column))) return null;
  const withGrant = held("Grant_priv");
  if (privColumns.filter((column) => column !== "Grant_priv").every(held))
    return {
      privilege: `ALL PRIVILEGES ON *.*${withGrant ? " WITH GRANT OPTION" : ""}`,
      privileges: withGrant ? ["ALL PRIVILEGES", "GRANT OPTION"] : ["ALL PRIVILEGES"],
    };
  const privileges = Object.entries(ADMIN_COLUMNS)
    .filter(([column]) => column in columns && held(column))
    .map(([, privilege]) => privilege)
    .sort();
  return { privilege: `${privileges.join(", ")} ON *.*`, privileges };
}

/** Whether an ignore list names this account (by user, or by user@host). */
export function isIgnored(ignore: string[], user: string, host: string): boolean {
  return ignore.includes(user) || ignore.includes(`${user}@${host}`);
}

// ---------------------------------------------------------------- errors

/** Network-level failures: the server could not be reached or went away. */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
]);
/** Server errors that say "not now" rather than "no": too many connections, lock waits, shutdown. */
const ER_PARSE_ERROR = 1064;
const TRANSIENT_ERRNOS = new Set([1040, 1053, 1205, 1213, 1317, 1927, 2006, 2013]);

/**
 * A ConnectorError for anything a call threw. The server's own message is kept for refusals;
 * the credential is scrubbed from every message in case a server ever echoes it.
 */
export function classifyError(
  error: unknown,
  context: { targetName: string; host: string; port: number; credential: string | null; secrets?: string[] },
): ConnectorError {
  const secrets = [context.credential, ...(context.secrets ?? [])].filter((secret): secret is string => !!secret);
  const scrub = (message: string) =>
    secrets.reduce((scrubbed, secret) => scrubbed.split(secret).join("[credential]"), message);
  if (error instanceof ConnectorError) return new ConnectorError(error.reason, scrub(error.message));
  const e = (typeof error === "object" && error !== null ? error : {}) as {
    code?: unknown;
    errno?: unknown;
    sqlMessage?: unknown;
  };
  const code = typeof e.code === "string" ? e.code : "";
  const where = `${context.targetName} (${context.host}:${context.port})`;
  if (UNREACHABLE_CODES.has(code)) return unavailable(`${where}: cannot reach the server (${code})`);
  // A parse error quotes the statement from where it failed, which may be part of a password.
  if (e.errno === ER_PARSE_ERROR && (context.secrets?.length ?? 0) > 0)
    return refused(`${context.targetName}: the server could not parse a statement that sets a password`);
  if (typeof e.sqlMessage === "string" && typeof e.errno === "number") {
    const message = `${context.targetName}: ${scrub(e.sqlMessage)}`;
    return TRANSIENT_ERRNOS.has(e.errno) ? unavailable(message) : refused(message);
  }
  return unavailable(`${where}: unexpected error${/^[A-Z_]+$/.test(code) ? ` (${code})` : ""}`);
}
