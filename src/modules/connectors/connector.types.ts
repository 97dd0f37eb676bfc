/**
 * The contract every connector keeps. A connector turns "this login holds this
 * entitlement" into reality at one kind of target and back. It is called only
 * from outbox workers and the reconciler, never inside a database transaction,
 * and it holds the target's admin credential only for the duration of one call.
 *
 * Every operation is idempotent: provisioning what is already there, or revoking
 * what is already gone, succeeds and changes nothing.
 */

/** A target as a connector sees it for one call. */
export interface ConnectorTarget {
  /** The target's name in Stint (for messages only). */
  name: string;
  /** Where the connector connects as an administrator: a URL, or host:port; never holds the secret itself. */
  address: string;
  /** Kind-specific settings from the target's `options` (already checked by `checkOptions`). */
  options: Record<string, unknown>;
  /** The admin credential (password, private key, signing secret) read for this call only, or null when none is set. */
  credential: string | null;
}

/** One login and what it should hold (a role's `entitlement`, already checked by `checkEntitlement`). */
export interface GrantSpec {
  login: string;
  entitlement: Record<string, unknown>;
}

export interface CallOptions {
  /** Aborted when the outbox runner gives up on the attempt; a connector should stop and close its connections. */
  signal?: AbortSignal;
  /**
   * Names this one operation (`revoke:<grant id>`), the same on every retry of it and different for
   * another activation of the same role by the same login. Connectors that call out (webhook) send it.
   */
  operationId?: string;
}

/** A standing privilege found at a target. */
export interface StandingAccess {
  login: string;
  /** In the target's own words, for people: "superuser", "member of pg_read_all_data", "sudoers: ALL=(ALL) ALL". */
  privilege: string;
  /**
   * The entitlement that describes this privilege, in the connector's entitlement shape, so that
   * `revoke({ login, entitlement })` removes it; null when Stint cannot remove it (a sudoers line).
   */
  entitlement: Record<string, unknown> | null;
  /** When the login was last seen active, ISO 8601, where the target can tell; otherwise null. */
  lastActivity: string | null;
}

export interface TestResult {
  /** One line for people: the server's version, the account Stint acts as. */
  detail: string;
}

export interface Connector extends Partial<CredentialOperations> {
  readonly kind: "postgres" | "mysql" | "ldap" | "ssh-host" | "webhook";
  /** Problems with a target's `options` (empty when fine), each a human sentence naming the field. */
  checkOptions(options: Record<string, unknown>): string[];
  /** Problems with a role's entitlement for this kind of target (empty when fine). */
  checkEntitlement(entitlement: Record<string, unknown>): string[];
  /** Problems with a login the identity mapping produced (empty when fine). */
  checkLogin(login: string): string[];
  /** Problems with the target's admin address, when the connector checks more than the registry does. */
  checkAddress?(address: string): string[];
  /**
   * What a valid definition weakens (TLS off or unverified, a weaker sign-in opted into), each a
   * sentence for the people applying it; shown as warnings by `stint diff`/`apply`.
   */
  securityWarnings?(address: string | null, options: Record<string, unknown>): string[];
  /** Can Stint reach and administer the target? Throws a ConnectorError when not. */
  test(target: ConnectorTarget, call?: CallOptions): Promise<TestResult>;
  /** Gives the login the entitlement. Idempotent. */
  provision(target: ConnectorTarget, grant: GrantSpec, call?: CallOptions): Promise<void>;
  /**
   * Takes the entitlement away and ends the login's live sessions where the target allows
   * (so that an open connection cannot keep the privilege). Idempotent.
   */
  revoke(target: ConnectorTarget, grant: GrantSpec, call?: CallOptions): Promise<void>;
  /** The logins that hold the entitlement now, sorted, without duplicates. */
  observe(target: ConnectorTarget, entitlement: Record<string, unknown>, call?: CallOptions): Promise<string[]>;
  /** Standing privileged access at the target. */
  discover(target: ConnectorTarget, call?: CallOptions): Promise<StandingAccess[]>;
}

/** A login minted for one activation: the connector creates it with this password and the entitlement. */
export interface DynamicLoginSpec {
  login: string;
  password: string;
  /** The role's entitlement with `dynamic: true`. */
  entitlement: Record<string, unknown>;
  /** When the activation ends; a target that can (PostgreSQL VALID UNTIL) refuses the login after it by itself. */
  validUntil: Date;
  /** `password` as this connector's mintPassword gave it: its target-side form was computed ahead. */
  minted?: MintedPassword;
}

export interface DropLoginSpec {
  login: string;
  /**
   * Given when Stint's own record says it created this login at the target: the grant that drew the login's
   * random name at `namedAt` became active with it (createLogin succeeded). A connector that marks the logins it
   * makes may drop an unmarked one on this evidence (one made by a version before the mark), but never an account
   * that existed before `namedAt`. Absent: only a login the connector can tell is its own is dropped.
   */
  madeFor?: { namedAt: Date };
}

/** A new password with what the connector computed for it ahead of time (opaque to the caller). */
export interface MintedPassword {
  readonly password: string;
  readonly prepared: unknown;
}

/**
 * Database connectors that can mint a login per activation (a role's entitlement with `dynamic: true`)
 * and rotate a login's password. Optional: a connector without them cannot serve those roles.
 */
export interface CredentialOperations {
  /**
   * Optional: a new password made by `generate`, whose target-side form (PostgreSQL: its SCRAM secret) the
   * connector computed ahead of time, off the caller's path; pass it to createLogin as `spec.minted`.
   */
  mintPassword?(generate: () => string): MintedPassword;
  /** Creates the login with the password and grants it the entitlement. Idempotent for the same login. */
  createLogin(target: ConnectorTarget, spec: DynamicLoginSpec, call?: CallOptions): Promise<void>;
  /** Ends the login's sessions and drops it; a login that is gone already is fine. */
  dropLogin(target: ConnectorTarget, spec: DropLoginSpec, call?: CallOptions): Promise<void>;
  /**
   * Optional: creates logins ahead of demand, each with its password set but unusable (cannot sign in, holds
   * nothing) until `activatePreCreated`; refused when a name exists. Dropped by dropLogin like created ones.
   */
  preCreateLogins?(
    target: ConnectorTarget,
    logins: { login: string; password: string; minted?: MintedPassword }[],
    call?: CallOptions,
  ): Promise<void>;
  /** Hands out a pre-created login: it may sign in until `validUntil` and holds the entitlement. Idempotent. */
  activatePreCreated?(
    target: ConnectorTarget,
    spec: Omit<DynamicLoginSpec, "password" | "minted">,
    call?: CallOptions,
  ): Promise<void>;
  /**
   * Sets a login's password (the login must exist). `endSessions`: also end the login's sessions, where the
   * target's options allow (`terminateSessions`): someone who saw the old password keeps no session it opened.
   */
  setPassword(
    target: ConnectorTarget,
    spec: { login: string; password: string; endSessions?: boolean },
    call?: CallOptions,
  ): Promise<void>;
  /** Whether the login can sign in with this password now (a real sign-in, not a catalog lookup). */
  verifyPassword(
    target: ConnectorTarget,
    spec: { login: string; password: string },
    call?: CallOptions,
  ): Promise<boolean>;
}

/**
 * Why a connector call failed. `refused`: the target answered and said no (a missing role,
 * a permission denied): retrying will not help, and the message is the target's own words.
 * `unavailable`: the target could not be reached or did not answer in time: retry later.
 * Messages never contain the credential or a connection string with a password in it.
 */
export class ConnectorError extends Error {
  constructor(
    readonly reason: "refused" | "unavailable",
    message: string,
  ) {
    super(message);
    this.name = "ConnectorError";
  }
}

export const refused = (message: string) => new ConnectorError("refused", message);
export const unavailable = (message: string) => new ConnectorError("unavailable", message);
