/**
 * Invites from the CLI (finding 89): an admin runs `stint users create NAME --invite` and passes the code on; the
 * user runs `stint invite accept` and chooses their own password; `stint users invite NAME` replaces the code.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { ADMIN_PASSWORD, passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { injectFetch } from "./inject-fetch.js";

describe("CLI invites", () => {
  let server: TestServer;
  let dir: string;

  beforeAll(async () => {
    server = await testServer("pglite");
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-invite-"));
  });
  afterAll(async () => {
    await server?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const stint = (argv: string[], input?: string) =>
    runCliCaptured(argv, {
      env: { STINT_CONFIG_DIR: dir, HOME: dir, STINT_SERVER: "http://127.0.0.1:8420" },
      input,
      fetch: injectFetch(() => server.app),
      isTTY: false,
    });

  it("create --invite prints a code; invite accept sets the user's own password; a reissue replaces the code", async () => {
    const admin = server.config.bootstrapAdminName;
    expect((await stint(["login", "--user", admin, "--password-stdin"], `${ADMIN_PASSWORD}\n`)).code).toBe(0);
    const created = await stint(["users", "create", "carol", "--invite", "--json"]);
    expect(created.code, created.stderr).toBe(0);
    const first = (JSON.parse(created.stdout) as { invite: { code: string } }).invite.code;
    const reissued = await stint(["users", "invite", "carol"]);
    expect(reissued.code, reissued.stderr).toBe(0);
    expect(reissued.stdout).toContain("stint invite accept --user carol");
    const second = /: (\S+)\n/.exec(reissued.stdout)![1]!;

    const old = await stint(
      ["invite", "accept", "--user", "carol", "--code", first, "--password-stdin"],
      `${passwordFor("carol")}\n`,
    );
    expect(old.stderr).toContain("INVITE_INVALID");
    expect(old.code).toBe(4);
    const accepted = await stint(
      ["invite", "accept", "--user", "carol", "--code", second, "--password-stdin"],
      `${passwordFor("carol")}\n`,
    );
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain("Password of carol set");
    const login = await stint(["login", "--user", "carol", "--password-stdin"], `${passwordFor("carol")}\n`);
    expect(login.code, login.stderr).toBe(0);
  });
});
