/**
 * Class: the CLI on a shared machine (a jump box, a build host): another local Unix user.
 *
 * `stint db proxy ROLE --port N` listens on 127.0.0.1:N and signs in to Stint's PostgreSQL proxy with the
 * user's database token for every connection it takes. Loopback is shared by every user of the machine:
 * a listener that asks a local client for nothing hands the user's database session (recorded in the
 * user's name) to whoever connects first or meanwhile. The tunnel now asks each local client for a password
 * of its own, drawn at random per run and printed only to the user who started it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../src/testing/cli-run.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";
import { freePort } from "../../src/testing/ports.js";

let pgh: PgProxyHarness;
let dir: string;

beforeAll(async () => {
  pgh = await pgProxyHarness();
  await pgh.token(); // activates the role
  dir = await mkdtemp(path.join(tmpdir(), "stint-cli-tunnel-"));
  await saveSignedIn(dir, { name: pgh.user, now: Date.now() });
}, 120_000);

afterAll(async () => {
  await pgh?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The real server's answer to the CLI's token request, as the signed-in user. */
const fetchAsUser: typeof fetch = async (input, init) => {
  const url = new URL(String(input));
  if (init?.method === "POST" && url.pathname === "/v1/db/tokens") {
    const reply = await pgh.h.as(pgh.user, "POST", url.pathname, JSON.parse(String(init.body)));
    return new Response(JSON.stringify(reply.body), {
      status: reply.status,
      headers: { "content-type": "application/json" },
    });
  }
  return new Response(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: "no route" } }), { status: 404 });
};

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

async function currentUser(config: pg.ClientConfig): Promise<string> {
  const client = new pg.Client(config);
  client.on("error", () => undefined);
  try {
    await client.connect();
    return String((await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]?.u);
  } finally {
    await client.end().catch(() => undefined);
  }
}

describe("stint db proxy on a shared machine", () => {
  it("another local user connecting to the tunnel gets nothing; the user with the tunnel's password gets in", async () => {
    const port = await freePort();
    const signalsBefore = process.listeners("SIGINT");
    const out = { stdout: "", stderr: "" };
    const running = runCliCaptured(["db", "proxy", pgh.role, "--port", String(port), "--json"], {
      env: { STINT_CONFIG_DIR: dir, HOME: dir },
      fetch: fetchAsUser,
      onWrite: (stream, chunk) => (out[stream] += chunk),
    });
    try {
      await until("the tunnel to listen", () => out.stderr.includes("Listening on"));
      const local = { host: "127.0.0.1", port, database: pgh.database };

      // Mallory, another user of the machine, with no password, or a guessed one.
      await expect(currentUser({ ...local, user: "mallory", password: "guess" })).rejects.toThrow(
        /password authentication failed for the Stint tunnel/,
      );

      // The user reads the tunnel's password from the command's output.
      const printed = JSON.parse(out.stdout) as { host: string; port: number; password: string };
      expect(printed).toMatchObject({ host: "127.0.0.1", port });
      expect(printed.password.length).toBeGreaterThanOrEqual(32);
      expect(await currentUser({ ...local, user: pgh.user, password: printed.password })).toBe(pgh.login);
    } finally {
      for (const stop of process.listeners("SIGINT").filter((l) => !signalsBefore.includes(l))) (stop as () => void)();
      const result = await running;
      expect(result.stderr).not.toContain("error");
      expect(result.code).toBe(0);
    }
  }, 120_000);
});
