/**
 * The `session.queries` block of a role's policy: what statements the PostgreSQL proxy lets through
 * for sessions of that role, decided on PostgreSQL's own parser (src/proxies/pg/query-policy*.ts).
 * Absent: no query policy, the proxy relays every statement.
 */
import { z } from "zod";

/**
 * What a statement does. `select`: reads (SELECT, VALUES, SHOW, EXPLAIN of a read, COPY … TO STDOUT,
 * cursors, PREPARE/EXECUTE of reads, transaction control, harmless SET); `dml`: changes rows (INSERT,
 * UPDATE, DELETE, MERGE, TRUNCATE, COPY … FROM, CALL, SELECT … FOR UPDATE); `ddl`: everything else that
 * changes the schema or privileges (CREATE, ALTER, DROP, GRANT, SELECT INTO …); `utility`: server-side
 * operations (VACUUM, LOCK, LISTEN/NOTIFY, DISCARD, COPY to or from a server file or program).
 * A DO block needs all of dml, ddl and utility.
 */
export const statementKind = z.enum(["select", "dml", "ddl", "utility"]);
export type StatementKind = z.infer<typeof statementKind>;

/** Functions refused when a policy names none: ways out of the session's own database and rights. */
export const DEFAULT_DENIED_FUNCTIONS = [
  "pg_terminate_backend",
  "pg_cancel_backend",
  "pg_reload_conf",
  "pg_rotate_logfile",
  "pg_read_file",
  "pg_read_binary_file",
  "pg_ls_*",
  "pg_stat_file",
  "lo_import",
  "lo_export",
  "dblink*",
  "pg_file_write",
  "pg_promote",
  "pg_switch_wal",
] as const;

/** A function name (lower case), or a prefix followed by `*`. */
const functionPattern = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z_][a-z0-9_$]*\*?$|^[a-z_]*\*$/, "a function name, or a prefix followed by *");

export const queryRules = z.strictObject({
  /** Statement kinds allowed; anything else is refused. */
  allow: z.array(statementKind).min(1).max(4).default(["select"]),
  /** Functions refused wherever they are called in a statement (by name, schema ignored; `prefix*`). */
  denyFunctions: z
    .array(functionPattern)
    .max(200)
    .default([...DEFAULT_DENIED_FUNCTIONS]),
  /** DELETE and UPDATE without a WHERE clause are refused. */
  requireWhere: z.boolean().default(true),
  /**
   * Rows one result may send (DataRow, COPY … TO STDOUT lines). Past it the client gets the first
   * `maxRows` rows, then an error (SQLSTATE 54000) in place of the rest; the session goes on. Absent: no limit.
   */
  maxRows: z.number().int().min(1).max(1_000_000_000).optional(),
});
export type QueryRules = z.output<typeof queryRules>;
