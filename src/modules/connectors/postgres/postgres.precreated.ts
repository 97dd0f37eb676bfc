/**
 * Logins created ahead of demand (a target's `options.preCreatedLogins`): the SQL of their creation and of their
 * hand-out. A pre-created login is unusable until handed out: NOLOGIN, VALID UNTIL in the past, no membership, marked
 * as Stint's (the comment createLogin and dropLogin know, so it is dropped like any minted login). Its password is
 * set at creation, so PostgreSQL's 4,096 PBKDF2 rounds on the SCRAM secret are spent then, not on an activation.
 */
import { dollarQuoted, DYNAMIC_LOGIN_COMMENT, provisionSql, quoteIdent, quoteLiteral } from "./postgres.rules.js";

/** Until a pre-created login is handed out, its password would have expired long ago, even with LOGIN. */
export const NOT_YET_VALID = "1970-01-01T00:00:00Z";

/**
 * The creation of `logins` in one simple query (one transaction, committed as the target commits: no login is
 * handed out that a target crash could lose). A block refuses (SQLSTATE 42710, nothing made) a name that exists,
 * then creates each login NOLOGIN, marks it as Stint's and grants CONNECT on the admin's database where PUBLIC
 * lacks it; outside the block, each gets its password (already quoted, a SCRAM secret where one can be computed:
 * never inside the block, so no error context repeats it) and a VALID UNTIL in the past.
 */
export function preCreateLoginsSql(logins: { login: string; literal: string }[]): string {
  const names = logins.map(({ login }) => quoteLiteral(login)).join(", ");
  const body = `
DECLARE
  taken text;
BEGIN
  SELECT rolname INTO taken FROM pg_catalog.pg_roles WHERE rolname = ANY (ARRAY[${names}]) LIMIT 1;
  IF taken IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = '42710', MESSAGE = 'a login to pre-create exists already: ' || taken;
  END IF;${logins
    .map(
      ({ login }) => `
  CREATE ROLE ${quoteIdent(login)} WITH NOLOGIN;
  COMMENT ON ROLE ${quoteIdent(login)} IS ${quoteLiteral(DYNAMIC_LOGIN_COMMENT)};`,
    )
    .join("")}
  IF NOT pg_catalog.has_database_privilege('public', pg_catalog.current_database(), 'CONNECT') THEN${logins
    .map(
      ({ login }) => `
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %I', pg_catalog.current_database(), ${quoteLiteral(login)});`,
    )
    .join("")}
  END IF;
END`;
  return [
    `DO ${dollarQuoted(body)}`,
    ...logins.map(
      ({ login, literal }) =>
        `ALTER ROLE ${quoteIdent(login)} WITH NOLOGIN PASSWORD ${literal.trim()} VALID UNTIL ${quoteLiteral(NOT_YET_VALID)}`,
    ),
  ].join(";\n");
}

/**
 * The hand-out of a pre-created login in one simple query (one transaction, not waiting for the target's WAL flush,
 * as createLogin's: a login a target crash loses fails to sign in, fail closed): a block refuses (SQLSTATE 42704)
 * a login that is missing or not Stint's; then LOGIN with the activation's validity and the role's membership. No
 * password: nothing for PostgreSQL to hash.
 */
export function activatePreCreatedSql(login: string, role: string, validUntil: Date): string {
  const body = `
DECLARE
  note text;
BEGIN
  SELECT pg_catalog.shobj_description(r.oid, 'pg_authid') INTO note
    FROM pg_catalog.pg_roles r WHERE r.rolname = ${quoteLiteral(login)};
  IF note IS DISTINCT FROM ${quoteLiteral(DYNAMIC_LOGIN_COMMENT)} THEN
    RAISE EXCEPTION USING ERRCODE = '42704',
      MESSAGE = ${quoteLiteral(`pre-created login ${login} is missing at the target or was not created by Stint`)};
  END IF;
END`;
  return [
    "SET LOCAL synchronous_commit TO off",
    `DO ${dollarQuoted(body)}`,
    `ALTER ROLE ${quoteIdent(login)} WITH LOGIN VALID UNTIL ${quoteLiteral(validUntil.toISOString())}`,
    provisionSql(login, { kind: "role", role }),
  ].join(";\n");
}
