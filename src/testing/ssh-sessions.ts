/**
 * Test support for brokered SSH sessions end to end in one process: a Stint server on the real clock
 * (outbox and scheduler running, so activations provision, expire and end sessions by themselves), the
 * real SSH proxy in front of a real sshd, and the OpenSSH client with certificates the API issues.
 * Throwaway Unix user and group for the ssh-host connector, removed by cleanup().
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createLogger } from "../lib/logger.js";
import { createSshProxy, type SshProxy, type SshProxyDeps } from "../proxies/ssh/ssh-proxy.js";
import { createGroup, createUser, deleteGroup, deleteUser, startSshd, type Sshd } from "./sshd.js";
import { passwordFor, testServer, type TestServer } from "./server.js";

const run = promisify(execFile);

export interface ApiReply {
  status: number;
  body: Record<string, unknown> & { error?: { code: string; message: string } };
}

export interface ClientResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface IssuedCertificate {
  /** The private key file (its certificate is `${key}-cert.pub`). */
  key: string;
  certificate: string;
  serial: string;
  keyId: string;
  principals: string[];
  validBefore: string;
}

export interface SshSessionsHarness {
  server: TestServer;
  /** The server's master key (tests that forge what only a broken CA would sign open its key with it). */
  masterKey: Uint8Array;
  sshd: Sshd;
  proxy: SshProxy;
  proxyPort: number;
  dir: string;
  /** The Stint users made for the test (eligible for every role). */
  users: string[];
  /** The catalog applied at start (to apply a changed copy). */
  catalog: string;
  /** The Unix group the roles grant (for extra roles a test adds). */
  group: string;
  admin(method: "GET" | "POST" | "PUT" | "DELETE", url: string, payload?: unknown): Promise<ApiReply>;
  as(user: string, method: "GET" | "POST" | "PUT", url: string, payload?: unknown): Promise<ApiReply>;
  /** Activates and waits until active; returns the request id. */
  activate(user: string, role: string, duration?: string): Promise<string>;
  /** A fresh key certified by the API for the user's activation (of `role` when given). */
  certify(user: string, role?: string): Promise<IssuedCertificate>;
  sshArgs(key: string, login: string, extra?: string[]): string[];
  /** Runs ssh to the proxy as `login` ("user%target") and waits for it. */
  ssh(
    key: string,
    login: string,
    command: string[],
    options?: { input?: string; extra?: string[]; timeoutMs?: number },
  ): Promise<ClientResult>;
  /** Runs ssh straight to an sshd (no proxy), trusting any host key, with the key and its certificate. */
  sshDirect(key: string, sshd: Sshd, login: string, command: string[]): Promise<ClientResult>;
  /** Starts ssh to the proxy and returns at once (for sessions ended while they run). */
  spawnSsh(
    key: string,
    login: string,
    command: string[],
    extra?: string[],
  ): {
    child: ChildProcess;
    /** stdout and stderr as they arrived (a stderr line may land inside a stdout line). */
    output(): string;
    /** stdout alone. */
    stdout(): string;
    exited: Promise<number | null>;
  };
  cleanup(): Promise<void>;
}

export interface HarnessOptions {
  /** More catalog: appended to the generated targets (roles and eligibility are generated per target). */
  policy?: string;
  /** Extra targets beside "web" on the same sshd (each gets a role `<name>-shell`). */
  extraTargets?: string[];
  users?: string[];
  env?: NodeJS.ProcessEnv;
  proxy?: Partial<Omit<SshProxyDeps, "gate" | "hostKey" | "logger" | "port">>;
  sshdConfig?: string[];
  /** The targets' address (default `ssh://root@127.0.0.1:<sshd port>`), e.g. by name or through a relay. */
  address?: (sshd: Sshd) => string;
}

export async function sshSessionsHarness(options: HarnessOptions = {}): Promise<SshSessionsHarness> {
  const hex = randomBytes(3).toString("hex");
  const unixUser = `sshh${hex}`;
  const wheel = `sshg${hex}`;
  const users = options.users ?? [`ann${hex}`];
  const dir = mkdtempSync(join(tmpdir(), "stint-ssh-sessions-"));
  // Many sessions open at once in some tests: sshd's default MaxStartups (10) would drop some.
  const sshd = await startSshd({ extraConfig: ["MaxStartups 200", ...(options.sshdConfig ?? [])] });
  await createUser(unixUser);
  await createGroup(wheel);
  const masterKey = randomBytes(32);
  const server = await testServer("pglite", {
    masterKey,
    env: {
      STINT_RECONCILE_INTERVAL: "0",
      STINT_OUTBOX_POLL: "100ms",
      STINT_SCHEDULER_POLL: "100ms",
      ...options.env,
    },
  });
  server.outbox.start();
  server.scheduler.start();
  const proxy = createSshProxy({
    gate: server.sessions.gate,
    hostKey: await server.sessions.proxyHostKey(),
    logger: createLogger({ level: process.env.SSH_PROXY_LOG ?? "silent" }),
    port: 0,
    handshakeTimeoutMs: server.config.sshProxyHandshakeTimeout,
    maxConnections: server.config.sshProxyMaxConnections,
    maxConnectionsPerAddress: server.config.sshProxyMaxConnectionsPerAddress,
    maxSessions: server.config.sshProxyMaxSessions,
    maxForwards: server.config.sshProxyMaxForwards,
    maxAuthTries: server.config.sshProxyMaxAuthTries,
    registry: server.registry,
    ...options.proxy,
  });
  const proxyPort = (await proxy.listen()).port;
  server.sessions.setProxyAddress("ssh", { host: "127.0.0.1", port: proxyPort });
  const info = (await server.app.inject({ method: "GET", url: "/v1/ssh/ca" })).json<{ proxy: { hostKey: string } }>();
  const knownHosts = join(dir, "known_hosts");
  writeFileSync(knownHosts, `[127.0.0.1]:${proxyPort} ${info.proxy.hostKey}\n`);

  const inject = async (auth: string, method: string, url: string, payload?: unknown): Promise<ApiReply> => {
    const res = await server.app.inject({
      method: method as "GET",
      url,
      headers: { authorization: auth },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: res.body ? (res.json() as ApiReply["body"]) : {} };
  };
  const admin: SshSessionsHarness["admin"] = (method, url, payload) => inject(server.adminAuth, method, url, payload);
  const auths = new Map<string, string>();
  const as: SshSessionsHarness["as"] = async (user, method, url, payload) => {
    let auth = auths.get(user);
    if (!auth) {
      auth = await server.login(user, passwordFor(user));
      auths.set(user, auth);
    }
    return inject(auth, method, url, payload);
  };
  const must = (reply: ApiReply, what: string) => {
    if (reply.status >= 300) throw new Error(`${what}: ${reply.status} ${JSON.stringify(reply.body)}`);
    return reply;
  };

  for (const user of users)
    must(await admin("POST", "/v1/users", { name: user, password: passwordFor(user) }), `user ${user}`);
  const targets = ["web", ...(options.extraTargets ?? [])];
  const yaml = `apiVersion: stint/v1
policies:
  - name: ssh-self
    mfa: { required: false }
    maxDuration: 8h
    maxExtensions: 5
${options.policy ?? "    session: { recording: required }"}
targets:
${targets
  .map(
    (name) => `  - name: ${name}
    kind: ssh-host
    address: ${options.address?.(sshd) ?? `ssh://root@127.0.0.1:${sshd.port}`}
    credential: { secret: targets/${name}/admin }
    identity: { map: { ${users.map((u) => `${u}: ${unixUser}`).join(", ")} } }
    options:
      hostKey: "${sshd.hostKeyFingerprint}"
      session: { login: root, secret: targets/${name}/session }`,
  )
  .join("\n")}
roles:
${targets
  .map(
    (name) => `  - name: ${name}-shell
    target: ${name}
    entitlement: { group: ${wheel} }
    policy: ssh-self
    risk: high`,
  )
  .join("\n")}
eligibility:
${targets.map((name) => `  - role: ${name}-shell\n    users: [${users.join(", ")}]`).join("\n")}
`;
  must(await admin("POST", "/v1/config/apply", { yaml }), "apply");
  for (const name of targets) {
    must(await admin("PUT", `/v1/targets/${name}/credential`, { secret: sshd.adminPrivateKey }), "credential");
    must(
      await admin("PUT", `/v1/secrets/${encodeURIComponent(`targets/${name}/session`)}`, {
        kind: "ssh-key",
        value: sshd.adminPrivateKey,
      }),
      "session secret",
    );
  }

  const sshArgs = (key: string, login: string, extra: string[] = []) => [
    "-F",
    "/dev/null",
    "-o",
    `UserKnownHostsFile=${knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-i",
    key,
    ...extra,
    "-p",
    String(proxyPort),
    `${login}@127.0.0.1`,
  ];

  const runClient = (args: string[], input = "", timeoutMs = 20_000): Promise<ClientResult> =>
    new Promise((resolve) => {
      const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      child.stdin.end(input);
    });

  const spawnSsh: SshSessionsHarness["spawnSsh"] = (key, login, command, extra = []) => {
    const child = spawn("ssh", [...sshArgs(key, login, extra), ...command], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    return { child, output: () => output, stdout: () => stdout, exited };
  };

  let keys = 0;
  return {
    server,
    catalog: yaml,
    group: wheel,
    masterKey,
    sshd,
    proxy,
    proxyPort,
    dir,
    users,
    admin,
    as,
    async activate(user, role, duration = "10m") {
      const res = must(
        await as(user, "POST", "/v1/activation-requests", {
          role,
          duration,
          reason: "investigating incident 4242 in production",
        }),
        "activate",
      );
      const id = String(res.body.id);
      // Provisioning runs through the outbox, one SSH call per activation: slow on a busy machine.
      const deadline = Date.now() + 120_000;
      for (;;) {
        const now = await admin("GET", `/v1/activation-requests/${id}`);
        if (now.body.state === "active") return id;
        if (Date.now() > deadline) throw new Error(`activation ${id} is ${String(now.body.state)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async certify(user, role) {
      const key = join(dir, `key${keys++}`);
      await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", user, "-f", key]);
      const res = must(
        await as(user, "POST", "/v1/ssh/certificates", {
          publicKey: readFileSync(`${key}.pub`, "utf8").trim(),
          ...(role ? { role } : {}),
        }),
        "certificate",
      );
      const body = res.body as unknown as Omit<IssuedCertificate, "key">;
      writeFileSync(`${key}-cert.pub`, `${body.certificate}\n`);
      return { key, ...body };
    },
    sshArgs,
    ssh: (key, login, command, opts = {}) =>
      runClient([...sshArgs(key, login, opts.extra), ...command], opts.input, opts.timeoutMs),
    sshDirect: (key, target, login, command) =>
      runClient([
        "-F",
        "/dev/null",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-i",
        key,
        "-p",
        String(target.port),
        `${login}@${target.host}`,
        ...command,
      ]),
    spawnSsh,
    async cleanup() {
      await proxy.close().catch(() => undefined);
      await server.cleanup().catch(() => undefined);
      await sshd.stop().catch(() => undefined);
      await deleteUser(unixUser).catch(() => undefined);
      await deleteGroup(wheel).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
