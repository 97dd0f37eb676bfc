/**
 * Test support: the whole PostgreSQL session path, real end to end. A throwaway cluster with TLS and
 * SCRAM (startPostgres({ tls: true })) holding a session login and a database; a Stint test server
 * (targetsHarness) whose catalog has a target for it (verify-full against the cluster's CA,
 * options.session) and a role a user can activate; and the PostgreSQL proxy on a free port, asking
 * that server's gate. `token()` activates the role if needed and returns a fresh database token.
 *
 *   const pgh = await pgProxyHarness();
 *   const client = new pg.Client(pgh.clientConfig(await pgh.token()));
 *   await pgh.close();
 *
 * Also the byte builders the PostgreSQL proxy's tests share: whole frames (`frame`), a header alone
 * claiming a length (`frameHeader`, a hostile client's opening) and Bind bodies (`bindBody`).
 */
import { randomBytes, randomUUID } from "node:crypto";
import pg from "pg";
import { expect } from "vitest";
import { createLogger } from "../lib/logger.js";
import { cstring, int16, int32, typed } from "../lib/pg-wire/buffers.js";
import { createPgProxy, type PgProxy, type PgProxyDeps } from "../proxies/pg/pg-proxy.js";
import { startPostgres, type PostgresInstance } from "./postgres-instance.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "./targets-harness.js";

export { cstring, int16, int32 };

/** A whole typed frame: type byte, Int32 length counting itself, body (the parts concatenated). */
export const frame: (type: string, ...parts: Buffer[]) => Buffer = typed;

/** A frame header alone: the type byte and a length word claiming `bodyLength` bytes of body to come. */
export function frameHeader(type: string, bodyLength: number): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeInt32BE(bodyLength + 4, 1);
  return head;
}

/** A Bind body: portal, statement, parameter formats, values (null: SQL NULL), result formats. */
export function bindBody(
  portal: string,
  statement: string,
  formats: number[],
  values: (Buffer | null)[],
  results: number[],
): Buffer {
  return Buffer.concat([
    cstring(portal),
    cstring(statement),
    int16(formats.length),
    ...formats.map(int16),
    int16(values.length),
    ...values.flatMap((v) => (v === null ? [int32(-1)] : [int32(v.length), v])),
    int16(results.length),
    ...results.map(int16),
  ]);
}

export interface PgProxyHarness {
  instance: PostgresInstance;
  h: TargetsHarness;
  proxy: PgProxy;
  proxyPort: number;
  /** The Stint user and role: connect as `${user}%${role}`. */
  user: string;
  role: string;
  /** The session login at the cluster and the target's database. */
  login: string;
  database: string;
  /** A superuser client straight to the cluster (TLS). */
  admin: pg.Client;
  /** Activates the role when it is not active, and returns a new database token. */
  token(): Promise<string>;
  /** The activation token() made, or null before; after a revoke or expiry call forgetActivation(). */
  requestId(): string | null;
  /** The activation ended (revoked, expired): the next token() activates again. */
  forgetActivation(): void;
  /** node-postgres settings for a client through the proxy. */
  clientConfig(token: string, extra?: pg.ClientConfig): pg.ClientConfig;
  close(): Promise<void>;
}

export async function pgProxyHarness(
  options: {
    proxy?: Partial<PgProxyDeps>;
    recording?: "required" | "optional";
    /** The policy keeps bound parameters in the query log (`session.queryParameters`). */
    queryParameters?: boolean;
    targetOptions?: string;
    /** The target's address (default `postgres://postgres@127.0.0.1:<port>/appdb`), e.g. by name or through a relay. */
    address?: (instance: PostgresInstance) => string;
  } = {},
): Promise<PgProxyHarness> {
  const hex = randomBytes(4).toString("hex");
  const user = `ann${hex}`;
  const role = "app-db-ops";
  const login = "app_ops";
  const database = "appdb";
  const password = `session-${randomUUID()}`;
  const instance = await startPostgres({ tls: true });
  const ca = instance.tls!.ca;
  const admin = new pg.Client({
    host: "127.0.0.1",
    port: instance.port,
    user: "postgres",
    password: instance.adminPassword,
    ssl: { ca },
  });
  await admin.connect();
  await admin.query(`CREATE ROLE ${login} LOGIN PASSWORD '${password}'`);
  await admin.query(`CREATE DATABASE ${database} OWNER ${login}`);
  await admin.query(`CREATE DATABASE otherdb`);

  const h = await targetsHarness();
  const proxy = createPgProxy({
    gate: h.server.sessions.gate,
    logger: createLogger({ level: "silent" }),
    port: 0,
    ...options.proxy,
  });
  const proxyPort = (await proxy.listen()).port;
  h.server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: proxyPort });
  await h.createUser(user);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("app-self")}
    session: { recording: ${options.recording ?? "required"}, queryParameters: ${options.queryParameters ?? false} }
targets:
  - name: app-db
    kind: postgres
    address: ${options.address?.(instance) ?? `postgres://postgres@127.0.0.1:${instance.port}/${database}`}
    credential: { secret: targets/app-db/admin }
    identity: { map: { ${user}: ${login} } }
    options:
      tls: { ca: ${JSON.stringify(ca)} }
      session: { login: ${login}, secret: targets/app-db/session }${options.targetOptions ?? ""}
roles:
  - name: ${role}
    target: app-db
    entitlement: { role: pg_read_all_data }
    policy: app-self
    risk: low
eligibility:
  - role: ${role}
    users: [${user}]
`);
  const set = await h.admin("PUT", "/v1/targets/app-db/credential", { secret: instance.adminPassword });
  expect(set.status, JSON.stringify(set.body)).toBe(200);
  const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("targets/app-db/session")}`, {
    kind: "password",
    value: password,
    platformRoles: ["admin"],
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);

  let requestId: string | null = null;
  return {
    instance,
    h,
    proxy,
    proxyPort,
    user,
    role,
    login,
    database,
    admin,
    async token() {
      if (requestId === null) {
        const request = await h.activate(user, role, "1h");
        expect(request.state, JSON.stringify(request)).toBe("active");
        requestId = String(request.id);
      }
      const res = await h.as(user, "POST", "/v1/db/tokens", { role });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return String(res.body.password);
    },
    requestId: () => requestId,
    forgetActivation() {
      requestId = null;
    },
    clientConfig(token, extra = {}) {
      return {
        host: "127.0.0.1",
        port: proxyPort,
        user: `${user}%${role}`,
        password: token,
        database,
        ...extra,
      };
    },
    async close() {
      await proxy.close();
      await admin.end().catch(() => undefined);
      await h.server.cleanup();
      await instance.stop();
    },
  };
}
