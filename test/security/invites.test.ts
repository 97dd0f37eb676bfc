/**
 * Class: an administrator knowing another person's password (finding 89). An admin made every user with a
 * password of the admin's choosing, so the admin could sign in as them (at bootstrap, the second admin too). An
 * invite lets the user choose their own: a one-time code (160 bits, kept as its SHA-256), single use, expiring,
 * replaced by a reissue, refused for a disabled user or one with a password, guessed at like a password (the
 * account locks out), and in no log, audit event or later answer.
 */
import type { DestinationStream } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { ADMIN_PASSWORD, passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

const clock = manualClock(new Date());
let server: TestServer;
const logLines: string[] = [];
const logs: DestinationStream = { write: (line: string) => void logLines.push(line) };
/** Every code answered, to look for afterwards. The admin signs in afresh for each call (the clock moves). */
const codes: string[] = [];

const admin = async (method: "GET" | "POST" | "PUT", url: string, payload?: object) => {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD) },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown>, text: res.body };
};
const redeem = async (username: string, code: string, password = passwordFor(username)) => {
  const res = await server.app.inject({
    method: "POST",
    url: "/v1/invites/redeem",
    payload: { username, code, password },
  });
  return { status: res.statusCode, code: (res.json() as { error?: { code: string } }).error?.code, text: res.body };
};
const signIn = async (username: string, password = passwordFor(username)) =>
  (await server.app.inject({ method: "POST", url: "/v1/auth/login", payload: { username, password } })).statusCode;
async function invite(name: string): Promise<string> {
  const res = await admin("POST", `/v1/users/${name}/invite`);
  expect(res.status, res.text).toBe(201);
  const code = res.body.code as string;
  codes.push(code);
  return code;
}

beforeAll(async () => {
  server = await testServer("pglite", { clock, logLevel: "trace", logDestination: logs });
}, 60_000);
afterAll(async () => server?.cleanup());

describe("invites: the user chooses their own password", () => {
  it("a user made with an invite has no password until they redeem the code, then theirs", async () => {
    const created = await admin("POST", "/v1/users", { name: "alice", invite: true });
    expect(created.status, created.text).toBe(201);
    const issued = created.body.invite as { code: string; expiresAt: string };
    codes.push(issued.code);
    expect(issued.code.length).toBeGreaterThanOrEqual(26);
    expect(new Date(issued.expiresAt).getTime() - clock.now().getTime()).toBe(86_400_000);
    expect(await signIn("alice")).toBe(401);
    expect((await redeem("alice", `${issued.code}x`)).code).toBe("INVITE_INVALID");
    expect((await redeem("bob", issued.code)).code).toBe("INVITE_INVALID");
    expect((await redeem("alice", issued.code, "short")).status).toBe(400);
    expect((await redeem("alice", issued.code)).status).toBe(200);
    expect(await signIn("alice")).toBe(200);
  });

  it("a used code is refused, and so is an invite once the user has a password", async () => {
    await admin("POST", "/v1/users", { name: "abel" });
    const code = await invite("abel");
    expect((await redeem("abel", code)).status).toBe(200);
    expect((await redeem("abel", code, "Another-password-9913")).code).toBe("INVITE_INVALID");
    expect(await signIn("abel", "Another-password-9913")).toBe(401);
    const again = await admin("POST", "/v1/users/abel/invite");
    expect(again.body.error).toMatchObject({ code: "PASSWORD_ALREADY_SET" });
  });

  it("reissuing replaces the earlier code", async () => {
    await admin("POST", "/v1/users", { name: "bert" });
    const first = await invite("bert");
    const second = await invite("bert");
    expect((await redeem("bert", first)).code).toBe("INVITE_INVALID");
    expect((await redeem("bert", second)).status).toBe(200);
  });

  it("an expired code is refused", async () => {
    await admin("POST", "/v1/users", { name: "cleo" });
    const code = await invite("cleo");
    clock.advance(86_400_000 + 60_000);
    expect((await redeem("cleo", code)).code).toBe("INVITE_INVALID");
    expect(await signIn("cleo")).toBe(401);
  });

  it("a disabled user is not invited, and disabling ends an open invite for good, enabled again or not", async () => {
    await admin("POST", "/v1/users", { name: "dora" });
    const code = await invite("dora");
    expect((await admin("POST", "/v1/users/dora/disable", { reason: "left the company" })).status).toBe(200);
    expect((await admin("POST", "/v1/users/dora/invite")).body.error).toMatchObject({ code: "ACCOUNT_DISABLED" });
    expect((await redeem("dora", code)).code).toBe("INVITE_INVALID");
    expect(await signIn("dora")).toBe(401);
    // Enabled again within the invite's 24 hours: the leaver's old code still does not work; a new one does.
    expect((await admin("POST", "/v1/users/dora/enable")).status).toBe(200);
    expect((await redeem("dora", code)).code).toBe("INVITE_INVALID");
    expect(await signIn("dora")).toBe(401);
    expect((await redeem("dora", await invite("dora"))).status).toBe(200);
    expect(await signIn("dora")).toBe(200);
  });

  it("guessing codes locks the account out like guessing passwords: then even the right code is refused", async () => {
    await admin("POST", "/v1/users", { name: "emil" });
    const code = await invite("emil");
    let answer = "";
    for (let i = 0; i < 30 && answer !== "ACCOUNT_LOCKED"; i++)
      answer = (await redeem("emil", `guess-${i}-${"x".repeat(20)}`)).code ?? "";
    expect(answer).toBe("ACCOUNT_LOCKED");
    expect((await redeem("emil", code)).code).toBe("ACCOUNT_LOCKED");
    expect(await signIn("emil")).toBe(429);
  });

  it("an invite with a password, or for a service identity, is refused", async () => {
    const both = await admin("POST", "/v1/users", { name: "finn", invite: true, password: passwordFor("finn") });
    expect(both.body.error).toMatchObject({ code: "VALIDATION_FAILED" });
    const service = await admin("POST", "/v1/users", { name: "ci", kind: "service", invite: true });
    expect(service.body.error).toMatchObject({ code: "VALIDATION_FAILED" });
  });

  it("no code is in a log, an audit event or any later answer; both ends are audited", async () => {
    // Codes of its own (the other tests' codes, those that ran before, are looked for too).
    const created = await admin("POST", "/v1/users", { name: "gwen", invite: true });
    expect(created.status, created.text).toBe(201);
    const mine = [(created.body.invite as { code: string }).code];
    for (let i = 0; i < 4; i++) mine.push(await invite("gwen"));
    codes.push(...mine);
    expect((await redeem("gwen", mine[0]!)).code).toBe("INVITE_INVALID");
    expect((await redeem("gwen", mine[4]!)).status).toBe(200);
    const events = await admin("GET", "/v1/audit/events?limit=1000");
    const everything = [events.text, (await admin("GET", "/v1/users")).text, logLines.join("\n")].join("\n");
    expect(new Set(codes).size).toBeGreaterThan(4);
    for (const code of codes) expect(everything).not.toContain(code);
    const actions = (events.body.items as { action: string; subject: string; outcome: string }[]).map(
      (e) => `${e.action} ${e.subject} ${e.outcome}`,
    );
    expect(actions).toContain("user.invited user:gwen success");
    expect(actions).toContain("user.invite_redeemed user:gwen success");
    expect(actions).toContain("user.invite_redeemed user:gwen denied");
  });
});
