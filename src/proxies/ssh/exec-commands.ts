/**
 * Exec command lines the proxy reads as file transfers (legacy scp, rsync) and scp's byte counter: pure,
 * no sockets. Anything these do not take is an exec like any other, recorded whole.
 */

// --- scp (the legacy rcp protocol: `scp -O`, or OpenSSH before 9.0) ------------------------------

/**
 * `scp -t PATH` (the client uploads to PATH) or `scp -f PATH` (the client downloads PATH), exactly as
 * an scp client sends it, or undefined. Read strictly, because an scp exec's bytes are counted, not
 * recorded: anything a shell could read as more than one plain scp command (an operator or expansion
 * in any word, a program word that merely ends in `/scp`) is an exec like any other, recorded whole.
 * The program is `scp` or an absolute path to it; the options are `-` and letters or digits, one of
 * them `t` or `f`; the path is one bare word, or one single-quoted string kept as written.
 */
export function parseScpCommand(command: string): { direction: "upload" | "download"; path: string } | undefined {
  const match = SCP_COMMAND.exec(command);
  if (!match) return undefined;
  const options = match[1]!.split(/[ \t]+/).filter((word) => word.length > 0);
  let direction: "upload" | "download" | undefined;
  for (const option of options) {
    if (option.includes("t")) direction = "upload";
    if (option.includes("f")) direction = "download";
  }
  if (!direction) return undefined;
  const path = match[2] ?? match[3]!;
  if (path.length === 0 || (match[3] !== undefined && SHELL_SYNTAX.test(path))) return undefined;
  return { direction, path };
}

/**
 * scp, its options (with an optional `--`), then one path: bare (group 3) or in single quotes with
 * no quote inside (group 2). Blanks are spaces and tabs only; a line break is a second command.
 */
const SCP_COMMAND =
  /^[ \t]*(?:\/[A-Za-z0-9_./-]*\/)?scp((?:[ \t]+-[A-Za-z0-9]+)+)(?:[ \t]+--)?[ \t]+(?:'([^'\n\r]*)'|([^\s']+))[ \t]*$/;

/** Characters that make a command line more than one plain command for the remote shell. */
const SHELL_SYNTAX = /[;&|`$<>(){}\\\n\r*?[\]!#~"']/;

// --- rsync (`rsync -e ssh`, which runs `rsync --server …` on the target) ---------------------------

/**
 * The command an rsync client runs on the target through ssh: `rsync --server [--sender] <options> .
 * <path>…` (`--sender`: the target sends, a download). Only what a real client sends is taken, and
 * nothing that could make the target's rsync run a program: no shell syntax in any word (so escaped
 * or quoted paths are not taken either), `e` only as the `e.<capabilities>` tail of a short-option
 * group, no `M`, and none of the long options (nor a prefix of one) that start a daemon, read its
 * configuration, run a remote shell or read a file list from elsewhere. Anything else is an exec like
 * any other, recorded whole.
 */
export function parseRsyncCommand(
  command: string,
): { direction: "upload" | "download"; paths: string[]; options: string[] } | undefined {
  // The whole line: a newline between two words is a second command for the remote shell.
  if (SHELL_SYNTAX.test(command)) return undefined;
  const words = command.trim().split(/\s+/);
  if (words[0] === undefined || !/(^|\/)rsync$/.test(words[0]) || words[1] !== "--server") return undefined;
  let direction: "upload" | "download" = "upload";
  const options: string[] = [];
  let index = 2;
  for (; index < words.length && words[index] !== "."; index++) {
    const word = words[index]!;
    if (word === "--sender") {
      direction = "download";
      continue;
    }
    if (word.startsWith("--")) {
      const name = word.slice(2).split("=", 1)[0]!;
      if (name.length === 0 || RSYNC_REFUSED.some((refused) => refused.startsWith(name))) return undefined;
      options.push(word);
      // `--link-dest DIR`, `--temp-dir DIR`: the value is the next word.
      if (!word.includes("=") && RSYNC_VALUE_WORD.has(name)) {
        const value = words[++index];
        if (value === undefined || value.startsWith("-") || value === ".") return undefined;
        options.push(value);
      }
      continue;
    }
    // Letters but `e` (a remote shell) and `M` (a remote option), then at most the `e.<capabilities>` tail.
    if (!/^-[A-LN-Za-df-z]*(e\.[A-Za-z]*)?$/.test(word) || word === "-") return undefined;
    options.push(word);
  }
  const paths = words.slice(index + 1);
  if (words[index] !== "." || paths.length === 0) return undefined;
  return { direction, paths, options };
}

/**
 * rsync long options a proxied rsync must not carry, refused by any prefix too (popt may take one):
 * daemon mode and its parameters and configuration (`pre-xfer exec` runs programs), remote shells, and
 * file lists or early input read from elsewhere.
 */
const RSYNC_REFUSED = [
  "daemon",
  "dparam",
  "config",
  "rsh",
  "rsync-path",
  "remote-option",
  "early-input",
  "files-from",
  "copy-as",
  "address",
  "port",
  "sockopts",
  "connect-program",
];
/** rsync long options a client sends with their value as the next word. */
const RSYNC_VALUE_WORD = new Set(["link-dest", "compare-dest", "copy-dest", "temp-dir", "partial-dir", "backup-dir"]);

/**
 * Counts the file bytes of the sending side of an scp stream: control lines ("C0644 12 name\n",
 * "D…", "E", "T…"), then for C the file's bytes and one status byte.
 */
export function createScpCounter(): { feed(data: Buffer): void; bytes(): number } {
  let line = 0;
  let header = "";
  let remaining = 0;
  let skipStatus = false;
  let total = 0;
  return {
    feed(data) {
      let offset = 0;
      while (offset < data.length) {
        if (remaining > 0) {
          const take = Math.min(remaining, data.length - offset);
          remaining -= take;
          total += take;
          offset += take;
          if (remaining === 0) skipStatus = true;
          continue;
        }
        if (skipStatus) {
          skipStatus = false;
          offset++;
          continue;
        }
        const byte = data[offset++]!;
        if (byte !== 0x0a) {
          if (line++ < 4096) header += String.fromCharCode(byte);
          continue;
        }
        const file = /^C[0-7]{4} (\d+) /.exec(header);
        line = 0;
        header = "";
        if (file) {
          remaining = Number(file[1]);
          if (remaining === 0) skipStatus = true;
        }
      }
    },
    bytes: () => total,
  };
}
