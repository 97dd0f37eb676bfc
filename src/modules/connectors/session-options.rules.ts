/**
 * `options.session` of a target the session broker can reach (ssh-host, postgres): the login the
 * proxy connects as and the vault path of its credential (a password, or an ssh-key for ssh-host).
 * Pure; shared by the connectors' option checks and the sessions module.
 */
export interface SessionOptions {
  login: string;
  /** A vault path. */
  secret: string;
}

const LOGIN = /^[A-Za-z_][A-Za-z0-9_.@-]{0,62}$/;
const VAULT_PATH = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;

export function sessionOptionProblems(value: unknown): string[] {
  if (value === undefined) return [];
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return ["options.session must be a mapping with login and secret (the vault path of its credential)"];
  const record = value as Record<string, unknown>;
  const problems = Object.keys(record)
    .filter((key) => key !== "login" && key !== "secret")
    .map((key) => `options.session.${key} is not a session setting (known: login, secret)`);
  if (typeof record.login !== "string" || !LOGIN.test(record.login))
    problems.push("options.session.login must be a login name (letters, digits, _ . @ -, starting with a letter or _)");
  if (typeof record.secret !== "string" || !VAULT_PATH.test(record.secret))
    problems.push('options.session.secret must be a vault path like "ssh/prod-web/deploy"');
  return problems;
}

/** The session settings of a target's options, or null when it has none (or they are not valid). */
export function sessionOptionsOf(options: Record<string, unknown>): SessionOptions | null {
  if (sessionOptionProblems(options.session).length > 0 || options.session === undefined) return null;
  const { login, secret } = options.session as SessionOptions;
  return { login, secret };
}

/**
 * A role's own session login (`entitlement.session`, ssh-host and postgres): a low-risk role need not get
 * the upstream login of a critical one on the same target. Not part of what the connector grants, so it
 * is taken out before the entitlement reaches a connector.
 */
export function roleSessionOf(entitlement: Record<string, unknown>): SessionOptions | null {
  return sessionOptionsOf({ session: entitlement.session });
}

/** Problems with a role's `entitlement.session` (none when absent). */
export function roleSessionProblems(entitlement: Record<string, unknown>): string[] {
  return sessionOptionProblems(entitlement.session).map((problem) =>
    problem.replace(/options\.session/g, "entitlement.session"),
  );
}

/** The entitlement as its connector knows it: without the role's session login. */
export function withoutRoleSession(entitlement: Record<string, unknown>): Record<string, unknown> {
  if (!("session" in entitlement)) return entitlement;
  const { session: _session, ...rest } = entitlement;
  return rest;
}
