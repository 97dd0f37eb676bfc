/**
 * A database on the machine's PostgreSQL for a `dynamic: true` role's target: one table with one row, readable
 * by a NOLOGIN role the entitlement names (a login Stint mints is made a member of it). `cleanup` drops the
 * database, every login Stint minted for the principals and the reader role, and closes the admin connection.
 * `stintWithPgTarget` starts an in-process Stint beside it with a role file applied (`dynamicPgConfig` writes
 * the usual one).
 */
import pg from "pg";
import { expect } from "vitest";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

export const PG_ROOT_URL = "postgres://postgres@127.0.0.1:5432";

export interface PgTarget {
  /** The admin connection (to the `postgres` database), for checking logins at the server. */
  root: pg.Client;
  /** The target address to give Stint. */
  address: string;
  cleanup(): Promise<void>;
}

export interface PgTargetOptions {
  database: string;
  reader: string;
  table: { name: string; column: string; value: string };
  /** The principals whose minted logins (`stint_<name>_…`) cleanup drops. */
  mintedFor: string | string[];
}

export async function pgTarget(options: PgTargetOptions): Promise<PgTarget> {
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
      for (const principal of [options.mintedFor].flat()) {
        const minted = await root.query<{ rolname: string }>("select rolname from pg_roles where rolname like $1", [
          `stint\\_${principal}\\_%`,
        ]);
        for (const r of minted.rows) await root.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
      }
      await root.query(`drop role if exists ${reader}`).catch(() => undefined);
      await root.end();
    },
  };
}

/** A `dynamic: true` role of `dynamicPgConfig`: its name and the NOLOGIN role its minted logins are members of. */
export interface DynamicRole {
  name: string;
  reader: string;
}

/**
 * The usual role file of a dynamic-credentials test: the self-service policy `policy`, the PostgreSQL target
 * `target` at `address`, and a `dynamic: true` role (risk medium) for each of `roles`, every one open to `users`.
 */
export function dynamicPgConfig(spec: {
  policy: string;
  target: string;
  address: string;
  roles: DynamicRole[];
  users: string[];
}): string {
  const roles = spec.roles.map(
    (role) => `  - name: ${role.name}
    target: ${spec.target}
    entitlement: { role: ${role.reader}, dynamic: true }
    policy: ${spec.policy}
    risk: medium`,
  );
  const eligibility = spec.roles.map((role) => `  - role: ${role.name}\n    users: [${spec.users.join(", ")}]`);
  return `
apiVersion: stint/v1
policies:${selfServicePolicy(spec.policy)}
targets:
  - name: ${spec.target}
    kind: postgres
    address: ${spec.address}
roles:
${roles.join("\n")}
eligibility:
${eligibility.join("\n")}
`;
}

/**
 * `pgTarget`'s database, then an in-process Stint (`targetsHarness` with `harness`) with `principals` created (a
 * name is a user with its test password, `{ name, kind: "service" }` a service) and the role file
 * `config(address)` applied. A step that fails cleans up what the earlier ones made before the error is thrown.
 */
export async function stintWithPgTarget(options: {
  target: PgTargetOptions;
  harness?: Parameters<typeof targetsHarness>[0];
  principals: (string | { name: string; kind: "service" })[];
  config: (address: string) => string;
}): Promise<{ h: TargetsHarness; target: PgTarget }> {
  const target = await pgTarget(options.target);
  let h: TargetsHarness | undefined;
  try {
    h = await targetsHarness(options.harness);
    for (const principal of options.principals) {
      if (typeof principal === "string") {
        await h.createUser(principal);
        continue;
      }
      const created = await h.admin("POST", "/v1/users", principal);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
    }
    await h.apply(options.config(target.address));
    return { h, target };
  } catch (error) {
    await h?.server.cleanup();
    await target.cleanup();
    throw error;
  }
}
