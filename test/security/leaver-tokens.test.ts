/**
 * API tokens a leaver minted (finding 83). An admin mints tokens for service identities (CI jobs); the token list
 * did not say who minted which, so when that admin left (disabled, or deprovisioned by SCIM) nobody could tell which
 * live credentials a leaver had made, and keeping or rotating them was guesswork. The choice (as Entra and GitHub do
 * with app credentials): a token stays valid when its minter leaves, because it is the service's credential and
 * revoking it would stop a pipeline without warning; but it is surfaced: every token shows its minter and whether
 * they are still active, `GET /v1/tokens?minter=left` (`stint tokens list --minter-left`) lists those whose minter
 * left and `?mintedBy=NAME` (`--minted-by NAME`) one person's, and the `user.disable` event counts the live tokens
 * the leaver minted (`mintedTokensLive`).
 */
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiCaller } from "../../src/testing/api-call.js";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
let dir: string;
let base: string;
const call = apiCaller(() => server);
const minted: Record<string, { id: string; token: string }> = {};

type Token = { name: string; minter: { name: string; status: string } | null };
const tokens = async (query = "") =>
  ((await call(server.adminAuth, "GET", `/v1/tokens${query}`)).body.items as Token[]).map((t) => [t.name, t.minter]);

async function mint(auth: string, name: string): Promise<void> {
  const res = await call(auth, "POST", "/v1/tokens", { name, principal: "deploy-bot", expiresIn: "30d" });
  expect(res.status, res.text).toBe(201);
  minted[name] = { id: String(res.body.id), token: String(res.body.token) };
}

beforeAll(async () => {
  server = await testServer("pglite");
  const olga = await server.userWithRoles("olga", ["admin"]);
  const lars = await server.userWithRoles("lars", ["admin"]);
  const sven = await server.userWithRoles("sven", ["admin"]);
  expect((await call(server.adminAuth, "POST", "/v1/users", { name: "deploy-bot", kind: "service" })).status).toBe(201);
  await mint(lars, "ci");
  await mint(olga, "cd");
  await mint(lars, "nightly");
  await mint(sven, "backup");
  expect((await call(server.adminAuth, "DELETE", `/v1/tokens/${minted.nightly!.id}`)).status).toBe(200);
  await server.app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
  dir = await mkdtemp(path.join(tmpdir(), "stint-leaver-tokens-"));
  const login = await runCliCaptured(["login", "--user", "olga", "--password-stdin", "--server", base], {
    env: { STINT_CONFIG_DIR: dir },
    input: `${passwordFor("olga")}\n`,
  });
  expect(login.code, login.stderr).toBe(0);
}, 120_000);
afterAll(async () => {
  await server?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("tokens a leaver minted stay valid and are found in one command (finding 83)", () => {
  it("the list names each token's minter; disabling the minter flags theirs and the event counts the live ones", async () => {
    expect(await tokens()).toEqual(
      expect.arrayContaining([
        ["ci", { name: "lars", status: "active" }],
        ["cd", { name: "olga", status: "active" }],
      ]),
    );

    const disabled = await call(server.adminAuth, "POST", "/v1/users/lars/disable", { reason: "left the company" });
    expect(disabled.status, disabled.text).toBe(200);
    const events = await call(server.adminAuth, "GET", "/v1/audit/events?action=user.disable&limit=10");
    const event = (events.body.items as { subject: string; details: Record<string, unknown> }[]).find(
      (e) => e.subject === "user:lars",
    );
    // `ci` is live; `nightly` was revoked before, so it is not counted.
    expect(event?.details).toMatchObject({ mintedTokensLive: 1 });

    // The service's credential keeps working (the documented choice), and the list says whose it was.
    const me = await server.app.inject({
      method: "GET",
      url: "/v1/me",
      headers: { authorization: `Bearer ${minted.ci!.token}` },
    });
    expect(me.statusCode).toBe(200);
    expect(await tokens()).toContainEqual(["ci", { name: "lars", status: "disabled" }]);
    expect((await tokens("?minter=left")).map(([name]) => name).sort()).toEqual(["ci", "nightly"]);
    expect((await tokens("?mintedBy=lars")).map(([name]) => name).sort()).toEqual(["ci", "nightly"]);
    expect((await tokens("?mintedBy=olga")).map(([name]) => name)).toEqual(["cd"]);
  });

  it("a minter deprovisioned by SCIM shows as deprovisioned", async () => {
    // What a SCIM DELETE leaves of a principal (scim.service.ts): disabled, source scim-deleted.
    await server.store.db
      .updateTable("principals")
      .set({ status: "disabled", source: "scim-deleted" })
      .where("name", "=", "sven")
      .execute();
    expect(await tokens("?minter=left")).toContainEqual(["backup", { name: "sven", status: "deprovisioned" }]);
  });

  it("stint tokens list shows MINTED BY, and --minted-by / --minter-left find a leaver's tokens", async () => {
    const run = (args: string[]) =>
      runCliCaptured(["tokens", "list", ...args, "--server", base], { env: { STINT_CONFIG_DIR: dir } });
    const all = await run([]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/MINTED BY/);
    expect(all.stdout).toMatch(/\bci\b.*lars \(disabled\)/);
    expect(all.stdout).toMatch(/\bcd\b.*\bolga\b/);

    const left = await run(["--minter-left"]);
    expect(left.code, left.stderr).toBe(0);
    expect(left.stdout).toMatch(/\bci\b/);
    expect(left.stdout).not.toMatch(/\bcd\b/);

    const byLars = await run(["--minted-by", "lars", "--json"]);
    expect(byLars.code, byLars.stderr).toBe(0);
    const items = (JSON.parse(byLars.stdout) as { items: Token[] }).items;
    expect(items.map((t) => t.name).sort()).toEqual(["ci", "nightly"]);
  });
});
