/**
 * Class: an administrator knowing another person's password (finding 89). With `identity.adminSetPasswords:
 * refused` no administrator chooses anyone's password: creating a user with one and resetting someone else's fail
 * with ADMIN_PASSWORDS_REFUSED, the invite is the way in, and everyone still changes their own. `inviteTtl` sets how
 * long an invite is good for.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
let dir = "";

const admin = async (method: "POST" | "PUT", url: string, payload?: object) => {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: server.adminAuth },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "stint-h7-"));
  const file = path.join(dir, "stint.yaml");
  await writeFile(file, "identity:\n  adminSetPasswords: refused\n  inviteTtl: 2h\n");
  server = await testServer("pglite", { env: { STINT_CONFIG_FILE: file } });
}, 60_000);
afterAll(async () => {
  await server?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe("identity.adminSetPasswords: refused", () => {
  it("creating a user with a password is refused; with an invite it works, for inviteTtl", async () => {
    const withPassword = await admin("POST", "/v1/users", { name: "alice", password: passwordFor("alice") });
    expect(withPassword.body.error).toMatchObject({ code: "ADMIN_PASSWORDS_REFUSED" });
    expect(withPassword.status).toBe(403);
    const invited = await admin("POST", "/v1/users", { name: "alice", invite: true });
    expect(invited.status).toBe(201);
    const { code, expiresAt } = invited.body.invite as { code: string; expiresAt: string };
    expect(new Date(expiresAt).getTime() - Date.now()).toBeGreaterThan(7_100_000);
    expect(new Date(expiresAt).getTime() - Date.now()).toBeLessThanOrEqual(7_200_000);
    const redeemed = await server.app.inject({
      method: "POST",
      url: "/v1/invites/redeem",
      payload: { username: "alice", code, password: passwordFor("alice") },
    });
    expect(redeemed.statusCode, redeemed.body).toBe(200);
  });

  it("an administrator's reset of someone else's password is refused; one's own change still works", async () => {
    const reset = await admin("PUT", "/v1/users/alice/password", { password: "Chosen-by-the-admin-1234" });
    expect(reset.body.error).toMatchObject({ code: "ADMIN_PASSWORDS_REFUSED" });
    const alice = await server.login("alice");
    const own = await server.app.inject({
      method: "POST",
      url: "/v1/me/password",
      headers: { authorization: alice },
      payload: { currentPassword: passwordFor("alice"), newPassword: "She-chose-this-one-7741" },
    });
    expect(own.statusCode, own.body).toBe(200);
  });
});
