/**
 * Every route × every platform role (and anonymous) against one hand-written
 * table. A route the table does not list, or a row naming a route that does not
 * exist, fails the suite: a new endpoint cannot ship without stating who may
 * call it.
 *
 * "yes" means the caller passes authorization: the answer may still be a 2xx,
 * a 4xx about the input, or a 404, but never 401 or 403 (and never a 5xx).
 * "no" means 401 UNAUTHENTICATED for anonymous callers and 403 FORBIDDEN for
 * everyone else, in the error envelope. Each case signs in afresh, so a route
 * such as logout cannot spoil the next one.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { LightMyRequestResponse } from "fastify";
import { ERROR_CODES, type ErrorCode } from "../../src/lib/errors.js";
import type { PlatformRole } from "../../src/modules/authz/authz.types.js";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";

// Fastify answers HEAD for every GET route; a HEAD route is covered by its GET row.
const MATRIX = `
  method  route                                    anonymous  user  auditor  security  admin
  GET     /healthz                                 yes        yes   yes      yes       yes
  GET     /readyz                                  yes        yes   yes      yes       yes
  GET     /metrics                                 no         no    yes      yes       yes
  GET     /.well-known/jwks.json                   yes        yes   yes      yes       yes
  GET     /openapi.json                            yes        yes   yes      yes       yes
  GET     /                                        yes        yes   yes      yes       yes
  GET     /approvals                               yes        yes   yes      yes       yes
  GET     /requests                                yes        yes   yes      yes       yes
  GET     /requests/:id                            yes        yes   yes      yes       yes
  GET     /sessions                                yes        yes   yes      yes       yes
  GET     /live                                    yes        yes   yes      yes       yes
  GET     /vault                                   yes        yes   yes      yes       yes
  GET     /admin                                   yes        yes   yes      yes       yes
  GET     /audit                                   yes        yes   yes      yes       yes
  GET     /dashboards                              yes        yes   yes      yes       yes
  GET     /reviews                                 yes        yes   yes      yes       yes
  GET     /evidence                                yes        yes   yes      yes       yes
  GET     /alerts                                  yes        yes   yes      yes       yes
  GET     /account                                 yes        yes   yes      yes       yes
  GET     /step-up/:id                             yes        yes   yes      yes       yes
  GET     /assets/*                                yes        yes   yes      yes       yes
  POST    /v1/setup                                yes        yes   yes      yes       yes
  POST    /v1/setup/check                          yes        yes   yes      yes       yes
  POST    /v1/invites/redeem                       yes        yes   yes      yes       yes
  POST    /v1/auth/login                           yes        yes   yes      yes       yes
  POST    /v1/auth/refresh                         yes        yes   yes      yes       yes
  POST    /v1/auth/token-exchange                  yes        yes   yes      yes       yes
  GET     /v1/auth/sso/providers                   yes        yes   yes      yes       yes
  GET     /v1/auth/sso/:provider/login             yes        yes   yes      yes       yes
  GET     /v1/auth/sso/:provider/callback          yes        yes   yes      yes       yes
  POST    /v1/auth/sso/redeem                      yes        yes   yes      yes       yes
  POST    /v1/auth/sso/:provider/device            yes        yes   yes      yes       yes
  POST    /v1/auth/sso/device/token                yes        yes   yes      yes       yes
  POST    /v1/auth/step-up                         no         yes   yes      yes       yes
  POST    /v1/auth/logout                          no         yes   yes      yes       yes
  GET     /v1/me                                   no         yes   yes      yes       yes
  POST    /v1/me/mfa/totp                          no         yes   yes      yes       yes
  POST    /v1/me/mfa/totp/confirm                  no         yes   yes      yes       yes
  POST    /v1/me/password                          no         yes   yes      yes       yes
  GET     /v1/me/webauthn/credentials              no         yes   yes      yes       yes
  POST    /v1/me/webauthn/credentials              no         yes   yes      yes       yes
  POST    /v1/me/webauthn/registration-options     no         yes   yes      yes       yes
  PATCH   /v1/me/webauthn/credentials/:id          no         yes   yes      yes       yes
  DELETE  /v1/me/webauthn/credentials/:id          no         yes   yes      yes       yes
  POST    /v1/auth/webauthn/step-up-options        no         yes   yes      yes       yes
  POST    /v1/auth/webauthn/step-up                no         yes   yes      yes       yes
  POST    /v1/auth/step-up-handoffs                no         yes   yes      yes       yes
  GET     /v1/auth/step-up-handoffs/:id            no         yes   yes      yes       yes
  GET     /v1/users                                no         no    yes      yes       yes
  POST    /v1/users                                no         no    no       no        yes
  GET     /v1/users/:name                          no         no    yes      yes       yes
  PATCH   /v1/users/:name                          no         no    no       no        yes
  POST    /v1/users/:name/disable                  no         no    no       no        yes
  POST    /v1/users/:name/enable                   no         no    no       no        yes
  PUT     /v1/users/:name/password                 no         no    no       no        yes
  POST    /v1/users/:name/invite                   no         no    no       no        yes
  GET     /v1/groups                               no         no    yes      yes       yes
  POST    /v1/groups                               no         no    no       no        yes
  POST    /v1/groups/:name/members                 no         no    no       no        yes
  DELETE  /v1/groups/:name/members/:principal      no         no    no       no        yes
  GET     /v1/tokens                               no         no    yes      no        yes
  POST    /v1/tokens                               no         no    no       no        yes
  GET     /v1/services/:name/trusts                no         no    yes      no        yes
  POST    /v1/services/:name/trusts                no         no    no       no        yes
  DELETE  /v1/services/:name/trusts/:trust         no         no    no       no        yes
  GET     /scim/v2/ServiceProviderConfig           no         yes   yes      yes       yes
  GET     /scim/v2/Users                           no         no    no       no        no
  POST    /scim/v2/Users                           no         no    no       no        no
  GET     /scim/v2/Users/:id                       no         no    no       no        no
  PUT     /scim/v2/Users/:id                       no         no    no       no        no
  PATCH   /scim/v2/Users/:id                       no         no    no       no        no
  DELETE  /scim/v2/Users/:id                       no         no    no       no        no
  GET     /scim/v2/Groups                          no         no    no       no        no
  POST    /scim/v2/Groups                          no         no    no       no        no
  GET     /scim/v2/Groups/:id                      no         no    no       no        no
  PATCH   /scim/v2/Groups/:id                      no         no    no       no        no
  DELETE  /scim/v2/Groups/:id                      no         no    no       no        no
  DELETE  /v1/tokens/:id                           no         no    no       no        yes
  GET     /v1/audit/events                         no         no    yes      yes       yes
  GET     /v1/audit/verify                         no         no    yes      yes       yes
  POST    /v1/audit/verify                         no         no    yes      yes       yes
  GET     /v1/audit/anchor                         no         no    yes      yes       yes
  GET     /v1/audit/export                         no         no    yes      yes       yes
  GET     /v1/siem/destinations                    no         no    yes      yes       yes
  GET     /v1/alerts                               no         no    yes      yes       yes
  GET     /v1/alerts/:id                           no         no    yes      yes       yes
  POST    /v1/alerts/:id/ack                       no         no    yes      yes       yes
  GET     /v1/reviews/campaigns                    no         no    yes      yes       yes
  POST    /v1/reviews/campaigns                    no         no    no       yes       yes
  GET     /v1/reviews/campaigns/:id                no         no    yes      yes       yes
  POST    /v1/reviews/campaigns/:id/close          no         no    no       yes       yes
  GET     /v1/reviews/items                        no         yes   yes      yes       yes
  POST    /v1/reviews/items/:id/decision           no         yes   yes      yes       yes
  GET     /v1/evidence                             no         no    yes      yes       yes
  GET     /v1/me/roles                             no         yes   yes      yes       yes
  POST    /v1/me/roles/:role/deactivate            no         yes   yes      yes       yes
  POST    /v1/me/roles/:role/extensions            no         yes   yes      yes       yes
  GET     /v1/me/roles/:role/credentials           no         yes   yes      yes       yes
  GET     /v1/sessions                             no         yes   yes      yes       yes
  GET     /v1/sessions/:id                         no         yes   yes      yes       yes
  GET     /v1/sessions/:id/recording               no         yes   yes      yes       yes
  GET     /v1/sessions/live                        no         yes   yes      yes       yes
  GET     /v1/sessions/:id/live                    yes        yes   yes      yes       yes
  POST    /v1/sessions/:id/kill                    no         no    no       yes       yes
  POST    /v1/db/tokens                            no         yes   yes      yes       yes
  POST    /v1/sql-console/sessions                 no         yes   yes      yes       yes
  GET     /v1/sql-console/sessions                 no         yes   yes      yes       yes
  POST    /v1/sql-console/sessions/:id/queries     no         yes   yes      yes       yes
  DELETE  /v1/sql-console/sessions/:id             no         yes   yes      yes       yes
  POST    /v1/ssh/certificates                     no         yes   yes      yes       yes
  GET     /v1/ssh/ca                               yes        yes   yes      yes       yes
  GET     /v1/ssh/krl                              yes        yes   yes      yes       yes
  GET     /v1/ssh/terminals                        yes        yes   yes      yes       yes
  POST    /v1/activation-requests                  no         yes   yes      yes       yes
  GET     /v1/activation-requests                  no         yes   yes      yes       yes
  GET     /v1/activation-requests/:id              no         yes   yes      yes       yes
  GET     /v1/activation-requests/:id/context      no         yes   yes      yes       yes
  POST    /v1/activation-requests/:id/approvals    no         yes   yes      yes       yes
  POST    /v1/activation-requests/:id/denials      no         yes   yes      yes       yes
  POST    /v1/activation-requests/:id/cancel       no         yes   yes      yes       yes
  POST    /v1/activation-requests/:id/revoke       no         no    no       yes       yes
  GET     /v1/check                                no         yes   yes      yes       yes
  POST    /v1/tokens/activation                    no         yes   yes      yes       yes
  GET     /v1/targets                              no         no    yes      yes       yes
  POST    /v1/targets                              no         no    no       yes       yes
  GET     /v1/targets/:ref                         no         no    yes      yes       yes
  PUT     /v1/targets/:ref                         no         no    no       yes       yes
  DELETE  /v1/targets/:ref                         no         no    no       yes       yes
  POST    /v1/targets/:ref/test                    no         no    no       yes       yes
  GET     /v1/targets/:ref/discovery               no         no    no       yes       yes
  POST    /v1/targets/:ref/discovery/conversions   no         no    no       yes       yes
  PUT     /v1/targets/:ref/credential              no         no    no       yes       yes
  DELETE  /v1/targets/:ref/credential              no         no    no       yes       yes
  GET     /v1/grants                               no         no    yes      yes       yes
  POST    /v1/reconcile                            no         no    no       yes       yes
  GET     /v1/secrets                              no         yes   yes      yes       yes
  PUT     /v1/secrets/:path                        no         no    no       yes       yes
  GET     /v1/secrets/:path                        no         yes   yes      yes       yes
  GET     /v1/secrets/:path/value                  no         yes   yes      yes       yes
  GET     /v1/secrets/:path/versions               no         yes   yes      yes       yes
  POST    /v1/secrets/:path/checkout               no         yes   yes      yes       yes
  POST    /v1/secrets/:path/checkin                no         yes   yes      yes       yes
  POST    /v1/secrets/:path/reveal                 no         yes   yes      yes       yes
  POST    /v1/secrets/:path/rotate                 no         no    no       yes       yes
  PUT     /v1/secrets/:path/targets/:target        no         no    no       no        yes
  DELETE  /v1/secrets/:path/targets/:target        no         no    no       no        yes
  GET     /v1/operator/status                      no         no    no       no        yes
  POST    /v1/operator/init                        no         no    no       no        yes
  POST    /v1/operator/unseal                      no         no    no       no        yes
  POST    /v1/operator/seal                        no         no    no       no        yes
  POST    /v1/operator/rotate-key                  no         no    no       no        yes
  GET     /v1/policies                             no         no    yes      yes       yes
  POST    /v1/policies                             no         no    no       yes       yes
  GET     /v1/policies/:ref                        no         no    yes      yes       yes
  PUT     /v1/policies/:ref                        no         no    no       yes       yes
  DELETE  /v1/policies/:ref                        no         no    no       yes       yes
  GET     /v1/roles                                no         no    yes      yes       yes
  POST    /v1/roles                                no         no    no       yes       yes
  GET     /v1/roles/:ref                           no         no    yes      yes       yes
  PUT     /v1/roles/:ref                           no         no    no       yes       yes
  DELETE  /v1/roles/:ref                           no         no    no       yes       yes
  GET     /v1/eligibilities                        no         no    yes      yes       yes
  POST    /v1/eligibilities                        no         no    no       yes       yes
  GET     /v1/eligibilities/:id                    no         no    yes      yes       yes
  PUT     /v1/eligibilities/:id                    no         no    no       yes       yes
  DELETE  /v1/eligibilities/:id                    no         no    no       yes       yes
  GET     /v1/config/export                        no         no    yes      yes       yes
  POST    /v1/config/diff                          no         no    yes      yes       yes
  POST    /v1/config/apply                         no         no    no       yes       yes
  GET     /v1/change-requests                      no         no    yes      yes       yes
  GET     /v1/change-requests/:id                  no         no    yes      yes       yes
  POST    /v1/change-requests/:id/approve          no         no    no       yes       yes
  POST    /v1/change-requests/:id/deny             no         no    no       yes       yes
`;

const CALLERS = ["anonymous", "user", "auditor", "security", "admin"] as const;
type Caller = (typeof CALLERS)[number];

interface Row {
  key: string;
  method: string;
  route: string;
  allowed: ReadonlySet<Caller>;
}

function parseMatrix(text: string): Row[] {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  const header = lines.shift()!.split(/\s+/);
  if (header.join(" ") !== ["method", "route", ...CALLERS].join(" ")) throw new Error(`bad matrix header: ${header}`);
  const rows = lines.map((line) => {
    const [method, route, ...cells] = line.split(/\s+/);
    if (!method || !route || cells.length !== CALLERS.length || cells.some((c) => c !== "yes" && c !== "no")) {
      throw new Error(`bad matrix row: ${line}`);
    }
    const allowed = new Set(CALLERS.filter((_, i) => cells[i] === "yes"));
    return { key: `${method} ${route}`, method, route, allowed };
  });
  const keys = rows.map((r) => r.key);
  const twice = keys.filter((k, i) => keys.indexOf(k) !== i);
  if (twice.length > 0) throw new Error(`matrix rows listed twice: ${twice.join(", ")}`);
  return rows;
}

const ROWS = parseMatrix(MATRIX);

// Fixtures the requests below act on; none of them is one of the callers.
const TARGET = "matrix-target";
const LOGIN_ONLY = "matrix-login";
const SERVICE = "matrix-svc";
const GROUP = "matrix-group";

interface Probe {
  url: string;
  payload?: unknown;
}
type ProbeFactory = (ctx: { server: TestServer; fresh: (prefix: string) => string }) => Probe | Promise<Probe>;

/**
 * Plausible requests: valid where the effect is harmless, deliberately invalid
 * (a 400 that still proves authorization passed) where a valid one would change
 * a caller's credentials, or would answer 401 for a reason that is not authorization.
 * Routes absent here are called on their own URL with no body.
 */
const PROBES: Record<string, ProbeFactory> = {
  "GET /.well-known/jwks.json": () => ({ url: "/.well-known/jwks.json" }),
  "GET /requests/:id": () => ({ url: `/requests/${randomUUID()}` }),
  "POST /v1/setup": () => ({
    url: "/v1/setup",
    payload: { code: "not-a-real-setup-code", username: "matrix-setup", password: "a-long-enough-password-1" },
  }),
  "POST /v1/setup/check": () => ({ url: "/v1/setup/check", payload: { code: "not-a-real-setup-code" } }),
  // A weak password is refused before the code is checked (no guess counted against the peer address).
  "POST /v1/invites/redeem": () => ({
    url: "/v1/invites/redeem",
    payload: { username: "matrix-invitee", code: "not-a-real-invite-code", password: "short" },
  }),
  // Single sign-on is public: with no provider configured these answer 404 SSO_PROVIDER_UNKNOWN, and the
  // redeem and device-token bodies are invalid (a real code would answer 401 for a reason that is not authorization).
  "GET /v1/auth/sso/:provider/login": () => ({ url: `/v1/auth/sso/corp/login?code_challenge=${"a".repeat(43)}` }),
  "GET /v1/auth/sso/:provider/callback": () => ({ url: "/v1/auth/sso/corp/callback?state=x&code=y" }),
  "POST /v1/auth/sso/redeem": () => ({ url: "/v1/auth/sso/redeem", payload: { code: "x", codeVerifier: "short" } }),
  "POST /v1/auth/sso/:provider/device": () => ({ url: "/v1/auth/sso/corp/device", payload: {} }),
  "POST /v1/auth/sso/device/token": () => ({ url: "/v1/auth/sso/device/token", payload: {} }),
  "POST /v1/auth/login": () => ({
    url: "/v1/auth/login",
    payload: { username: LOGIN_ONLY, password: passwordFor(LOGIN_ONLY) },
  }),
  "POST /v1/auth/refresh": async ({ server }) => {
    const res = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: LOGIN_ONLY, password: passwordFor(LOGIN_ONLY) },
    });
    return { url: "/v1/auth/refresh", payload: { refreshToken: res.json<{ refreshToken: string }>().refreshToken } };
  },
  // A wrong six-digit code would be MFA_INVALID (401); a malformed one is refused by validation.
  "POST /v1/me/mfa/totp/confirm": () => ({ url: "/v1/me/mfa/totp/confirm", payload: { code: "abcdef" } }),
  "POST /v1/me/password": () => ({
    url: "/v1/me/password",
    payload: { currentPassword: "irrelevant", newPassword: "short" },
  }),
  "POST /v1/users": ({ fresh }) => ({ url: "/v1/users", payload: { name: fresh("matrix-new") } }),
  "GET /v1/users/:name": () => ({ url: `/v1/users/${TARGET}` }),
  "PATCH /v1/users/:name": () => ({ url: `/v1/users/${TARGET}`, payload: { displayName: "Matrix Target" } }),
  "POST /v1/users/:name/disable": () => ({
    url: `/v1/users/${TARGET}/disable`,
    payload: { reason: "authorization matrix" },
  }),
  "POST /v1/users/:name/enable": () => ({ url: `/v1/users/${TARGET}/enable` }),
  // TARGET has a password: 409 PASSWORD_ALREADY_SET for whoever may invite.
  "POST /v1/users/:name/invite": () => ({ url: `/v1/users/${TARGET}/invite` }),
  "PUT /v1/users/:name/password": () => ({
    url: `/v1/users/${TARGET}/password`,
    payload: { password: "a-brand-new-password-1" },
  }),
  "POST /v1/groups": ({ fresh }) => ({ url: "/v1/groups", payload: { name: fresh("matrix-group-new") } }),
  "POST /v1/groups/:name/members": () => ({ url: `/v1/groups/${GROUP}/members`, payload: { principal: TARGET } }),
  "DELETE /v1/groups/:name/members/:principal": () => ({ url: `/v1/groups/${GROUP}/members/${TARGET}` }),
  "POST /v1/tokens": ({ fresh }) => ({
    url: "/v1/tokens",
    payload: { name: fresh("matrix-token"), principal: SERVICE },
  }),
  "DELETE /v1/tokens/:id": () => ({ url: `/v1/tokens/${randomUUID()}` }),
  "GET /v1/services/:name/trusts": () => ({ url: "/v1/services/no-such-service/trusts" }),
  "POST /v1/services/:name/trusts": () => ({ url: "/v1/services/no-such-service/trusts", payload: {} }),
  "DELETE /v1/services/:name/trusts/:trust": () => ({ url: "/v1/services/no-such-service/trusts/none" }),
  "GET /scim/v2/Users/:id": () => ({ url: `/scim/v2/Users/${randomUUID()}` }),
  "PUT /scim/v2/Users/:id": () => ({ url: `/scim/v2/Users/${randomUUID()}` }),
  "PATCH /scim/v2/Users/:id": () => ({ url: `/scim/v2/Users/${randomUUID()}` }),
  "DELETE /scim/v2/Users/:id": () => ({ url: `/scim/v2/Users/${randomUUID()}` }),
  "GET /scim/v2/Groups/:id": () => ({ url: `/scim/v2/Groups/${randomUUID()}` }),
  "PATCH /scim/v2/Groups/:id": () => ({ url: `/scim/v2/Groups/${randomUUID()}` }),
  "DELETE /scim/v2/Groups/:id": () => ({ url: `/scim/v2/Groups/${randomUUID()}` }),
  "GET /v1/audit/events": () => ({ url: "/v1/audit/events?limit=5" }),
  // Business refusals (not eligible, self-approval) are 403s too; invalid input (400) proves authorization passed.
  "POST /v1/activation-requests": () => ({
    url: "/v1/activation-requests",
    payload: { role: "Not A Role Name", reason: "x" },
  }),
  "GET /v1/activation-requests/:id": () => ({ url: `/v1/activation-requests/${randomUUID()}` }),
  // Authorized by being an approver of that request: nobody is one of a request that does not exist (404).
  "GET /v1/activation-requests/:id/context": () => ({ url: `/v1/activation-requests/${randomUUID()}/context` }),
  "POST /v1/activation-requests/:id/approvals": () => ({
    url: `/v1/activation-requests/${randomUUID()}/approvals`,
    payload: {},
  }),
  "POST /v1/activation-requests/:id/denials": () => ({
    url: `/v1/activation-requests/${randomUUID()}/denials`,
    payload: {},
  }),
  "POST /v1/activation-requests/:id/cancel": () => ({ url: `/v1/activation-requests/${randomUUID()}/cancel` }),
  "POST /v1/activation-requests/:id/revoke": () => ({
    url: `/v1/activation-requests/${randomUUID()}/revoke`,
    payload: { reason: "authorization matrix" },
  }),
  "POST /v1/me/roles/:role/deactivate": () => ({ url: "/v1/me/roles/matrix-role/deactivate" }),
  "GET /v1/me/roles/:role/credentials": () => ({ url: "/v1/me/roles/matrix-role/credentials" }),
  // Sessions answer 404 (not 403) to those who may not see them: the sign-in is the route's only requirement.
  "GET /assets/*": () => ({ url: "/assets/no-such-file.js" }),
  "GET /v1/sessions/:id": () => ({ url: `/v1/sessions/${randomUUID()}` }),
  "GET /v1/sessions/:id/recording": () => ({ url: `/v1/sessions/${randomUUID()}/recording` }),
  // A WebSocket: it authenticates in its first message, so plain HTTP is public and answers 400 (no upgrade).
  "GET /v1/sessions/:id/live": () => ({ url: `/v1/sessions/${randomUUID()}/live` }),
  "POST /v1/sessions/:id/kill": () => ({
    url: `/v1/sessions/${randomUUID()}/kill`,
    payload: { reason: "authorization matrix" },
  }),
  "POST /v1/db/tokens": () => ({ url: "/v1/db/tokens", payload: { role: "matrix-role" } }),
  // A console is its opener's alone: anyone else's (or no) console answers 404; opening needs an active role (409).
  "POST /v1/sql-console/sessions": () => ({ url: "/v1/sql-console/sessions", payload: { role: "matrix-role" } }),
  "POST /v1/sql-console/sessions/:id/queries": () => ({
    url: `/v1/sql-console/sessions/${randomUUID()}/queries`,
    payload: { sql: "SELECT 1" },
  }),
  "DELETE /v1/sql-console/sessions/:id": () => ({ url: `/v1/sql-console/sessions/${randomUUID()}` }),
  "POST /v1/ssh/certificates": () => ({
    url: "/v1/ssh/certificates",
    payload: { publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOsfdPq9o7iVkMa1fJh3yQK0u6kd8nIo6ba2AjVfnM8j" },
  }),
  "POST /v1/me/roles/:role/extensions": () => ({
    url: "/v1/me/roles/matrix-role/extensions",
    payload: { by: "30m", reason: "authorization matrix" },
  }),
  "POST /v1/auth/step-up": () => ({ url: "/v1/auth/step-up", payload: { otp: "1" } }),
  // Passkeys: invalid bodies (400) and ids that name nothing (404) prove authorization passed.
  "POST /v1/me/webauthn/credentials": () => ({ url: "/v1/me/webauthn/credentials", payload: {} }),
  "PATCH /v1/me/webauthn/credentials/:id": () => ({
    url: `/v1/me/webauthn/credentials/${randomUUID()}`,
    payload: { name: "matrix key" },
  }),
  "DELETE /v1/me/webauthn/credentials/:id": () => ({ url: `/v1/me/webauthn/credentials/${randomUUID()}` }),
  "POST /v1/auth/webauthn/step-up-options": () => ({
    url: "/v1/auth/webauthn/step-up-options",
    payload: { handoff: "not-a-uuid" },
  }),
  "POST /v1/auth/webauthn/step-up": () => ({ url: "/v1/auth/webauthn/step-up", payload: {} }),
  "GET /v1/auth/step-up-handoffs/:id": () => ({ url: `/v1/auth/step-up-handoffs/${randomUUID()}` }),
  "GET /step-up/:id": () => ({ url: `/step-up/${randomUUID()}` }),
  "GET /v1/check": () => ({ url: "/v1/check?role=matrix-role" }),
  "GET /v1/audit/export": () => ({ url: "/v1/audit/export?format=jsonl" }),
  "POST /v1/audit/verify": () => ({ url: "/v1/audit/verify", payload: {} }),
  // Catalog: creates with fresh names are harmless; the rest name nothing that exists (404) or are invalid (400).
  "POST /v1/targets": ({ fresh }) => ({
    url: "/v1/targets",
    payload: { name: fresh("matrix-target"), kind: "internal" },
  }),
  "GET /v1/targets/:ref": () => ({ url: "/v1/targets/matrix-nothing" }),
  "PUT /v1/targets/:ref": () => ({
    url: "/v1/targets/matrix-nothing",
    payload: { name: "matrix-nothing", kind: "internal" },
  }),
  "DELETE /v1/targets/:ref": () => ({ url: "/v1/targets/matrix-nothing" }),
  "POST /v1/targets/:ref/test": () => ({ url: "/v1/targets/matrix-nothing/test" }),
  "GET /v1/targets/:ref/discovery": () => ({ url: "/v1/targets/matrix-nothing/discovery" }),
  "POST /v1/targets/:ref/discovery/conversions": () => ({
    url: "/v1/targets/matrix-nothing/discovery/conversions",
    payload: { role: "matrix-nothing", reason: "authorization matrix", dryRun: true },
  }),
  "PUT /v1/targets/:ref/credential": () => ({
    url: "/v1/targets/matrix-nothing/credential",
    payload: { secret: "not-a-real-secret" },
  }),
  "DELETE /v1/targets/:ref/credential": () => ({ url: "/v1/targets/matrix-nothing/credential" }),
  "POST /v1/reconcile": () => ({ url: "/v1/reconcile", payload: {} }),
  // Vault: paths that name nothing (404), invalid bodies (400), or operator calls that conflict with the mode (409).
  "PUT /v1/secrets/:path": ({ fresh }) => ({
    url: `/v1/secrets/${encodeURIComponent(`matrix/${fresh("s")}`)}`,
    payload: { kind: "generic", value: "matrix value" },
  }),
  "GET /v1/secrets/:path": () => ({ url: "/v1/secrets/matrix%2Fnothing" }),
  "GET /v1/secrets/:path/value": () => ({ url: "/v1/secrets/matrix%2Fnothing/value" }),
  "GET /v1/secrets/:path/versions": () => ({ url: "/v1/secrets/matrix%2Fnothing/versions" }),
  "POST /v1/secrets/:path/checkout": () => ({
    url: "/v1/secrets/matrix%2Fnothing/checkout",
    payload: { reason: "authorization matrix" },
  }),
  "POST /v1/secrets/:path/checkin": () => ({ url: "/v1/secrets/matrix%2Fnothing/checkin" }),
  "POST /v1/secrets/:path/rotate": () => ({ url: "/v1/secrets/matrix%2Fnothing/rotate" }),
  "PUT /v1/secrets/:path/targets/:target": () => ({ url: "/v1/secrets/matrix%2Fnothing/targets/matrix-nothing" }),
  "DELETE /v1/secrets/:path/targets/:target": () => ({ url: "/v1/secrets/matrix%2Fnothing/targets/matrix-nothing" }),
  "POST /v1/secrets/:path/reveal": () => ({
    url: "/v1/secrets/matrix%2Fnothing/reveal",
    payload: { reason: "authorization matrix" },
  }),
  "POST /v1/operator/init": () => ({ url: "/v1/operator/init", payload: { shares: 1, threshold: 2 } }),
  "POST /v1/operator/unseal": () => ({ url: "/v1/operator/unseal", payload: { share: "not-a-share-at-all" } }),
  "POST /v1/policies": ({ fresh }) => ({ url: "/v1/policies", payload: { name: fresh("matrix-policy"), spec: {} } }),
  "GET /v1/policies/:ref": () => ({ url: "/v1/policies/matrix-nothing" }),
  "PUT /v1/policies/:ref": () => ({
    url: "/v1/policies/matrix-nothing",
    payload: { name: "matrix-nothing", spec: {} },
  }),
  "DELETE /v1/policies/:ref": () => ({ url: "/v1/policies/matrix-nothing" }),
  "POST /v1/roles": ({ fresh }) => ({
    url: "/v1/roles",
    payload: { name: fresh("matrix-role"), target: "matrix-nothing", policy: "matrix-nothing", risk: "low" },
  }),
  "GET /v1/roles/:ref": () => ({ url: "/v1/roles/matrix-nothing" }),
  "PUT /v1/roles/:ref": () => ({
    url: "/v1/roles/matrix-nothing",
    payload: { name: "matrix-nothing", target: "matrix-nothing", policy: "matrix-nothing", risk: "low" },
  }),
  "DELETE /v1/roles/:ref": () => ({ url: "/v1/roles/matrix-nothing" }),
  "POST /v1/eligibilities": () => ({
    url: "/v1/eligibilities",
    payload: { role: "matrix-nothing", principal: TARGET },
  }),
  "GET /v1/eligibilities/:id": () => ({ url: `/v1/eligibilities/${randomUUID()}` }),
  "PUT /v1/eligibilities/:id": () => ({ url: `/v1/eligibilities/${randomUUID()}`, payload: {} }),
  "DELETE /v1/eligibilities/:id": () => ({ url: `/v1/eligibilities/${randomUUID()}` }),
  // Reviews: a campaign over nothing is harmless; ids that name nothing (404); deciding is authorized by being the
  // item's reviewer (a business 403, NOT_A_REVIEWER), so an invalid decision (400) proves authorization passed.
  "POST /v1/reviews/campaigns": ({ fresh }) => ({
    url: "/v1/reviews/campaigns",
    payload: {
      name: fresh("matrix-review"),
      scope: { roles: ["matrix-nothing"] },
      reviewers: { fallback: "matrix-nothing" },
      duration: "1d",
    },
  }),
  "GET /v1/alerts/:id": () => ({ url: `/v1/alerts/${randomUUID()}` }),
  "POST /v1/alerts/:id/ack": () => ({ url: `/v1/alerts/${randomUUID()}/ack`, payload: { note: "seen" } }),
  "GET /v1/reviews/campaigns/:id": () => ({ url: `/v1/reviews/campaigns/${randomUUID()}` }),
  "POST /v1/reviews/campaigns/:id/close": () => ({ url: `/v1/reviews/campaigns/${randomUUID()}/close` }),
  "POST /v1/reviews/items/:id/decision": () => ({
    url: `/v1/reviews/items/${randomUUID()}/decision`,
    payload: { decision: "maybe", reason: "authorization matrix" },
  }),
  "GET /v1/evidence": () => ({
    url: "/v1/evidence?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&format=csv",
  }),
  "POST /v1/config/diff": () => ({ url: "/v1/config/diff", payload: { yaml: "apiVersion: stint/v1\n" } }),
  "POST /v1/config/apply": () => ({ url: "/v1/config/apply", payload: { yaml: "apiVersion: stint/v1\n" } }),
  // Four-eyes change requests: ids that name nothing (404 once authorized).
  "GET /v1/change-requests/:id": () => ({ url: `/v1/change-requests/${randomUUID()}` }),
  "POST /v1/change-requests/:id/approve": () => ({ url: `/v1/change-requests/${randomUUID()}/approve`, payload: {} }),
  "POST /v1/change-requests/:id/deny": () => ({ url: `/v1/change-requests/${randomUUID()}/deny`, payload: {} }),
};

const ROLE_OF: Record<Exclude<Caller, "anonymous">, PlatformRole> = {
  user: "user",
  auditor: "auditor",
  security: "security",
  admin: "admin",
};

const envelope = z.strictObject({
  error: z.strictObject({
    code: z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]),
    message: z.string().min(1),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

const scimError = z.strictObject({
  schemas: z.tuple([z.literal("urn:ietf:params:scim:api:messages:2.0:Error")]),
  status: z.string(),
  scimType: z.string().optional(),
  detail: z.string().min(1),
});

/** Every case the matrix implies: each row, plus HEAD for each GET row, for each caller. */
const CASES = ROWS.flatMap((row) =>
  (row.method === "GET" ? [row.method, "HEAD"] : [row.method]).flatMap((method) =>
    CALLERS.map((caller) => ({ row, method, caller, allowed: row.allowed.has(caller) })),
  ),
);

describe("authorization matrix (PGlite)", () => {
  let server: TestServer;
  let counter = 0;
  const fresh = (prefix: string) => `${prefix}-${++counter}`;

  beforeAll(async () => {
    server = await testServer("pglite");
    for (const caller of Object.keys(ROLE_OF) as (keyof typeof ROLE_OF)[]) {
      await server.userWithRoles(`matrix-${caller}`, [ROLE_OF[caller]]);
    }
    await server.userWithRoles(TARGET, ["user"]);
    await server.userWithRoles(LOGIN_ONLY, ["user"]);
    const admin = { authorization: server.adminAuth };
    const made = await Promise.all([
      server.app.inject({
        method: "POST",
        url: "/v1/users",
        headers: admin,
        payload: { name: SERVICE, kind: "service" },
      }),
      server.app.inject({ method: "POST", url: "/v1/groups", headers: admin, payload: { name: GROUP } }),
    ]);
    for (const res of made) expect(res.statusCode, res.body).toBe(201);
  });

  afterAll(async () => {
    await server?.cleanup();
  });

  it("lists exactly the routes the app registers", () => {
    const registered = server.app.routeTable.map((r) => `${r.method} ${r.url}`);
    const listed = new Set(ROWS.map((r) => r.key));
    // HEAD routes Fastify derives from GET routes are covered by the GET row.
    const missing = registered.filter(
      (key) => !listed.has(key) && !(key.startsWith("HEAD ") && listed.has(key.replace(/^HEAD /, "GET "))),
    );
    const stale = [...listed].filter((key) => !registered.includes(key));
    expect(missing, "routes the matrix does not list: add a row for each").toEqual([]);
    expect(stale, "matrix rows for routes that do not exist").toEqual([]);
    expect(
      Object.keys(PROBES).filter((key) => !listed.has(key)),
      "probes for unlisted routes",
    ).toEqual([]);
  });

  it("agrees with each route's declared requirement on who is public", () => {
    for (const entry of server.app.routeTable) {
      const row = ROWS.find((r) => r.key === `${entry.method === "HEAD" ? "GET" : entry.method} ${entry.url}`);
      if (!row) continue; // reported by the test above
      expect(row.allowed.has("anonymous"), `${entry.method} ${entry.url}`).toBe(entry.requirement === "public");
    }
  });

  it.each(CASES.map((c) => [`${c.method} ${c.row.route} as ${c.caller}`, c] as const))(
    "%s",
    async (_name, { row, method, caller, allowed }) => {
      const probe: Probe = await (PROBES[row.key] ?? (() => ({ url: row.route })))({ server, fresh });
      expect(probe.url, "fill in the path parameters of this route in PROBES").not.toMatch(/\/:/);
      const headers: Record<string, string> = {};
      if (caller !== "anonymous") headers.authorization = await server.login(`matrix-${caller}`);
      const res: LightMyRequestResponse = await server.app.inject({
        method: method as "GET",
        url: probe.url,
        headers,
        ...(probe.payload !== undefined ? { payload: probe.payload as object } : {}),
      });
      const detail = `${method} ${probe.url} as ${caller} → ${res.statusCode} ${res.body.slice(0, 300)}`;
      expect(res.statusCode, detail).toBeLessThan(500);
      if (allowed) {
        expect([401, 403], detail).not.toContain(res.statusCode);
        return;
      }
      const expected =
        caller === "anonymous" ? { status: 401, code: "UNAUTHENTICATED" } : { status: 403, code: "FORBIDDEN" };
      expect(res.statusCode, detail).toBe(expected.status);
      if (caller === "anonymous") expect(res.headers["www-authenticate"], detail).toMatch(/^Bearer /);
      if (method === "HEAD") return; // no body to look at
      if (row.route.startsWith("/scim/")) {
        // SCIM clients read SCIM's error shape (RFC 7644 §3.12).
        expect(res.headers["content-type"], detail).toMatch(/^application\/scim\+json/);
        expect(scimError.parse(res.json()).status, detail).toBe(String(expected.status));
        return;
      }
      expect(res.headers["content-type"], detail).toMatch(/^application\/json/);
      const body = envelope.parse(res.json());
      expect(body.error.code, detail).toBe(expected.code);
    },
  );
});
