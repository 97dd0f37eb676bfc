/**
 * Bad input on the passkey routes, table-driven like bad-input.test.ts: wrong types, unknown fields,
 * non-base64url and oversized WebAuthn fields, bad ids, both second factors at once, challenges and
 * hand-offs that do not exist. Each gets its 4xx and stable code in the error envelope (never a 500 or a
 * stack trace), and nothing is left behind: no credential, no hand-off, no session stepped up.
 */
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ErrorCode } from "../../src/lib/errors.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

interface Case {
  name: string;
  method?: "GET" | "POST" | "PATCH" | "DELETE";
  url: string;
  body?: unknown;
  status: number;
  code: ErrorCode;
}

const SQL = "'; drop table webauthn_credentials; --";
const UUID = "8d6f1b2e-7c1a-4f7e-9b55-1f0d2a3c4b5e";
const b64 = (n: number) => "A".repeat(n);
const goodAttestation = {
  id: "AQID",
  rawId: "AQID",
  type: "public-key",
  response: { clientDataJSON: "e30", attestationObject: "oA" },
  clientExtensionResults: {},
};
const goodAssertion = {
  id: "AQID",
  rawId: "AQID",
  type: "public-key",
  response: { clientDataJSON: "e30", authenticatorData: "AA", signature: "AA" },
  clientExtensionResults: {},
};
const register = (patch: Record<string, unknown>) => ({
  challengeId: UUID,
  name: "key",
  response: goodAttestation,
  ...patch,
});
const withAttestation = (response: Record<string, unknown>) =>
  register({ response: { ...goodAttestation, ...response } });
const withAssertion = (response: Record<string, unknown>) => ({
  challengeId: UUID,
  response: { ...goodAssertion, ...response },
});

const VALIDATION: [string, string, unknown][] = [
  ["register: empty body", "/v1/me/webauthn/credentials", {}],
  ["register: challengeId not a uuid", "/v1/me/webauthn/credentials", register({ challengeId: SQL })],
  ["register: name empty", "/v1/me/webauthn/credentials", register({ name: "   " })],
  ["register: name too long", "/v1/me/webauthn/credentials", register({ name: "k".repeat(65) })],
  ["register: name with a control character", "/v1/me/webauthn/credentials", register({ name: "key\u0007" })],
  ["register: name is a number", "/v1/me/webauthn/credentials", register({ name: 7 })],
  ["register: unknown field", "/v1/me/webauthn/credentials", register({ admin: true })],
  ["register: type is not public-key", "/v1/me/webauthn/credentials", withAttestation({ type: "password" })],
  ["register: id is not base64url", "/v1/me/webauthn/credentials", withAttestation({ id: "a+b/c=" })],
  ["register: id holds SQL", "/v1/me/webauthn/credentials", withAttestation({ id: SQL })],
  [
    "register: attestationObject too large",
    "/v1/me/webauthn/credentials",
    withAttestation({ response: { clientDataJSON: "e30", attestationObject: b64(16_385) } }),
  ],
  [
    "register: unknown field inside response",
    "/v1/me/webauthn/credentials",
    withAttestation({ response: { clientDataJSON: "e30", attestationObject: "oA", extra: "x" } }),
  ],
  [
    "register: eleven transports",
    "/v1/me/webauthn/credentials",
    withAttestation({
      response: { clientDataJSON: "e30", attestationObject: "oA", transports: Array(11).fill("usb") },
    }),
  ],
  [
    "register: seventeen extension results",
    "/v1/me/webauthn/credentials",
    withAttestation({
      clientExtensionResults: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`x${i}`, true])),
    }),
  ],
  ["step-up: empty body", "/v1/auth/webauthn/step-up", {}],
  [
    "step-up: signature too long",
    "/v1/auth/webauthn/step-up",
    withAssertion({
      response: { clientDataJSON: "e30", authenticatorData: "AA", signature: b64(2049) },
    }),
  ],
  [
    "step-up: signature missing",
    "/v1/auth/webauthn/step-up",
    withAssertion({
      response: { clientDataJSON: "e30", authenticatorData: "AA" },
    }),
  ],
  ["step-up: response is a string", "/v1/auth/webauthn/step-up", { challengeId: UUID, response: "signed" }],
  ["step-up options: handoff not a uuid", "/v1/auth/webauthn/step-up-options", { handoff: SQL }],
  ["step-up options: unknown field", "/v1/auth/webauthn/step-up-options", { session: UUID }],
  [
    "login: a code and a passkey answer at once",
    "/v1/auth/login",
    { username: "admin", password: "x", otp: "123456", webauthn: withAssertion({}) },
  ],
  ["login: webauthn is malformed", "/v1/auth/login", { username: "admin", password: "x", webauthn: { a: 1 } }],
];

const CASES: Case[] = [
  ...VALIDATION.map(([name, url, body]): Case => ({ name, url, body, status: 400, code: "VALIDATION_FAILED" })),
  {
    name: "rename: id not a uuid",
    method: "PATCH",
    url: "/v1/me/webauthn/credentials/x",
    body: { name: "k" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "rename: name empty",
    method: "PATCH",
    url: `/v1/me/webauthn/credentials/${UUID}`,
    body: { name: "" },
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "rename: no such key",
    method: "PATCH",
    url: `/v1/me/webauthn/credentials/${UUID}`,
    body: { name: "k" },
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "remove: id holds SQL",
    method: "DELETE",
    url: `/v1/me/webauthn/credentials/${encodeURIComponent(SQL)}`,
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "remove: no such key",
    method: "DELETE",
    url: `/v1/me/webauthn/credentials/${UUID}`,
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "hand-off: id not a uuid",
    method: "GET",
    url: "/v1/auth/step-up-handoffs/abc",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "hand-off: no such hand-off",
    method: "GET",
    url: `/v1/auth/step-up-handoffs/${UUID}`,
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "step-up options: no such hand-off",
    url: "/v1/auth/webauthn/step-up-options",
    body: { handoff: UUID },
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "step-up options: no passkey registered",
    url: "/v1/auth/webauthn/step-up-options",
    body: {},
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "step-up: a challenge Stint never issued",
    url: "/v1/auth/webauthn/step-up",
    body: withAssertion({}),
    status: 401,
    code: "WEBAUTHN_CHALLENGE_INVALID",
  },
  {
    name: "register: a challenge Stint never issued",
    url: "/v1/me/webauthn/credentials",
    body: register({}),
    status: 401,
    code: "WEBAUTHN_CHALLENGE_INVALID",
  },
];

const TABLES = ["webauthn_credentials", "step_up_handoffs", "refresh_sessions"] as const;

describe("bad input on the passkey routes", () => {
  let server: TestServer;
  let auth: string;
  let before: Record<string, number>;

  async function counts(): Promise<Record<string, number>> {
    const result: Record<string, number> = {};
    for (const table of TABLES) {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(
        server.store.db,
      );
      result[table] = Number(rows[0]!.n);
    }
    const { rows } = await sql<{
      n: number;
    }>`select count(*)::int as n from refresh_sessions where webauthn_at is not null`.execute(server.store.db);
    result.steppedUp = Number(rows[0]!.n);
    return result;
  }

  beforeAll(async () => {
    server = await testServer("pglite", { env: { STINT_PUBLIC_URL: "https://stint.test" } });
    auth = await server.userWithRoles("pia", ["user"]);
    before = await counts();
  }, 120_000);

  afterAll(async () => {
    await server?.cleanup();
  });

  it.each(CASES.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const res = await server.app.inject({
      method: c.method ?? "POST",
      url: c.url,
      headers: { authorization: auth, ...(c.body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(c.body !== undefined ? { payload: JSON.stringify(c.body) } : {}),
    });
    const label = `${c.method ?? "POST"} ${c.url} → ${res.statusCode} ${res.body.slice(0, 300)}`;
    expect(res.statusCode, label).toBe(c.status);
    const body = res.json<{ error: { code: string; message: string } }>();
    expect(body.error.code, label).toBe(c.code);
    expect(res.body, label).not.toMatch(/at .+\.(ts|js):\d+|stack|webauthn_credentials|drop table/i);
  });

  it("left nothing behind: no credential, no hand-off, no session, none stepped up", async () => {
    expect(await counts()).toEqual(before);
    // The user can still sign in with the password alone (no factor was added).
    const res = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "pia", password: passwordFor("pia") },
    });
    expect(res.statusCode).toBe(200);
  });
});
