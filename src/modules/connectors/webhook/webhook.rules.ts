/**
 * Pure rules of the webhook connector: what Stint accepts as an address, options,
 * login and entitlement; the request body and its idempotency key; and how an
 * endpoint's answer is read. No IO here; webhook.connector.ts does the POST.
 */
import canonicalize from "canonicalize";
import { createHash } from "node:crypto";
import { z } from "zod";
import { parseDuration } from "../../../lib/duration.js";
import type { StandingAccess } from "../connector.types.js";

export type WebhookAction = "provision" | "revoke" | "observe" | "discover" | "test";

export const DEFAULT_TIMEOUT = "10s";
const MIN_TIMEOUT_MS = 100;
const MAX_TIMEOUT_MS = 5 * 60_000;
export const MAX_ENTITLEMENT_BYTES = 16 * 1024;
export const MAX_LOGIN_LENGTH = 256;
/** The signing secret's length, as for notification webhooks. */
export const MIN_SECRET_LENGTH = 16;
export const MAX_SECRET_LENGTH = 512;
const MAX_EXTRA_HEADERS = 20;
const MAX_MESSAGE_LENGTH = 300;

/** Set by the connector on every call; options cannot override them. */
const RESERVED_HEADERS = new Set([
  "connection",
  "content-length",
  "content-type",
  "host",
  "idempotency-key",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "user-agent",
]);

/** Ports fetch refuses to connect to (the Fetch standard's "bad ports"): such an endpoint could never be called. */
const BAD_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110,
  111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532,
  540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061,
  6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

const LOOPBACK_HOST = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
// Visible ASCII, spaces and tabs inside; no CR/LF, so a value cannot add a header.
const HEADER_VALUE = /^[\x21-\x7e](?:[\x20-\x7e\t]{0,2046}[\x21-\x7e])?$/;
// Printable: no control, format, surrogate, private-use or unassigned code points, no line separators.
const PRINTABLE = /^[^\p{C}\p{Zl}\p{Zp}]+$/u;

// ---------------------------------------------------------------- checks

/** Problems with an endpoint URL: https, or plain http to a loopback address only; no credentials in it. */
export function checkAddress(address: string): string[] {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return ["address must be a URL such as https://hooks.example.com/stint"];
  }
  const problems: string[] = [];
  if (url.protocol !== "https:" && url.protocol !== "http:") problems.push("address must start with https://");
  else if (url.protocol === "http:" && !LOOPBACK_HOST.test(url.hostname))
    problems.push("address must use https (plain http only to a loopback address such as 127.0.0.1)");
  if (url.username !== "" || url.password !== "")
    problems.push("address must not contain a user or password: the signing secret goes in `credential`");
  if (url.hash !== "") problems.push("address must not have a #fragment");
  if (url.port !== "" && BAD_PORTS.has(Number(url.port)))
    problems.push(`address uses port ${url.port}, which HTTP clients refuse to call; choose another port`);
  return problems;
}

/** Problems with the signing secret (never quoted back). */
export function checkSecret(secret: string | null): string[] {
  if (secret === null || secret === "")
    return ["a webhook target needs `credential` (the signing secret): an unsigned call could be forged"];
  if (secret.length < MIN_SECRET_LENGTH || secret.length > MAX_SECRET_LENGTH)
    return [`the signing secret must be ${MIN_SECRET_LENGTH} to ${MAX_SECRET_LENGTH} characters long`];
  return [];
}

export function checkOptions(options: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(options)) {
    if (key !== "timeout" && key !== "headers") problems.push(`options.${key} is not a webhook option`);
  }
  if (options.timeout !== undefined) {
    if (typeof options.timeout !== "string") problems.push('options.timeout must be a duration such as "10s"');
    else {
      try {
        const ms = parseDuration(options.timeout);
        if (ms < MIN_TIMEOUT_MS || ms > MAX_TIMEOUT_MS) problems.push("options.timeout must be between 100ms and 5m");
      } catch (error) {
        problems.push(`options.timeout: ${(error as Error).message}`);
      }
    }
  }
  if (options.headers !== undefined) {
    const headers = options.headers;
    if (typeof headers !== "object" || headers === null || Array.isArray(headers)) {
      problems.push("options.headers must map header names to values");
    } else {
      const entries = Object.entries(headers);
      if (entries.length > MAX_EXTRA_HEADERS) problems.push(`options.headers may set at most ${MAX_EXTRA_HEADERS}`);
      const seen = new Set<string>();
      for (const [name, value] of entries) {
        const lower = name.toLowerCase();
        if (!HEADER_NAME.test(name)) problems.push(`options.headers: "${name.slice(0, 64)}" is not a header name`);
        else if (RESERVED_HEADERS.has(lower) || lower.startsWith("stint-"))
          problems.push(`options.headers.${name} is set by Stint and cannot be changed`);
        else if (seen.has(lower)) problems.push(`options.headers.${name} is given twice`);
        seen.add(lower);
        if (typeof value !== "string" || !HEADER_VALUE.test(value))
          problems.push(`options.headers.${name.slice(0, 64)} must be printable ASCII on one line`);
      }
    }
  }
  return problems;
}

/** The canonical JSON (RFC 8785) of a value, or null when it is not plain JSON. */
function canonicalJson(value: unknown): string | null {
  try {
    const text = canonicalize(value);
    return text === undefined ? null : text;
  } catch {
    return null;
  }
}

function isPlainJson(value: unknown): boolean {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) return value.every(isPlainJson);
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype)
    return Object.values(value as Record<string, unknown>).every(isPlainJson);
  return false;
}

/** Any JSON object up to 16 KiB: its shape is the endpoint's business. */
export function checkEntitlement(entitlement: Record<string, unknown>): string[] {
  if (typeof entitlement !== "object" || entitlement === null || Array.isArray(entitlement))
    return ["the entitlement must be a JSON object"];
  if (!isPlainJson(entitlement))
    return ["the entitlement must be plain JSON (strings, finite numbers, booleans, null, arrays, objects)"];
  const text = canonicalJson(entitlement);
  if (text === null) return ["the entitlement must be plain JSON"];
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_ENTITLEMENT_BYTES)
    return [`the entitlement is ${bytes} bytes as JSON; at most ${MAX_ENTITLEMENT_BYTES} are allowed`];
  return [];
}

/** 1 to 256 printable characters (counted as Unicode code points). */
export function checkLogin(login: string): string[] {
  if (typeof login !== "string" || login.length === 0) return ["the login must not be empty"];
  if ([...login].length > MAX_LOGIN_LENGTH) return [`the login must be at most ${MAX_LOGIN_LENGTH} characters`];
  if (!PRINTABLE.test(login)) return ["the login must be printable characters only (no control characters)"];
  return [];
}

/** The call timeout in milliseconds from already-checked options. */
export function timeoutMs(options: Record<string, unknown>): number {
  return parseDuration(typeof options.timeout === "string" ? options.timeout : DEFAULT_TIMEOUT);
}

export function extraHeaders(options: Record<string, unknown>): Record<string, string> {
  const headers = options.headers;
  if (typeof headers !== "object" || headers === null) return {};
  return Object.fromEntries(Object.entries(headers).filter((e): e is [string, string] => typeof e[1] === "string"));
}

// ---------------------------------------------------------------- request

export interface WebhookRequest {
  version: 1;
  action: WebhookAction;
  target: string;
  login: string | null;
  entitlement: Record<string, unknown> | null;
  id: string;
  sentAt: string;
}

/**
 * The idempotency key of a provision or revoke: the same for every retry of the same
 * change, because it is a hash of what the change is (RFC 8785 canonical JSON, so key
 * order in the entitlement does not matter) and of nothing about when it is sent.
 */
export function operationKey(
  action: "provision" | "revoke",
  target: string,
  login: string,
  entitlement: Record<string, unknown>,
): string {
  const canonical = canonicalJson({ action, target, login, entitlement });
  if (canonical === null) throw new TypeError("the entitlement must be plain JSON");
  return `${action}:${createHash("sha256").update(canonical).digest("hex")}`;
}

/** The exact bytes that are signed and sent. */
export function requestBody(request: WebhookRequest): string {
  return JSON.stringify({
    version: request.version,
    action: request.action,
    target: request.target,
    login: request.login,
    entitlement: request.entitlement,
    id: request.id,
    sentAt: request.sentAt,
  });
}

// ---------------------------------------------------------------- response

export type Outcome = { kind: "ok" } | { kind: "refused"; message: string } | { kind: "unavailable"; message: string };

export const DOES_NOT_REPORT_HOLDERS = "the endpoint does not report holders";
export const DOES_NOT_REPORT_ACCOUNTS = "the endpoint does not report standing access";

/** Control characters out, one line, at most 300 characters. */
export function cleanMessage(text: string): string {
  const oneLine = text
    .replace(/[\p{Cc}\p{Zl}\p{Zp}]+/gu, " ")
    .replace(/\s+/g, " ")
    .trim();
  const chars = [...oneLine];
  return chars.length > MAX_MESSAGE_LENGTH ? `${chars.slice(0, MAX_MESSAGE_LENGTH).join("")}…` : oneLine;
}

/** The endpoint's reason from an error body: `{ "error": { "message" } }`, else the text itself. */
export function errorMessage(bodyText: string): string {
  try {
    const parsed: unknown = JSON.parse(bodyText);
    const message = (parsed as { error?: { message?: unknown } } | null)?.error?.message;
    if (typeof message === "string" && message.trim() !== "") return cleanMessage(message);
  } catch {
    // Not JSON: the text is the reason.
  }
  return cleanMessage(bodyText);
}

/** How a status code is classified; `bodyText` is read only for statuses that are not 2xx. */
export function classifyStatus(action: WebhookAction, status: number, bodyText: string): Outcome {
  if (status >= 200 && status < 300) return { kind: "ok" };
  const reason = errorMessage(bodyText);
  const said = `the endpoint answered ${status}${reason === "" ? "" : `: ${reason}`}`;
  if (status === 501 && action === "observe") return { kind: "refused", message: DOES_NOT_REPORT_HOLDERS };
  if (status === 501 && action === "discover") return { kind: "refused", message: DOES_NOT_REPORT_ACCOUNTS };
  if (status >= 300 && status < 400)
    return {
      kind: "refused",
      message: `the endpoint answered ${status} (a redirect); Stint does not follow redirects with a signed call, so set the final URL as the address`,
    };
  if (status === 408 || status === 429 || (status >= 500 && status !== 501))
    return { kind: "unavailable", message: said };
  return { kind: "refused", message: said };
}

const login = z.string().min(1).max(1024);
const holdersBody = z.object({ holders: z.array(login).max(1_000_000) });
const accountsBody = z.object({
  accounts: z.array(
    z.object({
      login,
      privilege: z.string().min(1).max(1000),
      entitlement: z.record(z.string(), z.unknown()).nullable().optional(),
      lastActivity: z.iso.datetime({ offset: true }).nullable().optional(),
    }),
  ),
});
const testBody = z.object({ detail: z.string() });

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

function unreadable(detail: string): { ok: false; message: string } {
  return { ok: false, message: `the endpoint answered with a body Stint cannot read: ${cleanMessage(detail)}` };
}

function parseJson(text: string): Parsed<unknown> {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return unreadable("not JSON");
  }
}

function issues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "body"}: ${issue.message}`)
    .join("; ");
}

/** `{ "holders": [login, …] }` → the logins, sorted, without duplicates. */
export function parseHolders(text: string): Parsed<string[]> {
  const json = parseJson(text);
  if (!json.ok) return json;
  const result = holdersBody.safeParse(json.value);
  if (!result.success) return unreadable(issues(result.error));
  const bad = result.data.holders.find((h) => checkLogin(h).length > 0);
  if (bad !== undefined) return unreadable(`holders: "${bad.slice(0, 40)}" is not a login`);
  return { ok: true, value: [...new Set(result.data.holders)].sort() };
}

/** `{ "accounts": [{ login, privilege, entitlement?, lastActivity? }] }` → standing access. */
export function parseAccounts(text: string): Parsed<StandingAccess[]> {
  const json = parseJson(text);
  if (!json.ok) return json;
  const result = accountsBody.safeParse(json.value);
  if (!result.success) return unreadable(issues(result.error));
  const accounts: StandingAccess[] = [];
  for (const account of result.data.accounts) {
    if (checkLogin(account.login).length > 0)
      return unreadable(`accounts: "${account.login.slice(0, 40)}" is not a login`);
    const entitlement = account.entitlement ?? null;
    if (entitlement !== null && checkEntitlement(entitlement).length > 0)
      return unreadable(`accounts: the entitlement of "${account.login.slice(0, 40)}" is not a valid entitlement`);
    accounts.push({
      login: account.login,
      privilege: cleanMessage(account.privilege),
      entitlement,
      lastActivity: account.lastActivity ? new Date(account.lastActivity).toISOString() : null,
    });
  }
  return { ok: true, value: accounts };
}

/** The optional `{ "detail": "…" }` of a test answer, cleaned; null when there is none. */
export function parseTestDetail(text: string): string | null {
  try {
    const result = testBody.safeParse(JSON.parse(text));
    if (result.success && result.data.detail.trim() !== "") return cleanMessage(result.data.detail);
  } catch {
    // Any 2xx passes the test; a body is optional.
  }
  return null;
}
