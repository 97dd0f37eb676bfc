/**
 * A real PostgreSQL target for grant tests: a fresh database on the machine's server, a NOLOGIN role the
 * activations grant, and one pre-created login per user (`<prefix>_<user>`, the catalog's identity template);
 * the catalog that points a self-service role at it; membership read from the server's catalogs; all dropped at
 * the end.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { selfServicePolicy } from "./targets-harness.js";

const ADMIN_URL = "postgres://postgres@127.0.0.1:5432";

export interface PgTarget {
  root: pg.Client;
  database: string;
  /** The role an activation of `db-reader` grants. */
  reader: string;
  users: string[];
  loginOf(user: string): string;
  /** Whether `login` holds the reader role at the server now. */
  isMember(login: string): Promise<boolean>;
  /** A catalog: policy `policy` (self-service), target `target`, role `db-reader` for every user. */
  catalog(target: string, policy: string): string;
  drop(): Promise<void>;
}

/**
 * `prefix`: a short lower-case tag (a database, role and logins are named after it and a random suffix);
 * `hex`: that suffix, when the test names its users (`<name><hex>`) before the target exists.
 */
export async function pgTarget(
  prefix: string,
  names: readonly string[],
  hex = randomBytes(4).toString("hex"),
): Promise<PgTarget> {
  const database = `stint_${prefix}_${hex}`;
  const reader = `stint_${prefix}_reader_${hex}`;
  const users = names.map((u) => `${u}${hex}`);
  const loginOf = (user: string) => `stint_${prefix}_${user}`;
  const root = new pg.Client({ connectionString: `${ADMIN_URL}/postgres` });
  await root.connect();
  await root.query(`create database ${database}`);
  for (const user of users) await root.query(`create role ${loginOf(user)} login`);
  await root.query(`create role ${reader} nologin`);
  return {
    root,
    database,
    reader,
    users,
    loginOf,
    isMember: (login) => isMemberOf(root, reader, login),
    catalog: (target, policy) => `
apiVersion: stint/v1
policies:${selfServicePolicy(policy, "report")}
targets:
  - name: ${target}
    kind: postgres
    address: ${ADMIN_URL}/${database}?sslmode=disable
    identity: { template: "stint_${prefix}_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: db-reader
    target: ${target}
    entitlement: { role: ${reader} }
    policy: ${policy}
    risk: medium
eligibility:
  - role: db-reader
    users: [${users.join(", ")}]
`,
    async drop() {
      await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
      for (const role of [...users.map(loginOf), reader])
        await root.query(`drop role if exists ${role}`).catch(() => undefined);
      await root.end();
    },
  };
}

/** Whether `login` is a member of `role` on the PostgreSQL server `client` is connected to. */
export async function isMemberOf(client: Pick<pg.Client, "query">, role: string, login: string): Promise<boolean> {
  const result = await client.query(
    `select 1 from pg_auth_members m join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member
      where r.rolname = $1 and u.rolname = $2`,
    [role, login],
  );
  return result.rowCount === 1;
}
