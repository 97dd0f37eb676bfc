/**
 * Class: the CLI on a shared machine: files holding secrets written where another local user can reach.
 *
 * `stint db login ROLE --defaults-file PATH` writes a MySQL option file holding the user's database token.
 * It opened PATH as it found it (following a link planted there, writing into a file someone else had made)
 * and set the mode to 0600 only after writing: a reader who held the file open from before, or owned the file
 * a link named, kept the token. The file is now always a new one, born 0600 and renamed into place.
 *
 * `stint ssh config` prints a block for ~/.ssh/config and saves the proxy's host key, both from the server's
 * answer: a server (or whoever answers for it) that put a newline in the proxy's host added directives of its
 * choosing to the user's ssh_config (`ProxyCommand`: a command run at the next `ssh … @stint`), and one in the
 * host key planted keys for other hosts. The answer is now checked (a host name or address, a key line).
 *
 * `stint ssh krl -o FILE` (root's cron on hosts that trust the CA) wrote through `FILE.<pid>.tmp`, opened as found:
 * a link planted there by whoever may write FILE's directory had root write the list into the file it named.
 */
import { execFile } from "node:child_process";
import { lstat, mkdtemp, open, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../src/testing/cli-run.js";

const TOKEN = "stint_db_0123456789abcdef0123456789abcdef";
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "stint-cli-files-"));
  await saveSignedIn(path.join(dir, "config"), { name: "ann", now: Date.now() });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const mysqlToken: typeof fetch = async (input, init) => {
  if (init?.method === "POST" && new URL(String(input)).pathname === "/v1/db/tokens")
    return new Response(
      JSON.stringify({
        kind: "mysql",
        host: "127.0.0.1",
        port: 3307,
        database: "",
        user: "ann%app-maria",
        password: TOKEN,
        expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      }),
      { status: 200, headers: { "content-type": "application/json" } },
    );
  return new Response(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: "no route" } }), { status: 404 });
};

const login = (file: string) =>
  runCliCaptured(["db", "login", "app-maria", "--defaults-file", file], {
    env: { STINT_CONFIG_DIR: path.join(dir, "config"), HOME: dir },
    fetch: mysqlToken,
  });

describe("stint db login --defaults-file in a directory others can write", () => {
  it("a file made beforehand and held open by another user does not receive the token", async () => {
    const file = path.join(dir, "maria.cnf");
    await writeFile(file, "", { mode: 0o666 });
    const held = await open(file, "r"); // Mallory's descriptor, opened while the file was hers to read
    try {
      const run = await login(file);
      expect(run.code, run.stderr).toBe(0);
      expect(await readFile(file, "utf8")).toContain(TOKEN); // the user's file has it…
      expect((await lstat(file)).mode & 0o777).toBe(0o600);
      expect(await held.readFile("utf8")).not.toContain(TOKEN); // …and Mallory's descriptor does not
    } finally {
      await held.close();
    }
  });

  it("a link planted at the path is replaced, not followed into the planter's file", async () => {
    const planted = path.join(dir, "mallory-owned");
    await writeFile(planted, "", { mode: 0o666 });
    const file = path.join(dir, "maria.cnf");
    await symlink(planted, file);
    const run = await login(file);
    expect(run.code, run.stderr).toBe(0);
    expect(await readFile(planted, "utf8")).not.toContain(TOKEN);
    expect((await lstat(file)).isSymbolicLink()).toBe(false);
    expect(await readFile(file, "utf8")).toContain(TOKEN);
  });
});

/** A server whose `/v1/ssh/ca` names the proxy as told. */
const sshCa =
  (proxy: { host: string; port: number; hostKey: string }): typeof fetch =>
  async (input) =>
    new URL(String(input)).pathname === "/v1/ssh/ca"
      ? new Response(JSON.stringify({ caPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA stint-ca", proxy }), {
          status: 200,
          headers: { "content-type": "application/json" },
        })
      : new Response("{}", { status: 404 });

describe("stint ssh config from a server that lies", () => {
  const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOo9mRkzYj8rJ0Uq4gEw3f5m6lq7h2ZxZ4vX3z1q8b1c stint-proxy";
  const sshConfig = (proxy: { host: string; port: number; hostKey: string }) =>
    runCliCaptured(["ssh", "config"], {
      env: { STINT_CONFIG_DIR: path.join(dir, "config"), HOME: dir },
      fetch: sshCa(proxy),
    });

  it("a proxy host with a newline adds no ssh_config directive (ProxyCommand runs a command at the next ssh)", async () => {
    const evil = `ssh.example\n  ProxyCommand touch ${dir}/pwned`;
    const run = await sshConfig({ host: evil, port: 2222, hostKey: HOST_KEY });
    // What `stint ssh config >> ~/.ssh/config` appends, as OpenSSH reads it.
    const file = path.join(dir, "ssh_config");
    await writeFile(file, run.stdout);
    const { stdout } = await promisify(execFile)("ssh", ["-G", "-F", file, "stint"]);
    expect(stdout).not.toMatch(/^proxycommand /m);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("BAD_RESPONSE");
  });

  it("a host key with a newline plants no other host's key in the saved known_hosts", async () => {
    const run = await sshConfig({ host: "ssh.example", port: 2222, hostKey: `${HOST_KEY}\ngit.example ${HOST_KEY}` });
    const saved = await readFile(path.join(dir, "config", "ssh", "known_hosts"), "utf8").catch(() => "");
    expect(saved).not.toContain("git.example");
    expect(run.code).not.toBe(0);
  });

  it("a proper answer still makes the block and the known_hosts line", async () => {
    const run = await sshConfig({ host: "ssh.example", port: 2222, hostKey: HOST_KEY });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("  HostName ssh.example\n  Port 2222\n");
    expect(await readFile(path.join(dir, "config", "ssh", "known_hosts"), "utf8")).toBe(
      `[ssh.example]:2222 ${HOST_KEY}\n`,
    );
  });
});

describe("stint ssh krl -o FILE (run by root from cron) in a directory others can write", () => {
  it("a link planted at the temporary name is not followed into another file", async () => {
    const krl = Buffer.concat([Buffer.from("SSHKRL\n\0", "latin1"), Buffer.alloc(40, 1)]);
    const victim = path.join(dir, "shadow");
    await writeFile(victim, "root:$y$…:19000::::::\n");
    const output = path.join(dir, "stint.krl");
    // The old temporary name was `${output}.${pid}.tmp`: pids are few and guessable; this is the right one.
    await symlink(victim, `${output}.${process.pid}.tmp`);
    const run = await runCliCaptured(["ssh", "krl", "-o", output], {
      env: { STINT_CONFIG_DIR: path.join(dir, "config"), HOME: dir },
      fetch: async () => new Response(krl, { status: 200, headers: { "content-type": "application/octet-stream" } }),
    });
    expect(run.code, run.stderr).toBe(0);
    expect(await readFile(victim, "utf8")).toBe("root:$y$…:19000::::::\n");
    expect(await readFile(output)).toEqual(krl);
  });
});
