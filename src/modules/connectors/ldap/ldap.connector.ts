/**
 * The LDAP connector: an entitlement is membership of a group (groupOfNames `member`,
 * groupOfUniqueNames `uniqueMember`, or an Active Directory group), and a login is
 * the DN of the principal's entry. Stint binds as `options.bindDn` with the target's
 * credential on a connection of the target's pool (ldap.client.ts) and changes one value
 * of the group's member attribute. Values travel BER-encoded in modify requests, never in filters, so there
 * is nothing to inject into; DNs are still checked strictly (ldap.rules.ts).
 */
import { Attribute, BerWriter, Change, type Entry, type ResultCodeError } from "ldapts";
import {
  refused,
  type Connector,
  type ConnectorTarget,
  type GrantSpec,
  type StandingAccess,
} from "../connector.types.js";
import { canBind, endpointOf, resultCode, serverWords, withDirectory, type Directory } from "./ldap.client.js";
import {
  ACTIVITY_ATTRIBUTES,
  RESULT,
  checkEntitlement,
  checkLogin,
  checkOptions,
  groupOf,
  lastActivityOf,
  memberDn,
  normalizeDn,
  settingsOf,
  type LdapSettings,
} from "./ldap.rules.js";

export { normalizeDn, sameDn } from "./ldap.rules.js";
export { ldapPools } from "./ldap.client.js";

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
async function readMembers(client: Directory, target: ConnectorTarget, group: string, attribute: string) {
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

async function lastActivity(client: Directory, dn: string): Promise<string | null> {
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
    return canBind(target, call, login, spec.password);
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
