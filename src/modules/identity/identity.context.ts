/**
 * What identity's use cases share (sign-in, sessions, bearer authentication, MFA, setup, account): the
 * service's dependencies and what is derived from them once. Each use-case file is a factory taking this.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { deriveKey, hashPassword, type ScryptParams } from "../../lib/security.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { Keyring } from "../keys/keys.service.js";
import type { PasskeyService } from "../passkeys/passkeys.service.js";
import { createAuthCache, type AuthCache } from "./auth-cache.js";
import type { IdentityPolicy } from "./identity.types.js";
import { principalTeller } from "./principal.mapper.js";

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
  /** How long an invite's code is good for (`inviteTtl`; invites.ts, default 24 hours). */
  inviteTtlMs?: number;
  /** Passkeys as a second factor at sign-in (modules/passkeys). Without it only TOTP is asked for. */
  passkeys?: Pick<PasskeyService, "hasPasskeys" | "loginOptions" | "checkAssertion">;
}

export interface IdentityContext extends IdentityServiceDeps {
  /** Seals TOTP secrets (derived from the master key; each sealed value is bound to its principal id). */
  totpKey: Buffer;
  /** Verified tokens, live sessions and API tokens from memory; only with the access index. */
  cache: AuthCache | undefined;
  /** In the transaction that created or changed a principal: every node's index learns it at commit. */
  tellPrincipal(tx: Kysely<Database>, id: string): Promise<void>;
  /** A password's scrypt hash with the service's parameters. */
  hash(password: string): Promise<string>;
}

export function createIdentityContext(deps: IdentityServiceDeps): IdentityContext {
  const { index } = deps;
  return {
    ...deps,
    totpKey: deriveKey(deps.masterKey, "totp"),
    cache: index ? createAuthCache({ index }) : undefined,
    tellPrincipal: principalTeller(index),
    hash: (password) => hashPassword(password, deps.scrypt),
  };
}
