/**
 * Secrets never reach a log line. A whole server logs at trace level into a
 * captured stream while it signs in (password in the body), refreshes, enrols
 * TOTP, changes and sets passwords, creates an API token and is called with
 * both kinds of bearer credential; then no line may contain any of them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DestinationStream } from "pino";
import { createLogger } from "../../src/lib/logger.js";
import { ADMIN_PASSWORD, passwordFor, testServer, totpNow, type TestServer } from "../../src/testing/server.js";

function capture(): DestinationStream & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(line);
    },
  };
}

/** A secret and the long pieces of it, so a partly logged token is caught too. */
function fragments(secret: string): string[] {
  return [secret, ...secret.split(/[._\s]/).filter((part) => part.length >= 16)];
}

describe("log redaction", () => {
  const log = capture();
  const secrets = new Map<string, string>();
  let server: TestServer;

  function remember(label: string, value: unknown): string {
    expect(typeof value === "string" && value.length >= 6, `${label} should be a secret string`).toBe(true);
    secrets.set(label, value as string);
    return value as string;
  }

  beforeAll(async () => {
    server = await testServer("pglite", { logLevel: "trace", logDestination: log });
    remember("bootstrap admin password", ADMIN_PASSWORD);
    remember("admin access token", server.adminAuth.replace(/^Bearer /, ""));
    const admin = { authorization: server.adminAuth };

    // A user created with a password, signing in with it.
    const password = remember("user password", passwordFor("redact-user"));
    await server.userWithRoles("redact-user", ["user"]);
    const login = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "redact-user", password },
    });
    expect(login.statusCode, login.body).toBe(200);
    const pair = login.json<{ accessToken: string; refreshToken: string }>();
    remember("access token", pair.accessToken);
    remember("refresh token", pair.refreshToken);

    // A failed sign-in: the wrong password is a secret too.
    const wrong = remember("wrong password", "not-the-password-but-close");
    const failed = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "redact-user", password: wrong },
    });
    expect(failed.statusCode).toBe(401);

    // A malformed body holding a password, and one refused by validation.
    const truncated = remember("password in a malformed body", "password-in-broken-json-1");
    await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      headers: { "content-type": "application/json" },
      payload: `{"username":"redact-user","password":"${truncated}"`,
    });
    const unknown = remember("password next to an unknown field", "password-next-to-junk-1");
    await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "redact-user", password: unknown, junk: true },
    });

    // Refresh: the old refresh token goes in, a new pair comes out.
    const refreshed = await server.app.inject({
      method: "POST",
      url: "/v1/auth/refresh",
      payload: { refreshToken: pair.refreshToken },
    });
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    const next = refreshed.json<{ accessToken: string; refreshToken: string }>();
    remember("refreshed access token", next.accessToken);
    remember("refreshed refresh token", next.refreshToken);
    const user = { authorization: `Bearer ${next.accessToken}` };

    // TOTP: the secret comes back once; the code and recovery codes are secrets too.
    const started = await server.app.inject({ method: "POST", url: "/v1/me/mfa/totp", headers: user });
    expect(started.statusCode, started.body).toBe(200);
    const { secret, otpauthUri } = started.json<{ secret: string; otpauthUri: string }>();
    remember("TOTP secret", secret);
    remember("TOTP URI", otpauthUri);
    const code = totpNow(secret);
    secrets.set("TOTP code (as a JSON string)", JSON.stringify(code));
    const confirmed = await server.app.inject({
      method: "POST",
      url: "/v1/me/mfa/totp/confirm",
      headers: user,
      payload: { code },
    });
    expect(confirmed.statusCode, confirmed.body).toBe(200);
    confirmed.json<{ recoveryCodes: string[] }>().recoveryCodes.forEach((c, i) => remember(`recovery code ${i}`, c));

    // Changing one's own password, and an administrator setting one.
    const newPassword = remember("new password", "a-fresh-new-password-1");
    const changed = await server.app.inject({
      method: "POST",
      url: "/v1/me/password",
      headers: user,
      payload: { currentPassword: password, newPassword },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    const setByAdmin = remember("password set by an administrator", "set-by-the-admin-123");
    const set = await server.app.inject({
      method: "PUT",
      url: "/v1/users/redact-user/password",
      headers: admin,
      payload: { password: setByAdmin },
    });
    expect(set.statusCode, set.body).toBe(200);

    // An API token for a service, then used as a bearer credential.
    const service = await server.app.inject({
      method: "POST",
      url: "/v1/users",
      headers: admin,
      payload: { name: "redact-svc", kind: "service", platformRoles: ["auditor"] },
    });
    expect(service.statusCode, service.body).toBe(201);
    const token = await server.app.inject({
      method: "POST",
      url: "/v1/tokens",
      headers: admin,
      payload: { name: "redact-token", principal: "redact-svc" },
    });
    expect(token.statusCode, token.body).toBe(201);
    const apiToken = remember("API token", token.json<{ token: string }>().token);
    const asService = await server.app.inject({
      method: "GET",
      url: "/v1/users",
      headers: { authorization: `Bearer ${apiToken}` },
    });
    expect(asService.statusCode, asService.body).toBe(200);

    // Bearer credentials that are refused are not logged either.
    const forged = remember("forged bearer", `${next.accessToken.slice(0, -8)}AAAAAAAA`);
    await server.app.inject({ method: "GET", url: "/v1/me", headers: { authorization: `Bearer ${forged}` } });
    await server.app.inject({
      method: "GET",
      url: "/v1/me",
      headers: { authorization: `Bearer ${pair.accessToken}`, cookie: `session=${pair.refreshToken}` },
    });
  });

  afterAll(async () => {
    await server?.cleanup();
  });

  it("captured the requests (the check below is not vacuous)", () => {
    const text = log.lines.join("");
    expect(log.lines.length).toBeGreaterThan(12); // one line per request (and the bootstrap lines)
    for (const url of ["/v1/auth/login", "/v1/auth/refresh", "/v1/me/mfa/totp", "/v1/tokens", "/v1/users"]) {
      expect(text).toContain(`"${url}"`);
    }
    for (const line of log.lines) expect(() => JSON.parse(line)).not.toThrow();
  });

  it("logs none of the passwords, tokens, TOTP secrets or codes", () => {
    expect(secrets.size).toBeGreaterThan(15);
    const leaks: string[] = [];
    for (const [label, secret] of secrets) {
      for (const piece of fragments(secret)) {
        const line = log.lines.find((l) => l.includes(piece));
        if (line) leaks.push(`${label} in: ${line.slice(0, 300)}`);
      }
    }
    expect(leaks).toEqual([]);
  });

  it("redacts the listed paths wherever a log call puts them", () => {
    const out = capture();
    const logger = createLogger({ level: "trace", destination: out });
    const secret = "s3cret-value-that-must-not-appear";
    logger.info(
      {
        password: secret,
        newPassword: secret,
        token: secret,
        accessToken: secret,
        refreshToken: secret,
        secret,
        code: secret,
        otp: secret,
        setupCode: secret,
        body: { password: secret, refreshToken: secret, otp: secret },
        req: { headers: { authorization: `Bearer ${secret}`, cookie: secret, "x-csrf-token": secret } },
        res: { headers: { "set-cookie": secret } },
      },
      "everything secret",
    );
    logger.child({ requestId: "r1" }).warn({ input: { token: secret, setupCode: secret } }, "child logger");
    expect(out.lines).toHaveLength(2);
    for (const line of out.lines) {
      expect(line).not.toContain(secret);
      expect(line).toContain("[redacted]");
    }
  });
});
