/**
 * Reliability test support: the built server nodes and recording HTTP client of `../e2e/support.ts`
 * (re-exported), a throwaway store cluster the test may
 * restart, pg_terminate_backend against the store, and a real PostgreSQL target on the machine's
 * server whose role memberships are the privilege Stint grants. Shared by the store-outage,
 * store-restart and store-chaos tests.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { startPostgres, type PostgresInstance } from "../../src/testing/postgres-instance.js";

export {
  call,
  childEnv,
  login,
  sleep,
  startServerNode,
  waitFor,
  type Answer,
  type ServerNode,
} from "../e2e/support.js";
import type { Answer } from "../e2e/support.js";

/** Whether an answer during a store outage is acceptable: a success, or 503 STORE_UNAVAILABLE with Retry-After. */
export function successOrStoreUnavailable(answer: Answer): boolean {
  return (
    answer.status < 300 || (answer.status === 503 && answer.code === "STORE_UNAVAILABLE" && answer.retryAfter !== null)
  );
}

/** Runs one statement on a fresh connection (which survives the server's going away). */
export async function queryOnce<R extends pg.QueryResultRow>(
  connection: string | pg.ClientConfig,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const db = new pg.Client(typeof connection === "string" ? { connectionString: connection } : connection);
  db.on("error", () => undefined);
  await db.connect();
  try {
    return (await db.query<R>(text, values)).rows;
  } finally {
    await db.end().catch(() => undefined);
  }
}

/**
 * Terminates every backend connected to `database` (pooled, in flight, LISTEN) but the one asking,
 * connecting with `admin` (a superuser on that server). Returns how many it terminated.
 */
export async function terminateBackends(admin: string | pg.ClientConfig, database: string): Promise<number> {
  const rows = await queryOnce<{ terminated: boolean }>(
    admin,
    "select pg_terminate_backend(pid) as terminated from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
    [database],
  );
  return rows.filter((r) => r.terminated).length;
}

/** A throwaway PostgreSQL cluster holding the store's database, which a test may restart or cut off. */
export interface StoreCluster {
  instance: PostgresInstance;
  /** The store database's name. */
  database: string;
  /** STINT_DATABASE_URL for the nodes (the password in it). */
  databaseUrl: string;
  /** A superuser connection to the cluster's `postgres` database (for pg_terminate_backend). */
  admin: pg.ClientConfig;
  stop(): Promise<void>;
}

export async function startStoreCluster(database = "stint"): Promise<StoreCluster> {
  const instance = await startPostgres();
  // Not { connectionString, password }: node-postgres lets the URL's empty password win.
  const admin: pg.ClientConfig = {
    host: "127.0.0.1",
    port: instance.port,
    user: "postgres",
    database: "postgres",
    password: instance.adminPassword,
  };
  try {
    await queryOnce(admin, `create database ${database}`);
  } catch (error) {
    await instance.stop().catch(() => undefined);
    throw error;
  }
  return {
    instance,
    database,
    databaseUrl: `postgres://postgres:${instance.adminPassword}@127.0.0.1:${instance.port}/${database}`,
    admin,
    stop: () => instance.stop(),
  };
}

/** The machine's PostgreSQL (trust), where the targets live: it is never the one a test restarts. */
export const TARGET_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";

/**
 * A real PostgreSQL target on the machine's server: a database of its own, one login per Stint
 * user (through the target's identity template) and one nologin role per Stint role, so that an
 * activation is a role membership there. Names carry a random suffix.
 */
export interface PostgresTarget {
  /** The target's name in Stint. */
  name: string;
  /** The `targets:` entry and the `roles:`/`eligibility:` entries of a config-as-code document. */
  yaml(policy: string): string;
  /** Stint role → the role it grants at the target. */
  targetRole(role: string): string;
  /** The memberships of the Stint users' logins in the Stint roles' target roles, by Stint names (sorted). */
  memberships(): Promise<{ user: string; role: string }[]>;
  create(): Promise<void>;
  /** Drops the database, the logins and the roles (what Stint left too). */
  drop(): Promise<void>;
}

export function postgresTarget(options: { prefix: string; users: string[]; roles: string[] }): PostgresTarget {
  const hex = randomBytes(4).toString("hex");
  const { prefix, users, roles } = options;
  const database = `${prefix}_${hex}`;
  const loginOf = (user: string) => `${prefix}_${user}_${hex}`;
  const targetRoleOf = new Map(roles.map((role, i) => [role, `${prefix}_r${i}_${hex}`]));
  const userOfLogin = new Map(users.map((user) => [loginOf(user), user]));
  const roleOfTarget = new Map([...targetRoleOf].map(([role, target]) => [target, role]));
  const name = `${prefix.replaceAll("_", "-")}-db`;
  const onTarget = (text: string, values: unknown[] = []) =>
    queryOnce<Record<string, string>>(TARGET_ADMIN_URL, text, values);
  return {
    name,
    targetRole: (role) => targetRoleOf.get(role)!,
    yaml: (policy) => `
targets:
  - name: ${name}
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${database}?sslmode=disable
    identity: { template: "${prefix}_{{name}}_${hex}" }
    options: { ignore: [postgres] }
roles:${roles
      .map(
        (role) => `
  - name: ${role}
    target: ${name}
    entitlement: { role: ${targetRoleOf.get(role)} }
    policy: ${policy}
    risk: low`,
      )
      .join("")}
eligibility:${roles
      .map(
        (role) => `
  - role: ${role}
    users: [${users.join(", ")}]`,
      )
      .join("")}
`,
    async memberships() {
      const rows = await onTarget(
        `select u.rolname as login, r.rolname as role from pg_auth_members m join pg_roles r on r.oid = m.roleid
           join pg_roles u on u.oid = m.member where u.rolname = any($1) and r.rolname = any($2)`,
        [[...userOfLogin.keys()], [...roleOfTarget.keys()]],
      );
      return rows
        .map((r) => ({ user: userOfLogin.get(r.login!)!, role: roleOfTarget.get(r.role!)! }))
        .sort((a, b) => `${a.user} ${a.role}`.localeCompare(`${b.user} ${b.role}`));
    },
    async create() {
      await onTarget(`create database ${database}`);
      for (const user of users) await onTarget(`create role ${loginOf(user)} login`);
      for (const role of targetRoleOf.values()) await onTarget(`create role ${role} nologin`);
    },
    async drop() {
      await onTarget(`drop database if exists ${database} with (force)`).catch(() => undefined);
      for (const role of [...userOfLogin.keys(), ...roleOfTarget.keys()])
        await onTarget(`drop role if exists ${role}`).catch(() => undefined);
    },
  };
}
