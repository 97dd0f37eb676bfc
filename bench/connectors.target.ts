/**
 * The connectors bench's scenarios at a target alone (no dynamic issuance): the connector's createLogin/dropLogin
 * on pooled and new admin connections, and role membership through Stint on PGlite with the outbox run by hand.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { connectorFor, type ConnectorTarget } from "../src/modules/connectors/index.js";
import { postgresPools } from "../src/modules/connectors/postgres/postgres.connector.js";
import { PG_ADMIN_URL } from "../src/testing/engines.js";
import { startPostgres, type PostgresInstance } from "../src/testing/postgres-instance.js";
import { passwordFor } from "../src/testing/server.js";
import { selfServiceCatalog, selfServicePolicy, targetsHarness } from "../src/testing/targets-harness.js";
import { summary } from "./connectors.timeline.js";

/**
 * The config the dynamic-login benches apply (connectors.dynamic.ts, vault.bench.ts): a PostgreSQL target at `url`
 * (no TLS), one `dynamic: true` role on its NOLOGIN `reader`, self-service (no approval, no MFA) for `users`; with
 * `preCreatedLogins` above 0, the target keeps that many logins made ahead.
 */
export function dynamicRoleConfig(spec: {
  role: string;
  url: string;
  reader: string;
  users: string[];
  preCreatedLogins?: number;
}): string {
  const options = spec.preCreatedLogins ? `\n    options: { preCreatedLogins: ${spec.preCreatedLogins} }` : "";
  return selfServiceCatalog({
    policy: "bench-self",
    target: { name: "bench-ledger", lines: `    kind: postgres\n    address: ${spec.url}?sslmode=disable${options}\n` },
    role: { name: spec.role, entitlement: `{ role: ${spec.reader}, dynamic: true }`, risk: "medium" },
    users: spec.users,
  });
}

export async function benchMembership(options: { activations: number; roles: number }) {
  const hex = randomBytes(4).toString("hex");
  const database = `stint_bench_${hex}`;
  const login = `stint_bench_user_${hex}`;
  const admin = new URL(PG_ADMIN_URL);
  admin.pathname = "";
  const adminUrl = admin.toString().replace(/\/$/, "");
  const root = new pg.Client({ connectionString: PG_ADMIN_URL });
  await root.connect();
  const roles = Array.from({ length: options.roles }, (_, i) => `stint_bench_r${i}_${hex}`);
  await root.query(`create database ${database}`);
  await root.query(`create role ${login} login`);
  for (const role of roles) await root.query(`create role ${role} nologin`);
  const h = await targetsHarness();
  try {
    await h.createUser("bench");
    await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("bench-self")}
targets:
  - name: bench-db
    kind: postgres
    address: ${adminUrl}/${database}?sslmode=disable
    identity: { map: { bench: ${login} } }
roles:
${roles
  .map(
    (role, i) => `  - name: bench-role-${i}
    target: bench-db
    entitlement: { role: ${role} }
    policy: bench-self
    risk: low`,
  )
  .join("\n")}
eligibility:
  - role: bench-role-0
    users: [bench]
`);
    const auth = await h.server.login("bench", passwordFor("bench"));
    const elevate: number[] = [];
    const revoke: number[] = [];
    for (let i = 0; i < options.activations; i++) {
      const started = performance.now();
      const res = await h.server.app.inject({
        method: "POST",
        url: "/v1/activation-requests",
        headers: { authorization: auth },
        payload: { role: "bench-role-0", duration: "10m", reason: "benchmark of the postgres connector" },
      });
      if (res.statusCode !== 201) throw new Error(res.body);
      await h.drainOutbox();
      elevate.push(performance.now() - started);
      const held = new pg.Client({ connectionString: `${adminUrl.replace("postgres@", `${login}@`)}/${database}` });
      held.on("error", () => undefined);
      await held.connect();
      const ended = performance.now();
      await h.server.app.inject({
        method: "POST",
        url: "/v1/me/roles/bench-role-0/deactivate",
        headers: { authorization: auth },
      });
      await h.drainOutbox();
      revoke.push(performance.now() - ended);
      await held.end().catch(() => undefined);
    }
    summary("pglite   submit → privilege (outbox run at once)", elevate);
    summary("pglite   deactivate → revoked, sessions ended", revoke);
    const cycles: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const res = await h.admin("POST", "/v1/reconcile", { target: "bench-db" });
      if (res.status !== 200) throw new Error(JSON.stringify(res.body));
      cycles.push(performance.now() - started);
    }
    summary(`pglite   reconcile of a target with ${options.roles} roles`, cycles);
  } finally {
    await h.server.cleanup();
    await root.query(`drop database if exists ${database} with (force)`);
    for (const role of [login, ...roles]) await root.query(`drop role if exists ${role}`);
    await root.end();
  }
}

/**
 * The connector alone: createLogin then dropLogin of a dynamic login, each on a warm pooled admin connection
 * and on a new one (the pool emptied first, as every call was before pooling), interleaved so that both see
 * the same host. Against the machine's PostgreSQL (trust, no TLS) and, where the PostgreSQL 15 binaries and root
 * are there, a throwaway cluster that signs in with SCRAM over TLS (verify-full), as a production target does.
 */
export async function benchConnector(options: { logins: number }) {
  const connector = connectorFor("postgres")!;
  const hex = randomBytes(4).toString("hex");
  /** `signIn`: how the minted login connects to the target (its database and TLS). */
  const run = async (
    label: string,
    target: ConnectorTarget,
    admin: pg.Client,
    signIn: (login: string, password: string) => pg.ClientConfig,
  ) => {
    const reader = `stint_bench_cr_${hex}`;
    await admin.query(`create role ${reader} nologin`);
    try {
      const times = {
        warmCreate: [] as number[],
        warmDrop: [] as number[],
        coldCreate: [] as number[],
        coldDrop: [] as number[],
        floor: [] as number[],
      };
      const once = async (n: number, cold: boolean) => {
        const login = `stint_bench_c_${hex}_${n}${cold ? "c" : "w"}`;
        // Minted as the grants service does: its SCRAM secret computed ahead (when the stock has one).
        const minted = connector.mintPassword!(() => randomBytes(24).toString("base64url"));
        const spec = {
          login,
          password: minted.password,
          minted,
          entitlement: { role: reader, dynamic: true },
          validUntil: new Date(Date.now() + 600_000),
        };
        if (cold) await postgresPools.closeAll();
        let t = performance.now();
        await connector.createLogin!(target, spec);
        const create = performance.now() - t;
        // The target's own part of a dynamic login, pooled: createLogin, then the login signs in and answers.
        if (!cold && n >= 0) {
          t = performance.now();
          const client = new pg.Client(signIn(login, minted.password));
          await client.connect();
          await client.query("select 1");
          times.floor.push(create + performance.now() - t);
          await client.end();
        }
        if (cold) await postgresPools.closeAll();
        t = performance.now();
        await connector.dropLogin!(target, { login });
        const drop = performance.now() - t;
        if (n < 0) return;
        (cold ? times.coldCreate : times.warmCreate).push(create);
        (cold ? times.coldDrop : times.warmDrop).push(drop);
      };
      for (let i = 0; i < 3; i++) await once(-1 - i, i % 2 === 0);
      for (let i = 0; i < options.logins; i++) {
        await once(i, true);
        await once(i, false);
      }
      summary(`${label} createLogin, new connection`, times.coldCreate);
      summary(`${label} createLogin, pooled connection`, times.warmCreate);
      summary(`${label} dropLogin, new connection`, times.coldDrop);
      summary(`${label} dropLogin, pooled connection`, times.warmDrop);
      summary(`${label} target alone: create, sign in, SELECT`, times.floor);
    } finally {
      await postgresPools.closeAll();
      await admin.query(`drop role if exists ${reader}`);
    }
  };

  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  const local = new URL(PG_ADMIN_URL);
  try {
    await run(
      "trust, no TLS ",
      { name: "bench-local", address: `${local.toString()}?sslmode=disable`, options: {}, credential: null },
      admin,
      (user, password) => ({
        host: local.hostname,
        port: Number(local.port || 5432),
        database: local.pathname.slice(1) || "postgres",
        user,
        password,
      }),
    );
  } finally {
    await admin.end();
  }

  let instance: PostgresInstance;
  try {
    instance = await startPostgres({ tls: true });
  } catch (error) {
    console.log(`(no SCRAM/TLS cluster: ${(error as Error).message.split("\n")[0]})`);
    return;
  }
  const scram = new pg.Client({
    host: "127.0.0.1",
    port: instance.port,
    user: "postgres",
    password: instance.adminPassword,
    database: "postgres",
    ssl: { ca: instance.tls!.ca },
  });
  try {
    await scram.connect();
    await run(
      "SCRAM over TLS",
      {
        name: "bench-scram",
        address: `postgres://postgres@127.0.0.1:${instance.port}/postgres`,
        options: { tls: { ca: instance.tls!.ca } },
        credential: instance.adminPassword,
      },
      scram,
      (user, password) => ({
        host: "127.0.0.1",
        port: instance.port,
        database: "postgres",
        user,
        password,
        ssl: { ca: instance.tls!.ca },
      }),
    );
  } finally {
    await scram.end().catch(() => undefined);
    await instance.stop();
  }
}
