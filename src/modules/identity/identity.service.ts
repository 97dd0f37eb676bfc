/**
 * Sign-in, sessions, MFA and the first administrator. Password and TOTP checks
 * run outside transactions (they are slow); every outcome, including refusals,
 * is audited, and every state change commits with its audit event.
 */
import { SignJWT, errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import * as OTPAuth from "otpauth";
import { hash as digestOnce, randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import {
  burnPasswordCheck,
  constantTimeEqual,
  deriveKey,
  hashPassword,
  open,
  randomToken,
  seal,
  sha256Hex,
  verifyPassword,
  type ScryptParams,
} from "../../lib/security.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import { ANONYMOUS, SYSTEM, type Actor, type CallContext, type PlatformRole } from "../authz/authz.types.js";
import type { Keyring } from "../keys/keys.service.js";
import {
  RECOVERY_CODE,
  TOTP_CODE,
  canonicalUsername,
  isLocked,
  isTotpReplay,
  normalizeRecoveryCode,
  parseApiToken,
  parseRefreshToken,
  passwordProblem,
  recordFailure,
  rememberRotated,
  classifyRefreshSecret,
  totpStep,
  type ThrottleState,
} from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import type { PasskeyService } from "../passkeys/passkeys.service.js";
import { createAuthCache, type VerifiedAccessToken } from "./auth-cache.js";
import { principalEntry, toPrincipal } from "./principal.mapper.js";
import type { WebauthnAssertionDto } from "../../contract/passkeys.js";
import {
  ACCESS_TOKEN_AUDIENCE,
  ACCESS_TOKEN_ISSUER,
  type IdentityPolicy,
  type Principal,
  type TokenPair,
} from "./identity.types.js";

export interface IdentityServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  keyring: Pick<Keyring, "current" | "publicKeys">;
  clock: Clock;
  masterKey: Uint8Array;
  policy: IdentityPolicy;
  scrypt?: ScryptParams;
  /**
   * The node's access index: principals from memory, and the messages that keep every node's caches of
   * sessions and tokens current. Without it every request reads the database.
   */
  index?: Pick<AccessIndex, "view" | "subscribe" | "generation" | "send">;
  /**
   * Who may sign in with a password: everyone (the default), or only the named break-glass accounts when
   * single sign-on is the way in (`passwordSignIn: break-glass`).
   */
  passwordSignIn?: { mode: "everyone" | "break-glass"; breakGlassUsers: readonly string[] };
  /** Passkeys as a second factor at sign-in (modules/passkeys). Without it only TOTP is asked for. */
  passkeys?: Pick<PasskeyService, "hasPasskeys" | "loginOptions" | "checkAssertion">;
}

const RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789";

function recoveryCode(): string {
  const bytes = randomBytes(10);
  const chars = Array.from(bytes, (b) => RECOVERY_ALPHABET[b % RECOVERY_ALPHABET.length]).join("");
  return `${chars.slice(0, 5)}-${chars.slice(5)}`;
}

function throttleState(
  row: { failures: number; window_started_at: Date | string; locked_until: Date | string | null } | undefined,
): ThrottleState | undefined {
  if (!row) return undefined;
  return {
    failures: row.failures,
    windowStartedAt: new Date(row.window_started_at),
    lockedUntil: row.locked_until ? new Date(row.locked_until) : null,
  };
}

const BEARER = "Bearer ";
const MAX_BEARER_HEADER = BEARER.length + 4096;

/** `Bearer <token>`, the token 1 to 4,096 printable ASCII characters (a loop: the regex cost ~1 µs a request). */
export function isBearerHeader(header: string): boolean {
  const length = header.length;
  if (length <= BEARER.length || length > MAX_BEARER_HEADER || !header.startsWith(BEARER)) return false;
  for (let i = BEARER.length; i < length; i++) {
    const code = header.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) return false;
  }
  return true;
}

export function createIdentityService(deps: IdentityServiceDeps) {
  const { store, audit, keyring, clock, policy, index } = deps;
  const totpKey = deriveKey(deps.masterKey, "totp");
  const cache = index ? createAuthCache({ index }) : undefined;

  /** In the transaction that created or changed a principal: every node's index learns it at commit. */
  async function tellPrincipal(tx: Kysely<Database>, id: string) {
    if (!index) return;
    const row = await identityStore.findPrincipalById(tx, id);
    if (row) await index.send(tx, { t: "prn", p: principalEntry(row) });
  }
  const hash = (password: string) => hashPassword(password, deps.scrypt);

  const userKey = (username: string) => `user:${canonicalUsername(username)}`;
  const ipKey = (context: CallContext) => `ip:${context.sourceIp ?? "unknown"}`;
  const ipPolicy = { ...policy.throttle, maxFailures: policy.throttle.maxFailures * 4 };

  /** Checks a TOTP code (each 30-second step once) or a single-use recovery code, consuming it. */
  async function checkSecondFactor(
    tx: Kysely<Database>,
    principal: { id: string; name: string },
    input: string,
    now: Date,
  ): Promise<{ method: "totp" | "recovery" } | { failed: string }> {
    const otp = input.trim();
    const row = await identityStore.getTotp(tx, principal.id, true);
    if (!row?.confirmed_at) return { failed: "no authenticator enrolled" };
    if (TOTP_CODE.test(otp)) {
      const secret = OTPAuth.Secret.fromBase32(open(totpKey, row.secret_sealed, `totp:${principal.id}`).toString());
      const delta = totpFor(principal.name, secret).validate({ token: otp, timestamp: now.getTime(), window: 1 });
      const step = delta === null ? -1 : totpStep(now.getTime(), delta);
      if (delta === null || isTotpReplay(step, row.last_used_step)) {
        return { failed: delta === null ? "wrong one-time code" : "one-time code reused" };
      }
      await tx.updateTable("mfa_totp").set({ last_used_step: step }).where("principal_id", "=", principal.id).execute();
      return { method: "totp" };
    }
    if (RECOVERY_CODE.test(normalizeRecoveryCode(otp))) {
      const codeHash = sha256Hex(normalizeRecoveryCode(otp));
      const codes = await tx
        .selectFrom("recovery_codes")
        .selectAll()
        .where("principal_id", "=", principal.id)
        .where("used_at", "is", null)
        .forUpdate()
        .execute();
      const match = codes.find((c) => constantTimeEqual(c.code_hash, codeHash));
      if (!match) return { failed: "wrong recovery code" };
      await tx.updateTable("recovery_codes").set({ used_at: now }).where("id", "=", match.id).execute();
      return { method: "recovery" };
    }
    return { failed: "malformed one-time code" };
  }

  function totpFor(name: string, secret: OTPAuth.Secret) {
    return new OTPAuth.TOTP({ issuer: "Stint", label: name, algorithm: "SHA1", digits: 6, period: 30, secret });
  }

  /** Counts a failed sign-in against the account and the peer address, and audits it. */
  async function failSignIn(
    username: string,
    context: CallContext,
    reason: string,
    code:
      | "INVALID_CREDENTIALS"
      | "MFA_INVALID"
      | "WEBAUTHN_INVALID"
      | "WEBAUTHN_CHALLENGE_INVALID"
      | "WEBAUTHN_CLONED_AUTHENTICATOR",
    /** Password and code checks after sign-in (step-up, password change) count against the same lockout. */
    as: { action: string; actor: Actor } = { action: "auth.login", actor: ANONYMOUS },
  ): Promise<never> {
    const now = clock.now();
    const alreadyLocked = await store.transaction(async (tx) => {
      const keys = [userKey(username), ipKey(context)];
      await identityStore.ensureThrottle(tx, keys, now);
      const rows = await identityStore.getThrottle(tx, keys);
      // Attempts that passed the early check while others were locking the account get the lockout answer too.
      const locked = rows.some((row) => isLocked(throttleState(row), now));
      const events: Parameters<AuditLog["append"]>[3] & unknown[] = [
        { action: as.action, outcome: "denied", subject: `user:${username}`, reason },
      ];
      for (const key of keys) {
        const next = recordFailure(
          throttleState(rows.find((r) => r.key === key)),
          now,
          key.startsWith("ip:") ? ipPolicy : policy.throttle,
        );
        await identityStore.putThrottle(tx, key, next);
        if (next.justLocked) {
          events.push({
            action: "auth.lockout",
            outcome: "denied",
            subject: key.startsWith("ip:") ? `ip:${context.sourceIp}` : `user:${username}`,
            reason: `${next.failures} failed sign-ins`,
            details: { lockedUntil: next.lockedUntil?.toISOString() },
          });
        }
      }
      await audit.append(tx, as.actor, context, events);
      return locked;
    });
    throw new StintError(alreadyLocked ? "ACCOUNT_LOCKED" : code);
  }

  /** Refuses a check for an account (or peer) that is locked out. */
  async function refuseIfLocked(username: string, context: CallContext, action: string, actor: Actor): Promise<void> {
    const rows = await identityStore.getThrottle(store.db, [userKey(username), ipKey(context)]);
    if (rows.some((row) => isLocked(throttleState(row), clock.now()))) {
      await deny(
        context,
        action,
        `user:${username}`,
        "locked out after repeated failures",
        new StintError("ACCOUNT_LOCKED"),
        actor,
      );
    }
  }

  async function deny(
    context: CallContext,
    action: string,
    subject: string,
    reason: string,
    error: StintError,
    actor: Actor = ANONYMOUS,
  ): Promise<never> {
    await audit.record(actor, context, { action, outcome: "denied", subject, reason });
    throw error;
  }

  async function signAccessToken(
    principal: { id: string; name: string; kind: string; platform_roles: string[] },
    sessionId: string,
    mfaAt: Date | null,
    amr: string[] | null = null,
    webauthnAt: Date | null = null,
  ) {
    const key = keyring.current("token");
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + policy.accessTokenTtlMs);
    const token = await new SignJWT({
      name: principal.name,
      kind: principal.kind,
      roles: principal.platform_roles,
      sid: sessionId,
      // RFC 8176: `hwk` when the session's last second factor was a passkey (proof of a hardware-bound key).
      amr: amr ?? (mfaAt ? ["pwd", webauthnAt && webauthnAt.getTime() >= mfaAt.getTime() ? "hwk" : "otp"] : ["pwd"]),
      ...(mfaAt ? { mfa_at: Math.floor(mfaAt.getTime() / 1000) } : {}),
    })
      .setProtectedHeader({ alg: "EdDSA", kid: key.id, typ: "JWT" })
      .setSubject(principal.id)
      .setIssuer(ACCESS_TOKEN_ISSUER)
      .setAudience(ACCESS_TOKEN_AUDIENCE)
      .setIssuedAt(Math.floor(now.getTime() / 1000))
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .setJti(randomToken(16))
      .sign(key.privateKey);
    return { token, expiresAt };
  }

  async function pairFor(
    db: Kysely<Database>,
    principal: identityStore.PrincipalRow,
    session: {
      id: string;
      secret: string;
      expiresAt: Date;
      mfaAt: Date | null;
      amr?: string[] | null;
      webauthnAt?: Date | null;
    },
  ): Promise<TokenPair> {
    const access = await signAccessToken(
      principal,
      session.id,
      session.mfaAt,
      session.amr ?? null,
      session.webauthnAt ?? null,
    );
    return {
      accessToken: access.token,
      accessTokenExpiresAt: access.expiresAt.toISOString(),
      refreshToken: `${session.id}.${session.secret}`,
      refreshTokenExpiresAt: session.expiresAt.toISOString(),
      principal: await toPrincipal(db, principal),
    };
  }

  /**
   * An access token already verified on this node (remembered by its SHA-256 until its expiry): only the
   * expiry and that its key is still trusted are checked again. Undefined when it must be verified.
   */
  function knownAccessToken(tokenHash: string, now: Date): VerifiedAccessToken | undefined {
    const known = cache?.verified(tokenHash);
    if (!known) return undefined;
    if (!keyring.publicKeys("token").has(known.kid)) {
      cache!.forgetVerified(tokenHash);
      return undefined;
    }
    // jose's rule: expired once `exp` is at or before the current second.
    if (known.exp <= Math.floor(now.getTime() / 1000)) throw new StintError("TOKEN_EXPIRED");
    return known;
  }

  /** An access token's signature (Ed25519), issuer, audience and expiry; remembered once verified. */
  async function verifyAccessToken(token: string, tokenHash: string, now: Date): Promise<VerifiedAccessToken> {
    let payload: JWTPayload;
    let kid = "";
    try {
      ({ payload } = await jwtVerify(
        token,
        (header) => {
          const key = header.kid ? keyring.publicKeys("token").get(header.kid) : undefined;
          if (!key) throw new StintError("UNAUTHENTICATED");
          kid = header.kid!;
          return key;
        },
        { issuer: ACCESS_TOKEN_ISSUER, audience: ACCESS_TOKEN_AUDIENCE, algorithms: ["EdDSA"], currentDate: now },
      ));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new StintError("TOKEN_EXPIRED");
      throw new StintError("UNAUTHENTICATED");
    }
    const verified: VerifiedAccessToken = {
      sub: typeof payload.sub === "string" ? payload.sub : "",
      sid: typeof payload.sid === "string" ? payload.sid : "",
      kid,
      exp: typeof payload.exp === "number" ? payload.exp : 0,
    };
    if (cache && verified.exp > 0) cache.rememberVerified(tokenHash, verified);
    return verified;
  }

  /**
   * The actor behind a verified access token from memory (its session cached, its principal in the access
   * index), or undefined when the database must be asked. Throws when memory knows the session ended.
   */
  function sessionFromMemory(verified: VerifiedAccessToken, now: Date): Actor | undefined {
    const view = index?.view();
    if (!view || !cache) return undefined;
    const nowMs = now.getTime();
    const session = cache.session(verified.sid, nowMs);
    const principal = session && view.principal(session.principalId);
    if (!session || !principal) return undefined;
    if (session.principalId !== verified.sub || session.expiresAt <= nowMs || principal.status !== "active")
      throw new StintError("UNAUTHENTICATED", "The session has ended; sign in again.");
    // The same session and principal entry make the same actor: made once, not per request.
    if (session.actor?.of === principal) return session.actor.actor;
    const actor: Actor = Object.freeze({
      kind: "principal",
      id: principal.id,
      name: principal.name,
      principalKind: principal.kind,
      roles: principal.platformRoles as PlatformRole[],
      sessionId: verified.sid,
      mfaAt: session.mfaAt === null ? null : new Date(session.mfaAt),
      webauthnAt: session.webauthnAt === null ? null : new Date(session.webauthnAt),
    });
    session.actor = { of: principal, actor };
    return actor;
  }

  /** The actor behind a verified access token from the database (and the session remembered). */
  async function sessionFromDatabase(verified: VerifiedAccessToken, now: Date): Promise<Actor> {
    const remembering = index?.view() && cache ? cache.mark() : undefined;
    const live = verified.sid ? await identityStore.findLiveSession(store.db, verified.sid, now) : undefined;
    if (!live || live.id !== verified.sub)
      throw new StintError("UNAUTHENTICATED", "The session has ended; sign in again.");
    const mfaAt = live.mfa_at ? new Date(live.mfa_at).getTime() : null;
    const webauthnAt = live.webauthn_at ? new Date(live.webauthn_at).getTime() : null;
    if (remembering)
      cache!.rememberSession(
        verified.sid,
        {
          principalId: live.id,
          mfaAt,
          webauthnAt,
          expiresAt: new Date(live.session_expires_at).getTime(),
          loadedAt: now.getTime(),
        },
        remembering,
      );
    return {
      kind: "principal",
      id: live.id,
      name: live.name,
      principalKind: live.kind,
      roles: live.platform_roles as PlatformRole[],
      sessionId: verified.sid,
      mfaAt: mfaAt === null ? null : new Date(mfaAt),
      webauthnAt: webauthnAt === null ? null : new Date(webauthnAt),
    };
  }

  /** An API token (`stint_…`): its hash compared in constant time, its principal active. */
  async function authenticateApiToken(apiToken: { tokenId: string; secret: string }, now: Date): Promise<Actor> {
    const nowMs = now.getTime();
    const view = index?.view();
    let known = view && cache ? cache.apiToken(apiToken.tokenId, nowMs) : undefined;
    let principal = known && view?.principal(known.principalId);
    if (!known || !principal) {
      const mark = cache?.mark();
      const row = await identityStore.findLiveApiToken(store.db, apiToken.tokenId, now);
      if (!row || !constantTimeEqual(row.token_hash, sha256Hex(apiToken.secret)))
        throw new StintError("UNAUTHENTICATED");
      known = {
        tokenHash: row.token_hash,
        principalId: row.id,
        expiresAt: new Date(row.expires_at).getTime(),
        lastUsedAt: row.last_used_at ? new Date(row.last_used_at).getTime() : 0,
        loadedAt: nowMs,
      };
      principal = { id: row.id, name: row.name, kind: row.kind, status: "active", platformRoles: row.platform_roles };
      if (view && cache && mark) cache.rememberApiToken(apiToken.tokenId, known, mark);
    } else if (
      !constantTimeEqual(known.tokenHash, sha256Hex(apiToken.secret)) ||
      known.expiresAt <= nowMs ||
      principal.status !== "active"
    ) {
      throw new StintError("UNAUTHENTICATED");
    }
    if (nowMs - known.lastUsedAt > 60_000) {
      known.lastUsedAt = nowMs;
      await identityStore.touchApiToken(store.db, apiToken.tokenId, now);
    }
    return {
      kind: "principal",
      id: principal.id,
      name: principal.name,
      principalKind: principal.kind,
      roles: principal.platformRoles as PlatformRole[],
      tokenId: apiToken.tokenId,
    };
  }

  return {
    /**
     * Makes sure an administrator can exist: creates one from the bootstrap
     * password, or issues a one-time setup code (returned to be printed once).
     */
    async bootstrap(options: {
      adminName: string;
      adminPassword?: string | undefined;
    }): Promise<{ created?: string; setupCode?: string }> {
      const passwordHash = options.adminPassword ? await hash(options.adminPassword) : undefined;
      return store.transaction(async (tx) => {
        await identityStore.lockAdministrators(tx);
        if ((await identityStore.countActiveAdmins(tx)) > 0) return {};
        const now = clock.now();
        if (passwordHash) {
          const existing = await identityStore.findPrincipalByName(tx, options.adminName);
          if (existing) return {};
          // The first administrator meets the rules everyone else's password meets.
          const problem = passwordProblem(options.adminPassword!, options.adminName);
          if (problem)
            throw new StintError(
              "WEAK_PASSWORD",
              `STINT_BOOTSTRAP_ADMIN_PASSWORD ${problem} (the rules every password meets: at least 12 characters, not containing the user name, more than a few distinct characters).`,
            );
          const id = newId();
          await tx
            .insertInto("principals")
            .values({
              id,
              kind: "user",
              name: options.adminName,
              platform_roles: ["admin", "user"],
              created_at: now,
              updated_at: now,
            })
            .execute();
          await identityStore.setPasswordHash(tx, id, passwordHash, now);
          await tellPrincipal(tx, id);
          await audit.append(
            tx,
            SYSTEM,
            { correlationId: "bootstrap", sourceIp: null, userAgent: null },
            {
              action: "user.create",
              outcome: "success",
              subject: `user:${options.adminName}`,
              reason: "first administrator from STINT_BOOTSTRAP_ADMIN_PASSWORD",
              details: { platformRoles: ["admin", "user"] },
            },
          );
          return { created: options.adminName };
        }
        const code = randomToken(20);
        await tx.updateTable("setup_codes").set({ used_at: now }).where("used_at", "is", null).execute();
        await tx
          .insertInto("setup_codes")
          .values({
            id: newId(),
            code_hash: sha256Hex(code),
            created_at: now,
            expires_at: new Date(now.getTime() + 86_400_000),
          })
          .execute();
        await audit.append(
          tx,
          SYSTEM,
          { correlationId: "bootstrap", sourceIp: null, userAgent: null },
          {
            action: "setup.code_issued",
            outcome: "success",
            reason: "no administrator exists yet",
          },
        );
        return { setupCode: code };
      });
    },

    /** Claims the one-time setup code: creates the first administrator. */
    async setup(input: { code: string; username: string; password: string }, context: CallContext): Promise<Principal> {
      const problem = passwordProblem(input.password, input.username);
      if (problem) throw new StintError("WEAK_PASSWORD", `The password ${problem}.`);
      const passwordHash = await hash(input.password);
      const outcome = await store.transaction(async (tx) => {
        await identityStore.lockAdministrators(tx);
        const now = clock.now();
        if ((await identityStore.countActiveAdmins(tx)) > 0) return { error: new StintError("SETUP_ALREADY_DONE") };
        const codes = await tx
          .selectFrom("setup_codes")
          .selectAll()
          .where("used_at", "is", null)
          .where("expires_at", ">", now)
          .execute();
        const match = codes.find((c) => constantTimeEqual(c.code_hash, sha256Hex(input.code)));
        if (!match) return { error: new StintError("SETUP_CODE_INVALID") };
        if (await identityStore.findPrincipalByName(tx, input.username))
          return { error: new StintError("ALREADY_EXISTS") };
        const id = newId();
        await tx
          .insertInto("principals")
          .values({
            id,
            kind: "user",
            name: input.username,
            platform_roles: ["admin", "user"],
            created_at: now,
            updated_at: now,
          })
          .execute();
        await identityStore.setPasswordHash(tx, id, passwordHash, now);
        await tellPrincipal(tx, id);
        await tx.updateTable("setup_codes").set({ used_at: now }).where("id", "=", match.id).execute();
        await audit.append(tx, ANONYMOUS, context, {
          action: "user.create",
          outcome: "success",
          subject: `user:${input.username}`,
          reason: "first administrator from the setup code",
          details: { platformRoles: ["admin", "user"] },
        });
        return { principal: await toPrincipal(tx, (await identityStore.findPrincipalById(tx, id))!) };
      });
      if ("error" in outcome && outcome.error) {
        return deny(context, "setup.claim", `user:${input.username}`, outcome.error.message, outcome.error);
      }
      return (outcome as { principal: Principal }).principal;
    },

    /**
     * Whether a setup code would be accepted, without using it: `stint setup` asks before it prompts for a
     * password (twice), so a mistyped code is said first. A refusal is audited like a failed claim; the code
     * (160 random bits) is no easier to guess here than through the claim itself.
     */
    async checkSetupCode(code: string, context: CallContext): Promise<{ valid: true }> {
      const now = clock.now();
      const error =
        (await identityStore.countActiveAdmins(store.db)) > 0
          ? new StintError("SETUP_ALREADY_DONE")
          : (
                await store.db
                  .selectFrom("setup_codes")
                  .select("code_hash")
                  .where("used_at", "is", null)
                  .where("expires_at", ">", now)
                  .execute()
              ).some((c) => constantTimeEqual(c.code_hash, sha256Hex(code)))
            ? undefined
            : new StintError("SETUP_CODE_INVALID");
      if (error) return deny(context, "setup.check", "setup", error.message, error);
      return { valid: true };
    },

    async login(
      input: {
        username: string;
        password: string;
        otp?: string | undefined;
        /** A passkey answer to the challenge a previous MFA_REQUIRED carried. */
        webauthn?: WebauthnAssertionDto | undefined;
      },
      context: CallContext,
    ): Promise<TokenPair> {
      const username = canonicalUsername(input.username);
      const now = clock.now();
      const passwords = deps.passwordSignIn;
      if (passwords?.mode === "break-glass" && !passwords.breakGlassUsers.includes(username))
        return deny(
          context,
          "auth.login",
          `user:${username}`,
          "passwords are turned off (single sign-on only) and this is no break-glass account",
          new StintError("PASSWORD_SIGNIN_DISABLED"),
        );
      const throttle = await identityStore.getThrottle(store.db, [userKey(username), ipKey(context)]);
      if (throttle.some((row) => isLocked(throttleState(row), now))) {
        return deny(
          context,
          "auth.login",
          `user:${username}`,
          "locked out after repeated failures",
          new StintError("ACCOUNT_LOCKED"),
        );
      }

      const principal = await identityStore.findPrincipalByName(store.db, username);
      const storedHash = principal ? await identityStore.getPasswordHash(store.db, principal.id) : undefined;
      if (!principal || !storedHash) {
        await burnPasswordCheck(input.password, deps.scrypt);
        return failSignIn(
          username,
          context,
          principal ? "account has no password" : "unknown user",
          "INVALID_CREDENTIALS",
        );
      }
      if (!(await verifyPassword(input.password, storedHash))) {
        return failSignIn(username, context, "wrong password", "INVALID_CREDENTIALS");
      }
      if (principal.status !== "active") {
        return deny(
          context,
          "auth.login",
          `user:${username}`,
          "account is disabled",
          new StintError("ACCOUNT_DISABLED"),
        );
      }

      const totp = await identityStore.getTotp(store.db, principal.id);
      const totpEnrolled = !!totp?.confirmed_at;
      const passkeyEnrolled = deps.passkeys ? await deps.passkeys.hasPasskeys(store.db, principal.id) : false;
      const mfaEnrolled = totpEnrolled || passkeyEnrolled;
      if (mfaEnrolled && !input.otp && !input.webauthn) {
        const methods = [...(totpEnrolled ? ["totp"] : []), ...(passkeyEnrolled ? ["webauthn"] : [])];
        // The challenge is issued only now that the password checked out: it never tells who has passkeys.
        const webauthn = passkeyEnrolled ? await deps.passkeys!.loginOptions(principal.id) : undefined;
        return deny(
          context,
          "auth.login",
          `user:${username}`,
          totpEnrolled ? "one-time code missing" : "passkey missing",
          new StintError(
            "MFA_REQUIRED",
            !passkeyEnrolled
              ? undefined
              : totpEnrolled
                ? "A second factor is required: a one-time code (`otp`) or your passkey (`webauthn`, answering details.webauthn)."
                : "A passkey is required: this account's second factor is a passkey. Sign in with it in the web UI (or answer details.webauthn as `webauthn`).",
            { methods, ...(webauthn ? { webauthn } : {}) },
          ),
        );
      }

      const session = {
        id: newId(),
        secret: randomToken(32),
        expiresAt: new Date(now.getTime() + policy.refreshSessionTtlMs),
        mfaAt: mfaEnrolled ? now : null,
        webauthnAt: null as Date | null,
      };
      type LoginFailure = { failed: string; code: Parameters<typeof failSignIn>[3] };
      const result = await store.transaction(async (tx) => {
        // Checked again under the row locks: a lockout may have begun since the early check.
        await identityStore.ensureThrottle(tx, [userKey(username)], now);
        const throttleRows = await identityStore.getThrottle(tx, [userKey(username), ipKey(context)]);
        if (throttleRows.some((row) => isLocked(throttleState(row), now))) return { locked: true };
        let method: "none" | "totp" | "recovery" | "webauthn" = "none";
        let credential: { id: string; name: string } | undefined;
        if (mfaEnrolled && input.webauthn) {
          if (!passkeyEnrolled) return { failed: "no passkey registered", code: "WEBAUTHN_INVALID" } as LoginFailure;
          const checked = await deps.passkeys!.checkAssertion(tx, {
            principal,
            purpose: "login",
            assertion: input.webauthn,
            actor: ANONYMOUS,
            context,
          });
          if ("failed" in checked) return { failed: checked.failed, code: checked.code } as LoginFailure;
          method = "webauthn";
          credential = checked.credential;
          session.webauthnAt = now;
        } else if (mfaEnrolled) {
          const checked = await checkSecondFactor(tx, principal, input.otp!, now);
          if ("failed" in checked) return { failed: checked.failed, code: "MFA_INVALID" } as LoginFailure;
          method = checked.method;
        }
        await tx
          .insertInto("refresh_sessions")
          .values({
            id: session.id,
            principal_id: principal.id,
            token_hash: sha256Hex(session.secret),
            mfa_at: session.mfaAt,
            webauthn_at: session.webauthnAt,
            created_at: now,
            last_used_at: now,
            expires_at: session.expiresAt,
            source_ip: context.sourceIp,
            user_agent: context.userAgent,
          })
          .execute();
        await identityStore.clearThrottle(tx, userKey(username));
        const actor: Actor = {
          kind: "principal",
          id: principal.id,
          name: principal.name,
          principalKind: principal.kind,
          roles: principal.platform_roles as PlatformRole[],
        };
        await audit.append(tx, actor, context, {
          action: "auth.login",
          outcome: "success",
          subject: `user:${username}`,
          details: {
            sessionId: session.id,
            mfa: method,
            ...(method === "recovery" ? { recoveryCodesLeft: "reduced by one" } : {}),
            ...(credential ? { credential: credential.id, credentialName: credential.name } : {}),
          },
        });
        return { pair: await pairFor(tx, principal, session) };
      });
      if ("locked" in result)
        return deny(
          context,
          "auth.login",
          `user:${username}`,
          "locked out after repeated failures",
          new StintError("ACCOUNT_LOCKED"),
        );
      if ("failed" in result) return failSignIn(username, context, result.failed, result.code);
      return result.pair!;
    },

    /**
     * Rotates the refresh token. A token presented after it was rotated ends the whole session; a secret
     * that never was the session's is refused and changes nothing.
     */
    async refresh(refreshToken: string, context: CallContext): Promise<TokenPair> {
      const parsed = parseRefreshToken(refreshToken);
      if (!parsed) throw new StintError("UNAUTHENTICATED", "The refresh token is not valid; sign in again.");
      const now = clock.now();
      const result = await store.transaction(async (tx) => {
        const session = await tx
          .selectFrom("refresh_sessions")
          .selectAll()
          .where("id", "=", parsed.sessionId)
          .forUpdate()
          .executeTakeFirst();
        if (!session || session.revoked_at || new Date(session.expires_at) <= now) return { denied: "session ended" };
        const principal = await identityStore.findPrincipalById(tx, session.principal_id);
        if (!principal || principal.status !== "active") return { denied: "account disabled" };
        const presented = classifyRefreshSecret(
          sha256Hex(parsed.secret),
          { currentHash: session.token_hash, previousHashes: session.previous_token_hashes ?? [] },
          constantTimeEqual,
        );
        if (presented === "unknown") {
          await audit.append(tx, ANONYMOUS, context, {
            action: "auth.refresh",
            outcome: "denied",
            subject: `user:${principal.name}`,
            reason: "a refresh token that never belonged to the session",
            details: { sessionId: session.id },
          });
          return { denied: "wrong secret" };
        }
        if (presented === "reused") {
          await tx
            .updateTable("refresh_sessions")
            .set({ revoked_at: now, revoked_reason: "refresh token reused" })
            .where("id", "=", session.id)
            .execute();
          await index?.send(tx, { t: "ses", sid: session.id });
          await audit.append(tx, ANONYMOUS, context, {
            action: "auth.session_revoked",
            outcome: "denied",
            subject: `user:${principal.name}`,
            reason: "a rotated refresh token was presented again; the session was ended",
            details: { sessionId: session.id },
          });
          return { denied: "reuse" };
        }
        const secret = randomToken(32);
        await tx
          .updateTable("refresh_sessions")
          .set({
            token_hash: sha256Hex(secret),
            previous_token_hashes: rememberRotated(session.previous_token_hashes ?? [], session.token_hash),
            last_used_at: now,
          })
          .where("id", "=", session.id)
          .execute();
        const actor: Actor = {
          kind: "principal",
          id: principal.id,
          name: principal.name,
          principalKind: principal.kind,
          roles: principal.platform_roles as PlatformRole[],
        };
        await audit.append(tx, actor, context, {
          action: "auth.refresh",
          outcome: "success",
          subject: `user:${principal.name}`,
          details: { sessionId: session.id },
        });
        return {
          pair: await pairFor(tx, principal, {
            id: session.id,
            secret,
            expiresAt: new Date(session.expires_at),
            mfaAt: session.mfa_at ? new Date(session.mfa_at) : null,
            amr: session.amr,
            webauthnAt: session.webauthn_at ? new Date(session.webauthn_at) : null,
          }),
        };
      });
      if ("denied" in result) throw new StintError("UNAUTHENTICATED", "The session has ended; sign in again.");
      return result.pair!;
    },

    /**
     * Opens a session for a principal another module already authenticated (single sign-on), in the caller's
     * transaction: the caller checked the principal is active and audits the sign-in. `amr` is what the access
     * tokens say of how it was opened; `mfaAt` counts as the session's last MFA when the caller vouches for it.
     */
    async openSession(
      tx: Kysely<Database>,
      principalId: string,
      options: { amr: string[]; mfaAt: Date | null },
      context: CallContext,
    ): Promise<TokenPair> {
      const principal = await identityStore.findPrincipalById(tx, principalId);
      if (!principal || principal.status !== "active") throw new StintError("ACCOUNT_DISABLED");
      const now = clock.now();
      const session = {
        id: newId(),
        secret: randomToken(32),
        expiresAt: new Date(now.getTime() + policy.refreshSessionTtlMs),
        mfaAt: options.mfaAt,
        amr: options.amr,
      };
      await tx
        .insertInto("refresh_sessions")
        .values({
          id: session.id,
          principal_id: principal.id,
          token_hash: sha256Hex(session.secret),
          mfa_at: session.mfaAt,
          amr: session.amr,
          created_at: now,
          last_used_at: now,
          expires_at: session.expiresAt,
          source_ip: context.sourceIp,
          user_agent: context.userAgent,
        })
        .execute();
      return pairFor(tx, principal, session);
    },

    async logout(actor: Actor, context: CallContext): Promise<void> {
      if (actor.kind !== "principal" || !actor.sessionId) throw new StintError("UNAUTHENTICATED");
      const now = clock.now();
      await store.transaction(async (tx) => {
        await tx
          .updateTable("refresh_sessions")
          .set({ revoked_at: now, revoked_reason: "signed out" })
          .where("id", "=", actor.sessionId!)
          .where("revoked_at", "is", null)
          .execute();
        await index?.send(tx, { t: "ses", sid: actor.sessionId! });
        await audit.append(tx, actor, context, {
          action: "auth.logout",
          outcome: "success",
          subject: `user:${actor.name}`,
          details: { sessionId: actor.sessionId },
        });
      });
    },

    /**
     * Turns an Authorization header into an actor. A revoked session, a revoked token or a disabled principal
     * is refused at the next request: from memory when the access index vouches for its messages (every
     * node hears them when they commit), from the database otherwise. Answers synchronously when memory
     * answers (the hot path costs no promise); throws synchronously for a malformed header.
     */
    authenticate(authorization: string | undefined): Actor | Promise<Actor> {
      if (authorization === undefined || authorization === "") return ANONYMOUS;
      const now = clock.now();
      const token = authorization.slice(BEARER.length);
      // One-shot hash (no Hash object): the same SHA-256 hex as sha256Hex, a few µs less on every request.
      const tokenHash =
        cache && authorization.length <= MAX_BEARER_HEADER && authorization.startsWith(BEARER)
          ? digestOnce("sha256", token, "hex")
          : "";
      // A token this node verified before passed the format check then (only a header that passed it is
      // ever verified, and SHA-256 does not collide), and is no API token: those checks are for the others.
      const known = tokenHash === "" ? undefined : knownAccessToken(tokenHash, now);
      if (!known) {
        if (!isBearerHeader(authorization))
          throw new StintError("UNAUTHENTICATED", "The Authorization header must be `Bearer <token>`.");
        const apiToken = parseApiToken(token);
        if (apiToken) return authenticateApiToken(apiToken, now);
      }
      const fromMemory = known && sessionFromMemory(known, now);
      if (fromMemory) return fromMemory;
      return (async () => {
        const verified = known ?? (await verifyAccessToken(token, tokenHash, now));
        return sessionFromMemory(verified, now) ?? sessionFromDatabase(verified, now);
      })();
    },

    async me(actor: Actor): Promise<Principal> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const row = await identityStore.findPrincipalById(store.db, actor.id);
      if (!row) throw new StintError("UNAUTHENTICATED");
      return toPrincipal(store.db, row);
    },

    async startTotpEnrollment(actor: Actor, context: CallContext): Promise<{ secret: string; otpauthUri: string }> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const secret = new OTPAuth.Secret({ size: 20 });
      const now = clock.now();
      const enrolled = await store.transaction(async (tx) => {
        const existing = await identityStore.getTotp(tx, actor.id, true);
        if (existing?.confirmed_at) return true;
        const sealed = seal(totpKey, secret.base32, `totp:${actor.id}`);
        await tx
          .insertInto("mfa_totp")
          .values({ principal_id: actor.id, secret_sealed: sealed, created_at: now })
          .onConflict((oc) =>
            oc.column("principal_id").doUpdateSet({ secret_sealed: sealed, created_at: now, last_used_step: 0 }),
          )
          .execute();
        await audit.append(tx, actor, context, {
          action: "mfa.enrollment_started",
          outcome: "success",
          subject: `user:${actor.name}`,
        });
        return false;
      });
      if (enrolled)
        return deny(
          context,
          "mfa.enrollment_started",
          `user:${actor.name}`,
          "already enrolled",
          new StintError("MFA_ALREADY_ENROLLED"),
          actor,
        );
      return { secret: secret.base32, otpauthUri: totpFor(actor.name, secret).toString() };
    },

    async confirmTotpEnrollment(
      actor: Actor,
      code: string,
      context: CallContext,
    ): Promise<{ recoveryCodes: string[] }> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      await refuseIfLocked(actor.name, context, "mfa.enrolled", actor);
      const now = clock.now();
      const codes = Array.from({ length: 10 }, recoveryCode);
      const result = await store.transaction(async (tx) => {
        const row = await identityStore.getTotp(tx, actor.id, true);
        if (!row) return { error: new StintError("MFA_NOT_STARTED") };
        if (row.confirmed_at) return { error: new StintError("MFA_ALREADY_ENROLLED") };
        const secret = OTPAuth.Secret.fromBase32(open(totpKey, row.secret_sealed, `totp:${actor.id}`).toString());
        const delta = totpFor(actor.name, secret).validate({ token: code, timestamp: now.getTime(), window: 1 });
        if (delta === null) return { error: new StintError("MFA_INVALID") };
        await tx
          .updateTable("mfa_totp")
          .set({ confirmed_at: now, last_used_step: totpStep(now.getTime(), delta) })
          .where("principal_id", "=", actor.id)
          .execute();
        await tx.deleteFrom("recovery_codes").where("principal_id", "=", actor.id).execute();
        await tx
          .insertInto("recovery_codes")
          .values(codes.map((c) => ({ id: newId(), principal_id: actor.id, code_hash: sha256Hex(c), used_at: null })))
          .execute();
        await audit.append(tx, actor, context, {
          action: "mfa.enrolled",
          outcome: "success",
          subject: `user:${actor.name}`,
          details: { method: "totp", recoveryCodes: codes.length },
        });
        return { ok: true };
      });
      if ("error" in result && result.error) {
        // A wrong code counts against the lockout, like any other guess at a second factor.
        if (result.error.code === "MFA_INVALID") {
          return failSignIn(actor.name, context, result.error.message, "MFA_INVALID", {
            action: "mfa.enrolled",
            actor,
          });
        }
        return deny(context, "mfa.enrolled", `user:${actor.name}`, result.error.message, result.error, actor);
      }
      return { recoveryCodes: codes };
    },

    /** Step-up: a fresh one-time code refreshes the session's MFA time (policies ask for a recent one). */
    async stepUp(actor: Actor, otp: string, context: CallContext): Promise<{ mfaAt: string }> {
      if (actor.kind !== "principal" || !actor.sessionId)
        throw new StintError("UNAUTHENTICATED", "Step-up needs a signed-in session.");
      await refuseIfLocked(actor.name, context, "auth.step_up", actor);
      const now = clock.now();
      const result = await store.transaction(async (tx) => {
        const checked = await checkSecondFactor(tx, actor, otp, now);
        if ("failed" in checked) return checked;
        await tx.updateTable("refresh_sessions").set({ mfa_at: now }).where("id", "=", actor.sessionId!).execute();
        await index?.send(tx, { t: "ses", sid: actor.sessionId! });
        await audit.append(tx, actor, context, {
          action: "auth.step_up",
          outcome: "success",
          subject: `user:${actor.name}`,
          details: { sessionId: actor.sessionId, method: checked.method },
        });
        return checked;
      });
      if ("failed" in result) {
        return failSignIn(actor.name, context, result.failed, "MFA_INVALID", { action: "auth.step_up", actor });
      }
      return { mfaAt: now.toISOString() };
    },

    async changePassword(
      actor: Actor,
      input: { currentPassword: string; newPassword: string },
      context: CallContext,
    ): Promise<void> {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      await refuseIfLocked(actor.name, context, "user.password_changed", actor);
      const stored = await identityStore.getPasswordHash(store.db, actor.id);
      if (!stored || !(await verifyPassword(input.currentPassword, stored))) {
        return failSignIn(actor.name, context, "current password wrong", "INVALID_CREDENTIALS", {
          action: "user.password_changed",
          actor,
        });
      }
      const problem = passwordProblem(input.newPassword, actor.name);
      if (problem) throw new StintError("WEAK_PASSWORD", `The password ${problem}.`);
      const newHash = await hash(input.newPassword);
      await store.transaction(async (tx) => {
        const now = clock.now();
        await identityStore.setPasswordHash(tx, actor.id, newHash, now);
        // Other sessions end: whoever knew the old password is signed out.
        await tx
          .updateTable("refresh_sessions")
          .set({ revoked_at: now, revoked_reason: "password changed" })
          .where("principal_id", "=", actor.id)
          .where("revoked_at", "is", null)
          .where("id", "!=", actor.sessionId ?? "00000000-0000-0000-0000-000000000000")
          .execute();
        await index?.send(tx, { t: "pses", pid: actor.id });
        await audit.append(tx, actor, context, {
          action: "user.password_changed",
          outcome: "success",
          subject: `user:${actor.name}`,
        });
      });
    },
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
