/**
 * The check API's answer is written by hand (it is the hottest route): it must be what zod's serializer
 * wrote — same fields, same order, nothing unlisted — and an answer of any other shape must still be refused.
 * Its query is checked by hand too: it must accept exactly what zod accepts, with the same value.
 */
import fc from "fast-check";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { describe, expect, it } from "vitest";
import * as c from "../../contract/requests.js";
import { parse as parseQuery } from "fast-querystring";
import { checkQueryValidator, checkResultSerializer, plainCheckQuery } from "./requests.routes.js";

const route = { schema: c.checkResult, method: "GET", url: "/v1/check", httpStatus: "200" };
const byHand = checkResultSerializer(route);
const byZod = serializerCompiler(route);

const ALLOWED = {
  principal: "alice",
  role: "db-admin",
  allowed: true,
  reason: "active activation",
  expiresAt: "2026-12-05T02:19:38.325Z",
  requestId: "01a243c9-0955-76dc-9f68-8c313623809f",
};
const REFUSED = {
  principal: "bob",
  role: "db-admin",
  allowed: false,
  reason: "no active activation of this role",
  expiresAt: null,
  requestId: null,
};

describe("the check API's serializer", () => {
  it("writes what zod wrote, for allowed and refused answers", () => {
    for (const answer of [ALLOWED, REFUSED]) expect(byHand(answer)).toBe(byZod(answer));
    expect(JSON.parse(byHand(REFUSED) as string)).toEqual(REFUSED);
  });

  it("writes no field the contract does not list", () => {
    const leaky = { ...ALLOWED, principalId: "00000000-0000-7000-8000-000000000001", secret: "s3cret" };
    expect(byHand(leaky)).toBe(byZod(ALLOWED));
    expect(byHand(leaky)).not.toContain("s3cret");
  });

  it("refuses an answer of another shape, as zod does", () => {
    for (const wrong of [
      { ...ALLOWED, allowed: "yes" },
      { ...ALLOWED, expiresAt: 1_700_000_000 },
      { ...REFUSED, requestId: undefined },
      { role: "db-admin" },
      null,
      "allowed",
    ])
      expect(() => byHand(wrong), JSON.stringify(wrong)).toThrow(/response|serializ/i);
  });
});

describe("the check API's serializer on any text", () => {
  it("writes what zod wrote whatever the names and reason hold (quotes, backslashes, controls, non-ASCII)", () => {
    const text = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 20 }),
      fc.string({ unit: fc.constantFrom('"', "\\", "\n", "\u0000", "\u2028", "a", " ", "-", "é", "/"), maxLength: 8 }),
    );
    fc.assert(
      fc.property(text, text, text, fc.boolean(), (principal, role, reason, allowed) => {
        const answer = allowed ? { ...ALLOWED, principal, role, reason } : { ...REFUSED, principal, role, reason };
        const written = byHand(answer) as string;
        expect(written).toBe(byZod(answer));
        expect(JSON.parse(written)).toEqual(answer);
      }),
      { numRuns: 500 },
    );
  });
});

describe("the check API's query validator", () => {
  const queryRoute = { schema: c.checkQuery, method: "GET", url: "/v1/check", httpPart: "querystring" };
  const fast = checkQueryValidator(queryRoute) as (data: unknown) => { value?: unknown; error?: unknown };
  const zod = validatorCompiler(queryRoute) as (data: unknown) => { value?: unknown; error?: unknown };

  it("accepts exactly what zod accepts, with the same value, and refuses with zod's error", () => {
    const value = fc.oneof(
      fc.stringMatching(/^[a-z][a-z0-9._-]{0,70}$/),
      fc.string({ maxLength: 70 }),
      fc.constantFrom("", "A", "a b", "a\u0000", "é", "a".repeat(64), "a".repeat(65)),
      fc.array(fc.constantFrom("alice", "bob"), { maxLength: 2 }),
    );
    const query = fc.dictionary(fc.constantFrom("principal", "role", "extra", "__proto__", "toString"), value, {
      maxKeys: 4,
    });
    fc.assert(
      fc.property(query, (data) => {
        const mine = fast(data);
        const theirs = zod(data);
        expect(mine.error === undefined).toBe(theirs.error === undefined);
        if (theirs.error === undefined) expect(mine.value).toEqual(theirs.value);
        else expect(String(mine.error)).toBe(String(theirs.error));
      }),
      { numRuns: 1000 },
    );
  });

  it("takes the plain query of a check by the fast path, and refuses an extra or repeated field", () => {
    expect(fast({ principal: "alice", role: "db-admin" })).toEqual({ value: { principal: "alice", role: "db-admin" } });
    expect(fast({ principal: "alice", role: "db-admin", extra: "x" }).error).toBeDefined();
    expect(fast({ principal: ["alice", "bob"], role: "db-admin" }).error).toBeDefined();
    expect(fast({ principal: "Alice", role: "db-admin" }).error).toBeDefined();
    const withNullPrototype = Object.assign(Object.create(null) as object, { principal: "alice", role: "r" });
    expect(fast(withNullPrototype)).toEqual({ value: { principal: "alice", role: "r" } });
  });
});

describe("the check API's query for the fast path", () => {
  const queryRoute = { schema: c.checkQuery, method: "GET", url: "/v1/check", httpPart: "querystring" };
  const zod = validatorCompiler(queryRoute) as (data: unknown) => { value?: unknown; error?: unknown };

  it("takes a query only when the route (Fastify's parser, then zod) takes it, with the same value", () => {
    const part = fc.oneof(
      fc.stringMatching(/^[a-z][a-z0-9._-]{0,66}$/),
      fc.string({ maxLength: 20 }),
      fc.constantFrom("", "%2D", "%00", "+", "%", "&", "=", "A", "a%2Db", "a+b", "a".repeat(64), "a".repeat(65)),
    );
    const pair = fc.tuple(fc.constantFrom("principal", "role", "extra", "principal[]", ""), part);
    const query = fc.array(pair, { maxLength: 4 }).map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join("&"));
    fc.assert(
      fc.property(fc.oneof(query, fc.string({ maxLength: 40 })), (text) => {
        const mine = plainCheckQuery(text);
        if (mine === undefined) return;
        const theirs = zod(parseQuery(text));
        expect(theirs.error).toBeUndefined();
        expect(theirs.value).toEqual(mine);
      }),
      { numRuns: 3000 },
    );
  });

  it("takes the plain query in either order and refuses the rest", () => {
    expect(plainCheckQuery("principal=alice&role=db-admin")).toEqual({ principal: "alice", role: "db-admin" });
    expect(plainCheckQuery("role=db-admin&principal=alice")).toEqual({ principal: "alice", role: "db-admin" });
    for (const refused of [
      "principal=alice",
      "principal=alice&role=db-admin&x=1",
      "principal=alice&principal=bob",
      "principal=al%69ce&role=r",
      "principal=Alice&role=r",
      "principal=&role=r",
      "principal=alice&role=r&",
    ])
      expect(plainCheckQuery(refused), refused).toBeUndefined();
  });
});
