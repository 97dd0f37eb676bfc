/**
 * Key rotation (setPassword / verifyPassword) against a real OpenSSH sshd (src/testing/sshd.ts): the
 * "password" is a login's private key, its public key goes into ~login/.ssh/authorized_keys. Sign-ins
 * are checked independently with the OpenSSH client. Throwaway users stint_r_<hex>_*, removed in afterAll.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chownSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "../../../lib/ssh-keys.js";
import { eventually } from "../../../testing/ssh-connections.js";
import { connectorFailure } from "../../../testing/connector-failure.js";
import { createUser, deleteUser, freePort, sshHostTarget, startSshd, type Sshd } from "../../../testing/sshd.js";
import type { ConnectorTarget } from "../connector.types.js";
import { sshHostConnector as connector, sshHostPools } from "./ssh-host.connector.js";

const suffix = randomBytes(4).toString("hex");
const dana = `stint_r_${suffix}_dana`; // has a home and a hand-written authorized_keys
const erin = `stint_r_${suffix}_erin`; // has a home, no ~/.ssh
const frank = `stint_r_${suffix}_frank`; // no home directory
const withHome = [dana, erin];
const setPassword = connector.setPassword!.bind(connector);
const verifyPassword = connector.verifyPassword!.bind(connector);

let sshd: Sshd;
let target: ConnectorTarget;
let keyDir: string;
/**
 * A key pair both ssh2 and OpenSSH load (src/lib/ssh-keys.ts). ssh2's own generateKeyPairSync("ed25519") drops a
 * leading zero byte of the public key about once in 256 keys: sshd skips the authorized_keys line of such a key
 * and the ssh client cannot load its private key, so with it the user's own key was "refused" right after key B
 * got in (a CI run in about 256; a bad key A or B failed elsewhere).
 */
function keyPair(comment: string): { private: string; public: string } {
  const pair = generateEd25519KeyPair(comment);
  return { private: pair.privateKey, public: pair.publicKey };
}
const keyA = keyPair("key-a");
const keyB = keyPair("key-b");
const personal = keyPair(`${dana}@laptop`); // a key the user added by hand
const personalLine = personal.public;
const messages: string[] = [];
const children: ChildProcess[] = [];

const failure = (pending: Promise<unknown>) => connectorFailure(pending, messages);

const homeOf = (user: string) => execFileSync("getent", ["passwd", user]).toString().split(":")[5]!;

/** The OpenSSH client's options for the test sshd with the key in `file`. */
const sshArgs = (file: string) => [
  ...["-F", "/dev/null", "-i", file, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"],
  ...["-o", "StrictHostKeyChecking=no", "-o", `UserKnownHostsFile=${join(keyDir, "known_hosts")}`],
  ...["-o", "ConnectTimeout=5", "-p", String(sshd.port)],
];

/** Whether the OpenSSH client gets in as the user with the private key (and runs `id -un` there). */
function sshLogin(user: string, privateKey: string): boolean {
  const file = join(keyDir, randomBytes(4).toString("hex"));
  writeFileSync(file, privateKey, { mode: 0o600 });
  const result = spawnSync("ssh", [...sshArgs(file), `${user}@${sshd.host}`, "id", "-un"], {
    encoding: "utf8",
    timeout: 15_000,
  });
  rmSync(file, { force: true });
  if (result.status === 0) {
    expect(result.stdout.trim()).toBe(user);
    return true;
  }
  expect(result.stderr).toMatch(/Permission denied/);
  return false;
}

/** An OpenSSH session as the user with the key, kept open (a shell that prints "ready", then sleeps). */
function holdSession(user: string, privateKey: string): { child: ChildProcess; output: string } {
  const file = join(keyDir, randomBytes(4).toString("hex"));
  writeFileSync(file, privateKey, { mode: 0o600 });
  const child = spawn("ssh", [...sshArgs(file), `${user}@${sshd.host}`, "echo ready; exec sleep 600"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  children.push(child);
  const held = { child, output: "" };
  child.stdout.on("data", (chunk: Buffer) => (held.output += chunk.toString()));
  return held;
}

/** The ids of the user's processes on this machine. */
const processesOf = (user: string) =>
  spawnSync("pgrep", ["-u", user], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);

const authorizedKeys = (user: string) => readFileSync(join(homeOf(user), ".ssh", "authorized_keys"), "utf8");
const managedLines = (user: string) =>
  authorizedKeys(user)
    .split("\n")
    .filter((line) => line.endsWith(" stint-managed"));
const publicPart = (key: { public: string }) => key.public.trim().split(" ").slice(0, 2).join(" ");

beforeAll(async () => {
  sshd = await startSshd();
  target = sshHostTarget(sshd, "test-host");
  keyDir = mkdtempSync(join(tmpdir(), "stint-rotation-"));
  for (const user of withHome) await createUser(user, { sshLogin: true, home: true });
  await createUser(frank, { sshLogin: true });
  // dana's own key, in the file before Stint touches it.
  const home = homeOf(dana);
  const { uid, gid } = statSync(home);
  mkdirSync(join(home, ".ssh"), { mode: 0o700 });
  chownSync(join(home, ".ssh"), uid, gid);
  writeFileSync(join(home, ".ssh", "authorized_keys"), `# dana's keys\n${personalLine}\n`, { mode: 0o600 });
  chownSync(join(home, ".ssh", "authorized_keys"), uid, gid);
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const user of withHome) await deleteUser(user, { removeHome: true }).catch(() => undefined);
  await deleteUser(frank).catch(() => undefined);
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  await sshHostPools.closeAll();
  await sshd?.stop();
});

describe("key rotation", () => {
  it("setPassword with key A lets A in, keeping the user's own lines", async () => {
    expect(sshLogin(dana, keyA.private)).toBe(false);
    await setPassword(target, { login: dana, password: keyA.private });
    expect(sshLogin(dana, keyA.private)).toBe(true);
    expect(managedLines(dana)).toEqual([`${publicPart(keyA)} stint-managed`]);
    expect(authorizedKeys(dana)).toContain(`# dana's keys\n${personalLine}\n`);
    // Again with the same key: still one line.
    await setPassword(target, { login: dana, password: keyA.private });
    expect(managedLines(dana)).toHaveLength(1);
  });

  it("setPassword with key B replaces A's line: A is out, B is in, the user's own key is untouched", async () => {
    await setPassword(target, { login: dana, password: keyB.private });
    expect(sshLogin(dana, keyA.private)).toBe(false);
    expect(sshLogin(dana, keyB.private)).toBe(true);
    expect(managedLines(dana)).toEqual([`${publicPart(keyB)} stint-managed`]);
    expect(authorizedKeys(dana)).toBe(`# dana's keys\n${personalLine}\n${publicPart(keyB)} stint-managed\n`);
    expect(sshLogin(dana, personal.private)).toBe(true);
  });

  it("verifyPassword signs in as the login: true for the current key, false for the old one", async () => {
    expect(await verifyPassword(target, { login: dana, password: keyB.private })).toBe(true);
    expect(await verifyPassword(target, { login: dana, password: keyA.private })).toBe(false);
    // Another user does not accept dana's key.
    expect(await verifyPassword(target, { login: erin, password: keyB.private })).toBe(false);
    // It needs no admin credential: it signs in as the login only.
    expect(await verifyPassword({ ...target, credential: null }, { login: dana, password: keyB.private })).toBe(true);
  });

  it("creates ~/.ssh (0700) and authorized_keys (0600) owned by the login when missing", async () => {
    await setPassword(target, { login: erin, password: keyA.private });
    const home = homeOf(erin);
    const owner = statSync(home);
    const dir = statSync(join(home, ".ssh"));
    const file = statSync(join(home, ".ssh", "authorized_keys"));
    expect([dir.mode & 0o777, dir.uid, dir.gid]).toEqual([0o700, owner.uid, owner.gid]);
    expect([file.mode & 0o777, file.uid, file.gid]).toEqual([0o600, owner.uid, owner.gid]);
    expect(authorizedKeys(erin)).toBe(`${publicPart(keyA)} stint-managed\n`);
    expect(await verifyPassword(target, { login: erin, password: keyA.private })).toBe(true);
  });

  it("a user that does not exist, or has no home directory, is refused", async () => {
    const missing = await failure(setPassword(target, { login: `stint_r_${suffix}_nobody`, password: keyA.private }));
    expect(missing.reason).toBe("refused");
    expect(missing.message).toContain("does not exist");
    const homeless = await failure(setPassword(target, { login: frank, password: keyA.private }));
    expect(homeless.reason).toBe("refused");
    expect(homeless.message).toContain("home directory");
  });

  it("a login that is not a plain name, or a secret that is not a private key, is refused before connecting", async () => {
    expect((await failure(setPassword(target, { login: "a;id", password: keyA.private }))).reason).toBe("refused");
    const publicOnly = await failure(setPassword(target, { login: dana, password: keyA.public }));
    expect(publicOnly.reason).toBe("refused");
    expect(publicOnly.message).toContain("not a private key");
    expect((await failure(verifyPassword(target, { login: dana, password: "not a key" }))).reason).toBe("refused");
    expect(managedLines(dana)).toEqual([`${publicPart(keyB)} stint-managed`]);
  });

  it("a host key other than the pinned one is refused by verifyPassword, not reported as a wrong key", async () => {
    const other = { ...target, options: { hostKey: `SHA256:${"A".repeat(43)}` } };
    const error = await failure(verifyPassword(other, { login: dana, password: keyB.private }));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("host key");
  });

  it("a closed port is unavailable for both", async () => {
    const closed = { ...target, address: `ssh://root@127.0.0.1:${await freePort()}` };
    expect((await failure(setPassword(closed, { login: dana, password: keyA.private }))).reason).toBe("unavailable");
    expect((await failure(verifyPassword(closed, { login: dana, password: keyA.private }))).reason).toBe("unavailable");
  });

  it("setPassword with endSessions ends the sessions opened with the old key (terminateSessions on)", async () => {
    await setPassword(target, { login: dana, password: keyA.private });
    // Someone who saw key A keeps a shell open with it.
    const held = holdSession(dana, keyA.private);
    expect(await eventually(() => held.output.includes("ready"))).toBe(true);
    expect(processesOf(dana)).not.toEqual([]);

    // A rotation that does not ask for it, or a target that does not allow it, leaves the session alone.
    const terminating = { ...target, options: { ...target.options, terminateSessions: true } };
    await setPassword(terminating, { login: dana, password: keyB.private });
    await setPassword(target, { login: dana, password: keyA.private, endSessions: true });
    expect(held.child.exitCode).toBeNull();
    expect(processesOf(dana)).not.toEqual([]);

    await setPassword(terminating, { login: dana, password: keyB.private, endSessions: true });
    // Killed by then; a killed process is listed until its parent (sshd) has reaped it.
    expect(await eventually(() => processesOf(dana).length === 0)).toBe(true);
    expect(await eventually(() => held.child.exitCode !== null)).toBe(true);
    expect(sshLogin(dana, keyA.private)).toBe(false);
    expect(sshLogin(dana, keyB.private)).toBe(true);
  });

  it("no message holds private key material", () => {
    expect(messages.length).toBeGreaterThanOrEqual(8);
    for (const key of [keyA.private, keyB.private, sshd.adminPrivateKey]) {
      const lines = key.split("\n").filter((line) => line.length > 8 && !line.startsWith("-----"));
      for (const message of messages) {
        expect(message).not.toContain(key);
        for (const line of lines) expect(message).not.toContain(line);
      }
    }
  });
});
