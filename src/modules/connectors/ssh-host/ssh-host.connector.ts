/**
 * Linux host over SSH: an entitlement is membership of a Unix group (`gpasswd -a/-d`).
 * Admin connections pooled per target, host key pinned by fingerprint (ssh-host.client.ts), every command built
 * from quoted argv (see ssh-host.rules.ts).
 */
import ssh2 from "ssh2";

// ssh2 is CommonJS: Node's ESM loader finds `Client` by name but not `utils`.
const { utils } = ssh2;
import { ConnectorError, refused, type Connector, type StandingAccess } from "../connector.types.js";
import {
  AUTHORIZED_KEYS_SCRIPT,
  groupHolders,
  isNotMemberMessage,
  managedKeyLine,
  nameProblems,
  optionProblems,
  parseGroups,
  parseLastlog,
  parsePasswd,
  parseSudoers,
  splitSudoersFiles,
  sudoersGroups,
  sudoersHolders,
  type CommandResult,
} from "./ssh-host.rules.js";
import { AuthenticationFailed, firstLine, withSession, type Command, type Session } from "./ssh-host.client.js";

export { sshHostPools } from "./ssh-host.client.js";

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
      if (session.options.terminateSessions) refuseToEndAll(session, login);
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
      if (session.options.terminateSessions) await endProcesses(session, login);
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
        const endSessions = spec.endSessions === true && session.options.terminateSessions;
        if (endSessions) refuseToEndAll(session, login);
        const [written] = await session.run(
          privileged("runuser", "-u", login, "--", "sh", "-c", AUTHORIZED_KEYS_SCRIPT, "stint", user.home, line),
        );
        expectOk(written!);
        // After the old key's line is gone: a session that starts meanwhile was signed in with the new key, or
        // is ended here. Whoever saw the old key keeps no shell, tunnel or process it started with it.
        if (endSessions) await endProcesses(session, login);
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

/** Killing every process of root or of the account Stint works through would take the host down with it. */
function refuseToEndAll(session: Session, login: string): void {
  if (login === "root" || login === session.address.user) {
    throw refused(`will not end every process of ${login}: terminateSessions is on for this target`);
  }
}

/** Ends every process of the login (its SSH sessions, what they started): `pkill -KILL -u`. */
async function endProcesses(session: Session, login: string): Promise<void> {
  const [kill] = await session.run(privileged("pkill", "-KILL", "-u", login));
  // 1: no process matched; "invalid user name": the login is gone, so are its sessions.
  if (kill!.code !== 0 && kill!.code !== 1 && !/invalid user name/.test(kill!.stderr)) throw refusedBy(kill!);
}

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
