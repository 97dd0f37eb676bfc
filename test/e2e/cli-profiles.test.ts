/**
 * Being two people from one shell (issue 17 item 12): profiles keep one saved sign-in each. `--profile`,
 * `$STINT_PROFILE` and `stint auth switch` choose one; `stint auth status` lists them. The CLI runs against
 * a real in-process server; a profile name cannot reach outside the config directory.
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { injectFetch } from "./inject-fetch.js";

describe("CLI profiles", () => {
  let server: TestServer;
  let dir: string;
  const SERVER = "http://127.0.0.1:8420";

  beforeAll(async () => {
    server = await testServer("pglite");
    await server.userWithRoles("alice", ["user"]);
    await server.userWithRoles("carol", ["user"]);
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-profiles-"));
  });
  afterAll(async () => {
    await server?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const stint = (argv: string[], env: Record<string, string> = {}, input?: string) =>
    runCliCaptured(argv, {
      env: { STINT_CONFIG_DIR: dir, HOME: dir, STINT_SERVER: SERVER, ...env },
      input,
      fetch: injectFetch(() => server.app),
      isTTY: false,
    });
  const whoami = async (argv: string[] = [], env: Record<string, string> = {}) => {
    const result = await stint(["whoami", "--json", ...argv], env);
    expect(result.code, result.stderr).toBe(0);
    return (JSON.parse(result.stdout) as { name: string }).name;
  };

  it("keeps alice (default) and carol (--profile carol) signed in side by side", async () => {
    const alice = await stint(["login", "--user", "alice", "--password-stdin"], {}, `${passwordFor("alice")}\n`);
    expect(alice.code, alice.stderr).toBe(0);
    const carol = await stint(
      ["login", "--profile", "carol", "--user", "carol", "--password-stdin"],
      {},
      `${passwordFor("carol")}\n`,
    );
    expect(carol.code, carol.stderr).toBe(0);

    expect(await whoami()).toBe("alice");
    expect(await whoami(["--profile", "carol"])).toBe("carol");
    expect(await whoami(["--profile=carol"])).toBe("carol");
    expect(await whoami([], { STINT_PROFILE: "carol" })).toBe("carol");

    // Each profile's file is born 0600 in a 0700 directory.
    const carolFile = path.join(dir, "profiles", "carol", "credentials.json");
    expect((await stat(carolFile)).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, "profiles", "carol"))).mode & 0o777).toBe(0o700);
  });

  it("switches the profile in use until switched back; --profile and $STINT_PROFILE still win", async () => {
    const switched = await stint(["auth", "switch", "carol"]);
    expect(switched.code, switched.stderr).toBe(0);
    expect(switched.stdout).toBe(`Now using profile carol (carol at ${SERVER}).\n`);
    expect(await whoami()).toBe("carol");
    expect(await whoami(["--profile", "default"])).toBe("alice");
    expect(await whoami([], { STINT_PROFILE: "default" })).toBe("alice");

    const status = await stint(["auth", "status", "--json"]);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      current: "carol",
      profiles: [
        { profile: "default", current: false, user: "alice", server: SERVER, expired: false },
        { profile: "carol", current: true, user: "carol", server: SERVER, expired: false },
      ],
    });
    const table = (await stint(["auth", "status"])).stdout.split("\n");
    expect(table[0]).toMatch(/^PROFILE\s+IN USE\s+USER\s+SERVER\s+SIGNED IN UNTIL$/);
    expect(table[1]).toMatch(/^default\s+-\s+alice\s/);
    expect(table[2]).toMatch(/^carol\s+yes\s+carol\s/);

    expect((await stint(["auth", "switch", "default"])).code).toBe(0);
    expect(await whoami()).toBe("alice");
  });

  it("signs out of one profile only", async () => {
    expect((await stint(["logout", "--profile", "carol"])).code).toBe(0);
    expect(await whoami()).toBe("alice");
    const gone = await stint(["whoami", "--profile", "carol"]);
    expect(gone.code).toBe(4);
    const switched = await stint(["auth", "switch", "carol"]);
    expect(switched.code).toBe(6);
    expect(switched.stderr).toContain("stint login --profile carol");
  });

  it("refuses a profile name that would reach outside the config directory, writing nothing", async () => {
    const before = await readdir(path.dirname(dir));
    for (const name of ["../escape", "..", "a/b", ".hidden", "x".repeat(65), ""]) {
      const result = await stint(["login", "--profile", name, "--user", "alice", "--password-stdin"], {}, "pw\n");
      expect(result.code, name).toBe(2);
      expect(result.stderr, name).toContain("is not a profile name");
      const viaEnv = await stint(["whoami"], { STINT_PROFILE: name });
      if (name !== "") expect(viaEnv.code, `STINT_PROFILE=${name}`).toBe(2);
    }
    expect(await readdir(path.dirname(dir))).toEqual(before);
    expect((await readdir(path.join(dir, "profiles"))).sort()).toEqual(["carol"]);
  });
});
