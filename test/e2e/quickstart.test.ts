/**
 * Acceptance: the built server starts from a fresh data directory as the
 * README says, the CLI signs in as the first admin, and after TOTP enrolment
 * sign-ins without a code or with a wrong one fail with MFA_REQUIRED and
 * MFA_INVALID, both audited.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as OTPAuth from "otpauth";
import { assertBuilt, cli, freePort, start, waitForHealth, type RunningProcess } from "./support.js";

const PASSWORD = "quickstart correct horse";

function totp(secret: string, timestamp: number): string {
  return new OTPAuth.TOTP({
    secret: OTPAuth.Secret.fromBase32(secret),
    digits: 6,
    period: 30,
    algorithm: "SHA1",
  }).generate({ timestamp });
}

describe("quickstart: npm start, then the CLI", () => {
  let server: RunningProcess;
  let work: string;
  let url: string;
  let env: NodeJS.ProcessEnv;
  let healthMs: number;

  beforeAll(async () => {
    assertBuilt();
    work = mkdtempSync(path.join(tmpdir(), "stint-quickstart-"));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    env = { STINT_CONFIG_DIR: path.join(work, "cli-config"), STINT_SERVER: url };
    // `npm start` as the README says; only the port and the data directory differ, so the test
    // neither collides with a running server nor reuses an old database.
    server = start("npm", ["start", "--silent"], {
      env: { STINT_LISTEN: `127.0.0.1:${port}`, STINT_DATA_DIR: path.join(work, ".stint"), STINT_LOG_LEVEL: "warn" },
    });
    healthMs = await waitForHealth(url, 10_000);
  }, 180_000);

  afterAll(async () => {
    await server?.kill("SIGTERM");
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("answers /healthz within 10 s and tells how to create the first admin", async () => {
    expect(healthMs).toBeLessThan(10_000);
    const match = await server.waitFor(/npx stint setup --server (\S+) --code (\S+) --user admin/);
    expect(match[1]).toBe(url);
    expect(statSync(path.join(work, ".stint", "master.key")).mode & 0o777).toBe(0o600);
  });

  it("signs in as the first admin, enrols TOTP, and then refuses sign-ins without a valid code", async () => {
    const [, , code] = await server.waitFor(/npx stint setup --server (\S+) --code (\S+) --user admin/);
    // A mistyped code is said before any password is asked for (no terminal here: asking would fail otherwise).
    const mistyped = await cli(["setup", "--code", `${code!}x`, "--user", "admin"], { env });
    expect(mistyped.code).toBe(4);
    expect(mistyped.stderr).toContain("SETUP_CODE_INVALID");
    expect(mistyped.stderr).not.toMatch(/terminal|password/i);
    const setup = await cli(["setup", "--code", code!, "--user", "admin", "--password-stdin"], {
      env,
      input: `${PASSWORD}\n`,
    });
    expect(setup.stderr).not.toContain(PASSWORD);
    expect(setup.code).toBe(0);
    expect(statSync(path.join(work, "cli-config", "credentials.json")).mode & 0o777).toBe(0o600);

    // A fresh sign-in with the password, as after a logout.
    expect((await cli(["logout"], { env })).code).toBe(0);
    const login = await cli(["login", "--user", "admin", "--password-stdin"], { env, input: `${PASSWORD}\n` });
    expect(login.code).toBe(0);
    const who = await cli(["whoami", "--json"], { env });
    expect(JSON.parse(who.stdout)).toMatchObject({
      name: "admin",
      platformRoles: expect.arrayContaining(["admin"]),
      mfaEnrolled: false,
    });

    const enroll = await cli(["mfa", "enroll", "--json"], { env });
    expect(enroll.code).toBe(0);
    const { secret } = JSON.parse(enroll.stdout) as { secret: string };
    // The code on stdin (`-`), as docs/cli.md says: never in argv, where every local user reads it.
    const confirm = await cli(["mfa", "confirm", "-", "--json"], { env, input: `${totp(secret, Date.now())}\n` });
    expect(confirm.code).toBe(0);
    expect(JSON.parse(confirm.stdout).recoveryCodes).toHaveLength(10);
    expect((await cli(["logout"], { env })).code).toBe(0);

    const noCode = await cli(["login", "--user", "admin", "--password-stdin"], { env, input: `${PASSWORD}\n` });
    expect(noCode.code).toBe(4);
    expect(noCode.stderr).toContain("MFA_REQUIRED");

    const current = totp(secret, Date.now());
    const wrong = String((Number(current) + 500_000) % 1_000_000).padStart(6, "0");
    const badCode = await cli(["login", "--user", "admin", "--password-stdin", "--otp", wrong], {
      env,
      input: `${PASSWORD}\n`,
    });
    expect(badCode.code).toBe(4);
    expect(badCode.stderr).toContain("MFA_INVALID");
    // A code in argv still works for old scripts, with a warning that says what to use instead.
    expect(badCode.stderr).toContain("--otp -");

    // The next 30-second step: the enrolment already used the current one.
    const good = await cli(["login", "--user", "admin", "--password-stdin", "--otp", "-"], {
      env,
      input: `${PASSWORD}\n${totp(secret, Date.now() + 30_000)}\n`,
    });
    expect(good.stderr).toBe("");
    expect(good.code).toBe(0);

    const exported = await cli(["audit", "export", "--format", "jsonl"], { env });
    expect(exported.code).toBe(0);
    const events = exported.stdout
      .trim()
      .split("\n")
      .map(
        (line) =>
          JSON.parse(line) as { action: string; outcome: string; reason: string | null; subject: string | null },
      );
    const denied = events.filter(
      (e) => e.action === "auth.login" && e.outcome === "denied" && e.subject === "user:admin",
    );
    expect(denied.map((e) => e.reason)).toEqual(["one-time code missing", "wrong one-time code"]);
    expect(events.some((e) => e.action === "mfa.enrolled" && e.outcome === "success")).toBe(true);
    for (const secretValue of [PASSWORD, secret]) expect(exported.stdout).not.toContain(secretValue);

    const verify = await cli(["audit", "verify"], { env });
    expect(verify.code).toBe(0);
    // The export is audited itself (audit.export), after the events it wrote out: one more in the chain.
    expect(verify.stdout).toMatch(new RegExp(`OK: ${events.length + 1} events verified`));
  });
});
