/**
 * Pure rules of the LDAP connector: distinguished names (RFC 4514) parsed, checked
 * and normalised for comparison, the target's options, entitlements, and the
 * timestamps directories keep about last logons.
 */
import { tlsCaOf, tlsCaProblems } from "../tls-ca.rules.js";

// ---------------------------------------------------------------- distinguished names

export interface Ava {
  /** As written: a descriptor (`cn`) or a numeric OID (`2.5.4.3`). */
  type: string;
  /** Unescaped; a BER hexstring value (`#04…`) is kept as written, lower-cased. */
  value: string;
  hex: boolean;
}

export type ParsedDn = { ok: true; rdns: Ava[][] } | { ok: false; problem: string };

export const MAX_DN_LENGTH = 1024;

/** Characters RFC 4514 says must be escaped anywhere in a value. */
const MUST_ESCAPE = new Set(['"', "+", ",", ";", "<", ">", "\\"]);
/** Characters that may follow a backslash as themselves. */
const ESCAPABLE = new Set([...MUST_ESCAPE, " ", "#", "="]);
const HEX_PAIR = /^[0-9a-fA-F]{2}$/;
const DESCRIPTOR = /^[A-Za-z][A-Za-z0-9-]*/;
const NUMERIC_OID = /^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+/;
/** C0 controls and DEL. */
function isControl(char: string): boolean {
  const code = char.charCodeAt(0);
  return code < 0x20 || code === 0x7f;
}
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a DN as RFC 4514 writes it (`uid=alice,ou=people,dc=example,dc=com`,
 * `CN=Smith\, Ann,OU=Staff,DC=corp`), allowing only spaces before an attribute type
 * and around `=`'s left side. Unescaped specials, a leading or trailing unescaped space,
 * control characters, bad escapes, invalid UTF-8 and empty values are problems. The
 * empty DN (the root) is refused: nothing Stint manages is named by it.
 */
export function parseDn(text: string): ParsedDn {
  if (typeof text !== "string" || text.length === 0) return { ok: false, problem: "must not be empty" };
  if (text.length > MAX_DN_LENGTH) return { ok: false, problem: `must be at most ${MAX_DN_LENGTH} characters` };
  const rdns: Ava[][] = [];
  let rdn: Ava[] = [];
  let at = 0;
  const fail = (problem: string): ParsedDn => ({ ok: false, problem: `${problem} (at character ${at + 1})` });

  for (;;) {
    while (text[at] === " ") at += 1;
    const rest = text.slice(at);
    const type = NUMERIC_OID.exec(rest)?.[0] ?? DESCRIPTOR.exec(rest)?.[0];
    if (type === undefined) return fail("expected an attribute type such as uid, cn or ou");
    at += type.length;
    while (text[at] === " ") at += 1;
    if (text[at] !== "=") return fail(`expected "=" after ${type}`);
    at += 1;

    let value: string;
    let hex = false;
    if (text[at] === "#") {
      const digits = /^#((?:[0-9a-fA-F]{2})+)/.exec(text.slice(at));
      if (!digits) return fail("a value starting with # must be hex pairs (escape a literal # as \\#)");
      value = `#${digits[1]!.toLowerCase()}`;
      hex = true;
      at += digits[0].length;
    } else {
      const bytes: number[] = [];
      let lastUnescapedSpace = false;
      const start = at;
      while (at < text.length && text[at] !== "," && text[at] !== "+") {
        const char = text[at]!;
        if (char === "\\") {
          const next = text[at + 1] ?? "";
          const pair = text.slice(at + 1, at + 3);
          if (HEX_PAIR.test(pair)) {
            bytes.push(parseInt(pair, 16));
            at += 3;
          } else if (ESCAPABLE.has(next)) {
            bytes.push(next.charCodeAt(0));
            at += 2;
          } else return fail('a backslash must escape one of " + , ; < > \\ space # = or start two hex digits');
          lastUnescapedSpace = false;
          continue;
        }
        if (MUST_ESCAPE.has(char)) return fail(`${char} in a value must be escaped as \\${char}`);
        if (isControl(char)) return fail("control characters are not allowed");
        if (char === " " && at === start) return fail("a value may not start with an unescaped space");
        const codePoint = text.codePointAt(at)!;
        const width = codePoint > 0xffff ? 2 : 1;
        if (codePoint >= 0xd800 && codePoint <= 0xdfff) return fail("invalid Unicode (a lone surrogate)");
        bytes.push(...utf8.encode(text.slice(at, at + width)));
        lastUnescapedSpace = char === " ";
        at += width;
      }
      if (lastUnescapedSpace) return fail("a value may not end with an unescaped space (write it as \\20)");
      if (bytes.length === 0) return fail(`${type} has an empty value`);
      try {
        value = strictUtf8.decode(Uint8Array.from(bytes));
      } catch {
        return fail("the escaped bytes are not valid UTF-8");
      }
      if (value.includes("\u0000")) return fail("a value may not contain NUL");
    }
    rdn.push({ type, value, hex });

    if (at >= text.length) {
      rdns.push(rdn);
      return { ok: true, rdns };
    }
    if (text[at] === ",") {
      rdns.push(rdn);
      rdn = [];
    } else if (text[at] !== "+") return fail('expected "," or "+" after a value');
    at += 1;
  }
}

/** Long attribute names and OIDs of the types DNs usually use, mapped to their short names. */
const TYPE_ALIASES: Record<string, string> = {
  commonname: "cn",
  "2.5.4.3": "cn",
  userid: "uid",
  "0.9.2342.19200300.100.1.1": "uid",
  domaincomponent: "dc",
  "0.9.2342.19200300.100.1.25": "dc",
  organizationalunitname: "ou",
  "2.5.4.11": "ou",
  organizationname: "o",
  "2.5.4.10": "o",
  countryname: "c",
  "2.5.4.6": "c",
  localityname: "l",
  "2.5.4.7": "l",
  stateorprovincename: "st",
  "2.5.4.8": "st",
  streetaddress: "street",
  "2.5.4.9": "street",
  surname: "sn",
  "2.5.4.4": "sn",
};

function normalType(type: string): string {
  const lower = type.toLowerCase();
  return TYPE_ALIASES[lower] ?? lower;
}

/**
 * A value compared as caseIgnoreMatch does (the matching rule of cn, uid, ou, dc, o …):
 * Unicode-compatibility normalised, case folded, outer spaces dropped, inner runs of
 * spaces made one (RFC 4518 in spirit, not to the letter).
 */
function normalValue(ava: Ava): string {
  if (ava.hex) return ava.value;
  const folded = ava.value.normalize("NFKC").toLowerCase().trim().replace(/\s+/g, " ");
  // RFC 4518 §2.6.1: a value of nothing but spaces compares as one space.
  return folded === "" ? " " : folded;
}

/** RFC 4514 escaping of one value. */
export function escapeDnValue(value: string): string {
  let out = "";
  for (const char of value) {
    if (MUST_ESCAPE.has(char)) out += `\\${char}`;
    else if (isControl(char)) out += `\\${char.charCodeAt(0).toString(16).padStart(2, "0")}`;
    else out += char;
  }
  if (out.startsWith(" ") || out.startsWith("#")) out = `\\${out}`;
  if (out.endsWith(" ") && !out.endsWith("\\ ")) out = `${out.slice(0, -1)}\\ `;
  return out;
}

function formatRdns(rdns: Ava[][]): string {
  return rdns
    .map((rdn) =>
      rdn
        .map((ava) => `${normalType(ava.type)}=${ava.hex ? ava.value : escapeDnValue(normalValue(ava))}`)
        .sort()
        .join("+"),
    )
    .join(",");
}

/**
 * One spelling per entry, for comparing and reporting DNs: `CN=Smith\, Ann, OU=Staff`
 * and `cn=smith\2c ann,ou=staff` both become `cn=smith\, ann,ou=staff`. Compares every
 * value case-insensitively, as LDAP does for the naming attributes in practice (a
 * case-exact naming attribute would be compared too loosely). Null when not a DN.
 */
export function normalizeDn(text: string): string | null {
  const parsed = parseDn(text);
  return parsed.ok ? formatRdns(parsed.rdns) : null;
}

/** Whether two strings name the same entry (false when either is not a DN). */
export function sameDn(a: string, b: string): boolean {
  const left = normalizeDn(a);
  return left !== null && left === normalizeDn(b);
}

/**
 * A member value as a DN: uniqueMember's syntax (nameAndOptionalUID) may end in an
 * optional unique identifier, `#'0101'B`, which is not part of the name.
 */
export function memberDn(value: string): string {
  return value.replace(/#'[01]*'B$/, "");
}

// ---------------------------------------------------------------- options, entitlements, logins

export const MEMBER_ATTRIBUTES = ["member", "uniqueMember"] as const;
export type MemberAttribute = (typeof MEMBER_ATTRIBUTES)[number];
const OPTION_KEYS = ["bindDn", "memberAttribute", "privilegedGroups", "ignore", "startTls", "tls"];
const MAX_LISTED_DNS = 1000;

export interface LdapSettings {
  bindDn: string;
  memberAttribute: MemberAttribute;
  privilegedGroups: string[];
  ignore: string[];
  startTls: boolean;
  /** `options.tls.ca`: the CAs the server's certificate is checked against (ldaps:// and StartTLS); null: Node's. */
  ca: string | null;
}

function dnListProblems(name: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return [`options.${name} must be a list of DNs`];
  if (value.length > MAX_LISTED_DNS) return [`options.${name} may list at most ${MAX_LISTED_DNS} DNs`];
  return value.flatMap((item, index) => {
    if (typeof item !== "string") return [`options.${name}[${index}] must be a DN (a string)`];
    const parsed = parseDn(item);
    return parsed.ok ? [] : [`options.${name}[${index}] is not a DN: ${parsed.problem}`];
  });
}

export function checkOptions(options: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key))
      problems.push(`options.${key} is not an ldap option (use ${OPTION_KEYS.join(", ")})`);
  }
  if (options.bindDn === undefined)
    problems.push("options.bindDn is required: the DN Stint binds as (its password is the target's credential)");
  else if (typeof options.bindDn !== "string") problems.push("options.bindDn must be a DN (a string)");
  else {
    const parsed = parseDn(options.bindDn);
    if (!parsed.ok) problems.push(`options.bindDn is not a DN: ${parsed.problem}`);
  }
  if (
    options.memberAttribute !== undefined &&
    !(MEMBER_ATTRIBUTES as readonly unknown[]).includes(options.memberAttribute)
  )
    problems.push(
      'options.memberAttribute must be "member" (groupOfNames, AD groups) or "uniqueMember" (groupOfUniqueNames)',
    );
  problems.push(...dnListProblems("privilegedGroups", options.privilegedGroups));
  problems.push(...dnListProblems("ignore", options.ignore));
  if (options.startTls !== undefined && typeof options.startTls !== "boolean")
    problems.push("options.startTls must be true or false");
  problems.push(...tlsCaProblems(options.tls, "known: ca; an ldaps:// address or options.startTls turns TLS on"));
  return problems;
}

/** Settings with defaults, from options `checkOptions` accepted. */
export function settingsOf(options: Record<string, unknown>): LdapSettings {
  const list = (value: unknown) =>
    Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
  return {
    bindDn: typeof options.bindDn === "string" ? options.bindDn : "",
    memberAttribute: options.memberAttribute === "uniqueMember" ? "uniqueMember" : "member",
    privilegedGroups: list(options.privilegedGroups),
    ignore: list(options.ignore),
    startTls: options.startTls === true,
    ca: tlsCaOf(options.tls),
  };
}

/** `{ group: "<group DN>" }` and nothing else. */
export function checkEntitlement(entitlement: Record<string, unknown>): string[] {
  if (typeof entitlement !== "object" || entitlement === null || Array.isArray(entitlement))
    return ['the entitlement must be an object such as { group: "cn=admins,ou=groups,dc=example,dc=com" }'];
  const problems = Object.keys(entitlement)
    .filter((key) => key !== "group")
    .map((key) => `entitlement.${key} is not an ldap entitlement field (only group)`);
  const group = entitlement.group;
  if (group === undefined) problems.push("entitlement.group is required: the DN of the group to add the login to");
  else if (typeof group !== "string") problems.push("entitlement.group must be a DN (a string)");
  else {
    const parsed = parseDn(group);
    if (!parsed.ok) problems.push(`entitlement.group is not a DN: ${parsed.problem}`);
  }
  return problems;
}

/** The group DN of an entitlement `checkEntitlement` accepted. */
export function groupOf(entitlement: Record<string, unknown>): string {
  return typeof entitlement.group === "string" ? entitlement.group : "";
}

/** A login is the DN of the principal's entry: `uid=alice,ou=people,dc=example,dc=com`. */
export function checkLogin(login: string): string[] {
  const parsed = parseDn(login);
  return parsed.ok ? [] : [`the login must be a DN such as uid=alice,ou=people,dc=example,dc=com: ${parsed.problem}`];
}

// ---------------------------------------------------------------- last activity

const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,](\d+))?(Z|[+-]\d{2}(?:\d{2})?)$/;

/** LDAP GeneralizedTime (`20240131120000Z`, `20240131120000.5+0100`) as ISO 8601 UTC; null when malformed. */
export function generalizedTimeToIso(text: string): string | null {
  const match = GENERALIZED_TIME.exec(text.trim());
  if (!match) return null;
  const [, year, month, day, hour, minute = "00", second = "00", fraction = "", zone = "Z"] = match;
  const ms = Math.min(999, Math.round(Number(`0.${fraction || "0"}`) * 1000));
  const wallClock = new Date(Date.UTC(+year!, +month! - 1, +day!, +hour!, +minute, +second, ms));
  // Date.UTC rolls 31 February over into March and hour 25 into the next day: refuse those.
  if (
    wallClock.getUTCFullYear() !== +year! ||
    wallClock.getUTCMonth() !== +month! - 1 ||
    wallClock.getUTCDate() !== +day! ||
    wallClock.getUTCHours() !== +hour! ||
    wallClock.getUTCMinutes() !== +minute ||
    wallClock.getUTCSeconds() !== +second
  )
    return null;
  const offsetMinutes =
    zone === "Z"
      ? 0
      : (zone.startsWith("-") ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5) || "0"));
  return new Date(wallClock.getTime() - offsetMinutes * 60_000).toISOString();
}

const FILETIME_UNIX_EPOCH = 116_444_736_000_000_000n; // 100 ns intervals from 1601-01-01 to 1970-01-01
const FILETIME_NEVER = 0x7fff_ffff_ffff_ffffn;

/** An Active Directory FILETIME (100 ns intervals since 1601, as a decimal string) as ISO 8601; null for 0/never. */
export function fileTimeToIso(text: string): string | null {
  if (!/^\d{1,20}$/.test(text.trim())) return null;
  const value = BigInt(text.trim());
  if (value === 0n || value >= FILETIME_NEVER || value < FILETIME_UNIX_EPOCH) return null;
  const ms = Number((value - FILETIME_UNIX_EPOCH) / 10_000n);
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** Attributes that record a last logon: OpenLDAP lastbind (2.5+) / its older contrib overlay, and AD. */
export const ACTIVITY_ATTRIBUTES = ["pwdLastSuccess", "authTimestamp", "lastLogonTimestamp"] as const;

/** The latest of the last-logon timestamps an entry carries, or null. */
export function lastActivityOf(values: Partial<Record<(typeof ACTIVITY_ATTRIBUTES)[number], string[]>>): string | null {
  const times = [
    ...(values.pwdLastSuccess ?? []).map(generalizedTimeToIso),
    ...(values.authTimestamp ?? []).map(generalizedTimeToIso),
    ...(values.lastLogonTimestamp ?? []).map(fileTimeToIso),
  ].filter((t): t is string => t !== null);
  return times.length === 0 ? null : times.sort().at(-1)!;
}

// ---------------------------------------------------------------- result codes

/** LDAP result codes (RFC 4511) the connector treats specially. */
export const RESULT = {
  timeLimitExceeded: 3,
  noSuchAttribute: 16,
  undefinedAttributeType: 17,
  typeOrValueExists: 20,
  invalidAttributeSyntax: 21,
  noSuchObject: 32,
  invalidDnSyntax: 34,
  invalidCredentials: 49,
  insufficientAccessRights: 50,
  busy: 51,
  unavailable: 52,
  objectClassViolation: 65,
} as const;

/** RFC 4511 §4.1.9 result names, for messages (servers often send a code and no text). */
const RESULT_NAMES: Record<number, string> = {
  1: "operationsError",
  2: "protocolError",
  3: "timeLimitExceeded",
  4: "sizeLimitExceeded",
  7: "authMethodNotSupported",
  8: "strongerAuthRequired",
  11: "adminLimitExceeded",
  12: "unavailableCriticalExtension",
  13: "confidentialityRequired",
  16: "noSuchAttribute",
  17: "undefinedAttributeType",
  18: "inappropriateMatching",
  19: "constraintViolation",
  20: "attributeOrValueExists",
  21: "invalidAttributeSyntax",
  32: "noSuchObject",
  33: "aliasProblem",
  34: "invalidDNSyntax",
  36: "aliasDereferencingProblem",
  48: "inappropriateAuthentication",
  49: "invalidCredentials",
  50: "insufficientAccessRights",
  51: "busy",
  52: "unavailable",
  53: "unwillingToPerform",
  54: "loopDetect",
  64: "namingViolation",
  65: "objectClassViolation",
  66: "notAllowedOnNonLeaf",
  67: "notAllowedOnRDN",
  68: "entryAlreadyExists",
  69: "objectClassModsProhibited",
  71: "affectsMultipleDSAs",
  80: "other",
};

/** A server's answer for people: `insufficientAccessRights (50)`, then its diagnostic text when it sent one. */
export function describeResult(code: number, diagnostic: string): string {
  const text = diagnostic
    .replace(/\s*Code: 0x[0-9a-f]+\s*$/i, "")
    .replace(/\s+/g, " ")
    .trim();
  const name = `${RESULT_NAMES[code] ?? "result"} (${code})`;
  return text ? `${name}: ${text}` : name;
}

/** Whether an LDAP result code means "try again later" rather than "no". */
export function isTransientResult(code: number): boolean {
  return code === RESULT.timeLimitExceeded || code === RESULT.busy || code === RESULT.unavailable;
}

/**
 * Result codes that answer about the operation's object (no such entry or value, the value is there already,
 * the schema or the ACL says no): the connection is as it was, bound as before, and may serve the next call.
 * Any other code (busy, unavailable, protocolError, strongerAuthRequired, other …) may come from a server
 * about to drop the connection or one whose state is unknown: the connection is closed, not pooled.
 */
const SETTLED_RESULTS: ReadonlySet<number> = new Set([
  RESULT.noSuchAttribute,
  RESULT.undefinedAttributeType,
  18, // inappropriateMatching
  19, // constraintViolation
  RESULT.typeOrValueExists,
  RESULT.invalidAttributeSyntax,
  RESULT.noSuchObject,
  RESULT.invalidDnSyntax,
  RESULT.insufficientAccessRights,
  64, // namingViolation
  RESULT.objectClassViolation,
  66, // notAllowedOnNonLeaf
  67, // notAllowedOnRDN
  68, // entryAlreadyExists
  69, // objectClassModsProhibited
]);

/** Whether a connection that received this result code may be reused (see SETTLED_RESULTS). */
export function leavesConnectionAsItWas(code: number): boolean {
  return SETTLED_RESULTS.has(code);
}
