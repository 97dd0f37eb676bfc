/**
 * Identity over HTTP (app.inject), as a demanding operator would check it:
 * lockout and per-peer throttling, revocation on disable, refresh rotation,
 * token expiry, TOTP, API tokens, the setup code, the last administrator and
 * password storage. Every test runs on PGlite and on PostgreSQL; the
 * concurrent ones only race for real on PostgreSQL (PGlite is one connection).
 * Audit events are read from the store: the audit API is tested elsewhere.
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { manualClock, type Clock } from "../../lib/clock.js";
import { ERROR_CODES } from "../../lib/errors.js";
import type { Engine } from "../../lib/db.js";
import { createLogger } from "../../lib/logger.js";
import { createServer, type Server } from "../../server.js";
import { ENGINES, freshStore } from "../../testing/engines.js";
import { TEST_SCRYPT, passwordFor, testServer, totpNow, type TestServer } from "../../testing/server.js";
import type { AuditEvent } from "../audit/audit.types.js";
import { countActiveAdmins } from "./identity.store.js";

type Harness = Pick<Server, "app" | "store" | "audit" | "bootstrap">;

interface CallOptions {
  auth?: string | undefined;
  body?: unknown;
  remoteAddress?: string;
  headers?: Record<string, string>;
}

interface Answer {
  status: number;
  code: string | undefined;
  body: unknown;
  raw: string;
}

async function call(server: Harness, method: string, url: string, options: CallOptions = {}): Promise<Answer> {
  const res = await server.app.inject({
    method: method as "GET",
    url,
    ...(options.body !== undefined ? { payload: options.body as object } : {}),
    headers: { ...(options.auth ? { authorization: options.auth } : {}), ...options.headers },
    ...(options.remoteAddress ? { remoteAddress: options.remoteAddress } : {}),
  });
  let body: unknown;
  try {
    body = res.json();
  } catch {
    body = undefined;
  }
  return {
    status: res.statusCode,
    code: (body as { error?: { code?: string } } | undefined)?.error?.code,
    body,
    raw: res.body,
  };
}

interface Pair {
  accessToken: string;
  refreshToken: string;
  accessTokenExpiresAt: string;
  principal: { name: string; platformRoles: string[]; mfaEnrolled: boolean };
}

function signIn(
  server: Harness,
  username: string,
  password: string,
  extra: { otp?: string; remoteAddress?: string; headers?: Record<string, string> } = {},
) {
  return call(server, "POST", "/v1/auth/login", {
    body: { username, password, ...(extra.otp ? { otp: extra.otp } : {}) },
    ...(extra.remoteAddress ? { remoteAddress: extra.remoteAddress } : {}),
    ...(extra.headers ? { headers: extra.headers } : {}),
  });
}

async function session(server: Harness, username: string, password = passwordFor(username), otp?: string) {
  const res = await signIn(server, username, password, otp ? { otp } : {});
  expect(res.status, res.raw).toBe(200);
  const pair = res.body as Pair;
  return { ...pair, auth: `Bearer ${pair.accessToken}` };
}

const me = (server: Harness, auth: string) => call(server, "GET", "/v1/me", { auth });
const refresh = (server: Harness, refreshToken: string) =>
  call(server, "POST", "/v1/auth/refresh", { body: { refreshToken } });

async function createUser(server: Harness, adminAuth: string, name: string, extra: Record<string, unknown> = {}) {
  const res = await call(server, "POST", "/v1/users", {
    auth: adminAuth,
    body: { name, password: passwordFor(name), ...extra },
  });
  expect(res.status, res.raw).toBe(201);
  return res.body;
}

async function createService(server: Harness, adminAuth: string, name: string) {
  const res = await call(server, "POST", "/v1/users", { auth: adminAuth, body: { name, kind: "service" } });
  expect(res.status, res.raw).toBe(201);
}

async function createToken(server: Harness, adminAuth: string, principal: string, name: string, expiresIn = "30d") {
  const res = await call(server, "POST", "/v1/tokens", {
    auth: adminAuth,
    body: { name, principal, expiresIn },
  });
  expect(res.status, res.raw).toBe(201);
  return res.body as { id: string; token: string; expiresAt: string };
}

async function auditEvents(server: Harness, action?: string): Promise<AuditEvent[]> {
  const events = await server.audit.read({ afterSeq: 0, limit: 10_000 });
  return action ? events.filter((e) => e.action === action) : events;
}

const disable = (server: Harness, auth: string, name: string) =>
  call(server, "POST", `/v1/users/${name}/disable`, { auth, body: { reason: "left the company" } });

describe.each(ENGINES)("identity over HTTP on %s", (engine: Engine) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  /**
   * One server with the default settings, shared by the tests whose users are theirs alone and whose global
   * checks (an audit action's events, the token list) count what no other of them writes.
   */
  let shared: Promise<TestServer> | undefined;
  const sharedServer = () => (shared ??= testServer(engine));
  afterAll(async () => {
    await (await shared)?.cleanup();
  });

  async function start(env: NodeJS.ProcessEnv = {}, clock?: Clock) {
    const server = await testServer(engine, { env, ...(clock ? { clock } : {}) });
    cleanups.push(() => server.cleanup());
    return server;
  }

  /** A server started without STINT_BOOTSTRAP_ADMIN_PASSWORD: bootstrap() issues a setup code. */
  async function startWithoutAdmin(clock?: Clock) {
    const t = await freshStore(engine);
    const parsed = loadConfig({ STINT_LOG_LEVEL: "silent" });
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const server = await createServer({
      config: parsed.config,
      logger: createLogger({ level: "silent" }),
      masterKey: randomBytes(32),
      store: t.store,
      scrypt: TEST_SCRYPT,
      ...(clock ? { clock } : {}),
    });
    await server.app.ready();
    cleanups.push(async () => {
      await server.close();
      await t.cleanup().catch(() => undefined);
    });
    return server;
  }

  describe("sign-in throttling", () => {
    it("three wrong passwords lock the account, even against the right one, until the lockout passes", async () => {
      const clock = manualClock();
      const server = await start({ STINT_LOGIN_MAX_FAILURES: "3", STINT_LOGIN_LOCKOUT: "5m" }, clock);
      await server.userWithRoles("alice", ["user"]);

      for (let i = 0; i < 3; i++) {
        const wrong = await signIn(server, "alice", "not-the-password-at-all");
        expect([wrong.status, wrong.code]).toEqual([401, "INVALID_CREDENTIALS"]);
      }
      const locked = await signIn(server, "alice", passwordFor("alice"));
      expect([locked.status, locked.code]).toEqual([429, "ACCOUNT_LOCKED"]);
      expect(locked.raw).not.toContain("accessToken");

      const denied = (await auditEvents(server, "auth.login")).filter(
        (e) => e.outcome === "denied" && e.subject === "user:alice",
      );
      expect(denied).toHaveLength(4);
      expect(denied.filter((e) => e.reason === "wrong password")).toHaveLength(3);
      const lockouts = await auditEvents(server, "auth.lockout");
      expect(lockouts.map((e) => [e.subject, e.outcome])).toEqual([["user:alice", "denied"]]);
      expect(lockouts[0]!.details.lockedUntil).toBe(new Date(clock.now().getTime() + 300_000).toISOString());

      clock.advance(299_000);
      const stillLocked = await signIn(server, "alice", passwordFor("alice"));
      expect([stillLocked.status, stillLocked.code]).toEqual([429, "ACCOUNT_LOCKED"]);

      clock.advance(2_000);
      const after = await session(server, "alice");
      // The access token's exp is checked against the same (manual) clock.
      expect((await me(server, after.auth)).status).toBe(200);
      // A successful sign-in starts the account's count afresh.
      const oneWrong = await signIn(server, "alice", "not-the-password-at-all");
      expect([oneWrong.status, oneWrong.code]).toEqual([401, "INVALID_CREDENTIALS"]);
    });

    it("an unknown user gets the same answer as a wrong password and is locked out the same way", async () => {
      const server = await start({ STINT_LOGIN_MAX_FAILURES: "3" });
      await server.userWithRoles("alice", ["user"]);

      const wrongPassword = await signIn(server, "alice", "not-the-password-at-all");
      const unknownUser = await signIn(server, "ghost", "not-the-password-at-all");
      expect([unknownUser.status, unknownUser.code]).toEqual([401, "INVALID_CREDENTIALS"]);
      expect(unknownUser.body).toEqual(wrongPassword.body);

      await signIn(server, "ghost", "not-the-password-at-all");
      await signIn(server, "ghost", "not-the-password-at-all");
      const lockedGhost = await signIn(server, "ghost", "not-the-password-at-all");
      await signIn(server, "alice", "not-the-password-at-all");
      await signIn(server, "alice", "not-the-password-at-all");
      const lockedAlice = await signIn(server, "alice", passwordFor("alice"));
      expect([lockedGhost.status, lockedGhost.code]).toEqual([429, "ACCOUNT_LOCKED"]);
      expect(lockedGhost.body).toEqual(lockedAlice.body);
      expect((await auditEvents(server, "auth.lockout")).map((e) => e.subject).sort()).toEqual([
        "user:alice",
        "user:ghost",
      ]);
    });

    it("simultaneous wrong passwords cannot buy more guesses than the limit", async () => {
      const server = await start({ STINT_LOGIN_MAX_FAILURES: "3" });
      await server.userWithRoles("alice", ["user"]);

      // From 20 different peers, so only the account's counter is in play.
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          signIn(server, "alice", `wrong-password-number-${i}`, { remoteAddress: `10.0.0.${i + 1}` }),
        ),
      );
      const codes = answers.map((a) => a.code);
      expect(codes.filter((c) => c === "INVALID_CREDENTIALS")).toHaveLength(3);
      expect(codes.filter((c) => c === "ACCOUNT_LOCKED")).toHaveLength(17);
      const locked = await signIn(server, "alice", passwordFor("alice"), { remoteAddress: "10.0.1.1" });
      expect(locked.code).toBe("ACCOUNT_LOCKED");
      expect((await auditEvents(server, "auth.lockout")).map((e) => e.subject)).toEqual(["user:alice"]);
    });

    it("the right password racing wrong ones is not let in once the lockout has begun", async () => {
      const server = await start({ STINT_LOGIN_MAX_FAILURES: "3" });
      await server.userWithRoles("alice", ["user"]);

      // The right password is sent last: it is checked while the wrong ones are locking the account.
      const attempts = Array.from({ length: 12 }, (_, i) => (i === 11 ? passwordFor("alice") : `wrong-password-${i}`));
      const answers = await Promise.all(
        attempts.map((password, i) => signIn(server, "alice", password, { remoteAddress: `10.0.0.${i + 1}` })),
      );
      const right = answers.at(-1)!;
      const events = await auditEvents(server);
      const lockout = events.find((e) => e.action === "auth.lockout");
      const success = events.find(
        (e) => e.action === "auth.login" && e.outcome === "success" && e.sourceIp === "10.0.0.12",
      );
      if (right.status === 200) {
        // Let in only if it got there before the third failure locked the account.
        expect(success).toBeDefined();
        expect(lockout === undefined || success!.seq < lockout.seq).toBe(true);
      } else {
        expect([right.status, right.code]).toEqual([429, "ACCOUNT_LOCKED"]);
        expect(success).toBeUndefined();
      }
    });

    it("without trusted proxies X-Forwarded-For is ignored: the real peer is audited and throttled", async () => {
      // The per-address limit is four times the per-account one: 8 here.
      const server = await start({ STINT_LOGIN_MAX_FAILURES: "2" });
      await server.userWithRoles("alice", ["user"]);

      const plain = await signIn(server, "nobody", "not-the-password-at-all", {
        headers: { "x-forwarded-for": "203.0.113.1" },
      });
      expect(plain.status).toBe(401);
      const [first] = (await auditEvents(server, "auth.login")).filter((e) => e.subject === "user:nobody");
      expect(first!.sourceIp).toBe("127.0.0.1");

      // One failure each for eight names from one peer that claims a new address every time.
      for (let i = 0; i < 8; i++) {
        const res = await signIn(server, `guess${i}`, "not-the-password-at-all", {
          remoteAddress: "198.51.100.7",
          headers: { "x-forwarded-for": `203.0.113.${i + 10}` },
        });
        expect(res.code).toBe("INVALID_CREDENTIALS");
      }
      const guesses = (await auditEvents(server, "auth.login")).filter((e) => e.subject?.startsWith("user:guess"));
      expect(guesses).toHaveLength(8);
      expect(new Set(guesses.map((e) => e.sourceIp))).toEqual(new Set(["198.51.100.7"]));
      expect((await auditEvents(server, "auth.lockout")).map((e) => e.subject)).toEqual(["ip:198.51.100.7"]);

      const fromLockedPeer = await signIn(server, "alice", passwordFor("alice"), {
        remoteAddress: "198.51.100.7",
        headers: { "x-forwarded-for": "203.0.113.99" },
      });
      expect([fromLockedPeer.status, fromLockedPeer.code]).toEqual([429, "ACCOUNT_LOCKED"]);
      const fromOtherPeer = await signIn(server, "alice", passwordFor("alice"), {
        remoteAddress: "198.51.100.8",
        headers: { "x-forwarded-for": "198.51.100.7" },
      });
      expect(fromOtherPeer.status).toBe(200);
    });

    it("behind a trusted proxy the X-Forwarded-For address is the one audited and throttled", async () => {
      const server = await start({ STINT_LOGIN_MAX_FAILURES: "2", STINT_TRUSTED_PROXIES: "127.0.0.1" });
      await server.userWithRoles("alice", ["user"]);

      for (let i = 0; i < 8; i++) {
        // The client may prepend anything; only the address the proxy saw counts.
        const res = await signIn(server, `guess${i}`, "not-the-password-at-all", {
          headers: { "x-forwarded-for": `192.0.2.${i + 1}, 203.0.113.9` },
        });
        expect(res.code).toBe("INVALID_CREDENTIALS");
      }
      const guesses = (await auditEvents(server, "auth.login")).filter((e) => e.subject?.startsWith("user:guess"));
      expect(new Set(guesses.map((e) => e.sourceIp))).toEqual(new Set(["203.0.113.9"]));
      expect((await auditEvents(server, "auth.lockout")).map((e) => e.subject)).toEqual(["ip:203.0.113.9"]);

      const sameClient = await signIn(server, "alice", passwordFor("alice"), {
        headers: { "x-forwarded-for": "203.0.113.9" },
      });
      expect([sameClient.status, sameClient.code]).toEqual([429, "ACCOUNT_LOCKED"]);
      const otherClient = await signIn(server, "alice", passwordFor("alice"), {
        headers: { "x-forwarded-for": "203.0.113.10" },
      });
      expect(otherClient.status).toBe(200);

      // A peer that is not a trusted proxy cannot borrow (or frame) an address.
      const untrusted = await signIn(server, "alice", passwordFor("alice"), {
        remoteAddress: "192.0.2.50",
        headers: { "x-forwarded-for": "203.0.113.9" },
      });
      expect(untrusted.status).toBe(200);
      const last = (await auditEvents(server, "auth.login")).at(-1)!;
      expect([last.outcome, last.sourceIp]).toEqual(["success", "192.0.2.50"]);
    });
  });

  describe("sessions", () => {
    it("disabling a principal ends its sessions and API tokens at once; enabling brings none back", async () => {
      const server = await sharedServer();
      await server.userWithRoles("sam", ["user"]);
      const first = await session(server, "sam");
      const second = await session(server, "sam");
      await createService(server, server.adminAuth, "deploy-bot");
      const tokenA = await createToken(server, server.adminAuth, "deploy-bot", "ci");
      const tokenB = await createToken(server, server.adminAuth, "deploy-bot", "cd");
      const botAuth = `Bearer ${tokenA.token}`;
      expect((await me(server, first.auth)).status).toBe(200);
      expect((await me(server, botAuth)).status).toBe(200);

      const disabled = await disable(server, server.adminAuth, "sam");
      expect(disabled.body).toMatchObject({ status: "disabled", disabledBy: "user:admin" });
      const listed = (await call(server, "GET", "/v1/users", { auth: server.adminAuth })).body as {
        items: { name: string; disabledBy: string | null }[];
      };
      expect(listed.items.find((u) => u.name === "sam")?.disabledBy).toBe("user:admin");
      expect(listed.items.find((u) => u.name === "admin")?.disabledBy).toBeNull();
      for (const pair of [first, second]) {
        const access = await me(server, pair.auth);
        expect([access.status, access.code]).toEqual([401, "UNAUTHENTICATED"]);
        expect((await refresh(server, pair.refreshToken)).status).toBe(401);
      }
      const signInDisabled = await signIn(server, "sam", passwordFor("sam"));
      expect([signInDisabled.status, signInDisabled.code]).toEqual([403, "ACCOUNT_DISABLED"]);

      expect((await disable(server, server.adminAuth, "deploy-bot")).status).toBe(200);
      expect((await me(server, botAuth)).status).toBe(401);
      expect((await me(server, `Bearer ${tokenB.token}`)).status).toBe(401);

      const disables = await auditEvents(server, "user.disable");
      expect(disables.map((e) => [e.subject, e.details, e.reason])).toEqual([
        // userWithRoles signed in once too.
        ["user:sam", { sessionsEnded: 3, tokensRevoked: 0, mintedTokensLive: 0, requestsEnded: 0 }, "left the company"],
        [
          "service:deploy-bot",
          { sessionsEnded: 0, tokensRevoked: 2, mintedTokensLive: 0, requestsEnded: 0 },
          "left the company",
        ],
      ]);

      for (const name of ["sam", "deploy-bot"]) {
        const enabled = await call(server, "POST", `/v1/users/${name}/enable`, { auth: server.adminAuth });
        expect(enabled.body).toMatchObject({ status: "active", disabledBy: null });
      }
      for (const pair of [first, second]) {
        expect((await me(server, pair.auth)).status).toBe(401);
        expect((await refresh(server, pair.refreshToken)).status).toBe(401);
      }
      expect((await me(server, botAuth)).status).toBe(401);
      const tokens = (await call(server, "GET", "/v1/tokens", { auth: server.adminAuth })).body as {
        items: { id: string; revokedAt: string | null }[];
      };
      expect(
        tokens.items
          .filter((t) => t.revokedAt !== null)
          .map((t) => t.id)
          .sort(),
      ).toEqual([tokenA.id, tokenB.id].sort());
      const fresh = await session(server, "sam");
      expect((await me(server, fresh.auth)).status).toBe(200);
    });

    it("refresh rotates the token; presenting a rotated one ends that whole session", async () => {
      const server = await sharedServer();
      await server.userWithRoles("rita", ["user"]);
      const other = await session(server, "rita");
      const first = await session(server, "rita");

      const rotated = await refresh(server, first.refreshToken);
      expect(rotated.status).toBe(200);
      const second = rotated.body as Pair;
      expect(second.refreshToken).not.toBe(first.refreshToken);
      expect(second.accessToken).not.toBe(first.accessToken);
      expect((await me(server, `Bearer ${second.accessToken}`)).status).toBe(200);

      const replay = await refresh(server, first.refreshToken);
      expect([replay.status, replay.code]).toEqual([401, "UNAUTHENTICATED"]);
      expect((await refresh(server, second.refreshToken)).status).toBe(401);
      expect((await me(server, `Bearer ${second.accessToken}`)).status).toBe(401);
      expect((await me(server, first.auth)).status).toBe(401);

      const revoked = await auditEvents(server, "auth.session_revoked");
      expect(revoked).toHaveLength(1);
      expect([revoked[0]!.subject, revoked[0]!.outcome]).toEqual(["user:rita", "denied"]);
      // Only the session whose token leaked ends.
      expect((await me(server, other.auth)).status).toBe(200);
      expect((await refresh(server, other.refreshToken)).status).toBe(200);
    });

    it("an access token expires after STINT_ACCESS_TOKEN_TTL on the server's clock; refresh still works", async () => {
      const clock = manualClock();
      const server = await start({ STINT_ACCESS_TOKEN_TTL: "2m", STINT_REFRESH_SESSION_TTL: "1h" }, clock);
      await server.userWithRoles("alice", ["user"]);
      const pair = await session(server, "alice");
      expect(pair.accessTokenExpiresAt).toBe(new Date(clock.now().getTime() + 120_000).toISOString());

      clock.advance(119_000);
      expect((await me(server, pair.auth)).status).toBe(200);
      clock.advance(1_000);
      const expired = await me(server, pair.auth);
      expect([expired.status, expired.code]).toEqual([401, "TOKEN_EXPIRED"]);

      const renewed = await refresh(server, pair.refreshToken);
      expect(renewed.status).toBe(200);
      expect((await me(server, `Bearer ${(renewed.body as Pair).accessToken}`)).status).toBe(200);

      // The refresh session has its own, longer limit.
      clock.advance(3_600_000);
      expect((await refresh(server, (renewed.body as Pair).refreshToken)).status).toBe(401);
    });

    it("logout ends the session: its access and refresh tokens stop working, other sessions do not", async () => {
      const server = await sharedServer();
      await server.userWithRoles("lola", ["user"]);
      const other = await session(server, "lola");
      const pair = await session(server, "lola");

      const out = await call(server, "POST", "/v1/auth/logout", { auth: pair.auth });
      expect(out.status, out.raw).toBe(200);
      expect((await me(server, pair.auth)).status).toBe(401);
      expect((await refresh(server, pair.refreshToken)).status).toBe(401);
      expect((await me(server, other.auth)).status).toBe(200);
      expect((await auditEvents(server, "auth.logout")).map((e) => e.subject)).toEqual(["user:lola"]);
    });
  });

  describe("TOTP", () => {
    it("enrols once, accepts each code once, issues ten single-use recovery codes and seals the secret", async () => {
      const clock = manualClock();
      const server = await start({}, clock);
      const auth = await server.userWithRoles("alice", ["user"]);
      const now = () => clock.now().getTime();

      const started = await call(server, "POST", "/v1/me/mfa/totp", { auth });
      expect(started.status).toBe(200);
      const { secret } = started.body as { secret: string; otpauthUri: string };
      expect(secret).toMatch(/^[A-Z2-7]{32}$/);

      const stored = await server.store.db.selectFrom("mfa_totp").selectAll().execute();
      expect(stored).toHaveLength(1);
      expect(JSON.stringify(stored)).not.toContain(secret);
      expect(JSON.stringify(stored).toLowerCase()).not.toContain(secret.toLowerCase());

      const wrongCode = String((Number(totpNow(secret, now())) + 1) % 1_000_000).padStart(6, "0");
      const badConfirm = await call(server, "POST", "/v1/me/mfa/totp/confirm", { auth, body: { code: wrongCode } });
      expect([badConfirm.status, badConfirm.code]).toEqual([401, "MFA_INVALID"]);

      const confirmCode = totpNow(secret, now());
      const confirmed = await call(server, "POST", "/v1/me/mfa/totp/confirm", { auth, body: { code: confirmCode } });
      expect(confirmed.status, confirmed.raw).toBe(200);
      const { recoveryCodes } = confirmed.body as { recoveryCodes: string[] };
      expect(recoveryCodes).toHaveLength(10);
      expect(new Set(recoveryCodes).size).toBe(10);
      for (const code of recoveryCodes) expect(code).toMatch(/^[a-z2-9]{5}-[a-z2-9]{5}$/);
      const storedCodes = JSON.stringify(await server.store.db.selectFrom("recovery_codes").selectAll().execute());
      for (const code of recoveryCodes) expect(storedCodes).not.toContain(code);

      const again = await call(server, "POST", "/v1/me/mfa/totp", { auth });
      expect([again.status, again.code]).toEqual([409, "MFA_ALREADY_ENROLLED"]);
      const reconfirm = await call(server, "POST", "/v1/me/mfa/totp/confirm", {
        auth,
        body: { code: totpNow(secret, now()) },
      });
      expect([reconfirm.status, reconfirm.code]).toEqual([409, "MFA_ALREADY_ENROLLED"]);

      const password = passwordFor("alice");
      const noCode = await signIn(server, "alice", password);
      expect([noCode.status, noCode.code]).toEqual([401, "MFA_REQUIRED"]);
      // The code that confirmed enrolment is spent.
      const replayedConfirm = await signIn(server, "alice", password, { otp: confirmCode });
      expect([replayedConfirm.status, replayedConfirm.code]).toEqual([401, "MFA_INVALID"]);

      clock.advance(30_000);
      const code = totpNow(secret, now());
      const withCode = await session(server, "alice", password, code);
      expect(withCode.principal.mfaEnrolled).toBe(true);
      const replay = await signIn(server, "alice", password, { otp: code });
      expect([replay.status, replay.code]).toEqual([401, "MFA_INVALID"]);
      // Nor is the previous step's code usable after a later one was accepted.
      const older = await signIn(server, "alice", password, { otp: totpNow(secret, now() - 30_000) });
      expect(older.code).toBe("MFA_INVALID");

      const viaRecovery = await signIn(server, "alice", password, { otp: recoveryCodes[0]! });
      expect(viaRecovery.status, viaRecovery.raw).toBe(200);
      const recoveryAgain = await signIn(server, "alice", password, { otp: recoveryCodes[0]! });
      expect([recoveryAgain.status, recoveryAgain.code]).toEqual([401, "MFA_INVALID"]);
      expect((await signIn(server, "alice", password, { otp: recoveryCodes[1]!.toUpperCase() })).status).toBe(200);

      const denials = (await auditEvents(server, "auth.login")).filter((e) => e.outcome === "denied");
      expect(denials.map((e) => e.reason)).toEqual([
        "one-time code missing",
        "one-time code reused",
        "one-time code reused",
        "one-time code reused",
        "wrong recovery code",
      ]);
      const enrolments = (await auditEvents(server, "mfa.enrolled")).map((e) => [e.outcome, e.reason, e.details]);
      expect(enrolments).toEqual([
        ["denied", ERROR_CODES.MFA_INVALID.message, {}],
        ["success", null, { method: "totp", recoveryCodes: 10 }],
        ["denied", ERROR_CODES.MFA_ALREADY_ENROLLED.message, {}],
      ]);
      expect((await auditEvents(server, "mfa.enrollment_started")).map((e) => e.outcome)).toEqual([
        "success",
        "denied",
      ]);
      expect(
        (await auditEvents(server, "mfa.enrolled")).filter((e) => e.outcome === "success").map((e) => e.details),
      ).toEqual([{ method: "totp", recoveryCodes: 10 }]);
      const everything = JSON.stringify(await auditEvents(server));
      expect(everything).not.toContain(secret);
      for (const c of recoveryCodes) expect(everything).not.toContain(c);
    });
  });

  describe("API tokens", () => {
    it("are for service identities only, shown once, stored hashed, 256-bit, and stop at expiry or revocation", async () => {
      const clock = manualClock();
      const server = await start({ STINT_ACCESS_TOKEN_TTL: "3h" }, clock);
      await server.userWithRoles("alice", ["user"]);
      await createService(server, server.adminAuth, "deploy-bot");

      const forUser = await call(server, "POST", "/v1/tokens", {
        auth: server.adminAuth,
        body: { name: "ci", principal: "alice", expiresIn: "1d" },
      });
      expect([forUser.status, forUser.code]).toEqual([400, "VALIDATION_FAILED"]);

      const short = await createToken(server, server.adminAuth, "deploy-bot", "short", "1h");
      const long = await createToken(server, server.adminAuth, "deploy-bot", "long", "30d");
      const format = /^stint_[0-9a-f]{32}_([A-Za-z0-9_-]{43})$/;
      expect(short.token).toMatch(format);
      expect(long.token).toMatch(format);
      const secrets = [short.token, long.token].map((t) => format.exec(t)![1]!);
      expect(secrets[0]).not.toBe(secrets[1]);
      expect(Buffer.from(secrets[0]!, "base64url")).toHaveLength(32);
      expect(short.expiresAt).toBe(new Date(clock.now().getTime() + 3_600_000).toISOString());

      const listed = await call(server, "GET", "/v1/tokens", { auth: server.adminAuth });
      expect(listed.status).toBe(200);
      const rows = JSON.stringify(await server.store.db.selectFrom("api_tokens").selectAll().execute());
      const audit = JSON.stringify(await auditEvents(server));
      for (const [i, created] of [short, long].entries()) {
        for (const where of [listed.raw, rows, audit]) {
          expect(where).not.toContain(created.token);
          expect(where).not.toContain(secrets[i]);
        }
      }
      expect((listed.body as { items: Record<string, unknown>[] }).items.every((t) => !("token" in t))).toBe(true);

      const asBot = await me(server, `Bearer ${short.token}`);
      expect(asBot.status).toBe(200);
      expect(asBot.body).toMatchObject({ name: "deploy-bot", kind: "service" });
      const forged = short.token.slice(0, -4) + (short.token.endsWith("AAAA") ? "BBBB" : "AAAA");
      expect((await me(server, `Bearer ${forged}`)).status).toBe(401);

      clock.advance(3_600_000);
      const expired = await me(server, `Bearer ${short.token}`);
      expect([expired.status, expired.code]).toEqual([401, "UNAUTHENTICATED"]);
      expect((await me(server, `Bearer ${long.token}`)).status).toBe(200);

      const revoke = await call(server, "DELETE", `/v1/tokens/${long.id}`, { auth: server.adminAuth });
      expect(revoke.status).toBe(200);
      expect((await me(server, `Bearer ${long.token}`)).status).toBe(401);
      expect((await auditEvents(server, "token.revoke")).map((e) => e.details)).toEqual([{ tokenId: long.id }]);
    });
  });

  describe("setup", () => {
    it("without a bootstrap password, the one-time setup code creates the first administrator once", async () => {
      const server = await startWithoutAdmin();
      const { setupCode, created } = await server.bootstrap();
      expect(created).toBeUndefined();
      expect(setupCode).toMatch(/^[A-Za-z0-9_-]{27,}$/);
      expect(JSON.stringify(await server.store.db.selectFrom("setup_codes").selectAll().execute())).not.toContain(
        setupCode,
      );
      const password = "correct horse battery staple";

      const wrong = await call(server, "POST", "/v1/setup", {
        body: { code: `${setupCode}x`, username: "root", password },
      });
      expect([wrong.status, wrong.code]).toEqual([401, "SETUP_CODE_INVALID"]);
      const claims = await auditEvents(server, "setup.claim");
      expect(claims.map((e) => [e.outcome, e.subject])).toEqual([["denied", "user:root"]]);

      const weak = await call(server, "POST", "/v1/setup", {
        body: { code: setupCode, username: "root", password: "rootrootrootroot" },
      });
      expect([weak.status, weak.code]).toEqual([400, "WEAK_PASSWORD"]);

      const claimed = await call(server, "POST", "/v1/setup", {
        body: { code: setupCode, username: "root", password },
      });
      expect(claimed.status, claimed.raw).toBe(201);
      expect(claimed.body).toMatchObject({ name: "root", status: "active" });
      expect((claimed.body as { platformRoles: string[] }).platformRoles).toContain("admin");
      const root = await session(server, "root", password);
      expect((await call(server, "GET", "/v1/users", { auth: root.auth })).status).toBe(200);

      const reuse = await call(server, "POST", "/v1/setup", {
        body: { code: setupCode, username: "mallory", password },
      });
      expect([reuse.status, reuse.code]).toEqual([409, "SETUP_ALREADY_DONE"]);
      expect(await server.bootstrap()).toEqual({});
      expect((await signIn(server, "mallory", password)).status).toBe(401);
    });

    it("a setup code expires after a day, and a newer code replaces the older one", async () => {
      const clock = manualClock();
      const server = await startWithoutAdmin(clock);
      const older = (await server.bootstrap()).setupCode!;
      const newer = (await server.bootstrap()).setupCode!;
      expect(newer).not.toBe(older);
      const body = (code: string) => ({ code, username: "root", password: "correct horse battery staple" });

      const replaced = await call(server, "POST", "/v1/setup", { body: body(older) });
      expect([replaced.status, replaced.code]).toEqual([401, "SETUP_CODE_INVALID"]);
      clock.advance(86_400_000);
      const expired = await call(server, "POST", "/v1/setup", { body: body(newer) });
      expect([expired.status, expired.code]).toEqual([401, "SETUP_CODE_INVALID"]);
    });
  });

  describe("administrators", () => {
    it("refuses to disable or demote the last active administrator", async () => {
      const server = await start();
      const lastAdmin = await disable(server, server.adminAuth, "admin");
      expect([lastAdmin.status, lastAdmin.code]).toEqual([409, "CONFLICT"]);
      const demote = await call(server, "PATCH", "/v1/users/admin", {
        auth: server.adminAuth,
        body: { platformRoles: ["user"] },
      });
      expect([demote.status, demote.code]).toEqual([409, "CONFLICT"]);
      expect((await call(server, "GET", "/v1/users/admin", { auth: server.adminAuth })).body).toMatchObject({
        status: "active",
        platformRoles: ["admin", "user"],
      });

      const bobAuth = await server.userWithRoles("bob", ["admin"]);
      expect((await disable(server, bobAuth, "admin")).status).toBe(200);
      // A disabled administrator is not one of the active ones: demoting it takes nothing away.
      const demoteDisabled = await call(server, "PATCH", "/v1/users/admin", {
        auth: bobAuth,
        body: { platformRoles: ["user"] },
      });
      expect(demoteDisabled.status, demoteDisabled.raw).toBe(200);
      expect((await disable(server, bobAuth, "bob")).code).toBe("CONFLICT");
      const demoteBob = await call(server, "PATCH", "/v1/users/bob", {
        auth: bobAuth,
        body: { platformRoles: ["user"] },
      });
      expect(demoteBob.code).toBe("CONFLICT");
      expect((await me(server, bobAuth)).body).toMatchObject({ status: "active", platformRoles: ["admin"] });
    });

    it("administrators removing each other at the same moment never leave none", async () => {
      const server = await start();
      const auths = new Map([["admin", server.adminAuth]]);
      let survivor = "admin";
      for (let round = 0; round < 3; round++) {
        const rival = `rival${round}`;
        await createUser(server, auths.get(survivor)!, rival, { platformRoles: ["admin"] });
        auths.set(rival, (await session(server, rival)).auth);
        expect(await countActiveAdmins(server.store.db)).toBe(2);
        // One removes the other by disabling, the other by demoting, at once.
        const answers = await Promise.all([
          disable(server, auths.get(survivor)!, rival),
          call(server, "PATCH", `/v1/users/${survivor}`, {
            auth: auths.get(rival)!,
            body: { platformRoles: ["user"] },
          }),
        ]);
        // The loser is refused (409) or, if it lost its admin role first, not allowed in at all (401/403).
        expect(
          answers.filter((a) => a.status === 200),
          answers.map((a) => a.raw).join("\n"),
        ).toHaveLength(1);
        expect(answers.every((a) => [200, 401, 403, 409].includes(a.status))).toBe(true);
        expect(await countActiveAdmins(server.store.db)).toBe(1);
        if (answers[1]!.status === 200) survivor = rival;
      }
    });
  });

  describe("passwords", () => {
    it("are stored as salted scrypt, never in clear, and weak ones are refused with WEAK_PASSWORD", async () => {
      const server = await sharedServer();
      const password = "same password for both";
      for (const name of ["alice", "bob"]) {
        const res = await call(server, "POST", "/v1/users", { auth: server.adminAuth, body: { name, password } });
        expect(res.status, res.raw).toBe(201);
      }
      const hashes = await server.store.db
        .selectFrom("password_credentials")
        .innerJoin("principals", "principals.id", "password_credentials.principal_id")
        .select(["principals.name", "password_credentials.hash"])
        .where("principals.name", "in", ["alice", "bob"])
        .execute();
      expect(hashes).toHaveLength(2);
      for (const { hash } of hashes) {
        expect(hash).toMatch(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
        expect(hash).not.toContain(password);
      }
      expect(hashes[0]!.hash).not.toBe(hashes[1]!.hash);
      expect(JSON.stringify(await auditEvents(server))).not.toContain(password);

      const weak = [
        { name: "carol", password: "carol-is-the-best-1" }, // contains the name
        { name: "dave", password: "abababababababab" }, // too few distinct characters
      ];
      for (const body of weak) {
        const res = await call(server, "POST", "/v1/users", { auth: server.adminAuth, body });
        expect([res.status, res.code]).toEqual([400, "WEAK_PASSWORD"]);
      }
      const tooShort = await call(server, "POST", "/v1/users", {
        auth: server.adminAuth,
        body: { name: "erin", password: "Sh0rt!" },
      });
      expect(tooShort.status).toBe(400);
      const names = (await server.store.db.selectFrom("principals").select("name").execute()).map((r) => r.name);
      expect(names).not.toContain("carol");
      expect(names).not.toContain("erin");

      const reset = await call(server, "PUT", "/v1/users/alice/password", {
        auth: server.adminAuth,
        body: { password: "aliceAlice-2026" },
      });
      expect([reset.status, reset.code]).toEqual([400, "WEAK_PASSWORD"]);
      const alice = await session(server, "alice", password);
      const change = await call(server, "POST", "/v1/me/password", {
        auth: alice.auth,
        body: { currentPassword: password, newPassword: "zzzzzzzzzzzzzzzz" },
      });
      expect([change.status, change.code]).toEqual([400, "WEAK_PASSWORD"]);
      expect((await signIn(server, "alice", password)).status).toBe(200);
    });

    it("changing one's password ends the other sessions and the old password stops working", async () => {
      const server = await sharedServer();
      await server.userWithRoles("quinn", ["user"]);
      const other = await session(server, "quinn");
      const current = await session(server, "quinn");
      const newPassword = "a brand new passphrase 42";
      const change = await call(server, "POST", "/v1/me/password", {
        auth: current.auth,
        body: { currentPassword: passwordFor("quinn"), newPassword },
      });
      expect(change.status, change.raw).toBe(200);
      expect((await me(server, current.auth)).status).toBe(200);
      expect((await me(server, other.auth)).status).toBe(401);
      expect((await refresh(server, other.refreshToken)).status).toBe(401);
      expect((await signIn(server, "quinn", passwordFor("quinn"))).code).toBe("INVALID_CREDENTIALS");
      expect((await signIn(server, "quinn", newPassword)).status).toBe(200);
    });
  });
});
