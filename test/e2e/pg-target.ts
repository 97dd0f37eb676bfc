/**
 * A database on the machine's PostgreSQL for a `dynamic: true` role's target: one table with one row, readable
 * by a NOLOGIN role the entitlement names (a login Stint mints is made a member of it). `cleanup` drops the
 * database, every login Stint minted for the principal and the reader role, and closes the admin connection.
 */
import pg from "pg";

export const PG_ROOT_URL = "postgres://postgres@127.0.0.1:5432";

export interface PgTarget {
  /** The admin connection (to the `postgres` database), for checking logins at the server. */
  root: pg.Client;
  /** The target address to give Stint. */
  address: string;
  cleanup(): Promise<void>;
}

export async function pgTarget(options: {
  database: string;
  reader: string;
  table: { name: string; column: string; value: string };
  /** The principal whose minted logins (`stint_<name>_…`) cleanup drops. */
  mintedFor: string;
}): Promise<PgTarget> {
  const { database, reader, table } = options;
  const root = new pg.Client({ connectionString: `${PG_ROOT_URL}/postgres` });
  await root.connect();
  await root.query(`create database ${database}`);
  await root.query(`create role ${reader} nologin`);
  const db = new pg.Client({ connectionString: `${PG_ROOT_URL}/${database}` });
  await db.connect();
  await db.query(`create table ${table.name} (${table.column} text)`);
  await db.query(`insert into ${table.name} values ($1)`, [table.value]);
  await db.query(`revoke all on ${table.name} from public`);
  await db.query(`grant select on ${table.name} to ${reader}`);
  await db.end();
  return {
    root,
    address: `${PG_ROOT_URL}/${database}?sslmode=disable`,
    async cleanup() {
      await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
      const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
        `stint_${options.mintedFor}_%`,
      ]);
      for (const r of minted.rows) await root.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
      await root.query(`drop role if exists ${reader}`).catch(() => undefined);
      await root.end();
    },
  };
}
