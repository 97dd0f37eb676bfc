/**
 * Reliability test support: built server nodes as real processes, an HTTP client that records
 * every answer (status, error code, Retry-After, time taken), a throwaway store cluster the test may
 * restart, pg_terminate_backend against the store, and a real PostgreSQL target on the machine's
 * server whose role memberships are the privilege Stint grants. Shared by the store-outage,
 * store-restart and store-chaos tests.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { startPostgres, type PostgresInstance } from "../../src/testing/postgres-instance.js";
import { freePort, ROOT } from "../e2e/support.js";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The parent's environment without any Stint setting (nor NODE_OPTIONS), plus `extra`. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith("STINT_") && key !== "NODE_OPTIONS") env[key] = value;
  return { ...env, ...extra };
}

/** One HTTP answer as a client saw it. */
export interface Answer {
  /** `METHOD /path`. */
  what: string;
  status: number;
  /** The error envelope's code, when there is one. */
  code?: string;
  retryAfter: string | null;
  ms: number;
  body: unknown;
}

/** Sends one request to `base` (30 s at most) and reads the whole answer. */
export async function call(base: string, method: string, url: string, auth?: string, body?: unknown): Promise<Answer> {
  const started = Date.now();
  const res = await fetch(`${base}${url}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(auth ? { authorization: auth } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  const code = (parsed as { error?: { code?: string } } | null)?.error?.code;
  return {
    what: `${method} ${url}`,
    status: res.status,
    ...(code ? { code } : {}),
    retryAfter: res.headers.get("retry-after"),
    ms: Date.now() - started,
    body: parsed,
  };
}

/** Signs in with a password; returns the `Bearer …` header value. */
export async function login(base: string, name: string, password: string): Promise<string> {
  const res = await call(base, "POST", "/v1/auth/login", undefined, { username: name, password });
  if (res.status !== 200) throw new Error(`login ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  return `Bearer ${(res.body as { accessToken: string }).accessToken}`;
}

/** Whether an answer during a store outage is acceptable: a success, or 503 STORE_UNAVAILABLE with Retry-After. */
export function successOrStoreUnavailable(answer: Answer): boolean {
  return (
    answer.status < 300 || (answer.status === 503 && answer.code === "STORE_UNAVAILABLE" && answer.retryAfter !== null)
  );
}

/**
 * Polls `probe` (every 100 ms; a throw counts as "not yet") until it returns something other than
 * undefined; after `timeoutMs` it throws, with `context()` (a server's output, say) in the message.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  context?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(
        `${what} did not happen within ${timeoutMs} ms${context ? `; server output:\n${context()}` : ""}`,
      );
    await sleep(100);
  }
}

/** A built server (`node bin/stint.js server`) running as a child process. */
export interface ServerNode {
  name: string;
  base: string;
  child: ChildProcess;
  /** What it wrote (stdout and stderr), its last 1,000,000 characters. */
  output(): string;
  /** How it exited, if it has. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Every line it wrote that speaks of an unhandled error or an uncaught exception. */
  unhandled(): string[];
  call(method: string, url: string, auth?: string, body?: unknown): Promise<Answer>;
  login(name: string, password: string): Promise<string>;
  /** SIGKILL (if still running); resolves once it has exited. */
  kill(): Promise<void>;
}

const UNHANDLED = /unhandled|uncaught/i;

/**
 * Starts the built server with `env` (over a clean environment: warn-level logs, no session
 * proxies unless `env` says otherwise) on a free port and waits until /readyz answers 200.
 */
export async function startServerNode(name: string, env: Record<string, string>): Promise<ServerNode> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ["bin/stint.js", "server"], {
    cwd: ROOT,
    env: childEnv({
      STINT_LOG_LEVEL: "warn",
      STINT_SSH_PROXY_LISTEN: "off",
      STINT_PG_PROXY_LISTEN: "off",
      STINT_MYSQL_PROXY_LISTEN: "off",
      ...env,
      STINT_LISTEN: `127.0.0.1:${port}`,
    }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let partial = "";
  const unhandled: string[] = [];
  const collect = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    output = (output + text).slice(-1_000_000);
    const lines = (partial + text).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) if (UNHANDLED.test(line)) unhandled.push(line.slice(0, 2_000));
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const gone = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      if (UNHANDLED.test(partial)) unhandled.push(partial.slice(0, 2_000));
      resolve();
    }),
  );
  const node: ServerNode = {
    name,
    base,
    child,
    output: () => output,
    exited: () => exit,
    unhandled: () => [...unhandled],
    call: (method, url, auth, body) => call(base, method, url, auth, body),
    login: (user, password) => login(base, user, password),
    async kill() {
      if (!exit) child.kill("SIGKILL");
      await gone;
    },
  };
  try {
    await waitFor(`readiness of node ${name}`, 60_000, async () => {
      if (exit) throw new Error(`node ${name} exited early`);
      const res = await fetch(`${base}/readyz`);
      await res.text();
      return res.ok ? true : undefined;
    });
  } catch (error) {
    await node.kill();
    throw new Error(`${(error as Error).message}:\n${output}`);
  }
  return node;
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
