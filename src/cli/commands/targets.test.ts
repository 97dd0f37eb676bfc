/**
 * The target commands (targets credential/test, discover, reconcile, grants) end to end: the real
 * CLI program against a whole Stint server in this process (listening on 127.0.0.1), with a
 * webhook target whose endpoint is a small node:http server answering like docs/connectors/webhook.md.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../testing/cli-run.js";
import { verifyWebhookSignature, SIGNATURE_HEADER } from "../../modules/notify/index.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { exitCodeFor } from "../exit-codes.js";

const SECRET = `whsec_${randomBytes(24).toString("hex")}`;
const FILE_SECRET = `whsec_${randomBytes(24).toString("hex")}`;
const ADMINS = { group: "admins" };

interface Call {
  action: string;
  signature: string;
  raw: Buffer;
}

/** A customer's endpoint that checks nothing, keeps what it was sent, and answers from `holders`/`accounts`. */
async function startEndpoint() {
  const calls: Call[] = [];
  const state = {
    holders: [] as string[],
    accounts: [] as Record<string, unknown>[],
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const body = JSON.parse(raw.toString("utf8")) as { action: string };
      calls.push({ action: body.action, signature: String(req.headers[SIGNATURE_HEADER.toLowerCase()]), raw });
      const answer =
        body.action === "observe"
          ? { holders: state.holders }
          : body.action === "discover"
            ? { accounts: state.accounts }
            : body.action === "test"
              ? { detail: "test bridge v1" }
              : {};
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/stint`,
    calls,
    state,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function catalog(address: string): string {
  return `
apiVersion: stint/v1
policies:
  - name: hooks-self
    mfa: { required: false }
    maxDuration: 8h
targets:
  - name: hooks
    kind: webhook
    address: ${address}
    credential: { secret: targets/hooks/admin }
    identity: { template: "{{name}}@example.com" }
  - name: hooks-down
    kind: webhook
    address: ${address}
    credential: { secret: targets/hooks-down/admin }
roles:
  - name: hooks-admin
    target: hooks
    entitlement: { group: admins }
    policy: hooks-self
    risk: high
`;
}

describe("target commands (real server, webhook endpoint)", () => {
  let server: TestServer;
  let endpoint: Awaited<ReturnType<typeof startEndpoint>>;
  let dir: string;
  let env: Record<string, string>;
  /** Everything any command printed, to prove no secret ever shows. */
  const printed: string[] = [];

  beforeAll(async () => {
    endpoint = await startEndpoint();
    server = await testServer("pglite");
    await server.app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = server.app.server.address() as AddressInfo;
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-targets-"));
    env = {
      STINT_CONFIG_DIR: dir,
      HOME: dir,
      STINT_SERVER: `http://127.0.0.1:${port}`,
      STINT_TOKEN: server.adminAuth.replace(/^Bearer /, ""),
    };
    await server.userWithRoles("carol", ["user"]);
    await server.userWithRoles("alice", ["user"]);
    const applied = await run(["apply", "-f", "-"], catalog(endpoint.url));
    expect(applied.code, applied.stderr).toBe(0);
  });

  afterAll(async () => {
    await server?.cleanup();
    await endpoint?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function run(argv: string[], input = "") {
    const result = await runCliCaptured(argv, { env, input });
    printed.push(result.stdout, result.stderr);
    return result;
  }

  async function api(method: "GET" | "POST", url: string, auth = server.adminAuth) {
    const res = await server.app.inject({ method, url, headers: { authorization: auth } });
    return { status: res.statusCode, text: res.body, body: res.json<Record<string, unknown>>() };
  }

  it("targets credential reads the secret from stdin (one trailing newline dropped); then targets test says ok", async () => {
    const before = await run(["targets", "test", "hooks"]);
    expect(before.code).toBe(8);
    expect(before.stdout).toMatch(
      /^hooks: refused: the credential targets\/hooks\/admin of target hooks is not stored/,
    );
    expect(before.stderr).toBe("");

    const stored = await run(["targets", "credential", "hooks"], `${SECRET}\n`);
    expect(stored).toMatchObject({ code: 0, stderr: "" });
    expect(stored.stdout).toBe("Stored the credential of hooks at targets/hooks/admin.\n");

    const tested = await run(["targets", "test", "hooks"]);
    expect(tested).toMatchObject({ code: 0, stdout: "hooks: ok — test bridge v1\n" });
    // The endpoint can verify the call with exactly the secret piped in, without its newline.
    const call = endpoint.calls.filter((c) => c.action === "test").at(-1)!;
    expect(verifyWebhookSignature(SECRET, call.signature, call.raw, new Date())).toBe(true);

    const json = await run(["targets", "test", "hooks", "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({ target: "hooks", ok: true, detail: "test bridge v1" });
  });

  it("targets credential --from-file and --delete; a test without a credential exits 8", async () => {
    const file = path.join(dir, "hooks-down.secret");
    await writeFile(file, `${FILE_SECRET}\n`, { mode: 0o600 });
    const stored = await run(["targets", "credential", "hooks-down", "--from-file", file, "--json"]);
    expect(stored.code).toBe(0);
    expect(JSON.parse(stored.stdout)).toEqual({ secret: "targets/hooks-down/admin" });
    expect((await run(["targets", "test", "hooks-down"])).code).toBe(0);
    const call = endpoint.calls.filter((c) => c.action === "test").at(-1)!;
    expect(verifyWebhookSignature(FILE_SECRET, call.signature, call.raw, new Date())).toBe(true);

    const deleted = await run(["targets", "credential", "hooks-down", "--delete"]);
    expect(deleted).toMatchObject({ code: 0, stdout: "Deleted the credential of hooks-down.\n" });
    expect((await run(["targets", "credential", "hooks-down", "--delete"])).code).toBe(6);
    const json = await run(["targets", "test", "hooks-down", "--json"]);
    expect(json.code).toBe(8);
    expect(JSON.parse(json.stdout)).toMatchObject({ target: "hooks-down", ok: false });
    expect((await run(["targets", "test", "no-such-target"])).code).toBe(6);
  });

  it("targets credential refuses an empty secret and never takes one from an argument", async () => {
    const empty = await run(["targets", "credential", "hooks"], "");
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("error: USAGE: stdin held no credential; nothing was stored");
    expect((await run(["targets", "credential", "hooks"], "\n")).code).toBe(2);
    expect((await run(["targets", "credential", "hooks", SECRET])).code).toBe(2);
    expect((await run(["targets", "credential", "hooks", "--delete", "--from-file", "x"])).code).toBe(2);
    // The secret stored before is still the one in use.
    expect((await run(["targets", "test", "hooks"])).code).toBe(0);
  });

  it("discover shows standing access with the Stint user each login maps to; --json is the API's answer", async () => {
    endpoint.state.accounts = [
      { login: "carol@example.com", privilege: "Admin group member", entitlement: ADMINS, lastActivity: null },
      { login: "mallory@example.com", privilege: "Admin group member", entitlement: ADMINS },
      { login: "ci-bot@example.com", privilege: "Organization admin", lastActivity: "2030-01-01T08:00:00.000Z" },
    ];
    const result = await run(["discover", "hooks"]);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^LOGIN\s+PRIVILEGE\s+STINT USER\s+LAST ACTIVITY$/);
    expect(lines[1]).toMatch(/^carol@example\.com\s+Admin group member\s+carol\s+-$/);
    expect(lines[2]).toMatch(/^mallory@example\.com\s+Admin group member\s+-\s+-$/);
    expect(lines[3]).toMatch(/^ci-bot@example\.com\s+Organization admin\s+-\s+2030-01-01T08:00:00Z$/);

    const json = await run(["discover", "hooks", "--json"]);
    const body = JSON.parse(json.stdout) as { target: string; items: { login: string; principal: string | null }[] };
    expect(body.target).toBe("hooks");
    expect(body.items.map((item) => [item.login, item.principal])).toEqual([
      ["carol@example.com", "carol"],
      ["mallory@example.com", null],
      ["ci-bot@example.com", null],
    ]);
  });

  it("discover refuses --convert options used wrongly (exit 2) before asking the server", async () => {
    const before = endpoint.calls.length;
    const stray = await run(["discover", "hooks", "--to-role", "hooks-admin"]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain("--to-role goes only with --convert");
    expect((await run(["discover", "hooks", "--convert", "--reason", "phase two"])).code).toBe(2);
    expect((await run(["discover", "hooks", "--convert", "--to-role", "hooks-admin"])).code).toBe(2);
    expect((await run(["discover", "hooks", "--convert", "--to-role", "hooks-admin", "--reason", " "])).code).toBe(2);
    expect((await run(["discover", "hooks", "--dry-run"])).code).toBe(2);
    expect(endpoint.calls.length).toBe(before);
  });

  it("discover --convert --dry-run changes nothing; --convert makes the login eligible", async () => {
    const convert = ["discover", "hooks", "--convert", "--to-role", "hooks-admin", "--reason", "phase two: JIT only"];
    const eligibilities = async () =>
      ((await api("GET", "/v1/eligibilities?role=hooks-admin")).body.items as { principal: string }[]).map(
        (e) => e.principal,
      );
    expect(await eligibilities()).toEqual([]);

    const dry = await run([...convert, "--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(
      /Would convert to eligibility for hooks-admin:\nLOGIN\s+STINT USER\s+PRIVILEGE\s+ELIGIBILITY\n/,
    );
    expect(dry.stdout).toMatch(/carol@example\.com\s+carol\s+Admin group member\s+created\n/);
    expect(dry.stdout).toMatch(/Skipped:\nLOGIN\s+REASON\nmallory@example\.com\s+no Stint user maps to this login\n/);
    expect(dry.stdout).toContain("Dry run: nothing was changed.");
    expect(await eligibilities()).toEqual([]);

    const done = await run(convert);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/^Converted to eligibility for hooks-admin:\n/);
    expect(done.stdout).toContain(
      "1 login now eligible for hooks-admin; the standing privilege is being removed at hooks by the outbox",
    );
    expect(await eligibilities()).toEqual(["carol"]);
    const roles = await api("GET", "/v1/me/roles", await server.login("carol"));
    expect((roles.body.items as { role: string }[]).map((r) => r.role)).toEqual(["hooks-admin"]);

    const again = await run([...convert, "--login", "carol@example.com", "--dry-run", "--json"]);
    expect(JSON.parse(again.stdout)).toMatchObject({
      dryRun: true,
      role: "hooks-admin",
      converted: [{ login: "carol@example.com", principal: "carol", eligibility: "existing" }],
      skipped: [],
    });
  });

  it("reconcile reports a holder Stint did not grant as drift, and exits 0", async () => {
    endpoint.state.holders = ["mallory@example.com"];
    const first = await run(["reconcile", "hooks"]);
    expect(first.code, first.stderr).toBe(0);
    const lines = first.stdout.trim().split("\n");
    expect(lines[0]).toBe("hooks (webhook): ok, 1 role read");
    expect(lines[1]).toMatch(/^ROLE\s+LOGIN\s+KIND\s+ACTION\s+NEW\s+SINCE$/);
    expect(lines[2]).toMatch(/^hooks-admin\s+mallory@example\.com\s+unexpected\s+reported\s+yes\s+\d{4}-\S+Z$/);

    const second = await run(["reconcile", "hooks", "--json"]);
    const report = JSON.parse(second.stdout) as { items: { drift: { login: string; new: boolean }[] }[] };
    expect(report.items[0]!.drift).toMatchObject([{ login: "mallory@example.com", new: false }]);

    endpoint.state.holders = [];
    const third = await run(["reconcile", "hooks"]);
    expect(third.code).toBe(0);
    expect(third.stdout).toMatch(
      /^hooks \(webhook\): ok, 1 role read\nNo drift\.\nResolved:\nROLE\s+LOGIN\s+KIND\nhooks-admin\s+mallory@example\.com\s+unexpected\n$/,
    );
  });

  it("reconcile of every target exits 8 when one could not be read, and says which", async () => {
    const result = await run(["reconcile"]);
    expect(result.code).toBe(8);
    expect(result.stdout).toContain("hooks (webhook): ok, 1 role read\nNo drift.\n");
    expect(result.stdout).toMatch(/hooks-down \(webhook\): could not be read: the credential .* is not stored/);
    expect(result.stderr).toBe("error: TARGET_UNAVAILABLE: 1 target could not be read: hooks-down\n");

    const json = await run(["reconcile", "--json"]);
    expect(json.code).toBe(8);
    expect((JSON.parse(json.stdout) as { items: unknown[] }).items).toHaveLength(2);
    expect((await run(["reconcile", "no-such-target"])).code).toBe(6);
  });

  it("grants --stuck: nothing stuck", async () => {
    expect(await run(["grants", "--stuck"])).toMatchObject({ code: 0, stdout: "No stuck grants.\n" });
    expect(await run(["grants"])).toMatchObject({ code: 0, stdout: "No grants provisioning or revoking.\n" });
    expect(JSON.parse((await run(["grants", "--stuck", "--json"])).stdout)).toEqual({ items: [] });
    expect((await run(["grants", "--limit", "0"])).code).toBe(2);
  });

  it("no secret in any output or audit event", async () => {
    const audit = await api("GET", "/v1/audit/events?limit=1000");
    expect(audit.status).toBe(200);
    const actions = (audit.body.items as { action: string }[]).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["target.credential_set", "target.credential_deleted"]));
    for (const secret of [SECRET, FILE_SECRET]) {
      expect(audit.text).not.toContain(secret);
      for (const text of printed) expect(text).not.toContain(secret);
    }
  });

  it("TARGET_UNAVAILABLE exits 8", () => {
    expect(exitCodeFor("TARGET_UNAVAILABLE")).toBe(8);
  });
});
