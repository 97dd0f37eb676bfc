/**
 * Class: another user of the same machine reading a one-time code off the CLI's command line.
 *
 * `stint mfa confirm CODE` (and `login`, `step-up`, `activate`, `extend` with `--otp CODE`) took the code only in
 * argv, which every local user reads in `ps` or /proc/<pid>/cmdline and which stays in shell history: with the
 * password of a shared account (a CI bot), someone watching signs in with the code before the CLI's request
 * spends it. A code now comes from stdin (`-`, `--code-stdin`, `--otp -`), $STINT_TOTP_CODE (a process's
 * environment is its own user's to read) or a prompt without echo; one in argv still works, with a warning.
 * Each run here is a real `stint` process against a real server; the test reads its /proc/<pid>/cmdline.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/cli/main.ts");
let server: TestServer;
let base: string;
let dir: string;
let secret: string;

beforeAll(async () => {
  server = await testServer("pglite");
  await server.app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
  const auth = await server.userWithRoles("ann", ["user"]);
  const started = await server.app.inject({ method: "POST", url: "/v1/me/mfa/totp", headers: { authorization: auth } });
  secret = started.json<{ secret: string }>().secret;
  dir = await mkdtemp(path.join(tmpdir(), "stint-cli-totp-"));
  const login = await runCliCaptured(["login", "--user", "ann", "--password-stdin", "--server", base], {
    env: { STINT_CONFIG_DIR: dir },
    input: `${passwordFor("ann")}\n`,
  });
  expect(login.code, login.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * Runs `stint ARGS` as its own process; once it is running, reads its command line, then writes `input` (if any)
 * to its stdin. Resolves with what it printed, its exit code and the command line as /proc showed it.
 */
async function stint(args: string[], options: { env?: Record<string, string>; input?: () => string } = {}) {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args, "--server", base], {
    env: { ...process.env, STINT_CONFIG_DIR: dir, ...options.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));
  const cmdline = (await readFile(`/proc/${child.pid}/cmdline`, "utf8")).split("\0").join(" ");
  if (options.input) child.stdin.write(options.input());
  child.stdin.end();
  return { code: await exited, stdout, stderr, cmdline };
}

describe("one-time codes never on the command line", () => {
  it("stint mfa confirm - reads the code from stdin; it is nowhere in the process's command line", async () => {
    let sent = "";
    const result = await stint(["mfa", "confirm", "-"], { input: () => `${(sent = totpNow(secret))}\n` });
    expect(result.stderr).not.toContain("error");
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split("\n").length).toBeGreaterThanOrEqual(8); // the recovery codes
    expect(sent).toMatch(/^\d{6}$/);
    expect(result.cmdline).toContain("mfa confirm -");
    expect(result.cmdline).not.toContain(sent);
  }, 120_000);

  it("stint step-up takes $STINT_TOTP_CODE; the code is not in the command line", async () => {
    // The next step's code: the confirm above spent this step's.
    const code = totpNow(secret, Date.now() + 30_000);
    const result = await stint(["step-up"], { env: { STINT_TOTP_CODE: code } });
    expect(result.stderr).not.toContain("error");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("one-time code");
    expect(result.cmdline).not.toContain(code);
  }, 120_000);

  it("a code in argv is still sent (old scripts), with a warning naming what to use instead", async () => {
    const result = await runCliCaptured(["step-up", "--otp", "000 000", "--server", base], {
      env: { STINT_CONFIG_DIR: dir },
    });
    expect(result.stderr).toContain("MFA_INVALID"); // the server judged it: it was sent
    expect(result.stderr).toContain("visible to every user of this machine");
    expect(result.stderr).toContain("STINT_TOTP_CODE");
  }, 120_000);

  it("without a terminal, stdin or $STINT_TOTP_CODE, mfa confirm says how to give the code", async () => {
    const result = await runCliCaptured(["mfa", "confirm", "--server", base], { env: { STINT_CONFIG_DIR: dir } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("stint mfa confirm -");
  }, 120_000);
});
