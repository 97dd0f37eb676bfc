/**
 * Test support: a whole Stint server in-process (app.inject, no socket) on a
 * fresh store of either engine, with helpers to create and sign in users.
 * Password hashing uses cheaper scrypt parameters here only, to keep tests fast.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import * as OTPAuth from "otpauth";
import { loadConfig, type Config } from "../config/config.js";
import type { Engine } from "../lib/db.js";
import type { AppStore } from "../db/index.js";
import type { DestinationStream } from "pino";
import { createLogger } from "../lib/logger.js";
import type { Clock } from "../lib/clock.js";
import type { PlatformRole } from "../modules/authz/authz.types.js";
import type { OutboxHandlers } from "../modules/outbox/index.js";
import { createServer, type Server } from "../server.js";
import { freshStore } from "./engines.js";

export const TEST_SCRYPT = { N: 2 ** 10, r: 8, p: 1 };
export const ADMIN_PASSWORD = "root-password-for-tests";

/** The password userWithRoles gives `name`: letter-free, so it can never contain the name (WEAK_PASSWORD). */
export function passwordFor(name: string): string {
  return `#${Array.from(name, (ch) => ch.codePointAt(0)).join(".")}.0123456789`;
}

export interface TestServer extends Server {
  config: Config;
  /** Signs in and returns the Authorization header value. */
  login(name: string, password?: string, otp?: string): Promise<string>;
  /**
   * Creates a user with these platform roles (password `passwordFor(name)`) and signs in. Where four-eyes holds a
   * role that approves (finding 81), the first approver this made approves it, as a second admin would.
   */
  userWithRoles(name: string, roles: PlatformRole[]): Promise<string>;
  adminAuth: string;
  /** The PostgreSQL database's URL (engine postgres only). */
  databaseUrl: string | undefined;
  cleanup(): Promise<void>;
}

export async function testServer(
  engine: Engine = "pglite",
  options: {
    env?: NodeJS.ProcessEnv;
    clock?: Clock;
    outboxHandlers?: OutboxHandlers;
    /** Shorter pauses between outbox retries than the configured ones. */
    outboxBackoff?: { baseMs?: number; capMs?: number };
    /** The master key (random by default); a test that must open what Stint sealed passes its own. */
    masterKey?: Uint8Array;
    /** The vault's key; null starts without one (sealed). Random by default. */
    vaultKey?: Uint8Array | null;
    logLevel?: string;
    /** Where log lines go (tests that read the logs); stdout otherwise. */
    logDestination?: DestinationStream;
    /** Wraps the fresh store before the server gets it (tests that watch the queries a server runs). */
    wrapStore?: (store: AppStore) => AppStore;
    /** Writes rows in the fresh, migrated store before the server's first start (a database from an older release). */
    prepareStore?: (store: AppStore) => Promise<void>;
  } = {},
): Promise<TestServer> {
  const t = await freshStore(engine);
  await options.prepareStore?.(t.store);
  // Recordings of this server's sessions, removed with it.
  const blobDir = await mkdtemp(path.join(tmpdir(), "stint-blobs-"));
  const parsed = loadConfig({
    STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    STINT_LOG_LEVEL: "silent",
    STINT_BLOB_DIR: blobDir,
    // Four-eyes (on for high and critical by default) is off in tests unless a test turns it on: most tests apply
    // catalogs with high-risk eligibility as one admin. test/e2e/four-eyes.test.ts sets the tiers.
    STINT_FOUR_EYES_TIERS: "none",
    ...options.env,
  });
  if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
  const config = parsed.config;
  const server = await createServer({
    config,
    logger: createLogger({
      level: options.logLevel ?? "silent",
      ...(options.logDestination ? { destination: options.logDestination } : {}),
    }),
    masterKey: options.masterKey ?? randomBytes(32),
    vaultKey: options.vaultKey === undefined ? randomBytes(32) : options.vaultKey,
    store: options.wrapStore ? options.wrapStore(t.store) : t.store,
    scrypt: TEST_SCRYPT,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.outboxHandlers ? { outboxHandlers: options.outboxHandlers } : {}),
    ...(options.outboxBackoff ? { outboxBackoff: options.outboxBackoff } : {}),
  });
  await server.bootstrap();
  await server.app.ready();

  async function login(name: string, password = passwordFor(name), otp?: string) {
    const res = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: name, password, ...(otp ? { otp } : {}) },
    });
    if (res.statusCode !== 200) throw new Error(`login ${name} failed: ${res.body}`);
    return `Bearer ${res.json<{ accessToken: string }>().accessToken}`;
  }
  const adminAuth = await login(config.bootstrapAdminName, ADMIN_PASSWORD);
  /** The users userWithRoles made with a role that approves change requests (admin, security). */
  const approvers: string[] = [];

  return {
    ...server,
    config,
    login,
    adminAuth,
    databaseUrl: t.url,
    async userWithRoles(name, roles) {
      const res = await server.app.inject({
        method: "POST",
        url: "/v1/users",
        headers: { authorization: adminAuth },
        payload: { name, password: passwordFor(name), platformRoles: roles },
      });
      if (res.statusCode === 202 && approvers[0]) {
        const { changeRequest } = res.json<{ changeRequest: { id: string } }>();
        const approved = await server.app.inject({
          method: "POST",
          url: `/v1/change-requests/${changeRequest.id}/approve`,
          headers: { authorization: await login(approvers[0]) },
          payload: {},
        });
        if (approved.statusCode !== 200) throw new Error(`approve ${name}'s roles failed: ${approved.body}`);
      } else if (res.statusCode !== 201) throw new Error(`create ${name} failed (${res.statusCode}): ${res.body}`);
      if (roles.includes("admin") || roles.includes("security")) approvers.push(name);
      return login(name);
    },
    async cleanup() {
      await server.close();
      await t.cleanup().catch(() => undefined);
      await rm(blobDir, { recursive: true, force: true });
    },
  };
}

/** The current TOTP code for a base32 secret (what an authenticator app shows). */
export function totpNow(secret: string, timestamp = Date.now()): string {
  return new OTPAuth.TOTP({
    secret: OTPAuth.Secret.fromBase32(secret),
    digits: 6,
    period: 30,
    algorithm: "SHA1",
  }).generate({ timestamp });
}
