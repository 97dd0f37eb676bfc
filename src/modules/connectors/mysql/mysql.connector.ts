/**
 * MariaDB/MySQL connector: grants a role (made the account's default role) or a set of
 * privileges to an existing account, and on revoke takes it away and kills the account's
 * connections. For `dynamic: true` roles it creates an account per activation and drops it
 * at the end. Admin connections are pooled per target (../connection-pool.ts). Tested against MariaDB; the MySQL 8 paths (role_edges, default_roles) are the
 * documented equivalents.
 */
import { createHash } from "node:crypto";
import {
  refused,
  type Connector,
  type DynamicLoginSpec,
  type GrantSpec,
  type StandingAccess,
} from "../connector.types.js";
import {
  checkAddress,
  accountSql,
  adminPrivileges,
  checkEntitlement,
  checkLogin,
  checkOptions,
  grantPrivilegesSql,
  granteeOfCurrentUser,
  isIgnored,
  securityWarnings,
  parseEntitlement,
  parseGrantee,
  passwordProblem,
  quoteIdentifier,
  quotePassword,
  revokePrivilegesSql,
  schemaGrantName,
  type GrantObject,
  type MysqlEntitlement,
} from "./mysql.rules.js";
import {
  ER_CANNOT_USER,
  ER_NONEXISTING_GRANT,
  ER_NONEXISTING_TABLE_GRANT,
  ER_NO_SUCH_THREAD,
  withSession,
  type Session,
} from "./mysql.client.js";

export { checkAddress } from "./mysql.rules.js";
export { mysqlPools } from "./mysql.client.js";

function entitlementOf(raw: Record<string, unknown>): MysqlEntitlement {
  const parsed = parseEntitlement(raw);
  if ("problems" in parsed) throw refused(`invalid entitlement: ${parsed.problems.join("; ")}`);
  return parsed;
}

function assertLogin(login: string): void {
  const problems = checkLogin(login);
  if (problems.length > 0) throw refused(problems.join("; "));
}

async function accountExists(session: Session, user: string): Promise<boolean> {
  const rows = await session.query("SELECT 1 FROM mysql.user WHERE User = ? AND Host = ?", [
    user,
    session.options.accountHost,
  ]);
  return rows.length > 0;
}

/**
 * Accounts the role is granted to, leaving out roles granted to roles and, unless asked,
 * the role's administrators (WITH ADMIN OPTION): Stint's own admin account must hold a role
 * that way to grant it, and Stint never grants it that way.
 */
async function roleHolders(
  session: Session,
  role: string,
  withAdmins = false,
): Promise<{ user: string; host: string }[]> {
  const rows = session.mariadb
    ? await session.query(
        "SELECT User AS user, Host AS host, Admin_option AS admin FROM mysql.roles_mapping WHERE Role = ? AND Host <> ''",
        [role],
      )
    : await session.query(
        "SELECT TO_USER AS user, TO_HOST AS host, WITH_ADMIN_OPTION AS admin FROM mysql.role_edges WHERE FROM_USER = ?",
        [role],
      );
  return rows
    .filter((row) => withAdmins || String(row.admin).toUpperCase() !== "Y")
    .map((row) => ({ user: String(row.user), host: String(row.host) }));
}

async function defaultRoles(session: Session, user: string): Promise<string[]> {
  const host = session.options.accountHost;
  const rows = session.mariadb
    ? await session.query("SELECT default_role AS role FROM mysql.user WHERE User = ? AND Host = ?", [user, host])
    : await session.query("SELECT DEFAULT_ROLE_USER AS role FROM mysql.default_roles WHERE USER = ? AND HOST = ?", [
        user,
        host,
      ]);
  return rows.map((row) => String(row.role ?? "")).filter((role) => role !== "");
}

async function setDefaultRoles(session: Session, user: string, roles: string[]): Promise<void> {
  const account = accountSql(user, session.options.accountHost);
  if (session.mariadb) {
    // MariaDB keeps one default role per account.
    const role = roles.length > 0 ? quoteIdentifier(roles[roles.length - 1]!) : "NONE";
    await session.query(`SET DEFAULT ROLE ${role} FOR ${account}`);
  } else {
    const list = roles.length > 0 ? roles.map(quoteIdentifier).join(", ") : "NONE";
    await session.query(`ALTER USER ${account} DEFAULT ROLE ${list}`);
  }
}

async function provision(session: Session, login: string, entitlement: MysqlEntitlement): Promise<void> {
  const host = session.options.accountHost;
  // Checked first because a GRANT without NO_AUTO_CREATE_USER would create a passwordless account.
  if (!(await accountExists(session, login)))
    throw refused(`${session.target.name}: account ${accountSql(login, host)} does not exist`);
  if (entitlement.kind === "privileges") {
    await session.query(grantPrivilegesSql(entitlement.privileges, entitlement.on, login, host));
    return;
  }
  await session.query(`GRANT ${quoteIdentifier(entitlement.role)} TO ${accountSql(login, host)}`);
  const defaults = await defaultRoles(session, login);
  if (session.mariadb ? defaults[0] !== entitlement.role : !defaults.includes(entitlement.role))
    await setDefaultRoles(session, login, session.mariadb ? [entitlement.role] : [...defaults, entitlement.role]);
}

async function revoke(session: Session, login: string, entitlement: MysqlEntitlement): Promise<void> {
  const host = session.options.accountHost;
  if (await accountExists(session, login)) {
    if (entitlement.kind === "privileges") {
      for (const sql of revokePrivilegesSql(entitlement.privileges, entitlement.on, login, host))
        try {
          await session.query(sql);
        } catch (error) {
          // Nothing granted there: already revoked.
          const errno = (error as { errno?: unknown }).errno;
          if (errno !== ER_NONEXISTING_GRANT && errno !== ER_NONEXISTING_TABLE_GRANT) throw error;
        }
    } else {
      const holders = await roleHolders(session, entitlement.role, true);
      if (holders.some((holder) => holder.user === login && holder.host === host))
        await session.query(`REVOKE ${quoteIdentifier(entitlement.role)} FROM ${accountSql(login, host)}`);
      // Revoking a role leaves it as the default role; clear it so nothing points at it.
      const defaults = await defaultRoles(session, login);
      if (defaults.includes(entitlement.role))
        await setDefaultRoles(
          session,
          login,
          defaults.filter((role) => role !== entitlement.role),
        );
    }
  }
  if (session.options.terminateSessions) await killSessions(session, login);
}

/** Kills every connection of the user (by user name, whatever host it came from), except our own. */
async function killSessions(session: Session, user: string): Promise<void> {
  const rows = await session.query(
    "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()",
    [user],
  );
  for (const row of rows) {
    const id = String(row.id);
    if (!/^\d+$/.test(id)) continue;
    try {
      await session.query(`KILL CONNECTION ${id}`);
    } catch (error) {
      if ((error as { errno?: unknown }).errno !== ER_NO_SUCH_THREAD) throw error;
    }
  }
}

async function privilegeColumns(session: Session, table: "user" | "db"): Promise<string[]> {
  const rows = await session.query(
    "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = ?",
    [table],
  );
  return rows.map((row) => String(row.name)).filter((name) => /^[A-Za-z_]+_priv$/.test(name));
}

/** Accounts holding ALL PRIVILEGES exactly on the object, read from the grant tables. */
async function holdersOfAll(session: Session, on: GrantObject): Promise<Set<string>> {
  const holders = new Set<string>();
  const host = session.options.accountHost;
  if (on.table !== null) {
    const [column] = await session.query("SHOW COLUMNS FROM mysql.tables_priv LIKE 'Table_priv'");
    const members = /^set\((.*)\)$/i.exec(String(column?.Type))?.[1]?.match(/'[^']*'/g) ?? [];
    const all = members.map((member) => member.slice(1, -1)).filter((member) => member !== "Grant");
    const rows = await session.query(
      "SELECT User AS user, Table_priv AS privs FROM mysql.tables_priv WHERE Db = ? AND Table_name = ? AND Host = ?",
      [on.db, on.table, host],
    );
    for (const row of rows) {
      const held = new Set(String(row.privs).split(","));
      if (all.length > 0 && all.every((member) => held.has(member))) holders.add(String(row.user));
    }
    return holders;
  }
  const table = on.db === null ? "user" : "db";
  const columns = (await privilegeColumns(session, table)).filter((column) => column !== "Grant_priv");
  if (columns.length === 0) return holders;
  const rows = await session.query(
    `SELECT User AS user, ${table === "db" ? "Db AS db, " : ""}${columns.map(quoteIdentifier).join(", ")} FROM mysql.${table} WHERE Host = ?`,
    [host],
  );
  for (const row of rows)
    if ((on.db === null || row.db === schemaGrantName(on.db)) && columns.every((column) => row[column] === "Y"))
      holders.add(String(row.user));
  return holders;
}

async function observePrivileges(
  session: Session,
  entitlement: Extract<MysqlEntitlement, { kind: "privileges" }>,
): Promise<string[]> {
  const { on } = entitlement;
  const rows =
    on.db === null
      ? await session.query(
          "SELECT GRANTEE AS grantee, PRIVILEGE_TYPE AS privilege, IS_GRANTABLE AS grantable FROM information_schema.USER_PRIVILEGES",
        )
      : on.table === null
        ? (
            await session.query(
              "SELECT GRANTEE AS grantee, PRIVILEGE_TYPE AS privilege, IS_GRANTABLE AS grantable, TABLE_SCHEMA AS db FROM information_schema.SCHEMA_PRIVILEGES",
            )
          ).filter((row) => row.db === schemaGrantName(on.db!))
        : await session.query(
            "SELECT GRANTEE AS grantee, PRIVILEGE_TYPE AS privilege, IS_GRANTABLE AS grantable FROM information_schema.TABLE_PRIVILEGES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            [on.db, on.table],
          );
  const byUser = new Map<string, { privileges: Set<string>; grantable: boolean }>();
  for (const row of rows) {
    const account = parseGrantee(String(row.grantee));
    if (account === null || account.host !== session.options.accountHost) continue;
    const entry = byUser.get(account.user) ?? { privileges: new Set(), grantable: false };
    entry.privileges.add(String(row.privilege).toUpperCase());
    if (String(row.grantable).toUpperCase() === "YES") entry.grantable = true;
    byUser.set(account.user, entry);
  }
  const named = entitlement.privileges.filter((p) => p !== "GRANT OPTION" && p !== "ALL PRIVILEGES");
  const needsGrantOption = entitlement.privileges.includes("GRANT OPTION");
  const allHolders = entitlement.privileges.includes("ALL PRIVILEGES") ? await holdersOfAll(session, on) : null;
  const holders: string[] = [];
  for (const [user, entry] of byUser)
    if (
      named.every((p) => entry.privileges.has(p)) &&
      (!needsGrantOption || entry.grantable) &&
      (allHolders === null || allHolders.has(user))
    )
      holders.push(user);
  return holders;
}

async function observe(session: Session, entitlement: MysqlEntitlement): Promise<string[]> {
  const users =
    entitlement.kind === "role"
      ? (await roleHolders(session, entitlement.role))
          .filter((holder) => holder.host === session.options.accountHost)
          .map((holder) => holder.user)
      : await observePrivileges(session, entitlement);
  return [...new Set(users)].sort();
}

async function discover(session: Session): Promise<StandingAccess[]> {
  const { accountHost, ignore, privilegedRoles } = session.options;
  const columns = await privilegeColumns(session, "user");
  const hasIsRole = (
    await session.query(
      "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'user' AND COLUMN_NAME = 'is_role'",
    )
  ).length;
  // Only User, Host and *_priv columns: mysql.user also holds password hashes.
  const accounts = await session.query(
    `SELECT User AS user, Host AS host${hasIsRole ? ", is_role AS isRole" : ""}${columns.map((c) => `, ${quoteIdentifier(c)}`).join("")} FROM mysql.user`,
  );
  const active = new Set(
    (await session.query("SELECT DISTINCT USER AS user FROM information_schema.PROCESSLIST")).map((row) =>
      String(row.user),
    ),
  );
  const [self] = await session.query("SELECT CURRENT_USER() AS account");
  const found: StandingAccess[] = [];
  const add = (user: string, host: string, privilege: string, entitlement: Record<string, unknown>) => {
    // Stint's own admin account is how Stint works, not standing access to convert.
    if (isIgnored(ignore, user, host) || `${user}@${host}` === String(self?.account)) return;
    const mapped = host === accountHost;
    found.push({
      login: mapped ? user : `${user}@${host}`,
      privilege,
      // revoke() acts on user@accountHost only, so elsewhere Stint cannot remove it.
      entitlement: mapped ? entitlement : null,
      lastActivity: active.has(user) ? new Date().toISOString() : null,
    });
  };
  const roles = new Map<string, string>(privilegedRoles.map((role) => [role, `member of role ${role}`]));
  for (const account of accounts) {
    const privileges = Object.fromEntries(columns.map((column) => [column, account[column]]));
    const admin = adminPrivileges(privileges);
    if (admin === null) continue;
    const user = String(account.user);
    if (String(account.isRole ?? "N").toUpperCase() === "Y") {
      // A role with admin privileges makes its holders privileged too.
      roles.set(user, `member of role ${user} (${admin.privilege})`);
      continue;
    }
    add(user, String(account.host), admin.privilege, { privileges: admin.privileges, on: "*.*" });
  }
  for (const [role, privilege] of roles)
    for (const holder of await roleHolders(session, role, true)) add(holder.user, holder.host, privilege, { role });
  return found.sort((a, b) => a.login.localeCompare(b.login) || a.privilege.localeCompare(b.privilege));
}

/** The password as a literal for this session's sql_mode. */
function passwordSql(session: Session, password: string): string {
  return quotePassword(password, session.backslashEscapes);
}

/**
 * The event that drops a dynamic login at its end by the server's own clock (event_scheduler), whether or not
 * Stint is up then; it is also the mark that Stint made the account (MariaDB keeps no comment on an account).
 * Named by a digest of the account, within the 64 characters an event name may have.
 */
function expiryEvent(session: Session, login: string): { name: string; sql: string } {
  const digest = createHash("sha256").update(`${login}@${session.options.accountHost}`).digest("hex").slice(0, 40);
  const name = `stint_expiry_${digest}`;
  return { name, sql: `${quoteIdentifier(session.options.expirySchema)}.${quoteIdentifier(name)}` };
}

async function madeByStint(session: Session, login: string): Promise<boolean> {
  const rows = await session.query(
    "SELECT 1 FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? AND EVENT_NAME = ?",
    [session.options.expirySchema, expiryEvent(session, login).name],
  );
  return rows.length > 0;
}

/**
 * (Re)schedules the login's expiry event at `validUntil`: it drops the account and (MariaDB) ends its
 * connections. Kept after it ran (ON COMPLETION PRESERVE), as the mark, until dropLogin removes it.
 */
async function scheduleExpiry(session: Session, login: string, validUntil: Date): Promise<void> {
  const event = expiryEvent(session, login);
  const account = accountSql(login, session.options.accountHost);
  // Relative to the server's clock and time zone: the seconds left, not a wall time.
  const seconds = Math.max(1, Math.ceil((validUntil.getTime() - Date.now()) / 1000));
  // An event's comment holds 64 characters at most: the login is in the body.
  const comment = quotePassword("Stint: drops a dynamic login at its end", session.backslashEscapes);
  const kill = session.mariadb ? ` KILL CONNECTION USER ${account};` : "";
  await session.query(`DROP EVENT IF EXISTS ${event.sql}`);
  await session.query(
    `CREATE EVENT ${event.sql} ON SCHEDULE AT CURRENT_TIMESTAMP + INTERVAL ${seconds} SECOND ON COMPLETION PRESERVE ` +
      `COMMENT ${comment} DO BEGIN DROP USER IF EXISTS ${account};${kill} END`,
  );
}

/**
 * Creates (or, on a retry, re-keys) the account and grants the entitlement as provision does, with an expiry
 * event that drops it at `validUntil` at the server (see scheduleExpiry). An account that exists without
 * Stint's mark is refused, never re-keyed: its password would go to the requester. An account this call
 * created is dropped again when the grant fails, so no half-made login stays.
 */
async function createLogin(session: Session, spec: DynamicLoginSpec, entitlement: MysqlEntitlement): Promise<void> {
  const account = accountSql(spec.login, session.options.accountHost);
  const identified = `IDENTIFIED BY ${passwordSql(session, spec.password)}`;
  const notOurs = () =>
    refused(`${session.target.name}: account ${account} exists and was not created by Stint: not taking it over`);
  const exists = await accountExists(session, spec.login);
  if (exists && !(await madeByStint(session, spec.login))) throw notOurs();
  // The mark comes before the account: no account of Stint's is ever without its expiry.
  await scheduleExpiry(session, spec.login, spec.validUntil);
  let created = false;
  if (exists) await session.query(`ALTER USER ${account} ${identified}`);
  else
    try {
      await session.query(`CREATE USER ${account} ${identified}`);
      created = true;
    } catch (error) {
      if ((error as { errno?: unknown }).errno !== ER_CANNOT_USER) throw error;
      // Someone created it in between: not ours, and no longer marked as ours.
      await session.query(`DROP EVENT IF EXISTS ${expiryEvent(session, spec.login).sql}`);
      throw notOurs();
    }
  try {
    await provision(session, spec.login, entitlement);
  } catch (error) {
    if (created) {
      await session.query(`DROP USER IF EXISTS ${account}`).catch(() => undefined);
      await session.query(`DROP EVENT IF EXISTS ${expiryEvent(session, spec.login).sql}`).catch(() => undefined);
    }
    throw error;
  }
}

/**
 * How far the target's clock may be behind Stint's: an account whose password was set longer than this before the
 * grant drew its login's name is not that grant's login (see ownedByGrant).
 */
const CLOCK_SKEW_MS = 10 * 60_000;
const ER_BAD_FIELD_ERROR = 1054;
const ER_NO_SUCH_TABLE = 1146;

/**
 * When the account's password was last set, by the server's clock: MariaDB (10.4+) keeps it in mysql.global_priv's
 * JSON, MySQL 8 in mysql.user. Null when the server does not say (an older MariaDB, or 0: never set).
 */
async function passwordSetAt(session: Session, login: string): Promise<Date | null> {
  const sql = session.mariadb
    ? "SELECT JSON_VALUE(Priv, '$.password_last_changed') AS at FROM mysql.global_priv WHERE User = ? AND Host = ?"
    : "SELECT UNIX_TIMESTAMP(password_last_changed) AS at FROM mysql.user WHERE User = ? AND Host = ?";
  const rows = await session.query(sql, [login, session.options.accountHost]).catch((error: unknown) => {
    const errno = (error as { errno?: unknown }).errno;
    if (errno === ER_BAD_FIELD_ERROR || errno === ER_NO_SUCH_TABLE) return [];
    throw error;
  });
  const seconds = Number(rows[0]?.at);
  return Number.isFinite(seconds) && seconds > 0 ? new Date(seconds * 1000) : null;
}

/**
 * Whether an account without Stint's mark is the login of the grant Stint says it minted (`madeFor`): an account
 * made before the mark existed (a Stint version before finding 68's fix) can only be ended this way. The name was
 * drawn at random (`stint_<user>_<32 random bits>`) when the grant was made and is recorded only on the grant, and
 * the grant became active, so Stint made an account of that name (the old createLogin's CREATE USER, or its ALTER
 * USER on one that existed: either way setting its password then). An account whose password was last set before
 * the name was drawn (less the clock skew allowed) predates the grant and is not touched. One whose password
 * changed since (its holder's SET PASSWORD) is still the grant's: the change does not keep it.
 */
async function ownedByGrant(session: Session, login: string, madeFor: { namedAt: Date }): Promise<string | null> {
  const setAt = await passwordSetAt(session, login);
  if (setAt === null) return "the server does not say when its password was set";
  if (setAt.getTime() < madeFor.namedAt.getTime() - CLOCK_SKEW_MS)
    return `its password was set at ${setAt.toISOString()}, before the grant drew its name (${madeFor.namedAt.toISOString()})`;
  return null;
}

/**
 * Drops the account, then kills its connections: in that order no new connection can sign in
 * between the two steps; then its expiry event. The admin's own account is never dropped, nor an account
 * without Stint's mark unless it is the login of the grant Stint minted it for (`madeFor`, see ownedByGrant).
 */
async function dropLogin(session: Session, login: string, madeFor?: { namedAt: Date }): Promise<void> {
  const host = session.options.accountHost;
  const account = accountSql(login, host);
  const [self] = await session.query("SELECT CURRENT_USER() AS account");
  if (String(self?.account) === `${login}@${host}`)
    throw refused(`${session.target.name}: ${account} is the account Stint connects as`);
  if ((await accountExists(session, login)) && !(await madeByStint(session, login))) {
    if (!madeFor) throw refused(`${session.target.name}: account ${account} was not created by Stint: not dropping it`);
    const notTheGrants = await ownedByGrant(session, login, madeFor);
    if (notTheGrants !== null)
      throw refused(
        `${session.target.name}: account ${account} has no mark of Stint's and ${notTheGrants}: not dropping it ` +
          "(if it is the grant's login, drop it by hand)",
      );
  }
  await session.query(`DROP USER IF EXISTS ${account}`);
  await killSessions(session, login);
  await session.query(`DROP EVENT IF EXISTS ${expiryEvent(session, login).sql}`);
}

async function setPassword(session: Session, login: string, password: string, endSessions = false): Promise<void> {
  const account = accountSql(login, session.options.accountHost);
  if (!(await accountExists(session, login)))
    throw refused(`${session.target.name}: account ${account} does not exist`);
  await session.query(`ALTER USER ${account} IDENTIFIED BY ${passwordSql(session, password)}`);
  // After the change: a connection that starts meanwhile signed in with the new password.
  if (endSessions && session.options.terminateSessions) await killSessions(session, login);
}

function assertPassword(password: string): void {
  const problem = passwordProblem(password);
  if (problem !== null) throw refused(problem);
}

async function test(session: Session): Promise<{ detail: string }> {
  const [row] = await session.query(
    "SELECT VERSION() AS version, CURRENT_USER() AS user, @@GLOBAL.event_scheduler AS scheduler",
  );
  const version = String(row?.version);
  const currentUser = String(row?.user);
  const grantee = granteeOfCurrentUser(currentUser);
  const rows = (
    await session.query(
      "SELECT GRANTEE AS grantee, PRIVILEGE_TYPE AS privilege, IS_GRANTABLE AS grantable FROM information_schema.USER_PRIVILEGES",
    )
  ).filter((r) => r.grantee === grantee);
  const privileges = new Set(rows.map((r) => String(r.privilege).toUpperCase()));
  const grantOption = rows.some((r) => String(r.grantable).toUpperCase() === "YES");
  const server = `${session.mariadb ? "MariaDB" : "MySQL"} ${version}`;
  if (!privileges.has("SUPER") && !(privileges.has("CREATE USER") && grantOption))
    throw refused(
      `${session.target.name}: ${server}, connected as ${currentUser}, which may not grant (needs CREATE USER with GRANT OPTION, or SUPER)`,
    );
  // Without the event scheduler, a dynamic account's expiry event never runs (and nothing says so when it is
  // created): only Stint's drop ends it.
  const scheduler = String(row?.scheduler).toUpperCase();
  const expiry =
    scheduler === "ON"
      ? ""
      : `; warning: event_scheduler is ${scheduler}, so dynamic accounts' expiry events never run: only Stint ` +
        "drops them at their end, not the server if Stint is down then (set event_scheduler=ON in the server's configuration)";
  return { detail: `${server}, connected as ${currentUser}, may grant${expiry}` };
}

export const mysqlConnector: Connector = {
  kind: "mysql",
  checkOptions,
  securityWarnings,
  checkEntitlement,
  checkLogin,
  checkAddress,
  test: (target, call) => withSession(target, call, test),
  provision: async (target, grant: GrantSpec, call) => {
    const entitlement = entitlementOf(grant.entitlement);
    assertLogin(grant.login);
    return withSession(target, call, (session) => provision(session, grant.login, entitlement));
  },
  revoke: async (target, grant: GrantSpec, call) => {
    const entitlement = entitlementOf(grant.entitlement);
    assertLogin(grant.login);
    return withSession(target, call, (session) => revoke(session, grant.login, entitlement));
  },
  observe: async (target, raw, call) => {
    const entitlement = entitlementOf(raw);
    return withSession(target, call, (session) => observe(session, entitlement));
  },
  discover: (target, call) => withSession(target, call, discover),
  createLogin: async (target, spec, call) => {
    const entitlement = entitlementOf(spec.entitlement);
    assertLogin(spec.login);
    assertPassword(spec.password);
    // MariaDB and MySQL have no VALID UNTIL: Stint drops the login at spec.validUntil, and so does its expiry event.
    return withSession(target, call, (session) => createLogin(session, spec, entitlement), {
      secrets: [spec.password],
    });
  },
  dropLogin: async (target, spec, call) => {
    assertLogin(spec.login);
    return withSession(target, call, (session) => dropLogin(session, spec.login, spec.madeFor));
  },
  setPassword: async (target, spec, call) => {
    assertLogin(spec.login);
    assertPassword(spec.password);
    return withSession(target, call, (session) => setPassword(session, spec.login, spec.password, spec.endSessions), {
      secrets: [spec.password],
    });
  },
  verifyPassword: async (target, spec, call) => {
    assertLogin(spec.login);
    // An empty password would sign in to an account without one: not what is being asked.
    if (spec.password === "") return false;
    return withSession(target, call, async () => true, {
      as: { user: spec.login, password: spec.password },
      whenSignInRefused: false,
    });
  },
};
