/**
 * Linux host over SSH: an entitlement is membership of a Unix group (`gpasswd -a/-d`).
 * One SSH connection per call, host key pinned by fingerprint, every command built
 * from quoted argv (see ssh-host.rules.ts).
 */
import { randomBytes } from "node:crypto";
import { Socket } from "node:net";
import ssh2, { Client, type ClientErrorExtensions } from "ssh2";

// ssh2 is CommonJS: Node's ESM loader finds `Client` by name but not `utils`.
const { utils } = ssh2;
import {
  ConnectorError,
  refused,
  unavailable,
  type CallOptions,
  type Connector,
  type ConnectorTarget,
  type StandingAccess,
} from "../connector.types.js";
import {
  AUTHORIZED_KEYS_SCRIPT,
  buildBatch,
  buildCommand,
  fingerprintFromHex,
  groupHolders,
  isNotMemberMessage,
  managedKeyLine,
  nameProblems,
  optionProblems,
  parseAddress,
  parseGroups,
  parseLastlog,
  parseOptions,
  parsePasswd,
  parseSudoers,
  splitSudoersFiles,
  sudoersGroups,
  splitBatch,
  sudoersHolders,
  type CommandResult,
  type SshAddress,
  type SshHostOptions,
} from "./ssh-host.rules.js";

const CONNECT_TIMEOUT_MS = 5_000;
const COMMAND_TIMEOUT_MS = 30_000;
const CLOSE_WAIT_MS = 250;

interface Command {
  argv: string[];
  /** Through `sudo -n` when useSudo is on and the admin user is not root (default true). */
  privileged?: boolean;
}

interface Session {
  address: SshAddress;
  options: SshHostOptions;
  /** Runs the commands in order in one round trip, whatever their exit status; one result each. */
  run(...commands: Command[]): Promise<CommandResult[]>;
}

const plain = (...argv: string[]): Command => ({ argv, privileged: false });
const privileged = (...argv: string[]): Command => ({ argv, privileged: true });

export const sshHostConnector: Connector = {
  kind: "ssh-host",

  checkOptions: (options) => optionProblems(options),

  checkEntitlement(entitlement) {
    const extra = Object.keys(entitlement).filter((key) => key !== "group");
    return [
      ...extra.map((key) => `entitlement.${key} is not known for ssh-host (use { group: "<unix group>" })`),
      ...(entitlement.group === undefined
        ? ['entitlement.group is required: the Unix group to add the login to, e.g. { group: "sudo" }']
        : nameProblems("entitlement.group", entitlement.group)),
    ];
  },

  checkLogin: (login) => nameProblems("the login", login),

  test: (target, call) =>
    withSession(target, call, async (session) => {
      const { address, options } = session;
      const sudo = options.useSudo && address.user !== "root";
      const [uid, system, sudoCheck] = await session.run(
        plain("id", "-u"),
        plain("uname", "-sr"),
        ...(sudo ? [privileged("true")] : []),
      );
      for (const result of [uid!, system!, ...(sudoCheck ? [sudoCheck] : [])]) expectOk(result);
      const id = firstLine(uid!.stdout);
      const how = sudo ? ", commands through sudo -n" : id === "0" ? "" : ", not root and useSudo is off";
      return {
        detail: `${firstLine(system!.stdout)} at ${address.host}:${address.port}, as ${address.user} (uid ${id}${how})`,
      };
    }),

  provision: async (target, grant, call) => {
    // Names are checked before connecting: nothing reaches the host unless it passes.
    const { login, group } = checkGrant(grant.login, grant.entitlement);
    return withSession(target, call, async (session) => {
      const [added] = await session.run(privileged("gpasswd", "-a", login, group));
      expectOk(added!);
    });
  },

  revoke: async (target, grant, call) => {
    const { login, group } = checkGrant(grant.login, grant.entitlement);
    return withSession(target, call, async (session) => {
      // Killing every process of root or of the account Stint works through would take the host down with it.
      if (session.options.terminateSessions && (login === "root" || login === session.address.user)) {
        throw refused(`will not end every process of ${login}: terminateSessions is on for this target`);
      }
      const [removal, passwd, groupEntry] = await session.run(
        privileged("gpasswd", "-d", login, group),
        plain("getent", "passwd", login),
        plain("getent", "group", group),
      );
      if (removal!.code !== 0) {
        if (!isNotMemberMessage(removal!.stderr)) throw refusedBy(removal!);
        // Not a listed member; but a primary group cannot be taken away by gpasswd.
        const [user] = parsePasswd(passwd!.stdout);
        const [entry] = parseGroups(groupEntry!.stdout);
        if (user && entry && user.gid === entry.gid) {
          throw refused(`${group} is the primary group of ${login}; Stint cannot remove it, change it with usermod -g`);
        }
      }
      if (session.options.terminateSessions) {
        const [kill] = await session.run(privileged("pkill", "-KILL", "-u", login));
        // 1: no process matched; "invalid user name": the login is gone, so are its sessions.
        if (kill!.code !== 0 && kill!.code !== 1 && !/invalid user name/.test(kill!.stderr)) throw refusedBy(kill!);
      }
    });
  },

  observe: async (target, entitlement, call) => {
    const group = checkGroup(entitlement);
    return withSession(target, call, async (session) => {
      const [found, passwd] = await session.run(plain("getent", "group", group), plain("getent", "passwd"));
      if (found!.code === 2) throw refused(`group "${group}" does not exist on ${session.address.host}`);
      const [entry] = parseGroups(expectOk(found!).stdout);
      if (!entry) throw refused(`getent printed no entry for group "${group}"`);
      const { members, primary } = groupHolders(entry, parsePasswd(expectOk(passwd!).stdout));
      return [...new Set([...members, ...primary])].sort();
    });
  },

  discover: (target, call) =>
    withSession(target, call, async (session) => {
      const { options } = session;
      // getent exits 2 when some key is not found; the others are still printed.
      const [sudoers, passwd, privilegedGroups] = await session.run(
        privileged("grep", "-rHZ", "^", "/etc/sudoers", "/etc/sudoers.d"),
        plain("getent", "passwd"),
        plain("getent", "group", ...options.privilegedGroups),
      );
      if (sudoers!.code === 2 && /Permission denied/.test(sudoers!.stderr)) {
        throw refused(`cannot read the sudoers files: ${firstLine(sudoers!.stderr)} (useSudo may be needed)`);
      }
      const parsed = parseSudoers([...splitSudoersFiles(sudoers!.stdout).values()].flat());
      const users = parsePasswd(expectOk(passwd!).stdout);
      const groups = parseGroups(privilegedGroups!.stdout);
      const missing = sudoersGroups(parsed)
        .filter((key) => !groups.some((group) => group.name === key || `#${group.gid}` === key))
        .map((key) => key.replace(/^#/, ""));
      if (missing.length > 0) {
        const [more] = await session.run(plain("getent", "group", ...missing));
        groups.push(...parseGroups(more!.stdout));
      }

      const found: Omit<StandingAccess, "lastActivity">[] = [];
      for (const group of groups.filter((entry) => options.privilegedGroups.includes(entry.name))) {
        const { members, primary } = groupHolders(group, users);
        for (const login of members) {
          found.push({ login, privilege: `member of ${group.name}`, entitlement: { group: group.name } });
        }
        for (const login of primary) found.push({ login, privilege: `primary group ${group.name}`, entitlement: null });
      }
      for (const { login, line } of sudoersHolders(parsed, { users, groups })) {
        found.push({ login, privilege: `sudoers: ${line}`, entitlement: null });
      }

      const unique = new Map(
        found
          .filter((entry) => !options.ignore.includes(entry.login))
          .map((entry) => [`${entry.login}\n${entry.privilege}`, entry]),
      );
      const logins = [...new Set([...unique.values()].map((entry) => entry.login))];
      // lastlog needs no privilege (/var/log/lastlog is world-readable); a host without it gives nulls.
      const lastSeen = new Map<string, string | null>();
      if (logins.length > 0) {
        for (const result of await session.run(...logins.map((login) => plain("lastlog", "-u", login)))) {
          for (const [login, when] of parseLastlog(result.stdout)) lastSeen.set(login, when);
        }
      }
      return [...unique.values()]
        .map((entry) => ({ ...entry, lastActivity: lastSeen.get(entry.login) ?? null }))
        .sort((a, b) => (a.login === b.login ? a.privilege.localeCompare(b.privilege) : a.login < b.login ? -1 : 1));
    }),
  // Rotation: the "password" is the login's SSH private key. setPassword puts its public key into the login's
  // authorized_keys as the one line marked stint-managed; verifyPassword signs in as the login with it.
  async setPassword(target, spec, call) {
    const login = checkLogin(spec.login);
    const line = publicKeyLine(spec.password);
    await withSession(
      target,
      call,
      async (session) => {
        const [passwd] = await session.run(plain("getent", "passwd", login));
        if (passwd!.code === 2) throw refused(`user "${login}" does not exist on ${session.address.host}`);
        const [user] = parsePasswd(expectOk(passwd!).stdout);
        if (!user?.home) throw refused(`getent printed no home directory for "${login}"`);
        // As the login, not as root: a symlink in its home cannot redirect the write.
        const [written] = await session.run(
          privileged("runuser", "-u", login, "--", "sh", "-c", AUTHORIZED_KEYS_SCRIPT, "stint", user.home, line),
        );
        expectOk(written!);
      },
      { secrets: [spec.password] },
    );
  },

  async verifyPassword(target, spec, call) {
    const login = checkLogin(spec.login);
    publicKeyLine(spec.password); // refuses what is not a private key before connecting
    try {
      await withSession(target, call, async () => undefined, {
        as: { user: login, privateKey: spec.password },
        secrets: [spec.password],
      });
      return true;
    } catch (error) {
      if (error instanceof AuthenticationFailed) return false;
      throw error;
    }
  },
};

function checkLogin(login: string): string {
  const problems = nameProblems("the login", login);
  if (problems.length > 0) throw refused(problems.join("; "));
  return login;
}

/** The authorized_keys line for a private key; refused (without the parser's words) when it is not one. */
function publicKeyLine(privateKey: string): string {
  const unreadable = "the new key is not a private key this connector can read (OpenSSH or PEM, no passphrase)";
  let parsed: ReturnType<typeof utils.parseKey>;
  try {
    parsed = utils.parseKey(privateKey);
  } catch {
    throw refused(unreadable);
  }
  if (parsed instanceof Error || !parsed.isPrivateKey()) throw refused(unreadable);
  const line = managedKeyLine(parsed.type, parsed.getPublicSSH());
  if (typeof line !== "string") throw refused(line.problem);
  return line;
}

function checkGroup(entitlement: Record<string, unknown>): string {
  const problems = sshHostConnector.checkEntitlement(entitlement);
  if (problems.length > 0) throw refused(problems.join("; "));
  return entitlement.group as string;
}

function checkGrant(login: string, entitlement: Record<string, unknown>): { login: string; group: string } {
  const problems = nameProblems("the login", login);
  if (problems.length > 0) throw refused(problems.join("; "));
  return { login, group: checkGroup(entitlement) };
}

function expectOk(result: CommandResult): CommandResult {
  if (result.code !== 0) throw refusedBy(result);
  return result;
}

/** The host's own words: the first lines of stderr (e.g. "gpasswd: group 'x' does not exist in /etc/group"). */
function refusedBy(result: CommandResult): ConnectorError {
  const said = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(0, 3).join(" / ").slice(0, 500);
  return refused(said || `command failed with exit code ${result.code ?? "none (killed)"}`);
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}

/**
 * Opens one SSH connection for the call, verifies the host key before authenticating, runs `work`,
 * and always closes the connection. Errors leave as ConnectorError with the credential scrubbed.
 */
async function withSession<T>(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  work: (session: Session) => Promise<T>,
  extra: {
    /** Sign in as this user with this key instead of the admin (the address's user and the credential). */
    as?: { user: string; privateKey: string };
    /** Secrets besides the credential to keep out of messages. */
    secrets?: string[];
  } = {},
): Promise<T> {
  const problems = optionProblems(target.options);
  if (problems.length > 0) throw refused(`target ${target.name}: ${problems.join("; ")}`);
  const options = parseOptions(target.options);
  const parsed = parseAddress(target.address);
  if ("problem" in parsed) throw refused(`target ${target.name}: ${parsed.problem}`);
  const address = extra.as ? { ...parsed, user: extra.as.user } : parsed;
  const privateKey = extra.as ? extra.as.privateKey : target.credential;
  if (!privateKey) throw refused(`target ${target.name} has no credential: set the admin user's private key`);
  const secrets = [target.credential ?? "", ...(extra.secrets ?? [])];
  const where = `${address.host}:${address.port}`;

  if (call?.signal?.aborted) throw unavailable(`call to ${where} aborted`);

  const client = new Client();
  // Our own socket, so that it can be closed for certain (ssh2's destroy() does nothing once end() ran).
  const socket = new Socket();
  let closed = false;
  let onAbort = () => {};
  // Rejects when the connection drops or the call is aborted; raced against every step.
  const ended = new Promise<never>((_, reject) => {
    // Deferred so that the "error" event, which says why, is handled first.
    client.once("close", () => {
      closed = true;
      setImmediate(() => reject(unavailable(`the SSH connection to ${where} closed`)));
    });
    onAbort = () => {
      reject(unavailable(`call to ${where} aborted`));
      socket.destroy();
    };
    call?.signal?.addEventListener("abort", onAbort, { once: true });
  });
  ended.catch(() => undefined);

  try {
    socket.connect({ host: address.host, port: address.port });
    await Promise.race([connect(client, socket, address, options.hostKey, privateKey, where), ended]);
    const sudo = options.useSudo && address.user !== "root";
    const session: Session = {
      address,
      options,
      run: async (...commands) => {
        const lines = commands.map((command) => buildCommand(command.argv, sudo && command.privileged !== false));
        if (lines.length === 1) return [await Promise.race([exec(client, lines[0]!, where), ended])];
        const marker = `stint-${randomBytes(12).toString("hex")}`;
        const script = buildCommand(["sh", "-c", buildBatch(lines, marker)], false);
        const batch = await Promise.race([exec(client, script, where), ended]);
        const results = splitBatch(batch.stdout, batch.stderr, marker, lines.length);
        if (results.length < lines.length) {
          throw unavailable(`a command batch on ${where} stopped early: ${firstLine(batch.stderr) || "no message"}`);
        }
        return results;
      },
    };
    return await Promise.race([work(session), ended]);
  } catch (error) {
    throw scrub(error, secrets);
  } finally {
    call?.signal?.removeEventListener("abort", onAbort);
    if (!closed && !socket.destroyed) {
      // A polite disconnect, a short wait for the server to hang up, then the socket goes regardless.
      const gone = new Promise<void>((resolve) => client.once("close", () => resolve()));
      client.end();
      await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())]);
    }
    socket.destroy();
  }
}

function connect(
  client: Client,
  socket: Socket,
  address: SshAddress,
  hostKey: string,
  privateKey: string,
  where: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let presented: string | undefined;
    let ready = false;
    client.once("ready", () => {
      ready = true;
      resolve();
    });
    // Kept for the whole call: an "error" without a listener would crash the process. After ready, "close" follows.
    client.on("error", (error: Error & ClientErrorExtensions & { code?: string }) => {
      if (ready) return;
      if (presented !== undefined && presented !== hostKey) {
        reject(
          refused(
            `the host key of ${where} is ${presented}, not ${hostKey} as options.hostKey says; refusing to talk to it`,
          ),
        );
      } else if (error.level === "client-authentication") {
        reject(
          new AuthenticationFailed(
            `${address.user}@${where} did not accept the key (public key authentication failed)`,
          ),
        );
      } else if (error.level === "client-timeout") {
        reject(unavailable(`no SSH answer from ${where} within ${CONNECT_TIMEOUT_MS / 1000} s`));
      } else if (error.code) {
        reject(unavailable(`cannot reach ${where}: ${error.code}`));
      } else {
        reject(unavailable(`SSH connection to ${where} failed: ${error.message}`));
      }
    });
    try {
      client.connect({
        sock: socket,
        username: address.user,
        privateKey,
        readyTimeout: CONNECT_TIMEOUT_MS,
        hostHash: "sha256",
        hostVerifier: (hex: string) => {
          presented = fingerprintFromHex(hex);
          return presented === hostKey;
        },
      });
    } catch {
      // ssh2 throws synchronously on a key it cannot parse; its message is not repeated, to be safe.
      reject(refused("the credential is not a private key this connector can read (OpenSSH or PEM, no passphrase)"));
    }
  });
}

function exec(client: Client, command: string, where: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(unavailable(`a command on ${where} did not finish within ${COMMAND_TIMEOUT_MS / 1000} s`));
      client.end();
    }, COMMAND_TIMEOUT_MS);
    timer.unref();
    client.exec(command, (error, channel) => {
      if (error) {
        clearTimeout(timer);
        reject(unavailable(`${where} would not run a command: ${error.message}`));
        return;
      }
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let code: number | null = null;
      channel.on("data", (chunk: Buffer) => stdout.push(chunk));
      channel.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
      channel.on("exit", (exitCode: number | null) => {
        code = typeof exitCode === "number" ? exitCode : null;
      });
      channel.on("close", () => {
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
      });
    });
  });
}

/** The server refused the key: a refusal, which verifyPassword reports as false. */
class AuthenticationFailed extends ConnectorError {
  constructor(message: string) {
    super("refused", message);
  }
}

/** Every error leaves as a ConnectorError, with the credentials (and each line of them) cut out. */
function scrub(error: unknown, credentials: string[]): ConnectorError {
  const secrets = credentials
    .flatMap((credential) => [credential, ...credential.split("\n").filter((line) => line.trim().length >= 12)])
    .map((s) => s.trim());
  const clean = (message: string) =>
    secrets.reduce((text, secret) => (secret ? text.split(secret).join("[redacted]") : text), message);
  if (error instanceof AuthenticationFailed) return new AuthenticationFailed(clean(error.message));
  if (error instanceof ConnectorError) return new ConnectorError(error.reason, clean(error.message));
  return unavailable(clean(`unexpected error: ${error instanceof Error ? error.message : String(error)}`));
}
