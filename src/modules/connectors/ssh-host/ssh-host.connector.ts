/**
 * Linux host over SSH: an entitlement is membership of a Unix group (`gpasswd -a/-d`).
 * One SSH connection per call, host key pinned by fingerprint, every command built
 * from quoted argv (see ssh-host.rules.ts).
 */
import { Client, type ClientErrorExtensions } from "ssh2";
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
  buildCommand,
  fingerprintFromHex,
  groupHolders,
  isNotMemberMessage,
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
  sudoersHolders,
  type SshAddress,
  type SshHostOptions,
} from "./ssh-host.rules.js";

const CONNECT_TIMEOUT_MS = 5_000;
const COMMAND_TIMEOUT_MS = 30_000;

interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Session {
  address: SshAddress;
  options: SshHostOptions;
  /** Runs argv on the host, through `sudo -n` when useSudo is on and the admin user is not root. */
  run(argv: string[], privileged?: boolean): Promise<CommandResult>;
}

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
      const uid = firstLine((await expectOk(session.run(["id", "-u"], false))).stdout);
      const sudo = options.useSudo && address.user !== "root";
      if (sudo) await expectOk(session.run(["true"]));
      const system = firstLine((await expectOk(session.run(["uname", "-sr"], false))).stdout);
      const how = sudo ? ", commands through sudo -n" : uid === "0" ? "" : ", not root and useSudo is off";
      return { detail: `${system} at ${address.host}:${address.port}, as ${address.user} (uid ${uid}${how})` };
    }),

  provision: (target, grant, call) =>
    withSession(target, call, async (session) => {
      const { login, group } = checkGrant(grant.login, grant.entitlement);
      await expectOk(session.run(["gpasswd", "-a", login, group]));
    }),

  revoke: (target, grant, call) =>
    withSession(target, call, async (session) => {
      const { login, group } = checkGrant(grant.login, grant.entitlement);
      // Killing every process of root or of the account Stint works through would take the host down with it.
      if (session.options.terminateSessions && (login === "root" || login === session.address.user)) {
        throw refused(`will not end every process of ${login}: terminateSessions is on for this target`);
      }
      const removal = await session.run(["gpasswd", "-d", login, group]);
      if (removal.code !== 0) {
        if (!isNotMemberMessage(removal.stderr)) throw refusedBy(removal);
        // Not a listed member; but a primary group cannot be taken away by gpasswd.
        const [user] = parsePasswd((await session.run(["getent", "passwd", login], false)).stdout);
        const [entry] = parseGroups((await session.run(["getent", "group", group], false)).stdout);
        if (user && entry && user.gid === entry.gid) {
          throw refused(`${group} is the primary group of ${login}; Stint cannot remove it, change it with usermod -g`);
        }
      }
      if (session.options.terminateSessions) {
        const kill = await session.run(["pkill", "-KILL", "-u", login]);
        // 1: no process matched; "invalid user name": the login is gone, so are its sessions.
        if (kill.code !== 0 && kill.code !== 1 && !/invalid user name/.test(kill.stderr)) throw refusedBy(kill);
      }
    }),

  observe: (target, entitlement, call) =>
    withSession(target, call, async (session) => {
      const group = checkGroup(entitlement);
      const found = await session.run(["getent", "group", group], false);
      if (found.code === 2) throw refused(`group "${group}" does not exist on ${session.address.host}`);
      const [entry] = parseGroups((await expectOk(Promise.resolve(found))).stdout);
      if (!entry) throw refused(`getent printed no entry for group "${group}"`);
      const users = parsePasswd((await expectOk(session.run(["getent", "passwd"], false))).stdout);
      const { members, primary } = groupHolders(entry, users);
      return [...new Set([...members, ...primary])].sort();
    }),

  discover: (target, call) =>
    withSession(target, call, async (session) => {
      const { options } = session;
      const sudoers = await session.run(["grep", "-rHZ", "", "/etc/sudoers", "/etc/sudoers.d"]);
      if (sudoers.code === 2 && /Permission denied/.test(sudoers.stderr)) {
        throw refused(`cannot read the sudoers files: ${firstLine(sudoers.stderr)} (useSudo may be needed)`);
      }
      const parsed = parseSudoers([...splitSudoersFiles(sudoers.stdout).values()].flat());

      const keys = [...new Set([...options.privilegedGroups, ...sudoersGroups(parsed)])].map((key) =>
        key.replace(/^#/, ""),
      );
      // getent exits 2 when some key is not found; the others are still printed.
      const groups = parseGroups((await session.run(["getent", "group", ...keys], false)).stdout);
      const users = parsePasswd((await expectOk(session.run(["getent", "passwd"], false))).stdout);

      const found: Omit<StandingAccess, "lastActivity">[] = [];
      for (const group of groups.filter((entry) => options.privilegedGroups.includes(entry.name))) {
        const { members, primary } = groupHolders(group, users);
        for (const login of members)
          found.push({ login, privilege: `member of ${group.name}`, entitlement: { group: group.name } });
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
      const lastSeen = logins.length > 0 ? await lastLogins(session, logins) : new Map<string, string | null>();
      return [...unique.values()]
        .map((entry) => ({ ...entry, lastActivity: lastSeen.get(entry.login) ?? null }))
        .sort((a, b) => (a.login === b.login ? a.privilege.localeCompare(b.privilege) : a.login < b.login ? -1 : 1));
    }),
};

/** `lastlog -u` for each login in one round trip; a host without lastlog gives nulls. */
async function lastLogins(session: Session, logins: string[]): Promise<Map<string, string | null>> {
  const result = await session.run(
    ["sh", "-c", logins.map((login) => buildCommand(["lastlog", "-u", login], false)).join("; ")],
    false,
  );
  return parseLastlog(result.stdout);
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

async function expectOk(pending: Promise<CommandResult>): Promise<CommandResult> {
  const result = await pending;
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
): Promise<T> {
  const problems = optionProblems(target.options);
  if (problems.length > 0) throw refused(`target ${target.name}: ${problems.join("; ")}`);
  const options = parseOptions(target.options);
  const address = parseAddress(target.address);
  if ("problem" in address) throw refused(`target ${target.name}: ${address.problem}`);
  if (!target.credential) throw refused(`target ${target.name} has no credential: set the admin user's private key`);
  const where = `${address.host}:${address.port}`;

  const client = new Client();
  let closed = false;
  const ended = new Promise<never>((_, reject) => {
    const fail = (error: ConnectorError) => {
      closed = true;
      reject(error);
    };
    // Deferred so that the "error" event, which says why, is handled first.
    client.once("close", () => setImmediate(() => fail(unavailable(`the SSH connection to ${where} closed`))));
    const signal = call?.signal;
    if (signal?.aborted) fail(unavailable(`call to ${where} aborted`));
    signal?.addEventListener(
      "abort",
      () => {
        fail(unavailable(`call to ${where} aborted`));
        client.destroy();
      },
      { once: true },
    );
  });
  ended.catch(() => undefined);

  try {
    await Promise.race([connect(client, address, options.hostKey, target.credential, where), ended]);
    const session: Session = {
      address,
      options,
      run: (argv, privileged = true) =>
        Promise.race([
          exec(client, buildCommand(argv, privileged && options.useSudo && address.user !== "root"), where),
          ended,
        ]),
    };
    return await Promise.race([work(session), ended]);
  } catch (error) {
    throw scrub(error, target.credential);
  } finally {
    if (!closed) client.end();
    client.destroy();
  }
}

function connect(
  client: Client,
  address: SshAddress,
  hostKey: string,
  privateKey: string,
  where: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let presented: string | undefined;
    client.once("ready", () => resolve());
    client.once("error", (error: Error & ClientErrorExtensions & { code?: string }) => {
      if (presented !== undefined && presented !== hostKey) {
        reject(
          refused(
            `the host key of ${where} is ${presented}, not ${hostKey} as options.hostKey says; refusing to talk to it`,
          ),
        );
      } else if (error.level === "client-authentication") {
        reject(refused(`${address.user}@${where} did not accept the credential (public key authentication failed)`));
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
        host: address.host,
        port: address.port,
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
      client.destroy();
    }, COMMAND_TIMEOUT_MS);
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

/** Every error leaves as a ConnectorError, with the credential (and each line of it) cut out. */
function scrub(error: unknown, credential: string): ConnectorError {
  const secrets = [credential, ...credential.split("\n").filter((line) => line.trim().length >= 12)].map((s) =>
    s.trim(),
  );
  const clean = (message: string) =>
    secrets.reduce((text, secret) => (secret ? text.split(secret).join("[redacted]") : text), message);
  if (error instanceof ConnectorError) return new ConnectorError(error.reason, clean(error.message));
  return unavailable(clean(`unexpected error: ${error instanceof Error ? error.message : String(error)}`));
}
