/**
 * Pure rules of the ssh-host connector: option and name checks, shell quoting,
 * command building, and parsers for what the host prints (getent, sudoers,
 * lastlog). No IO here; the connector runs the commands.
 */
import { sessionOptionProblems } from "../session-options.rules.js";

/** A user or group name: the POSIX portable set, starting with a letter or "_", at most 32 characters. */
export const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
/** A SHA-256 host key fingerprint as `ssh-keygen -lf` prints it. */
export const HOST_KEY_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;
export const DEFAULT_PRIVILEGED_GROUPS = ["sudo", "wheel", "admin"];

export interface SshHostOptions {
  hostKey: string;
  privilegedGroups: string[];
  useSudo: boolean;
  ignore: string[];
  terminateSessions: boolean;
}

const OPTION_KEYS = ["hostKey", "privilegedGroups", "useSudo", "ignore", "terminateSessions", "session"];

export function nameProblems(what: string, value: unknown): string[] {
  if (typeof value !== "string") return [`${what} must be a string`];
  if (!NAME_PATTERN.test(value)) {
    return [
      `${what} must be a user or group name (letters, digits, "_", "." or "-", starting with a letter or "_", at most 32 characters)`,
    ];
  }
  return [];
}

function nameListProblems(field: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return [`options.${field} must be a list of names`];
  return value.flatMap((item, index) => nameProblems(`options.${field}[${index}]`, item));
}

export function optionProblems(options: Record<string, unknown>): string[] {
  const problems = Object.keys(options)
    .filter((key) => !OPTION_KEYS.includes(key))
    .map((key) => `options.${key} is not an ssh-host option (known: ${OPTION_KEYS.join(", ")})`);
  if (options.hostKey === undefined) {
    problems.push('options.hostKey is required: the host key fingerprint "SHA256:..." that `ssh-keygen -lf` prints');
  } else if (typeof options.hostKey !== "string" || !HOST_KEY_PATTERN.test(normalizeFingerprint(options.hostKey))) {
    problems.push('options.hostKey must be a SHA-256 fingerprint like "SHA256:" followed by 43 base64 characters');
  }
  problems.push(...sessionOptionProblems(options.session));
  problems.push(...nameListProblems("privilegedGroups", options.privilegedGroups));
  problems.push(...nameListProblems("ignore", options.ignore));
  for (const key of ["useSudo", "terminateSessions"]) {
    if (options[key] !== undefined && typeof options[key] !== "boolean")
      problems.push(`options.${key} must be true or false`);
  }
  return problems;
}

/** Options with defaults applied; call optionProblems first. */
export function parseOptions(options: Record<string, unknown>): SshHostOptions {
  return {
    hostKey: normalizeFingerprint(String(options.hostKey)),
    privilegedGroups: (options.privilegedGroups as string[] | undefined) ?? DEFAULT_PRIVILEGED_GROUPS,
    useSudo: options.useSudo === true,
    ignore: (options.ignore as string[] | undefined) ?? [],
    terminateSessions: options.terminateSessions === true,
  };
}

function normalizeFingerprint(value: string): string {
  return value.trim().replace(/=+$/, "");
}

/** The fingerprint of a host key from its SHA-256 hex digest (what ssh2's hostVerifier gets with hostHash "sha256"). */
export function fingerprintFromHex(hex: string): string {
  return `SHA256:${Buffer.from(hex, "hex").toString("base64").replace(/=+$/, "")}`;
}

export interface SshAddress {
  user: string;
  host: string;
  port: number;
}

/** `ssh://user@host[:port]`; the problem text never repeats the address (it is not secret, but keep messages plain). */
export function parseAddress(address: string): SshAddress | { problem: string } {
  const problem = { problem: "the address must look like ssh://user@host[:port]" };
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return problem;
  }
  if (url.protocol !== "ssh:" || !url.hostname || (url.pathname !== "" && url.pathname !== "/")) return problem;
  if (url.password) return { problem: "the address must not hold a password; put the private key in the credential" };
  const user = decodeURIComponent(url.username);
  if (!NAME_PATTERN.test(user)) return { problem: "the address must name the admin user: ssh://user@host[:port]" };
  const port = url.port ? Number(url.port) : 22;
  return { user, host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port };
}

/** Single-quotes a word for a POSIX shell: 'it'\''s'. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * One command line for the remote shell. LC_ALL=C so messages are parseable; `sudo -n` never
 * prompts (it fails instead). The environment assignment sits before sudo, which keeps LC_*.
 */
export function buildCommand(argv: string[], sudo: boolean): string {
  return ["LC_ALL=C", ...(sudo ? ["sudo", "-n"] : []), ...argv.map(shellQuote)].join(" ");
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Lines of `getent group`: name:password:gid:member,member */
export function parseGroups(text: string): GroupEntry[] {
  const groups: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(":");
    if (fields.length < 4 || !fields[0]) continue;
    const gid = Number(fields[2]);
    if (!Number.isInteger(gid)) continue;
    const members = (fields[3] ?? "").split(",").filter((member) => member !== "");
    groups.push({ name: fields[0], gid, members });
  }
  return groups;
}

export interface PasswdEntry {
  login: string;
  uid: number;
  gid: number;
  /** The home directory; "" when the entry has none. */
  home: string;
}

/** Lines of `getent passwd`: name:password:uid:gid:gecos:home:shell */
export function parsePasswd(text: string): PasswdEntry[] {
  const users: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(":");
    if (fields.length < 7 || !fields[0]) continue;
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    // gecos may not hold ":", so the home is always the sixth field.
    users.push({ login: fields[0], uid, gid, home: fields[5] ?? "" });
  }
  return users;
}

/** Who is in a group: listed members, and users whose primary group it is. */
export function groupHolders(group: GroupEntry, users: PasswdEntry[]): { members: string[]; primary: string[] } {
  return {
    members: [...new Set(group.members)],
    primary: users.filter((user) => user.gid === group.gid).map((user) => user.login),
  };
}

/** gpasswd's answer when removing someone who is not in the group (exit 3, like every other gpasswd error). */
export function isNotMemberMessage(stderr: string): boolean {
  return /is not a member of/.test(stderr);
}

/**
 * `grep -rHZ ^ /etc/sudoers /etc/sudoers.d` prints "path\0line" for each line. Groups lines by file,
 * leaving out the files sudo itself skips in an include directory (names with "." or ending in "~").
 */
export function splitSudoersFiles(output: string): Map<string, string[]> {
  const files = new Map<string, string[]>();
  for (const line of output.split("\n")) {
    const nul = line.indexOf("\0");
    if (nul < 0) continue;
    const path = line.slice(0, nul);
    const base = path.slice(path.lastIndexOf("/") + 1);
    if (path !== "/etc/sudoers" && (base.includes(".") || base.endsWith("~"))) continue;
    const lines = files.get(path) ?? [];
    lines.push(line.slice(nul + 1));
    files.set(path, lines);
  }
  return files;
}

export interface SudoersRule {
  /** The user list as written: names, %group, %#gid, #uid, aliases, ALL. */
  users: string[];
  /** The whole rule, whitespace collapsed, for people. */
  line: string;
}

export interface SudoersFile {
  rules: SudoersRule[];
  userAliases: Map<string, string[]>;
}

/** User specifications and User_Alias definitions; comments, Defaults, includes and other aliases are skipped. */
export function parseSudoers(lines: string[]): SudoersFile {
  const rules: SudoersRule[] = [];
  const userAliases = new Map<string, string[]>();
  for (const logical of joinContinuations(lines)) {
    const line = stripComment(logical).replace(/\s+/g, " ").trim();
    if (line === "") continue;
    if (/^(@include|@includedir)\b/.test(line) || /^Defaults\b/.test(line)) continue;
    if (/^(Runas_Alias|Host_Alias|Cmnd_Alias|Cmd_Alias)\b/.test(line)) continue;
    const alias = /^User_Alias (.*)$/.exec(line);
    if (alias) {
      // User_Alias A = x, y : B = z
      for (const definition of (alias[1] ?? "").split(":")) {
        const match = /^\s*([A-Z][A-Z0-9_]*)\s*=\s*(.*)$/.exec(definition);
        if (match?.[1]) userAliases.set(match[1], splitList(match[2] ?? ""));
      }
      continue;
    }
    const spec = /^((?:[^\s,=]+ ?, ?)*[^\s,=]+) (.*=.*)$/.exec(line);
    if (!spec) continue;
    rules.push({ users: splitList(spec[1] ?? ""), line });
  }
  return { rules, userAliases };
}

function joinContinuations(lines: string[]): string[] {
  const joined: string[] = [];
  let pending = "";
  for (const line of lines) {
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    joined.push(pending + line);
    pending = "";
  }
  if (pending) joined.push(pending);
  return joined;
}

/**
 * "#" starts a comment, except "#include"/"#includedir" (directives, skipped too) and "#<digits>",
 * which is a uid where a user name may stand.
 */
function stripComment(line: string): string {
  let result = "";
  for (let index = 0; index < line.length; index++) {
    const char = line[index];
    if (char === "#" && !/^#\d/.test(line.slice(index))) {
      return /^\s*$/.test(result) && /^#include/.test(line.slice(index)) ? "" : result;
    }
    result += char;
  }
  return result;
}

function splitList(list: string): string[] {
  return list
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** Group keys (names or "#gid") a rule set refers to with %group, so the caller can fetch them. */
export function sudoersGroups(file: SudoersFile): string[] {
  const groups = new Set<string>();
  for (const item of [...file.rules.flatMap((rule) => rule.users), ...[...file.userAliases.values()].flat()]) {
    const match = /^%(#\d+|[^:#].*)$/.exec(item);
    if (match?.[1] && (NAME_PATTERN.test(match[1]) || /^#\d+$/.test(match[1]))) groups.add(match[1]);
  }
  return [...groups].sort();
}

export interface SudoersLookup {
  users: PasswdEntry[];
  groups: GroupEntry[];
}

/**
 * The logins each rule reaches: names, #uid, %group and %#gid (listed and primary members),
 * User_Alias expanded, ALL as every user. Negations, netgroups and non-Unix groups are left out.
 */
export function sudoersHolders(file: SudoersFile, lookup: SudoersLookup): { login: string; line: string }[] {
  const holders: { login: string; line: string }[] = [];
  const expand = (item: string, depth: number): string[] => {
    if (item === "ALL") return lookup.users.map((user) => user.login);
    if (item.startsWith("!") || item.startsWith("+") || item.startsWith("%:")) return [];
    const uid = /^#(\d+)$/.exec(item);
    if (uid) return lookup.users.filter((user) => user.uid === Number(uid[1])).map((user) => user.login);
    const group = /^%(?:#(\d+)|(.+))$/.exec(item);
    if (group) {
      const entry = lookup.groups.find((candidate) =>
        group[1] !== undefined ? candidate.gid === Number(group[1]) : candidate.name === group[2],
      );
      if (!entry) return [];
      const { members, primary } = groupHolders(entry, lookup.users);
      return [...members, ...primary];
    }
    const alias = file.userAliases.get(item);
    if (alias) return depth > 8 ? [] : alias.flatMap((inner) => expand(inner, depth + 1));
    return NAME_PATTERN.test(item) ? [item] : [];
  };
  for (const rule of file.rules) {
    for (const login of new Set(rule.users.flatMap((item) => expand(item, 0)))) {
      if (NAME_PATTERN.test(login)) holders.push({ login, line: rule.line });
    }
  }
  return holders;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * `LC_ALL=C lastlog -u <login>` output (one or many): login → last login as ISO 8601, or null
 * for "**Never logged in**" and anything unreadable.
 */
export function parseLastlog(text: string): Map<string, string | null> {
  const seen = new Map<string, string | null>();
  for (const line of text.split("\n")) {
    const login = line.split(/\s+/)[0];
    if (!login || login === "Username") continue;
    const match = /\w{3} (\w{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})\s*$/.exec(line);
    const month = match ? MONTHS.indexOf(match[1] ?? "") : -1;
    if (!match || month < 0) {
      seen.set(login, null);
      continue;
    }
    const [, , day, hour, minute, second, sign, offsetHours, offsetMinutes, year] = match;
    const offset = (sign === "-" ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes));
    const utc = Date.UTC(Number(year), month, Number(day), Number(hour), Number(minute), Number(second));
    seen.set(login, new Date(utc - offset * 60_000).toISOString());
  }
  return seen;
}

export interface CommandResult {
  /** Exit status; null when the command was killed or the status is missing. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Several command lines as one `sh` script, so a call costs one round trip (and one login-shell
 * start) instead of one per command. After each command both streams get a marker line; stdout's
 * marker carries the exit status. `marker` must be random per call so no output can forge it.
 */
export function buildBatch(commands: string[], marker: string): string {
  return commands
    .map((command) => `${command}\nprintf '\\n%s:%s\\n' '${marker}' "$?"\nprintf '\\n%s\\n' '${marker}' >&2`)
    .join("\n");
}

/** Splits a batch's output back into one result per command (fewer when the script died early). */
export function splitBatch(stdout: string, stderr: string, marker: string, count: number): CommandResult[] {
  const outParts = stdout.split(new RegExp(`\\n${marker}:(\\d+)\\n`));
  const errParts = stderr.split(`\n${marker}\n`);
  const results: CommandResult[] = [];
  for (let index = 0; index < count && 2 * index + 1 < outParts.length; index++) {
    results.push({
      code: Number(outParts[2 * index + 1]),
      stdout: outParts[2 * index] ?? "",
      stderr: errParts[index] ?? "",
    });
  }
  return results;
}

// ---------------------------------------------------------------- key rotation

/** The comment that marks the one authorized_keys line Stint owns for a login. */
export const STINT_MANAGED = "stint-managed";

const KEY_TYPE = /^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-[a-z0-9@.-]+)$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** `<type> <base64> stint-managed`, or a problem when the parts do not look like an OpenSSH public key. */
export function managedKeyLine(type: string, blob: Buffer): string | { problem: string } {
  const base64 = blob.toString("base64");
  if (!KEY_TYPE.test(type) || !BASE64.test(base64)) return { problem: `unsupported public key type "${type}"` };
  return `${type} ${base64} ${STINT_MANAGED}`;
}

/**
 * Puts one managed line into `$HOME/.ssh/authorized_keys`; run as the login (`runuser -u`), so it
 * cannot be tricked through a symlink into writing elsewhere, and what it creates is the login's.
 * Arguments: $1 the home directory (from getent), $2 the line. Every line not ending in the marker
 * is kept as it is; the file is replaced in one rename. Exit 3: no home directory.
 */
export const AUTHORIZED_KEYS_SCRIPT = [
  "set -eu",
  "umask 077",
  'home=$1 line=$2 dir="$1/.ssh"',
  'if [ ! -d "$home" ]; then echo "home directory $home does not exist" >&2; exit 3; fi',
  '[ -d "$dir" ] || mkdir -m 700 "$dir"',
  'file="$dir/authorized_keys" tmp="$dir/.authorized_keys.stint.$$"',
  "trap 'rm -f \"$tmp\"' EXIT",
  ': > "$tmp"',
  // grep exits 1 when it keeps no line, which is fine; 2 is an error.
  `if [ -f "$file" ]; then rc=0; grep -v -e ' ${STINT_MANAGED}$' -- "$file" >> "$tmp" || rc=$?; [ "$rc" -le 1 ]; fi`,
  `printf '%s\\n' "$line" >> "$tmp"`,
  'chmod 600 "$tmp"',
  'mv -f "$tmp" "$file"',
].join("\n");
