/**
 * What a new user meets when setting passwords and reading the directory, against a scripted fake API: a password
 * too short is the same WEAK_PASSWORD (exit 2) from every command that sets one, before anything is sent; and
 * `users list` says who disabled an account as `users show` does.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../testing/cli-run.js";

const NOW = Date.parse("2030-01-01T12:00:00.000Z");
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();

function user(name: string, overrides: Record<string, unknown> = {}) {
  return {
    id: "0190b6a0-0000-7000-8000-000000000002",
    kind: "user",
    name,
    email: null,
    displayName: null,
    manager: null,
    status: "active",
    disabledBy: null,
    platformRoles: ["user"],
    mfaEnrolled: false,
    groups: [],
    createdAt: iso(-86_400_000),
    ...overrides,
  };
}

describe("users and passwords (fake API)", () => {
  let dir: string;
  let sent: { method: string; pathname: string }[];
  let users: unknown[];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-users-"));
    sent = [];
    users = [];
    await saveSignedIn(dir, { name: "admin", now: NOW });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const fakeFetch: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    sent.push({ method: init?.method ?? "GET", pathname: url.pathname });
    if (url.pathname === "/v1/setup/check") return Response.json({ valid: true });
    // Four-eyes holds an approver role and an approver's password (finding 81): 202 with the change request.
    const changeRequest = {
      id: "0190b6a0-0000-7000-8000-0000000000c1",
      status: "pending",
      tier: "critical",
      expiresAt: iso(7 * 86_400_000),
    };
    if (init?.method === "POST" && url.pathname === "/v1/users")
      return Response.json({ user: user("sock"), changeRequest }, { status: 202 });
    if (init?.method === "PUT" && url.pathname === "/v1/users/bob/password")
      return Response.json({ changeRequest }, { status: 202 });
    if (url.pathname === "/v1/users") return Response.json({ items: users });
    return Response.json({ error: { code: "ROUTE_NOT_FOUND", message: "no route" } }, { status: 404 });
  };

  function run(argv: string[], input = "") {
    return runCliCaptured(argv, { env: { STINT_CONFIG_DIR: dir, HOME: dir }, fetch: fakeFetch, now: () => NOW, input });
  }

  it.each([
    ["setup", ["setup", "--code", "Xq3v9LmR2tKp8WzN4cYb7HdJf0e", "--password-stdin"], "short1\n"],
    ["users create", ["users", "create", "dave", "--password-stdin"], "short1\n"],
    ["users set-password", ["users", "set-password", "dave", "--password-stdin"], "short1\n"],
    ["password", ["password", "--password-stdin"], "the-current-password\nshort1\n"],
  ])("%s: a password under 12 characters is WEAK_PASSWORD, exit 2, and is not sent", async (_name, argv, input) => {
    const result = await run(argv, input);
    expect(result.stderr).toContain("error: WEAK_PASSWORD: The password must be at least 12 characters.");
    expect(result.code).toBe(2);
    expect(sent.filter((call) => call.method !== "GET" && call.pathname !== "/v1/setup/check")).toEqual([]);
  });

  it("a held role or password says it was not given and which change request another approver approves", async () => {
    const created = await run(
      ["users", "create", "sock", "--role", "security", "--password-stdin"],
      "a-long-enough-password\n",
    );
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain("Created user sock with the platform roles user. Held for a second approver");
    expect(created.stdout).toContain("stint changes approve 0190b6a0-0000-7000-8000-0000000000c1");
    const reset = await run(["users", "set-password", "bob", "--password-stdin"], "a-long-enough-password\n");
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toContain("Password of bob not set yet.");
    expect(reset.stdout).not.toContain("a-long-enough-password");
  });

  it("users list names who disabled an account, and an administrator for a disable from before that was kept", async () => {
    users = [
      user("alice"),
      user("mallory", { status: "disabled", disabledBy: "user:admin" }),
      user("ada", { status: "disabled", disabledBy: "scim:entra" }),
      user("eve", { status: "disabled", disabledBy: null }),
    ];
    const result = await run(["users", "list"]);
    expect(result.code).toBe(0);
    const row = (name: string) => result.stdout.split("\n").find((line) => line.startsWith(`${name} `)) ?? "";
    expect(row("alice")).toMatch(/ active +- +user /);
    expect(row("mallory")).toMatch(/ disabled +user:admin +user /);
    expect(row("ada")).toMatch(/ disabled +scim:entra +user /);
    expect(row("eve")).toMatch(/ disabled +an administrator +user /);
  });
});
