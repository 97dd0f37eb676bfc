/**
 * The check API's fast path (fast-path.ts) over real HTTP: it answers the plain success from memory with the
 * same body and headers as the route, and nothing else — every refusal, a signed-out or unknown token, an
 * unusual query, HEAD — is Fastify's (app.inject never meets the fast path: it is the reference here).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listenWithFastPath } from "../testing/fast-path.js";
import { AUTO_APPROVED_POLICY, seedRole, seedUser } from "../testing/pim.js";
import { testServer, type TestServer } from "../testing/server.js";

const ROLE = "fast-role";
let server: TestServer;
let base: string;
let both: Awaited<ReturnType<typeof listenWithFastPath>>["both"];
let checker: string;
let holder: string;
let other: string;
/** What the fast path answered (its observers are told of each answer). */
let fastAnswers: { url: string; statusCode: number }[];

beforeAll(async () => {
  server = await testServer("pglite");
  await seedUser(server, "fast-holder", { groups: ["fast-requesters"] });
  await seedUser(server, "fast-other", { groups: ["fast-requesters"] });
  await seedRole(server, {
    name: ROLE,
    risk: "low",
    policy: AUTO_APPROVED_POLICY,
    eligibleGroups: ["fast-requesters"],
  });
  holder = await server.login("fast-holder");
  other = await server.login("fast-other");
  checker = await server.userWithRoles("fast-checker", ["auditor"]);
  const submitted = await server.app.inject({
    method: "POST",
    url: "/v1/activation-requests",
    headers: { authorization: holder },
    payload: { role: ROLE, reason: "fast path test activation" },
  });
  expect(submitted.statusCode).toBe(201);
  ({ base, both, answers: fastAnswers } = await listenWithFastPath(server));
}, 60_000);

afterAll(async () => {
  await server?.cleanup();
});

/** Bodies without the parts that differ per request (an error's correlation id). */
const comparable = (body: string) => body.replace(/"correlationId":"[^"]*"/, '"correlationId":"…"');

describe("the check API's fast path", () => {
  it("hands a token's first use (read from the database) to the route, which answers it", async () => {
    const url = `/v1/check?principal=fast-holder&role=${ROLE}`;
    const first = await both(url, { authorization: checker });
    expect(first.fast).toBe(false);
    expect(first.http.status).toBe(200);
    expect(first.http.body).toBe(first.inject.body);
    // Remembered now: the next is the fast path's.
    expect((await both(url, { authorization: checker })).fast).toBe(true);
  });

  it("answers the plain success from memory, as the route does: body and headers", async () => {
    for (const [url, allowed] of [
      [`/v1/check?principal=fast-holder&role=${ROLE}`, true],
      [`/v1/check?role=${ROLE}&principal=fast-holder`, true],
      [`/v1/check?principal=fast-other&role=${ROLE}`, false],
      [`/v1/check?principal=nobody&role=${ROLE}`, false],
    ] as const) {
      const { http, inject, fast } = await both(url, { authorization: checker });
      expect(fast, url).toBe(true);
      expect(http.status).toBe(200);
      expect(http.body).toBe(inject.body);
      expect(http.headers).toEqual(inject.headers);
      expect(http.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(JSON.parse(http.body)).toMatchObject({ allowed });
    }
    // Anyone may ask about themselves.
    const self = await both(`/v1/check?principal=fast-holder&role=${ROLE}`, { authorization: holder });
    expect(self.fast).toBe(true);
    expect(self.http.body).toBe(self.inject.body);
  });

  it("keeps a sane X-Request-Id and replaces any other, as the route does", async () => {
    const url = `/v1/check?principal=fast-holder&role=${ROLE}`;
    const kept = await fetch(base + url, { headers: { authorization: checker, "x-request-id": "caller-id-0001" } });
    expect(kept.headers.get("x-request-id")).toBe("caller-id-0001");
    const replaced = await fetch(base + url, { headers: { authorization: checker, "x-request-id": "bad id!" } });
    expect(replaced.headers.get("x-request-id")).not.toBe("bad id!");
  });

  it("leaves every refusal to the route: no token, a forged token, asking about another without the permission", async () => {
    const url = `/v1/check?principal=fast-holder&role=${ROLE}`;
    const forged = `${checker.slice(0, -4)}AAAA`;
    for (const [headers, status] of [
      [{}, 401],
      [{ authorization: forged }, 401],
      [{ authorization: "Bearer not-a-token" }, 401],
      [{ authorization: checker.replace("Bearer ", "Basic ") }, 401],
      [{ authorization: other }, 403],
    ] as const) {
      const { http, inject, fast } = await both(url, headers);
      expect(fast, JSON.stringify(headers)).toBe(false);
      expect(http.status).toBe(status);
      expect(inject.status).toBe(status);
      expect(comparable(http.body)).toBe(comparable(inject.body));
      expect(http.headers).toEqual(inject.headers);
    }
  });

  it("leaves any query it does not parse strictly to the route, which answers as always", async () => {
    for (const url of [
      `/v1/check?principal=fast-holder`,
      `/v1/check?principal=fast-holder&role=${ROLE}&extra=1`,
      `/v1/check?principal=fast-holder&principal=fast-other&role=${ROLE}`,
      `/v1/check?principal=Fast-Holder&role=${ROLE}`,
      `/v1/check?principal=fast%2Dholder&role=${ROLE}`,
      `/v1/check?principal=fast-holder%00&role=${ROLE}`,
      `/v1/check?principal=fast+holder&role=${ROLE}`,
      `/v1/check?principal=&role=${ROLE}`,
      `/v1/check/?principal=fast-holder&role=${ROLE}`,
      `/v1/check`,
    ]) {
      const { http, inject, fast } = await both(url, { authorization: checker });
      expect(fast, url).toBe(false);
      expect(http.status, url).toBe(inject.status);
      expect(comparable(http.body), url).toBe(comparable(inject.body));
    }
    // An escaped name is a name all the same: the route answers it (allowed), not the fast path.
    const escaped = await both(`/v1/check?principal=fast%2Dholder&role=${ROLE}`, { authorization: checker });
    expect(JSON.parse(escaped.http.body)).toMatchObject({ allowed: true });
    const head = await both(`/v1/check?principal=fast-holder&role=${ROLE}`, { authorization: checker }, "HEAD");
    expect(head.fast).toBe(false);
    expect(head.http.status).toBe(head.inject.status);
  });

  it("refuses a signed-out session's token at once, and answers a deactivation at once", async () => {
    const leaving = await server.userWithRoles("fast-leaving", ["auditor"]);
    const url = `/v1/check?principal=fast-holder&role=${ROLE}`;
    await both(url, { authorization: leaving });
    expect((await both(url, { authorization: leaving })).fast).toBe(true);
    const out = await server.app.inject({
      method: "POST",
      url: "/v1/auth/logout",
      headers: { authorization: leaving },
    });
    expect(out.statusCode).toBeLessThan(300);
    const after = await both(url, { authorization: leaving });
    expect(after.fast).toBe(false);
    expect(after.http.status).toBe(401);

    const ended = await server.app.inject({
      method: "POST",
      url: `/v1/me/roles/${ROLE}/deactivate`,
      headers: { authorization: holder },
    });
    expect(ended.statusCode).toBe(200);
    const now = await both(url, { authorization: checker });
    expect(now.fast).toBe(true);
    expect(JSON.parse(now.http.body)).toMatchObject({ allowed: false, reason: "no active activation of this role" });
  });

  it("counts its answers in the HTTP metrics like the route's", async () => {
    const count = async () => {
      const res = await server.app.inject({
        method: "GET",
        url: "/metrics",
        headers: { authorization: server.adminAuth },
      });
      const line = res.body
        .split("\n")
        .find(
          (l) =>
            l.startsWith("stint_http_requests_total{") && l.includes('route="/v1/check"') && l.includes('status="200"'),
        );
      return line ? Number(line.split(" ").at(-1)) : 0;
    };
    const before = await count();
    const first = fastAnswers.length;
    for (let i = 0; i < 3; i++) await both(`/v1/check?principal=fast-holder&role=${ROLE}`, { authorization: checker });
    expect(fastAnswers.length - first).toBe(3);
    // Three over HTTP (fast) and three through app.inject (the route): six.
    expect((await count()) - before).toBe(6);
  });
});
