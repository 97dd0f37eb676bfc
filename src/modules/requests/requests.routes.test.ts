/**
 * The check API's answer is written by hand (it is the hottest route): it must be what zod's serializer
 * wrote — same fields, same order, nothing unlisted — and an answer of any other shape must still be refused.
 */
import { serializerCompiler } from "fastify-type-provider-zod";
import { describe, expect, it } from "vitest";
import * as c from "../../contract/requests.js";
import { checkResultSerializer } from "./requests.routes.js";

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
