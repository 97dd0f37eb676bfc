/**
 * Pure SCIM 2.0 rules (RFC 7643/7644): names, filters, and PATCH operations as Entra ID and Okta send them
 * (capitalised ops, booleans as strings, path-less replace with an object, `members[value eq "…"]`). No IO.
 */
export const SCHEMA_USER = "urn:ietf:params:scim:schemas:core:2.0:User";
export const SCHEMA_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group";
export const SCHEMA_LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
export const SCHEMA_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
export const SCHEMA_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error";
export const SCHEMA_ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
export const MAX_PAGE = 200;

/** An error in SCIM's own shape (RFC 7644 §3.12). */
export class ScimError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly scimType?:
      "invalidFilter" | "invalidValue" | "invalidPath" | "uniqueness" | "mutability" | "noTarget" | "invalidSyntax",
  ) {
    super(message);
    this.name = "ScimError";
  }
}

/**
 * A change of a user SCIM may not make, refused whole and audited (outcome denied) by the service, which tells
 * the client 400 `mutability` (RFC 7644 §3.12: not compatible with the attribute's current state).
 */
export class ScimRefusal extends Error {
  constructor(
    readonly user: string,
    readonly action: "user.enable" | "user.update",
    readonly why: string,
    readonly sentence: string,
  ) {
    super(why);
  }
}

/** `active: true` for a user a Stint administrator disabled (an incident's disable outlasts the next sync). */
export const adminDisabled = (user: string) =>
  new ScimRefusal(
    user,
    "user.enable",
    "disabled by a Stint administrator: only an administrator enables it",
    `A Stint administrator disabled ${user}; SCIM cannot enable it (active stays false until an administrator enables it in Stint).`,
  );

/**
 * A new externalId where single sign-on finds SCIM's account by it (`match: externalId`): it says who signs in as
 * the user, so changed, the next sign-in of that subject not linked yet would take over an account never signed in.
 */
export const signInSubjectFixed = (user: string) =>
  new ScimRefusal(
    user,
    "user.update",
    "externalId is the single sign-on subject of the account: SCIM cannot change it",
    `The externalId of ${user} is the subject its single sign-on matches; SCIM cannot change it (an administrator deletes the user, and SCIM provisions the person anew).`,
  );

/**
 * Stint's name for what the identity provider calls `value` (a userName such as `Alice.Smith@Example.com`, a
 * group's displayName): lower case, every run of other characters than a-z 0-9 . _ - made one `.`, starting with a
 * letter, at most 64 characters. Deterministic, so the same userName always lands on the same name.
 */
export function stintName(value: string): string {
  let name = value
    .normalize("NFKC")
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, ".")
    .replace(/^[^a-z]+/, "")
    .replace(/\.+$/, "");
  if (name.length > 64) name = name.slice(0, 64).replace(/[._-]+$/, "");
  if (name === "") throw new ScimError(400, `"${value.slice(0, 64)}" has no letter to make a name of.`, "invalidValue");
  return name;
}

/** `true`, `false` and the strings Entra sends (`"True"`, `"False"`). */
export function scimBoolean(value: unknown, what: string): boolean {
  if (typeof value === "boolean") return value;
  if (typeof value === "string" && /^(true|false)$/i.test(value)) return value.toLowerCase() === "true";
  throw new ScimError(400, `${what} must be true or false.`, "invalidValue");
}

/** `attr eq "value"` on one of `attributes` (the only filter Entra and Okta send for lookups). */
export function parseFilter(filter: string, attributes: readonly string[]): { attribute: string; value: string } {
  const match = /^\s*([A-Za-z][A-Za-z0-9.]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$/i.exec(filter);
  if (!match) throw new ScimError(400, `Only filters of the form attribute eq "value" are supported.`, "invalidFilter");
  const attribute = attributes.find((a) => a.toLowerCase() === match[1]!.toLowerCase());
  if (!attribute)
    throw new ScimError(
      400,
      `Filtering on ${match[1]} is not supported (use ${attributes.join(", ")}).`,
      "invalidFilter",
    );
  return { attribute, value: match[2]!.replace(/\\(.)/g, "$1") };
}

/** startIndex is 1-based; count is capped. */
export function paging(startIndex: unknown, count: unknown): { offset: number; limit: number } {
  const start = startIndex === undefined ? 1 : Number(startIndex);
  const size = count === undefined ? 100 : Number(count);
  if (!Number.isInteger(start) || !Number.isInteger(size) || size < 0)
    throw new ScimError(400, "startIndex and count must be whole numbers.", "invalidValue");
  return { offset: Math.max(start, 1) - 1, limit: Math.min(size, MAX_PAGE) };
}

/** What a user resource (POST/PUT body) or a PATCH says about the fields Stint keeps. */
export interface UserFields {
  userName?: string;
  externalId?: string | null;
  active?: boolean;
  displayName?: string | null;
  email?: string | null;
}

interface ScimUserBody {
  userName?: unknown;
  externalId?: unknown;
  active?: unknown;
  displayName?: unknown;
  name?: { formatted?: unknown; givenName?: unknown; familyName?: unknown };
  emails?: { value?: unknown; primary?: unknown; type?: unknown }[];
}

const text = (value: unknown, what: string, max = 256): string => {
  if (typeof value !== "string" || value.length === 0 || value.length > max)
    throw new ScimError(400, `${what} must be a string of 1 to ${max} characters.`, "invalidValue");
  return value;
};

function displayNameOf(body: ScimUserBody): string | null {
  if (typeof body.displayName === "string" && body.displayName) return body.displayName.slice(0, 256);
  const name = body.name;
  if (name && typeof name.formatted === "string" && name.formatted) return name.formatted.slice(0, 256);
  const parts = [name?.givenName, name?.familyName].filter((p): p is string => typeof p === "string" && p !== "");
  return parts.length > 0 ? parts.join(" ").slice(0, 256) : null;
}

function emailOf(emails: ScimUserBody["emails"]): string | null {
  if (!Array.isArray(emails) || emails.length === 0) return null;
  const primary =
    emails.find((e) => e?.primary === true || e?.primary === "True" || e?.primary === "true") ?? emails[0];
  return typeof primary?.value === "string" && primary.value ? primary.value.slice(0, 320) : null;
}

/** The fields of a full user resource (POST and PUT). */
export function userFromResource(body: unknown): Required<Pick<UserFields, "userName">> & UserFields {
  if (typeof body !== "object" || body === null) throw new ScimError(400, "The body must be a User.", "invalidSyntax");
  const user = body as ScimUserBody;
  return {
    userName: text(user.userName, "userName"),
    externalId: user.externalId === undefined || user.externalId === null ? null : text(user.externalId, "externalId"),
    active: user.active === undefined ? true : scimBoolean(user.active, "active"),
    displayName: displayNameOf(user),
    email: emailOf(user.emails),
  };
}

export interface PatchOperation {
  op?: unknown;
  path?: unknown;
  value?: unknown;
}

function operationsOf(body: unknown): PatchOperation[] {
  const ops =
    (body as { Operations?: unknown; operations?: unknown } | null)?.Operations ??
    (body as { operations?: unknown } | null)?.operations;
  if (!Array.isArray(ops) || ops.length === 0 || ops.length > 100)
    throw new ScimError(400, "A PATCH carries 1 to 100 Operations.", "invalidSyntax");
  return ops as PatchOperation[];
}

function opName(op: PatchOperation): "add" | "replace" | "remove" {
  const name = typeof op.op === "string" ? op.op.toLowerCase() : "";
  if (name !== "add" && name !== "replace" && name !== "remove")
    throw new ScimError(400, `Unknown PATCH op ${String(op.op).slice(0, 20)}.`, "invalidSyntax");
  return name;
}

/** Attributes Stint does not keep (title, phone numbers, addresses…): accepted and left alone, as IdPs expect. */
function applyUserAttribute(fields: UserFields, path: string, value: unknown, remove: boolean): void {
  const lower = path.toLowerCase();
  if (lower === "active") fields.active = remove ? false : scimBoolean(value, "active");
  else if (lower === "username") fields.userName = text(value, "userName");
  else if (lower === "externalid") fields.externalId = remove ? null : text(value, "externalId");
  else if (lower === "displayname" || lower === "name.formatted")
    fields.displayName = remove ? null : text(value, "displayName");
  else if (lower.startsWith("emails")) {
    if (remove) fields.email = null;
    else if (Array.isArray(value)) fields.email = emailOf(value as ScimUserBody["emails"]);
    else fields.email = text(value, "email", 320);
  }
}

/** A user PATCH as Entra ID and Okta send it, reduced to the fields Stint keeps. */
export function userPatch(body: unknown): UserFields {
  const fields: UserFields = {};
  for (const op of operationsOf(body)) {
    const name = opName(op);
    if (typeof op.path === "string" && op.path !== "") {
      applyUserAttribute(fields, op.path.replace(`${SCHEMA_USER}:`, ""), op.value, name === "remove");
    } else {
      if (name === "remove") throw new ScimError(400, "A remove needs a path.", "noTarget");
      if (typeof op.value !== "object" || op.value === null)
        throw new ScimError(400, "A PATCH without a path carries an object.", "invalidValue");
      for (const [key, value] of Object.entries(op.value)) {
        if (key === "name" && typeof value === "object" && value !== null) {
          const display = displayNameOf({ name: value as ScimUserBody["name"] });
          if (display) fields.displayName = display;
        } else applyUserAttribute(fields, key, value, false);
      }
    }
  }
  return fields;
}

export interface GroupPatch {
  add: string[];
  remove: string[];
  /** The whole member list, when an op replaced it. */
  replace?: string[];
  displayName?: string;
  externalId?: string | null;
}

function memberIds(value: unknown): string[] {
  if (!Array.isArray(value)) throw new ScimError(400, "members must be a list of { value }.", "invalidValue");
  return value.map((m) => text((m as { value?: unknown } | null)?.value, "members[].value", 64));
}

/** A group PATCH: members added, removed (by list or by a `members[value eq "id"]` path) or replaced. */
export function groupPatch(body: unknown): GroupPatch {
  const patch: GroupPatch = { add: [], remove: [] };
  for (const op of operationsOf(body)) {
    const name = opName(op);
    const path = typeof op.path === "string" ? op.path : "";
    const filtered = /^members\[\s*value\s+eq\s+"([^"]+)"\s*\]$/i.exec(path);
    if (filtered) {
      if (name !== "remove") throw new ScimError(400, `Only remove works on ${path}.`, "invalidPath");
      patch.remove.push(filtered[1]!);
    } else if (path.toLowerCase() === "members") {
      if (name === "add") patch.add.push(...memberIds(op.value));
      else if (name === "replace") patch.replace = memberIds(op.value);
      else if (op.value === undefined) patch.replace = [];
      else patch.remove.push(...memberIds(op.value));
    } else if (path === "") {
      if (name === "remove") throw new ScimError(400, "A remove needs a path.", "noTarget");
      const value = (op.value ?? {}) as Record<string, unknown>;
      if (typeof value !== "object")
        throw new ScimError(400, "A PATCH without a path carries an object.", "invalidValue");
      if (value.members !== undefined) {
        if (name === "add") patch.add.push(...memberIds(value.members));
        else patch.replace = memberIds(value.members);
      }
      if (value.displayName !== undefined) patch.displayName = text(value.displayName, "displayName");
      if (value.externalId !== undefined) patch.externalId = text(value.externalId, "externalId");
    } else if (path.toLowerCase() === "displayname") {
      patch.displayName = text(op.value, "displayName");
    } else if (path.toLowerCase() === "externalid") {
      patch.externalId = name === "remove" ? null : text(op.value, "externalId");
    } else throw new ScimError(400, `A group has no attribute ${path.slice(0, 64)} Stint keeps.`, "invalidPath");
  }
  return patch;
}

/** A weak ETag from the row's last change (RFC 7644 §3.14). */
export function etag(updatedAt: Date): string {
  return `W/"${updatedAt.getTime().toString(36)}"`;
}

/** A single sign-on provider a SCIM service provisions for (the provider's `scim` setting). */
export interface ScimSsoLink {
  service: string;
  provider: string;
  issuer: string;
  match: "userName" | "externalId";
}

/**
 * The pairs of SCIM service and single sign-on issuer the providers' `scim` settings make. A service must be in
 * `scimServices`, and pairs with one issuer only (never across issuers); otherwise the configuration is refused.
 */
export function ssoLinksOf(
  providers: readonly { id: string; issuer: string; scim?: { service: string; match: "userName" | "externalId" } }[],
  scimServices: readonly string[],
): ScimSsoLink[] {
  const links: ScimSsoLink[] = [];
  for (const p of providers) {
    if (!p.scim) continue;
    if (!scimServices.includes(p.scim.service))
      throw new Error(`ssoProviders ${p.id}: scim.service ${p.scim.service} is not in scimServices`);
    const other = links.find((l) => l.service === p.scim!.service);
    if (other && (other.issuer !== p.issuer || other.match !== p.scim.match))
      throw new Error(
        `ssoProviders ${p.id}: scim.service ${p.scim.service} already provisions for ${other.provider} (one issuer and one match per SCIM service)`,
      );
    links.push({ service: p.scim.service, provider: p.id, issuer: p.issuer, match: p.scim.match });
  }
  return links;
}
