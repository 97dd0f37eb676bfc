/**
 * Brokered sessions end to end, as people use them: the built server with both proxies, the `stint`
 * CLI, real `psql`, real OpenSSH `ssh` driven through tmux, the machine's PostgreSQL and a real sshd.
 * The user never supplies the upstream credential; everything is recorded and replayable; revoking the
 * activation ends the open psql and ssh sessions within a second, and the audit log says why.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD } from "../../src/testing/server.js";
import { createGroup, createUser, deleteGroup, deleteUser, startSshd, type Sshd } from "../../src/testing/sshd.js";
import { assertBuilt, BIN, cli, freePort, seedDataDir, start, type RunningProcess } from "./support.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const hex = randomBytes(3).toString("hex");
const database = `stint_e2e_sess_${hex}`;
const reader = `stint_e2e_reader_${hex}`;
const wheel = `sessops${hex}`;
const unixUser = `ann${hex}`;
const tmuxSocket = `stint-e2e-${hex}`;
const REASON = "investigating incident 4242 in production";

let work: string;
let url: string;
let server: RunningProcess;
let sshd: Sshd;
let pgRoot: pg.Client;
let proxyPorts: { ssh: number; pg: number };

function as(user: string) {
  return (args: string[], input?: string) =>
    cli(args, {
      env: { STINT_CONFIG_DIR: path.join(work, `cli-${user}`), STINT_SERVER: url, STINT_TOKEN: "" },
      ...(input !== undefined ? { input } : {}),
    });
}
const admin = () => as("admin");
const ann = () => as("ann");
const ben = () => as("ben");

async function ok(run_: ReturnType<typeof as>, args: string[], input?: string) {
  const result = await run_(args, input);
  expect(result.code, `stint ${args.join(" ")}\n${result.stdout}\n${result.stderr}`).toBe(0);
  return result;
}

async function tmux(...args: string[]) {
  return (await run("tmux", ["-L", tmuxSocket, ...args])).stdout;
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface SessionItem {
  id: string;
  kind: string;
  user: string;
  role: string;
  target: string;
  startedAt: string;
  endedAt: string | null;
  endReason: string | null;
}

async function sessions(): Promise<SessionItem[]> {
  return JSON.parse((await ok(admin(), ["sessions", "list", "--json"])).stdout) as SessionItem[];
}

async function auditEvents() {
  return (await ok(admin(), ["audit", "list", "--json", "--limit", "1000"])).stdout;
}

beforeAll(async () => {
  assertBuilt();
  work = mkdtempSync(path.join(tmpdir(), "stint-e2e-sessions-"));
  pgRoot = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
  await pgRoot.connect();
  await pgRoot.query(`create database ${database}`);
  await pgRoot.query(`create role ${reader} nologin`);
  const db = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${database}` });
  await db.connect();
  await db.query("create table incidents (id int primary key, title text)");
  await db.query("insert into incidents select g, 'incident ' || g from generate_series(1, 42) g");
  await db.query("revoke all on incidents from public");
  await db.query(`grant select on incidents to ${reader}`);
  await db.end();

  sshd = await startSshd();
  await createUser(unixUser);
  await createGroup(wheel);

  const port = await freePort();
  proxyPorts = { ssh: await freePort(), pg: await freePort() };
  url = `http://127.0.0.1:${port}`;
  await seedDataDir(path.join(work, "data"));
  server = start(process.execPath, [BIN, "server"], {
    env: {
      STINT_LISTEN: `127.0.0.1:${port}`,
      STINT_DATA_DIR: path.join(work, "data"),
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_SSH_PROXY_LISTEN: `127.0.0.1:${proxyPorts.ssh}`,
      STINT_PG_PROXY_LISTEN: `127.0.0.1:${proxyPorts.pg}`,
      STINT_MYSQL_PROXY_LISTEN: "off",
      STINT_OUTBOX_POLL: "100ms",
      STINT_SCHEDULER_POLL: "100ms",
      STINT_RECONCILE_INTERVAL: "0",
      STINT_LOG_LEVEL: "warn",
    },
  });
  await server.waitFor(/Session proxies: SSH on 127\.0\.0\.1:\d+, PostgreSQL on 127\.0\.0\.1:\d+/, 60_000);

  await ok(admin(), ["login", "--user", "admin", "--password-stdin"], `${ADMIN_PASSWORD}\n`);
  await ok(admin(), ["users", "create", "ann", "--password-stdin"], "tulip orbit canyon lantern\n");
  await ok(admin(), ["users", "create", "ben", "--password-stdin"], "maple quartz harbor violet\n");
  const file = path.join(work, "stint.yaml");
  writeFileSync(
    file,
    `apiVersion: stint/v1
policies:
  - name: self-service
    mfa: { required: false }
    maxDuration: 8h
  - name: recorded
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
targets:
  - name: app-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${database}?sslmode=disable
  - name: web
    kind: ssh-host
    address: ssh://root@127.0.0.1:${sshd.port}
    credential: { secret: targets/web/admin }
    identity: { map: { ann: ${unixUser} } }
    options:
      hostKey: "${sshd.hostKeyFingerprint}"
      session: { login: root, secret: ssh/web/root }
roles:
  - name: app-db-reader
    target: app-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: self-service
    risk: medium
  - name: app-db-auditor
    target: app-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: self-service
    risk: medium
  - name: web-shell
    target: web
    entitlement: { group: ${wheel} }
    policy: recorded
    risk: critical
eligibility:
  - role: app-db-reader
    users: [ann, ben]
  - role: app-db-auditor
    users: [ann]
  - role: web-shell
    users: [ann]
`,
  );
  await ok(admin(), ["apply", "-f", file]);
  // The host's admin key for the connector, and the login the proxy injects: both from the vault side.
  await ok(admin(), ["targets", "credential", "web"], sshd.adminPrivateKey);
  await ok(admin(), ["secret", "put", "ssh/web/root", "--kind", "ssh-key", "--value-stdin"], sshd.adminPrivateKey);
  await ok(ann(), ["login", "--user", "ann", "--password-stdin"], "tulip orbit canyon lantern\n");
  await ok(ben(), ["login", "--user", "ben", "--password-stdin"], "maple quartz harbor violet\n");
}, 180_000);

afterAll(async () => {
  await run("tmux", ["-L", tmuxSocket, "kill-server"]).catch(() => undefined);
  await server?.kill("SIGTERM");
  await sshd?.stop();
  await deleteUser(unixUser).catch(() => undefined);
  await deleteGroup(wheel).catch(() => undefined);
  if (pgRoot) {
    await pgRoot.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
    const minted = await pgRoot.query<{ rolname: string }>(
      "select rolname from pg_roles where rolname like 'stint_ann_%' or rolname like 'stint_ben_%'",
    );
    for (const r of minted.rows) await pgRoot.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
    await pgRoot.query(`drop role if exists ${reader}`).catch(() => undefined);
    await pgRoot.end();
  }
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

interface DbLogin {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  expiresAt: string;
}

async function dbLogin(user: ReturnType<typeof as>, role: string, once = false): Promise<DbLogin> {
  const result = await ok(user, ["db", "login", role, "--json", ...(once ? ["--once"] : [])]);
  return JSON.parse(result.stdout) as DbLogin;
}

function psql(login: Pick<DbLogin, "host" | "port" | "database" | "user" | "password">, ...commands: string[]) {
  return run(
    "psql",
    [
      "-X",
      "-A",
      "-t",
      "-h",
      login.host,
      "-p",
      String(login.port),
      "-U",
      login.user,
      "-d",
      login.database,
      ...commands.flatMap((c) => ["-c", c]),
    ],
    {
      env: { ...process.env, PGPASSWORD: login.password, PGCONNECT_TIMEOUT: "5" },
    },
  ).then(
    (out) => ({ code: 0, stdout: out.stdout, stderr: out.stderr }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof error.code === "number" ? error.code : -1,
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }),
  );
}

async function activate(user: ReturnType<typeof as>, role: string): Promise<string> {
  const result = await ok(user, ["activate", role, "--for", "30m", "--reason", REASON, "--wait", "--json"]);
  const request = JSON.parse(result.stdout) as { id: string; state: string };
  expect(request.state).toBe("active");
  return request.id;
}

describe("the PostgreSQL proxy", () => {
  let requestId: string;

  it("psql runs queries with a Stint token; the recording lists them in order with durations", async () => {
    requestId = await activate(ann(), "app-db-reader");
    const login = await dbLogin(ann(), "app-db-reader");
    expect(login).toMatchObject({ host: "127.0.0.1", port: proxyPorts.pg, database, user: "ann%app-db-reader" });
    const result = await psql(
      login,
      "select count(*) from incidents",
      "select title from incidents where id = 7",
      "select 1/0",
    );
    expect(result.stdout).toContain("42");
    expect(result.stdout).toContain("incident 7");
    expect(result.stderr).toContain("division by zero");

    const session = (await sessions()).find((s) => s.kind === "postgres" && s.user === "ann")!;
    expect(session).toMatchObject({ role: "app-db-reader", target: "app-db", endReason: "client_closed" });
    const played = (await ok(admin(), ["sessions", "play", session.id])).stdout;
    const order = ["select count(*) from incidents", "select title from incidents where id = 7", "select 1/0"].map(
      (q) => played.indexOf(q),
    );
    expect(order.every((at) => at >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(played).toMatch(/\(\d+\.\d ms\) SELECT 1 row/);
    expect(played).toContain("ERROR 22012: division by zero");
    // Other users see no sessions at all.
    const hidden = await ann()(["sessions", "list", "--json"]);
    expect(hidden.code).not.toBe(0);
    expect(hidden.stderr).toMatch(/NOT_FOUND|no sessions/i);
  });

  it("refuses a wrong token, another user's or role's token, a reused --once token", async () => {
    const mine = await dbLogin(ann(), "app-db-reader");
    const wrong = await psql({ ...mine, password: "stint_not-a-token" }, "select 1");
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("not a valid Stint database token");

    await activate(ben(), "app-db-reader");
    const bens = await dbLogin(ben(), "app-db-reader");
    expect((await psql({ ...mine, password: bens.password }, "select 1")).stderr).toContain(
      "not a valid Stint database token",
    );
    await activate(ann(), "app-db-auditor");
    const otherRole = await dbLogin(ann(), "app-db-auditor");
    expect((await psql({ ...mine, password: otherRole.password }, "select 1")).stderr).toContain(
      "not a valid Stint database token",
    );

    const once = await dbLogin(ann(), "app-db-reader", true);
    expect((await psql(once, "select 'first'")).stdout).toContain("first");
    expect((await psql(once, "select 'second'")).stderr).toContain("already used");
  });

  it("revoking the activation ends an open psql session within a second, and the token with it", async () => {
    const login = await dbLogin(ann(), "app-db-reader");
    const child = spawn(
      "psql",
      ["-X", "-h", login.host, "-p", String(login.port), "-U", login.user, "-d", login.database],
      { env: { ...process.env, PGPASSWORD: login.password }, stdio: ["pipe", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
    child.stdin.write("select 'still here';\n");
    await waitFor("psql to answer", async () => output.includes("still here"));
    // A node-postgres client on the same token notices the close at once (psql only at its next command).
    const client = new pg.Client({
      host: login.host,
      port: login.port,
      user: login.user,
      database: login.database,
      password: login.password,
    });
    const closed = new Promise<number>((resolve) => {
      client.on("error", () => resolve(Date.now()));
      client.on("end", () => resolve(Date.now()));
    });
    await client.connect();
    expect((await client.query("select count(*)::int as n from incidents")).rows).toEqual([{ n: 42 }]);

    await ok(admin(), ["revoke", requestId, "--reason", "access review found no ticket"]);
    const revoked = Date.now();
    expect((await closed) - revoked).toBeLessThan(1000);
    child.stdin.write("select 'after';\n");
    child.stdin.end();
    await exited;
    expect(output).toContain("revoked by admin: access review found no ticket");
    expect(output).not.toContain("after\n");
    const ended = (await sessions()).filter((s) => s.kind === "postgres" && s.endReason === "activation_ended");
    expect(ended.length).toBeGreaterThanOrEqual(1);
    const events = await auditEvents();
    expect(events).toContain("session.ended");
    expect(events).toContain("revoked by admin: access review found no ticket");
    expect((await psql(login, "select 1")).stderr).toContain("has ended");
  });
});

describe("the SSH proxy", () => {
  let sshConfig: string;

  it("an OpenSSH client reaches the host with a Stint certificate, exec and interactive, and play shows the output", async () => {
    await activate(ann(), "web-shell");
    const loginOut = JSON.parse((await ok(ann(), ["ssh", "login", "--json", "--no-agent"])).stdout) as {
      identityFile: string;
      certificateFile: string;
      validBefore: string;
      target: string;
    };
    expect(loginOut.target).toBe("web");
    const config = JSON.parse((await ok(ann(), ["ssh", "config", "--json"])).stdout) as { config: string };
    sshConfig = path.join(work, "ssh_config");
    writeFileSync(sshConfig, `${config.config}  BatchMode yes\n`);
    const exec = await run("ssh", ["-F", sshConfig, "ann%web@stint", "id -un; echo exec-ok"]);
    expect(exec.stdout).toBe("root\nexec-ok\n");

    const marker = `hello-${hex}`;
    await tmux("new-session", "-d", "-x", "100", "-y", "30", `ssh -F ${sshConfig} -tt ann%web@stint`);
    await tmux("set-option", "-g", "remain-on-exit", "on");
    await waitFor("a shell prompt", async () => /[#$] ?$/m.test(await tmux("capture-pane", "-p")));
    await tmux("send-keys", `echo ${marker}-$((6*7))`, "Enter");
    await waitFor("the echo", async () => (await tmux("capture-pane", "-p")).includes(`${marker}-42`));
    await tmux("send-keys", "exit", "Enter");
    await waitFor("the shell to end", async () => (await tmux("display-message", "-p", "#{pane_dead}")).trim() === "1");
    await tmux("kill-server").catch(() => undefined);

    const ssh = (await sessions()).filter((s) => s.kind === "ssh");
    expect(ssh.length).toBe(2);
    const played = (await ok(admin(), ["sessions", "play", ssh[0]!.id])).stdout;
    expect(played).toContain(`${marker}-42`);
    const execPlayed = (await ok(admin(), ["sessions", "play", ssh[1]!.id])).stdout;
    expect(execPlayed).toContain("exec-ok");
  });

  it("revoking the activation ends an open SSH shell within a second, with the reason on the user's screen", async () => {
    await tmux("new-session", "-d", "-x", "120", "-y", "30", `ssh -F ${sshConfig} -tt ann%web@stint`);
    await tmux("set-option", "-g", "remain-on-exit", "on");
    await waitFor("a shell prompt", async () => /[#$] ?$/m.test(await tmux("capture-pane", "-p")));
    const live = (await sessions()).find((s) => s.kind === "ssh" && s.endedAt === null)!;
    const requests = JSON.parse((await ok(admin(), ["requests", "--all", "--state", "active", "--json"])).stdout) as {
      items: { id: string; role: string; state: string }[];
    };
    const request = requests.items.find((r) => r.role === "web-shell" && r.state === "active")!;
    const started = Date.now();
    await ok(admin(), ["revoke", request.id, "--reason", "change window closed"]);
    const revoked = Date.now();
    await waitFor(
      "the ssh client to exit",
      async () => (await tmux("display-message", "-p", "#{pane_dead}")).trim() === "1",
      5000,
    );
    const gone = Date.now();
    // From the revoke's answer to the client's exit (tmux polling included).
    expect(gone - revoked).toBeLessThan(1000);
    expect(gone - started).toBeLessThan(5000);
    expect(await tmux("capture-pane", "-p")).toContain("change window closed");
    await tmux("kill-server").catch(() => undefined);
    const shown = JSON.parse((await ok(admin(), ["sessions", "show", live.id, "--json"])).stdout) as {
      endReason: string;
      endDetail: string;
    };
    expect(shown.endReason).toBe("activation_ended");
    expect(shown.endDetail).toContain("was revoked by admin: change window closed");
    // The certificate outlives nothing: with the activation gone, the proxy refuses it.
    const after = await run("ssh", ["-F", sshConfig, "ann%web@stint", "true"]).then(
      () => 0,
      (e: { code: number }) => e.code,
    );
    expect(after).toBe(255);
  });
});
