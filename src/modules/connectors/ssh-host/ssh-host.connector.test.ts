/**
 * Against a real OpenSSH sshd on 127.0.0.1 (src/testing/sshd.ts) administering this machine:
 * throwaway users and groups named stint_t_<hex>, and one sudoers file, all removed in afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import type { ConnectorTarget } from "../connector.types.js";
import {
  createGroup,
  createUser,
  deleteGroup,
  deleteUser,
  freePort,
  idGroups,
  sshHostTarget,
  startSshd,
  type Sshd,
} from "../../../testing/sshd.js";
import { connectorFailure } from "../../../testing/connector-failure.js";
import { eventually, sshClientPorts } from "../../../testing/ssh-connections.js";
import { sshHostConnector as connector, sshHostPools } from "./ssh-host.connector.js";

const suffix = randomBytes(4).toString("hex");
const name = (part: string) => `stint_t_${suffix}_${part}`;
const alice = name("alice");
const bob = name("bob");
const carol = name("carol");
const lowly = name("lowly");
const devs = name("devs");
const admins = name("admins");
const sudoersGroup = name("sudoers");
const users = [alice, bob, carol, lowly];
const groups = [devs, admins, sudoersGroup];
const sudoersFile = `/etc/sudoers.d/stint_t_${suffix}`;

let sshd: Sshd;
let target: ConnectorTarget;
let createdSudoersDir = false;
const messages: string[] = [];
const children: ChildProcess[] = [];

/** The error a call throws, recorded so that the last test can check that no message holds the key. */
const failure = (pending: Promise<unknown>) => connectorFailure(pending, messages);

function withOptions(options: Record<string, unknown>, overrides: Partial<ConnectorTarget> = {}): ConnectorTarget {
  return { ...target, options: { ...target.options, ...options }, ...overrides };
}

function members(group: string): string[] {
  const line = execFileSync("getent", ["group", group]).toString().trim();
  return (line.split(":")[3] ?? "").split(",").filter(Boolean);
}

/** Established client connections to the test sshd. */
const openConnections = () => sshClientPorts(sshd.port);

beforeAll(async () => {
  sshd = await startSshd();
  target = sshHostTarget(sshd, "test-host");
  for (const group of groups) await createGroup(group);
  for (const user of users) await createUser(user, { sshLogin: user === lowly });
  execFileSync("gpasswd", ["-a", carol, sudoersGroup]);
  if (!existsSync("/etc/sudoers.d")) {
    mkdirSync("/etc/sudoers.d", { mode: 0o750 });
    createdSudoersDir = true;
  }
  writeFileSync(
    sudoersFile,
    [
      "# written by the ssh-host connector test",
      "Defaults:" + bob + " !requiretty",
      `${bob} ALL=(ALL) NOPASSWD: /usr/bin/true`,
      `%${sudoersGroup} ALL=(root) /usr/bin/id`,
      "",
    ].join("\n"),
    { mode: 0o440 },
  );
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  rmSync(sudoersFile, { force: true });
  if (createdSudoersDir) rmdirSync("/etc/sudoers.d");
  for (const user of users) await deleteUser(user).catch(() => undefined);
  for (const group of groups) await deleteGroup(group).catch(() => undefined);
  await sshHostPools.closeAll();
  await sshd?.stop();
});

describe("checks", () => {
  it("accepts plain names and refuses anything a shell could read differently", () => {
    expect(connector.checkLogin("alice")).toEqual([]);
    expect(connector.checkLogin("svc_web-1.prod")).toEqual([]);
    for (const login of ["", "a b", "a;id", "$(id)", "-rf", "1000", "x".repeat(33), "al'ice"]) {
      expect(connector.checkLogin(login)).not.toEqual([]);
    }
    expect(connector.checkEntitlement({ group: "docker" })).toEqual([]);
    expect(connector.checkEntitlement({})).not.toEqual([]);
    expect(connector.checkEntitlement({ group: "docker", role: "x" })).not.toEqual([]);
    expect(connector.checkEntitlement({ group: "wheel`id`" })).not.toEqual([]);
    expect(connector.checkOptions({ hostKey: sshd.hostKeyFingerprint, useSudo: true })).toEqual([]);
    expect(connector.checkOptions({})).not.toEqual([]);
  });
});

describe("against the host", () => {
  it("test() reports the system and the account", async () => {
    const { detail } = await connector.test(target);
    expect(detail).toContain(execFileSync("uname", ["-sr"]).toString().trim());
    expect(detail).toContain("as root (uid 0)");
  });

  it("provision adds the login to the group, once, however often it runs", async () => {
    await connector.provision(target, { login: alice, entitlement: { group: devs } });
    expect(await idGroups(alice)).toContain(devs);
    await connector.provision(target, { login: alice, entitlement: { group: devs } });
    expect(members(devs)).toEqual([alice]);
  });

  it("observe lists listed members and users whose primary group it is", async () => {
    await connector.provision(target, { login: bob, entitlement: { group: devs } });
    expect(await connector.observe(target, { group: devs })).toEqual([alice, bob].sort());
    expect(await connector.observe(target, { group: carol })).toEqual([carol]);
  });

  it("revoke removes the membership, and revoking again changes nothing", async () => {
    await connector.revoke(target, { login: alice, entitlement: { group: devs } });
    expect(await idGroups(alice)).not.toContain(devs);
    await connector.revoke(target, { login: alice, entitlement: { group: devs } });
    expect(await connector.observe(target, { group: devs })).toEqual([bob]);
    expect(await idGroups(bob)).toContain(devs);
  });

  it("revoking for a login that does not exist succeeds: there is nothing to hold", async () => {
    await connector.revoke(target, { login: name("ghost"), entitlement: { group: devs } });
  });

  it("a running process keeps the group after revoke unless terminateSessions is on", async () => {
    await connector.provision(target, { login: alice, entitlement: { group: devs } });
    const gid = execFileSync("getent", ["group", devs]).toString().split(":")[2];
    const startSession = () => {
      const child = spawn("setpriv", ["--reuid", alice, "--regid", alice, "--init-groups", "sleep", "600"], {
        stdio: "ignore",
      });
      children.push(child);
      return child;
    };
    const groupsOf = (child: ChildProcess) =>
      (/^Groups:\s*(.*)$/m.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? "").trim().split(/\s+/);
    const waitForGroups = async (child: ChildProcess) => {
      // setpriv execs sleep once the groups are set.
      while (!groupsOf(child).includes(gid!)) await new Promise((resolve) => setTimeout(resolve, 20));
    };

    const kept = startSession();
    await waitForGroups(kept);
    await connector.revoke(target, { login: alice, entitlement: { group: devs } });
    expect(await idGroups(alice)).not.toContain(devs);
    expect(kept.exitCode).toBeNull();
    expect(groupsOf(kept)).toContain(gid);
    kept.kill("SIGKILL");

    await connector.provision(target, { login: alice, entitlement: { group: devs } });
    const ended = startSession();
    await waitForGroups(ended);
    const exit = new Promise<string | null>((resolve) => ended.once("exit", (_code, signal) => resolve(signal)));
    await connector.revoke(withOptions({ terminateSessions: true }), { login: alice, entitlement: { group: devs } });
    expect(await exit).toBe("SIGKILL");
    expect(await idGroups(alice)).not.toContain(devs);
  });

  it("will not kill every process of root", async () => {
    const error = await failure(
      connector.revoke(withOptions({ terminateSessions: true }), { login: "root", entitlement: { group: devs } }),
    );
    expect(error.reason).toBe("refused");
  });

  it("a primary group cannot be revoked, and says so", async () => {
    const error = await failure(connector.revoke(target, { login: carol, entitlement: { group: carol } }));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("primary group");
  });

  it("discover lists privileged group members and sudoers lines", async () => {
    await connector.provision(target, { login: alice, entitlement: { group: admins } });
    const found = await connector.discover(withOptions({ privilegedGroups: [admins] }));
    const ours = found.filter((entry) => entry.login.startsWith(`stint_t_${suffix}`));
    expect(ours).toEqual([
      { login: alice, privilege: `member of ${admins}`, entitlement: { group: admins }, lastActivity: null },
      {
        login: bob,
        privilege: `sudoers: ${bob} ALL=(ALL) NOPASSWD: /usr/bin/true`,
        entitlement: null,
        lastActivity: null,
      },
      {
        login: carol,
        privilege: `sudoers: %${sudoersGroup} ALL=(root) /usr/bin/id`,
        entitlement: null,
        lastActivity: null,
      },
    ]);
    const logins = found.map((entry) => entry.login);
    expect(logins).toEqual([...logins].sort());

    const ignored = await connector.discover(withOptions({ privilegedGroups: [admins], ignore: [alice, carol] }));
    expect(ignored.filter((entry) => entry.login.startsWith(`stint_t_${suffix}`)).map((e) => e.login)).toEqual([bob]);

    // What discover offers as removable, revoke removes.
    await connector.revoke(target, { login: alice, entitlement: ours[0]!.entitlement! });
    expect(await idGroups(alice)).not.toContain(admins);
  });
});

describe("errors", () => {
  it("a closed port is unavailable", async () => {
    const port = await freePort();
    const error = await failure(connector.test({ ...target, address: `ssh://root@127.0.0.1:${port}` }));
    expect(error.reason).toBe("unavailable");
  });

  it("a host whose key does not match is refused, and nothing runs there", async () => {
    const wrong = `SHA256:${randomBytes(32).toString("base64").replace(/=+$/, "")}`;
    const error = await failure(
      connector.provision(withOptions({ hostKey: wrong }), { login: bob, entitlement: { group: admins } }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("host key");
    expect(error.message).toContain(sshd.hostKeyFingerprint);
    expect(await idGroups(bob)).not.toContain(admins);
  });

  it("a missing hostKey is refused before connecting", async () => {
    const error = await failure(connector.test(withOptions({}, { options: {} })));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("hostKey");
  });

  it("a nonexistent group or user is refused with the host's words", async () => {
    const group = await failure(connector.provision(target, { login: alice, entitlement: { group: name("nogroup") } }));
    expect(group.reason).toBe("refused");
    expect(group.message).toContain(`group '${name("nogroup")}' does not exist`);

    const user = await failure(connector.provision(target, { login: name("nouser"), entitlement: { group: devs } }));
    expect(user.reason).toBe("refused");
    expect(user.message).toContain(`user '${name("nouser")}' does not exist`);

    const observed = await failure(connector.observe(target, { group: name("nogroup") }));
    expect(observed.reason).toBe("refused");
  });

  it("a login that could be read as shell is refused before anything runs", async () => {
    const error = await failure(connector.provision(target, { login: `${alice};id`, entitlement: { group: devs } }));
    expect(error.reason).toBe("refused");
    // Refused, not unavailable, at an address where nothing listens: the check comes before connecting.
    const nowhere = { ...target, address: `ssh://root@127.0.0.1:${await freePort()}` };
    const early = await failure(connector.revoke(nowhere, { login: "$(reboot)", entitlement: { group: devs } }));
    expect(early.reason).toBe("refused");
  });

  it("a key the host does not accept, or no key at all, is refused", async () => {
    const other = execFileSync("sh", [
      "-c",
      `d=$(mktemp -d) && ssh-keygen -q -t ed25519 -N '' -f "$d/k" && cat "$d/k" && rm -r "$d"`,
    ]).toString();
    const wrongKey = await failure(connector.test({ ...target, credential: other }));
    expect(wrongKey.reason).toBe("refused");
    expect(wrongKey.message).not.toContain(other.split("\n")[1]);

    const garbage = await failure(connector.test({ ...target, credential: "not a key at all" }));
    expect(garbage.reason).toBe("refused");
    expect(garbage.message).not.toContain("not a key at all");

    const none = await failure(connector.test({ ...target, credential: null }));
    expect(none.reason).toBe("refused");
  });

  it("a non-root admin without useSudo is refused by gpasswd; with useSudo, a failing sudo is refused", async () => {
    const asLowly = { ...target, address: `ssh://${lowly}@${sshd.host}:${sshd.port}` };
    expect((await connector.test(asLowly)).detail).toContain(`as ${lowly}`);
    const denied = await failure(connector.provision(asLowly, { login: bob, entitlement: { group: devs } }));
    expect(denied.reason).toBe("refused");
    expect(denied.message).toMatch(/gpasswd/);

    const sudo = await failure(connector.test({ ...asLowly, options: { ...target.options, useSudo: true } }));
    expect(sudo.reason).toBe("refused");
  });

  it("an aborted call is unavailable and leaves nothing behind", async () => {
    const error = await failure(
      connector.provision(target, { login: bob, entitlement: { group: admins } }, { signal: AbortSignal.abort() }),
    );
    expect(error.reason).toBe("unavailable");
    expect(await idGroups(bob)).not.toContain(admins);
  });

  it("keeps its connection for the next call after a success; closes it after a refusal and an abort", async () => {
    await sshHostPools.closeAll();
    await connector.observe(target, { group: devs });
    expect(openConnections()).toHaveLength(1);
    await failure(connector.observe(target, { group: name("nogroup") }));
    expect(await eventually(() => openConnections().length === 0)).toBe(true);

    const controller = new AbortController();
    const pending = failure(connector.discover(target, { signal: controller.signal }));
    while (openConnections().length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort();
    expect((await pending).reason).toBe("unavailable");
    expect(await eventually(() => openConnections().length === 0)).toBe(true);
  });

  it("no message holds the private key or any line of it", () => {
    expect(messages.length).toBeGreaterThan(8);
    const lines = sshd.adminPrivateKey.split("\n").filter((line) => line.length > 8 && !line.startsWith("-----"));
    for (const message of messages) {
      expect(message).not.toContain(sshd.adminPrivateKey);
      for (const line of lines) expect(message).not.toContain(line);
    }
  });
});
