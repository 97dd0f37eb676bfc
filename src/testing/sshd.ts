/**
 * Test support: a real OpenSSH sshd on 127.0.0.1 with its own host key, config and
 * authorized key in a temp dir (never /etc/ssh), plus local helpers for throwaway
 * users and groups. Needs root and Debian's openssh-server.
 */
import { spawn, execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { mkdirSync } from "node:fs";
import { connect } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { ConnectorTarget } from "../modules/connectors/connector.types.js";
import { freePort } from "./ports.js";
export { freePort };

const run = promisify(execFile);

export interface Sshd {
  host: string;
  port: number;
  /** The host key's fingerprint as `ssh-keygen -lf` prints it: "SHA256:<base64>". */
  hostKeyFingerprint: string;
  adminUser: "root";
  /** The listening sshd's process id (its connections are its children). */
  pid: number;
  /** The admin client key, OpenSSH PEM. */
  adminPrivateKey: string;
  stop(): Promise<void>;
}

/** extraConfig: more sshd_config lines (e.g. `TrustedUserCAKeys <file>`), appended after the defaults. */
export async function startSshd(options: { extraConfig?: string[] } = {}): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), "stint-sshd-"));
  try {
    const hostKey = join(dir, "host_ed25519");
    const clientKey = join(dir, "admin_ed25519");
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "stint-test-host", "-f", hostKey]);
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "stint-test-admin", "-f", clientKey]);
    const authorizedKeys = join(dir, "authorized_keys");
    // Readable by the test users too: sshd reads authorized keys as the user logging in.
    await chmod(dir, 0o755);
    await writeFile(authorizedKeys, await readFile(`${clientKey}.pub`), { mode: 0o644 });
    const { stdout: fingerprintLine } = await run("ssh-keygen", ["-lf", `${hostKey}.pub`]);
    const hostKeyFingerprint = fingerprintLine.split(/\s+/)[1] ?? "";
    if (!hostKeyFingerprint.startsWith("SHA256:")) throw new Error(`unexpected ssh-keygen output: ${fingerprintLine}`);

    const port = await freePort();
    const config = join(dir, "sshd_config");
    await writeFile(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        // The shared admin key, then each user's own file (for key rotation tests).
        `AuthorizedKeysFile ${authorizedKeys} .ssh/authorized_keys`,
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        // A command run over SSH makes bash read the user's ~/.bashrc (Debian's bash does when SSH_CLIENT is set
        // and it is a top-level shell): this machine's root has `pyenv init` there, whose rehash waits up to 60 s
        // on a lock file that a session killed mid-rehash leaves behind (seen in a CI run: every later command
        // hung). SHLVL=1 makes bash count itself a second-level shell, which does not read it; login shells (a
        // terminal) still read ~/.profile, hence removeStaleRehashLock() too.
        "SetEnv SHLVL=1",
        ...(options.extraConfig ?? []),
        "",
      ].join("\n"),
    );
    // sshd's privilege separation directory; Debian's package creates it only when its service starts.
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    await removeStaleRehashLock();

    const child = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr.on("data", (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4000);
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let running = true;
    void exited.then(() => (running = false));

    try {
      await waitForPort(port, () => running, 10_000);
    } catch (error) {
      child.kill("SIGKILL");
      throw new Error(`sshd did not start: ${(error as Error).message}\n${log}`);
    }

    return {
      host: "127.0.0.1",
      port,
      hostKeyFingerprint,
      adminUser: "root",
      pid: child.pid ?? 0,
      adminPrivateKey: await readFile(clientKey, "utf8"),
      stop: async () => {
        if (running) {
          child.kill("SIGTERM");
          await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
          if (running) child.kill("SIGKILL");
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The ssh-host target for the test sshd: its admin user with the admin key, the host key pinned. */
export function sshHostTarget(sshd: Sshd, name: string): ConnectorTarget {
  return {
    name,
    address: `ssh://${sshd.adminUser}@${sshd.host}:${sshd.port}`,
    options: { hostKey: sshd.hostKeyFingerprint },
    credential: sshd.adminPrivateKey,
  };
}

/** Resolves once 127.0.0.1:`port` accepts a connection; throws when `alive()` turns false (`what` exited) or after `timeoutMs`. */
export async function waitForPort(port: number, alive: () => boolean, timeoutMs: number, what = "sshd"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive()) throw new Error(`${what} exited`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

function checkName(name: string): string {
  if (!NAME.test(name)) throw new Error(`bad test user/group name: ${name}`);
  return name;
}

/**
 * A local user without a home directory (and, as useradd does on Debian, a group of the same name).
 * With sshLogin the account is unlocked ("*" password: no password works, keys do), so the test
 * sshd lets it in with the admin key. With home, useradd creates /home/<name> (remove it with deleteUser's
 * removeHome).
 */
export async function createUser(name: string, options: { sshLogin?: boolean; home?: boolean } = {}): Promise<void> {
  const home = options.home ? ["-m"] : ["-M"];
  await run("useradd", [...home, "-s", "/bin/sh", ...(options.sshLogin ? ["-p", "*"] : []), checkName(name)]);
}

/** Removes the user (and its own group, and with removeHome its home directory); a user that is not there is fine. */
export async function deleteUser(name: string, options: { removeHome?: boolean } = {}): Promise<void> {
  await run("userdel", [...(options.removeHome ? ["-r"] : []), checkName(name)]).catch((error: { stderr?: string }) => {
    if (!/does not exist/.test(error.stderr ?? "")) throw error;
  });
}

export async function createGroup(name: string): Promise<void> {
  await run("groupadd", [checkName(name)]);
}

/** Removes the group; a group that is not there is fine. */
export async function deleteGroup(name: string): Promise<void> {
  await run("groupdel", [checkName(name)]).catch((error: { stderr?: string }) => {
    if (!/does not exist/.test(error.stderr ?? "")) throw error;
  });
}

/** The user's groups as the host sees them (`id -nG user`). */
export async function idGroups(user: string): Promise<string[]> {
  const { stdout } = await run("id", ["-nG", checkName(user)]);
  return stdout.trim().split(/\s+/).filter(Boolean);
}

/**
 * pyenv's rehash lock (`$PYENV_ROOT/shims/.pyenv-shim`) when a rehash that was killed left it: a rehash holds it
 * for milliseconds, so one older than a minute is stale, and every shell that reads a `pyenv init` waits 60 s on it.
 * Removed before each test sshd starts (root's login shells on this machine run `pyenv init`).
 */
async function removeStaleRehashLock(): Promise<void> {
  const lock = join(process.env.PYENV_ROOT ?? join(homedir(), ".pyenv"), "shims", ".pyenv-shim");
  try {
    if (Date.now() - (await stat(lock)).mtimeMs > 60_000) await rm(lock, { force: true });
  } catch {
    // No lock (or no pyenv): nothing to do.
  }
}
