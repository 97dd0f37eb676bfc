/**
 * PostgreSQL connector: an entitlement is membership in a role (GRANT/REVOKE) or a role
 * attribute (ALTER ROLE … WITH X / NOX). Revoking also ends the login's backends, so an open
 * connection cannot keep what was taken away. A role with `dynamic: true` mints a login per
 * activation instead (createLogin/dropLogin). Admin connections (pooled per target) are in postgres.client.ts.
 */
import { pbkdf2, randomBytes } from "node:crypto";
import { promisify } from "node:util";
import type pg from "pg";
import { isUniqueViolation } from "../../../lib/db.js";
import {
  refused,
  unavailable,
  type Connector,
  type CredentialOperations,
  type StandingAccess,
} from "../connector.types.js";
import { serverVersion, withClient } from "./postgres.client.js";
import { activatePreCreatedSql, preCreateLoginsSql } from "./postgres.precreated.js";
import {
  ATTRIBUTE_COLUMNS,
  checkAddress,
  createLoginBatchSql,
  dropLoginBatchSql,
  createLoginSql,
  DYNAMIC_LOGIN_COMMENT,
  entitlementProblems,
  loginProblems,
  optionProblems,
  parseEntitlement,
  parseDynamicRole,
  parseOptions,
  passwordProblems,
  provisionSql,
  quoteIdent,
  quoteLiteral,
  revokeSql,
  SCRAM_ITERATIONS,
  scramHashable,
  scramSecretOf,
  securityWarnings,
  sortedUnique,
  type PostgresEntitlement,
} from "./postgres.rules.js";

export { checkAddress } from "./postgres.rules.js";
export { postgresPools } from "./postgres.client.js";

/** How long revoke waits for each terminated backend to exit (PostgreSQL 14+). */
const TERMINATE_WAIT_MS = 5_000;

function checkedLogin(login: string): string {
  const problems = loginProblems(login);
  if (problems.length > 0) throw refused(problems.join("; "));
  return login;
}

async function roleExists(client: pg.Client, name: string): Promise<boolean> {
  const result = await client.query("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", [name]);
  return result.rowCount !== null && result.rowCount > 0;
}

/** The grantors of each direct membership of `member` in `role` (PostgreSQL 16 keeps one row per grantor). */
async function memberships(client: pg.Client, role: string, member: string): Promise<(string | null)[]> {
  const result = await client.query<{ grantor: string | null }>(
    `SELECT g.rolname AS grantor
       FROM pg_catalog.pg_auth_members am
       JOIN pg_catalog.pg_roles r ON r.oid = am.roleid
       JOIN pg_catalog.pg_roles m ON m.oid = am.member
       LEFT JOIN pg_catalog.pg_roles g ON g.oid = am.grantor
      WHERE r.rolname = $1 AND m.rolname = $2`,
    [role, member],
  );
  return result.rows.map((row) => row.grantor);
}

async function revokeMembership(client: pg.Client, login: string, entitlement: PostgresEntitlement & { kind: "role" }) {
  if (!(await roleExists(client, entitlement.role))) return;
  let grantors = await memberships(client, entitlement.role, login);
  if (grantors.length === 0) return;
  await client.query(revokeSql(login, entitlement));
  grantors = await memberships(client, entitlement.role, login);
  // Memberships granted by someone else survive a plain REVOKE on PostgreSQL 16+.
  for (const grantor of sortedUnique(grantors.filter((g): g is string => g !== null)))
    await client.query(revokeSql(login, entitlement, grantor));
  if ((await memberships(client, entitlement.role, login)).length > 0)
    throw refused(`${login} is still a member of ${entitlement.role} after REVOKE`);
}

/** Ends every backend of `login` except our own, waiting for them to exit where the server can. */
async function terminateSessions(client: pg.Client, login: string): Promise<void> {
  const waits = (serverVersion.get(client) ?? 0) >= 140000;
  const result = await client.query<{ ended: boolean }>(
    `SELECT ${waits ? "pg_catalog.pg_terminate_backend(pid, $2)" : "pg_catalog.pg_terminate_backend(pid)"} AS ended
       FROM pg_catalog.pg_stat_activity
      WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()`,
    waits ? [login, TERMINATE_WAIT_MS] : [login],
  );
  const lingering = result.rows.filter((row) => !row.ended).length;
  if (lingering > 0) throw unavailable(`${lingering} session(s) of ${login} did not end in time`);
}

function checkedPassword(password: string): string {
  const problems = passwordProblems(password);
  if (problems.length > 0) throw refused(problems.join("; "));
  return password;
}

const pbkdf2Async = promisify(pbkdf2);

/**
 * The password as it goes into CREATE/ALTER ROLE: its SCRAM secret where it can be computed here,
 * else the password itself; quoted either way. `secrets` are the forms to keep out of messages.
 * The 4,096 PBKDF2 rounds (about a millisecond) run on libuv's thread pool, not on the event loop.
 */
async function passwordLiteral(password: string): Promise<{ literal: string; secrets: string[] }> {
  const salt = randomBytes(16);
  const secret = scramHashable(password)
    ? scramSecretOf(await pbkdf2Async(password, salt, SCRAM_ITERATIONS, 32, "sha256"), salt)
    : null;
  const literal = quoteLiteral(secret ?? password);
  return {
    literal,
    secrets: [password, literal.trim(), literal.trim().replace(/^E?'|'$/g, ""), ...(secret ? [secret] : [])],
  };
}

type PasswordLiteral = Awaited<ReturnType<typeof passwordLiteral>>;

/** How many passwords mintPassword keeps ready, with their SCRAM secrets computed. */
const MINT_STOCK = 4;
/** How long after a take the stock is refilled: not in the middle of the activation that took it. */
const MINT_REFILL_DELAY_MS = 50;
const mintStock: { password: string; prepared: Promise<PasswordLiteral> }[] = [];
/** What mintPassword handed out: createLogin trusts a `prepared` only from here, for its own password. */
const mintedHere = new WeakMap<object, string>();
let refill: NodeJS.Timeout | null = null;

/**
 * A new password whose SCRAM secret is ready (the 4,096 PBKDF2 rounds, ~1–2 ms of the thread pool, were done
 * ahead), or computed now when the stock is empty. The stock is refilled a moment later, with `generate`; a
 * password is handed out once. A pending hashing rejects only on a broken crypto library; createLogin then
 * hashes again.
 */
function mintPassword(generate: () => string): { password: string; prepared: Promise<PasswordLiteral> } {
  const taken = mintStock.shift() ?? fresh(generate);
  if (refill === null) {
    refill = setTimeout(() => {
      refill = null;
      try {
        while (mintStock.length < MINT_STOCK) mintStock.push(fresh(generate));
      } catch {
        // A generator whose password is refused: mintPassword itself then says so to its caller.
      }
    }, MINT_REFILL_DELAY_MS);
    refill.unref();
  }
  mintedHere.set(taken.prepared, taken.password);
  return taken;
}

function fresh(generate: () => string): { password: string; prepared: Promise<PasswordLiteral> } {
  const password = checkedPassword(generate());
  const prepared = passwordLiteral(password);
  prepared.catch(() => undefined);
  return { password, prepared };
}

/** `password`'s form for CREATE/ALTER ROLE: hashed already when mintPassword made it, else on the thread pool now. */
function hashed(password: string, minted: { prepared: unknown } | undefined): Promise<PasswordLiteral> {
  const prepared = minted?.prepared;
  return prepared instanceof Promise && mintedHere.get(prepared) === password
    ? (prepared as Promise<PasswordLiteral>).catch(() => passwordLiteral(password))
    : passwordLiteral(password);
}

/**
 * Whether the login exists, and whether createLogin made it (its comment says so); whether it (or, while it
 * does not exist, PUBLIC) may connect to the admin's database, and that database's name; whether the login was
 * granted CONNECT on it by name (createLogin does when PUBLIC may not connect).
 */
async function loginState(
  client: pg.Client,
  login: string,
): Promise<{ state: "missing" | "dynamic" | "other"; canConnect: boolean; database: string; granted: boolean }> {
  const result = await client.query<{
    found: boolean;
    comment: string | null;
    can: boolean;
    db: string;
    granted: boolean;
  }>(
    `SELECT r.oid IS NOT NULL AS found,
            pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment,
            pg_catalog.has_database_privilege(COALESCE(r.rolname, 'public'), pg_catalog.current_database(), 'CONNECT')
              AS can,
            pg_catalog.current_database() AS db,
            EXISTS (SELECT 1 FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) acl
                     WHERE d.datname = pg_catalog.current_database() AND acl.grantee = r.oid
                       AND acl.privilege_type = 'CONNECT') AS granted
       FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1`,
    [login],
  );
  const row = result.rows[0]!;
  const state = !row.found ? "missing" : row.comment === DYNAMIC_LOGIN_COMMENT ? "dynamic" : "other";
  return { state, canConnect: row.can, database: row.db, granted: row.granted };
}

/** dropLogin without PL/pgSQL: the login's state, NOLOGIN, the sessions ended, CONNECT revoked, the drop. */
async function dropLoginStepwise(client: pg.Client, login: string) {
  const { state, database, granted } = await loginState(client, login);
  if (state === "missing") return;
  if (state === "other") throw refused(`login ${login} was not created by Stint: not dropping it`);
  // NOLOGIN first, so no new session starts between the terminate and the drop.
  await client.query(`ALTER ROLE ${quoteIdent(login)} WITH NOLOGIN`);
  await terminateSessions(client, login);
  // A CONNECT that createLogin gave would keep DROP ROLE from working.
  if (granted) await client.query(`REVOKE CONNECT ON DATABASE ${quoteIdent(database)} FROM ${quoteIdent(login)}`);
  // Fails (refused, in PostgreSQL's words) when the login owns objects or holds privileges elsewhere.
  await client.query(`DROP ROLE IF EXISTS ${quoteIdent(login)}`);
}

/** createLogin without PL/pgSQL: the login's state, then one simple query (one transaction) that acts on it. */
async function createLoginStepwise(client: pg.Client, login: string, role: string, literal: string, validUntil: Date) {
  const { state, canConnect, database } = await loginState(client, login);
  // A retry finds the login it made; a login someone else made is never taken over.
  if (state === "other")
    throw refused(`login ${login} exists and was not created by Stint: a dynamic login needs a fresh name`);
  const statements = [
    // As createLoginBatchSql: this one transaction does not wait for the target's WAL flush (fail closed).
    "SET LOCAL synchronous_commit TO off",
    createLoginSql(login, literal, validUntil, state === "dynamic"),
    ...(state === "missing" ? [`COMMENT ON ROLE ${quoteIdent(login)} IS ${quoteLiteral(DYNAMIC_LOGIN_COMMENT)}`] : []),
    provisionSql(login, { kind: "role", role }),
    // When PUBLIC lost CONNECT on the admin's database, the login could not sign in without it.
    ...(canConnect ? [] : [`GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(login)}`]),
  ];
  // One simple query: its statements run as one transaction, so a GRANT that fails (a missing role) leaves no
  // login behind.
  await client.query(statements.join(";\n"));
}

/** SQLSTATEs of a sign-in that the server refused for the login or its password. */
const AUTH_FAILURES = ["28P01", "28000"];

interface AttributeRow {
  rolname: string;
  rolsuper: boolean;
  rolcreaterole: boolean;
  rolbypassrls: boolean;
  rolcanlogin: boolean;
}

function privilegeText(privilege: string, canLogin: boolean): string {
  return canLogin ? privilege : `${privilege} (NOLOGIN)`;
}

export const postgresConnector: Connector & CredentialOperations & { checkAddress(address: string): string[] } = {
  kind: "postgres",
  checkAddress,
  checkOptions: optionProblems,
  securityWarnings,
  checkEntitlement: entitlementProblems,
  checkLogin: loginProblems,
  mintPassword,

  async test(target, call) {
    return withClient(target, call, async (client) => {
      const result = await client.query<{ version: string; user: string; rolsuper: boolean; rolcreaterole: boolean }>(
        `SELECT current_setting('server_version') AS version, current_user AS "user", rolsuper, rolcreaterole
           FROM pg_catalog.pg_roles WHERE rolname = current_user`,
      );
      const row = result.rows[0]!;
      if (!row.rolsuper && !row.rolcreaterole)
        throw refused(
          `${row.user} can neither create nor alter roles: the admin login needs SUPERUSER or CREATEROLE to grant and revoke`,
        );
      return {
        detail: `PostgreSQL ${row.version}, acting as ${row.user} (${row.rolsuper ? "superuser" : "CREATEROLE"})`,
      };
    });
  },

  async provision(target, grant, call) {
    const login = checkedLogin(grant.login);
    const entitlement = parseEntitlement(grant.entitlement);
    await withClient(target, call, async (client) => {
      // A no-op when the login already holds the entitlement.
      try {
        await client.query(provisionSql(login, entitlement));
      } catch (error) {
        // Two GRANTs of one membership at the same moment (two roles with one entitlement, two nodes): the
        // later one fails with a unique violation in pg_auth_members, and the membership is there.
        const raced =
          entitlement.kind === "role" &&
          isUniqueViolation(error) &&
          (await memberships(client, entitlement.role, login)).length > 0;
        if (!raced) throw error;
      }
    });
  },

  async revoke(target, grant, call) {
    const login = checkedLogin(grant.login);
    const entitlement = parseEntitlement(grant.entitlement);
    const options = parseOptions(target.options);
    await withClient(target, call, async (client) => {
      // A login that does not exist holds nothing and has no sessions.
      if (!(await roleExists(client, login))) return;
      if (entitlement.kind === "role") await revokeMembership(client, login, entitlement);
      else await client.query(revokeSql(login, entitlement));
      // Also when the privilege was already gone: a retry must finish what an interrupted revoke began.
      if (options.terminateSessions) await terminateSessions(client, login);
    });
  },

  async observe(target, rawEntitlement, call) {
    const entitlement = parseEntitlement(rawEntitlement);
    return withClient(target, call, async (client) => {
      if (entitlement.kind === "attribute") {
        const column = ATTRIBUTE_COLUMNS[entitlement.attribute];
        const result = await client.query<{ rolname: string }>(
          `SELECT rolname FROM pg_catalog.pg_roles WHERE ${column}`,
        );
        return sortedUnique(result.rows.map((row) => row.rolname));
      }
      if (!(await roleExists(client, entitlement.role))) throw refused(`role "${entitlement.role}" does not exist`);
      const result = await client.query<{ member: string }>(
        `SELECT m.rolname AS member
           FROM pg_catalog.pg_auth_members am
           JOIN pg_catalog.pg_roles r ON r.oid = am.roleid
           JOIN pg_catalog.pg_roles m ON m.oid = am.member
          WHERE r.rolname = $1`,
        [entitlement.role],
      );
      return sortedUnique(result.rows.map((row) => row.member));
    });
  },

  async discover(target, call) {
    const options = parseOptions(target.options);
    return withClient(target, call, async (client) => {
      const activity = await client.query<{ usename: string; last: Date | null }>(
        `SELECT usename, max(greatest(backend_start, state_change)) AS last
           FROM pg_catalog.pg_stat_activity WHERE usename IS NOT NULL GROUP BY usename`,
      );
      const lastSeen = new Map(activity.rows.map((row) => [row.usename, row.last?.toISOString() ?? null]));
      const ignored = new Set(options.ignore);
      const found: StandingAccess[] = [];
      const add = (login: string, privilege: string, entitlement: Record<string, unknown>) => {
        if (!ignored.has(login))
          found.push({ login, privilege, entitlement, lastActivity: lastSeen.get(login) ?? null });
      };

      const attributed = await client.query<AttributeRow>(
        `SELECT rolname, rolsuper, rolcreaterole, rolbypassrls, rolcanlogin
           FROM pg_catalog.pg_roles WHERE rolsuper OR rolcreaterole OR rolbypassrls`,
      );
      for (const row of attributed.rows) {
        if (row.rolsuper) add(row.rolname, privilegeText("superuser", row.rolcanlogin), { attribute: "SUPERUSER" });
        if (row.rolcreaterole)
          add(row.rolname, privilegeText("CREATEROLE", row.rolcanlogin), { attribute: "CREATEROLE" });
        if (row.rolbypassrls) add(row.rolname, privilegeText("BYPASSRLS", row.rolcanlogin), { attribute: "BYPASSRLS" });
      }

      if (options.privilegedRoles.length > 0) {
        const known = await client.query<{ rolname: string }>(
          "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1)",
          [options.privilegedRoles],
        );
        const missing = options.privilegedRoles.filter((role) => !known.rows.some((row) => row.rolname === role));
        if (missing.length > 0)
          throw refused(`options.privilegedRoles names role(s) that do not exist: ${missing.join(", ")}`);
        const members = await client.query<{ role: string; member: string; rolcanlogin: boolean }>(
          `SELECT r.rolname AS role, m.rolname AS member, m.rolcanlogin
             FROM pg_catalog.pg_auth_members am
             JOIN pg_catalog.pg_roles r ON r.oid = am.roleid
             JOIN pg_catalog.pg_roles m ON m.oid = am.member
            WHERE r.rolname = ANY($1)`,
          [options.privilegedRoles],
        );
        const seen = new Set<string>();
        for (const row of members.rows) {
          // PostgreSQL 16 can hold one membership per grantor; report it once.
          const key = JSON.stringify([row.member, row.role]);
          if (seen.has(key)) continue;
          seen.add(key);
          add(row.member, privilegeText(`member of ${row.role}`, row.rolcanlogin), { role: row.role });
        }
      }

      return found.sort((a, b) =>
        a.login !== b.login
          ? a.login < b.login
            ? -1
            : 1
          : a.privilege < b.privilege
            ? -1
            : a.privilege > b.privilege
              ? 1
              : 0,
      );
    });
  },
  async createLogin(target, spec, call) {
    const login = checkedLogin(spec.login);
    const role = parseDynamicRole(spec.entitlement);
    const password = checkedPassword(spec.password);
    if (!(spec.validUntil instanceof Date) || Number.isNaN(spec.validUntil.getTime()))
      throw refused("validUntil must be a valid date");
    const hashing = hashed(password, spec.minted);
    const secrets = [password];
    await withClient(
      target,
      call,
      async (client) => {
        const { literal, secrets: forms } = await hashing;
        secrets.push(...forms);
        try {
          // One round trip: the login's state, its creation, password, validity, membership and CONNECT.
          await client.query(createLoginBatchSql(login, role, literal, spec.validUntil));
        } catch (error) {
          // A target where PL/pgSQL is missing or not usable by the admin: the same in two round trips. Any other
          // failure of these codes (a missing role, a privilege the admin lacks) fails there again, as it is.
          const code = (error as { code?: unknown }).code;
          if (code !== "42704" && code !== "42501") throw error;
          await createLoginStepwise(client, login, role, literal, spec.validUntil);
        }
      },
      { secrets },
    );
  },

  async preCreateLogins(target, logins, call) {
    const checked = logins.map(({ login, password, minted }) => ({
      login: checkedLogin(login),
      hashing: hashed(checkedPassword(password), minted),
    }));
    const secrets = logins.map(({ password }) => password);
    const literals: { login: string; literal: string }[] = [];
    for (const { login, hashing } of checked) {
      const { literal, secrets: forms } = await hashing;
      secrets.push(...forms);
      literals.push({ login, literal });
    }
    if (literals.length === 0) return;
    await withClient(target, call, (client) => client.query(preCreateLoginsSql(literals)).then(() => undefined), {
      secrets,
    });
  },

  async activatePreCreated(target, spec, call) {
    const login = checkedLogin(spec.login);
    const role = parseDynamicRole(spec.entitlement);
    if (!(spec.validUntil instanceof Date) || Number.isNaN(spec.validUntil.getTime()))
      throw refused("validUntil must be a valid date");
    await withClient(target, call, async (client) => {
      await client.query(activatePreCreatedSql(login, role, spec.validUntil));
    });
  },

  async dropLogin(target, spec, call) {
    const login = checkedLogin(spec.login);
    await withClient(target, call, async (client) => {
      const waits = (serverVersion.get(client) ?? 0) >= 140000;
      try {
        // One round trip: NOLOGIN committed first, then the sessions ended, CONNECT revoked and the login dropped.
        await client.query(dropLoginBatchSql(login, waits ? TERMINATE_WAIT_MS : null));
      } catch (error) {
        // A target where PL/pgSQL is missing or not usable by the admin: the same step by step. Any other failure
        // of these codes fails there again, as it is.
        const code = (error as { code?: unknown }).code;
        if (code !== "42704" && code !== "42501") throw error;
        await client.query("ROLLBACK");
        await dropLoginStepwise(client, login);
      }
    });
  },

  async setPassword(target, spec, call) {
    const login = checkedLogin(spec.login);
    const { literal, secrets } = await passwordLiteral(checkedPassword(spec.password));
    await withClient(
      target,
      call,
      async (client) => {
        // ALTER ROLE of a missing login fails with 'role "x" does not exist'.
        await client.query(`ALTER ROLE ${quoteIdent(login)} WITH PASSWORD ${literal.trim()}`);
        // After the change: a session that starts meanwhile signed in with the new password.
        if (spec.endSessions && parseOptions(target.options).terminateSessions) await terminateSessions(client, login);
      },
      { secrets },
    );
  },

  async verifyPassword(target, spec, call) {
    const login = checkedLogin(spec.login);
    // PostgreSQL never signs anyone in with an empty password (unless it does not ask for one at all).
    if (spec.password.length === 0) return false;
    return withClient(target, call, async () => true, {
      as: { user: login, password: spec.password },
      secrets: [spec.password],
      recover: (error) => {
        const code = (error as { code?: unknown } | null)?.code;
        return typeof code === "string" && AUTH_FAILURES.includes(code) ? false : undefined;
      },
    });
  },
};
