import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../testing/cli-run.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { exitCodeFor } from "../exit-codes.js";

const VALUE = `pw-${randomBytes(16).toString("hex")}`;
const KEY_VALUE = `-----BEGIN KEY-----\n${randomBytes(24).toString("base64")}\n-----END KEY-----`;
const EXCLUSIVE_VALUE = `ex-${randomBytes(16).toString("hex")}`;

describe("vault commands (real server)", () => {
  let server: TestServer;
  let dir: string;
  let env: Record<string, string>;
  let carol: string;
  let alice: string;
  let generated = "";
  /** Everything any command printed on stderr, to prove no value ever shows there. */
  const stderr: string[] = [];
  /** What put printed, to prove it never prints a value. */
  const putOutput: string[] = [];

  beforeAll(async () => {
    server = await testServer("pglite");
    await server.app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = server.app.server.address() as AddressInfo;
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-vault-"));
    env = {
      STINT_CONFIG_DIR: dir,
      HOME: dir,
      STINT_SERVER: `http://127.0.0.1:${port}`,
    };
    carol = await server.userWithRoles("carol", ["user"]);
    alice = await server.userWithRoles("alice", ["user"]);
  });

  afterAll(async () => {
    await server?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function run(argv: string[], options: { input?: string; as?: string } = {}) {
    const result = await runCliCaptured(argv, {
      env: { ...env, STINT_TOKEN: (options.as ?? server.adminAuth).replace(/^Bearer /, "") },
      input: options.input ?? "",
    });
    stderr.push(result.stderr);
    if (argv[1] === "put") putOutput.push(result.stdout, result.stderr);
    return result;
  }

  it("put reads the value from stdin (one trailing newline dropped); get prints exactly the value", async () => {
    const stored = await run(
      ["secret", "put", "prod/db/admin", "--value-stdin", "--kind", "password", "--platform-role", "user"],
      { input: `${VALUE}\n` },
    );
    expect(stored).toEqual({ code: 0, stdout: "Stored prod/db/admin version 1.\n", stderr: "" });

    expect(await run(["secret", "get", "prod/db/admin"], { as: carol })).toEqual({
      code: 0,
      stdout: `${VALUE}\n`,
      stderr: "",
    });
    const json = await run(["secret", "get", "prod/db/admin", "--json"], { as: carol });
    expect(JSON.parse(json.stdout)).toEqual({ path: "prod/db/admin", version: 1, kind: "password", value: VALUE });

    // A multi-line key keeps its inner newlines; a second version keeps the kind.
    const key = await run(["secret", "put", "prod/db/admin", "--value-stdin"], { input: `${KEY_VALUE}\n` });
    expect(key.stdout).toBe("Stored prod/db/admin version 2.\n");
    expect((await run(["secret", "get", "prod/db/admin"])).stdout).toBe(`${KEY_VALUE}\n`);
    expect((await run(["secret", "get", "prod/db/admin", "--at-version", "1"])).stdout).toBe(`${VALUE}\n`);
    const meta = await server.app.inject({
      method: "GET",
      url: "/v1/secrets/prod%2Fdb%2Fadmin",
      headers: { authorization: server.adminAuth },
    });
    expect(meta.json()).toMatchObject({ kind: "password", currentVersion: 2, platformRoles: ["user"] });
  });

  it("put refuses bad usage (exit 2) and never takes a value from an argument", async () => {
    expect((await run(["secret", "put", "app/x"], { input: "v\n" })).code).toBe(2);
    expect((await run(["secret", "put", "app/x", "--value-stdin", "--generate"], { input: "v\n" })).code).toBe(2);
    expect((await run(["secret", "put", "app/x", "--value-stdin", "--length", "20"], { input: "v\n" })).code).toBe(2);
    expect((await run(["secret", "put", "app/x", VALUE, "--value-stdin"], { input: "v\n" })).code).toBe(2);
    const empty = await run(["secret", "put", "app/x", "--value-stdin"], { input: "\n" });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("stdin held no value; nothing was stored");
    const badPath = await run(["secret", "put", "Prod/DB", "--value-stdin"], { input: "v\n" });
    expect(badPath.code).toBe(2);
    expect(badPath.stderr).toContain('PATH "Prod/DB" must be lower-case path segments');
    expect((await run(["secret", "put", "app/x", "--generate", "--length", "8"])).code).toBe(2);
    expect((await run(["secret", "put", "app/x", "--generate", "--platform-role", "root"])).code).toBe(2);
    expect((await run(["secret", "get", "app/x"])).code).toBe(6);
  });

  it("put --generate stores a value of the asked length that get returns and put never printed", async () => {
    const stored = await run([
      "secret",
      "put",
      "app/api-key",
      "--generate",
      "--length",
      "48",
      "--kind",
      "api-key",
      "--platform-role",
      "admin",
    ]);
    expect(stored.code, stored.stderr).toBe(0);
    expect(stored.stdout).toBe(
      "Stored app/api-key version 1.\nThe generated value was not printed: read it with `stint secret get app/api-key`.\n",
    );
    const got = await run(["secret", "get", "app/api-key"]);
    expect(got.code).toBe(0);
    generated = got.stdout.slice(0, -1);
    expect(got.stdout.endsWith("\n")).toBe(true);
    expect(generated).toHaveLength(48);
    for (const text of putOutput) expect(text).not.toContain(generated);

    const json = await run(["secret", "put", "app/api-key", "--generate", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ path: "app/api-key", kind: "api-key", currentVersion: 2 });
    expect(json.stdout).not.toContain("value");
  });

  it("list and versions show tables; --json prints the API's answer", async () => {
    const list = await run(["secret", "list"]);
    expect(list.code, list.stderr).toBe(0);
    const lines = list.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^PATH\s+KIND\s+VERSION\s+ROLES\s+CHECKED OUT$/);
    expect(lines).toContainEqual(expect.stringMatching(/^app\/api-key\s+api-key\s+2\s+platform:admin\s+-$/));
    expect(lines).toContainEqual(expect.stringMatching(/^prod\/db\/admin\s+password\s+2\s+platform:user\s+-$/));
    const json = JSON.parse((await run(["secret", "list", "--json"])).stdout) as { items: { path: string }[] };
    expect(json.items.map((item) => item.path).sort()).toEqual(["app/api-key", "prod/db/admin"]);

    // carol sees only what she may read.
    const mine = await run(["secret", "ls"], { as: carol });
    expect(mine.stdout).toContain("prod/db/admin");
    expect(mine.stdout).not.toContain("app/api-key");

    const versions = await run(["secret", "versions", "app/api-key"]);
    expect(versions.code, versions.stderr).toBe(0);
    const rows = versions.stdout.trim().split("\n");
    expect(rows[0]).toMatch(/^VERSION\s+SOURCE\s+BY\s+AT\s+CURRENT$/);
    // Newest first.
    expect(rows[1]).toMatch(/^2\s+generate\s+admin\s+\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\s+yes$/);
    expect(rows[2]).toMatch(/^1\s+generate\s+admin\s+\S+Z\s+no$/);
    const versionsJson = JSON.parse((await run(["secret", "versions", "app/api-key", "--json"])).stdout) as {
      path: string;
      items: { version: number; current: boolean }[];
    };
    expect(versionsJson.path).toBe("app/api-key");
    expect(versionsJson.items.map((v) => [v.version, v.current])).toEqual([
      [2, true],
      [1, false],
    ]);
  });

  it("a user without an allowed role cannot read: exit 6 NOT_FOUND, the same as for no secret", async () => {
    const denied = await run(["secret", "get", "app/api-key"], { as: carol });
    expect(denied.code).toBe(6);
    expect(denied.stdout).toBe("");
    expect(denied.stderr).toMatch(/^error: NOT_FOUND: /);
    const missing = await run(["secret", "get", "app/nothing-here"], { as: carol });
    expect(missing.code).toBe(6);
    expect(missing.stderr.replace("app/nothing-here", "app/api-key")).toBe(denied.stderr);
    const json = await run(["secret", "get", "app/api-key", "--json"], { as: carol });
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: "NOT_FOUND" } });
    expect((await run(["secret", "versions", "app/api-key"], { as: carol })).code).toBe(6);
  });

  it("an exclusive secret: checkout prints the value; a second user gets exit 7 naming the holder; checkin frees it", async () => {
    const stored = await run(
      [
        "secret",
        "put",
        "ops/root",
        "--value-stdin",
        "--kind",
        "password",
        "--platform-role",
        "user",
        "--exclusive",
        "--max-checkout",
        "2h",
        "--rotate-on-checkin",
      ],
      { input: EXCLUSIVE_VALUE },
    );
    expect(stored.stdout).toBe("Stored ops/root version 1.\n");

    // Reading an exclusive secret needs the check-out.
    const early = await run(["secret", "get", "ops/root"], { as: carol });
    expect(early.code).toBe(7);
    expect(early.stderr).toMatch(/^error: CHECKED_OUT: ops\/root is exclusive: check it out first/);

    expect(
      (await run(["secret", "checkout", "ops/root", "--for", "3h", "--reason", "too long"], { as: carol })).code,
    ).toBe(2);
    expect((await run(["secret", "checkout", "ops/root"], { as: carol })).code).toBe(2); // --reason is required

    const out = await run(["secret", "checkout", "ops/root", "--for", "30m", "--reason", "INC-1: fix replication"], {
      as: carol,
    });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe(`${EXCLUSIVE_VALUE}\n`);
    expect(out.stderr).toMatch(/^Checked out until \d{4}-\S+Z; check it in with `stint secret checkin ops\/root`\.\n$/);
    expect((await run(["secret", "get", "ops/root"], { as: carol })).stdout).toBe(`${EXCLUSIVE_VALUE}\n`);

    const list = await run(["secret", "list"]);
    expect(list.stdout).toMatch(/ops\/root\s+password\s+1\s+platform:user\s+carol until \d{4}-\S+Z\n/);

    const second = await run(["secret", "checkout", "ops/root", "--reason", "me too"], { as: alice });
    expect(second.code).toBe(7);
    expect(second.stdout).toBe("");
    expect(second.stderr).toMatch(/^error: CHECKED_OUT: ops\/root is checked out by carol until \d{4}-\S+Z;/);
    const secondJson = await run(["secret", "checkout", "ops/root", "--reason", "me too", "--json"], { as: alice });
    expect(secondJson.code).toBe(7);
    expect(JSON.parse(secondJson.stdout)).toMatchObject({
      error: { code: "CHECKED_OUT", details: { holder: "carol" } },
    });
    expect((await run(["secret", "get", "ops/root"], { as: alice })).code).toBe(7);
    expect((await run(["secret", "checkin", "ops/root"], { as: alice })).code).toBe(6);

    const back = await run(["secret", "checkin", "ops/root"], { as: carol });
    expect(back).toEqual({ code: 0, stdout: "Checked in ops/root. A new version 2 was made.\n", stderr: "" });

    const now = await run(["secret", "checkout", "ops/root", "--reason", "my turn", "--json"], { as: alice });
    expect(now.code, now.stderr).toBe(0);
    const body = JSON.parse(now.stdout) as { value: string; holder: string; version: number };
    expect(body).toMatchObject({ holder: "alice", version: 2 });
    expect(body.value).not.toBe(EXCLUSIVE_VALUE);
    const checkin = await run(["secret", "checkin", "ops/root", "--json"], { as: alice });
    expect(JSON.parse(checkin.stdout)).toEqual({ path: "ops/root", rotated: true, currentVersion: 3 });
  });

  it("operator: init 5/3 prints 5 shares; seal makes get exit 8; 2 shares keep it sealed; the 3rd unseals", async () => {
    const before = await run(["operator", "status"]);
    expect(before.code, before.stderr).toBe(0);
    expect(before.stdout).toMatch(/^mode:\s+key-file\nsealed:\s+no\nprogress:\s+-\nkey version:\s+1\n$/);

    expect((await run(["operator", "init", "--shares", "2", "--threshold", "3"])).code).toBe(2);
    expect((await run(["operator", "status"], { as: carol })).code).toBe(5);

    const init = await run(["operator", "init", "--shares", "5", "--threshold", "3"]);
    expect(init.code, init.stderr).toBe(0);
    const shares = init.stdout.trim().split("\n");
    expect(shares).toHaveLength(5);
    for (const share of shares) expect(share).toMatch(/^stint-share-\S+$/);
    expect(new Set(shares).size).toBe(5);
    expect(init.stderr).toMatch(/^warning: these 5 unseal shares are shown this once and never again\./);
    expect(init.stderr).toContain("different person");
    for (const share of shares) expect(init.stderr).not.toContain(share);
    expect((await run(["operator", "init", "--shares", "5", "--threshold", "3"])).code).toBe(7);

    expect(await run(["operator", "seal"])).toMatchObject({ code: 0, stdout: "Sealed.\n" });
    const sealed = await run(["secret", "get", "prod/db/admin"], { as: carol });
    expect(sealed.code).toBe(8);
    expect(sealed.stdout).toBe("");
    expect(sealed.stderr).toMatch(/^error: SEALED: /);

    const first = await run(["operator", "unseal"], { input: `${shares[0]}\n` });
    expect(first).toMatchObject({ code: 0, stdout: "Still sealed: 1/3 shares given.\n" });
    const secondShare = await run(["operator", "unseal", "--json"], { input: `${shares[3]}\n` });
    expect(JSON.parse(secondShare.stdout)).toMatchObject({ sealed: true, progress: 2, threshold: 3 });
    const status = await run(["operator", "status"]);
    expect(status.stdout).toMatch(/^mode:\s+shamir\nsealed:\s+yes\nprogress:\s+2\/3\nkey version:\s+1\n$/);
    expect((await run(["secret", "get", "prod/db/admin"], { as: carol })).code).toBe(8);
    expect((await run(["operator", "unseal"], { input: "" })).code).toBe(2);

    expect(await run(["operator", "unseal"], { input: `${shares[4]}\n` })).toMatchObject({
      code: 0,
      stdout: "Unsealed.\n",
    });
    expect((await run(["secret", "get", "prod/db/admin"], { as: carol })).stdout).toBe(`${KEY_VALUE}\n`);
    for (const text of stderr) for (const share of shares) expect(text).not.toContain(share);
  });

  it("operator rotate-key re-wraps every data key; the values still read", async () => {
    const rotated = await run(["operator", "rotate-key"]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/^Key version 2; \d+ data keys re-wrapped\.\n$/);
    expect((await run(["operator", "status", "--json"])).stdout).toContain('"keyVersion": 2');
    expect((await run(["secret", "get", "prod/db/admin", "--at-version", "1"])).stdout).toBe(`${VALUE}\n`);
  });

  it("secret rotate makes a new current version and keeps the old one; rotation flags go together", async () => {
    expect(
      (await run(["secret", "put", "ops/webhook", "--generate", "--kind", "api-key", "--platform-role", "admin"])).code,
    ).toBe(0);
    const before = (await run(["secret", "get", "ops/webhook"])).stdout;
    const rotated = await run(["secret", "rotate", "ops/webhook"]);
    expect(rotated).toEqual({
      code: 0,
      stdout: "Rotated ops/webhook: version 2 is current; version 1 stays readable for rollback.\n",
      stderr: "",
    });
    const after = (await run(["secret", "get", "ops/webhook"])).stdout;
    expect(after).not.toBe(before);
    expect((await run(["secret", "get", "ops/webhook", "--at-version", "1"])).stdout).toBe(before);
    const lonely = await run(["secret", "put", "ops/db", "--generate", "--rotation-target", "app-db"]);
    expect(lonely.code).toBe(2);
    expect(lonely.stderr).toMatch(/--rotation-target and --rotation-login together/);
  });

  it("secret reveal refuses without a fresh MFA check and says how to get one", async () => {
    expect(
      (await run(["secret", "put", "emergency/root", "--generate", "--break-glass", "--platform-role", "admin"])).code,
    ).toBe(0);
    const refused = await run(["secret", "reveal", "emergency/root", "--reason", "database down, SSO unavailable"]);
    expect(refused.code).toBe(4);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toMatch(/MFA_STEP_UP_REQUIRED/);
  });

  it("secret get of a break-glass secret exits 5 BREAK_GLASS_ONLY; secret allow gives a target its session secret", async () => {
    const got = await run(["secret", "get", "emergency/root"]);
    expect(got.code).toBe(5);
    expect(got.stdout).toBe("");
    expect(got.stderr).toMatch(/BREAK_GLASS_ONLY/);

    const target = await server.app.inject({
      method: "POST",
      url: "/v1/targets",
      headers: { authorization: server.adminAuth },
      payload: { name: "cli-db", kind: "postgres", address: "postgres://app@127.0.0.1:5432/app?sslmode=disable" },
    });
    expect(target.statusCode, target.body).toBe(201);
    const allowed = await run(["secret", "allow", "prod/db/admin", "--target", "cli-db"]);
    expect(allowed).toEqual({
      code: 0,
      stdout: "Sessions of cli-db may use prod/db/admin (at its current address).\n",
      stderr: "",
    });
    const bg = await run(["secret", "allow", "emergency/root", "--target", "cli-db"]);
    expect(bg.code).toBe(5);
    const notAdmin = await run(["secret", "allow", "prod/db/admin", "--target", "cli-db"], { as: carol });
    expect(notAdmin.code).toBe(5);
    const revoked = await run(["secret", "allow", "prod/db/admin", "--target", "cli-db", "--revoke"]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toBe("prod/db/admin is no longer allowed for cli-db.\n");
  });

  it("no value in any stderr or audit event", async () => {
    const res = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?limit=1000",
      headers: { authorization: server.adminAuth },
    });
    expect(res.statusCode).toBe(200);
    const actions = (res.json<{ items: { action: string }[] }>().items ?? []).map((e) => e.action);
    expect(actions).toEqual(
      expect.arrayContaining(["secret.created", "secret.read", "secret.checked_out", "secret.checked_in"]),
    );
    expect(generated).not.toBe("");
    for (const value of [VALUE, KEY_VALUE, EXCLUSIVE_VALUE, generated]) {
      expect(res.body).not.toContain(value);
      for (const text of stderr) expect(text).not.toContain(value);
    }
  });

  it("vault error codes map to exit codes", () => {
    expect(exitCodeFor("CHECKED_OUT")).toBe(7);
    expect(exitCodeFor("SEALED")).toBe(8);
    expect(exitCodeFor("VAULT_KEY_INVALID")).toBe(8);
    expect(exitCodeFor("INTEGRITY_FAILED")).toBe(1);
  });
});
