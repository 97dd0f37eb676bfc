/**
 * The LDAP connector: an entitlement is membership of a group (groupOfNames `member`,
 * groupOfUniqueNames `uniqueMember`, or an Active Directory group), and a login is
 * the DN of the principal's entry. Stint binds as `options.bindDn` with the target's
 * credential for one call, changes one value of the group's member attribute, and
 * unbinds. Values travel BER-encoded in modify requests, never in filters, so there
 * is nothing to inject into; DNs are still checked strictly (ldap.rules.ts).
 */
import { Attribute, BerWriter, Change, Client, ResultCodeError, type Entry } from "ldapts";
import {
  ConnectorError,
  refused,
  unavailable,
  type CallOptions,
  type Connector,
  type ConnectorTarget,
  type GrantSpec,
  type StandingAccess,
} from "../connector.types.js";
import {
  ACTIVITY_ATTRIBUTES,
  RESULT,
  checkEntitlement,
  checkLogin,
  checkOptions,
  describeResult,
  groupOf,
  isTransientResult,
  lastActivityOf,
  memberDn,
  normalizeDn,
  settingsOf,
  type LdapSettings,
} from "./ldap.rules.js";

export { normalizeDn, sameDn } from "./ldap.rules.js";

const CONNECT_TIMEOUT_MS = 5_000;
const OPERATION_TIMEOUT_MS = 15_000;

/** The LDAP result code of an error the server sent, or null for anything else (a socket error, a timeout). */
function resultCode(error: unknown): number | null {
  return error instanceof ResultCodeError ? error.code : null;
}

/** Removes the credential (and any other secret of the call) from text, in case a server or library echoes it. */
function scrub(text: string, target: ConnectorTarget, extra: string[] = []): string {
  return [target.credential ?? "", ...extra]
    .filter((secret) => secret.length >= 4)
    .reduce((clean, secret) => clean.split(secret).join("[redacted]"), text);
}

/** The server's own words for a result, one line. */
function serverWords(error: ResultCodeError, target: ConnectorTarget, extra: string[] = []): string {
  return scrub(describeResult(error.code, error.message), target, extra);
}

/** Where the connector connects, without user info, path or query. */
function endpointOf(address: string): { url: string; host: string } {
  const url = new URL(address);
  const secure = url.protocol === "ldaps:";
  const port = url.port || (secure ? "636" : "389");
  return { url: `${url.protocol}//${url.hostname}:${port}`, host: `${url.hostname}:${port}` };
}

/** Any failure as a ConnectorError: the server's "no" is refused; anything else is unavailable, safely worded. */
function classify(error: unknown, target: ConnectorTarget, doing: string, extra: string[] = []): ConnectorError {
  if (error instanceof ConnectorError) return new ConnectorError(error.reason, scrub(error.message, target, extra));
  const code = resultCode(error);
  if (code !== null) {
    const words = serverWords(error as ResultCodeError, target, extra);
    return isTransientResult(code)
      ? unavailable(`${target.name}: ${doing}: ${words}`)
      : refused(`${target.name}: ${doing}: ${words}`);
  }
  const message = error instanceof Error ? error.message : "";
  const known =
    /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|timeout|timed out|closed|socket|certificate|TLS|SSL/i;
  const firstLine = message.split("\n")[0]!;
  const detail =
    firstLine === "Connection timeout"
      ? `: no connection within ${CONNECT_TIMEOUT_MS / 1000} s`
      : known.test(message)
        ? `: ${scrub(firstLine, target, extra)}`
        : "";
  return unavailable(`${target.name}: ${doing}: the LDAP server did not answer${detail}`);
}

/**
 * Connects, optionally upgrades with StartTLS, binds as the admin, runs `work`, and
 * unbinds, also on error. On abort the call fails at once; the connection is closed
 * as soon as any operation in flight (at most the connect timeout) settles.
 */
async function withDirectory<T>(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  doing: string,
  work: (client: Client, settings: LdapSettings) => Promise<T>,
  secrets: string[] = [],
): Promise<T> {
  const settings = settingsOf(target.options);
  if (call?.signal?.aborted) throw unavailable(`${target.name}: ${doing}: cancelled`);
  if (!target.credential)
    // An empty password would make the bind anonymous (RFC 4513 §5.1.2) instead of failing.
    throw refused(`${target.name}: no credential is set: store the password of ${settings.bindDn} as its credential`);
  const credential = target.credential;
  return withConnection(
    target,
    call,
    doing,
    async (client, endpoint) => {
      try {
        await client.bind(settings.bindDn, credential);
      } catch (error) {
        if (resultCode(error) === RESULT.invalidCredentials)
          throw refused(
            `${target.name}: cannot bind as ${settings.bindDn}: invalid credentials (wrong DN or password)`,
          );
        throw classify(error, target, `binding as ${settings.bindDn} at ${endpoint.host}`, secrets);
      }
      return work(client, settings);
    },
    secrets,
  );
}

/**
 * Connects and optionally upgrades with StartTLS, without binding; runs `work` and unbinds,
 * also on error and on abort. `secrets` are scrubbed from messages besides the credential.
 */
async function withConnection<T>(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  doing: string,
  work: (client: Client, endpoint: { url: string; host: string }) => Promise<T>,
  secrets: string[],
): Promise<T> {
  const settings = settingsOf(target.options);
  const signal = call?.signal;
  if (signal?.aborted) throw unavailable(`${target.name}: ${doing}: cancelled`);
  let endpoint: { url: string; host: string };
  try {
    endpoint = endpointOf(target.address);
  } catch {
    throw refused(`${target.name}: the address is not an ldap:// or ldaps:// URL`);
  }
  if (settings.startTls && endpoint.url.startsWith("ldaps:"))
    throw refused(`${target.name}: options.startTls is for ldap:// addresses; ldaps:// is encrypted already`);

  const client = new Client({ url: endpoint.url, connectTimeout: CONNECT_TIMEOUT_MS, timeout: OPERATION_TIMEOUT_MS });
  const run = (async () => {
    if (settings.startTls) {
      try {
        await client.startTLS({ servername: new URL(target.address).hostname });
      } catch (error) {
        throw classify(error, target, `StartTLS with ${endpoint.host}`, secrets);
      }
    }
    return work(client, endpoint);
  })();

  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      reject(unavailable(`${target.name}: ${doing}: cancelled`));
      void client.unbind().catch(() => undefined);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  try {
    return await (signal ? Promise.race([run, aborted]) : run);
  } catch (error) {
    throw classify(error, target, doing, secrets);
  } finally {
    if (onAbort) signal?.removeEventListener("abort", onAbort);
    // After an abort `run` may still be connecting; close once it settles, without making the caller wait.
    const close = run.then(
      () => client.unbind(),
      () => client.unbind(),
    );
    if (signal?.aborted) void close.catch(() => undefined);
    else await close.catch(() => undefined);
  }
}

/** The LDAP Password Modify extended operation (RFC 3062). */
const PASSWORD_MODIFY_OID = "1.3.6.1.4.1.4203.1.11.1";

/** PasswdModifyRequestValue ::= SEQUENCE { userIdentity [0] OPTIONAL, oldPasswd [1] OPTIONAL, newPasswd [2] OPTIONAL } */
export function passwordModifyRequest(dn: string, newPassword: string): Buffer {
  const writer = new BerWriter();
  writer.startSequence(0x30);
  writer.writeString(dn, 0x80);
  writer.writeString(newPassword, 0x82);
  writer.endSequence();
  return writer.buffer;
}

/** Values of an attribute of an entry (attribute names compared case-insensitively, as LDAP does). */
function valuesOf(entry: Entry | undefined, attribute: string): string[] {
  if (!entry) return [];
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attribute.toLowerCase());
  if (key === undefined || key === "dn") return [];
  const value = entry[key]!;
  return (Array.isArray(value) ? value : [value]).map((v) => (Buffer.isBuffer(v) ? v.toString("utf8") : v));
}

/** The member DNs of a group, normalised, as read; refused when the group is not there. */
async function readMembers(client: Client, target: ConnectorTarget, group: string, attribute: string) {
  try {
    const { searchEntries } = await client.search(group, { scope: "base", attributes: [attribute] });
    if (searchEntries.length === 0) throw refused(`${target.name}: group ${group} does not exist`);
    return valuesOf(searchEntries[0], attribute).map((value) => {
      const dn = memberDn(value);
      return normalizeDn(dn) ?? dn.toLowerCase();
    });
  } catch (error) {
    if (resultCode(error) === RESULT.noSuchObject)
      throw refused(
        `${target.name}: group ${group} does not exist (or ${settingsOf(target.options).bindDn} cannot see it)`,
      );
    throw error;
  }
}

/** Members Stint leaves alone: `ignore`d DNs and the group itself (a common placeholder member). */
function ignoredMembers(settings: LdapSettings, group: string): Set<string> {
  return new Set([group, ...settings.ignore].map((dn) => normalizeDn(dn)).filter((dn): dn is string => dn !== null));
}

async function lastActivity(client: Client, dn: string): Promise<string | null> {
  try {
    const { searchEntries } = await client.search(dn, { scope: "base", attributes: [...ACTIVITY_ATTRIBUTES] });
    const entry = searchEntries[0];
    return lastActivityOf({
      pwdLastSuccess: valuesOf(entry, "pwdLastSuccess"),
      authTimestamp: valuesOf(entry, "authTimestamp"),
      lastLogonTimestamp: valuesOf(entry, "lastLogonTimestamp"),
    });
  } catch (error) {
    // A member without an entry (or one the admin cannot read) has no known activity; a lost connection is an error.
    if (resultCode(error) !== null) return null;
    throw error;
  }
}

/** The login as given, or refused when it is not a DN (it is never sent to the server then). */
function checkedLogin(target: ConnectorTarget, login: string): string {
  const problems = checkLogin(login);
  if (problems.length > 0) throw refused(`${target.name}: ${problems.join("; ")}`);
  return login;
}

function modification(operation: "add" | "delete", attribute: string, value: string): Change {
  return new Change({ operation, modification: new Attribute({ type: attribute, values: [value] }) });
}

export const ldapConnector: Connector = {
  kind: "ldap",
  checkOptions,
  checkEntitlement,
  checkLogin,

  async test(target, call) {
    return withDirectory(target, call, "reading the root DSE", async (client, settings) => {
      const { searchEntries } = await client.search("", {
        scope: "base",
        filter: "(objectClass=*)",
        attributes: ["namingContexts", "vendorName", "vendorVersion", "objectClass", "structuralObjectClass"],
      });
      const rootDse = searchEntries[0];
      let identity = settings.bindDn;
      try {
        // "Who am I?" (RFC 4532): the identity the server sees, which can differ from the bind DN.
        const answer = await client.exop("1.3.6.1.4.1.4203.1.11.3");
        if (answer.value) identity = answer.value.replace(/^dn:/, "");
      } catch (error) {
        if (resultCode(error) === null) throw error;
      }
      // OpenLDAP names no vendor; its root DSE's class gives it away.
      const openLdap = [...valuesOf(rootDse, "structuralObjectClass"), ...valuesOf(rootDse, "objectClass")].some(
        (c) => c.toLowerCase() === "openldaprootdse",
      );
      const vendor =
        [...valuesOf(rootDse, "vendorName"), ...valuesOf(rootDse, "vendorVersion")].join(" ") ||
        (openLdap ? "OpenLDAP" : "");
      const contexts = valuesOf(rootDse, "namingContexts");
      const { host } = endpointOf(target.address);
      return {
        detail: `${vendor || "LDAP server"} at ${host}${contexts.length ? ` (${contexts.join("; ")})` : ""}, bound as ${identity}`,
      };
    });
  },

  async provision(target, grant: GrantSpec, call) {
    const group = groupOf(grant.entitlement);
    await withDirectory(target, call, `adding ${grant.login} to ${group}`, async (client, settings) => {
      // A member value naming no entry would "succeed" and grant nothing: check the login exists first.
      try {
        await client.search(grant.login, { scope: "base", attributes: ["1.1"] });
      } catch (error) {
        if (resultCode(error) === RESULT.noSuchObject)
          throw refused(`${target.name}: there is no entry ${grant.login} (check the target's identity template)`);
        throw error;
      }
      try {
        await client.modify(group, modification("add", settings.memberAttribute, grant.login));
      } catch (error) {
        const code = resultCode(error);
        if (code === RESULT.typeOrValueExists) return;
        if (code === RESULT.noSuchObject) throw refused(`${target.name}: group ${group} does not exist`);
        if (code === RESULT.objectClassViolation || code === RESULT.undefinedAttributeType)
          throw refused(
            `${target.name}: group ${group} does not take ${settings.memberAttribute} values ` +
              `(${serverWords(error as ResultCodeError, target)}); is options.memberAttribute right for its object class?`,
          );
        throw error;
      }
    });
  },

  async revoke(target, grant: GrantSpec, call) {
    const group = groupOf(grant.entitlement);
    await withDirectory(target, call, `removing ${grant.login} from ${group}`, async (client, settings) => {
      try {
        await client.modify(group, modification("delete", settings.memberAttribute, grant.login));
      } catch (error) {
        const code = resultCode(error);
        // Not a member, or no group at all: the login does not hold it, which is what revoke wants.
        if (code === RESULT.noSuchAttribute || code === RESULT.noSuchObject) return;
        if (code === RESULT.objectClassViolation)
          throw refused(
            `${target.name}: cannot remove ${grant.login} from ${group}: it is the last member and the group's ` +
              `object class requires one (${serverWords(error as ResultCodeError, target)}); ` +
              `give the group a placeholder member, such as its own DN`,
          );
        throw error;
      }
    });
  },

  async observe(target, entitlement, call) {
    const group = groupOf(entitlement);
    return withDirectory(target, call, `reading the members of ${group}`, async (client, settings) => {
      const skip = ignoredMembers(settings, group);
      const members = await readMembers(client, target, group, settings.memberAttribute);
      return [...new Set(members.filter((dn) => !skip.has(dn)))].sort();
    });
  },

  // Rotation: `login` is the DN of an entry; its password is set by the admin and proven by a bind as the entry.
  async setPassword(target, spec, call) {
    const login = checkedLogin(target, spec.login);
    // An absent or empty newPasswd would make the server generate a password (RFC 3062 §2) nobody knows.
    if (!spec.password) throw refused(`${target.name}: will not set an empty password for ${login}`);
    await withDirectory(
      target,
      call,
      `setting the password of ${login}`,
      async (client) => {
        try {
          // Password Modify lets the server hash the value as it is configured to (password-hash, ppolicy).
          await client.exop(PASSWORD_MODIFY_OID, passwordModifyRequest(login, spec.password));
        } catch (error) {
          if (resultCode(error) === RESULT.noSuchObject)
            throw refused(`${target.name}: there is no entry ${login} (check the target's identity template)`);
          throw error;
        }
      },
      [spec.password],
    );
  },

  async verifyPassword(target, spec, call) {
    const login = checkedLogin(target, spec.login);
    // An empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which proves nothing.
    if (!spec.password) return false;
    return withConnection(
      target,
      call,
      `signing in as ${login}`,
      async (client) => {
        try {
          await client.bind(login, spec.password);
          return true;
        } catch (error) {
          if (resultCode(error) === RESULT.invalidCredentials) return false;
          throw error;
        }
      },
      [spec.password],
    );
  },

  async discover(target, call) {
    return withDirectory(target, call, "reading privileged groups", async (client, settings) => {
      const found: StandingAccess[] = [];
      const activity = new Map<string, string | null>();
      for (const group of settings.privilegedGroups) {
        const skip = ignoredMembers(settings, group);
        const members = new Set(await readMembers(client, target, group, settings.memberAttribute));
        for (const login of members) {
          if (skip.has(login)) continue;
          if (!activity.has(login)) activity.set(login, await lastActivity(client, login));
          found.push({
            login,
            privilege: `member of ${group}`,
            entitlement: { group },
            lastActivity: activity.get(login) ?? null,
          });
        }
      }
      return found.sort((a, b) => a.login.localeCompare(b.login) || a.privilege.localeCompare(b.privilege));
    });
  },
};
