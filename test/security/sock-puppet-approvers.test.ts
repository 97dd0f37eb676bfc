/**
 * Class: sock-puppet approvers (finding 81). Four-eyes between admins assumes one account is one person. An admin
 * made a second approver of their own (a `security` user whose password they chose, promoted at once) or took over
 * another approver's account (reset its password), signed in as it and approved their own held change request.
 * Granting a role that approves and resetting an approver's password are now held for another approver, the
 * password sealed until then; the first admin may still make the second (`fourEyes.alone: apply`).
 */
import type { DestinationStream } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiCaller } from "../../src/testing/api-call.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { wideningFile } from "./support.js";

const FILE = wideningFile();

/** The password the attacking admin chooses for the other accounts. */
const CHOSEN = "Chosen-by-the-attacker-4711";
const RESET = "Reset-by-the-attacker-0815";

let server: TestServer;
const logLines: string[] = [];
const logs: DestinationStream = { write: (line: string) => void logLines.push(line) };

const call = apiCaller(() => server);
const admin = (method: "POST" | "GET" | "PATCH" | "PUT", url: string, payload?: object) =>
  call(server.adminAuth, method, url, payload);

async function signIn(name: string, password: string) {
  return server.app.inject({ method: "POST", url: "/v1/auth/login", payload: { username: name, password } });
}
async function session(name: string, password: string): Promise<string> {
  const res = await signIn(name, password);
  expect(res.statusCode, res.body).toBe(200);
  return `Bearer ${res.json<{ accessToken: string }>().accessToken}`;
}

const roleOf = async (name: string) => (await admin("GET", `/v1/users/${name}`)).body.platformRoles as string[];
const statusOf = async (id: string) => (await admin("GET", `/v1/change-requests/${id}`)).body.status;
const eligibleRoles = async () =>
  ((await admin("GET", "/v1/eligibilities")).body.items as { role: string }[]).map((e) => e.role);

/** The admin's own widening file, held for a second admin: what the sock puppet is meant to approve. */
let heldFile = "";

beforeAll(async () => {
  server = await testServer("pglite", {
    env: { STINT_FOUR_EYES_TIERS: "high,critical" },
    logLevel: "trace",
    logDestination: logs,
  });
  // The admin's accomplice, whom the held file makes eligible for a high-risk role.
  expect((await admin("POST", "/v1/users", { name: "mallory" })).status).toBe(201);
});
afterAll(async () => server?.cleanup());

describe("the first admin still makes the second alone (fourEyes.alone: apply)", () => {
  it("a single-admin install creates another admin at once, with the waiver audited", async () => {
    const res = await admin("POST", "/v1/users", {
      name: "bob",
      password: passwordFor("bob"),
      platformRoles: ["admin"],
    });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ name: "bob", platformRoles: ["admin"] });
    const held = await admin("POST", "/v1/config/apply", { yaml: FILE });
    expect(held.body, held.text).toMatchObject({ applied: false, changeRequest: { status: "pending" } });
    heldFile = (held.body.changeRequest as { id: string }).id;
    const events = (await admin("GET", "/v1/audit/events?limit=1000")).body.items as {
      action: string;
      subject: string;
    }[];
    expect(events).toContainEqual(expect.objectContaining({ action: "user.four_eyes_waived", subject: "user:bob" }));
  });
});

describe("an admin cannot make a sock-puppet approver", () => {
  it("a new security user whose password the admin chose is not security until another approver approves", async () => {
    const created = await admin("POST", "/v1/users", { name: "sock", password: CHOSEN, platformRoles: ["security"] });
    const sock = await session("sock", CHOSEN);
    const approved = await call(sock, "POST", `/v1/change-requests/${heldFile}/approve`, {});
    expect(approved.status, approved.text).toBe(403);
    expect(await statusOf(heldFile)).toBe("pending");
    expect(await eligibleRoles()).not.toContain("payroll-admin");
    expect(created.status, created.text).toBe(202);
    expect(created.body).toMatchObject({
      user: { name: "sock", platformRoles: ["user"] },
      changeRequest: { tier: "critical" },
    });

    // The admin cannot approve the grant either, nor can sock; bob can, and then sock is security.
    const grant = (created.body.changeRequest as { id: string }).id;
    const own = await admin("POST", `/v1/change-requests/${grant}/approve`, {});
    expect(own.body.error).toMatchObject({ code: "CHANGE_REQUEST_SELF_APPROVAL" });
    expect((await call(sock, "POST", `/v1/change-requests/${grant}/approve`, {})).status).toBe(403);
    expect(await roleOf("sock")).toEqual(["user"]);
    const shown = (await admin("GET", `/v1/change-requests/${grant}`)).body;
    expect(shown).toMatchObject({ kind: "directory", status: "pending", canApprove: false });
    expect(JSON.stringify(shown)).toContain("can sign in as sock");
    const bob = await server.login("bob");
    expect((await call(bob, "POST", `/v1/change-requests/${grant}/approve`, {})).body.status).toBe("applied");
    expect(await roleOf("sock")).toEqual(["security"]);
  });

  it("a service identity's API token (an admin mints it) never approves a change request", async () => {
    const created = await admin("POST", "/v1/users", { name: "ci", kind: "service", platformRoles: ["security"] });
    expect(created.status, created.text).toBe(202);
    const grant = (created.body.changeRequest as { id: string }).id;
    const bob = await server.login("bob");
    expect((await call(bob, "POST", `/v1/change-requests/${grant}/approve`, {})).body.status).toBe("applied");
    const minted = await admin("POST", "/v1/tokens", { name: "ci-token", principal: "ci", expiresIn: "1h" });
    expect(minted.status, minted.text).toBe(201);
    const approved = await call(
      `Bearer ${minted.body.token as string}`,
      "POST",
      `/v1/change-requests/${heldFile}/approve`,
      {},
    );
    expect(approved.status, approved.text).toBe(403);
    expect(await statusOf(heldFile)).toBe("pending");
  });

  it("promoting an existing user to admin is held too, and the account concerned cannot approve it", async () => {
    const patched = await admin("PATCH", "/v1/users/sock", { platformRoles: ["admin"], displayName: "Sock" });
    expect(patched.status, patched.text).toBe(202);
    expect(patched.body).toMatchObject({ user: { displayName: "Sock", platformRoles: ["security"] } });
    const id = (patched.body.changeRequest as { id: string }).id;
    const sock = await session("sock", CHOSEN);
    const self = await call(sock, "POST", `/v1/change-requests/${id}/approve`, {});
    expect(self.body.error, self.text).toMatchObject({ code: "CHANGE_REQUEST_SELF_APPROVAL" });
    expect(await roleOf("sock")).toEqual(["security"]);
    expect((await call(sock, "POST", `/v1/change-requests/${id}/deny`, {})).body.status).toBe("denied");
  });
});

describe("an admin cannot take over another approver's account", () => {
  let sealedBefore = "";

  it("resetting another admin's password is held: the admin cannot sign in as them to approve", async () => {
    const reset = await admin("PUT", "/v1/users/bob/password", { password: RESET });
    expect((await signIn("bob", RESET)).statusCode).toBe(401);
    expect(await statusOf(heldFile)).toBe("pending");
    expect(reset.status, reset.text).toBe(202);
    const id = (reset.body.changeRequest as { id: string }).id;
    const row = await server.store.db
      .selectFrom("change_requests")
      .select("sealed_secret")
      .where("id", "=", id)
      .executeTakeFirstOrThrow();
    sealedBefore = JSON.stringify(row.sealed_secret);
    expect(sealedBefore).toContain("ciphertext");

    // bob's own password still works; another approver (sock, security now) lets the reset through.
    await session("bob", passwordFor("bob"));
    const sock = await session("sock", CHOSEN);
    expect((await call(sock, "POST", `/v1/change-requests/${id}/approve`, {})).body.status).toBe("applied");
    await session("bob", RESET);
    expect((await signIn("bob", passwordFor("bob"))).statusCode).toBe(401);
  });

  it("the held password is nowhere to read: change requests, audit events, logs, nor its hash in the sealed copy", async () => {
    const everything = [
      (await admin("GET", "/v1/change-requests?status=all")).text,
      (await admin("GET", "/v1/audit/events?limit=1000")).text,
      logLines.join("\n"),
    ].join("\n");
    expect(everything).toContain("user.password_reset");
    for (const secret of [RESET, CHOSEN]) expect(everything).not.toContain(secret);
    const hash = await server.store.db
      .selectFrom("password_credentials")
      .innerJoin("principals", "principals.id", "password_credentials.principal_id")
      .select("hash")
      .where("principals.name", "=", "bob")
      .executeTakeFirstOrThrow();
    const digest = hash.hash.split("$").at(-1)!;
    expect(everything).not.toContain(digest);
    expect(sealedBefore).not.toContain(digest);
    const left = await server.store.db.selectFrom("change_requests").select("sealed_secret").execute();
    expect(left.every((r) => r.sealed_secret === null)).toBe(true);
  });
});
