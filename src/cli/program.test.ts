/**
 * The CLI end to end against a scripted fake API (no server): arguments, output, exit codes,
 * token refresh and what is saved. Real-server tests live in test/e2e.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CliContext } from "./context.js";
import { loadCredentials, saveCredentials, type SavedCredentials } from "./credentials.js";
import { runCli } from "./program.js";

const SERVER = "http://127.0.0.1:8420";
const NOW = Date.parse("2030-01-01T12:00:00.000Z");
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();

const alice = {
  id: "0190b6a0-0000-7000-8000-000000000001",
  kind: "user",
  name: "alice",
  email: "alice@example.com",
  displayName: "Alice",
  manager: null,
  status: "active",
  disabledBy: null,
  platformRoles: ["admin"],
  mfaEnrolled: true,
  groups: ["dba"],
  createdAt: iso(-86_400_000),
};

function pair(n: number) {
  return {
    accessToken: `access-${n}`,
    accessTokenExpiresAt: iso(600_000),
    refreshToken: `refresh-${n}`,
    refreshTokenExpiresAt: iso(43_200_000),
    principal: alice,
  };
}

interface Call {
  method: string;
  url: string;
  authorization: string | null;
  body: unknown;
}
type Reply = { status: number; body?: unknown; text?: string };
type Route = (call: Call) => Reply | undefined;

function envelope(code: string, message: string, status: number): Reply {
  return { status, body: { error: { code, message } } };
}

describe("stint CLI (fake API)", () => {
  let dir: string;
  let calls: Call[];
  let routes: Route[];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-program-"));
    calls = [];
    routes = [];
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const fakeFetch: typeof fetch = async (input, init) => {
    const url = String(input);
    const headers = new Headers(init?.headers);
    const call: Call = {
      method: init?.method ?? "GET",
      url,
      authorization: headers.get("authorization"),
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
    };
    calls.push(call);
    for (const route of routes) {
      const reply = route(call);
      if (reply) {
        const text = reply.text ?? (reply.body === undefined ? "" : JSON.stringify(reply.body));
        return new Response(reply.status === 204 ? null : text, { status: reply.status });
      }
    }
    return new Response(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: "no route" } }), {
      status: 404,
    });
  };

  function on(method: string, pathname: string, reply: (call: Call) => Reply): void {
    routes.push((call) => {
      const url = new URL(call.url);
      return call.method === method && url.pathname === pathname ? reply(call) : undefined;
    });
  }

  async function run(
    argv: string[],
    options: { stdin?: string; fetch?: typeof fetch; env?: Record<string, string> } = {},
  ) {
    const stdin = new PassThrough();
    if (options.stdin !== undefined) stdin.end(options.stdin);
    const out: string[] = [];
    const err: string[] = [];
    const ctx: CliContext = {
      stdin: Object.assign(stdin, { isTTY: false }),
      stdout: { write: (chunk) => out.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString()) > 0 },
      stderr: { write: (chunk) => err.push(String(chunk)) > 0 },
      env: { STINT_CONFIG_DIR: dir, HOME: dir, ...options.env },
      fetch: options.fetch ?? fakeFetch,
      now: () => NOW,
      version: "0.0.0-test",
    };
    const code = await runCli(argv, ctx);
    return { code, stdout: out.join(""), stderr: err.join("") };
  }

  async function signedIn(overrides: Partial<SavedCredentials> = {}): Promise<void> {
    await saveCredentials(
      { STINT_CONFIG_DIR: dir },
      {
        version: 1,
        server: SERVER,
        principal: { id: alice.id, name: "alice" },
        accessToken: "access-1",
        accessTokenExpiresAt: iso(600_000),
        refreshToken: "refresh-1",
        refreshTokenExpiresAt: iso(43_200_000),
        savedAt: iso(0),
        ...overrides,
      },
    );
  }

  it("login reads the password from stdin, saves a 0600 file and never prints or URL-encodes secrets", async () => {
    on("POST", "/v1/auth/login", () => ({ status: 200, body: pair(1) }));
    const result = await run(["login", "--user", "alice", "--password-stdin", "--json"], {
      stdin: "correct horse battery\nignored second line\n",
    });
    expect(result).toMatchObject({ code: 0, stderr: "" });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.body).toEqual({ username: "alice", password: "correct horse battery" });
    expect(calls[0]?.authorization).toBeNull();
    const printed = JSON.parse(result.stdout);
    expect(printed).toMatchObject({ server: SERVER, principal: { name: "alice" } });
    expect(result.stdout).not.toMatch(/access-1|refresh-1|correct horse/);
    expect(calls.some((call) => /correct|access-|refresh-/.test(call.url))).toBe(false);
    const file = path.join(dir, "credentials.json");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(file, "utf8"))).toMatchObject({
      server: SERVER,
      accessToken: "access-1",
      refreshToken: "refresh-1",
    });
  });

  it.each([
    ["MFA_REQUIRED", "A one-time code from the authenticator app is required."],
    ["MFA_INVALID", "The one-time code is wrong or was already used."],
    ["INVALID_CREDENTIALS", "The user name or password is wrong."],
  ])("login reports %s with its code and exits 4", async (code, message) => {
    on("POST", "/v1/auth/login", () => envelope(code, message, 401));
    // The password is stdin's first line, the one-time code its second (never in argv).
    const result = await run(["login", "--user", "alice", "--password-stdin", "--otp", "-"], {
      stdin: "pw-pw-pw-pw-pw\n123456\n",
    });
    expect(calls[0]?.body).toMatchObject({ password: "pw-pw-pw-pw-pw", otp: "123456" });
    expect(result).toEqual({ code: 4, stdout: "", stderr: `error: ${code}: ${message}\n` });
    expect(await loadCredentials({ STINT_CONFIG_DIR: dir })).toBeNull();
  });

  it("login without a terminal and without --password-stdin is a usage error", async () => {
    const result = await run(["login", "--user", "alice"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^error: USAGE: .*--password-stdin/);
    expect(calls).toEqual([]);
  });

  it("whoami sends the bearer token and prints the principal", async () => {
    await signedIn();
    on("GET", "/v1/me", (call) =>
      call.authorization === "Bearer access-1" ? { status: 200, body: alice } : envelope("UNAUTHENTICATED", "no", 401),
    );
    const human = await run(["whoami"]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^name:\s+alice$/m);
    expect(human.stdout).toMatch(/^platform roles:\s+admin$/m);
    const json = await run(["whoami", "--json"]);
    expect(JSON.parse(json.stdout)).toEqual(alice);
  });

  it("refreshes an access token that is about to expire, saves the rotated pair, then calls", async () => {
    await signedIn({ accessTokenExpiresAt: iso(5_000) });
    on("POST", "/v1/auth/refresh", (call) =>
      (call.body as { refreshToken: string }).refreshToken === "refresh-1"
        ? { status: 200, body: pair(2) }
        : envelope("UNAUTHENTICATED", "reused", 401),
    );
    on("GET", "/v1/me", (call) =>
      call.authorization === "Bearer access-2" ? { status: 200, body: alice } : envelope("TOKEN_EXPIRED", "old", 401),
    );
    const result = await run(["whoami", "--json"]);
    expect(result.code).toBe(0);
    expect(calls.map((call) => `${call.method} ${new URL(call.url).pathname}`)).toEqual([
      "POST /v1/auth/refresh",
      "GET /v1/me",
    ]);
    expect(await loadCredentials({ STINT_CONFIG_DIR: dir })).toMatchObject({
      accessToken: "access-2",
      refreshToken: "refresh-2",
    });
  });

  it("refreshes once on 401 TOKEN_EXPIRED and retries", async () => {
    await signedIn();
    on("POST", "/v1/auth/refresh", () => ({ status: 200, body: pair(2) }));
    on("GET", "/v1/me", (call) =>
      call.authorization === "Bearer access-2"
        ? { status: 200, body: alice }
        : envelope("TOKEN_EXPIRED", "The access token has expired.", 401),
    );
    const result = await run(["whoami"]);
    expect(result.code).toBe(0);
    expect(calls.map((call) => new URL(call.url).pathname)).toEqual(["/v1/me", "/v1/auth/refresh", "/v1/me"]);
  });

  it("exits 4 with TOKEN_EXPIRED when the refresh is refused", async () => {
    await signedIn({ accessTokenExpiresAt: iso(-1_000) });
    on("POST", "/v1/auth/refresh", () => envelope("UNAUTHENTICATED", "Sign in first.", 401));
    const result = await run(["whoami"]);
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/^error: TOKEN_EXPIRED: the session could not be refreshed/);
    expect(result.stderr).not.toMatch(/refresh-1|access-1/);
  });

  it("does not send saved tokens to a different server", async () => {
    await signedIn();
    const result = await run(["whoami", "--server", "https://elsewhere.example.com"]);
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/signed in to http:\/\/127\.0\.0\.1:8420, not https:\/\/elsewhere\.example\.com/);
    expect(calls).toEqual([]);
  });

  it("uses $STINT_TOKEN as the bearer instead of the saved sign-in, and never refreshes it", async () => {
    await signedIn();
    on("GET", "/v1/me", (call) =>
      call.authorization === "Bearer stint_api_token"
        ? { status: 200, body: { ...alice, kind: "service", name: "ci-bot" } }
        : envelope("TOKEN_EXPIRED", "expired", 401),
    );
    const ok = await run(["whoami", "--json"], { env: { STINT_TOKEN: "stint_api_token" } });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ name: "ci-bot" });
    const expired = await run(["whoami"], { env: { STINT_TOKEN: "revoked" } });
    expect(expired).toMatchObject({ code: 4, stderr: "error: TOKEN_EXPIRED: expired\n" });
    expect(calls.map((call) => new URL(call.url).pathname)).toEqual(["/v1/me", "/v1/me"]);
  });

  it("exits 8 when the server cannot be reached", async () => {
    await signedIn();
    const refused: typeof fetch = async () => {
      throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect"), { code: "ECONNREFUSED" }) });
    };
    const result = await run(["users", "list"], { fetch: refused });
    expect(result).toEqual({
      code: 8,
      stdout: "",
      stderr: `error: SERVER_UNREACHABLE: cannot reach the Stint server at ${SERVER} (ECONNREFUSED)\n`,
    });
  });

  it.each([
    [403, "FORBIDDEN", 5],
    [404, "NOT_FOUND", 6],
    [409, "ALREADY_EXISTS", 7],
    [400, "VALIDATION_FAILED", 2],
    [500, "INTERNAL", 1],
    [503, "UNAVAILABLE", 8],
  ])("maps HTTP %i %s to exit %i", async (status, code, exit) => {
    await signedIn();
    on("POST", "/v1/groups", () => envelope(code, "nope", status));
    const result = await run(["groups", "create", "dba"]);
    expect(result.code).toBe(exit);
    expect(result.stderr).toBe(`error: ${code}: nope\n`);
  });

  it("rejects unknown options and bad values with exit 2 before calling the server", async () => {
    await signedIn();
    expect((await run(["users", "list", "--bogus"])).code).toBe(2);
    expect((await run(["tokens", "create", "t1", "--for", "bot", "--expires-in", "forever"])).code).toBe(2);
    expect((await run(["users", "create", "Bad Name"])).code).toBe(2);
    expect((await run(["audit", "list", "--limit", "0"])).code).toBe(2);
    expect((await run(["audit", "export", "--format", "xml"])).code).toBe(2);
    expect((await run(["audit", "export", "--since", "yesterday"])).code).toBe(2);
    expect((await run(["users", "create", "alice", "--role", "root"])).code).toBe(2);
    expect(calls).toEqual([]);
  });

  it("users create sends the fields and roles", async () => {
    await signedIn();
    on("POST", "/v1/users", (call) => ({ status: 201, body: { ...alice, ...(call.body as object), groups: [] } }));
    const result = await run(
      [
        "users",
        "create",
        "bob",
        "--email",
        "bob@example.com",
        "--role",
        "security",
        "--role",
        "auditor,user",
        "--password-stdin",
      ],
      { stdin: "a-long-enough-password\n" },
    );
    expect(result.code).toBe(0);
    expect(calls[0]?.body).toEqual({
      name: "bob",
      kind: "user",
      email: "bob@example.com",
      password: "a-long-enough-password",
      platformRoles: ["security", "auditor", "user"],
    });
  });

  it("users list and show say who disabled a user", async () => {
    await signedIn();
    const mallory = {
      ...alice,
      name: "mallory",
      status: "disabled",
      disabledBy: "user:alice",
      platformRoles: ["user"],
    };
    const leaver = { ...alice, name: "leaver", status: "disabled", disabledBy: "scim:entra", platformRoles: ["user"] };
    on("GET", "/v1/users", () => ({ status: 200, body: { items: [alice, leaver, mallory] } }));
    on("GET", "/v1/users/mallory", () => ({ status: 200, body: mallory }));
    const list = await run(["users", "list"]);
    expect(list.code).toBe(0);
    const rows = list.stdout.trimEnd().split("\n");
    expect(rows[0]).toMatch(/^NAME +KIND +STATUS +DISABLED BY +ROLES/);
    expect(rows.slice(1).map((row) => row.split(/ {2,}/).slice(0, 4))).toEqual([
      ["alice", "user", "active", "-"],
      ["leaver", "user", "disabled", "scim:entra"],
      ["mallory", "user", "disabled", "user:alice"],
    ]);
    const show = await run(["users", "show", "mallory"]);
    expect(show.stdout).toMatch(/^status: +disabled\ndisabled by: +user:alice\n/m);
    expect((await run(["users", "show", "mallory", "--json"])).stdout).toContain('"disabledBy": "user:alice"');
  });

  it("tokens create prints the token alone on stdout and warns that it is shown once", async () => {
    await signedIn();
    on("POST", "/v1/tokens", () => ({
      status: 201,
      body: {
        id: "0190b6a0-0000-7000-8000-000000000009",
        name: "deploy",
        principal: "deploy-bot",
        createdAt: iso(0),
        expiresAt: iso(7 * 86_400_000),
        lastUsedAt: null,
        revokedAt: null,
        token: "stint_secret_value",
      },
    }));
    const result = await run(["tokens", "create", "deploy", "--for", "deploy-bot", "--expires-in", "7d"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("stint_secret_value\n");
    expect(result.stderr).toMatch(/cannot be shown again/);
    expect(calls[0]?.body).toEqual({ name: "deploy", principal: "deploy-bot", expiresIn: "7d" });
  });

  it("audit verify prints OK and exits 0, or BROKEN and exits 3", async () => {
    await signedIn();
    let answer: unknown = { ok: true, count: 12, headSeq: 12, checkpoints: 1 };
    on("GET", "/v1/audit/verify", () => ({ status: 200, body: answer }));
    expect(await run(["audit", "verify"])).toEqual({
      code: 0,
      stdout: "OK: 12 events verified (head seq 12, 1 signed checkpoints)\n",
      stderr: "",
    });
    answer = { ok: false, count: 7, brokenSeq: 8, problem: "hash mismatch" };
    expect(await run(["audit", "verify"])).toEqual({ code: 3, stdout: "BROKEN at seq 8: hash mismatch\n", stderr: "" });
    const json = await run(["audit", "verify", "--json"]);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toEqual(answer);
  });

  it("audit verify --anchor posts the anchor file's signed head, and refuses a file that is no anchor", async () => {
    await signedIn();
    const anchor = {
      format: "stint-audit-anchor/v1",
      seq: 10,
      hash: "a".repeat(64),
      every: 5,
      time: "2026-03-01T09:00:00.000Z",
      keyId: "audit-k1",
      signature: "c2lnbmF0dXJl",
    };
    const file = path.join(dir, "anchor.json");
    await writeFile(file, JSON.stringify(anchor));
    let answer: unknown = { ok: true, count: 12, headSeq: 12, checkpoints: 3, anchorSeq: 10 };
    on("POST", "/v1/audit/verify", () => ({ status: 200, body: answer }));
    expect(await run(["audit", "verify", "--anchor", file])).toEqual({
      code: 0,
      stdout: "OK: 12 events verified (head seq 12, 3 signed checkpoints), anchored at seq 10\n",
      stderr: "",
    });
    expect(calls[0]?.body).toEqual({ anchor });
    answer = { ok: false, count: 9, brokenSeq: 10, problem: "event 10 differs from the anchored head" };
    const broken = await run(["audit", "verify", "--anchor", file]);
    expect(broken.code).toBe(3);
    expect(broken.stdout).toBe("BROKEN at seq 10: event 10 differs from the anchored head\n");

    await writeFile(file, JSON.stringify({ ...anchor, hash: "not a hash" }));
    const bad = await run(["audit", "verify", "--anchor", file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/is not an audit anchor: check hash/);
  });

  it("audit export streams lines and turns --since 24h into an ISO time", async () => {
    await signedIn();
    on("GET", "/v1/audit/export", () => ({ status: 200, text: '{"seq":1}\n{"seq":2}\n' }));
    const result = await run(["audit", "export", "--format", "jsonl", "--since", "24h"]);
    expect(result).toEqual({ code: 0, stdout: '{"seq":1}\n{"seq":2}\n', stderr: "" });
    const query = new URL(calls[0]?.url ?? "").searchParams;
    expect(query.get("format")).toBe("jsonl");
    expect(query.get("since")).toBe(iso(-86_400_000));

    const file = path.join(dir, "out.jsonl");
    const toFile = await run(["audit", "export", "--output", file]);
    expect(toFile.code).toBe(0);
    expect(await readFile(file, "utf8")).toBe('{"seq":1}\n{"seq":2}\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it("logout revokes the session and deletes the saved file", async () => {
    await signedIn();
    on("POST", "/v1/auth/logout", () => ({ status: 204 }));
    const result = await run(["logout"]);
    expect(result.code).toBe(0);
    expect(calls[0]?.body).toEqual({ refreshToken: "refresh-1" });
    expect(await loadCredentials({ STINT_CONFIG_DIR: dir })).toBeNull();
    expect((await run(["logout"])).stdout).toBe("Not signed in.\n");
  });

  it("rejects a server answer that breaks the contract with BAD_RESPONSE (exit 1)", async () => {
    await signedIn();
    on("GET", "/v1/me", () => ({ status: 200, body: { name: "alice" } }));
    const result = await run(["whoami"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: BAD_RESPONSE: /);
  });

  it("prints help and the version with exit 0, and a missing subcommand with exit 2", async () => {
    const help = await run(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit codes:/);
    expect((await run(["--version"])).stdout).toBe("0.0.0-test\n");
    expect((await run(["help", "users"])).code).toBe(0);
    expect((await run(["users"])).code).toBe(2);
    expect((await run([])).code).toBe(2);
  });
});
